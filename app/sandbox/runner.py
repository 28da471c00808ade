"""One sandboxed run: untrusted code under bubblewrap, as an unprivileged uid, with hard limits.

Layers, outermost first:
1. The host process group: bwrap starts in a new session; at the wall-clock deadline the whole
   group gets SIGKILL (no SIGTERM to ignore).
2. The uid: when we are root, bwrap is started as a throw-away unprivileged uid (one per run, via
   subprocess's `user=`), because the kernel ignores RLIMIT_NPROC for root: a fork bomb would win.
3. bubblewrap: new user, PID, network, IPC, UTS and mount namespaces; `/usr` read-only; no `/etc`,
   no home, no host `/proc`; a fresh size-limited tmpfs as the work dir and `/tmp`; the rest of the
   root read-only; `--die-with-parent`, so killing bwrap tears down the PID namespace and with it
   every child the code left behind (daemons included).
4. rlimits applied inside (by `prlimit`, or by the Python bootstrap in prewarm.py): CPU seconds,
   address space, processes, file size, open files, no core dumps.
Output is read through pipes and capped; a flood past `Limits.output_hard_bytes` ends the run.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import selectors
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from qwq_chat.app.sandbox.prewarm import BOOTSTRAP, Started, WarmPool, payload, rlimits_for

RunStatus = Literal["finished", "timeout", "output_limit", "sandbox_error"]
Isolation = Literal["bwrap", "none"]

SANDBOX_UID = 65534  # the uid the code sees inside its user namespace ("nobody")
WORK_DIR = "/work"
_PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")


class SandboxUnavailable(RuntimeError):
    """Isolation cannot be set up here (no bwrap, user namespaces disabled, no system python)."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. `cpu_s` defaults to the wall time rounded up, plus one second."""

    wall_s: float = 10.0
    cpu_s: int | None = None
    memory_mb: int = 512
    processes: int = 64
    file_size_mb: int = 16
    open_files: int = 256
    tmpfs_mb: int = 64
    output_bytes: int = 64 * 1024  # kept per stream
    output_hard_bytes: int = 16 * 1024 * 1024  # read past this and the run is killed


# What a sandbox is started with before a run lowers the limits to its own (see prewarm.py).
CEILING = Limits(wall_s=3600, memory_mb=8192, processes=256, file_size_mb=1024, open_files=4096)


@dataclass
class RunResult:
    status: RunStatus
    return_code: int | None
    stdout: str
    stderr: str
    wall_s: float
    truncated: bool = False
    message: str = ""

    @property
    def memory_exceeded(self) -> bool:
        """Best guess that the address-space limit ended the run (Python raises MemoryError)."""
        return self.status == "finished" and self.return_code != 0 and "MemoryError" in self.stderr

    @property
    def ok(self) -> bool:
        return self.status == "finished" and self.return_code == 0


