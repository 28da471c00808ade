"""The standalone binary: PyInstaller builds packaging/qwq-chat.spec, then the binary itself runs.

One build per test session (about 1-2 minutes on 2 cores) into a temp dir; each test runs the built
`qwq-chat` as a subprocess, with no Python environment to fall back on (PYTHONPATH cleared, cwd
outside the checkout).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from qwq_chat.app import __version__

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "packaging" / "qwq-chat.spec"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pyinstaller")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "PyInstaller",
            "--noconfirm",
            "--log-level",
            "WARN",
            "--distpath",
            str(out / "dist"),
            "--workpath",
            str(out / "work"),
            str(SPEC),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=out,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    exe = out / "dist" / "qwq-chat" / ("qwq-chat.exe" if os.name == "nt" else "qwq-chat")
    assert exe.is_file()
    return exe


def run_binary(exe: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    return subprocess.run(
        [str(exe), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def test_binary_version(binary: Path, tmp_path: Path) -> None:
    done = run_binary(binary, "--version", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"qwq-chat {__version__}"


def test_binary_bundles_llama_cpp_and_assets(binary: Path, tmp_path: Path) -> None:
    internal = binary.parent / "_internal"
    libs = {p.name for p in (internal / "llama_cpp" / "lib").iterdir()}
    assert any(name.startswith("libllama") or name.startswith("llama") for name in libs), libs
    shipped = internal / "qwq_chat" / "assets" / "chat_template.jinja"
    assert shipped.read_bytes() == (REPO / "assets" / "chat_template.jinja").read_bytes()
    # The training stack stays out of the bundle.
    assert not (internal / "torch").exists() and not (internal / "transformers").exists()


def test_binary_doctor_loads_llama_cpp(binary: Path, tmp_path: Path) -> None:
    done = run_binary(binary, "doctor", "--json", cwd=tmp_path)
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["python"]["details"]["frozen"] is True
    llama = checks["llama-cpp-python"]
    assert llama["status"] == "ok", llama["summary"]  # the bundled shared libraries load
    import llama_cpp

    assert llama["details"]["version"] == llama_cpp.__version__
    assert llama["details"]["gpu_offload"] is bool(llama_cpp.llama_supports_gpu_offload())


CONVERSATION = [
    {"role": "system", "content": "You are a careful assistant."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "<think>\nAdd them.\n</think>\n\n4"},
    {"role": "user", "content": "And 3+3?"},
]


def run_python_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The same command through the installed Python package, as the reference."""
    return subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def test_binary_render_prompt_matches_the_python_package(binary: Path, tmp_path: Path) -> None:
    conversation = tmp_path / "conversation.json"
    conversation.write_text(json.dumps(CONVERSATION), encoding="utf-8")
    done = run_binary(binary, "render-prompt", str(conversation), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("<|im_start|>system\nYou are a careful assistant.<|im_end|>\n")
    assert "Add them." not in text  # the template strips earlier reasoning
    assert text.endswith("<|im_start|>assistant\n<think>\n")
    assert text == run_python_cli("render-prompt", str(conversation), cwd=tmp_path).stdout


def answer_events(stdout: str) -> list[dict]:
    events = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [e for e in events if e["type"] != "stats"]  # stats hold timings


def test_binary_ask_runs_the_tiny_gguf(
    binary: Path, tmp_path: Path, tiny_gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QWQ_CHAT_SAMPLING__SEED", "7")  # same seed, same llama.cpp: same tokens
    args = ("ask", "What is 2+2?", "--model", str(tiny_gguf), "--json", "--max-tokens", "12")
    args += ("--n-ctx", "512", "--no-save")
    done = run_binary(binary, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    stats = [e for e in lines if e["type"] == "stats"]
    assert len(stats) == 1 and stats[0]["completion_tokens"] == 12
    assert lines[-1]["type"] == "done" and lines[-1]["error"] is None
    assert {e["type"] for e in lines[:-2]} <= {"reasoning", "answer"} and lines[:-2]
    reference = run_python_cli(*args, cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    assert answer_events(done.stdout) == answer_events(reference.stdout)


@pytest.mark.skipif(
    shutil.which("tmux") is None, reason="tmux not installed (apt-get install tmux)"
)
def test_binary_opens_the_tui_in_a_terminal(binary: Path, tmp_path: Path, tiny_gguf: Path) -> None:
    """The frozen app finds Textual's and our stylesheets, loads the model, and quits cleanly."""
    session = f"qwq-pkg-{os.getpid()}"
    marker = tmp_path / "exit-status"
    env_vars = " ".join(
        f"{k}={shlex.quote(os.environ[k])}" for k in os.environ if k.startswith("QWQ_CHAT_")
    )
    command = (
        f"env -u PYTHONPATH {env_vars} {shlex.quote(str(binary))} --model "
        f"{shlex.quote(str(tiny_gguf))} --n-ctx 512; echo $? > {shlex.quote(str(marker))}"
    )
    tmux = ["tmux", "-L", session]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "120", "-y", "30", command],
        check=True,
        timeout=30,
        cwd=tmp_path,
    )
    try:
        screen = ""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            screen = subprocess.run(
                [*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
            if "ready" in screen and tiny_gguf.name in screen:
                break
            time.sleep(0.5)
        assert "ready" in screen and tiny_gguf.name in screen, screen
        assert "New chat" in screen  # the footer: Textual's CSS and ours were found
        subprocess.run([*tmux, "send-keys", "-t", session, "C-q"], check=True, timeout=10)
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.read_text().strip() == "0"
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=10)


def test_binary_says_what_is_missing_for_training_commands(
    binary: Path, tmp_path: Path, tiny_checkpoint: Path, tiny_gguf: Path
) -> None:
    """`verify` needs transformers, which the binary leaves out: one clear line, exit 2."""
    done = run_binary(binary, "verify", str(tiny_checkpoint), str(tiny_gguf), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "error: this command needs transformers" in done.stderr
    assert "pip install 'qwq-chat[train]'" in done.stderr
