"""`qwq-chat serve` safety: local by default, no other address without a key, history only with
--save; and /v1/completions for raw prompts."""

# ruff: noqa: F811 (`api` is a fixture imported from serve_helpers)

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from qwq_chat.app.errors import UserError
from qwq_chat.app.serve.cli import check_bind, is_loopback
from qwq_chat.app.store import open_store
from scripted_engine import ScriptedEngine, qwq_turn
from serve_helpers import Api, api  # noqa: F401 (the fixture)


def test_another_address_without_an_api_key_is_refused_with_a_message(tiny_gguf: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", "serve", "--host", "0.0.0.0", "--model",
         str(tiny_gguf)],
        capture_output=True, text=True, timeout=60, env={**os.environ, "QWQ_CHAT_API_KEY": ""},
    )  # fmt: skip
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in done.stderr
    assert "--api-key" in done.stderr and "Traceback" not in done.stderr


def test_binding_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(UserError, match="without an API key"):
        check_bind("0.0.0.0", 8000, None)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UserError, match="another --port"):
            check_bind("127.0.0.1", port, None)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    check_bind("0.0.0.0", port, "a-key")  # a key makes another address acceptable


def test_served_conversations_stay_out_of_the_history_unless_saved(api: Api) -> None:
    api.use(ScriptedEngine([qwq_turn("think", "answer")]))
    assert api.post("/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
    history = open_store()
    try:
        assert history.list_conversations() == []
        api.server.store = history  # what --save gives the server
        api.post("/chat/completions", json={"messages": [{"role": "user", "content": "keep me"}]})
        [saved] = history.list_conversations()
        assert [m.role for m in history.messages(saved.id)] == ["user", "assistant"]
        assert history.messages(saved.id)[1].content == "answer"
    finally:
        api.server.store = None
        history.close()


def test_raw_completions_need_a_local_model_and_refuse_bad_input(api: Api) -> None:
    api.use(ScriptedEngine([qwq_turn("t", "a")]))
    refused = api.post("/completions", json={"prompt": "Once upon a time"})
    assert refused.status_code == 400 and "llama backend" in refused.json()["error"]["message"]
    assert api.post("/completions", json={"prompt": 3}).status_code == 400
    assert api.post("/completions", json={"prompt": ["a", "b"]}).status_code == 400
