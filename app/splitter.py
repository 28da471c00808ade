"""Incremental state machine: raw text deltas from an engine -> reasoning / answer / tool-call events.

Why a state machine and not a regex over the whole text: the text arrives one token at a time and the
UI must show it as it comes, so every delta is classified immediately, except the few characters that
might be the start of a tag (`</thi` ...), which are held back until the next delta settles them.

Rules (docs/architecture.md, "Splitter"):
- QwQ's prompt ends with `<think>\\n`, so local output starts INSIDE the reasoning and only ever shows
  `</think>`. Create the splitter with `start_in_reasoning=True` for such prompts (the engine knows:
  `Engine.prompt_opens_reasoning`).
- In the answer state an opening `<think>` at the very start (after whitespace) switches to reasoning:
  this is how remote servers without a reasoning parser send reasoning inside `content`.
- `start_in_reasoning=None` (a remote server whose template we cannot see): the text is held until
  the stream shows what it is. A bare `</think>` means the server's template opened the reasoning in
  the prompt (vLLM without --reasoning-parser, llama-server without --reasoning-format, most hosted
  QwQ endpoints): everything before it was reasoning. An opening `<think>` at the start, reasoning
  the server separated itself, or the end of a stream with no tags decide "answer first". The price
  is that such text shows only once decided; `openai.think_in_prompt = true` streams it at once.
- A lone `</think>` met in the answer state is dropped; text already shown as answer stays answer.
  Servers that separate reasoning (`delta.reasoning_content`: DashScope, vLLM `--reasoning-parser`,
  llama-server's default) need nothing: chunks flagged `reasoning=True` pass through as reasoning.
- `<tool_call>...</tool_call>` (in reasoning or answer) becomes a `ToolCall`; its body is not shown as
  text. A body that is not valid JSON becomes a `ToolCall` named "" with the raw text, so the session
  can report the error to the model.
- `finish()` flushes held-back text; `reasoning_unfinished` tells whether the reasoning never closed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from qwq_chat.app.events import AnswerDelta, Event, ReasoningDelta, ToolCall

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"

REASONING = "reasoning"
ANSWER = "answer"
TOOL = "tool"
REASONING_SEPARATE = "separate"  # undecided start, then the server flagged reasoning itself


def parse_tool_call(body: str) -> ToolCall:
    """Parse the JSON body of a `<tool_call>` block: {"name": ..., "arguments": {...}}."""
    raw = body.strip()
    call_id = "call_" + uuid.uuid4().hex[:12]
    try:
        data: Any = json.loads(raw)
    except json.JSONDecodeError:
        return ToolCall(name="", arguments={}, id=call_id, raw=raw)
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        return ToolCall(name="", arguments={}, id=call_id, raw=raw)
    arguments = data.get("arguments", {})
    if isinstance(arguments, str):  # some models double-encode the arguments
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            arguments = {"input": arguments}
    if not isinstance(arguments, dict):
        arguments = {"input": arguments}
    return ToolCall(name=data["name"], arguments=arguments, id=call_id, raw=raw)


def _partial_tag_suffix(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of one of `tags` (0 if none)."""
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(text)), best, -1):
            if text.endswith(tag[:n]):
                best = n
                break
    return best


