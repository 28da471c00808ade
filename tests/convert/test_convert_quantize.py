"""`quantize`: llama.cpp's quantizer through llama-cpp-python, type names, progress, imatrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny256
from qwq_chat.convert.errors import ConvertError, QuantTypeError
from qwq_chat.convert.llama_runtime import open_llama
from qwq_chat.convert.quantize import QuantizeOptions, quant_types, quantize_gguf, resolve_type

# Session fixtures shared with the other convert tests (tests/convert/tiny256.py).
tiny256_bf16 = tiny256.tiny256_bf16
tiny256_checkpoint = tiny256.tiny256_checkpoint


def test_type_names_cover_llama_cpp() -> None:
    types = quant_types()
    for name in ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "IQ4_XS", "Q2_K", "IQ2_XXS", "BF16", "F16"):
        assert name in types
    assert types["Q4_K_M"] == 15 and types["Q8_0"] == 7 and types["IQ4_XS"] == 30
    assert resolve_type("q4_k_m") == 15
    with pytest.raises(QuantTypeError, match="Q6_K"):
        resolve_type("Q4_K_X")


def test_quantize_with_progress_and_log(tiny256_bf16: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int, str]] = []
    import qwq_chat.convert.quantize as q

    original = q._quant_progress

    from contextlib import contextmanager

    @contextmanager
    def recording(enabled: bool, label: str):
        with original(enabled, label) as on_tensor:

            def both(i: int, n: int, name: str) -> None:
                seen.append((i, n, name))
                on_tensor(i, n, name)

            yield both

    q._quant_progress = recording
    try:
        out = quantize_gguf(
            tiny256_bf16, tmp_path / "q6.gguf", "Q6_K", progress=True, log_file=tmp_path / "q.log"
        )
    finally:
        q._quant_progress = original
    n_tensors = 12 * 2 + 3
    assert [i for i, _, _ in seen] == list(range(1, n_tensors + 1))
    assert {n for _, n, _ in seen} == {n_tensors}
    assert "blk.0.attn_q.weight" in {name for _, _, name in seen}
    assert "q6_K" in (tmp_path / "q.log").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.log", "q6.gguf"]
    llm = open_llama(out, n_ctx=64)
    assert int(llm.metadata["general.file_type"]) == 18
    assert llm.create_completion("Hello", max_tokens=3)["usage"]["completion_tokens"] >= 1


def _write_imatrix(path: Path, checkpoint: Path) -> None:
    """An importance matrix in llama-imatrix's GGUF layout, for every matrix the model multiplies
    activations with (random positive mean squares: a stand-in for calibration data)."""
    import gguf
    from qwq_chat.convert.hf_to_gguf import load_checkpoint, plan_tensors

    rng = np.random.default_rng(0)
    writer = gguf.GGUFWriter(path, arch="")
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", ["synthetic"])
    writer.add_uint32("imatrix.chunk_count", 1)
    writer.add_uint32("imatrix.chunk_size", 512)
    for t in plan_tensors(load_checkpoint(checkpoint), "bf16"):
        if len(t.shape) < 2 or t.name == "token_embd.weight":
            continue
        n_cols = t.shape[-1]  # input width
        sums = (rng.gamma(0.5, 2.0, (1, n_cols)) * 100).astype(np.float32)
        writer.add_tensor(t.name + ".in_sum2", sums)
        writer.add_tensor(t.name + ".counts", np.array([[100.0]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_imatrix_reaches_the_quantizer(
    tiny256_checkpoint: Path, tiny256_bf16: Path, tmp_path: Path
) -> None:
    imatrix = tmp_path / "imatrix.gguf"
    _write_imatrix(imatrix, tiny256_checkpoint)
    log = tmp_path / "q.log"
    # IQ2_XXS cannot run without an importance matrix (when none may be computed): a clear
    # error, no file left.
    with pytest.raises(ConvertError, match="could not quantize .* needs an importance matrix"):
        quantize_gguf(
            tiny256_bf16,
            tmp_path / "iq2-plain.gguf",
            "IQ2_XXS",
            options=QuantizeOptions(auto_imatrix=False),
            log_file=log,
        )
    assert "requires an imatrix" in log.read_text()
    assert not (tmp_path / "iq2-plain.gguf").exists()
    out = quantize_gguf(
        tiny256_bf16, tmp_path / "iq2.gguf", "IQ2_XXS", imatrix=imatrix, log_file=log
    )
    assert "have importance matrix data" in log.read_text()
    llm = open_llama(out, n_ctx=64)
    assert llm.create_completion("Hello", max_tokens=2)["usage"]["completion_tokens"] >= 1
