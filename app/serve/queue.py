"""One model, many clients: a bounded FIFO of requests, and generation off the event loop.

The model generates for one request at a time (llama.cpp's context holds one conversation's KV
cache; keeping requests in turn keeps a follow-up's prefix cached). Requests past `max_waiting`
get a 429 with `Retry-After` from the recent request durations. A `Job` runs one session reply in
a worker thread and hands its events to the event loop; cancelling it (the client hung up) stops
the engine within a token, and the slot is given back only when the engine has really stopped.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from qwq_chat.app.serve.protocol import ApiError

_END = object()


class ModelQueue:
    """FIFO access to the one model; `reserve()` answers 429 when too many are waiting."""

    def __init__(self, max_waiting: int) -> None:
        self.max_waiting = max_waiting
        self._lock = asyncio.Lock()  # FIFO; created inside the server's event loop
        self._pending = 0  # waiting + running
        self._avg_s = 5.0  # recent request duration, for Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    def reserve(self) -> Ticket:
        if self._pending > self.max_waiting:
            wait = max(1, math.ceil(self._avg_s * self._pending))
            raise ApiError(
                429,
                f"the model is busy ({self._pending - 1} requests waiting); retry in {wait} s",
                type_="rate_limit_error",
                code="queue_full",
                headers={"Retry-After": str(wait)},
            )
        self._pending += 1
        return Ticket(self)

    def _finished(self, held: bool, started: float | None) -> None:
        self._pending -= 1
        if held:
            self._lock.release()
        if started is not None:
            self._avg_s = 0.7 * self._avg_s + 0.3 * (time.monotonic() - started)


class Ticket:
    """A place in the queue: `await acquire()` for the model, `close()` exactly once after."""

    def __init__(self, queue: ModelQueue) -> None:
        self.queue = queue
        self.held = False
        self.closed = False
        self.started: float | None = None

    async def acquire(self) -> None:
        await self.queue._lock.acquire()
        self.held = True
        self.started = time.monotonic()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue._finished(self.held, self.started)


class Job:
    """One generation in a worker thread; `events()` yields what it produces, on the loop."""

    def __init__(self, produce: Callable[[], Iterator[Any]], cancel: Callable[[], None]) -> None:
        self._produce = produce
        self._cancel = cancel
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._state = threading.Lock()
        self._finished = False
        self._on_finish: Callable[[], None] | None = None

    def start(self, on_finish: Callable[[], None]) -> None:
        """Run in a thread; `on_finish` runs on the event loop once the engine is idle again."""
        self._on_finish = on_finish
        threading.Thread(target=self._run, name="qwq-serve-generation", daemon=True).start()

    def _run(self) -> None:
        try:
            for item in self._produce():
                self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except BaseException as exc:  # reported to the request, never lost in the thread
            self._loop.call_soon_threadsafe(self._queue.put_nowait, exc)
        finally:
            with self._state:
                self._finished = True
            self._loop.call_soon_threadsafe(self._queue.put_nowait, _END)
            if self._on_finish is not None:
                self._loop.call_soon_threadsafe(self._on_finish)

    def cancel(self) -> None:
        """Stop the generation soon (safe to call late: a finished job is left alone)."""
        with self._state:
            if not self._finished:
                self._cancel()

    async def events(self) -> Any:
        while True:
            item = await self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
