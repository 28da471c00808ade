"""Load: 1,000 requests at concurrency 32 with passing, failing and hostile code. None lost, no 5xx
(nor 429: the queue is deep enough for 32 clients), every verdict as expected; prints p50/p99."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from qwq_chat.app.sandbox.server import ServerConfig, serve_in_background  # noqa: E402
from sandbox_helpers import processes_with  # noqa: E402

N_REQUESTS = 1000
CONCURRENCY = 32
MARKER = f"load-{uuid.uuid4().hex}"

SUM = "import sys\nprint(sum(map(int, sys.stdin.read().split())))"


def make_request(i: int) -> tuple[str, dict, str]:
    """(path, body, expected verdict) for request i: a fixed mix over 20 kinds."""
    a, b = i, 2 * i + 1
    kind = i % 20
    if kind < 12:
        return "/evaluate", _eval(SUM, f"{a} {b}", f"{a + b}"), "passed"
    if kind < 15:
        return "/evaluate", _eval(SUM, f"{a} {b}", f"{a + b + 1}"), "wrong_answer"
    if kind == 15:
        return "/evaluate", _eval("raise ValueError('bad')", "", ""), "runtime_error"
    if kind == 16:
        return "/evaluate", _eval("while True: pass", "", "", timeout=0.5), "timeout"
    if kind == 17:
        return "/evaluate", _eval("x = bytearray(1 << 34)", "", ""), "memory_limit"
    if kind == 18:
        return "/run_code", {"code": f"print({a} * 3)", "language": "python"}, f"stdout:{a * 3}"
    hostile = i // 20 % 3
    if hostile == 0:
        inner = (
            "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
        )
        # re-exec with MARKER in argv (inherited by every fork) so survivors can be found
        bomb = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {inner!r}, {MARKER!r}])"
        return "/evaluate", _eval(bomb, "", "", timeout=0.5), "timeout"
    if hostile == 1:
        flood = "import sys\nwhile True: sys.stdout.write('z' * 65536)"
        return "/evaluate", _eval(flood, "", "", timeout=5), "output_limit"
    return "/evaluate", _eval("print(open('/etc/shadow').read())", "", ""), "runtime_error"


def _eval(code: str, stdin: str, expected: str, timeout: float = 5.0) -> dict:
    return {
        "code": code,
        "tests": [{"stdin": stdin, "expected_stdout": expected}],
        "timeout": timeout,
    }


def outcome(path: str, r: httpx.Response) -> str:
    if path == "/run_code":
        return f"stdout:{r.json()['run_result']['stdout'].strip()}"
    return r.json()["tests"][0]["verdict"]


async def test_thousand_requests_at_concurrency_32() -> None:
    with serve_in_background(config=ServerConfig()) as server:
        sem = asyncio.Semaphore(CONCURRENCY)
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        wrong: list[tuple[int, str, str]] = []

        async def one(client: httpx.AsyncClient, i: int) -> None:
            path, body, expected = make_request(i)
            async with sem:
                start = time.monotonic()
                r = await client.post(server.url + path, json=body)
                latencies.append(time.monotonic() - start)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200 and (got := outcome(path, r)) != expected:
                wrong.append((i, expected, got))

        start = time.monotonic()
        limits = httpx.Limits(max_connections=CONCURRENCY)
        async with httpx.AsyncClient(timeout=120, limits=limits) as client:
            await asyncio.gather(*(one(client, i) for i in range(N_REQUESTS)))
        elapsed = time.monotonic() - start
        health = httpx.get(server.url + "/health").json()

    q = statistics.quantiles(latencies, n=100)
    print(
        f"\nload: {N_REQUESTS} requests at concurrency {CONCURRENCY} in {elapsed:.1f} s "
        f"({N_REQUESTS / elapsed:.0f} req/s); latency p50={q[49] * 1000:.0f} ms "
        f"p99={q[98] * 1000:.0f} ms; statuses={statuses}"
    )
    assert len(latencies) == N_REQUESTS  # none lost
    assert statuses == {200: N_REQUESTS}  # no 5xx, no 429
    assert wrong == []
    assert health["completed"] == N_REQUESTS and health["admitted"] == 0
    assert processes_with(MARKER) == []  # no fork-bomb survivors
