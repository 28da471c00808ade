"""Run a function in worker processes with a hard per-call timeout that works from any thread.

math-verify's own timeout uses `signal.alarm`, which only works on the main thread, and sympy can
spend minutes (or all memory) in C code that no signal interrupts. So each call runs in a child
process; if it does not answer in time the child is killed and replaced, and the call gets a
default value. One parent thread drives each child, so the pool is safe to use from any thread.

Children are plain `python -c` subprocesses talking over two pipes (not multiprocessing "spawn",
which re-imports the caller's `__main__` and breaks scripts without an `if __name__` guard; not
"fork", which is unsafe in a multi-threaded parent such as a trainer or a web server).
"""

from __future__ import annotations

import atexit
import importlib
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

_STOP = object()


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}:{fn.__qualname__}"


def _resolve(name: str) -> Callable[..., Any]:
    module, _, attr = name.partition(":")
    return getattr(importlib.import_module(module), attr)


def child_main(read_fd: int, write_fd: int, fn_name: str, warmup_name: str, memory: int) -> None:
    """The worker loop: warm up, say "ready", then answer each args tuple with ("ok", result) or
    ("error", message)."""
    if memory:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    rx, tx = Connection(read_fd, writable=False), Connection(write_fd, readable=False)
    fn = _resolve(fn_name)
    if warmup_name:
        _resolve(warmup_name)()
    tx.send(("ready", None))
    while True:
        try:
            args = rx.recv()
        except (EOFError, OSError):
            return
        try:
            tx.send(("ok", fn(*args)))
        except BaseException as exc:  # MemoryError, RecursionError, anything: the caller decides
            tx.send(("error", f"{type(exc).__name__}: {exc}"[:500]))


class _Slot:
    """One child process and the parent thread that feeds it."""

    def __init__(self, pool: TimeoutPool) -> None:
        self.pool = pool
        self.proc: subprocess.Popen[bytes] | None = None
        self.rx: Connection | None = None
        self.tx: Connection | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True, name="timeout-pool")
        self.thread.start()

    def _start(self) -> None:
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pool = self.pool
        code = (
            "from qwq_chat.rl_finetune.verifiers.workers import child_main; "
            f"child_main({to_child_r}, {from_child_w}, {_qualname(pool.fn)!r}, "
            f"{_qualname(pool.warmup) if pool.warmup else ''!r}, {pool.memory_limit_bytes or 0})"
        )
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(to_child_r, from_child_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the terminal is the parent's to handle
            )
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.tx = Connection(to_child_w, readable=False)
        self.rx = Connection(from_child_r, writable=False)
        # Imports are not a call's fault: wait for "ready" outside the per-call timeout.
        if not self.rx.poll(pool.startup_timeout):
            self.kill()
            raise RuntimeError("a verifier worker process did not start in time")
        self.rx.recv()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        for conn in (self.rx, self.tx):
            if conn is not None:
                conn.close()
        self.proc = self.rx = self.tx = None

    def _loop(self) -> None:
        try:
            self._start()  # warm up now, not on the first call
        except Exception:
            self.kill()  # retried on the first call, where the error reaches the caller
        while True:
            item = self.pool.tasks.get()
            if item is _STOP:
                self.kill()
                return
            args, timeout, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                value, healthy = self._call(args, timeout)
            except BaseException as exc:  # never lose a future
                self.kill()
                future.set_exception(exc)
                continue
            future.set_result(
                value
            )  # answer first, then clean up: the caller never waits on a kill
            if not healthy:
                self.kill()

    def _call(self, args: tuple[Any, ...], timeout: float) -> tuple[Any, bool]:
        """(result, whether the child is still usable)."""
        if self.proc is None or self.proc.poll() is not None:
            self.kill()
            self._start()
        assert self.rx is not None and self.tx is not None
        try:
            self.tx.send(args)
            if self.rx.poll(timeout):
                status, value = self.rx.recv()
                return (value if status == "ok" else self.pool.default), True
        except (EOFError, OSError):
            pass
        return self.pool.default, False  # timed out or died: replaced before the next call


class TimeoutPool:
    """`size` worker processes running `fn` (a module-level function), each call bounded by `timeout` s.

    `submit(*args)` returns a Future; `map(arg_tuples)` runs many in parallel and keeps order. A call
    that times out, crashes its child, or raises gets `default`. `warmup` (module-level, no args)
    runs once in each new child before it takes calls. Arguments and results must pickle.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        size: int | None = None,
        timeout: float = 5.0,
        default: Any = None,
        memory_limit_bytes: int | None = None,
        warmup: Callable[[], Any] | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.fn = fn
        self.warmup = warmup
        self.size = size or max(1, min(os.cpu_count() or 1, 8))
        self.timeout = timeout
        self.default = default
        self.memory_limit_bytes = memory_limit_bytes
        self.startup_timeout = startup_timeout
        self.tasks: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._slots = [_Slot(self) for _ in range(self.size)]
        self._closed = False

    def submit(self, *args: Any, timeout: float | None = None) -> Future[Any]:
        if self._closed:
            raise RuntimeError("the pool is closed")
        future: Future[Any] = Future()
        self.tasks.put((args, self.timeout if timeout is None else timeout, future))
        return future

    def map(self, arg_tuples: Iterable[tuple[Any, ...]], timeout: float | None = None) -> list[Any]:
        futures = [self.submit(*args, timeout=timeout) for args in arg_tuples]
        return [f.result() for f in futures]

    def worker_pids(self) -> list[int]:
        """Pids of the live children (for CPU accounting in benchmarks)."""
        return [slot.proc.pid for slot in self._slots if slot.proc is not None]

    def close(self) -> None:
        """Stop the children (after the calls already queued)."""
        if self._closed:
            return
        self._closed = True
        for _ in self._slots:
            self.tasks.put(_STOP)
        for slot in self._slots:
            slot.thread.join(10)

    def __enter__(self) -> TimeoutPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_pools: list[TimeoutPool] = []


def _close_all() -> None:
    for pool in _pools:
        pool.close()


atexit.register(_close_all)


def register_for_exit(pool: TimeoutPool) -> TimeoutPool:
    """Close this pool (killing its children) when the interpreter exits."""
    _pools.append(pool)
    return pool
