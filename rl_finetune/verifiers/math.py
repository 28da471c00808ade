r"""Math answer accuracy: `verify(completion, gold) -> 1.0 | 0.0`.

Built on math-verify (the checker TRL, verl and open-r1 use), with what a reward needs on top:

- the reasoning (everything up to `</think>`) is ignored; the answer is the last `\boxed{}` after it
  (see `answer.final_answer` for the fallbacks and for how several boxes are treated: a hedge such as
  `\boxed{3} or \boxed{7}` never matches a single gold answer);
- math-verify is called gold first (it is not symmetric);
- its numeric comparison rounds to 6 decimals, so `1/2004!` equals `1/2006!` and `10^{-20}` equals
  `2\cdot10^{-20}`; a match between two numbers is re-checked at 60 significant digits (exact values)
  or 1e-6 relative error (when a side is a decimal);
- every check runs in a worker process with a hard timeout (the child is killed, not signalled), so
  it works from any thread, and pathological input (`10^{10^{10}}`, huge factorials, megabytes of
  text) scores 0 within the timeout instead of hanging.

`verify` and `verify_batch` use a shared pool of worker processes (one per core, started on first
use, closed at exit). `score` is the same check in-process with no timeout: for the workers, and for
callers that bring their own isolation.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

from qwq_chat.rl_finetune.verifiers.answer import final_answer
from qwq_chat.rl_finetune.verifiers.workers import TimeoutPool, register_for_exit

DEFAULT_TIMEOUT_S = 5.0
WORKER_MEMORY_LIMIT = 4 << 30  # a sympy blow-up hits MemoryError in the child, not the host

# math-verify warns once per process that its signal timeout is off; ours is the process kill.
logging.getLogger("math_verify").setLevel(logging.ERROR)

_pool: TimeoutPool | None = None
_pool_lock = threading.Lock()


def verify(completion: str, gold: str, *, timeout: float = DEFAULT_TIMEOUT_S) -> float:
    """1.0 if the final answer in `completion` equals `gold`, else 0.0. Safe from any thread.

    `timeout` bounds the check itself (worker start-up is not counted); past it the worker is killed
    and the answer scores 0.0.
    """
    quick = quick_score(completion, gold)
    if quick is not None:
        return quick
    return float(get_pool().submit(completion, gold, timeout=timeout).result())


def verify_batch(
    completions: Sequence[str], golds: Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S
) -> list[float]:
    """`verify` over pairs, in parallel on the worker pool; results in input order."""
    if len(completions) != len(golds):
        raise ValueError(f"{len(completions)} completions but {len(golds)} gold answers")
    results: list[float | None] = [
        quick_score(c, g) for c, g in zip(completions, golds, strict=True)
    ]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        pool = get_pool()
        for i, r in zip(
            todo, pool.map([(completions[i], golds[i]) for i in todo], timeout), strict=True
        ):
            results[i] = float(r)
    return [float(r) for r in results]  # type: ignore[arg-type]


def quick_score(completion: str, gold: str) -> float | None:
    """The verdict when no parser is needed (no answer, same text, two integers), else None.

    Linear-time string work only, so it is safe to run in the caller: most RL math answers are
    integers and never need a worker round trip.
    """
    answer = final_answer(completion)
    if answer is None or not gold.strip():
        return 0.0
    if _normalise_text(answer) == _normalise_text(gold):
        return 1.0
    return _integer_verdict(answer, gold)


def get_pool(size: int | None = None) -> TimeoutPool:
    """The shared worker pool (created on first use; `size` defaults to the number of cores)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = register_for_exit(
                TimeoutPool(
                    score,
                    size=size or os.cpu_count() or 1,
                    timeout=DEFAULT_TIMEOUT_S,
                    default=0.0,
                    memory_limit_bytes=WORKER_MEMORY_LIMIT,
                    warmup=_warmup,
                )
            )
        return _pool


def close_pool() -> None:
    """Stop the shared workers (a later `verify` starts new ones)."""
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.close()
            _pool = None


# --- the check itself (runs inside the workers) -------------------------------------------------


def score(completion: str, gold: str) -> float:
    """The check with no timeout and no process isolation: 1.0 or 0.0."""
    quick = quick_score(completion, gold)
    if quick is not None:
        return quick
    answer = final_answer(completion)
    assert answer is not None
    from math_verify import parse
    from math_verify import verify as mv_verify

    gold_text = gold if "\\boxed" in gold or "$" in gold else f"${gold}$"
    gold_parsed = parse(gold_text, parsing_timeout=None)
    pred_parsed = parse(f"\\boxed{{{answer}}}", parsing_timeout=None)
    for g in gold_parsed:
        for p in pred_parsed:
            if mv_verify(g, p, timeout_seconds=None) and not _numbers_differ(g, p):
                return 1.0
    return 0.0


def _warmup() -> None:
    """Import and exercise math-verify once so the first timed check is not paying for imports."""
    score("\\boxed{\\frac{1}{2}}", "0.5")


_INT_RE = re.compile(r"[+-]?\d+")
_INT_NOISE_RE = re.compile(r"\$|\\[,;:! ]|\.\s*$")


def _integer_verdict(answer: str, gold: str) -> float | None:
    """Both plain integers (most RL math answers): compare exactly, skipping the LaTeX parser
    (about 10 ms a parse). None when either side is anything else."""
    a, g = _INT_NOISE_RE.sub("", answer).strip(), _INT_NOISE_RE.sub("", gold).strip()
    if _INT_RE.fullmatch(a) and _INT_RE.fullmatch(g):
        return 1.0 if int(a) == int(g) else 0.0
    return None


_TEXT_CMD_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{([^{}]*)\}")
_SPACE_RE = re.compile(r"\s+|\\[,;:! ]|\\quad|\\qquad")


def _normalise_text(s: str) -> str:
    """Loose string form for answers math-verify cannot parse (words, option letters)."""
    s = _TEXT_CMD_RE.sub(r"\1", s)
    s = s.replace("\\left", "").replace("\\right", "").replace("$", "")
    s = _SPACE_RE.sub("", s).rstrip(".").lower()
    return s


def _numbers_differ(gold: Any, pred: Any) -> bool:
    """True when math-verify matched two numbers that differ beyond its 6-decimal rounding."""
    from sympy import Basic, Float

    if not (isinstance(gold, Basic) and isinstance(pred, Basic)):
        return False
    if not (gold.is_number and pred.is_number):  # sets, intervals, equations, symbolic expressions
        return False
    exact = not gold.has(Float) and not pred.has(Float)
    g, p = gold.evalf(60), pred.evalf(60)
    try:
        diff = abs(g - p)
        scale = max(abs(g), abs(p))
        if scale == 0:
            return False
        return bool(diff > (1e-40 if exact else 1e-6) * scale)
    except TypeError:  # not comparable (nan, zoo): trust math-verify
        return False
