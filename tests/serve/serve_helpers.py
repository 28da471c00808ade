"""Run `qwq_chat.app.serve`'s app on a uvicorn thread (a free port on 127.0.0.1) for tests.

The engine is real or scripted; the HTTP server, the session and the queue are the real ones.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from qwq_chat.app.config import load_settings
from qwq_chat.app.serve.server import ServeOptions, Server


@contextmanager
def running(engine: Any, settings: Any = None, **options: Any) -> Iterator[tuple[str, Server]]:
    """Serve `engine`; yields (base URL ending in /v1, the Server)."""
    settings = settings or load_settings()
    server = Server(engine, settings, ServeOptions(model_id=options.pop("model_id", "qwq-test"),
                                                   **options))  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    uv = uvicorn.Server(
        uvicorn.Config(server.app, log_level="warning", access_log=False, lifespan="off")
    )
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, lambda: None if thread.is_alive() else "the server thread died", 30)
    try:
        yield base + "/v1", server
    finally:
        uv.should_exit = True
        thread.join(30)
        sock.close()


def sse_events(response: httpx.Response) -> Iterator[Any]:
    """The JSON objects of an SSE stream, up to `data: [DONE]` (which must come)."""
    import json

    for line in response.iter_lines():
        if not line.startswith("data: "):
            continue
        data = line[len("data: ") :]
        if data == "[DONE]":
            return
        yield json.loads(data)
    raise AssertionError("the stream ended without data: [DONE]")


class Api:
    """One server for a whole test module; each test puts in its own engine and options."""

    def __init__(self, url: str, server: Server) -> None:
        self.url, self.server = url, server
        self.client = httpx.Client(base_url=url, timeout=60)
        self.defaults = ServeOptions(model_id=server.options.model_id)

    def use(self, engine: Any, **options: Any) -> Api:
        from qwq_chat.app.serve.queue import ModelQueue

        deadline = time.monotonic() + 10  # a finished request frees its slot a moment later
        while self.server.queue.pending:
            assert time.monotonic() < deadline, "the previous test left a request running"
            time.sleep(0.01)
        self.server.engine = engine
        for name, value in vars(self.defaults).items():
            setattr(self.server.options, name, options.get(name, value))
        self.server.queue = ModelQueue(self.server.options.max_waiting)
        return self

    def __enter__(self) -> tuple[str, Server]:
        return self.url, self.server

    def __exit__(self, *exc: object) -> None:
        pass

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def stream(self, path: str, **kwargs: Any) -> Any:
        return self.client.stream("POST", path, **kwargs)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One server per test module (import this fixture); engines are swapped per test."""
    # Settings from an empty file: the user's own config must not leak into the tests.
    config = tmp_path_factory.mktemp("serve") / "config.toml"
    config.write_text("", encoding="utf-8")
    with running(None, load_settings(config)) as (url, server):
        holder = Api(url, server)
        yield holder
        holder.client.close()


def wait_healthy(base: str, failure: Callable[[], str | None], timeout: float) -> None:
    """Poll `base`/health until it answers 200; fail with `failure()` (the server died) or on
    timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        problem = failure()
        assert problem is None, problem
        assert time.monotonic() < deadline, f"the server at {base} did not start"
        time.sleep(0.05)
