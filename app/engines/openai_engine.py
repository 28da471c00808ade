"""OpenAI-compatible HTTP engine: DashScope (`qwq-32b`), vLLM, llama-server, llama-cpp-python's server.

- Streams with `stream_options={"include_usage": True}`: the last chunk has no choices and carries
  token usage (as in the seed's DashScope example).
- Reasoning arrives either separated (`delta.reasoning_content`, or `delta.reasoning` on newer vLLM)
  and is passed on flagged `reasoning=True`, or inside `content` as `<think>...</think>` / a lone
  `</think>`, which the splitter handles (see app/splitter.py; `openai.think_in_prompt`, by default
  "auto": decided from the stream).
- Native `delta.tool_calls` are collected and handed over as structured `ToolCall`s with the
  server's ids, so a follow-up request refers to the ids the server gave.
- The API key is read from the environment variable NAMED in the settings (`openai.api_key_env`);
  the key itself is never stored, logged or shown.
- A prefill (reasoning budget) is sent as a final partial assistant message with vLLM's
  `continue_final_message`; servers without that extension answer afresh.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from qwq_chat.app.engine_protocol import Chunk, unsupported_options
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import Stats, ToolCall
from qwq_chat.app.sampling import Sampling


class OpenAIEngine:
    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "DASHSCOPE_API_KEY",
        think_in_prompt: bool | str = "auto",
        timeout_s: float = 600.0,
    ) -> None:
        from openai import OpenAI

        if not base_url:
            raise UserError("the openai backend needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        if not model:
            raise UserError("the openai backend needs --model NAME (e.g. qwq-32b)")
        key = os.environ.get(api_key_env, "")
        self.api_key_env = api_key_env
        self.base_url = base_url
        self.model = model
        # None: the server's template is unknown; the splitter decides from the stream.
        self.prompt_opens_reasoning: bool | None = (
            None if think_in_prompt == "auto" else bool(think_in_prompt)
        )
        self._cancel = threading.Event()
        # Local servers accept any key; remote ones answer 401, which we explain below.
        self.client = OpenAI(
            api_key=key or "not-set", base_url=base_url, timeout=timeout_s, max_retries=1
        )

    placement = "remote"
    load_warning = None

    @property
    def description(self) -> str:
        return f"{self.model} at {self.base_url}"

    @classmethod
    def from_settings(cls, settings: Any) -> OpenAIEngine:
        return cls(
            base_url=settings.base_url or "",
            model=settings.model or "",
            api_key_env=settings.openai.api_key_env,
            think_in_prompt=settings.openai.think_in_prompt,
            timeout_s=settings.openai.timeout_s,
        )

    def __repr__(self) -> str:  # never shows the key
        return f"OpenAIEngine(base_url={self.base_url!r}, model={self.model!r}, key_env={self.api_key_env!r})"

    @staticmethod
    def _wire_messages(messages: list[dict[str, Any]], prefill: str) -> list[dict[str, Any]]:
        """OpenAI wire format: tool-call arguments as JSON strings; the prefill as a last message."""
        out = []
        for msg in messages:
            msg = dict(msg)
            if msg.get("tool_calls"):
                calls = []
                for call in msg["tool_calls"]:
                    fn = dict(call.get("function", call))
                    if not isinstance(fn.get("arguments"), str):
                        fn["arguments"] = json.dumps(fn.get("arguments", {}), ensure_ascii=False)
                    calls.append(
                        {"id": call.get("id") or "call_0", "type": "function", "function": fn}
                    )
                msg["tool_calls"] = calls
                msg["content"] = msg.get("content") or None
            out.append(msg)
        if prefill:
            out.append({"role": "assistant", "content": prefill})
        return out

    def stream(
        self,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        max_tokens: int,
        tools: list[dict[str, Any]] | None = None,
        prefill: str = "",
        grammar: Any = None,
        raw_prompt: str | None = None,
    ) -> Iterator[Chunk]:
        unsupported_options(self.name, grammar, raw_prompt)
        import openai

        self._cancel.clear()
        extra_body: dict[str, Any] = {"top_k": sampling.top_k, "min_p": sampling.min_p}
        if sampling.repeat_penalty != 1.0:
            extra_body["repetition_penalty"] = sampling.repeat_penalty
        if prefill:
            extra_body.update(continue_final_message=True, add_generation_prompt=False)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": self._wire_messages(messages, prefill),
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "presence_penalty": sampling.presence_penalty,
            "frequency_penalty": sampling.frequency_penalty,
            "max_tokens": max_tokens,
            "extra_body": extra_body,
        }
        if sampling.seed is not None:
            kwargs["seed"] = sampling.seed
        if tools:
            kwargs["tools"] = tools
        started = time.perf_counter()
        first_at: float | None = None
        finish = "stop"
        usage: Any = None
        pieces = 0
        calls: dict[int, dict[str, str]] = {}  # index -> id, name, arguments (JSON text)
        try:
            response = self.client.chat.completions.create(**kwargs)
        except openai.AuthenticationError:
            raise UserError(
                f"{self.base_url} refused the API key: set the environment variable "
                f"{self.api_key_env} (the key is read from there, never stored)"
            ) from None
        except openai.APIConnectionError as exc:
            raise UserError(
                f"cannot reach {self.base_url} ({exc}); is the server running?"
            ) from None
        except openai.APIStatusError as exc:
            raise UserError(f"{self.base_url} answered {exc.status_code}: {exc.message}") from None
        try:
            for chunk in response:
                if self._cancel.is_set():
                    finish = "cancelled"
                    break
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices:
                    delta = choice.delta
                    extra = delta.model_extra or {}
                    reasoning = (
                        getattr(delta, "reasoning_content", None)
                        or extra.get("reasoning_content")
                        or extra.get("reasoning")
                    )
                    for text, is_reasoning in ((reasoning, True), (delta.content, False)):
                        if text:
                            first_at = first_at or time.perf_counter()
                            pieces += 1
                            yield Chunk(text, reasoning=is_reasoning, tokens=1)
                    for call in delta.tool_calls or []:
                        slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                        slot["id"] = slot["id"] or (call.id or "")
                        if call.function is not None:
                            slot["name"] += call.function.name or ""
                            slot["arguments"] += call.function.arguments or ""
                    if choice.finish_reason:
                        finish = choice.finish_reason
        finally:
            response.close()
        if calls:
            yield Chunk(tool_calls=tuple(_tool_call(calls[i], i) for i in sorted(calls)))
        if finish == "tool_calls":
            finish = "stop"
        elapsed = time.perf_counter() - (first_at or started)
        completion = getattr(usage, "completion_tokens", None) or pieces
        prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
        details = getattr(usage, "prompt_tokens_details", None)
        cached = getattr(details, "cached_tokens", 0) or 0
        completion_details = getattr(usage, "completion_tokens_details", None)
        yield Chunk(
            stats=Stats(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion,
                reasoning_tokens=getattr(completion_details, "reasoning_tokens", 0) or 0,
                prompt_tokens_processed=max(0, prompt_tokens - cached),
                time_to_first_token_s=(first_at - started) if first_at else None,
                tokens_per_second=(completion / elapsed) if elapsed > 0 and completion else None,
            ),
            finish_reason=finish,
        )

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.client.close()


def _tool_call(call: dict[str, str], index: int) -> ToolCall:
    """A server-parsed call; arguments that are not a JSON object reach the tool loop as an error."""
    raw = call["arguments"] or "{}"
    try:
        arguments: Any = json.loads(raw)
    except json.JSONDecodeError:
        arguments = None
    name = call["name"] if isinstance(arguments, dict) else ""
    return ToolCall(
        name=name,
        arguments=arguments if isinstance(arguments, dict) else {},
        id=call["id"] or f"call_{index}",
        raw=json.dumps({"name": call["name"], "arguments": raw}, ensure_ascii=False),
    )