@dataclass
class Sandbox:
    """Runs programs in isolation. Thread-safe: concurrent runs use distinct throw-away uids.

    `isolation="none"` runs the code as a plain subprocess with only rlimits: for machines without
    bubblewrap, and only when a person asked for it (the server logs it loudly).
    """

    isolation: Isolation = "bwrap"
    python: str | None = None
    max_concurrency: int = 64
    prewarm: int = 0  # Python sandboxes kept started ahead of requests (see prewarm.py)
    ceiling: Limits = field(default_factory=lambda: CEILING)  # the most any run may be given
    _uids: queue.SimpleQueue[int] = field(default_factory=queue.SimpleQueue, repr=False)

    def __post_init__(self) -> None:
        self.python = self.python or find_system_python()
        # Spread uids by pid so two sandbox processes on one host rarely share one.
        base = 200_000 + (os.getpid() % 4096) * 128
        for uid in range(base, base + self.max_concurrency + self.prewarm):
            self._uids.put(uid)
        self._drop_privileges = os.geteuid() == 0
        self._warm: WarmPool | None = None
        if self.prewarm and self.isolation == "bwrap":
            self._warm = WarmPool(self._start_python, self._discard, self.prewarm)

    def close(self) -> None:
        """Stop the pre-started sandboxes (runs in progress finish on their own)."""
        if self._warm is not None:
            self._warm.close()

    def check(self) -> None:
        """Raise SandboxUnavailable unless a trivial program runs and really is isolated."""
        if self.isolation == "none":
            return
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable(
                "bubblewrap is not installed: install it (Debian/Ubuntu: apt-get install bubblewrap)"
            )
        probe = "import os; print(os.getuid(), sum(p.isdigit() for p in os.listdir('/proc')) < 5)"
        result = self.run_python(probe, limits=Limits(wall_s=20))
        if not result.ok or result.stdout.split() != [str(SANDBOX_UID), "True"]:
            raise SandboxUnavailable(
                "bubblewrap could not start an isolated process here "
                f"({result.status}, rc={result.return_code}, stdout={result.stdout.strip()[:100]!r}): "
                f"{result.stderr.strip()[:300]} "
                "(user namespaces may be disabled: sysctl kernel.unprivileged_userns_clone=1)"
            )

    def run_python(
        self,
        code: str,
        *,
        stdin: str | bytes = b"",
        files: dict[str, bytes] | None = None,
        limits: Limits | None = None,
    ) -> RunResult:
        """Run `code` as `/work/main.py` (`__main__`); `files` are extra files under /work.

        Uses a pre-started sandbox when one is ready (see prewarm.py), else starts one.
        """
        limits = self._clamp(limits or Limits())
        files = files or {}
        if (bad := _bad_file_name(files)) is not None:
            return bad
        stdin_bytes = stdin.encode() if isinstance(stdin, str) else stdin
        assert self.python is not None
        if self.isolation == "none":
            all_files = {**files, "main.py": code.encode()}
            argv = [self.python, "-I", "-B", "main.py"]
            return self._run_bare(argv, stdin_bytes, all_files, limits)
        started = self._warm.take() if self._warm is not None else None
        if started is not None and started.proc.poll() is not None:
            self._discard(started)  # died while waiting (it should not): start a fresh one
            started = None
        if started is None:
            try:
                started = self._start_python()
            except OSError as exc:
                return RunResult("sandbox_error", None, "", "", 0.0, message=f"cannot start: {exc}")
        cpu = limits.cpu_s or math.ceil(limits.wall_s) + 1
        data = payload(
            code,
            files,
            stdin_bytes,
            rlimits_for(
                cpu, limits.memory_mb, limits.processes, limits.file_size_mb, limits.open_files
            ),
        )
        begin = time.monotonic()
        try:
            sent = _send(started.payload_fd, data, begin + limits.wall_s)
            os.close(started.payload_fd)
            started.payload_fd = -1
            if not sent:  # never read its payload in time: a sandbox that could not start
                return RunResult(
                    "sandbox_error", None, "", "", time.monotonic() - begin,
                    message="the sandbox did not start in time",
                )  # fmt: skip
            return _collect(started.proc, limits, begin, self.isolation)
        finally:
            self._discard(started)

    def _start_python(self) -> Started:
        """Start a sandbox running the bootstrap with the ceiling limits; it waits for a payload."""
        uid = self._uids.get()
        read_fd, write_fd = os.pipe()
        try:
            assert self.python is not None
            argv = [self.python, "-I", "-B", "-c", BOOTSTRAP.format(fd=read_fd)]
            cmd = self._command(argv, self.ceiling, {}, rlimits=False)
            proc = _spawn(cmd, subprocess.DEVNULL, (read_fd,), "/", self._uid_if_root(uid))
        except BaseException:
            os.close(write_fd)
            self._uids.put(uid)
            raise
        finally:
            os.close(read_fd)
        return Started(proc, write_fd, uid)

    def _discard(self, started: Started) -> None:
        """Kill a sandbox (if still running), close our ends, give its uid back."""
        if started.proc.returncode is None:
            _kill_group(started.proc)
        for stream in (started.proc.stdout, started.proc.stderr):
            if stream is not None:
                stream.close()
        if started.payload_fd >= 0:
            os.close(started.payload_fd)
            started.payload_fd = -1
        self._uids.put(started.uid)

    def _uid_if_root(self, uid: int) -> int | None:
        """As root, bwrap runs as a throw-away uid: the kernel ignores RLIMIT_NPROC for root."""
        return uid if self._drop_privileges else None

    def _clamp(self, limits: Limits) -> Limits:
        c = self.ceiling
        return replace(
            limits,
            wall_s=min(limits.wall_s, c.wall_s),
            memory_mb=min(limits.memory_mb, c.memory_mb),
            processes=min(limits.processes, c.processes),
            file_size_mb=min(limits.file_size_mb, c.file_size_mb),
            open_files=min(limits.open_files, c.open_files),
        )

    def run(
        self,
        argv: list[str],
        *,
        stdin: str | bytes = b"",
        files: dict[str, bytes] | None = None,
        limits: Limits | None = None,
    ) -> RunResult:
        """Run `argv` in the sandbox with `files` (relative paths) placed in the work dir."""
        limits = self._clamp(limits or Limits())
        files = files or {}
        if (bad := _bad_file_name(files)) is not None:
            return bad
        if self.isolation == "none":
            return self._run_bare(argv, stdin, files, limits)
        uid = self._uids.get()
        fds: list[int] = []
        try:
            file_fds = {name: _memfd(data) for name, data in files.items()}
            fds.extend(file_fds.values())
            stdin_fd = _memfd(stdin.encode() if isinstance(stdin, str) else stdin)
            fds.append(stdin_fd)
            cmd = self._command(argv, limits, file_fds)
            return _execute(
                cmd,
                stdin_fd,
                tuple(file_fds.values()),
                limits,
                self.isolation,
                self._uid_if_root(uid),
            )
        finally:
            for fd in fds:
                os.close(fd)
            self._uids.put(uid)

    def _run_bare(
        self, argv: list[str], stdin: str | bytes, files: dict[str, bytes], limits: Limits
    ) -> RunResult:
        """Unsafe mode: rlimits only, files in a temporary host directory. Loudly unsafe."""
        import tempfile

        with tempfile.TemporaryDirectory(prefix="qwq-unsafe-run-") as tmp:
            for name, data in files.items():
                path = os.path.join(tmp, name)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as f:
                    f.write(data)
            stdin_fd = _memfd(stdin.encode() if isinstance(stdin, str) else stdin)
            try:
                cmd = self._command(argv, limits, {})
                return _execute(cmd, stdin_fd, (), limits, self.isolation, cwd=tmp)
            finally:
                os.close(stdin_fd)

    def _command(
        self, argv: list[str], limits: Limits, file_fds: dict[str, int], *, rlimits: bool = True
    ) -> list[str]:
        """bwrap + prlimit + argv. `rlimits=False` for the bootstrap, which sets its own."""
        cpu = limits.cpu_s or math.ceil(limits.wall_s) + 1
        prlimit = [
            "prlimit",
            f"--cpu={cpu}:{cpu + 1}",  # SIGXCPU at the soft limit, SIGKILL a second later
            f"--as={limits.memory_mb << 20}",
            f"--nproc={limits.processes}",
            f"--fsize={limits.file_size_mb << 20}",
            f"--nofile={limits.open_files}",
            "--core=0",
            "--",
        ] if rlimits else []  # fmt: skip
        if self.isolation == "none":
            return prlimit + argv
        cmd: list[str] = []
        cmd += [
            "bwrap",
            "--unshare-all",  # user, pid, net, ipc, uts, cgroup namespaces
            "--die-with-parent",
            "--new-session",
            "--uid", str(SANDBOX_UID),
            "--gid", str(SANDBOX_UID),
            "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
        ]  # fmt: skip
        for name in ("bin", "lib", "lib64", "sbin"):
            if os.path.islink(f"/{name}"):
                cmd += ["--symlink", os.readlink(f"/{name}"), f"/{name}"]
            elif os.path.isdir(f"/{name}"):
                cmd += ["--ro-bind", f"/{name}", f"/{name}"]
        cmd += [
            "--proc", "/proc",
            "--dev", "/dev",
            "--size", str(limits.tmpfs_mb << 20), "--tmpfs", "/tmp",
            "--size", str(limits.tmpfs_mb << 20), "--tmpfs", WORK_DIR,
        ]  # fmt: skip
        for name, fd in file_fds.items():
            parent = os.path.dirname(name)
            if parent:
                cmd += ["--dir", f"{WORK_DIR}/{parent}"]
            cmd += ["--file", str(fd), f"{WORK_DIR}/{name}"]
        cmd += [
            "--remount-ro", "/dev",  # bwrap's /dev is an unbounded tmpfs: no files there
            "--size", str(limits.tmpfs_mb << 20), "--tmpfs", "/dev/shm",
            "--remount-ro", "/",
            "--chdir", WORK_DIR,
            "--setenv", "HOME", WORK_DIR,
            "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8",
            "--unsetenv", "PYTHONPATH",
            "--",
        ]  # fmt: skip
        return cmd + prlimit + argv


