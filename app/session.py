"""One conversation: what the user said, what the model answered, and the rules between them.

The UI (TUI or `ask`) calls `send()`, `regenerate()` or `edit_and_resend()`, each a generator of
events (app/events.py), and iterates it in a worker thread; `cancel()` may be called from any thread.

Rules kept here, in one place:
- History sent back to the model holds answers only, never reasoning (`history_for_model`).
- Tool loop: a `<tool_call>` in the output is run after the model stops, its result is appended as a
  `tool` message, and the model continues, at most `max_tool_rounds` times per user turn.
- Reasoning budget: after N reasoning tokens the reasoning is closed with `BUDGET_CLOSE` as a prefill
  and the model must answer (the engine reuses the KV cache, so this costs only the new tokens).
- Max-tokens guard: `Limits.max_tokens` covers reasoning + answer of one assistant message. Both
  count the tokens the engine reports (`Chunk.tokens`), not chunks.
- Per-chat settings (system prompt, sampling, limits) are saved with the conversation.
- Nothing is lost: each assistant message is in the store from its first token on (status
  "unfinished"), rewritten at most every `persist_every_s` while streaming, and marked "finished" at
  the end, also on stop or error. After `kill -9` the partial answer is there, still "unfinished".
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

from qwq_chat.app.engine_protocol import Engine, Toolbox
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import (
    AnswerDelta,
    Done,
    Event,
    ReasoningDelta,
    Stats,
    ToolCall,
    ToolResult,
)
from qwq_chat.app.messages import FINISHED, UNFINISHED, Message, history_for_model
from qwq_chat.app.reasoning import DEFAULT_BUDGET_MESSAGE, Effort, LoopDetector, ReasoningSettings
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.splitter import THINK_CLOSE, Splitter
from qwq_chat.app.store import Store, StoreError

log = logging.getLogger(__name__)

BUDGET_NOTICE = DEFAULT_BUDGET_MESSAGE
REASONING_CLOSE = "</think>\n\n"
BUDGET_CLOSE = BUDGET_NOTICE + REASONING_CLOSE
TITLE_CHARS = 60


class SessionError(UserError):
    """A session action that does not apply (regenerate with no user message, edit a reply...)."""


class Session:
    """Owns one conversation (in memory and in the store) and talks to the engine.

    `engine` may be None while the model is still loading; set `session.engine` before `send()`.
    `conversation_id=None` starts a new chat, created in the store on the first `send()`.
    """

    def __init__(
        self,
        store: Store,
        engine: Engine | None = None,
        conversation_id: str | None = None,
        *,
        sampling: Sampling | None = None,
        limits: Limits | None = None,
        system_prompt: str = "",
        tools: Toolbox | None = None,
        max_tool_rounds: int = 8,
        model_name: str | None = None,
        persist_every_s: float = 0.25,
    ) -> None:
        self.store = store
        self.engine = engine
        self.tools = tools
        self.max_tool_rounds = max_tool_rounds
        self.model_name = model_name
        self.persist_every_s = persist_every_s
        self.sampling = sampling or Sampling()
        self.limits = limits or Limits()
        self.system_prompt = system_prompt
        self.disabled_tools: list[str] = []  # tools switched off for this chat (saved with it)
        self.conversation_id = conversation_id
        self.store_warning: str | None = store.warning
        self._messages: list[Message] = []
        self._cancel = threading.Event()
        self._busy = threading.Lock()
        self._last_persist = 0.0
        # Reasoning controls (qwq_chat.app.reasoning); `serve` sets them per request.
        self.reasoning = ReasoningSettings()
        self.answer_now = False  # reasoning effort "none": close the reasoning before it starts
        self.answer_grammar: Any = None  # an engine grammar for the answer only (after </think>)
        self.finish_detail: str | None = None  # why a reasoning control stepped in (last reply)
        if conversation_id is not None:
            if store.get_conversation(conversation_id) is None:
                raise SessionError(f"no conversation with id {conversation_id!r}")
            self._messages = store.messages(conversation_id)
            self._load_settings(store.get_settings(conversation_id))

    @classmethod
    def from_settings(
        cls,
        settings: Any,
        store: Store,
        engine: Engine | None = None,
        conversation_id: str | None = None,
        tools: Toolbox | None = None,
    ) -> Session:
        """A session configured from `qwq_chat.app.config.Settings`; the caller builds the tools."""
        return cls(
            store,
            engine,
            conversation_id,
            sampling=settings.sampling,
            limits=settings.limits,
            system_prompt=settings.system_prompt,
            tools=tools,
            max_tool_rounds=settings.max_tool_rounds,
            model_name=settings.model,
        ).with_reasoning(settings.reasoning)

    def with_reasoning(self, reasoning: ReasoningSettings) -> Session:
        """Use these reasoning controls (effort budgets, budget message, loop guard)."""
        self.reasoning = reasoning
        return self

    # -- reading -------------------------------------------------------------------------------

    @property
    def messages(self) -> list[Message]:
        """A copy of the conversation's messages (the streaming one included, as far as it got)."""
        return list(self._messages)

    @property
    def title(self) -> str:
        if self.conversation_id is None:
            return "New chat"
        info = self.store.get_conversation(self.conversation_id)
        return info.title if info else "New chat"

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    def history(self) -> list[dict[str, Any]]:
        """The message list the model would get now (answers only)."""
        return history_for_model(self._messages, self.system_prompt)

    # -- settings --------------------------------------------------------------------------------

    @property
    def reasoning_budget(self) -> int:
        return self.limits.reasoning_budget

    def update_settings(
        self,
        system_prompt: str | None = None,
        sampling: Sampling | None = None,
        limits: Limits | None = None,
        disabled_tools: list[str] | None = None,
    ) -> None:
        """Change this conversation's system prompt, sampling, limits and/or tool choice; saved."""
        if disabled_tools is not None:
            self.disabled_tools = list(disabled_tools)
        if system_prompt is not None:
            self.system_prompt = system_prompt
        if sampling is not None:
            self.sampling = sampling
        if limits is not None:
            self.limits = limits
        if self.conversation_id is not None:
            self._save_settings()

    def settings_record(self) -> dict[str, Any]:
        """What is saved with the conversation (and exported with it)."""
        return {
            "system_prompt": self.system_prompt,
            "sampling": self.sampling.model_dump(),
            "limits": self.limits.model_dump(),
            "disabled_tools": list(self.disabled_tools),
        }

    def _save_settings(self) -> None:
        assert self.conversation_id is not None
        self._store_call(self.store.set_settings, self.conversation_id, self.settings_record())

    def _load_settings(self, saved: dict[str, Any]) -> None:
        """The record `settings_record` wrote; chats saved before limits existed kept max_tokens
        inside "sampling"."""
        self.system_prompt = saved.get("system_prompt", self.system_prompt)
        self.disabled_tools = list(saved.get("disabled_tools") or [])
        sampling = dict(saved.get("sampling") or {})
        limits = {**self.limits.model_dump(), **(saved.get("limits") or {})}
        old_max_tokens = sampling.pop("max_tokens", None)
        if old_max_tokens is not None and "limits" not in saved:
            limits["max_tokens"] = old_max_tokens
        known = {k: v for k, v in sampling.items() if k in Sampling.model_fields}
        self.sampling = self.sampling.replace(**known)
        self.limits = Limits.model_validate(limits)

    # -- actions ---------------------------------------------------------------------------------

    def send(self, text: str) -> Iterator[Event]:
        """Add a user message and stream the assistant's reply (with tool rounds) as events."""
        with self._exclusive():
            self._ensure_conversation(text)
            self._append(Message("user", content=text))
            yield from self._generate()

    def regenerate(self) -> Iterator[Event]:
        """Drop everything after the last user message and answer it again."""
        with self._exclusive():
            index = self._last_user_index()
            self._truncate(index + 1)
            yield from self._generate()

    def edit_and_resend(self, index: int, text: str) -> Iterator[Event]:
        """Replace user message `index` with `text`, drop what followed it, and answer again."""
        with self._exclusive():
            if not (0 <= index < len(self._messages)) or self._messages[index].role != "user":
                raise SessionError(
                    f"message {index} is not a user message; only those can be edited"
                )
            self._truncate(index)
            self._append(Message("user", content=text))
            yield from self._generate()

    def reply(self, messages: list[Message]) -> Iterator[Event]:
        """Answer a conversation the caller holds whole (`serve`: each request brings its history).

        The messages are added as they are (the last is usually a user or tool message) and one
        assistant turn is generated; tool calls are run only if this session has a toolbox.
        """
        with self._exclusive():
            first = next((m.content for m in messages if m.role == "user"), "")
            self._ensure_conversation(first)
            for message in messages:
                self._append(message)
            yield from self._generate()

    def set_reasoning_effort(self, effort: Effort) -> None:
        """low / medium / high: the effort's budget; none: answer without reasoning."""
        self.answer_now = effort == "none"
        if not self.answer_now:
            budget = self.reasoning.budget_for(effort)
            self.limits = self.limits.replace(reasoning_budget=budget)

    def cancel(self) -> None:
        """Stop the running generation soon (safe from any thread); what was generated is kept."""
        self._cancel.set()
        if self.engine is not None:
            self.engine.cancel()

    # -- internals -------------------------------------------------------------------------------

    class _Exclusive:
        def __init__(self, session: Session) -> None:
            self.session = session

        def __enter__(self) -> None:
            if not self.session._busy.acquire(blocking=False):
                raise SessionError("a reply is still being generated; stop it first (Esc)")
            self.session._cancel.clear()

        def __exit__(self, *exc: object) -> None:
            self.session._busy.release()

    def _exclusive(self) -> Session._Exclusive:
        return Session._Exclusive(self)

    def _last_user_index(self) -> int:
        for i in range(len(self._messages) - 1, -1, -1):
            if self._messages[i].role == "user":
                return i
        raise SessionError("there is no user message to answer yet")

    def _ensure_conversation(self, first_text: str) -> None:
        if self.conversation_id is not None:
            return
        title = " ".join(first_text.split())[:TITLE_CHARS] or "New chat"
        try:
            self.conversation_id = self.store.create_conversation(title, model=self.model_name)
        except (StoreError, sqlite3.Error) as exc:
            self._store_failed(exc)
            self.store = Store(":memory:")
            self.conversation_id = self.store.create_conversation(title, model=self.model_name)
        self._save_settings()

    def _append(self, message: Message) -> Message:
        self._messages.append(message)
        assert self.conversation_id is not None
        self._store_call(self.store.add_message, self.conversation_id, message)
        message.position = len(self._messages) - 1
        return message

    def _truncate(self, position: int) -> None:
        del self._messages[position:]
        if self.conversation_id is not None:
            self._store_call(self.store.truncate, self.conversation_id, position)

    def _persist(self, message: Message, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_persist >= self.persist_every_s:
            self._last_persist = now
            if message.id is not None:
                self._store_call(self.store.update_message, message)

    def _store_call(self, fn: Any, *args: Any) -> Any:
        """Store writes never break a chat: a failure becomes `store_warning` for the UI."""
        try:
            return fn(*args)
        except (StoreError, sqlite3.Error) as exc:
            self._store_failed(exc)
            return None

    def _store_failed(self, exc: Exception) -> None:
        self.store_warning = f"could not save to the conversation database: {exc}"
        log.warning(self.store_warning)

    def _require_engine(self) -> Engine:
        if self.engine is None:
            raise SessionError("the model is not loaded yet; wait for it, then send again")
        return self.engine

    def _generate(self) -> Iterator[Event]:
        """Assistant turn(s) for the current history: stream, run tools, continue; then Done."""
        engine = self._require_engine()
        tools = self.tools.schemas() if self.tools is not None and len(self.tools) else None
        finish, error, unfinished = "stop", None, False
        self.finish_detail = None
        for round_index in range(self.max_tool_rounds + 1):
            message = self._append(Message("assistant", status=UNFINISHED))
            calls: list[ToolCall] = []
            try:
                finish = yield from self._stream_message(engine, message, tools, calls)
            except Exception as exc:  # engine failure: keep what came, report it
                log.exception("generation failed")
                detail = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
                finish, error = "error", detail
            finally:  # also runs when the consumer abandons the generator mid-stream
                if message.status == UNFINISHED:
                    message.status = FINISHED
                    message.finish_reason = "error" if error else "cancelled"
                    self._persist(message, force=True)
            unfinished = message.reasoning_unfinished
            if error or finish not in ("stop", "reasoning_budget") or not calls:
                break
            if self.tools is None or round_index == self.max_tool_rounds:
                break
            for call in calls:
                result = self.tools.run(call)
                self._append(
                    Message("tool", content=result.content, tool_call_id=call.id, name=call.name)
                )
                yield result
                if self._cancel.is_set():
                    break
            if self._cancel.is_set():
                finish = "cancelled"
                break
        yield Done(
            finish_reason=finish,
            error=error,
            reasoning_unfinished=unfinished,
            detail=self.finish_detail,
        )

    def _stream_message(
        self,
        engine: Engine,
        message: Message,
        tools: list[dict[str, Any]] | None,
        calls: list[ToolCall],
    ) -> Iterator[Event]:
        """Fill `message` from the engine; returns the finish reason (via StopIteration).

        Reasoning controls continue the turn with a prefill (the engine reuses the KV cache, so
        this costs only the new tokens): the budget and a second loop close the reasoning, a first
        loop adds a nudge to it, `answer_now` closes it before it starts, and `answer_grammar`
        applies from `</think>` on (or from the start when the prompt opens no reasoning).
        """
        history = history_for_model(self._messages[:-1], self.system_prompt)
        prefill = ""
        raw = ""  # the model's own text (what a prefill must repeat to continue it)
        tokens = reasoning_tokens = 0
        budget_used = loop_closed = nudged = grammar_on = opened = False
        guard = LoopDetector(self.reasoning) if self.reasoning.loop_guard != "off" else None
        splitter: Splitter | None = None
        finish = "stop"
        stats: Stats | None = None
        seen: list[Stats] = []  # every stream's figures: the first prompt, all prompt evaluation
        while True:
            left = max(1, self.limits.max_tokens - tokens)
            extra = {"grammar": self.answer_grammar} if grammar_on else {}
            stream = engine.stream(
                history, self.sampling, left, tools=tools, prefill=prefill, **extra
            )
            action: str | None = None
            try:
                for chunk in stream:
                    if splitter is None:
                        splitter = Splitter(engine.prompt_opens_reasoning)
                    if not opened:  # the engine now knows whether its prompt opened reasoning
                        opened = True
                        action = self._opening_action(engine.prompt_opens_reasoning)
                        if action:
                            break
                    tokens += chunk.tokens
                    was_reasoning = splitter.in_reasoning
                    if chunk.reasoning or was_reasoning or splitter.undecided:
                        reasoning_tokens += chunk.tokens
                    events: list[Event] = []
                    if chunk.text:
                        if not chunk.reasoning:
                            raw += chunk.text
                        events = splitter.feed(chunk.text, chunk.reasoning)
                    if (
                        self.answer_grammar is not None
                        and not grammar_on
                        and was_reasoning
                        and not splitter.in_reasoning
                        and THINK_CLOSE in raw
                    ):  # the reasoning just closed: the answer is written again, constrained
                        events = [e for e in events if not isinstance(e, AnswerDelta)]
                        action = "grammar"
                    events.extend(chunk.tool_calls)
                    for event in events:
                        self._apply(message, event, calls)
                        if guard is not None and isinstance(event, ReasoningDelta):
                            guard.feed(event.text)
                    if chunk.stats is not None:
                        if splitter.undecided or not splitter.saw_reasoning:
                            reasoning_tokens = 0  # held text so far is not known to be reasoning
                        seen.append(chunk.stats)
                        stats = dataclasses.replace(
                            chunk.stats,
                            reasoning_tokens=reasoning_tokens,
                            completion_tokens=sum(s.completion_tokens for s in seen),
                            prompt_tokens=seen[0].prompt_tokens,  # the conversation, no prefill
                            prompt_tokens_processed=sum(s.prompt_tokens_processed for s in seen),
                        )
                        message.stats = _stats_dict(stats)
                        events.append(stats)
                    if chunk.finish_reason:
                        finish = chunk.finish_reason
                    self._persist(message)  # before the UI shows it: what was seen is on disk
                    yield from events
                    if action:
                        break
                    if self._cancel.is_set():
                        # The engine saw cancel() too and ends within a token or so; reading on
                        # keeps its final chunk (stats) rather than dropping the connection.
                        continue
                    if (
                        self.reasoning_budget
                        and not budget_used
                        and reasoning_tokens >= self.reasoning_budget
                        and splitter.in_reasoning
                    ):
                        action = "budget"
                        break
                    if guard is not None and guard.fired and splitter.in_reasoning:
                        action = "loop"
                        break
                if action is not None:  # end this stream at once, keeping its figures
                    engine.cancel()
                    seen.extend(rest.stats for rest in stream if rest.stats is not None)
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            if self._cancel.is_set():
                finish = "cancelled"
                break
            if action is None:
                break
            assert splitter is not None
            if action == "answer_now":  # effort "none": an empty reasoning, then the answer
                prefill = raw = REASONING_CLOSE
                splitter = Splitter.after_reasoning()
                grammar_on = self.answer_grammar is not None
                continue
            if action == "grammar_start":  # no reasoning in this prompt: constrain everything
                grammar_on = True
                splitter = None
                continue
            if action == "grammar":
                prefill = raw = raw[: raw.rindex(THINK_CLOSE) + len(THINK_CLOSE)] + "\n\n"
                splitter = Splitter.after_reasoning()
                grammar_on = True
                continue
            assert guard is not None or action == "budget"
            if action == "loop":
                self.finish_detail = f"loop guard: {guard.fired if guard else ''}"
                if self.reasoning.loop_guard == "stop":
                    finish = "reasoning_loop"
                    self.finish_detail += "; stopped"
                    break
            for event in splitter.finish():
                self._apply(message, event, calls)
                yield event
            if action == "loop" and not nudged:  # first loop: a nudge, and the reasoning goes on
                notice = self.reasoning.loop_nudge
                prefill = raw = raw + notice
                splitter = Splitter(start_in_reasoning=True)
                nudged = True
                self.finish_detail = f"{self.finish_detail}; nudged to conclude"
                if guard is not None:
                    guard.reset()
            else:  # the budget is spent, or it looped again: close the reasoning, let it answer
                if action == "loop":
                    notice = self.reasoning.loop_nudge
                    loop_closed = True
                    self.finish_detail = f"{self.finish_detail}; reasoning closed"
                else:
                    notice = self.reasoning.budget_message
                    budget_used = True
                prefill = raw = (raw or message.reasoning) + notice + REASONING_CLOSE
                splitter = Splitter.after_reasoning()
                grammar_on = self.answer_grammar is not None
            event = ReasoningDelta(notice)
            self._apply(message, event, calls)
            yield event
        if splitter is not None:
            for event in splitter.finish():
                self._apply(message, event, calls)
                yield event
            message.reasoning_unfinished = splitter.reasoning_unfinished and not (
                calls and finish == "stop"
            )
        if finish == "stop" and (budget_used or loop_closed):
            finish = "reasoning_loop" if loop_closed else "reasoning_budget"
        message.status = FINISHED
        message.finish_reason = finish
        self._persist(message, force=True)
        return finish

    def _opening_action(self, opens_reasoning: bool | None) -> str | None:
        """Before the first token: skip the reasoning (effort none) or constrain a no-reasoning
        prompt from the start (the engine knows only once it rendered the prompt)."""
        if self.answer_now and opens_reasoning:
            return "answer_now"
        if self.answer_grammar is not None and opens_reasoning is False:
            return "grammar_start"
        return None

    def _apply(self, message: Message, event: Event, calls: list[ToolCall]) -> None:
        if isinstance(event, ReasoningDelta):
            message.reasoning += event.text
        elif isinstance(event, AnswerDelta):
            message.content += event.text
        elif isinstance(event, ToolCall):
            calls.append(event)
            message.tool_calls.append(
                {"id": event.id, "name": event.name, "arguments": event.arguments, "raw": event.raw}
            )


def _stats_dict(stats: Stats) -> dict[str, Any]:
    data = dataclasses.asdict(stats)
    data.pop("type", None)
    return data


def tool_result_event(message: Message) -> ToolResult:
    """A stored tool message as the event the UI shows."""
    return ToolResult(name=message.name, content=message.content, id=message.tool_call_id)
