"""`verify --kld`: corpus KL divergence of quants from a reference, llama-perplexity's statistics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tiny256
from qwq_chat.convert.errors import ConvertError
from qwq_chat.convert.kld import compare, log_softmax, mean_and_uncertainty, position_kld

tiny256_bf16 = tiny256.tiny256_bf16
tiny256_checkpoint = tiny256.tiny256_checkpoint
tiny256_q4_k_m = tiny256.tiny256_q4_k_m
tiny256_quant = tiny256.tiny256_quant

# Short chunks keep the width-256 model quick: 6 chunks of 64 tokens, 31 scored positions each.
N_CTX, CHUNKS = 64, 6


run_cli = tiny256.run_cli


def test_statistics_by_definition() -> None:
    ref = log_softmax(np.array([[2.0, 1.0, 0.0, -30.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32))
    got = log_softmax(np.array([[1.0, 2.0, 0.0, 5.0], [0.0, 0.0, 0.0, 0.0]], dtype=np.float32))
    p = np.exp(ref.astype(np.float64))
    full = (p * (ref - got)).sum(-1)
    kld = position_kld(ref, got)
    # The reference's e^-30 entry is below llama-perplexity's e^-16 cut-off and is left out.
    np.testing.assert_allclose(kld[0], (p[0, :3] * (ref[0, :3] - got[0, :3])).sum(), rtol=1e-6)
    assert kld[0] == pytest.approx(full[0], abs=1e-6) and kld[1] == 0.0
    mean, err = mean_and_uncertainty(np.arange(20, dtype=np.float64))
    assert mean == 9.5 and err == pytest.approx(np.std(np.arange(20)) / np.sqrt(19))


def test_kld_orders_the_quants(
    tiny256_bf16: Path, tiny256_q4_k_m: Path, tiny256_quant: Callable[[str], Path]
) -> None:
    """bf16 against itself: KLD 0, top-1 100%, same perplexity; then Q8_0 < Q4_K_M < Q2_K."""
    quants = [tiny256_bf16, tiny256_quant("Q8_0"), tiny256_q4_k_m, tiny256_quant("Q2_K")]
    results = compare(tiny256_bf16, quants, n_ctx=N_CTX, max_chunks=CHUNKS)
    same, q8, q4, q2 = results
    assert [r.file_type for r in results] == ["BF16", "Q8_0", "Q4_K_M", "Q2_K"]
    assert {r.positions for r in results} == {CHUNKS * (N_CTX - 1 - N_CTX // 2)}
    assert same.mean_kld == 0.0 and same.kld_p999 == 0.0 and same.top1_agreement == 1.0
    assert same.ppl == same.ppl_ref
    assert 0 < q8.mean_kld < q4.mean_kld < q2.mean_kld
    assert q8.kld_p99 < q4.kld_p99 < q2.kld_p99
    assert q8.top1_agreement > q4.top1_agreement > q2.top1_agreement
    assert q8.mean_kld <= q8.kld_p99 <= q8.kld_p999 <= q8.kld_max
    assert q2.size_bytes < q4.size_bytes < q8.size_bytes < same.size_bytes


def test_cli_table_and_threshold(
    tiny256_bf16: Path, tiny256_quant: Callable[[str], Path], tmp_path: Path
) -> None:
    q8, q2 = tiny256_quant("Q8_0"), tiny256_quant("Q2_K")
    args = ("verify", "--kld", str(tiny256_bf16), str(q8), str(q2), "--n-ctx", str(N_CTX),
            "--chunks", "2")  # fmt: skip
    proc = run_cli(*args, "--max-kld", "0.05")
    assert proc.returncode == 1, proc.stderr
    assert "PASS" in proc.stdout and "FAIL" in proc.stdout
    assert "mean KLD above 0.05" in proc.stderr and str(q2.name) in proc.stderr
    proc = run_cli(*args, "--max-kld", "50")
    assert proc.returncode == 0, proc.stderr
    for needle in ("mean KLD", "p99 KLD", "p99.9", "top-1", "PPL", "Q8_0", "Q2_K"):
        assert needle in proc.stdout, needle


def test_different_models_are_refused(tiny256_bf16: Path, smollm_gguf: Path) -> None:
    with pytest.raises(ConvertError, match="vocabulary of 49152 tokens"):
        compare(tiny256_bf16, [smollm_gguf], n_ctx=N_CTX, max_chunks=1)


def test_verify_usage_errors(tiny256_bf16: Path, tmp_path: Path) -> None:
    proc = run_cli("verify", str(tiny256_bf16))
    assert proc.returncode == 2 and "--kld REFERENCE.gguf QUANT.gguf" in proc.stderr
    (tmp_path / "empty.jsonl").write_text("\n")
    proc = run_cli("verify", "--kld", str(tiny256_bf16), str(tiny256_bf16), "--text",
                   str(tmp_path / "empty.jsonl"))  # fmt: skip
    assert proc.returncode == 2 and "holds no text" in proc.stderr
