"""A small client for the sandbox server, sync and async, that honours back-pressure.

A 429 or 503 answer carries Retry-After; the client waits that long and tries again (up to
`max_wait_s` in all), so a trainer sending a burst of rollouts slows down instead of losing rewards.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

RETRY_STATUSES = {429, 503}


class SandboxClient:
    def __init__(self, url: str, *, timeout_s: float = 300.0, max_wait_s: float = 600.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_wait_s = max_wait_s

    # sync
    def evaluate(
        self,
        code: str,
        tests: list[dict[str, Any]],
        entry_point: str | None = None,
        *,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        return self._post("/evaluate", _evaluate_body(code, tests, entry_point, timeout))

    def run_code(self, code: str, *, stdin: str = "", run_timeout: float = 10.0) -> dict[str, Any]:
        return self._post(
            "/run_code",
            {"code": code, "language": "python", "stdin": stdin, "run_timeout": run_timeout},
        )

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/health", timeout=10).json()

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + self.max_wait_s
        with httpx.Client(timeout=self.timeout_s) as client:
            while True:
                r = client.post(self.url + path, json=body)
                if r.status_code in RETRY_STATUSES and time.monotonic() < deadline:
                    time.sleep(_retry_after(r))
                    continue
                r.raise_for_status()
                return r.json()

    # async
    async def aevaluate(
        self,
        code: str,
        tests: list[dict[str, Any]],
        entry_point: str | None = None,
        *,
        timeout: float | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> dict[str, Any]:
        return await self._apost(
            "/evaluate", _evaluate_body(code, tests, entry_point, timeout), client
        )

    async def arun_code(
        self,
        code: str,
        *,
        stdin: str = "",
        run_timeout: float = 10.0,
        client: httpx.AsyncClient | None = None,
    ) -> dict[str, Any]:
        body = {"code": code, "language": "python", "stdin": stdin, "run_timeout": run_timeout}
        return await self._apost("/run_code", body, client)

    async def _apost(
        self, path: str, body: dict[str, Any], client: httpx.AsyncClient | None
    ) -> dict[str, Any]:
        if client is None:
            async with httpx.AsyncClient(timeout=self.timeout_s) as own:
                return await self._apost(path, body, own)
        deadline = time.monotonic() + self.max_wait_s
        while True:
            r = await client.post(self.url + path, json=body)
            if r.status_code in RETRY_STATUSES and time.monotonic() < deadline:
                await asyncio.sleep(_retry_after(r))
                continue
            r.raise_for_status()
            return r.json()


def _evaluate_body(
    code: str, tests: list[dict[str, Any]], entry_point: str | None, timeout: float | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "tests": tests}
    if entry_point:
        body["entry_point"] = entry_point
    if timeout:
        body["timeout"] = timeout
    return body


def _retry_after(r: httpx.Response) -> float:
    try:
        return min(30.0, max(0.05, float(r.headers.get("Retry-After", "1"))))
    except ValueError:
        return 1.0
