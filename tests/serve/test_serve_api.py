"""The OpenAI-compatible server over a scripted engine: wire format, errors, safety, queue, cancel.

The HTTP server (uvicorn on 127.0.0.1), the session, the splitter and the queue are the real ones;
only the model is scripted, so every field can be checked exactly. Real models: test_serve_llama.py.
"""

# ruff: noqa: F811 (`api` is a fixture imported from serve_helpers)

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from qwq_chat.app.serve.grammar import grammar_for
from qwq_chat.app.serve.protocol import ApiError, ResponseFormat
from scripted_engine import ScriptedEngine, qwq_turn, words
from serve_helpers import Api, api, sse_events  # noqa: F401 (the fixture)

REASONING = "Compare the decimals. 9.9 is 9.90 and 9.11 is smaller."
ANSWER = "9.9 is larger."
TOOL_CALL = (
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "12*12"}}\n</tool_call>'
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate arithmetic.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    }
]


def ask(text: str = "Which is larger, 9.9 or 9.11?", **extra: object) -> dict[str, object]:
    return {"model": "qwq-test", "messages": [{"role": "user", "content": text}], **extra}


def test_a_reply_has_reasoning_and_answer_in_their_own_fields_and_usage(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn(REASONING, ANSWER)])
    with api.use(engine) as (url, _):
        body = api.post(f"{url}/chat/completions", json=ask()).json()
    message = body["choices"][0]["message"]
    assert message["reasoning_content"].strip() == REASONING
    assert message["content"] == ANSWER
    assert "<think>" not in json.dumps(body) and "</think>" not in json.dumps(body)
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["object"] == "chat.completion" and body["model"] == "qwq-test"
    pieces = len(qwq_turn(REASONING, ANSWER))
    usage = body["usage"]
    assert usage["completion_tokens"] == pieces
    assert (
        usage["completion_tokens_details"]["reasoning_tokens"] == len(words(REASONING)) + 2
    )  # + "</think>"
    assert usage["total_tokens"] == usage["prompt_tokens"] + pieces


def test_a_streamed_reply_sends_reasoning_content_then_content_then_usage(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn(REASONING, ANSWER)])
    payload = ask(stream=True, stream_options={"include_usage": True})
    with (
        api.use(engine) as (url, _),
        api.client.stream("POST", f"{url}/chat/completions", json=payload) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = list(sse_events(response))
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    reasoning = "".join(d.get("reasoning_content") or "" for d in deltas)
    content = "".join(d.get("content") or "" for d in deltas)
    assert reasoning.strip() == REASONING and content == ANSWER
    kinds = ["r" if "reasoning_content" in d else "c" for d in deltas[1:] if any(d.values())]
    assert kinds == sorted(kinds, reverse=True)  # all reasoning before any answer
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


def test_history_sent_back_has_its_reasoning_stripped(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn("think", "fine")])
    history = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "one", "reasoning_content": "secret thoughts"},
        {"role": "user", "content": "second"},
        {"role": "assistant", "content": "<think>\nold thoughts\n</think>\n\ntwo"},
        {"role": "user", "content": [{"type": "text", "text": "third"}]},
    ]
    with api.use(engine) as (url, _):
        response = api.post(f"{url}/chat/completions", json={"messages": history})
    assert response.status_code == 200
    sent = engine.calls[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert [m["content"] for m in sent if m["role"] == "assistant"] == ["one", "two"]
    assert "thoughts" not in json.dumps(sent) and sent[-1]["content"] == "third"


def test_tool_calls_go_out_as_tool_calls_and_results_come_back_in(api: Api) -> None:
    engine = ScriptedEngine([["Use the tool.\n</think>\n\n", TOOL_CALL], qwq_turn("ok", "144")])
    with api.use(engine) as (url, _):
        first = api.post(f"{url}/chat/completions", json=ask("What is 12*12?", tools=TOOLS))
        choice = first.json()["choices"][0]
        assert choice["finish_reason"] == "tool_calls"
        [call] = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "calculator"
        assert json.loads(call["function"]["arguments"]) == {"expression": "12*12"}
        messages = [
            {"role": "user", "content": "What is 12*12?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "144"},
        ]
        second = api.post(f"{url}/chat/completions", json={"messages": messages, "tools": TOOLS})
    assert second.json()["choices"][0]["message"]["content"] == "144"
    sent = engine.calls[1]["messages"]
    assert sent[-1] == {
        "role": "tool", "content": "144", "tool_call_id": call["id"], "name": "calculator",
    }  # fmt: skip
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == {"expression": "12*12"}


def test_streamed_tool_calls_arrive_as_delta_tool_calls(api: Api) -> None:
    engine = ScriptedEngine([["Use the tool.\n</think>\n\n", TOOL_CALL]])
    with (
        api.use(engine) as (url, _),
        api.client.stream(
            "POST", f"{url}/chat/completions", json=ask(tools=TOOLS, stream=True)
        ) as response,
    ):
        chunks = list(sse_events(response))
    calls = [c["choices"][0]["delta"]["tool_calls"] for c in chunks if "tool_calls" in
             c["choices"][0]["delta"]]  # fmt: skip
    assert calls and calls[0][0]["index"] == 0 and calls[0][0]["function"]["name"] == "calculator"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


def test_stop_sequences_cut_the_answer_and_stop_the_engine(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn("think", "The answer is 42. END and then more words " * 5)])
    with api.use(engine) as (url, _):
        body = api.post(f"{url}/chat/completions", json=ask(stop=["END"])).json()
    assert body["choices"][0]["message"]["content"] == "The answer is 42. "
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] < len(qwq_turn("think", "x " * 50))


