"""The code execution server: `POST /run_code` (SandboxFusion's shape), `POST /evaluate`, `GET /health`.

Start it with `qwq-chat sandbox serve`, or from Python:

    from qwq_chat.app.sandbox.server import serve_in_background
    with serve_in_background() as server:          # a thread in this process, a free port
        httpx.post(server.url + "/evaluate", json={"code": ..., "tests": [...]})

    from qwq_chat.app.sandbox.server import launch_subprocess
    with launch_subprocess() as server:            # a separate process (survives a busy event loop)
        ...

Concurrency is bounded by the cores (one sandboxed run per worker thread); at most `max_queue` runs
may wait or run at once, and a request that would go past that gets 429 with Retry-After instead of
queueing without end. Every run has a wall-clock limit (the request's `run_timeout`, capped by
`max_run_timeout`), so every admitted request is answered.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from qwq_chat.app.sandbox.judge import BadTest, TestCase, program_for, to_result
from qwq_chat.app.sandbox.runner import Limits, RunResult, Sandbox
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

log = logging.getLogger("qwq_chat.sandbox")

PYTHON_NAMES = {"python", "python3", "py"}


@dataclass
class ServerConfig:
    """Server settings; every limit a request asks for is clamped to these maxima."""

    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)
    prewarm: int | None = None  # sandboxes started ahead of requests; None = 2 x concurrency
    max_queue: int = 256  # runs admitted (waiting + running) before answering 429
    default_run_timeout: float = 10.0
    max_run_timeout: float = 60.0
    default_memory_mb: int = 512
    max_memory_mb: int = 4096
    max_tests: int = 200
    max_body_bytes: int = 16 * 1024 * 1024
    unsafe_no_isolation: bool = False


class QueueFull(Exception):
    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after


class Scheduler:
    """Admission control plus a fixed pool of worker threads, one sandboxed run each."""

    def __init__(self, sandbox: Sandbox, config: ServerConfig) -> None:
        self.sandbox = sandbox
        self.config = config
        self.executor = ThreadPoolExecutor(config.concurrency, thread_name_prefix="sandbox-run")
        self.admitted = 0
        self.running = 0
        self.completed = 0
        self._avg_run_s = 0.1
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def admit(self, n: int) -> Iterator[None]:
        """Reserve room for `n` runs, or raise QueueFull with an honest Retry-After."""
        with self._lock:
            if self.admitted + n > self.config.max_queue:
                backlog = self.admitted / self.config.concurrency * self._avg_run_s
                raise QueueFull(max(1, math.ceil(backlog)))
            self.admitted += n
        try:
            yield
        finally:
            with self._lock:
                self.admitted -= n

    async def run(
        self, code: str, stdin: str | bytes, files: dict[str, bytes], limits: Limits
    ) -> RunResult:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._run, code, stdin, files, limits)

    def _run(
        self, code: str, stdin: str | bytes, files: dict[str, bytes], limits: Limits
    ) -> RunResult:
        with self._lock:
            self.running += 1
        try:
            result = self.sandbox.run_python(code, stdin=stdin, files=files, limits=limits)
        finally:
            with self._lock:
                self.running -= 1
                self.completed += 1
        self._avg_run_s = 0.9 * self._avg_run_s + 0.1 * result.wall_s
        return result

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


class BadRequest(Exception):
    pass


def create_app(config: ServerConfig | None = None, sandbox: Sandbox | None = None) -> Starlette:
    """The ASGI app. Checks isolation first: raises SandboxUnavailable rather than run code bare."""
    config = config or ServerConfig()
    if sandbox is None:
        sandbox = Sandbox(
            isolation="none" if config.unsafe_no_isolation else "bwrap",
            max_concurrency=max(64, config.concurrency),
            prewarm=2 * config.concurrency if config.prewarm is None else config.prewarm,
        )
    if sandbox.isolation == "none":
        log.warning(
            "!!! UNSAFE: the sandbox server runs code WITHOUT isolation (--unsafe-no-isolation). "
            "Submitted code can read and write your files and reach the network. !!!"
        )
    sandbox.check()
    scheduler = Scheduler(sandbox, config)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "isolation": sandbox.isolation,
                "concurrency": config.concurrency,
                "admitted": scheduler.admitted,
                "running": scheduler.running,
                "completed": scheduler.completed,
                "max_queue": config.max_queue,
                "languages": ["python"],
            }
        )

    async def run_code(request: Request) -> JSONResponse:
        body = await _json_body(request, config)
        language = str(body.get("language", "python")).lower()
        if language not in PYTHON_NAMES:
            return JSONResponse(
                {
                    "status": "SandboxError",
                    "message": f"language {language!r} is not supported by this server (python only)",
                    "compile_result": None,
                    "run_result": None,
                    "files": {},
                }
            )
        code = _field(body, "code", str)
        stdin = _field(body, "stdin", str, "") or ""
        limits = _limits(body.get("run_timeout"), body.get("memory_limit_MB"), config)
        files = _decode_files(body.get("files") or {})
        with scheduler.admit(1):
            result = await scheduler.run(code, stdin, files, limits)
        return JSONResponse(_fusion_response(result))

    async def evaluate(request: Request) -> JSONResponse:
        body = await _json_body(request, config)
        code = _field(body, "code", str)
        raw_tests = _field(body, "tests", list)
        if not raw_tests:
            raise BadRequest('"tests" is empty: give at least one test case')
        if len(raw_tests) > config.max_tests:
            raise BadRequest(
                f"{len(raw_tests)} tests is more than this server's limit of {config.max_tests}"
            )
        try:
            tests = [TestCase.from_dict(t) for t in raw_tests]
        except BadTest as exc:
            raise BadRequest(str(exc)) from None
        entry_point = _field(body, "entry_point", str, None)
        limits = _limits(
            body.get("timeout", body.get("run_timeout")), body.get("memory_limit_MB"), config
        )
        with scheduler.admit(len(tests)):
            runs = await asyncio.gather(
                *(scheduler.run(*program_for(code, t, entry_point), limits) for t in tests)
            )
        results = [to_result(t, r) for t, r in zip(tests, runs, strict=True)]
        passed = sum(r.verdict == "passed" for r in results)
        return JSONResponse(
            {
                "passed": passed,
                "total": len(results),
                "pass_fraction": passed / len(results),
                "all_passed": passed == len(results),
                "tests": [r.to_dict() for r in results],
            }
        )

    async def on_bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def on_queue_full(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, QueueFull)
        return JSONResponse(
            {"error": "the sandbox queue is full; retry after the given seconds"},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        yield
        scheduler.close()
        sandbox.close()

    app = Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/run_code", run_code, methods=["POST"]),
            Route("/evaluate", evaluate, methods=["POST"]),
        ],
        exception_handlers={BadRequest: on_bad_request, QueueFull: on_queue_full},
        lifespan=lifespan,
    )
    app.state.scheduler = scheduler
    app.state.sandbox = sandbox
    return app


# --- request parsing ----------------------------------------------------------------------------


async def _json_body(request: Request, config: ServerConfig) -> dict[str, Any]:
    declared = request.headers.get("content-length", "0")
    if declared.isdigit() and int(declared) > config.max_body_bytes:
        raise BadRequest(f"request body is {declared} bytes; the limit is {config.max_body_bytes}")
    raw = await request.body()
    if len(raw) > config.max_body_bytes:
        raise BadRequest(f"request body is {len(raw)} bytes; the limit is {config.max_body_bytes}")
    import json

    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    return body


_MISSING = object()


def _field(body: dict[str, Any], name: str, kind: type, default: Any = _MISSING) -> Any:
    value = body.get(name, default)
    if value is _MISSING:
        raise BadRequest(f'missing field "{name}"')
    if value is not None and value is not default and not isinstance(value, kind):
        raise BadRequest(f'field "{name}" must be {kind.__name__}, got {type(value).__name__}')
    return value


def _limits(timeout: Any, memory_mb: Any, config: ServerConfig) -> Limits:
    try:
        wall = float(timeout) if timeout is not None else config.default_run_timeout
        memory = int(memory_mb) if memory_mb is not None else -1
    except (TypeError, ValueError):
        raise BadRequest("run_timeout and memory_limit_MB must be numbers") from None
    if wall <= 0:
        wall = config.default_run_timeout
    if memory <= 0:  # SandboxFusion uses -1 for "default"
        memory = config.default_memory_mb
    return Limits(
        wall_s=min(wall, config.max_run_timeout),
        memory_mb=min(max(memory, 64), config.max_memory_mb),
    )


def _decode_files(files: Any) -> dict[str, bytes]:
    if not isinstance(files, dict):
        raise BadRequest('"files" must map relative paths to base64 contents')
    out = {}
    for name, data in files.items():
        if not isinstance(data, str):
            raise BadRequest(f"file {name!r}: contents must be a base64 string")
        path = str(name).removeprefix("./")
        try:
            out[path] = base64.b64decode(data, validate=True)
        except binascii.Error:
            raise BadRequest(f"file {name!r} is not valid base64") from None
    return out


def _fusion_response(r: RunResult) -> dict[str, Any]:
    """A RunResult in SandboxFusion's RunCodeResponse shape."""
    if r.status == "sandbox_error":
        return {
            "status": "SandboxError",
            "message": r.message or r.stderr[:500],
            "compile_result": None,
            "run_result": None,
            "files": {},
        }
    run_status = {"finished": "Finished", "timeout": "TimeLimitExceeded", "output_limit": "Error"}[
        r.status
    ]
    message = "output limit exceeded" if r.status == "output_limit" else ""
    return {
        "status": "Success" if r.ok else "Failed",
        "message": message,
        "compile_result": None,
        "run_result": {
            "status": run_status,
            "execution_time": round(r.wall_s, 4),
            "return_code": r.return_code,
            "stdout": r.stdout,
            "stderr": r.stderr,
        },
        "files": {},
    }


