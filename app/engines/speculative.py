"""Speculative decoding for the llama.cpp engine: a drafter guesses, the main model checks in one batch.

Why: decoding a large model is memory-bound, so evaluating the last token plus k guessed tokens in
one batch costs about as much as evaluating one token; every guess the main model agrees with is a
token gained. Two drafters (one `Drafter` interface): prompt lookup (`ngram.py`, no extra model)
and a small draft model with the same tokenizer (`draft.py`).

Lossless by construction:
- greedy sampling (top_k 1): a guess is kept only while it equals the main model's argmax at its
  position, and the first disagreement is replaced by the main model's own token;
- sampling (temperature > 0): the standard accept/reject rule (`verify`): keep guess d with
  probability min(1, p(d)/q(d)), otherwise draw from norm(max(0, p - q)); after all guesses are
  kept, one more token is drawn from p. The output is distributed exactly as the main model's
  (p: llama.cpp's chain top_k -> top_p -> min_p -> temperature, reproduced in `probabilities`).
Repetition penalties and grammars depend on state this loop does not reproduce, so speculation
switches itself off for them (`applicable`). Bit-identical logits also need the prompt evaluated
as `Llama.generate` does (one batch shape) and, on the CPU, flash attention (the engine turns it
on): llama.cpp's other CPU attention path gives batch-size-dependent results.

KV cache: the main model's cache and `Llama.input_ids`/`n_tokens` are kept as the library keeps them,
so a later turn (speculative or not) reuses the common prefix; rejected guesses are removed from
the cache (`llama_memory_seq_rm`) right after each check.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from qwq_chat.app.sampling import Sampling

NGRAM = "ngram"  # the --draft-model value that selects prompt lookup
DRAFT_MAX = 8  # longest guess checked in one batch (the config's draft.max_tokens default)


class Drafter(Protocol):
    """Something that guesses how `context` goes on (up to `n` tokens; [] when it has no idea)."""

    kind: str

    def propose(self, context: Sequence[int], n: int) -> list[int]: ...

    def close(self) -> None: ...


@dataclass
class SpecCounters:
    """What one speculative generation did; the engine turns it into Stats fields."""

    passes: int = 0  # main-model batches after the prompt
    drafted: int = 0  # guessed tokens checked
    accepted: int = 0  # guessed tokens kept
    emitted: int = 0  # tokens handed out
    prompt_evaluated: int = 0  # prompt tokens evaluated (after cache reuse)
    decode_s: float = 0.0  # wall time of the passes (drafting included)

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None

    @property
    def tokens_per_pass(self) -> float | None:
        return self.emitted / self.passes if self.passes else None

    @property
    def tokens_per_second(self) -> float | None:
        return self.emitted / self.decode_s if self.decode_s > 0 and self.emitted else None


def applicable(sampling: Sampling, grammar: Any = None) -> str | None:
    """Why speculation must stay off for this request, or None when it may run."""
    if grammar is not None:
        return "a grammar constrains sampling"
    if (
        sampling.repeat_penalty != 1.0
        or sampling.presence_penalty != 0.0
        or sampling.frequency_penalty != 0.0
    ):
        return "repetition penalties are set"
    return None


def is_greedy(sampling: Sampling) -> bool:
    return sampling.top_k == 1


def probabilities(logits: np.ndarray, sampling: Sampling) -> np.ndarray:
    """The main model's next-token distribution under `sampling`, as llama.cpp's chain computes it.

    top_k, then top_p and min_p on the softmax at temperature 1, then temperature (llama-cpp-python
    builds the chain in that order); a dense vector over the vocabulary.
    """
    x = np.asarray(logits, dtype=np.float64)
    size = x.shape[0]
    k = sampling.top_k if 0 < sampling.top_k < size else size
    ids = np.argpartition(-x, k - 1)[:k] if k < size else np.arange(size)
    order = np.argsort(-x[ids], kind="stable")
    ids, vals = ids[order], x[ids][order]
    if sampling.top_p < 1.0 or sampling.min_p > 0.0:
        p = np.exp(vals - vals[0])
        p /= p.sum()
        keep = len(ids)
        if sampling.top_p < 1.0:
            keep = min(keep, int(np.searchsorted(np.cumsum(p), sampling.top_p)) + 1)
        if sampling.min_p > 0.0:
            keep = min(keep, max(1, int(np.count_nonzero(p >= sampling.min_p * p[0]))))
        ids, vals = ids[:keep], vals[:keep]
    weights = np.exp((vals - vals[0]) / sampling.temperature)
    dense = np.zeros(size)
    dense[ids] = weights / weights.sum()
    return dense


def _draw(p: np.ndarray, rng: np.random.Generator) -> int:
    """One token from the distribution `p` (inverse CDF: one uniform number)."""
    cdf = np.cumsum(p)
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(p) - 1))


def verify(
    p_rows: Sequence[np.ndarray],
    draft: Sequence[int],
    rng: np.random.Generator,
    q_rows: Sequence[np.ndarray] | None = None,
) -> tuple[int, int]:
    """The accept/reject rule: (guesses kept, the next token after them).

    `p_rows[i]` is the main model's distribution at guess i's position (len(draft) + 1 rows: the
    last one follows a fully kept guess); `q_rows[i]` the drafter's, None for a deterministic
    (greedy or copied) guess, i.e. a point mass on it.
    """
    for i, guess in enumerate(draft):
        p = p_rows[i]
        q_guess = 1.0 if q_rows is None else float(q_rows[i][guess])
        if q_guess > 0 and rng.random() * q_guess < p[guess]:
            continue
        residual = p.copy()
        if q_rows is None:
            residual[guess] = 0.0
        else:
            residual = np.maximum(residual - q_rows[i], 0.0)
        if residual.sum() <= 0:  # p == q: nothing left to correct towards
            residual = p
        return i, _draw(residual, rng)
    return len(draft), _draw(p_rows[len(draft)], rng)


class SpeculativeDecoder:
    """Drives a loaded `llama_cpp.Llama` with a drafter; `generate` yields tokens like `Llama.generate`."""

    def __init__(
        self, llm: Any, drafter: Drafter, max_draft: int = DRAFT_MAX, adaptive: bool = True
    ):
        self.llm = llm
        self.drafter = drafter
        self.max_draft = max(1, max_draft)
        self.adaptive = adaptive
        self.n_vocab = llm.n_vocab()
        self.last = SpecCounters()

    @property
    def kind(self) -> str:
        return self.drafter.kind

    def describe(self) -> str:
        """What drafts, for the engine's one-line description."""
        name = getattr(self.drafter, "path", None)
        what = f"{name.name}" if name is not None else "prompt lookup"
        return f"{what}, up to {self.max_draft} tokens{' (adaptive)' if self.adaptive else ''}"

    def _decode(self, tokens: Sequence[int], all_logits: bool) -> np.ndarray:
        """Evaluate `tokens` after the cached ones: all their logits rows, or the last one."""
        import llama_cpp

        llm = self.llm
        for start in range(0, len(tokens), llm.n_batch):
            part = list(tokens[start : start + llm.n_batch])
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=part, n_past=n_past, logits_all=all_logits)
            try:
                llm._ctx.decode(llm._batch)
            except BaseException:
                llm._ctx.kv_cache_seq_rm(-1, n_past, -1)  # nothing half-evaluated stays cached
                raise
            llm.input_ids[n_past : n_past + len(part)] = part
            llm.n_tokens = n_past + len(part)
        if not all_logits:
            row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
            return np.ctypeslib.as_array(row, shape=(self.n_vocab,))
        rows = np.ctypeslib.as_array(
            llama_cpp.llama_get_logits(llm.ctx), shape=(len(tokens), self.n_vocab)
        )
        return rows

    def _truncate(self, n: int) -> None:
        if n < self.llm.n_tokens:
            self.llm._ctx.kv_cache_seq_rm(-1, n, -1)
            self.llm.n_tokens = n

    def generate(self, tokens: Sequence[int], sampling: Sampling, seed: int) -> Iterator[int]:
        """Tokens after the prompt `tokens`, forever (the caller stops at EOG or its limit)."""
        import llama_cpp

        llm = self.llm
        counters = self.last = SpecCounters()
        keep = 0
        for a, b in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens, strict=False):
            if a != b:
                break
            keep += 1
        # As Llama.generate does: the uncached rest of the prompt (at least its last token) in
        # batches of n_batch, the first token from the last row. llama.cpp's CPU kernels are not
        # bit-identical across large batch shapes, so the prompt is evaluated exactly as without
        # speculation; the checks after it are small batches, which are (see the tests).
        self._truncate(min(keep, len(tokens) - 1))
        llm._requires_eval = True  # the logits left in the context will not match its last token
        counters.prompt_evaluated = len(tokens) - llm.n_tokens
        rng = np.random.default_rng(seed)
        row = self._decode(tokens[llm.n_tokens :], all_logits=False)
        first = (
            int(row.argmax()) if is_greedy(sampling) else _draw(probabilities(row, sampling), rng)
        )
        yield first
        # A check is a few tokens: decode-sized work, so the decode thread count (llama.cpp would
        # use its batch count, which on a busy or small CPU spins threads for little work).
        threads = (llm.context_params.n_threads, llm.context_params.n_threads_batch)
        llama_cpp.llama_set_n_threads(llm.ctx, threads[0], threads[0])
        try:
            yield from self._passes([*tokens, first], sampling, rng, counters)
        finally:
            llama_cpp.llama_set_n_threads(llm.ctx, *threads)

    def _passes(
        self,
        tokens: Sequence[int],
        sampling: Sampling,
        rng: np.random.Generator,
        counters: SpecCounters,
    ) -> Iterator[int]:
        """Check passes after `tokens` (whose last one is not evaluated yet)."""
        llm = self.llm
        greedy = is_greedy(sampling)
        context = list(tokens)
        last = context[-1]
        n_draft = self.max_draft
        started = time.perf_counter()
        n_ctx = llm.n_ctx()
        while llm.n_tokens + 1 < n_ctx:
            room = n_ctx - llm.n_tokens - 2
            draft = self.drafter.propose(context, min(n_draft, room)) if room > 0 else []
            cut = next((i for i, t in enumerate(draft) if t >= self.n_vocab), len(draft))
            draft = draft[:cut]
            base = llm.n_tokens
            rows = self._decode([last, *draft], all_logits=True)
            if greedy:
                best = rows.argmax(axis=1)
                n_ok = next((i for i, t in enumerate(draft) if best[i] != t), len(draft))
                token = int(best[n_ok])
            else:
                p_rows = [probabilities(rows[i], sampling) for i in range(len(draft) + 1)]
                n_ok, token = verify(p_rows, draft, rng)
            self._truncate(base + 1 + n_ok)
            counters.passes += 1
            counters.drafted += len(draft)
            counters.accepted += n_ok
            if self.adaptive and draft:
                n_draft = (
                    min(self.max_draft, n_draft * 2) if n_ok == len(draft) else max(1, n_draft // 2)
                )
            out = [*draft[:n_ok], token]
            context.extend(out)
            last = token
            for t in out:
                counters.emitted += 1
                counters.decode_s = time.perf_counter() - started
                yield t

    def close(self) -> None:
        self.drafter.close()


def draft_source(draft_model: str | None, kind: str = "auto") -> str | None:
    """What drafts ("ngram", a model reference, or None: off) from the `draft_model`/`draft.kind` settings."""
    from qwq_chat.app.errors import UserError

    if kind == "off":
        return None
    if kind == NGRAM:
        return NGRAM
    if kind == "model" and (not draft_model or draft_model == NGRAM):
        raise UserError(
            "draft.kind is model but no draft model is set; pass --draft-model PATH|REPO[:QUANT] "
            "(for QwQ-32B: Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0) or set draft.kind to ngram or off"
        )
    return draft_model or None


def make_speculator(
    llm: Any,
    draft: str | Path,
    load: Callable[..., Any],
    *,
    n_gpu_layers: int,
    max_draft: int = DRAFT_MAX,
    adaptive: bool = True,
    n_threads: int | None = None,
) -> SpeculativeDecoder:
    """The decoder for `draft`: "ngram" (prompt lookup) or a draft GGUF's path (loaded with `load`,
    the engine's `load_llama`, and checked)."""
    drafter: Drafter
    if str(draft) == NGRAM:
        from qwq_chat.app.engines.ngram import NgramDrafter

        drafter = NgramDrafter()
    else:
        from qwq_chat.app.engines.draft import load_drafter

        extra: dict[str, Any] = {}  # the draft only guesses: its numerics need not match
        if n_threads:
            extra.update(n_threads=n_threads, n_threads_batch=n_threads)
        drafter = load_drafter(
            Path(draft).expanduser(),
            llm,
            load,
            n_ctx=llm.n_ctx(),
            n_gpu_layers=n_gpu_layers,
            **extra,
        )
    return SpeculativeDecoder(llm, drafter, max_draft=max_draft, adaptive=adaptive)
