"""Against llama.cpp's own tools built from source (opt-in: QWQ_LLAMA_TOOLS=1, ~12 min build).

On SmolLM2 (the one real trained model here): our importance matrix equals llama-imatrix's on the
same text, llama.cpp's llama-quantize binary takes our file, and our `verify --kld` statistics
equal llama-perplexity --kl-divergence's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from llama_reference import llama_imatrix, llama_kld, plain_text, rendered_text
from llama_sources import llama_tools, tools_opted_in
from qwq_chat.convert.calibration import CALIBRATION_ASSET, HELDOUT_ASSET

pytestmark = pytest.mark.skipif(
    not tools_opted_in(),
    reason="builds llama.cpp's tools from the sdist (about 12 minutes on 2 cores): "
    "set QWQ_LLAMA_TOOLS=1 to run",
)


@pytest.fixture(scope="module")
def tools() -> Path:
    return llama_tools()


def test_our_imatrix_equals_llama_imatrix(tools: Path, smollm_gguf: Path, tmp_path: Path) -> None:
    import gguf
    from qwq_chat.convert.imatrix import compute_imatrix

    text = rendered_text(smollm_gguf, CALIBRATION_ASSET, tmp_path / "calib.txt")
    theirs = llama_imatrix(tools, smollm_gguf, text, tmp_path / "llama.gguf", 256, 6)
    ours = tmp_path / "ours.gguf"
    compute_imatrix(smollm_gguf, ours, text=text, n_ctx=256, max_chunks=6)
    a, b = gguf.GGUFReader(theirs), gguf.GGUFReader(ours)
    assert {k: f.contents() for k, f in a.fields.items() if not k.startswith("GGUF.")} == {
        k: f.contents() for k, f in b.fields.items() if not k.startswith("GGUF.")
    }
    assert [(t.name, t.shape.tolist()) for t in a.tensors] == [
        (t.name, t.shape.tolist()) for t in b.tensors
    ]
    assert len(a.tensors) == 2 * 7 * 30  # in_sum2 and counts of 7 matrices in 30 layers
    for x, y in zip(a.tensors, b.tensors, strict=True):
        np.testing.assert_allclose(
            np.asarray(y.data), np.asarray(x.data), rtol=1e-4, err_msg=x.name
        )


def test_llama_quantize_takes_our_imatrix(tools: Path, smollm_gguf: Path, tmp_path: Path) -> None:
    from qwq_chat.convert.imatrix import compute_imatrix

    ours = tmp_path / "ours.gguf"
    compute_imatrix(smollm_gguf, ours, n_ctx=256, max_chunks=4)
    proc = subprocess.run(
        [str(tools / "llama-quantize"), "--allow-requantize", "--imatrix", str(ours),
         str(smollm_gguf), str(tmp_path / "q2.gguf"), "Q2_K", "2"],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "loaded 210 importance matrix entries" in out and "computed on 4 chunks" in out
    assert (tmp_path / "q2.gguf").stat().st_size > 0


def test_our_kld_equals_llama_perplexity(tools: Path, smollm_gguf: Path, tmp_path: Path) -> None:
    from qwq_chat.convert.kld import compare
    from qwq_chat.convert.quantize import QuantizeOptions, quantize_gguf

    quant = quantize_gguf(
        smollm_gguf, tmp_path / "q2.gguf", "Q2_K",
        options=QuantizeOptions(auto_imatrix=False, allow_requantize=True),
    )  # fmt: skip
    text = plain_text(HELDOUT_ASSET, tmp_path / "heldout.txt")
    theirs = llama_kld(tools, smollm_gguf, quant, text, tmp_path, 256, chunks=8)
    (ours,) = compare(smollm_gguf, [quant], text=text, n_ctx=256, max_chunks=8)
    assert ours.positions == 8 * 127
    assert ours.mean_kld == pytest.approx(theirs["mean_kld"], rel=2e-3)
    assert ours.kld_p99 == pytest.approx(theirs["p99"], rel=5e-3)
    assert ours.kld_p999 == pytest.approx(theirs["p999"], rel=5e-3)
    assert ours.top1_agreement == pytest.approx(theirs["top1"], abs=2e-3)
    assert ours.ppl == pytest.approx(theirs["ppl"], rel=2e-3)
    assert ours.ppl_ref == pytest.approx(theirs["ppl_ref"], rel=2e-3)