def test_request_sampling_overrides_the_model_card_defaults(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn("think", "ok")])
    with api.use(engine) as (url, _):
        api.post(f"{url}/chat/completions", json=ask(top_k=7, seed=3, max_tokens=50))
        api.post(f"{url}/chat/completions", json=ask(temperature=0))
        api.post(f"{url}/chat/completions", json=ask())
    first, greedy, default = (call["sampling"] for call in engine.calls)
    assert (first.top_k, first.seed, first.temperature) == (7, 3, 0.6)
    assert engine.calls[0]["max_tokens"] == 50
    assert greedy.top_k == 1
    assert (default.temperature, default.top_p, default.top_k) == (0.6, 0.95, 40)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"[" * 100_000, 400, "nested too deeply"),
        (b"\xff\xfe{}", 400, "not valid JSON"),
        (b'{"messages": []}', 400, "messages"),
        (b'{"messages": "hi"}', 400, "messages"),
        (b'{"messages": [{"role": "user", "content": 5}]}', 400, "messages.0.content"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "role"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "temperature"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400, "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "x"}], "n": 2}', 400, "n must be 1"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}', 400, "only text"),
        (b'{"messages": [{"role": "assistant", "content": "x"}]}', 400, "last message"),
        (b'{"messages": [{"role": "user", "content": "x"}], "tool_choice": "required"}', 400, "tool_choice"),
        (b'{"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_object"}}',
         400, "llama backend"),
        (b'{"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "a", "type": "function", '
         b'"function": {"name": "f", "arguments": "{oops"}}]}, {"role": "tool", "content": "1"}]}',
         400, "arguments"),
        (b'{"prompt": "x", "messages": [{"role": "user", "content": "x"}], "stream": [1]}', 400, "stream"),
    ],
)  # fmt: skip
def test_malformed_requests_get_openai_errors_with_4xx(
    api: Api, body: bytes, status: int, needle: str
) -> None:
    engine = ScriptedEngine([qwq_turn("t", "a")])
    with api.use(engine) as (url, _):
        response = httpx.post(
            f"{url}/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert needle in error["message"] and error["type"] == "invalid_request_error"
    assert "Traceback" not in response.text
    assert engine.calls == []


def test_oversized_bodies_unknown_paths_and_wrong_methods_are_refused(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn("t", "a")])
    with api.use(engine, max_body_bytes=10_000) as (url, _):
        big = api.post(f"{url}/chat/completions", json=ask("x" * 20_000))
        assert big.status_code == 413 and "larger than" in big.json()["error"]["message"]
        assert api.get(f"{url}/nothing").status_code == 404
        wrong = api.get(f"{url}/chat/completions")
        assert wrong.status_code == 405 and "error" in wrong.json()
        health = api.get(url.removesuffix("/v1") + "/health").json()
        models = api.get(f"{url}/models").json()
    assert health["status"] == "ok"
    assert [m["id"] for m in models["data"]] == ["qwq-test"]


