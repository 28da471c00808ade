"""The OpenAI chat-completions wire format: what a request may hold, and the objects we answer with.

Requests are validated with pydantic; anything wrong becomes an `ApiError` (a 4xx with OpenAI's
error object), never a 500. Unknown top-level fields are ignored, as most OpenAI-compatible servers
do, because clients (Open WebUI, editors, agents) send extras such as `user` or `metadata`.
Tool schemas are kept as the client's own dicts: the chat template serialises them with their key
order, so a model trained on a schema sees exactly that schema again.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from qwq_chat.app.events import Stats, ToolCall
from qwq_chat.app.messages import Message
from qwq_chat.app.sampling import Limits, Sampling


class ApiError(Exception):
    """An error answered as OpenAI's `{"error": {...}}` with an HTTP status (never a traceback)."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status, message, type_, param, code,
        )  # fmt: skip
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(_Lenient):
    type: str
    text: str | None = None


class FunctionCall(_Lenient):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_Lenient):
    id: str = ""
    type: str = "function"
    function: FunctionCall


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    reasoning_content: str | None = None  # accepted and dropped: history holds answers only
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class StreamOptions(_Lenient):
    include_usage: bool = False


class JsonSchemaFormat(_Lenient):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionSpec(_Lenient):
    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None


class ToolSpec(_Lenient):
    type: Literal["function"]
    function: FunctionSpec


