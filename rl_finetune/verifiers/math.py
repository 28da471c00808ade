r"""Math answer accuracy: `verify(completion, gold) -> 1.0 | 0.0`.

Built on math-verify (the checker TRL, verl and open-r1 use), with what a reward needs on top:

- the reasoning (everything up to `</think>`) is ignored; the answer is the last `\boxed{}` after it
  (see `answer.final_answer` for the fallbacks and for how several boxes are treated: a hedge such as
  `\boxed{3} or \boxed{7}` never matches a single gold answer);
- math-verify is called gold first (it is not symmetric);
- its numeric comparison rounds to 6 decimals, so `1/2004!` equals `1/2006!` and `10^{-20}` equals
  `2\cdot10^{-20}`; a match between two numbers is re-checked: exact values by their difference at
  60 significant digits, decimals to 1e-6 relative error (see `exact.numbers_differ`);
- what its parser misreads is repaired first (`\lg`, `\frac\pi6`, degrees inside `\sin`...), and
  when it says "not equal" a second look compares exact numbers by value and tries other readings
  (`i` as the imaginary unit, real odd roots, `\ln 8/\ln 2`): see `exact`. Decimals keep
  math-verify's rounding rule, so `0.333` is not `1/3`;
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
from collections.abc import Callable, Sequence
from typing import Any

from qwq_chat.rl_finetune.verifiers import exact
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
    gold, answer = exact.repair_latex(gold), exact.repair_latex(answer)
    gold_parsed, pred_parsed = _parse_gold(gold), _parse_answer(answer)
    if any(_match(g, p) for g in gold_parsed for p in pred_parsed):
        return 1.0
    return 1.0 if _second_look(gold, answer, gold_parsed, pred_parsed) else 0.0


def _parse_gold(gold: str) -> list[Any]:
    from math_verify import parse

    return parse(gold if "\\boxed" in gold or "$" in gold else f"${gold}$", parsing_timeout=None)


def _parse_answer(answer: str) -> list[Any]:
    from math_verify import parse

    return parse(f"\\boxed{{{answer}}}", parsing_timeout=None)


def _match(gold: Any, pred: Any) -> bool:
    """math-verify's verdict (gold first), with its numeric matches re-checked."""
    from math_verify import verify as mv_verify

    return mv_verify(gold, pred, timeout_seconds=None) and not exact.numbers_differ(gold, pred)


def _second_look(gold: str, answer: str, gold_parsed: list[Any], pred_parsed: list[Any]) -> bool:
    """After math-verify said "not equal": exact numbers compared by value, under the parse as is
    and under other readings (see `exact`). Readings that change an answer go through `_match`."""
    golds = _readings(gold, gold_parsed, _parse_gold)
    preds = _readings(answer, pred_parsed, _parse_answer)
    for g, g_reread in golds:
        for p, p_reread in preds:
            if exact.exact_answers_equal(g, p):
                return True
            if (g_reread or p_reread) and _match(g, p):
                return True
    return False


def _readings(
    text: str, parsed: list[Any], parse: Callable[[str], list[Any]]
) -> list[tuple[Any, bool]]:
    """(expression, whether it is another reading) for each parse of `text` and its rereadings."""
    out = [(e, False) for e in parsed if not isinstance(e, str)]
    reread = exact.reread_latex(text)
    if reread is not None:
        out += [(e, True) for e in parse(reread) if not isinstance(e, str)]
    imaginary = exact.writes_imaginary_unit(text)
    for e, _ in list(out):
        normal = exact.normalise(e, imaginary=imaginary)
        if normal != e:
            out.append((normal, True))
    return out


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