def find_system_python() -> str:
    """A python3 under /usr (readable inside the sandbox), not a venv or a home-dir interpreter."""
    for path in _PYTHON_CANDIDATES:
        if os.access(path, os.X_OK):
            return os.path.realpath(path) if os.path.realpath(path).startswith("/usr") else path
    raise SandboxUnavailable(
        "no system python3 under /usr: install one (Debian/Ubuntu: apt-get install python3)"
    )


def _memfd(data: bytes) -> int:
    """An anonymous in-memory file holding `data`, rewound, inheritable by the child."""
    fd = os.memfd_create("sandbox", 0)
    os.write(fd, data) if len(data) < (1 << 20) else _write_all(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _send(fd: int, data: bytes, deadline: float) -> bool:
    """Write `data` to a pipe before `deadline`. False if the reader was not taking it in time; a
    reader that died counts as sent (its own output says what went wrong)."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_WRITE)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                return False
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                return True
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _bad_file_name(files: dict[str, bytes]) -> RunResult | None:
    for name in files:
        if not name or name.startswith("/") or ".." in name.split("/"):
            return RunResult("sandbox_error", None, "", "", 0.0, message=f"bad file name {name!r}")
    return None


def _spawn(
    cmd: list[str], stdin: int, pass_fds: tuple[int, ...], cwd: str, uid: int | None = None
) -> subprocess.Popen[bytes]:
    """Start `cmd` as the leader of a new process group, output on pipes, a minimal environment,
    as `uid` (and the same gid, no supplementary groups) when given."""
    ids: dict[str, object] = {} if uid is None else {"user": uid, "group": uid, "extra_groups": []}
    return subprocess.Popen(
        cmd,
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=pass_fds,
        start_new_session=True,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        cwd=cwd,
        **ids,  # type: ignore[arg-type]
    )


def _execute(
    cmd: list[str],
    stdin_fd: int,
    pass_fds: tuple[int, ...],
    limits: Limits,
    isolation: Isolation,
    uid: int | None = None,
    cwd: str = "/",
) -> RunResult:
    """Start `cmd` and collect its result."""
    start = time.monotonic()
    try:
        proc = _spawn(cmd, stdin_fd, pass_fds, cwd, uid)
    except OSError as exc:
        return RunResult("sandbox_error", None, "", "", 0.0, message=f"cannot start: {exc}")
    return _collect(proc, limits, start, isolation)


def _collect(
    proc: subprocess.Popen[bytes], limits: Limits, start: float, isolation: Isolation
) -> RunResult:
    """Read capped output until exit or the deadline, kill the group, classify."""
    deadline = start + limits.wall_s
    out = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    total = 0
    status: RunStatus = "finished"
    with selectors.DefaultSelector() as sel:
        for stream in out:
            sel.register(stream, selectors.EVENT_READ)
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                status = "timeout"
                break
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                total += len(chunk)
                buf = out[key.fileobj]
                if len(buf) < limits.output_bytes:
                    buf += chunk[: limits.output_bytes - len(buf)]
            if total > limits.output_hard_bytes:
                status = "output_limit"
                break
    if status == "finished":
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            status = "timeout"  # closed its output but kept running
    _kill_group(proc)
    wall = time.monotonic() - start
    rc = proc.returncode
    if status == "finished" and rc is not None and rc in (128 + signal.SIGXCPU, -signal.SIGXCPU):
        status = "timeout"  # the CPU-seconds limit
    for stream in out:
        stream.close()
    stdout, stderr = bytes(out[proc.stdout]), bytes(out[proc.stderr])
    truncated = total > len(stdout) + len(stderr)
    if isolation == "bwrap" and rc == 1 and stderr.startswith(b"bwrap:"):
        return RunResult(
            "sandbox_error", rc, "", stderr.decode(errors="replace"), wall, message="bwrap failed"
        )
    return RunResult(
        status,
        None if status in ("timeout", "output_limit") else rc,
        stdout.decode(errors="replace"),
        stderr.decode(errors="replace"),
        wall,
        truncated=truncated,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL bwrap's whole process group, then wait until its PID namespace is empty.

    bwrap's death takes the namespace with it, but the kernel tears a big one (a fork bomb's)
    down asynchronously: without the sweep, survivors outlive the run and, sharing the uid, eat
    the next run's process limit."""
    namespace = _sandbox_pid_namespace(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if namespace is not None:
        _sweep_namespace(namespace, time.monotonic() + SWEEP_S)


SWEEP_S = 10.0  # how long to keep killing a namespace's survivors before giving up


def _pid_namespace(pid: int | str) -> str | None:
    """The PID-namespace link of `pid` ("pid:[4026532]"), None if gone, a zombie or not ours."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def _children(pid: int, use_children_file: bool = True) -> list[str]:
    """The child pids of `pid`: from /proc's children file, else (a kernel without
    CONFIG_PROC_CHILDREN) by scanning every process's parent pid."""
    if use_children_file:
        try:
            return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            pass
    return [e.name for e in Path("/proc").iterdir() if _parent(e.name) == pid]


def _parent(pid: str) -> int | None:
    """The parent pid of `pid` (from /proc/PID/stat), None if it is gone or not a process."""
    if not pid.isdigit():
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def _is_zombie(pid: str) -> bool:
    """Dead and waiting to be reaped (bwrap's init, reparented to the host's init): harmless."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2 :].startswith(("Z", "X"))


def _sandbox_pid_namespace(bwrap_pid: int) -> str | None:
    """The namespace bwrap made: that of a child of `bwrap_pid` not in bwrap's own namespace."""
    own = _pid_namespace(bwrap_pid)
    for child in _children(bwrap_pid):
        namespace = _pid_namespace(child)
        if namespace is not None and namespace != own:
            return namespace
    return None


def _sweep_namespace(namespace: str, deadline: float) -> None:
    """SIGKILL every host process still in `namespace` until none is left or `deadline` passes."""
    while True:
        left = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and _pid_namespace(entry.name) == namespace
            and not _is_zombie(entry.name)
        ]
        if not left or time.monotonic() > deadline:
            return
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
