"""Math verifier speed and accuracy.

- verifications/s on realistic 2-10k-character completions through `verify_batch` (worker pool, one
  process per core), against plain math-verify called in-process on the same pairs (its usual use,
  no isolation, no timeouts) in the same run;
- accuracy on the regression corpus (tests/rl_verifiers/math_corpus.py) for `verify` vs plain
  math-verify on the whole completion.

Run: `pytest tests/benchmarks/test_bench_verifiers.py -s`
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "rl_verifiers"))
from math_corpus import CORPUS  # noqa: E402
from qwq_chat.rl_finetune.verifiers import math as mv  # noqa: E402

GROUP = 8  # completions per prompt, as in a GRPO step
N_PROMPTS = 400
N_SYMBOLIC = 600
SENTENCES = [
    r"Let $x$ be the number of apples, so $3x + 5 = 2x + {a}$ gives $x = {b}$.",
    r"We compute $\frac{{{a}}}{{{b}}} \cdot \frac{{{b}}}{{{a}}} = 1$, as expected.",
    r"Wait, maybe I should double-check the case $n = {a}$: then $n^2 = {c}$.",
    r"The discriminant is $b^2 - 4ac = {a}^2 - 4 \cdot {b} = {d}$.",
    "Hmm, that does not look right. Let me reconsider the problem from the start.",
    r"Summing the series, $\sum_{{k=1}}^{{{a}}} k = {e}$.",
    r"So the area is $\pi r^2$ with $r = {a}$, i.e. ${c}\pi$.",
]
# (gold, the same value written another way) per answer kind, and how often the kind occurs; the
# mix is roughly that of MATH-style datasets (AIME / DAPO-Math / GSM8K answers are all integers).
KINDS = [
    (0.60, lambda i: (str(i * 13), f"{i * 13}")),
    (0.15, lambda i: (rf"\frac{{{i}}}{{{i + 7}}}", rf"\dfrac{{{i}}}{{{i + 7}}}")),
    (0.10, lambda i: (rf"{i}\sqrt{{2}}", rf"\sqrt{{{2 * i * i}}}")),
    (0.05, lambda i: (rf"[{i}, {i + 3})", rf"[{i},{i + 3})")),
    (0.05, lambda i: (rf"\{{{i}, {i + 1}\}}", rf"\{{{i + 1}, {i}\}}")),
    (0.05, lambda i: (rf"x^2 + {2 * i}x + {i * i}", rf"(x+{i})^2")),
]


def reasoning(rng: random.Random) -> str:
    size = rng.randint(2000, 10000)
    parts, length = ["<think>\n"], 0
    while length < size - 300:
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        s = rng.choice(SENTENCES).format(a=a, b=b, c=a * a, d=a * a - 4 * b, e=a * (a + 1) // 2)
        parts.append(s + (" " if rng.random() < 0.8 else "\n\n"))
        length += len(s) + 1
    return "".join(parts)


def completion(rng: random.Random, answer: str) -> str:
    return (
        reasoning(rng) + f"\n</think>\n\nPutting it together, the answer is $\\boxed{{{answer}}}$."
    )


def grpo_like_pairs(n_prompts: int, seed: int = 0) -> list[tuple[str, str]]:
    """Groups of GROUP completions (2-10k characters) per prompt sharing one gold answer; each
    completion gives the right answer (in either spelling) or one of two wrong ones."""
    rng = random.Random(seed)
    weights = [w for w, _ in KINDS]
    pairs = []
    for i in range(n_prompts):
        gold, alt = rng.choices([k for _, k in KINDS], weights)[0](i + 2)
        wrong = (
            [rf"{gold}+1", rf"2\cdot({gold})"]
            if not gold.isdigit()
            else [str(int(gold) + 1), str(int(gold) * 2)]
        )
        for _ in range(GROUP):
            pairs.append((completion(rng, rng.choice([gold, alt, alt, *wrong])), gold))
    return pairs


def unique_symbolic_pairs(n: int, seed: int = 1) -> list[tuple[str, str]]:
    """The worst case: every gold and answer a different non-integer expression (no caching)."""
    rng = random.Random(seed)
    symbolic = [k for _, k in KINDS[1:]]
    pairs = []
    for i in range(n):
        gold, alt = symbolic[i % len(symbolic)](i + 2)
        pairs.append((completion(rng, alt if rng.random() < 0.5 else gold + "+1"), gold))
    return pairs


def plain_math_verify(completion: str, gold: str) -> float:
    from math_verify import parse, verify

    g = parse(f"${gold}$", parsing_timeout=None)
    p = parse(completion, parsing_timeout=None)
    return float(verify(g, p, timeout_seconds=None))


def cpu_seconds(pids: list[int]) -> float:
    """This process's CPU time plus the given children's (utime + stime from /proc)."""
    total = time.process_time()
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rates(pairs: list[tuple[str, str]], baseline_n: int) -> tuple[float, float, float, list[float]]:
    """(pool verifications/s, pool verifications per CPU-second, plain math-verify verifications
    per CPU-second on 1 core, pool verdicts). CPU-seconds make figures comparable on a busy host."""
    completions, golds = [c for c, _ in pairs], [g for _, g in pairs]
    pids = mv.get_pool().worker_pids()
    cpu0, start = cpu_seconds(pids), time.perf_counter()
    ours = mv.verify_batch(completions, golds)
    pool_rate = len(pairs) / (time.perf_counter() - start)
    pool_per_cpu = len(pairs) / (cpu_seconds(pids) - cpu0)
    cpu0 = time.process_time()
    for c, g in pairs[:baseline_n]:
        plain_math_verify(c, g)
    return pool_rate, pool_per_cpu, baseline_n / (time.process_time() - cpu0), ours


def test_bench_math_verifier() -> None:
    mv.verify_batch(*zip(*unique_symbolic_pairs(20, seed=9), strict=True))  # start the workers
    plain_math_verify(*unique_symbolic_pairs(1, seed=9)[0])
    grpo = grpo_like_pairs(N_PROMPTS)
    symbolic = unique_symbolic_pairs(N_SYMBOLIC)
    avg = sum(len(c) for c, _ in grpo + symbolic) / len(grpo + symbolic)
    grpo_pool, grpo_cpu, grpo_plain, grpo_ours = rates(grpo, 400)
    sym_pool, sym_cpu, sym_plain, sym_ours = rates(symbolic, 200)
    load = os.getloadavg()[0]
    corpus_ours = sum(mv.verify(c, g) == e for c, g, e in CORPUS) / len(CORPUS)
    corpus_plain = sum(plain_math_verify(c, g) == e for c, g, e in CORPUS) / len(CORPUS)
    print(
        f"\nmath verify: completions of 2-10k chars (mean {avg:.0f}), {os.cpu_count()} cores; "
        f"load average {load:.1f}; pool = verify_batch (a worker process per core, hard "
        "timeouts), plain = math-verify in-process; per CPU-s = verifications per CPU-second\n"
        f"  GRPO-like mix ({len(grpo)} = {N_PROMPTS} prompts x {GROUP}, 60% integer answers): "
        f"pool {grpo_pool:.0f}/s wall, {grpo_cpu:.0f} per CPU-s; plain {grpo_plain:.0f} per "
        f"CPU-s; ratio {grpo_cpu / grpo_plain:.2f}\n"
        f"  unique symbolic answers ({len(symbolic)}, no integers, nothing cached): "
        f"pool {sym_pool:.0f}/s wall, {sym_cpu:.0f} per CPU-s; plain {sym_plain:.0f} per CPU-s; "
        f"ratio {sym_cpu / sym_plain:.2f}\n"
        f"  corpus accuracy ({len(CORPUS)} cases): verify {corpus_ours:.1%}, "
        f"plain math-verify {corpus_plain:.1%}"
    )
    assert 0.2 < sum(grpo_ours) / len(grpo) < 0.8 and 0.3 < sum(sym_ours) / len(symbolic) < 0.7
    assert corpus_ours == 1.0
