"""Reasoning controls shared by the TUI, `ask` and `serve`: effort levels and the loop guard.

The session (qwq_chat.app.session) applies them; this module holds the settings and the detector.

- Effort: `low` / `medium` / `high` are reasoning budgets in tokens; `none` answers at once (the
  reasoning is closed by a prefill before the model writes any).
- Loop guard: QwQ's most reported failure is reasoning that repeats itself without end. The
  detector watches the reasoning as it streams and fires when the same sentence keeps coming back
  or when the tail of the text is one block of words repeated back to back. The session then
  nudges the model to conclude (a sentence added to its reasoning; a second loop closes the
  reasoning, as the budget does) or stops the reply, and says why in `Done.detail`.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Effort = Literal["none", "low", "medium", "high"]
LoopAction = Literal["off", "nudge", "stop"]

DEFAULT_BUDGET_MESSAGE = (
    "\n\nConsidering the limited time, I have to give the solution based on the thinking "
    "directly now.\n"
)
DEFAULT_LOOP_NUDGE = (
    "\n\nWait, I am repeating myself. I have enough to conclude, so let me stop and write the "
    "final answer.\n"
)


class ReasoningSettings(BaseModel):
    """The config file's `[reasoning]` table (docs/configuration.md)."""

    model_config = ConfigDict(extra="forbid")

    # Budgets (tokens) for the effort levels; `none` always means: answer at once.
    effort_budgets: dict[Literal["low", "medium", "high"], int] = Field(
        default_factory=lambda: {"low": 1024, "medium": 4096, "high": 16384}
    )
    # Said (as the model's own reasoning) when the budget closes the reasoning.
    budget_message: str = DEFAULT_BUDGET_MESSAGE
    loop_guard: LoopAction = "nudge"
    loop_nudge: str = DEFAULT_LOOP_NUDGE
    # A sentence of at least `loop_min_words` words seen `loop_repeats` times within the last
    # `loop_window_sentences` sentences, or a block of words repeated `loop_repeats` times back to
    # back at the end of the reasoning, is a loop.
    loop_repeats: int = Field(4, ge=2)
    loop_min_words: int = Field(6, ge=2)
    loop_window_sentences: int = Field(60, ge=4)

    def budget_for(self, effort: Effort) -> int:
        """The reasoning budget of an effort level (0 for `none`: the caller answers at once)."""
        return 0 if effort == "none" else self.effort_budgets[effort]


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+|\n+")
_WORD = re.compile(r"\w+")
_MAX_BLOCK_WORDS = 120
_CHECK_EVERY_WORDS = 8
_MAX_SENTENCE_CHARS = 400


class LoopDetector:
    """Feed reasoning text as it streams; `fired` becomes a short reason once it repeats itself."""

    def __init__(self, settings: ReasoningSettings | None = None) -> None:
        self.settings = settings or ReasoningSettings()
        self.reset()

    def reset(self) -> None:
        """Forget what was seen (after a nudge the model gets a fresh chance)."""
        self.fired: str | None = None
        self._partial = ""
        self._sentences: deque[str] = deque(maxlen=self.settings.loop_window_sentences)
        self._counts: Counter[str] = Counter()
        self._words: deque[str] = deque(maxlen=_MAX_BLOCK_WORDS * (self.settings.loop_repeats + 1))
        self._since_check = 0

    def feed(self, text: str) -> str | None:
        """Take more reasoning; returns the reason once a loop is detected (and keeps it)."""
        if self.fired or not text:
            return self.fired
        self._partial += text
        parts = _SENTENCE_END.split(self._partial)
        self._partial = parts.pop()
        cut = self._partial.rfind(" ")
        if len(self._partial) > _MAX_SENTENCE_CHARS and cut > 0:  # no sentence end for long:
            parts.append(self._partial[:cut])  # judge the words so far anyway
            self._partial = self._partial[cut:]
        for sentence in parts:
            self._add_sentence(sentence)
            if self.fired:
                return self.fired
        return self.fired

    def _add_sentence(self, sentence: str) -> None:
        words = [w.lower() for w in _WORD.findall(sentence)]
        if not words:
            return
        self._words.extend(words)
        self._since_check += len(words)
        if len(words) >= self.settings.loop_min_words:
            key = " ".join(words)
            if len(self._sentences) == self._sentences.maxlen:
                old = self._sentences[0]
                self._counts[old] -= 1
            self._sentences.append(key)
            self._counts[key] += 1
            if self._counts[key] >= self.settings.loop_repeats:
                self.fired = (
                    f'the sentence "{_short(sentence)}" came {self._counts[key]} times '
                    f"in the last {len(self._sentences)} sentences"
                )
                return
        if self._since_check >= _CHECK_EVERY_WORDS:
            self._since_check = 0
            self._check_block()

    def _check_block(self) -> None:
        """The tail is one block of words repeated `loop_repeats` times back to back."""
        words = list(self._words)
        repeats = self.settings.loop_repeats
        for size in range(self.settings.loop_min_words, _MAX_BLOCK_WORDS + 1):
            if size * repeats > len(words):
                break
            block = words[-size:]
            if all(words[-size * (i + 1) : len(words) - size * i] == block for i in range(repeats)):
                self.fired = (
                    f'the block "{_short(" ".join(block))}" ({size} words) repeated '
                    f"{repeats} times in a row"
                )
                return


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
