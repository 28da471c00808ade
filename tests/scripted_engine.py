"""A deterministic engine that plays back scripted text: for UI tests and the ingest benchmark (tests only).

It speaks the same `Engine` protocol as the real backends, so everything above it (splitter, session,
store, TUI) runs for real; only the model is replaced. Each call to `stream()` plays the next turn of
the script (the last turn repeats). A turn is a list of text pieces, exactly what a local engine
would yield: QwQ-style output that starts inside the reasoning and shows only `</think>`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from qwq_chat.app.engine_protocol import Chunk
from qwq_chat.app.events import Stats
from qwq_chat.app.sampling import Sampling

Turn = list[str] | Callable[[], Iterable[str]]


def words(text: str) -> list[str]:
    """Cut text into word-sized pieces (keeping the spaces), like a tokenizer's deltas."""
    pieces: list[str] = []
    current = ""
    for ch in text:
        current += ch
        if ch in " \n":
            pieces.append(current)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def qwq_turn(reasoning: str, answer: str) -> list[str]:
    """The pieces of a QwQ-style turn: reasoning, `</think>` split across two deltas, the answer."""
    return [*words(reasoning), "\n</th", "ink>\n\n", *words(answer)]


class ScriptedEngine:
    """Plays back scripted turns; honours `cancel()` between pieces; records what it was asked."""

    name = "scripted"
    prompt_opens_reasoning = True  # like QwQ's template: output starts inside the reasoning
    description = "scripted engine (tests)"
    placement = "CPU only"
    load_warning = None

    def __init__(
        self,
        turns: list[Turn],
        delay_s: float = 0.0,
        context_size: int = 32768,
        gpu_layers: int = 0,
        load_delay_s: float = 0.0,
        fixed_stats: Stats | None = None,
        release_gil: bool = False,
    ) -> None:
        self.turns = turns
        self.delay_s = delay_s
        self.context_size = context_size
        self.gpu_layers = gpu_layers
        self.calls: list[dict[str, Any]] = []  # each stream() call: messages, sampling, prefill
        self.grammars: list[Any] = []  # the grammar each stream() call was given (None: free)
        self._cancel = threading.Event()
        self.closed = False
        self.streaming = False
        self.closed_while_streaming = False  # what a real engine would crash on
        self.release_gil = release_gil  # drop the GIL per piece, as llama.cpp does while decoding
        self.fixed_stats = fixed_stats  # reported instead of measured figures (for snapshots)
        self.gate: threading.Event | None = None  # when set by a test: each piece waits for it
        if load_delay_s:
            time.sleep(load_delay_s)

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
        self._cancel.clear()
        self.streaming = True
        self.grammars.append(grammar)
        try:
            yield from self._play(messages, sampling, max_tokens, prefill)
        finally:
            self.streaming = False

    def _play(
        self, messages: list[dict[str, Any]], sampling: Sampling, max_tokens: int, prefill: str
    ) -> Iterator[Chunk]:
        self.calls.append(
            {
                "messages": messages,
                "sampling": sampling,
                "max_tokens": max_tokens,
                "prefill": prefill,
            }
        )
        turn = self.turns[min(len(self.calls) - 1, len(self.turns) - 1)]
        pieces = turn() if callable(turn) else turn
        start = time.perf_counter()
        first: float | None = None
        count = 0
        finish = "stop"
        for piece in pieces:
            if self.gate is not None:
                while not self.gate.wait(0.05):
                    if self._cancel.is_set():
                        break
            if self._cancel.is_set():
                finish = "cancelled"
                break
            if count >= max_tokens:
                finish = "length"
                break
            if self.delay_s or self.release_gil:
                time.sleep(self.delay_s)  # sleep(0) still releases the GIL, like a native engine
            if first is None:
                first = time.perf_counter() - start
            count += 1
            yield Chunk(text=piece, tokens=1)
        elapsed = time.perf_counter() - start
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        yield Chunk(
            finish_reason=finish,
            stats=self.fixed_stats
            or Stats(
                prompt_tokens=prompt_tokens,
                completion_tokens=count,
                prompt_tokens_processed=prompt_tokens,
                time_to_first_token_s=first,
                tokens_per_second=count / elapsed if elapsed > 0 else None,
                context_size=self.context_size,
                gpu_layers=self.gpu_layers,
            ),
        )

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        self.closed = True
        self.closed_while_streaming = self.streaming
