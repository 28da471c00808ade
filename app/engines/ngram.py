"""Prompt-lookup drafting: propose the tokens that followed the last occurrence of the current tail.

No extra model: when the reply restates the question, quotes code or repeats an earlier step, the
tokens after the latest earlier occurrence of its last few tokens are a good guess, and the main
model checks the guess in one batch (qwq_chat.app.engines.speculative). The index maps each n-gram
to the position after its latest occurrence and is extended as the context grows, so a proposal
costs a few dictionary look-ups however long the context is.
"""

from __future__ import annotations

from collections.abc import Sequence

# Longest n-gram tried first; shorter matches (", the") are too weak a hint to spend a batch on.
NGRAM_MAX = 4
NGRAM_MIN = 3


class NgramDrafter:
    """Proposes continuations copied from earlier in the context (prompt and reply so far)."""

    kind = "ngram"

    def __init__(self, ngram_max: int = NGRAM_MAX, ngram_min: int = NGRAM_MIN) -> None:
        self.sizes = range(ngram_max, ngram_min - 1, -1)
        self._index: dict[tuple[int, ...], int] = {}
        self._context: list[int] = []
        self._indexed = 0  # n-grams ending before this position are in the index

    def _sync(self, context: Sequence[int]) -> None:
        """Follow `context`: extend the index if it grew, rebuild it if it changed."""
        known = len(self._context)
        if len(context) < known or list(context[:known]) != self._context:
            self._index.clear()
            self._context = []
            self._indexed = 0
        self._context.extend(context[len(self._context) :])
        ctx = self._context
        # Index n-grams that are followed by at least one token (end < len(ctx)).
        for end in range(max(self._indexed, 1), len(ctx)):
            for size in self.sizes:
                if end >= size:
                    self._index[tuple(ctx[end - size : end])] = end
        self._indexed = max(self._indexed, len(ctx))

    def propose(self, context: Sequence[int], n: int) -> list[int]:
        """Up to `n` tokens that followed the latest earlier occurrence of the context's tail."""
        if n <= 0:
            return []
        self._sync(context)
        ctx = self._context
        for size in self.sizes:
            if len(ctx) <= size:
                continue
            start = self._index.get(tuple(ctx[-size:]))
            if start is not None:
                return ctx[start : start + n]
        return []

    def close(self) -> None:
        self._index.clear()
        self._context = []