class Splitter:
    """Feed text deltas with `feed()`, get events back; call `finish()` at the end of the stream."""

    def __init__(self, start_in_reasoning: bool | None = True) -> None:
        self.state = REASONING if start_in_reasoning else ANSWER
        self.undecided = start_in_reasoning is None  # see the module docstring
        self._undecided_text = ""
        self._pending = ""  # held back: may be the start of a tag
        self._tool_body = ""
        self._state_before_tool = self.state
        self._answer_started = (
            False  # answer text seen (an opening <think> is only looked for before)
        )
        self._strip_answer_newlines = False  # drop the blank lines right after </think>
        self.saw_reasoning = bool(start_in_reasoning)
        self._flagged_reasoning = False  # got reasoning=True chunks (remote reasoning_content)

    @classmethod
    def after_reasoning(cls) -> Splitter:
        """A splitter for a continuation whose prefill already closed the reasoning (`</think>`)."""
        splitter = cls(start_in_reasoning=False)
        splitter.saw_reasoning = True
        splitter._strip_answer_newlines = True
        return splitter

    @property
    def in_reasoning(self) -> bool:
        """True while the output is (still) reasoning: inside <think>, or flagged remote reasoning
        with no answer yet."""
        if self.state == REASONING or (self.state == TOOL and self._state_before_tool == REASONING):
            return True
        return self._flagged_reasoning and not self._answer_started

    @property
    def reasoning_unfinished(self) -> bool:
        """True when the output was in the reasoning and never reached `</think>` (or, for a
        server that separates reasoning, when reasoning came but no answer followed)."""
        if self.state == REASONING or (self.state == TOOL and self._state_before_tool == REASONING):
            return True
        return self._flagged_reasoning and not self._answer_started

    def feed(self, text: str, reasoning: bool = False) -> list[Event]:
        """Classify one delta. `reasoning=True` marks text a remote server already separated."""
        if not text:
            return []
        if reasoning:
            events = self._decide(REASONING_SEPARATE) if self.undecided else []
            self.saw_reasoning = True
            self._flagged_reasoning = True
            return _merge([*events, ReasoningDelta(text)])
        if self.undecided:
            self._undecided_text += text
            stripped = self._undecided_text.lstrip()
            if stripped and not THINK_OPEN.startswith(stripped[: len(THINK_OPEN)]):
                if THINK_CLOSE in self._undecided_text:
                    return self._decide(REASONING)
                return []
            if stripped.startswith(THINK_OPEN):
                return self._decide(ANSWER)
            return []
        return self._feed_text(text)

    def _decide(self, state: str) -> list[Event]:
        """Leave the undecided start: replay the held text in `state`."""
        self.undecided = False
        held, self._undecided_text = self._undecided_text, ""
        if state == REASONING:
            self.state = REASONING
            self.saw_reasoning = True
        return self._feed_text(held) if held else []

    def _feed_text(self, text: str) -> list[Event]:
        events: list[Event] = []
        buf = self._pending + text
        self._pending = ""
        while buf:
            buf = self._step(buf, events)
        return _merge(events)

    def finish(self) -> list[Event]:
        """End of stream: flush held-back text (an unterminated tool call is shown as text)."""
        events: list[Event] = self._decide(ANSWER) if self.undecided else []
        pending, self._pending = self._pending, ""
        if self.state == TOOL:
            pending = TOOL_OPEN + self._tool_body + pending
            self._tool_body = ""
            self.state = self._state_before_tool
        if pending:
            self._emit(pending, events)
        return _merge(events)

    # -- internals -------------------------------------------------------------------------------

    def _tags(self) -> tuple[str, ...]:
        if self.state == TOOL:
            return (TOOL_CLOSE,)
        return (THINK_CLOSE, TOOL_OPEN)

    def _step(self, buf: str, events: list[Event]) -> str:
        """Consume a prefix of `buf`, appending events; return what is left."""
        if self.state == ANSWER and not self._answer_started and not self.saw_reasoning:
            # Start of an answer-first stream: an opening <think> here means reasoning in content.
            stripped = buf.lstrip()
            if not stripped or THINK_OPEN.startswith(stripped):
                self._pending = buf  # only whitespace or a partial "<think": wait for more
                return ""
            self._answer_started = True
            if stripped.startswith(THINK_OPEN):
                self.state = REASONING
                self.saw_reasoning = True
                return stripped[len(THINK_OPEN) :]
        tags = self._tags()
        hits = [(buf.find(tag), tag) for tag in tags]
        hits = [(i, tag) for i, tag in hits if i >= 0]
        if not hits:
            keep = _partial_tag_suffix(buf, tags)
            self._consume_text(buf[: len(buf) - keep], events)
            self._pending = buf[len(buf) - keep :]
            return ""
        index, tag = min(hits)
        self._consume_text(buf[:index], events)
        rest = buf[index + len(tag) :]
        if tag == TOOL_CLOSE:
            events.append(parse_tool_call(self._tool_body))
            self._tool_body = ""
            self.state = self._state_before_tool
        elif tag == TOOL_OPEN:
            self._state_before_tool = self.state
            self.state = TOOL
        elif tag == THINK_CLOSE and self.state == REASONING:
            self.state = ANSWER
            self._strip_answer_newlines = True
        # a lone </think> in the answer state is dropped (see module docstring)
        return rest

    def _consume_text(self, text: str, events: list[Event]) -> None:
        if not text:
            return
        if self.state == TOOL:
            self._tool_body += text
            return
        self._emit(text, events)

    def _emit(self, text: str, events: list[Event]) -> None:
        if self.state == REASONING:
            events.append(ReasoningDelta(text))
            return
        if (
            self._strip_answer_newlines
        ):  # "</think>\n\nAnswer": those blank lines are not the answer
            text = text.lstrip("\n")
            if not text:
                return
            self._strip_answer_newlines = False
        self._answer_started = True
        events.append(AnswerDelta(text))


def _merge(events: list[Event]) -> list[Event]:
    """Join consecutive deltas of the same kind, so one feed() gives at most a few events."""
    merged: list[Event] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, ReasoningDelta) and isinstance(last, ReasoningDelta):
            merged[-1] = ReasoningDelta(last.text + event.text)
        elif isinstance(event, AnswerDelta) and isinstance(last, AnswerDelta):
            merged[-1] = AnswerDelta(last.text + event.text)
        else:
            merged.append(event)
    return merged


def split_text(text: str, start_in_reasoning: bool = True) -> tuple[str, str]:
    """Split a complete output into (reasoning, answer); convenience for tests and exports."""
    splitter = Splitter(start_in_reasoning)
    events = splitter.feed(text) + splitter.finish()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    return reasoning, answer
