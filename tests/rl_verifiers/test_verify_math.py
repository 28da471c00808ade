"""The math verifier: the regression corpus, hard timeouts from any thread, pathological input."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from math_corpus import CORPUS, R  # noqa: E402
from qwq_chat.rl_finetune.verifiers import math as mv  # noqa: E402
from qwq_chat.rl_finetune.verifiers.answer import boxed_contents, final_answer, strip_reasoning  # noqa: E402


@pytest.mark.parametrize(
    ("completion", "gold", "expected"), CORPUS, ids=[f"case{i}" for i in range(len(CORPUS))]
)
def test_corpus_in_process(completion: str, gold: str, expected: float) -> None:
    assert mv.score(completion, gold) == expected


def test_corpus_through_worker_pool_matches_in_order() -> None:
    completions = [c for c, _, _ in CORPUS]
    golds = [g for _, g, _ in CORPUS]
    assert mv.verify_batch(completions, golds) == [e for _, _, e in CORPUS]


def test_verify_returns_float_one_or_zero() -> None:
    assert mv.verify(R + r"\boxed{7}", "7") == 1.0
    assert mv.verify(R + r"\boxed{8}", "7") == 0.0
    assert isinstance(mv.verify(R + r"\boxed{8}", "7"), float)


def test_gold_is_first_argument() -> None:
    # gold "x=2"'s value is 2; a bare "2" answer matches, but the reverse direction must not be used
    assert mv.verify(R + r"\boxed{2}", "2") == 1.0
    assert mv.verify(R + r"\boxed{x=2}", "2") == 1.0


def test_works_off_the_main_thread() -> None:
    results: list[float] = []
    threads = [
        threading.Thread(
            target=lambda i=i: results.append(
                mv.verify(R + rf"\boxed{{\frac{{{i}}}{{7}}}}", f"{i}/7")
            )
        )
        for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [1.0] * 8


@pytest.mark.parametrize(
    "answer",
    [
        r"10^{10^{10}}",
        r"(10^{10})!",
        r"9^{9^{9^{9}}}",
        "{" * 3000 + "1" + "}" * 3000,
        r"\frac{" * 500 + "1" + "}{2}" * 500,
    ],
    ids=["power-tower", "huge-factorial", "tower4", "nested-braces", "nested-fracs"],
)
def test_pathological_answers_score_zero_within_the_timeout(answer: str) -> None:
    start = time.monotonic()
    assert mv.verify(R + rf"\boxed{{{answer}}}", "2", timeout=2.0) == 0.0
    assert (
        time.monotonic() - start < 2.0 + 1.5
    )  # the timeout plus one worker hand-over, never a hang


def test_megabytes_of_text_score_within_the_timeout() -> None:
    junk = "We consider the case x = 1. " * 200_000  # ~5.6 MB
    start = time.monotonic()
    assert mv.verify("<think>" + junk + "</think>" + junk + r"so \boxed{9}", "9", timeout=3) == 1.0
    assert mv.verify(junk, "9", timeout=3) == 0.0
    assert time.monotonic() - start < 8


def test_pool_recovers_after_a_killed_worker() -> None:
    assert mv.verify(R + r"\boxed{10^{10^{10}}}", "1", timeout=1.0) == 0.0
    # the killed child is replaced; normal checks continue to work
    assert mv.verify_batch([R + r"\boxed{\frac34}"] * 4, ["0.75"] * 4) == [1.0] * 4


def test_integers_and_missing_answers_skip_the_worker_pool() -> None:
    assert mv.quick_score(R + r"\boxed{1\,024}", "1024") == 1.0
    assert mv.quick_score(R + r"\boxed{1023}", "1024") == 0.0
    assert mv.quick_score("<think>no answer yet", "1024") == 0.0
    assert mv.quick_score(R + r"\boxed{2^{10}}", "1024") is None  # needs the parser
    assert mv.verify(R + r"\boxed{2^{10}}", "1024") == 1.0


def test_batch_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 completions but 1 gold"):
        mv.verify_batch(["a", "b"], ["1"])


def test_empty_gold_scores_zero() -> None:
    assert mv.score(R + r"\boxed{}", "") == 0.0
    assert mv.score(R + r"\boxed{1}", "  ") == 0.0


def test_answer_extraction_helpers() -> None:
    assert strip_reasoning("a</think>b</think>c") == "c"
    assert strip_reasoning("<think>unfinished") is None
    assert strip_reasoning("plain") == "plain"
    assert boxed_contents(r"\boxed{a{b}c} and \fbox{d} and \boxed {e}") == ["a{b}c", "d", "e"]
    assert boxed_contents(r"\boxed{\}}") == [r"\}"]
    assert final_answer(R + r"\boxed{3} or \boxed{7}") == "3, 7"
    assert final_answer(R + "x" * 3000 + r"\boxed{" + "1" * 2500 + "}") is None
