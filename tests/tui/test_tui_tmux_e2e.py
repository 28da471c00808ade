"""End to end: the real `qwq-chat` command in a real terminal (tmux), on the real tiny QwQ GGUF.

Typed keys go through tmux to the app; what the user would see is read back with capture-pane.
The tiny model has random weights, so the reasoning budget is what makes it close `</think>` and
answer; the budget's closing sentence is plain English we can look for in the reasoning pane.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

QWQ_CHAT = Path(sys.executable).with_name("qwq-chat")


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def capture(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_screen(session: str, predicate, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = capture(session)
        if predicate(screen):
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"screen never matched; last screen:\n{screen}")
        time.sleep(0.3)


def test_qwq_chat_in_tmux(tiny_gguf: Path, tmp_path: Path) -> None:
    session = f"qwq-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        "QWQ_CHAT_CONFIG_DIR": str(tmp_path / "config"),
        "QWQ_CHAT_DATA_DIR": str(tmp_path / "data"),
        "QWQ_CHAT_CACHE_DIR": str(tmp_path / "cache"),
        "QWQ_CHAT_LOG_DIR": str(tmp_path / "log"),
        "QWQ_CHAT_MAX_TOKENS": "24",
        "HF_HUB_OFFLINE": "1",
        "TERM": "xterm-256color",
    }
    command = [
        "env",
        *(f"{k}={v}" for k, v in env.items()),
        str(QWQ_CHAT),
        "--model", str(tiny_gguf),
        "--reasoning-budget", "6",
        "--n-ctx", "512",
        "--n-gpu-layers", "0",
    ]  # fmt: skip
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", " ".join(command))
    try:
        tmux(
            "resize-window", "-t", session, "-x", "120", "-y", "40"
        )  # whatever the server's defaults
        wait_screen(session, lambda s: "ready │" in s)  # status line: model loaded
        tmux("send-keys", "-t", session, "-l", "What is 2+2?")
        tmux("send-keys", "-t", session, "Enter")
        screen = wait_screen(session, lambda s: "▶ Thought for" in s and "tok/s" in s)
        lines = screen.splitlines()
        # the user's message, the collapsed reasoning header, then answer text below it
        assert any("What is 2+2?" in line for line in lines)
        header = next(i for i, line in enumerate(lines) if "▶ Thought for" in line)
        assert "Considering the limited time" not in screen  # collapsed: reasoning not shown
        below = [line.split("▕", 1)[-1].strip() for line in lines[header + 1 :]]
        assert any(text and not text.startswith(("▊", "ready")) for text in below[:6]), screen
        # llama.cpp's logs went to the log file, not over the TUI
        assert "llama_" not in screen and "load_tensors" not in screen
        assert (tmp_path / "log" / "llama.log").stat().st_size > 0
        # expand the reasoning: its text appears; collapse again: it is gone
        tmux("send-keys", "-t", session, "C-t")
        wait_screen(session, lambda s: "▼ Thought for" in s and "Considering the limited" in s)
        tmux("send-keys", "-t", session, "C-t")
        wait_screen(session, lambda s: "▶ Thought for" in s and "Considering the limited" not in s)
        # the conversation is in the SQLite file, reasoning apart from the answer
        db = next((tmp_path / "data").glob("*.db"))
        with sqlite3.connect(db) as conn:
            rows = conn.execute(
                "SELECT role, content, reasoning FROM messages ORDER BY position"
            ).fetchall()
        assert rows[0][:2] == ("user", "What is 2+2?")
        assert rows[1][0] == "assistant" and rows[1][1].strip()
        assert "Considering the limited time" in rows[1][2]
        tmux("send-keys", "-t", session, "C-q")
        deadline = time.monotonic() + 20
        while session in subprocess.run(["tmux", "ls"], capture_output=True, text=True).stdout:
            assert time.monotonic() < deadline, "qwq-chat did not quit on ctrl+q"
            time.sleep(0.2)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
