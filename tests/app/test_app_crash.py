"""kill -9 in the middle of an answer loses nothing: the partial answer is there after a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from qwq_chat.app.messages import UNFINISHED
from qwq_chat.app.session import Session
from qwq_chat.app.store import open_store


def test_kill_9_mid_stream_then_restart_recovers_the_partial_answer(tiny_gguf: Path) -> None:
    env = dict(os.environ)  # carries the per-test QWQ_CHAT_*_DIR from the isolated_state fixture
    proc = subprocess.Popen(
        [sys.executable, "-m", "qwq_chat.app", "ask", "Write a very long story.", "--json",
         "--model", str(tiny_gguf), "--n-ctx", "4096", "--max-tokens", "4000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )  # fmt: skip
    printed = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        first_at = None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "ask ended before it could be killed"
            event = json.loads(line)
            assert event["type"] == "reasoning"
            printed += event["text"]
            first_at = first_at or time.monotonic()
            if time.monotonic() - first_at > 1.5 and len(printed) > 50:  # several persists ago
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL

    store = open_store()  # "restart": a fresh process would open exactly this file
    assert store.warning is None
    [conversation] = store.list_conversations()
    user, assistant = store.messages(conversation.id)
    assert user.content == "Write a very long story."
    assert assistant.status == UNFINISHED  # marked as interrupted
    assert assistant.reasoning  # the partial reasoning survived
    assert printed.startswith(assistant.reasoning)
    assert len(assistant.reasoning) > len(printed) / 2  # at most a throttle interval behind
    # The app can continue the conversation after the restart.
    reopened = Session(store, None, conversation.id)
    assert reopened.messages[-1].unfinished
