"""A real model calls an MCP tool through llama.cpp: the tiny tool-trained QwQ-shaped GGUF
(tests/app/tool_model.py) asks for `calculator`, which here is served by an MCP server over stdio
(the built-in tools are off), through `ask --json` with --approve-tools."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from mcp_helpers import read_log, stdio_server
from qwq_chat.app.ask import run_ask
from qwq_chat.app.config import load_settings
from qwq_chat.app.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
from tool_model import QUESTION, cached_tool_gguf  # noqa: E402


@pytest.fixture(scope="session")
def tool_gguf(tiny_checkpoint: Path) -> Path:
    """The same cached model file tests/app/test_app_llama_tools.py uses."""
    return cached_tool_gguf(tiny_checkpoint)


def test_the_tool_trained_model_calls_an_mcp_server_through_llama_cpp(
    tool_gguf: Path, tmp_path: Path
) -> None:
    log = tmp_path / "calls.jsonl"
    settings = load_settings(
        model=str(tool_gguf), n_ctx=2048, max_tokens=80, tools=[],
        mcp={"servers": {"math": stdio_server("calc", log)}},
    )  # fmt: skip
    settings.sampling = settings.sampling.replace(top_k=1, seed=0)
    out, err = io.StringIO(), io.StringIO()
    code = run_ask(settings, QUESTION, as_json=True, out=out, err=err, approve_tools=True)
    assert code == 0, err.getvalue()
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    calls = [(e["name"], e["arguments"]) for e in events if e["type"] == "tool_call"]
    assert calls == [("calculator", {"expression": "12*12"})]
    assert read_log(log) == [
        {"server": "calc", "tool": "calculator", "arguments": {"expression": "12*12"}}
    ]
    results = [(e["content"], e["is_error"]) for e in events if e["type"] == "tool_result"]
    assert results == [("144", False)]
    answer = "".join(e["text"] for e in events if e["type"] == "answer")
    assert "144" in answer and events[-1]["type"] == "done"
    store = open_store()
    [conversation] = store.list_conversations()
    stored = store.messages(conversation.id)
    assert [m.role for m in stored] == ["user", "assistant", "tool", "assistant"]
    assert stored[2].content == "144" and "144" in stored[3].content
