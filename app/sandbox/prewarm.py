"""Pre-started Python sandboxes: pay for namespaces and interpreter start-up before the request.

A sandboxed run spends most of its time not in the code but in setting up namespaces and starting
Python (tens of ms, mostly waiting rather than computing). So Python runs go through a small
bootstrap: each sandbox is started ahead of time with the ceiling limits, and blocks reading a pipe.
When a run comes, it sends (code, files, stdin, limits) down that pipe; the bootstrap writes the files,
puts stdin on fd 0, *lowers* its rlimits to the run's (lowering needs no privilege), and runs the
code as `__main__`. Every sandbox serves exactly one run and is then destroyed, so runs never share
a process, a work dir or a uid.
"""

from __future__ import annotations

import marshal
import queue
import resource
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

# The bootstrap runs inside the sandbox. {fd} is the payload pipe's read end.
BOOTSTRAP = """\
def _boot():
    import os, sys, marshal, resource
    with os.fdopen({fd}, "rb") as f:
        p = marshal.loads(f.read())
    for name, data in p["files"].items():
        d = os.path.dirname(name)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(name, "wb") as f:
            f.write(data)
    fd = os.memfd_create("stdin")
    view = memoryview(p["stdin"])
    while view:
        view = view[os.write(fd, view):]
    os.lseek(fd, 0, 0)
    os.dup2(fd, 0)
    os.close(fd)
    for which, soft, hard in p["limits"]:
        resource.setrlimit(which, (soft, hard))
    sys.argv = ["main.py"]
    sys.path.insert(0, "/work")
    g = sys.modules["__main__"].__dict__
    b = g["__builtins__"]
    g.clear()
    g.update(__name__="__main__", __file__="/work/main.py", __builtins__=b, __doc__=None,
             __package__=None, __spec__=None, __loader__=None)
    code = compile(p["code"], "/work/main.py", "exec")
    del p, view, f, os, marshal, resource
    exec(code, g)
_boot()
"""


@dataclass
class Started:
    """A sandbox that is starting or waiting for its payload."""

    proc: subprocess.Popen[bytes]
    payload_fd: int  # -1 once closed (never close an fd twice: the number may be reused)
    uid: int


def payload(
    code: str, files: dict[str, bytes], stdin: bytes, rlimits: list[tuple[int, int, int]]
) -> bytes:
    files = {**files, "main.py": code.encode()}
    return marshal.dumps({"code": code, "files": files, "stdin": stdin, "limits": rlimits})


def rlimits_for(
    cpu_s: int, memory_mb: int, processes: int, file_size_mb: int, open_files: int
) -> list[tuple[int, int, int]]:
    """The (resource, soft, hard) triples the bootstrap applies before running the code."""
    return [
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),  # SIGXCPU at the soft limit, SIGKILL after
        (resource.RLIMIT_AS, memory_mb << 20, memory_mb << 20),
        (resource.RLIMIT_NPROC, processes, processes),
        (resource.RLIMIT_FSIZE, file_size_mb << 20, file_size_mb << 20),
        (resource.RLIMIT_NOFILE, open_files, open_files),
    ]


class WarmPool:
    """Keeps `size` sandboxes started and waiting; `take()` hands one over and starts a replacement.

    `start` is the function that starts one (the Sandbox's). Starting is cheap for this process
    (fork + exec); the slow part happens in the child while it waits, which is the point.
    """

    def __init__(
        self, start: Callable[[], Started], discard: Callable[[Started], None], size: int
    ) -> None:
        self._start = start
        self._discard = discard
        self.size = size
        self._ready: queue.SimpleQueue[Started] = queue.SimpleQueue()
        self._wanted = threading.Semaphore(0)
        self._closed = False
        self._lock = threading.Lock()
        self._live: list[Started] = []
        for _ in range(size):
            self._wanted.release()
        self._thread = threading.Thread(target=self._refill, daemon=True, name="sandbox-prewarm")
        self._thread.start()

    def take(self) -> Started | None:
        """A started sandbox, or None when none is ready (the caller starts one itself)."""
        try:
            started = self._ready.get_nowait()
        except queue.Empty:
            return None
        with self._lock:
            if started in self._live:
                self._live.remove(started)
        self._wanted.release()
        return started

    def _refill(self) -> None:
        while True:
            self._wanted.acquire()
            if self._closed:
                return
            try:
                started = self._start()
            except Exception:  # out of uids or fork failed: try again on the next take()
                continue
            with self._lock:
                if self._closed:
                    self._discard(started)
                    return
                self._live.append(started)
            self._ready.put(started)

    def close(self) -> None:
        """Kill the waiting sandboxes."""
        with self._lock:
            self._closed = True
            live, self._live = self._live, []
        self._wanted.release()
        for started in live:
            self._discard(started)
