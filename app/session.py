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
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.splitter import Splitter
from qwq_chat.app.store import Store, StoreError

log = logging.getLogger(__name__)

BUDGET_NOTICE = "\n\nConsidering the limited time, I have to give the solution based on the thinking directly now.\n"
BUDGET_CLOSE = BUDGET_NOTICE + "</think>\n\n"
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
        self.conversation_id = conversation_id
        self.store_warning: str | None = store.warning
        self._messages: list[Message] = []
        self._cancel = threading.Event()
        self._busy = threading.Lock()
        self._last_persist = 0.0
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
        )

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
    ) -> None:
        """Change this conversation's system prompt, sampling and/or limits; saved with it."""
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
        }

    def _save_settings(self) -> None:
        assert self.conversation_id is not None
        self._store_call(self.store.set_settings, self.conversation_id, self.settings_record())

    def _load_settings(self, saved: dict[str, Any]) -> None:
        """The record `settings_record` wrote; chats saved before limits existed kept max_tokens
        inside "sampling"."""
        self.system_prompt = saved.get("system_prompt", self.system_prompt)
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
        yield Done(finish_reason=finish, error=error, reasoning_unfinished=unfinished)

    def _stream_message(
        self,
        engine: Engine,
        message: Message,
        tools: list[dict[str, Any]] | None,
        calls: list[ToolCall],
    ) -> Iterator[Event]:
        """Fill `message` from the engine; returns the finish reason (via StopIteration)."""
        history = history_for_model(self._messages[:-1], self.system_prompt)
        prefill = ""
        raw = ""  # the model's own text (what a prefill must repeat to continue it)
        tokens = reasoning_tokens = 0
        budget_used = False
        splitter: Splitter | None = None
        finish = "stop"
        stats: Stats | None = None
        while True:
            left = max(1, self.limits.max_tokens - tokens)
            stream = engine.stream(history, self.sampling, left, tools=tools, prefill=prefill)
            restart = False
            try:
                for chunk in stream:
                    if splitter is None:
                        splitter = Splitter(engine.prompt_opens_reasoning)
                    tokens += chunk.tokens
                    if chunk.reasoning or splitter.in_reasoning or splitter.undecided:
                        reasoning_tokens += chunk.tokens
                    events: list[Event] = []
                    if chunk.text:
                        if not chunk.reasoning:
                            raw += chunk.text
                        events = splitter.feed(chunk.text, chunk.reasoning)
                    events.extend(chunk.tool_calls)
                    for event in events:
                        self._apply(message, event, calls)
                    if chunk.stats is not None:
                        if splitter.undecided or not splitter.saw_reasoning:
                            reasoning_tokens = 0  # held text so far is not known to be reasoning

                        stats = dataclasses.replace(chunk.stats, reasoning_tokens=reasoning_tokens)
                        message.stats = _stats_dict(stats)
                        events.append(stats)
                    if chunk.finish_reason:
                        finish = chunk.finish_reason
                    self._persist(message)  # before the UI shows it: what was seen is on disk
                    yield from events
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
                        restart = True
                        break
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
            if self._cancel.is_set():
                finish = "cancelled"
            if not restart:
                break
            # Reasoning budget spent: close the reasoning ourselves and let the model answer.
            assert splitter is not None
            for event in splitter.finish():
                self._apply(message, event, calls)
                yield event
            prefill = (raw or message.reasoning) + BUDGET_CLOSE
            notice = ReasoningDelta(BUDGET_NOTICE)
            self._apply(message, notice, calls)
            yield notice
            raw = prefill
            splitter = Splitter.after_reasoning()
            budget_used = True
        if splitter is not None:
            for event in splitter.finish():
                self._apply(message, event, calls)
                yield event
            message.reasoning_unfinished = splitter.reasoning_unfinished and not (
                calls and finish == "stop"
            )
        if budget_used and finish == "stop":
            finish = "reasoning_budget"
        message.status = FINISHED
        message.finish_reason = finish
        self._persist(message, force=True)
        return finish

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
