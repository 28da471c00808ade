"""The HTTP server: SandboxFusion's /run_code shape, /evaluate verdicts, bad requests, back-pressure,
the `qwq-chat sandbox serve` command, and refusing to run without isolation."""

from __future__ import annotations

import base64
import concurrent.futures
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from qwq_chat.app.sandbox.client import SandboxClient
from qwq_chat.app.sandbox.server import (
    BackgroundServer,
    ServerConfig,
    free_port,
    launch_subprocess,
    serve_in_background,
)

QWQ = str(Path(sys.executable).with_name("qwq-chat"))


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serve_in_background(config=ServerConfig(concurrency=2)) as s:
        yield s


def post(server: BackgroundServer, path: str, body: object) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def test_health(server: BackgroundServer) -> None:
    h = httpx.get(server.url + "/health").json()
    assert h["status"] == "ok" and h["isolation"] == "bwrap" and h["languages"] == ["python"]


def test_run_code_speaks_sandboxfusion(server: BackgroundServer) -> None:
    body = {
        "code": "import sys\nprint(sys.stdin.read()[::-1], open('lib/data.txt').read())",
        "language": "python",
        "compile_timeout": 10,
        "run_timeout": 5,
        "memory_limit_MB": -1,
        "stdin": "abc",
        "files": {"lib/data.txt": base64.b64encode(b"payload").decode()},
        "fetch_files": [],
    }
    r = post(server, "/run_code", body).json()
    assert r["status"] == "Success"
    assert r["compile_result"] is None and r["files"] == {}
    run = r["run_result"]
    assert run["status"] == "Finished" and run["return_code"] == 0
    assert run["stdout"] == "cba payload\n" and run["stderr"] == ""
    assert 0 < run["execution_time"] < 5


def test_run_code_failures(server: BackgroundServer) -> None:
    r = post(server, "/run_code", {"code": "raise SystemExit(3)"}).json()
    assert r["status"] == "Failed" and r["run_result"]["return_code"] == 3
    r = post(server, "/run_code", {"code": "while True: pass", "run_timeout": 1}).json()
    assert r["status"] == "Failed" and r["run_result"]["status"] == "TimeLimitExceeded"
    r = post(server, "/run_code", {"code": "int main(){}", "language": "cpp"}).json()
    assert r["status"] == "SandboxError" and "python only" in r["message"]


def test_evaluate_gives_per_test_verdicts(server: BackgroundServer) -> None:
    code = (
        "def add(a, b):\n    return a + b\n\n"
        "if __name__ == '__main__':\n"
        "    import sys\n    a, b = map(int, sys.stdin.read().split())\n    print(add(a, b))\n"
    )
    tests = [
        {"stdin": "2 3", "expected_stdout": "5\n"},
        {"stdin": "2 3", "expected_stdout": "6"},
        {"stdin": "x y", "expected_stdout": "0"},
        {"assert": "assert add(1, 2) == 3"},
        {"assert": "assert candidate(1, 2) == 4"},
        {"assert": "import time\nwhile True: pass"},
        {"assert": "x = bytearray(1 << 40)"},
    ]
    r = post(
        server, "/evaluate", {"code": code, "tests": tests, "entry_point": "add", "timeout": 1}
    )
    assert r.status_code == 200
    out = r.json()
    assert [t["verdict"] for t in out["tests"]] == [
        "passed",
        "wrong_answer",
        "runtime_error",
        "passed",
        "wrong_answer",
        "timeout",
        "memory_limit",
    ]
    assert out["passed"] == 2 and out["total"] == 7 and not out["all_passed"]
    assert out["pass_fraction"] == pytest.approx(2 / 7)


def test_output_comparison_ignores_trailing_whitespace_only(server: BackgroundServer) -> None:
    tests = [
        {"stdin": "", "expected_stdout": "1\n2"},
        {"stdin": "", "expected_stdout": "1 \n2\n\n"},
        {"stdin": "", "expected_stdout": "12"},
    ]
    out = post(server, "/evaluate", {"code": "print(1)\nprint(2)", "tests": tests}).json()
    assert [t["verdict"] for t in out["tests"]] == ["passed", "passed", "wrong_answer"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"tests": [{"assert": "pass"}]}, 'missing field "code"'),
        ({"code": "x", "tests": []}, '"tests" is empty'),
        ({"code": "x", "tests": [{"foo": 1}]}, 'either "assert" or "expected_stdout"'),
        ({"code": 5, "tests": [{"assert": "pass"}]}, 'field "code" must be str'),
        ({"code": "x", "tests": [{"assert": "pass"}], "timeout": "soon"}, "must be numbers"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_bad_requests_get_400_with_a_reason(
    server: BackgroundServer, body: object, message: str
) -> None:
    r = post(server, "/evaluate", body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_bad_json_and_bad_base64(server: BackgroundServer) -> None:
    r = httpx.post(server.url + "/run_code", content=b"{not json", timeout=10)
    assert r.status_code == 400 and "not JSON" in r.json()["error"]
    r = post(server, "/run_code", {"code": "x", "files": {"a": "!!!"}})
    assert r.status_code == 400 and "base64" in r.json()["error"]


def test_back_pressure_answers_429_with_retry_after_and_client_retries() -> None:
    config = ServerConfig(concurrency=1, max_queue=2)
    with serve_in_background(config=config) as s:
        slow = {"code": "import time; time.sleep(1.5)", "run_timeout": 5}
        with concurrent.futures.ThreadPoolExecutor(6) as pool:
            futures = [
                pool.submit(httpx.post, s.url + "/run_code", json=slow, timeout=30)
                for _ in range(6)
            ]
            codes = [f.result().status_code for f in futures]
            rejected = [f.result() for f in futures if f.result().status_code == 429]
        assert codes.count(200) == 2 and codes.count(429) == 4
        assert all(int(r.headers["Retry-After"]) >= 1 for r in rejected)
        # the client waits as told and gets through
        result = SandboxClient(s.url).run_code("print('after')")
        assert result["run_result"]["stdout"] == "after\n"


def test_unsafe_flag_is_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.WARNING),
        serve_in_background(config=ServerConfig(unsafe_no_isolation=True)) as s,
    ):
        assert httpx.get(s.url + "/health").json()["isolation"] == "none"
    assert any("UNSAFE" in r.message and r.levelno == logging.WARNING for r in caplog.records)


def test_cli_serve_answers_and_stops() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [QWQ, "sandbox", "serve", "--port", str(port)], stderr=subprocess.PIPE, text=True
    )
    try:
        client = SandboxClient(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                assert client.health()["isolation"] == "bwrap"
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.1)
        out = client.evaluate("print(input())", [{"stdin": "hi", "expected_stdout": "hi"}])
        assert out["all_passed"]
    finally:
        proc.terminate()
        proc.wait(15)


def test_cli_refuses_without_isolation() -> None:
    env = {**os.environ, "PATH": "/nonexistent"}
    r = subprocess.run(
        [QWQ, "sandbox", "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "bubblewrap is not installed" in r.stderr and "--unsafe-no-isolation" in r.stderr
    assert "Traceback" not in r.stderr


def test_launch_subprocess_helper() -> None:
    with launch_subprocess() as s:
        assert SandboxClient(s.url).run_code("print(6*7)")["run_result"]["stdout"] == "42\n"
    assert s.proc.poll() is not None


def test_oversized_body_is_refused() -> None:
    with serve_in_background(config=ServerConfig(max_body_bytes=1000)) as s:
        r = httpx.post(s.url + "/run_code", json={"code": "#" * 2000}, timeout=10)
        assert r.status_code == 400 and "the limit is 1000" in r.json()["error"]
