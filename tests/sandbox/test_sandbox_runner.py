"""The bubblewrap runner on its own: isolation facts, limits, output caps, refusing to run bare."""

from __future__ import annotations

import os
import time

import pytest
from qwq_chat.app.sandbox.runner import Limits, Sandbox, SandboxUnavailable


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    sb = Sandbox()
    sb.check()
    return sb


def test_runs_code_with_stdin_and_files(sandbox: Sandbox) -> None:
    r = sandbox.run_python(
        "import sys; print(sys.stdin.read().upper(), open('data/in.txt').read())",
        stdin="hello",
        files={"data/in.txt": b"file contents"},
    )
    assert r.ok, r
    assert r.stdout == "HELLO file contents\n"


def test_code_runs_as_nobody_in_its_own_namespaces(sandbox: Sandbox) -> None:
    r = sandbox.run_python(
        "import os, socket\n"
        "print(os.getuid(), os.getgid(), socket.gethostname())\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        "print(os.getcwd(), sorted(os.listdir('/')))\n"
    )
    uid_line, procs, fs = r.stdout.splitlines()
    assert uid_line == "65534 65534 sandbox"
    assert len(eval(procs)) <= 3  # bwrap's init, the program, maybe prlimit's exec leftover
    assert fs.startswith("/work ")
    for hidden in ("etc", "home", "root", "var"):
        assert f"'{hidden}'" not in fs


def test_limits_are_applied_inside(sandbox: Sandbox) -> None:
    r = sandbox.run_python(
        "import resource as r\n"
        "for n in ('RLIMIT_AS','RLIMIT_NPROC','RLIMIT_FSIZE','RLIMIT_NOFILE','RLIMIT_CPU','RLIMIT_CORE'):\n"
        "    print(n, r.getrlimit(getattr(r, n))[0])\n",
        limits=Limits(wall_s=3, memory_mb=300, processes=20, file_size_mb=2, open_files=50),
    )
    got = dict(line.split() for line in r.stdout.splitlines())
    assert got == {
        "RLIMIT_AS": str(300 << 20),
        "RLIMIT_NPROC": "20",
        "RLIMIT_FSIZE": str(2 << 20),
        "RLIMIT_NOFILE": "50",
        "RLIMIT_CPU": "4",
        "RLIMIT_CORE": "0",
    }


def test_wall_clock_timeout(sandbox: Sandbox) -> None:
    start = time.monotonic()
    r = sandbox.run_python("import time; time.sleep(60)", limits=Limits(wall_s=1))
    assert r.status == "timeout" and r.return_code is None
    assert time.monotonic() - start < 3


def test_cpu_limit_counts_as_timeout(sandbox: Sandbox) -> None:
    r = sandbox.run_python("while True: pass", limits=Limits(wall_s=10, cpu_s=1))
    assert r.status == "timeout"
    assert r.wall_s < 5


def test_memory_limit(sandbox: Sandbox) -> None:
    r = sandbox.run_python("x = bytearray(400 << 20)", limits=Limits(memory_mb=200))
    assert r.memory_exceeded, r
    ok = sandbox.run_python("x = bytearray(50 << 20); print(len(x))", limits=Limits(memory_mb=200))
    assert ok.stdout == f"{50 << 20}\n"


def test_output_is_capped(sandbox: Sandbox) -> None:
    r = sandbox.run_python("print('y' * 100_000)", limits=Limits(output_bytes=1000))
    assert r.ok and r.truncated and r.stdout == "y" * 1000


def test_bad_file_names_are_refused(sandbox: Sandbox) -> None:
    for name in ("../escape.py", "/etc/x", ""):
        r = sandbox.run_python("print(1)", files={name: b"x"})
        assert r.status == "sandbox_error" and "bad file name" in r.message


def test_refuses_without_bubblewrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
        Sandbox().check()


def test_unsafe_mode_runs_bare_only_when_asked() -> None:
    r = Sandbox(isolation="none").run_python(f"import os; print(os.getuid() == {os.getuid()})")
    assert r.stdout == "True\n"  # really on the host: which is why it needs a loud explicit flag


def test_children_are_found_with_and_without_procs_children_file() -> None:
    """The namespace sweep finds bwrap's child from /proc's children file, or (kernels without
    CONFIG_PROC_CHILDREN) by every process's parent pid: both ways give the same children."""
    import subprocess

    from qwq_chat.app.sandbox.runner import _children

    kids = [subprocess.Popen(["sleep", "30"]) for _ in range(2)]
    try:
        expected = sorted(str(k.pid) for k in kids)
        assert sorted(set(_children(os.getpid())) & set(expected)) == expected
        assert sorted(set(_children(os.getpid(), use_children_file=False)) & set(expected)) == (
            expected
        )
    finally:
        for k in kids:
            k.kill()
            k.wait()
