"""Benchmark: does our importance matrix make low-bit quants better, as much as llama-imatrix's?

On SmolLM2-135M-Instruct, the one real trained model here. Only its Q4_1 file ships, so that file is
the reference (there is no bf16 file): each quant is a requantization of it (`--allow-requantize`)
and its KL divergence is measured from the Q4_1 model's distribution over the shipped held-out
text (never used for calibration). SmolLM2's matrices are 576 wide, so K- and I-quants fall back
to other types on most tensors (llama.cpp reports it); the comparison still holds like for like.

For Q2_K, IQ3_XXS and Q3_K_S, three quants each: no importance matrix, ours (`qwq-chat imatrix`
on the shipped calibration text), and llama.cpp's own llama-imatrix on the same text (its tools are
built from the llama-cpp-python sdist, about 12 minutes the first time; cached). All quantization
goes through the same quantizer, so only the importance matrix differs.

Prints the KLD table and the ratios (baseline: the quant without an importance matrix, measured in
this run). Targets: ours >= 20% lower than none, and within 10% of llama-imatrix's.
A second test prints the quant table of docs/quantize.md.
Run: QWQ_LLAMA_TOOLS=1 python -m pytest tests/benchmarks/test_bench_imatrix.py -s
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "convert"))

from llama_reference import llama_imatrix, rendered_text  # noqa: E402
from llama_sources import llama_tools  # noqa: E402
from qwq_chat.convert.calibration import CALIBRATION_ASSET  # noqa: E402

LOW_BIT = ("Q2_K", "IQ3_XXS", "Q3_K_S")


def _quantize(src: Path, dst: Path, qtype: str, imatrix: Path | None) -> Path:
    from qwq_chat.convert.quantize import QuantizeOptions, quantize_gguf

    if not dst.exists():
        opts = QuantizeOptions(imatrix=imatrix, auto_imatrix=False, allow_requantize=True)
        quantize_gguf(src, dst, qtype, options=opts, log_file=dst.with_suffix(".log"))
    return dst


@pytest.mark.benchmark
@pytest.mark.timeout(7200)  # the first run also builds llama.cpp's tools
def test_bench_imatrix_lowers_low_bit_kld(smollm_gguf: Path, tmp_path: Path) -> None:
    from qwq_chat.convert.imatrix import compute_imatrix
    from qwq_chat.convert.kld import compare

    tools = llama_tools()
    text = rendered_text(smollm_gguf, CALIBRATION_ASSET, tmp_path / "calibration.txt")
    t0 = time.perf_counter()
    ours = compute_imatrix(smollm_gguf, tmp_path / "ours.gguf", text=text)
    ours_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    theirs = llama_imatrix(tools, smollm_gguf, text, tmp_path / "llama.gguf", 512, None)
    llama_s = time.perf_counter() - t0

    quants: dict[tuple[str, str], Path] = {}
    for qtype in LOW_BIT:
        for label, im in (("none", None), ("ours", ours.path), ("llama", theirs)):
            quants[qtype, label] = _quantize(
                smollm_gguf, tmp_path / f"{qtype}-{label}.gguf", qtype, im
            )
    results = compare(smollm_gguf, list(quants.values()))
    kld = {key: r for key, r in zip(quants, results, strict=True)}

    print()
    print(
        f"reference: {smollm_gguf.name} (the only SmolLM2 file shipped; no bf16); held-out "
        f"text: {results[0].positions} scored positions, reference PPL {results[0].ppl_ref:.3f}"
    )
    print(
        f"imatrix on {ours.tokens} calibration tokens ({ours.chunks} chunks of 512): "
        f"ours {ours_s:.1f} s, llama-imatrix {llama_s:.1f} s (ratio {ours_s / llama_s:.2f})"
    )
    print(f"{'type':<8} {'MiB':>6} {'KLD none':>9} {'ours':>8} {'llama':>8} "
          f"{'ours/none':>10} {'llama/none':>11} {'ours/llama':>11}")  # fmt: skip
    failures = []
    for qtype in LOW_BIT:
        none, mine, ref = (kld[qtype, k].mean_kld for k in ("none", "ours", "llama"))
        size = kld[qtype, "ours"].size_bytes / 2**20
        print(f"{qtype:<8} {size:>6.1f} {none:>9.4f} {mine:>8.4f} {ref:>8.4f} "
              f"{mine / none:>10.3f} {ref / none:>11.3f} {mine / ref:>11.3f}")  # fmt: skip
        if mine > 0.8 * none:
            failures.append(f"{qtype}: ours only {1 - mine / none:.0%} lower than none")
        if abs(mine / ref - 1) > 0.10:
            failures.append(f"{qtype}: ours {mine / ref:.3f}x llama-imatrix's")
    print("targets: ours/none <= 0.80, |ours/llama - 1| <= 0.10")
    assert not failures, failures


@pytest.mark.benchmark
@pytest.mark.timeout(3600)
def test_bench_quant_table(smollm_gguf: Path, tmp_path: Path) -> None:
    """Size and KLD of the common types (low-bit ones with our imatrix): docs/quantize.md."""
    from qwq_chat.convert.imatrix import compute_imatrix
    from qwq_chat.convert.kld import compare

    imatrix = compute_imatrix(smollm_gguf, tmp_path / "imatrix.gguf").path
    types = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M", "Q3_K_S", "IQ3_XXS", "Q2_K")
    paths = [
        _quantize(smollm_gguf, tmp_path / f"{t}.gguf", t, imatrix if t.startswith("Q3") or t in
                  ("IQ3_XXS", "Q2_K") else None)
        for t in types
    ]  # fmt: skip
    results = compare(smollm_gguf, [smollm_gguf, *paths])
    print()
    print("| type | imatrix | size (MiB) | mean KLD | 99% KLD | top-1 | PPL |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        low = r.file_type.startswith(("Q3", "IQ3", "Q2"))
        print(f"| {r.file_type} | {'yes' if low else '-'} | {r.size_bytes / 2**20:.1f} | "
              f"{r.mean_kld:.4f} | {r.kld_p99:.3f} | {r.top1_agreement:.1%} | {r.ppl:.2f} |")  # fmt: skip
    same = results[0]
    assert same.mean_kld == 0.0 and same.top1_agreement == 1.0
