"""Hostile programs through the real HTTP server: each is contained, gets the right verdict, and the
server is healthy afterwards (and a normal program still passes)."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from qwq_chat.app.sandbox.server import BackgroundServer, ServerConfig, serve_in_background  # noqa: E402
from sandbox_helpers import processes_with  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serve_in_background(config=ServerConfig(concurrency=2)) as s:
        yield s


def evaluate(
    server: BackgroundServer, code: str, tests: list[dict] | None = None, timeout: float = 2.0
) -> dict:
    body = {
        "code": code,
        "tests": tests or [{"stdin": "", "expected_stdout": "ok\n"}],
        "timeout": timeout,
    }
    r = httpx.post(server.url + "/evaluate", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["tests"][0]


@pytest.fixture(autouse=True)
def still_healthy_afterwards(server: BackgroundServer) -> Iterator[None]:
    yield
    health = httpx.get(server.url + "/health", timeout=10).json()
    assert health["status"] == "ok" and health["isolation"] == "bwrap"
    assert evaluate(server, "print('ok')")["verdict"] == "passed"


def marked(code: str, marker: str) -> str:
    """`code` re-executed with `marker` in its command line (inherited by every fork), so the host
    can look for survivors: sandboxed code otherwise arrives through a pipe, not argv."""
    return (
        f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', {code!r}, {marker!r}])\n"
    )


def test_fork_bomb(server: BackgroundServer) -> None:
    marker = f"forkbomb-{uuid.uuid4().hex}"
    bomb = "import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.01)\n"
    start = time.monotonic()
    res = evaluate(server, marked(bomb, marker), timeout=2)
    assert res["verdict"] == "timeout"
    assert time.monotonic() - start < 8
    assert processes_with(marker) == []


def test_sleeping_code_dies_with_a_killed_server() -> None:
    import subprocess

    from qwq_chat.app.sandbox.client import SandboxClient
    from qwq_chat.app.sandbox.server import free_port

    marker = f"orphan-{uuid.uuid4().hex}"
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwq_chat.app.sandbox.server", "--port", str(port)],
        stderr=subprocess.DEVNULL,
    )
    try:
        client = SandboxClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                client.health()
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
        body = {"code": marked("import time; time.sleep(1000)", marker), "run_timeout": 60}
        with pytest.raises(httpx.HTTPError):
            httpx.post(client.url + "/run_code", json=body, timeout=1.5)
        assert processes_with(marker), "the run should be going when the server dies"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []  # bwrap --die-with-parent took it down


def test_memory_bomb(server: BackgroundServer) -> None:
    res = evaluate(server, "x = []\nwhile True:\n    x.append(bytearray(50 << 20))")
    assert res["verdict"] == "memory_limit"


def test_infinite_loop(server: BackgroundServer) -> None:
    assert evaluate(server, "while True:\n    pass", timeout=1)["verdict"] == "timeout"


def test_sleep_forever(server: BackgroundServer) -> None:
    start = time.monotonic()
    assert evaluate(server, "import time\ntime.sleep(10**6)", timeout=1)["verdict"] == "timeout"
    assert time.monotonic() - start < 5


def test_daemon_child_does_not_outlive_the_run(server: BackgroundServer) -> None:
    marker = f"daemon-{uuid.uuid4().hex}"
    code = (
        "import os, sys\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        f"        os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(600)', '{marker}'])\n"
        "    os._exit(0)\n"
        "import time; time.sleep(0.3)\n"
        "print('ok')\n"
    )
    assert evaluate(server, code)["verdict"] == "passed"
    time.sleep(0.2)
    assert processes_with(marker) == []


def test_no_network_outbound_or_to_the_server(server: BackgroundServer) -> None:
    code = (
        "import socket\n"
        f"for host, port in [('1.1.1.1', 80), ('127.0.0.1', {server.port}), ('localhost', {server.port})]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=1)\n"
        "        print('CONNECTED', host)\n"
        "    except OSError as e:\n"
        "        pass\n"
        "print('ok')\n"
    )
    res = evaluate(server, code)
    assert res["verdict"] == "passed", res
    assert "CONNECTED" not in res["stdout"]


def test_cannot_read_host_files(server: BackgroundServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    home = Path.home()
    code = (
        "import os\n"
        f"for p in ['/etc/shadow', '/etc/passwd', {str(secret)!r}, {str(home)!r}, '/root', '/home']:\n"
        "    try:\n"
        "        print('READ', p, open(p).read()[:50] if os.path.isfile(p) else os.listdir(p))\n"
        "    except OSError:\n"
        "        pass\n"
        "print('ok')\n"
    )
    res = evaluate(server, code)
    assert res["verdict"] == "passed", res
    assert "READ" not in res["stdout"] and "TOP-SECRET" not in res["stdout"]


def test_cannot_see_other_runs_work_dirs(server: BackgroundServer) -> None:
    import concurrent.futures

    writer = "open('other-run-secret', 'w').write('x')\nimport time; time.sleep(1.5)\nprint('ok')"
    reader = (
        "import os, time\ntime.sleep(0.5)\n"
        "found = [os.path.join(d, f) for d, _, fs in os.walk('/') if not d.startswith('/proc')"
        " for f in fs if f == 'other-run-secret']\n"
        "print('ok' if not found else found)\n"
    )
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        w = pool.submit(evaluate, server, writer, None, 5)
        r = pool.submit(evaluate, server, reader, None, 5)
        assert w.result()["verdict"] == "passed"
        assert r.result()["verdict"] == "passed", r.result()


def test_cannot_write_outside_the_work_dir(server: BackgroundServer) -> None:
    marker = f"escape-{uuid.uuid4().hex}"
    code = (
        f"for d in ['/', '/usr', '/usr/lib', '/dev', '/proc']:\n"
        "    try:\n"
        f"        open(d.rstrip('/') + '/{marker}', 'w').write('x')\n"
        "        print('WROTE', d)\n"
        "    except OSError:\n"
        "        pass\n"
        "open('inside.txt', 'w').write('fine')\n"
        "print('ok')\n"
    )
    res = evaluate(server, code)
    assert res["verdict"] == "passed", res
    assert "WROTE" not in res["stdout"]
    assert not any(Path(d, marker).exists() for d in ("/", "/usr", "/usr/lib", "/tmp"))


def test_filling_the_disk(server: BackgroundServer) -> None:
    one_big_file = "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))"
    res = evaluate(server, one_big_file)
    assert res["verdict"] == "runtime_error" and "File too large" in res["stderr"]
    for d in ("/work", "/tmp", "/dev/shm"):  # many files below the size limit: the tmpfs fills up
        many_files = (
            "i = 0\nwhile True:\n"
            f"    open('{d}/f%d' % i, 'wb').write(b'x' * (8 << 20))\n"
            "    i += 1\n"
        )
        res = evaluate(server, many_files)
        assert res["verdict"] == "runtime_error" and "No space left" in res["stderr"], res


def test_flooding_stdout(server: BackgroundServer) -> None:
    res = evaluate(server, "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)", timeout=5)
    assert res["verdict"] == "output_limit"
    assert len(res["stdout"]) <= 2000


def test_ignoring_sigterm(server: BackgroundServer) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    time.sleep(0.01)"
    start = time.monotonic()
    assert evaluate(server, code, timeout=1)["verdict"] == "timeout"
    assert time.monotonic() - start < 5


def test_killing_its_parent(server: BackgroundServer) -> None:
    code = (
        "import os, signal\n"
        "for pid in {os.getppid(), 1}:\n"
        "    try:\n"
        "        os.kill(pid, signal.SIGKILL)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('ok')\n"
    )
    # bwrap's init cannot be killed from inside; whatever happens, the verdict is about this run only
    assert evaluate(server, code)["verdict"] in {"passed", "runtime_error"}


def test_cannot_read_host_proc(server: BackgroundServer) -> None:
    import os

    code = (
        "import os\n"
        "pids = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        f"try:\n    print('ENV', open('/proc/{os.getpid()}/environ').read()[:50])\nexcept OSError:\n    pass\n"
        "print('ok' if max(pids) < 10 else pids)\n"
    )
    res = evaluate(server, code)
    assert res["verdict"] == "passed", res
    assert "ENV" not in res["stdout"]
