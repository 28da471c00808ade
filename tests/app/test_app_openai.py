"""The OpenAI-compatible engine against a real HTTP server on 127.0.0.1 (starlette + uvicorn)."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from qwq_chat.app.ask import ANSWER_HEADING, REASONING_HEADING, run_ask
from qwq_chat.app.config import load_settings
from qwq_chat.app.engines.openai_engine import OpenAIEngine
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import AnswerDelta, ReasoningDelta, Stats, ToolCall, ToolResult
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.session import Session
from qwq_chat.app.store import open_store
from qwq_chat.app.tools.registry import build_registry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

SECRET = "sk-test-secret-123"


def _chunk(
    delta: dict[str, Any] | None, finish: str | None = None, usage: dict | None = None
) -> str:
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "qwq-32b",
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    if usage is not None:
        body["usage"] = usage
    return f"data: {json.dumps(body)}\n\n"


class FakeServer:
    """Scripted SSE streams, one per request; records the requests."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.scripts: list[list[str]] = []

    async def completions(self, request: Request):
        if request.headers.get("authorization") != f"Bearer {SECRET}":
            return JSONResponse(
                {"error": {"message": "bad key", "type": "invalid_request_error"}}, status_code=401
            )
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        script = self.scripts.pop(0)

        def events() -> Iterator[str]:
            for part in script:
                yield part
                time.sleep(0.005)
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeServer, str]]:
    fake = FakeServer()
    app = Starlette(routes=[Route("/v1/chat/completions", fake.completions, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = srv.servers[0].sockets[0].getsockname()[1]
    yield fake, f"http://127.0.0.1:{port}/v1"
    srv.should_exit = True
    thread.join(10)


USAGE = {
    "prompt_tokens": 20,
    "completion_tokens": 9,
    "total_tokens": 29,
    "prompt_tokens_details": {"cached_tokens": 12},
    "completion_tokens_details": {"reasoning_tokens": 5},
}


def dashscope_like() -> list[str]:
    return [
        _chunk({"role": "assistant", "content": "", "reasoning_content": ""}),
        _chunk({"reasoning_content": "9.9 = 9.90 "}),
        _chunk({"reasoning_content": "> 9.11"}),
        _chunk({"content": "9.9 is "}),
        _chunk({"content": "larger."}, finish="stop"),
        _chunk(None, usage=USAGE),
    ]


def test_reasoning_content_then_content_then_usage(server, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = server
    monkeypatch.setenv("QWQ_TEST_KEY", SECRET)
    fake.scripts.append(dashscope_like())
    engine = OpenAIEngine(url, "qwq-32b", api_key_env="QWQ_TEST_KEY")
    session = Session(open_store(), engine, limits=Limits(max_tokens=100))
    events = list(session.send("Which is larger, 9.9 or 9.11?"))
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "9.9 = 9.90 > 9.11"
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "9.9 is larger."
    [stats] = [e for e in events if isinstance(e, Stats)]
    assert (stats.prompt_tokens, stats.completion_tokens, stats.prompt_tokens_processed) == (
        20,
        9,
        8,
    )
    assert events[-1].finish_reason == "stop"
    request = fake.requests[-1]
    assert request["stream"] is True and request["stream_options"] == {"include_usage": True}
    assert (request["temperature"], request["top_p"], request["top_k"], request["min_p"]) == (
        0.6,
        0.95,
        40,
        0.0,
    )
    assert request["max_tokens"] == 100 and request["model"] == "qwq-32b"
    assert request["messages"] == [{"role": "user", "content": "Which is larger, 9.9 or 9.11?"}]
    # the key went to the server only: not in the engine's repr, not in the database
    assert SECRET not in repr(engine)
    db = open_store().path
    assert SECRET.encode() not in Path(db).read_bytes()


def test_think_tags_in_content(server, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = server
    monkeypatch.setenv("QWQ_TEST_KEY", SECRET)
    fake.scripts.append([_chunk({"content": "<thi"}), _chunk({"content": "nk>\nhmm</th"}),
                         _chunk({"content": "ink>\n\nok"}, finish="stop"), _chunk(None, usage=USAGE)])  # fmt: skip
    fake.scripts.append(
        [
            _chunk({"content": "only reasoning</think>"}),
            _chunk({"content": "\n\nanswer"}, finish="stop"),
        ]
    )
    session = Session(open_store(), OpenAIEngine(url, "m", api_key_env="QWQ_TEST_KEY"))
    events = list(session.send("a"))
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)).strip() == "hmm"
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "ok"
    # a server whose template opened <think> in the prompt (vLLM without reasoning parser)
    engine = OpenAIEngine(url, "m", api_key_env="QWQ_TEST_KEY", think_in_prompt=True)
    session = Session(open_store(), engine)
    events = list(session.send("b"))
    assert "".join(e.text for e in events if isinstance(e, ReasoningDelta)) == "only reasoning"
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "answer"
    assert fake.requests[-1]["messages"][-1] == {"role": "user", "content": "b"}


def test_native_tool_calls_run_the_tool_loop(server, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = server
    monkeypatch.setenv("QWQ_TEST_KEY", SECRET)
    call_delta = {"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                                  "function": {"name": "calculator", "arguments": '{"expression": '}}]}  # fmt: skip
    more = {"tool_calls": [{"index": 0, "function": {"arguments": '"6*7"}'}}]}
    fake.scripts.append(
        [
            _chunk({"reasoning_content": "use the tool"}),
            _chunk(call_delta),
            _chunk(more, finish="tool_calls"),
        ]
    )
    fake.scripts.append([_chunk({"content": "It is 42."}, finish="stop")])
    session = Session(open_store(), OpenAIEngine(url, "m", api_key_env="QWQ_TEST_KEY"),
                      tools=build_registry(["calculator"]))  # fmt: skip
    events = list(session.send("6*7?"))
    assert [(e.name, e.arguments) for e in events if isinstance(e, ToolCall)] == [
        ("calculator", {"expression": "6*7"})
    ]
    assert [e.content for e in events if isinstance(e, ToolResult)] == ["42"]
    assert fake.requests[-2]["tools"][0]["function"]["name"] == "calculator"
    follow_up = fake.requests[-1]["messages"]
    assert follow_up[1]["tool_calls"][0]["function"] == {
        "name": "calculator",
        "arguments": '{"expression": "6*7"}',
    }
    assert follow_up[2]["role"] == "tool" and follow_up[2]["content"] == "42"
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "It is 42."
    # The server's call id is kept end to end, not replaced by one of ours.
    assert [e.id for e in events if isinstance(e, ToolCall)] == ["call_a"]
    assert follow_up[1]["tool_calls"][0]["id"] == "call_a"
    assert follow_up[2]["tool_call_id"] == "call_a"


REMOTE_STREAMS = {
    # vLLM without --reasoning-parser: the template opened <think>, the stream shows only </think>
    "bare_close": (["9.9 = 9.90", " > 9.11.", "</think>", "\n\n9.9 is larger."],
                   "9.9 = 9.90 > 9.11.", "9.9 is larger."),
    # the same with the tag cut across deltas
    "close_split": (["9.9 = 9.90 > 9.11.</th", "ink>\n\n9.9 is", " larger."],
                    "9.9 = 9.90 > 9.11.", "9.9 is larger."),
    # a server that sends the whole block in content, the opening tag split too
    "open_and_close": (["<th", "ink>\nhmm", "</think>\n\nok"], "\nhmm", "ok"),
    # a plain model: no tags at all
    "no_tags": (["Paris is ", "the capital", " of France."], "", "Paris is the capital of France."),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REMOTE_STREAMS))
def test_ask_json_splits_remote_content_with_no_configuration(
    server, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """`openai.think_in_prompt` left at "auto": the stream itself says where the reasoning ends."""
    import subprocess
    import sys

    fake, url = server
    deltas, reasoning, answer = REMOTE_STREAMS[case]
    fake.scripts.append([_chunk({"content": d}) for d in deltas[:-1]]
                        + [_chunk({"content": deltas[-1]}, finish="stop")])  # fmt: skip
    monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
    done = subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", "ask", "--json", "--backend", "openai",
         "--base-url", url, "--model", "qwq-32b", "Which is larger?"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert "".join(e["text"] for e in events if e["type"] == "reasoning") == reasoning
    assert "".join(e["text"] for e in events if e["type"] == "answer") == answer
    assert events[-1]["type"] == "done" and events[-1]["reasoning_unfinished"] is False
    assert "</think>" not in done.stdout and "<think>" not in done.stdout


def test_ask_through_the_openai_backend(server, monkeypatch: pytest.MonkeyPatch) -> None:
    fake, url = server
    monkeypatch.setenv("DASHSCOPE_API_KEY", SECRET)
    fake.scripts.append(dashscope_like())
    settings = load_settings(backend="openai", base_url=url, model="qwq-32b")
    out, err = io.StringIO(), io.StringIO()
    assert run_ask(settings, "Which is larger, 9.9 or 9.11?", out=out, err=err) == 0
    assert out.getvalue() == (
        f"{REASONING_HEADING}\n9.9 = 9.90 > 9.11\n\n{ANSWER_HEADING}\n9.9 is larger.\n"
    )
    assert SECRET not in out.getvalue() + err.getvalue()


def test_bad_key_and_unreachable_server(server, monkeypatch: pytest.MonkeyPatch) -> None:
    _, url = server
    monkeypatch.setenv("QWQ_TEST_KEY", "wrong")
    engine = OpenAIEngine(url, "m", api_key_env="QWQ_TEST_KEY")
    with pytest.raises(UserError, match="QWQ_TEST_KEY") as info:
        list(engine.stream([{"role": "user", "content": "x"}], Sampling(), 16))
    assert "wrong" not in str(info.value)
    dead = OpenAIEngine("http://127.0.0.1:9/v1", "m", api_key_env="QWQ_TEST_KEY")
    with pytest.raises(UserError, match="cannot reach"):
        list(dead.stream([{"role": "user", "content": "x"}], Sampling(), 16))
    with pytest.raises(UserError, match="--base-url"):
        OpenAIEngine("", "m")


def test_reasoning_budget_continues_with_a_final_assistant_message(server, monkeypatch) -> None:
    fake, url = server
    monkeypatch.setenv("QWQ_TEST_KEY", SECRET)
    fake.scripts.append([_chunk({"reasoning_content": "step "}) for _ in range(10)])
    fake.scripts.append([_chunk({"content": "Final."}, finish="stop")])
    session = Session(
        open_store(),
        OpenAIEngine(url, "m", api_key_env="QWQ_TEST_KEY"),
        limits=Limits(reasoning_budget=3),
    )
    events = list(session.send("hard question"))
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "Final."
    assert events[-1].finish_reason == "reasoning_budget"
    second = fake.requests[-1]
    assert second["continue_final_message"] is True and second["add_generation_prompt"] is False
    last = second["messages"][-1]
    assert last["role"] == "assistant" and last["content"].startswith("step step step ")
    assert last["content"].endswith("</think>\n\n")
