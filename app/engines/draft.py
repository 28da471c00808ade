"""Draft-model drafting: a small GGUF with the main model's tokenizer proposes tokens greedily.

The draft keeps its own KV cache in step with the main model's text: before each proposal it drops
what the main model rejected and evaluates only what it has not seen (the main model's correction
token and, on a new turn, the new part of the prompt), so across turns it re-reads nothing twice.

Compatibility is checked token by token (text and special-token ids), not by table size: GGUFs
of one tokenizer can pad their embedding tables differently (Qwen2.5-0.5B has 151,936 rows,
QwQ-32B 152,064) and the padding rows carry no real token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from qwq_chat.app.errors import UserError

_PAD_PREFIXES = ("[PAD", "<|PAD", "<pad")  # padding rows the converters append to the vocabulary
_SAMPLE_MISMATCHES = 3
SMALL_BATCH = 16  # at most this many tokens: evaluated with the decode thread count


def _token_texts(llm: Any) -> list[bytes]:
    import llama_cpp

    vocab = llm._model.vocab
    n = llama_cpp.llama_vocab_n_tokens(vocab)
    return [llama_cpp.llama_vocab_get_text(vocab, i) for i in range(n)]


def _is_padding(text: bytes) -> bool:
    return text.decode("utf-8", errors="replace").startswith(_PAD_PREFIXES)


def vocabulary_mismatch(main: Any, draft: Any) -> str | None:
    """Why `draft` cannot draft for `main` (differing tokens or special ids), or None if it can."""
    main_texts, draft_texts = _token_texts(main), _token_texts(draft)
    shared = min(len(main_texts), len(draft_texts))
    differing = [i for i in range(shared) if main_texts[i] != draft_texts[i]]
    if differing:
        shown = ", ".join(
            f"token {i} is {main_texts[i].decode(errors='replace')!r} in the main model and "
            f"{draft_texts[i].decode(errors='replace')!r} in the draft"
            for i in differing[:_SAMPLE_MISMATCHES]
        )
        return f"{len(differing)} of {shared} tokens differ ({shown})"
    longer = main_texts if len(main_texts) > len(draft_texts) else draft_texts
    extra = [i for i in range(shared, len(longer)) if not _is_padding(longer[i])]
    if extra:
        owner = "main model" if longer is main_texts else "draft"
        return (
            f"the {owner} has {len(extra)} real tokens the other lacks "
            f"(first: {extra[0]} {longer[extra[0]].decode(errors='replace')!r})"
        )
    for name in ("token_bos", "token_eos"):
        a, b = getattr(main, name)(), getattr(draft, name)()
        if a != b:
            return (
                f"{name.removeprefix('token_')} is token {a} in the main model and {b} in the draft"
            )
    return None


class ModelDrafter:
    """A loaded draft GGUF that proposes its greedy continuation of the main model's context."""

    kind = "model"

    def __init__(self, llm: Any, main_vocab_size: int) -> None:
        self.llm = llm
        self.main_vocab_size = main_vocab_size
        self._cached: list[int] = []  # the tokens in the draft's KV cache, in order
        self.path = Path(llm.model_path)

    def _eval_last(self, tokens: Sequence[int]) -> int:
        """Evaluate `tokens` after the cached ones; the argmax of the last position's logits."""
        import llama_cpp

        llm = self.llm
        # A few tokens (the usual catch-up after a check) with the decode thread count: llama.cpp's
        # batch count spins threads for little work (see speculative.py).
        params = llm.context_params
        threads = params.n_threads if len(tokens) <= SMALL_BATCH else params.n_threads_batch
        llama_cpp.llama_set_n_threads(llm.ctx, threads, threads)
        for start in range(0, len(tokens), llm.n_batch):
            part = tokens[start : start + llm.n_batch]
            llm._batch.set_batch(batch=part, n_past=len(self._cached), logits_all=False)
            llm._ctx.decode(llm._batch)
            self._cached.extend(part)
        row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return int(np.argmax(np.ctypeslib.as_array(row, shape=(llm.n_vocab(),))))

    def propose(self, context: Sequence[int], n: int) -> list[int]:
        """Up to `n` greedy draft tokens after `context` (the KV cache follows `context` first)."""
        if n <= 0 or not context:
            return []
        keep = 0
        for a, b in zip(self._cached, context, strict=False):
            if a != b:
                break
            keep += 1
        keep = min(keep, len(context) - 1)  # re-evaluate at least one token for its logits
        self.llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        del self._cached[keep:]
        n = min(n, self.llm.n_ctx() - len(context) - 1)  # room in the draft's context
        if n <= 0:
            return []
        proposal = [self._eval_last(context[keep:])]
        while len(proposal) < n and proposal[-1] < self.main_vocab_size:
            proposal.append(self._eval_last(proposal[-1:]))
        return _until_out_of_range(proposal, self.main_vocab_size)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.llm.close()


def _until_out_of_range(tokens: list[int], limit: int) -> list[int]:
    for i, token in enumerate(tokens):
        if token >= limit:
            return tokens[:i]
    return tokens


def load_drafter(
    path: Path,
    main: Any,
    load: Callable[..., Any],
    *,
    n_ctx: int,
    n_gpu_layers: int,
    **kwargs: Any,
) -> ModelDrafter:
    """Load the draft GGUF next to `main` and check its vocabulary; UserError if it cannot draft."""
    if not path.is_file():
        raise UserError(
            f"draft model file {path} does not exist; pass a GGUF path, REPO[:QUANT] or ngram"
        )
    try:
        llm = load(
            model_path=str(path), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, verbose=True, **kwargs
        )
    except ValueError as exc:
        raise UserError(
            f"llama.cpp could not load the draft model {path} ({exc}); is it a complete GGUF?"
        ) from None
    llm.verbose = False
    problem = vocabulary_mismatch(main, llm)
    if problem is not None:
        llm.close()
        raise UserError(
            f"{path.name} cannot draft for {Path(main.model_path).name}: the two models do not "
            f"share a tokenizer ({problem}). Use a draft from the same family (for QwQ-32B: "
            "Qwen2.5-0.5B-Instruct GGUF), --draft-model ngram, or no draft."
        )
    return ModelDrafter(llm, main.n_vocab())