# --- starting the server ------------------------------------------------------------------------


def serve(host: str = "127.0.0.1", port: int = 8080, config: ServerConfig | None = None) -> None:
    """Run the server in the foreground until Ctrl-C."""
    import uvicorn

    app = create_app(config)
    log.info("sandbox server on http://%s:%d", host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


class BackgroundServer:
    """A server on a uvicorn thread in this process. Use as a context manager or call close()."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, config: ServerConfig | None = None
    ) -> None:
        import uvicorn

        app = create_app(config)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        )
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            daemon=True,
            name="sandbox-server",
        )
        self._thread.start()
        _wait_healthy(self.url, 30.0, self._thread.is_alive)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve_in_background(
    host: str = "127.0.0.1", port: int = 0, config: ServerConfig | None = None
) -> BackgroundServer:
    """Start the server on a thread (port 0 = a free port); `.url` is its base URL."""
    return BackgroundServer(host, port, config)


class SubprocessServer:
    """The server as a child process (`python -m qwq_chat.app.sandbox.server`); `.url`, `.close()`."""

    def __init__(
        self, port: int | None = None, extra_args: list[str] | None = None, log_file: Any = None
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "qwq_chat.app.sandbox.server",
                "--port",
                str(self.port),
                *(extra_args or []),
            ],
            stdout=log_file or subprocess.DEVNULL,
            stderr=log_file or subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait_healthy(self.url, 60.0, lambda: self.proc.poll() is None)
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> SubprocessServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def launch_subprocess(
    port: int | None = None, extra_args: list[str] | None = None
) -> SubprocessServer:
    """Start the server in a child process on a free port and wait until /health answers."""
    return SubprocessServer(port, extra_args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, timeout: float, alive: Any) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the sandbox server exited while starting (see its log)")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the sandbox server at {url} did not become healthy in {timeout:.0f} s")


def main(argv: list[str] | None = None) -> None:
    """`python -m qwq_chat.app.sandbox.server [--host H] [--port N] [--concurrency N] [--unsafe-no-isolation]`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--max-queue", type=int, default=None)
    parser.add_argument("--unsafe-no-isolation", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = ServerConfig(unsafe_no_isolation=args.unsafe_no_isolation)
    if args.concurrency:
        config.concurrency = args.concurrency
    if args.max_queue:
        config.max_queue = args.max_queue
    serve(args.host, args.port, config)


if __name__ == "__main__":
    main()
