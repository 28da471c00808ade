"""The accept/reject rule keeps the main model's distribution (chi-square on a tiny vocabulary with
fixed logits, fixed seeds), `probabilities` follows llama.cpp's sampler chain, and prompt lookup
proposes what followed the context's tail."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qwq_chat.app.engines.ngram import NgramDrafter
from qwq_chat.app.engines.speculative import probabilities, verify
from qwq_chat.app.sampling import Sampling

VOCAB = 6
TRIALS = 20_000


def chi_square_limit(df: int, z: float = 3.29) -> float:
    """The chi-square value exceeded with probability ~0.0005 (Wilson-Hilferty approximation)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def two_token_distribution(p1: np.ndarray, p2_given: np.ndarray) -> np.ndarray:
    """P(t1, t2) for the main model: p1(t1) * p2(t2 | t1)."""
    return p1[:, None] * p2_given


@pytest.mark.parametrize("draft_kind", ["greedy draft", "sampled draft", "bad greedy draft"])
def test_accept_reject_keeps_the_main_models_distribution(draft_kind: str) -> None:
    rng = np.random.default_rng(1234)
    logits = np.random.default_rng(5)
    p1 = softmax(logits.normal(size=VOCAB))
    p2_given = np.stack([softmax(logits.normal(size=VOCAB)) for _ in range(VOCAB)])
    q1 = softmax(logits.normal(size=VOCAB))
    q2_given = np.stack([softmax(logits.normal(size=VOCAB)) for _ in range(VOCAB)])
    counts = np.zeros((VOCAB, VOCAB))
    for _ in range(TRIALS):
        if draft_kind == "sampled draft":  # the drafter samples from q; the rule needs q
            d1 = int(rng.choice(VOCAB, p=q1))
            d2 = int(rng.choice(VOCAB, p=q2_given[d1]))
            q_rows = [q1, q2_given[d1]]
        else:  # a deterministic guess: q is a point mass on it
            d1 = int(np.argmax(q1)) if draft_kind == "greedy draft" else int(np.argmin(p1))
            d2 = int(np.argmax(q2_given[d1]))
            q_rows = None
        p_rows = [p1, p2_given[d1], np.full(VOCAB, 1 / VOCAB)]
        kept, token = verify(p_rows, [d1, d2], rng, q_rows)
        first = d1 if kept >= 1 else token
        if kept == 0:  # the second token is drawn by the next pass, from the main model
            second = int(rng.choice(VOCAB, p=p2_given[first]))
        else:
            second = d2 if kept >= 2 else token
        counts[first, second] += 1
    expected = two_token_distribution(p1, p2_given) * TRIALS
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < chi_square_limit(VOCAB * VOCAB - 1), f"{draft_kind}: chi2 {chi2:.1f}"


def test_the_accept_reject_check_can_fail() -> None:
    """The same statistic on a wrong rule (always keep the guess) is far over the limit."""
    rng = np.random.default_rng(0)
    p = softmax(np.arange(VOCAB, dtype=float))
    counts = np.bincount([int(rng.choice(VOCAB, p=p)) if rng.random() < 0.5 else 0
                          for _ in range(TRIALS)], minlength=VOCAB)  # fmt: skip
    chi2 = float(((counts - p * TRIALS) ** 2 / (p * TRIALS)).sum())
    assert chi2 > chi_square_limit(VOCAB - 1)


def test_probabilities_follow_llama_cpps_chain() -> None:
    logits = np.array([2.0, 1.0, 0.5, 0.0, -1.0, 3.0])
    greedy = probabilities(logits, Sampling(top_k=1))
    assert greedy.tolist() == [0, 0, 0, 0, 0, 1.0]
    # top_k 3, then top_p 0.95 on the temperature-1 softmax of those three, then temperature
    p = probabilities(logits, Sampling(top_k=3, top_p=0.95, temperature=0.5))
    kept = softmax(np.array([3.0, 2.0, 1.0]))
    assert kept.cumsum()[1] < 0.95  # so all three stay
    expected = softmax(np.array([3.0, 2.0, 1.0]) / 0.5)
    assert np.allclose(p[[5, 0, 1]], expected) and p.sum() == pytest.approx(1.0)
    p = probabilities(logits, Sampling(top_k=0, top_p=0.6, temperature=1.0))
    assert np.count_nonzero(p) == 1  # the top token alone holds over 60%
    p = probabilities(logits, Sampling(top_k=0, top_p=1.0, min_p=0.3, temperature=1.0))
    assert set(np.flatnonzero(p)) == {0, 5}  # within 30% of the top token's probability


def test_prompt_lookup_proposes_what_followed_the_tail() -> None:
    drafter = NgramDrafter(ngram_max=3, ngram_min=2)
    context = [1, 2, 3, 4, 5, 9, 9, 2, 3]
    assert drafter.propose(context, 3) == [4, 5, 9]
    context += [4, 5]  # grows: the index is extended, not rebuilt
    assert drafter.propose(context, 2) == [9, 9]
    assert drafter.propose([7, 8, 7], 4) == []  # another text: rebuilt; one-token tails are ignored
    assert drafter.propose([7, 8, 6, 7, 8], 4) == [6, 7, 8]
    assert drafter.propose([7, 8, 6, 7, 8], 0) == []