def test_the_api_key_is_required_when_set(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn("t", "a")])
    with api.use(engine, api_key="s3cret") as (url, _):
        missing = api.get(f"{url}/models")
        wrong = api.post(f"{url}/chat/completions", json=ask(),
                           headers={"Authorization": "Bearer s3cre"})  # fmt: skip
        right = api.get(f"{url}/models", headers={"Authorization": "Bearer s3cret"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200 and engine.calls == []


def test_schemas_may_not_reference_anything_outside_themselves() -> None:
    for ref in ("https://example.com/schema.json", "file:///etc/passwd", "/etc/passwd"):
        fmt = ResponseFormat.model_validate(
            {"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "properties": {"a": {"$ref": ref}}}}}
        )  # fmt: skip
        with pytest.raises(ApiError) as info:
            grammar_for(fmt, "llama")
        assert info.value.status == 400 and "local $ref" in info.value.message


def _gated_engine() -> ScriptedEngine:
    engine = ScriptedEngine([qwq_turn("a b c d e f g", "h i j k l m n o p")], delay_s=0.01)
    engine.gate = threading.Event()
    return engine


def test_a_full_queue_answers_429_with_retry_after_and_the_queue_drains(api: Api) -> None:
    engine = _gated_engine()
    with api.use(engine, max_waiting=1) as (url, server), ThreadPoolExecutor(2) as pool:
        running_one = pool.submit(api.post, f"{url}/chat/completions", json=ask(), timeout=30)
        waiting_one = pool.submit(api.post, f"{url}/chat/completions", json=ask(), timeout=30)
        deadline = time.monotonic() + 10
        while server.queue.pending < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        refused = api.post(f"{url}/chat/completions", json=ask())
        assert engine.gate is not None
        engine.gate.set()
        done = [running_one.result(), waiting_one.result()]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert [r.status_code for r in done] == [200, 200]
    assert len(engine.calls) == 2


def test_a_client_that_hangs_up_frees_the_model_at_once(api: Api) -> None:
    endless = ScriptedEngine([lambda: (f"w{i} " for i in range(100_000)), qwq_turn("t", "next")],
                             delay_s=0.005)  # fmt: skip
    with api.use(endless) as (url, server):
        with api.client.stream(
            "POST", f"{url}/chat/completions", json=ask(stream=True)
        ) as response:
            for n, _ in enumerate(response.iter_lines()):
                if n > 10:
                    break  # hang up mid-stream
        started = time.monotonic()
        follow_up = api.post(f"{url}/chat/completions", json=ask(), timeout=30)
        waited = time.monotonic() - started
    assert follow_up.status_code == 200 and follow_up.json()["choices"][0]["message"]["content"]
    assert waited < 2.0  # the first generation (100k pieces at 5 ms) was cancelled, not finished
    assert server.queue.pending == 0


def test_a_non_streamed_request_whose_client_hangs_up_is_cancelled_too(api: Api) -> None:
    endless = ScriptedEngine([lambda: (f"w{i} " for i in range(100_000)), qwq_turn("t", "next")],
                             delay_s=0.005)  # fmt: skip
    with api.use(endless) as (url, _):
        with pytest.raises(httpx.ReadTimeout):
            api.post(f"{url}/chat/completions", json=ask(), timeout=0.5)
        started = time.monotonic()
        follow_up = api.post(f"{url}/chat/completions", json=ask(), timeout=30)
    assert follow_up.status_code == 200 and time.monotonic() - started < 2.0


def test_many_concurrent_streaming_clients_all_complete(api: Api) -> None:
    engine = ScriptedEngine([qwq_turn("a b c d", "the answer")], delay_s=0.001)

    def client(url: str) -> str:
        with api.client.stream("POST", f"{url}/chat/completions", json=ask(stream=True),
                          timeout=60) as response:  # fmt: skip
            chunks = list(sse_events(response))
        return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)

    with api.use(engine, max_waiting=16) as (url, _), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(client, [url] * 8))
    assert answers == ["the answer"] * 8 and len(engine.calls) == 8


def test_reasoning_effort_none_answers_at_once_and_budgets_apply_per_request(api: Api) -> None:
    engine = ScriptedEngine(
        [["discarded "], words("Straight to it."), qwq_turn("a b c d e f", "x")]
    )
    with api.use(engine) as (url, _):
        quick = api.post(f"{url}/chat/completions", json=ask(reasoning_effort="none")).json()
        budget = api.post(f"{url}/chat/completions", json=ask(reasoning_budget=3)).json()
    assert quick["choices"][0]["message"]["content"] == "Straight to it."
    assert "reasoning_content" not in quick["choices"][0]["message"]
    assert engine.calls[1]["prefill"] == "</think>\n\n"
    message = budget["choices"][0]["message"]
    assert "Considering the limited time" in message["reasoning_content"]
    assert budget["choices"][0]["finish_details"]["reason"] == "reasoning_budget"


def test_json_object_and_json_schema_become_llama_grammars() -> None:
    json_object = grammar_for(ResponseFormat(type="json_object"), "llama")
    schema = ResponseFormat.model_validate(
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {
            "type": "object", "properties": {"a": {"$ref": "#/$defs/n"}},
            "$defs": {"n": {"type": "integer"}}}}}
    )  # fmt: skip
    assert "root" in json_object._grammar and "integer" in grammar_for(schema, "llama")._grammar
    assert grammar_for(ResponseFormat(type="text"), "llama") is None
