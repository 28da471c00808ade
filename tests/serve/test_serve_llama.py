"""The server on real llama.cpp: a tool round trip through the `openai` SDK, a JSON-schema answer,
and KV-cache reuse across the turns of one conversation.

The tool model is the tiny QwQ-shaped checkpoint fine-tuned to call the calculator
(tests/app/tool_model.py; the same cached GGUF the chat's tool tests use).
"""

# ruff: noqa: F811 (`api` is a fixture imported from serve_helpers)

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest
from openai import OpenAI
from qwq_chat.app.engines.llama_engine import LlamaEngine
from qwq_chat.app.tools.registry import build_registry
from serve_helpers import Api, api, sse_events  # noqa: F401 (the fixture)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "app"))
from tool_model import QUESTION, cached_tool_gguf  # noqa: E402


@pytest.fixture(scope="module")
def tool_gguf(tiny_checkpoint: Path) -> Path:
    return cached_tool_gguf(tiny_checkpoint)


@pytest.fixture(scope="module")
def tiny_engine(tiny_gguf: Path) -> Iterator[LlamaEngine]:
    engine = LlamaEngine(tiny_gguf, n_ctx=1024)
    yield engine
    engine.close()


def test_a_tool_round_trip_through_the_sdk(api: Api, tool_gguf: Path) -> None:
    engine = LlamaEngine(tool_gguf, n_ctx=2048)
    api.use(engine)
    client = OpenAI(base_url=api.url, api_key="unused")
    tools = build_registry(["calculator"]).schemas()  # the schema the model was trained with
    messages: list[dict] = [{"role": "user", "content": QUESTION}]
    try:
        first = client.chat.completions.create(
            model="qwq-test", messages=messages, tools=tools, temperature=0, max_tokens=80
        )
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls"
        [call] = choice.message.tool_calls
        assert call.function.name == "calculator"
        assert json.loads(call.function.arguments) == {"expression": "12*12"}
        assert "calculator" in choice.message.model_extra["reasoning_content"]
        messages.append(choice.message.model_dump(exclude_none=True))  # as clients send it back
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "144"})
        final = client.chat.completions.create(
            model="qwq-test", messages=messages, tools=tools, temperature=0, max_tokens=80
        )
    finally:
        engine.close()
    assert final.choices[0].finish_reason == "stop"
    assert "144" in final.choices[0].message.content
    assert not final.choices[0].message.tool_calls


SCHEMA = {
    "type": "object",
    "properties": {
        "larger": {"type": "string", "enum": ["9.9", "9.11"]},
        "difference": {"type": "number"},
        "sure": {"type": "boolean"},
    },
    "required": ["larger", "difference", "sure"],
    "additionalProperties": False,
}


def test_a_json_schema_answer_validates_and_the_reasoning_stays_free(
    api: Api, tiny_engine: LlamaEngine
) -> None:
    api.use(tiny_engine)
    client = OpenAI(base_url=api.url, api_key="unused")
    reply = client.chat.completions.create(
        model="qwq-test",
        messages=[{"role": "user", "content": "Which is larger, 9.9 or 9.11?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "cmp", "schema": SCHEMA}},
        max_tokens=120,
        seed=1,
        extra_body={"reasoning_budget": 12},
    )
    message = reply.choices[0].message
    answer = json.loads(message.content)
    jsonschema.validate(answer, SCHEMA)
    reasoning = message.model_extra["reasoning_content"]
    assert reasoning.strip() and not reasoning.lstrip().startswith("{")  # not constrained
    assert reply.choices[0].finish_reason == "stop"


def test_a_follow_up_turn_processes_only_the_new_suffix(api: Api, tiny_engine: LlamaEngine) -> None:
    api.use(tiny_engine)
    messages: list[dict] = []
    processed: list[int] = []
    prompts: list[int] = []
    for turn in range(3):
        messages.append({"role": "user", "content": f"Question number {turn}: what is {turn}+1?"})
        body = api.post(
            "/chat/completions",
            json={"messages": messages, "max_tokens": 6, "seed": turn, "reasoning_budget": 3},
        ).json()
        usage = body["usage"]
        prompts.append(usage["prompt_tokens"])
        processed.append(usage["prompt_tokens"] - usage["prompt_tokens_details"]["cached_tokens"])
        messages.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
    assert prompts[2] > prompts[0] + 20  # the conversation grew...
    assert processed[2] < prompts[2] - prompts[0]  # ...but only the new part was evaluated


def test_raw_completions_on_llama_stream_and_not(api: Api, tiny_engine: LlamaEngine) -> None:
    api.use(tiny_engine)
    body = api.post("/completions", json={"prompt": "Once upon a time", "max_tokens": 5}).json()
    assert body["object"] == "text_completion" and body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["text"] and body["usage"]["completion_tokens"] == 5
    assert body["usage"]["prompt_tokens"] < 8  # the raw text, no chat template around it
    payload = {"prompt": "Once upon a time", "max_tokens": 4, "stream": True, "seed": 3}
    with api.stream("/completions", json=payload) as response:
        chunks = list(sse_events(response))
    assert "".join(c["choices"][0]["text"] for c in chunks) and len(chunks) >= 4
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_speculative_stats_in_usage(api: Api, smollm_gguf: Path) -> None:
    """`serve --draft-model ngram`: usage says how much the draft helped, streamed and not."""
    engine = LlamaEngine(smollm_gguf, n_ctx=1024, draft="ngram")
    try:
        api.use(engine)
        text = "the cat sat on the mat. " * 6
        payload = {
            "messages": [{"role": "user", "content": f"Repeat exactly: {text}"}],
            "max_tokens": 40,
            "temperature": 0,
        }
        body = api.post("/chat/completions", json=payload).json()
        spec = body["usage"]["speculative"]
        assert 0.0 <= spec["acceptance_rate"] <= 1.0 and spec["tokens_per_pass"] >= 1.0
        stream = {**payload, "stream": True, "stream_options": {"include_usage": True}}
        with api.stream("/chat/completions", json=stream) as response:
            chunks = list(sse_events(response))
        assert chunks[-1]["choices"] == [] and "speculative" in chunks[-1]["usage"]
    finally:
        engine.close()
    plain = LlamaEngine(smollm_gguf, n_ctx=512)
    try:
        api.use(plain)  # no draft: no speculative figures
        body = api.post("/chat/completions", json={**payload, "max_tokens": 4}).json()
        assert "speculative" not in body["usage"]
    finally:
        plain.close()
