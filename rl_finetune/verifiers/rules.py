"""Rule verifiers: output format, IFEval-style instruction following, DAPO's soft overlong punishment.

Instruction checks use `if-verifiable` (a maintained packaging of Google's IFEval checkers). Its
sentence counter wants NLTK's downloadable `punkt_tab` model; when that is not installed we fall
back to NLTK's untrained Punkt tokenizer (same algorithm, no abbreviation list), because verifiers
must never download at run time.
"""

from __future__ import annotations

import functools
from typing import Any

from qwq_chat.rl_finetune.verifiers.answer import THINK_CLOSE, THINK_OPEN

# Tags that belong to the chat template or the tool protocol, never to a final answer.
STRAY_TAGS = (
    THINK_OPEN,
    THINK_CLOSE,
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
)


def format_score(completion: str) -> float:
    """1.0 when the reasoning is closed by exactly one `</think>`, the answer after it is non-empty,
    and the answer holds no template or tool tags; else 0.0."""
    if completion.count(THINK_CLOSE) != 1:
        return 0.0
    reasoning, answer = completion.split(THINK_CLOSE)
    if reasoning.count(THINK_OPEN) > 1 or not answer.strip():
        return 0.0
    return 0.0 if any(tag in answer for tag in STRAY_TAGS) else 1.0


def soft_overlong_penalty(length: int, max_length: int, cache_length: int) -> float:
    """DAPO's soft overlong punishment (eq. 13): 0 up to `max_length - cache_length` tokens, then a
    linear ramp down to -1 at `max_length`, and -1 beyond."""
    if cache_length < 0 or max_length <= 0 or cache_length > max_length:
        raise ValueError("need 0 <= cache_length <= max_length and max_length > 0")
    start = max_length - cache_length
    if length <= start:
        return 0.0
    if length <= max_length:
        return (start - length) / cache_length
    return -1.0


class UnknownInstruction(ValueError):
    """A constraint names an instruction id the IFEval registry does not have."""


def normalise_constraints(constraints: Any) -> tuple[list[str], list[dict[str, Any]]]:
    """Accept IFEval's own shape `{"instruction_id_list": [...], "kwargs": [...]}` or a list of
    `{"id": "length_constraints:number_words", "kwargs": {...}}` (or the kwargs inline)."""
    if isinstance(constraints, dict) and "instruction_id_list" in constraints:
        ids = list(constraints["instruction_id_list"])
        kwargs = list(constraints.get("kwargs") or [{} for _ in ids])
    elif isinstance(constraints, list):
        ids, kwargs = [], []
        for c in constraints:
            if not isinstance(c, dict) or not ("id" in c or "instruction_id" in c):
                raise ValueError(f"a constraint must be an object with an 'id'; got {c!r}")
            ids.append(c.get("id") or c["instruction_id"])
            kwargs.append(
                c.get("kwargs") or {k: v for k, v in c.items() if k not in ("id", "instruction_id")}
            )
    else:
        raise ValueError("constraints must be a list of {'id', 'kwargs'} or IFEval's dict shape")
    if len(ids) != len(kwargs):
        raise ValueError("constraints: instruction_id_list and kwargs differ in length")
    registry = _registry()
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise UnknownInstruction(
            f"unknown instruction id(s) {unknown}; known: {', '.join(sorted(registry))}"
        )
    return ids, kwargs


def instruction_score(
    completion: str,
    constraints: Any,
    prompt: str = "",
    *,
    loose: bool = False,
    partial: bool = True,
) -> float:
    """Fraction of the instructions the answer follows (or 1.0/0.0 with `partial=False`).

    The reasoning is dropped first; `loose` applies IFEval's loose variants (markdown and first/last
    line stripped). An unknown instruction id raises `UnknownInstruction` rather than being skipped,
    which would inflate the score.
    """
    ids, kwargs = normalise_constraints(constraints)
    if not ids:
        return 1.0
    from if_verifiable.common import evaluate_instructions

    _ensure_sentence_tokenizer()
    results, scores = evaluate_instructions(
        response=_answer_part(completion),
        instruction_id_list=ids,
        kwargs_list=kwargs,
        prompt=prompt,
        instruction_registry=_registry(),
    )
    if loose:
        return scores.partial_loose if partial else scores.binary_loose
    return scores.partial_strict if partial else scores.binary_strict


def _answer_part(completion: str) -> str:
    if THINK_CLOSE in completion:
        return completion.rsplit(THINK_CLOSE, 1)[1]
    return "" if THINK_OPEN in completion else completion


@functools.cache
def _registry() -> dict[str, Any]:
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return dict(INSTRUCTION_DICT)


@functools.cache
def _ensure_sentence_tokenizer() -> None:
    import nltk
    from if_verifiable.ifeval import instructions_util

    try:
        nltk.data.find("tokenizers/punkt_tab/english/")
    except LookupError:
        from nltk.tokenize.punkt import PunktSentenceTokenizer

        tokenizer = PunktSentenceTokenizer()
        instructions_util._get_sentence_tokenizer = lambda: tokenizer  # offline fallback