class _SamplingFields(_Lenient):
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(None, gt=0.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    seed: int | None = None
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logprobs: bool | None = None
    model: str | None = None

    def sampling(self, base: Sampling) -> Sampling:
        """The server's sampling (the model card's, or the config's) with what the request set."""
        changes = {
            name: getattr(self, name)
            for name in Sampling.model_fields
            if getattr(self, name, None) is not None
        }
        if changes.get("temperature") == 0:  # OpenAI's greedy: keep one candidate
            changes["temperature"] = base.temperature
            changes["top_k"] = 1
        return base.replace(**changes)

    def stops(self) -> list[str]:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        stops = [s for s in stops if s]
        if len(stops) > 16:
            raise ApiError(400, "at most 16 stop sequences are supported", param="stop")
        return stops

    def check_supported(self) -> None:
        if self.n != 1:
            raise ApiError(
                400, "n must be 1: one model answers one request at a time; send n requests",
                param="n",
            )  # fmt: skip
        if self.logprobs:
            raise ApiError(400, "logprobs are not supported by this server", param="logprobs")


class ChatRequest(_SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto"] | dict[str, Any] | str | None = None
    response_format: ResponseFormat | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    reasoning_budget: int | None = Field(None, ge=0)

    def limits(self, base: Limits) -> Limits:
        max_tokens = self.max_completion_tokens or self.max_tokens or base.max_tokens
        budget = base.reasoning_budget if self.reasoning_budget is None else self.reasoning_budget
        return Limits(max_tokens=max_tokens, reasoning_budget=budget)

    def check_supported(self) -> None:
        super().check_supported()
        if self.tool_choice not in (None, "none", "auto"):
            raise ApiError(
                400, 'tool_choice must be "auto" or "none" here (the model decides when to call)',
                param="tool_choice",
            )  # fmt: skip


class CompletionRequest(_SamplingFields):
    prompt: str | list[str]
    echo: bool = False
    suffix: str | None = None

    def text(self) -> str:
        if isinstance(self.prompt, list):
            if len(self.prompt) != 1:
                raise ApiError(400, "send one prompt per request", param="prompt")
            return self.prompt[0]
        return self.prompt

    def check_supported(self) -> None:
        super().check_supported()
        if self.echo or self.suffix:
            raise ApiError(400, "echo and suffix are not supported", param="echo")


def parse(model: type[BaseModel], data: Any) -> Any:
    """Validate a decoded JSON body; a 400 naming the first wrong field otherwise."""
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ApiError(400, f"{where}: {first['msg']}", param=where, code="invalid_value") from None


# -- messages in -------------------------------------------------------------------------------


def _text(content: str | list[ContentPart] | None, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    parts = []
    for part in content:
        if part.type != "text" or part.text is None:
            raise ApiError(
                400, f"{where}: only text content is supported (got {part.type!r})",
                param=where,
            )  # fmt: skip
        parts.append(part.text)
    return "".join(parts)


def _arguments(raw: str | dict[str, Any], where: str) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise ApiError(
            400, f"{where}: arguments must be a JSON object string", param=where
        ) from None
    if not isinstance(value, dict):
        raise ApiError(400, f"{where}: arguments must be a JSON object", param=where)
    return value


def to_messages(request: ChatRequest) -> list[Message]:
    """The request's history as the session's messages: reasoning dropped, tool rounds kept."""
    messages: list[Message] = []
    names: dict[str, str] = {}  # tool call id -> function name (tool messages rarely repeat it)
    for i, item in enumerate(request.messages):
        where = f"messages.{i}"
        text = _text(item.content, f"{where}.content")
        if item.role == "assistant":
            if "</think>" in text:  # reasoning sent back inside content: strip it
                text = text.split("</think>")[-1].lstrip("\n")
            calls = []
            for j, call in enumerate(item.tool_calls or []):
                arguments = _arguments(call.function.arguments, f"{where}.tool_calls.{j}")
                names[call.id] = call.function.name
                calls.append({"id": call.id, "name": call.function.name, "arguments": arguments})
            messages.append(Message("assistant", content=text, tool_calls=calls))
        elif item.role == "tool":
            call_id = item.tool_call_id or ""
            name = item.name or names.get(call_id, "")
            messages.append(Message("tool", content=text, tool_call_id=call_id, name=name))
        else:
            role = "system" if item.role == "developer" else item.role
            messages.append(Message(role, content=text))
    if messages[-1].role == "assistant":
        raise ApiError(
            400, "the last message is the assistant's; end with a user or tool message",
            param="messages",
        )  # fmt: skip
    return messages


# -- objects out -------------------------------------------------------------------------------


def completion_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(stats: Stats | None) -> dict[str, Any]:
    """OpenAI usage with the reasoning tokens and the prompt tokens the KV cache already held."""
    stats = stats or Stats()
    out: dict[str, Any] = {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": stats.reasoning_tokens},
        "prompt_tokens_details": {
            "cached_tokens": max(0, stats.prompt_tokens - stats.prompt_tokens_processed)
        },
    }
    if stats.draft_acceptance_rate is not None:  # serve --draft-model: does the draft help?
        out["speculative"] = {
            "acceptance_rate": round(stats.draft_acceptance_rate, 4),
            "tokens_per_pass": round(stats.tokens_per_pass or 0.0, 3),
        }
    return out


def tool_call_out(call: ToolCall, index: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": call.id,
        "type": "function",
        "function": {
            "name": call.name,
            "arguments": json.dumps(call.arguments, ensure_ascii=False),
        },
    }
    if index is not None:
        out["index"] = index
    return out


def chunk(
    cid: str, model: str, delta: dict[str, Any], finish_reason: str | None = None
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def usage_chunk(cid: str, model: str, stats: Stats | None) -> dict[str, Any]:
    """The last chunk with `stream_options.include_usage`: no choices, only usage."""
    return {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage(stats),
    }


def completion(
    cid: str,
    model: str,
    content: str,
    reasoning: str,
    calls: list[ToolCall],
    finish_reason: str,
    stats: Stats | None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [tool_call_out(call) for call in calls]
    choice: dict[str, Any] = {
        "index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason,
    }  # fmt: skip
    if details:
        choice["finish_details"] = details
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(stats),
    }


def text_completion(
    cid: str, model: str, text: str, finish_reason: str | None, stats: Stats | None, stream: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": cid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}],
    }
    if not stream or stats is not None:
        body["usage"] = usage(stats)
    return body
