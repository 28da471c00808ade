"""MCP tools end to end through `ask --json`: a scripted remote model emits `<tool_call>`s, real
MCP servers (the SDK's, over stdio and Streamable HTTP) run them, the results reach the model and
everything is stored with the chat. Without --approve-tools a call is denied and never runs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mcp_helpers
from mcp_helpers import KEY_ENV, answers_with_tool_result, calls_tool, read_log, stdio_server
from qwq_chat.app.ask import run_ask
from qwq_chat.app.config import load_settings
from qwq_chat.app.store import open_store

model_server, model, http_mcp = mcp_helpers.model_server, mcp_helpers.model, mcp_helpers.http_mcp


def _events(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_calls_reach_the_right_server_over_stdio_and_http_and_results_reach_the_model(
    model, http_mcp, tmp_path: Path
) -> None:
    url, http_log = http_mcp
    stdio_log = tmp_path / "stdio.jsonl"
    servers = {"files": stdio_server("ok", stdio_log), "web": {"url": url}}
    settings = load_settings(**model.settings(mcp={"servers": servers}))
    # Both servers have `lookup`: the first (config order) keeps the name, the other is prefixed.
    model.scripts += [
        calls_tool("lookup", {"key": "alpha"}),
        calls_tool("web__lookup", {"key": "omega"}),
        answers_with_tool_result("Both done; last: "),
    ]
    out, err = io.StringIO(), io.StringIO()
    code = run_ask(settings, "Look up alpha and omega", as_json=True, out=out, err=err,
                   approve_tools=True)  # fmt: skip
    assert code == 0, err.getvalue()
    offered = [t["function"]["name"] for t in model.requests[0]["tools"]]
    assert offered == ["lookup", "shout", "picture", "web__lookup", "web__shout", "web__picture"]
    # the right server ran each call, with the model's arguments
    assert read_log(stdio_log) == [
        {"server": "ok", "tool": "lookup", "arguments": {"key": "alpha"}}
    ]
    http_calls = [c for c in read_log(http_log) if c["arguments"] == {"key": "omega"}]
    assert http_calls == [{"server": "ok", "tool": "lookup", "arguments": {"key": "omega"}}]
    # each result went back to the model as the tool message of the next request
    assert model.requests[1]["messages"][-1]["content"] == "first letter"
    assert model.requests[2]["messages"][-1]["content"] == "last letter"
    events = _events(out)
    results = [
        (e["name"], e["content"], e["is_error"]) for e in events if e["type"] == "tool_result"
    ]
    assert results == [("lookup", "first letter", False), ("web__lookup", "last letter", False)]
    assert all(e["duration_s"] >= 0 for e in events if e["type"] == "tool_result")
    answer = "".join(e["text"] for e in events if e["type"] == "answer")
    assert answer == "Both done; last: last letter"
    # all of it is stored with the chat
    store = open_store()
    [conversation] = store.list_conversations()
    stored = store.messages(conversation.id)
    assert [m.role for m in stored] == [
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert stored[1].tool_calls[0]["name"] == "lookup" and stored[2].content == "first letter"
    assert stored[4].name == "web__lookup" and stored[4].content == "last letter"
    assert stored[5].content == "Both done; last: last letter"


def test_other_content_is_summarised_not_dropped(model, tmp_path: Path) -> None:
    settings = load_settings(**model.settings(mcp={"servers": {"s": stdio_server("ok")}}))
    model.scripts += [calls_tool("picture", {}), answers_with_tool_result()]
    out = io.StringIO()
    assert (
        run_ask(settings, "draw", as_json=True, out=out, err=io.StringIO(), approve_tools=True) == 0
    )
    assert model.requests[1]["messages"][-1]["content"] == (
        "[image content: image/png, about 72 bytes, not shown]"
    )


def test_ask_without_approve_tools_denies_the_call_and_says_how_to_allow_it(
    model, tmp_path: Path
) -> None:
    """Through the real CLI: the tool never runs, the model reads the denial, one stderr line."""
    log = tmp_path / "calls.jsonl"
    entry = stdio_server("ok", log)
    config = tmp_path / "config.toml"
    config.write_text(
        f'tools = []\n[openai]\napi_key_env = "{KEY_ENV}"\n'
        f"[mcp.servers.files]\ncommand = {json.dumps(entry['command'])}\n"
        f"args = {json.dumps(entry['args'])}\n"
    )
    model.scripts += [calls_tool("lookup", {"key": "alpha"}), answers_with_tool_result()]
    argv = [sys.executable, "-m", "qwq_chat.app", "--config", str(config), "--backend", "openai",
            "--base-url", model.url, "--model", "qwq-32b", "ask", "--json", "Look up alpha"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr
    assert read_log(log) == []  # the server never ran it
    denial = "error: denied by the user"
    assert model.requests[1]["messages"][-1]["content"] == denial
    [line] = [ln for ln in done.stderr.splitlines() if "denied" in ln]
    assert "files/lookup" in line and "--approve-tools" in line
    results = [json.loads(x) for x in done.stdout.splitlines() if '"tool_result"' in x]
    assert [(r["content"], r["is_error"]) for r in results] == [(denial, True)]
    assert "The tool said: " + denial in done.stdout  # the chat went on
