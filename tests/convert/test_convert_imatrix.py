"""`imatrix`: llama-imatrix's accumulation rule, its file format, and the quantizer taking it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny256
from qwq_chat.convert.errors import ConvertError
from qwq_chat.convert.imatrix import ImatrixStats, accumulate, compute_imatrix, load_imatrix
from qwq_chat.convert.quantize import quantize_gguf
from qwq_chat.convert.verify import TOKENIZER_CORPUS

tiny256_bf16 = tiny256.tiny256_bf16
tiny256_checkpoint = tiny256.tiny256_checkpoint


run_cli = tiny256.run_cli


@pytest.fixture
def calib_txt(tmp_path: Path) -> Path:
    """A few hundred tokens of mixed text (English, Chinese, code, chat markup)."""
    path = tmp_path / "calib.txt"
    path.write_text("\n".join(TOKENIZER_CORPUS) * 3, encoding="utf-8")
    return path


def test_accumulation_rule_by_hand() -> None:
    """Column sums of squares and one count per activation row (llama-imatrix, dense weights)."""
    stats = ImatrixStats.empty()
    x = np.array([[[[1.0, 2.0], [3.0, -4.0]]]], dtype=np.float32)  # 2 rows of width 2
    accumulate(stats, "blk.0.w", x)
    assert stats.sums["blk.0.w"].tolist() == [1 + 9, 4 + 16]
    assert stats.counts["blk.0.w"] == 2
    accumulate(stats, "blk.0.w", np.array([[[[0.5, 0.0]]]], dtype=np.float32))
    assert stats.sums["blk.0.w"].tolist() == [10.25, 20.0]
    assert stats.counts["blk.0.w"] == 3
    # A 3-D activation batch (2 x 3 rows) against a 2-D weight folds onto its one matrix...
    batch = np.arange(12, dtype=np.float32).reshape(1, 2, 3, 2)
    accumulate(stats, "blk.1.w", batch)
    assert stats.sums["blk.1.w"].tolist() == [
        0 + 4 + 16 + 36 + 64 + 100,
        1 + 9 + 25 + 49 + 81 + 121,
    ]
    assert stats.counts["blk.1.w"] == 6
    # ...and against a stack of two matrices each half goes to its own, counted per matrix.
    accumulate(stats, "blk.2.w", batch, weight_ne2=2)
    assert stats.sums["blk.2.w"].tolist() == [0 + 4 + 16, 1 + 9 + 25, 36 + 64 + 100, 49 + 81 + 121]
    assert stats.counts["blk.2.w"] == 3
    with pytest.raises(ConvertError, match="inconsistent"):
        accumulate(stats, "blk.0.w", np.ones((1, 1, 1, 3), dtype=np.float32))


def test_imatrix_of_the_tiny_model_matches_numpy(
    tiny_gguf: Path, calib_txt: Path, tmp_path: Path
) -> None:
    """Layer 0's q/k/v projections multiply RMSNorm(embedding) * attn_norm: computed by hand
    from the GGUF's own tensors, their imatrix sums must match what llama.cpp's graph showed."""
    import gguf
    from qwq_chat.convert.gguf_info import read_tensor
    from qwq_chat.convert.llama_runtime import ChunkModel

    out = tmp_path / "imatrix.gguf"
    run = compute_imatrix(tiny_gguf, out, text=calib_txt, n_ctx=64, max_chunks=3)
    assert (run.chunks, run.chunk_size, run.tokens, run.entries) == (3, 64, 192, 14)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.txt", "imatrix.gguf"]

    reader = gguf.GGUFReader(out)
    fields = {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert fields == {
        "general.type": "imatrix",
        "imatrix.datasets": [str(calib_txt)],
        "imatrix.chunk_count": 3,
        "imatrix.chunk_size": 64,
    }
    names = [t.name for t in reader.tensors]
    bases = [n.removesuffix(".in_sum2") for n in names[::2]]
    assert bases == sorted(bases) and len(bases) == 14  # by weight name, as llama-imatrix
    assert names[1::2] == [b + ".counts" for b in bases]
    assert all(len(t.shape) == 1 for t in reader.tensors)
    data = {t.name: np.asarray(t.data) for t in reader.tensors}
    assert {float(v[0]) for k, v in data.items() if k.endswith(".counts")} == {192.0}

    emb = read_tensor(tiny_gguf, "token_embd.weight")
    norm = read_tensor(tiny_gguf, "blk.0.attn_norm.weight")
    with ChunkModel(tiny_gguf, n_ctx=64) as m:
        tokens = m.tokenize(calib_txt.read_text(encoding="utf-8"))[:192]
    x = emb[tokens].astype(np.float64)
    h = x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + 1e-5) * norm
    expected = (h**2).sum(axis=0)
    for proj in ("attn_q", "attn_k", "attn_v"):
        got = data[f"blk.0.{proj}.weight.in_sum2"]
        np.testing.assert_allclose(got, expected, rtol=1e-4)
    # The quantizer's view: the mean squared activation per column.
    values = load_imatrix(out).values["blk.0.attn_q.weight"]
    np.testing.assert_allclose(values, expected / 192, rtol=1e-4)


def test_quantizer_accepts_our_imatrix(tiny256_bf16: Path, tmp_path: Path) -> None:
    """IQ2_XXS needs an importance matrix; ours, from the shipped calibration set (its chat
    conversations rendered with the model's template), lets llama.cpp's quantizer run."""
    from qwq_chat.convert.gguf_info import read_info
    from qwq_chat.convert.llama_runtime import open_llama

    imatrix = tmp_path / "imatrix.gguf"
    compute_imatrix(tiny256_bf16, imatrix, n_ctx=64, max_chunks=4)
    log = tmp_path / "q.log"
    out = quantize_gguf(
        tiny256_bf16, tmp_path / "iq2.gguf", "IQ2_XXS", imatrix=imatrix, log_file=log
    )
    assert "this quantization requires" not in log.read_text()
    kv = read_info(out).kv
    assert kv["general.file_type"] == 19  # MOSTLY_IQ2_XXS
    assert kv["quantize.imatrix.entries_count"] == 14
    assert kv["quantize.imatrix.chunks_count"] == 4
    assert kv["quantize.imatrix.dataset"] == "qwq-chat:calibration/imatrix.jsonl"
    llm = open_llama(out, n_ctx=64)
    assert llm.create_completion("Hello", max_tokens=2)["usage"]["completion_tokens"] >= 1


def test_low_bit_types_get_an_imatrix_automatically(
    tiny256_bf16: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Q2_K without --imatrix: one is computed from the shipped text (here capped at 2 chunks to
    keep the test short), cached, and reused the next time."""
    import qwq_chat.convert.quantize as q
    from qwq_chat.app.paths import cache_dir
    from qwq_chat.convert.gguf_info import read_info

    monkeypatch.setattr(q, "AUTO_IMATRIX_MAX_CHUNKS", 2)
    said: list[str] = []
    out = quantize_gguf(
        tiny256_bf16, tmp_path / "q2.gguf", "Q2_K", on_status=said.append, log_file=tmp_path / "l"
    )
    assert any("computing one from the shipped calibration text" in s for s in said), said
    assert read_info(out).kv["quantize.imatrix.chunks_count"] == 2
    cached = list((cache_dir() / "imatrix").glob("*.gguf"))
    assert len(cached) == 1
    said.clear()
    quantize_gguf(
        tiny256_bf16, tmp_path / "q2b.gguf", "Q2_K", on_status=said.append, log_file=tmp_path / "l"
    )
    assert any("computed earlier" in s for s in said), said
    said.clear()
    quantize_gguf(tiny256_bf16, tmp_path / "q4.gguf", "Q4_K_M", on_status=said.append)
    assert said == []  # 4-bit types are left as they are
    assert "quantize.imatrix.file" not in read_info(tmp_path / "q4.gguf").kv


def test_an_interrupted_run_resumes(
    tiny_gguf: Path, calib_txt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after two chunks saves the sums; the rerun starts at chunk 3 and ends with exactly
    what an uninterrupted run writes."""
    from qwq_chat.convert import llama_runtime

    whole = tmp_path / "whole.gguf"
    compute_imatrix(tiny_gguf, whole, text=calib_txt, n_ctx=64, max_chunks=4)

    real = llama_runtime.ChunkModel.eval_chunk
    calls = {"n": 0}

    def interrupted(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    out = tmp_path / "resumed.gguf"
    monkeypatch.setattr(llama_runtime.ChunkModel, "eval_chunk", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compute_imatrix(tiny_gguf, out, text=calib_txt, n_ctx=64, max_chunks=4)
    monkeypatch.undo()
    assert not out.exists()
    assert (tmp_path / ".resumed.gguf.resume.npz").is_file()
    said: list[str] = []
    run = compute_imatrix(
        tiny_gguf, out, text=calib_txt, n_ctx=64, max_chunks=4, on_status=said.append
    )
    assert run.resumed_from == 2 and said == [
        "resuming from chunk 3 of 4 (.resumed.gguf.resume.npz)"
    ]
    assert not (tmp_path / ".resumed.gguf.resume.npz").exists()
    a, b = load_imatrix(whole), load_imatrix(out)
    assert a.values.keys() == b.values.keys()
    for name in a.values:
        np.testing.assert_array_equal(a.values[name], b.values[name])


def test_empty_calibration_file(tiny_gguf: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("  \n\n")
    proc = run_cli("imatrix", str(tiny_gguf), "--text", str(tmp_path / "empty.txt"), "-o",
                   str(tmp_path / "im.gguf"))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "empty.txt holds no text" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]


def test_calibration_too_short_and_bad_jsonl(tiny_gguf: Path, tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("Just a few words.")
    proc = run_cli("imatrix", str(tiny_gguf), "--text", str(tmp_path / "short.txt"), "-o",
                   str(tmp_path / "im.gguf"))  # fmt: skip
    assert proc.returncode == 2 and "one chunk needs 512" in proc.stderr, proc.stderr
    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"prompt": "no"}\n')
    proc = run_cli("imatrix", str(tiny_gguf), "--text", str(tmp_path / "bad.jsonl"), "-o",
                   str(tmp_path / "im.gguf"))  # fmt: skip
    assert proc.returncode == 2 and "bad.jsonl:2" in proc.stderr, proc.stderr
    assert not (tmp_path / "im.gguf").exists()


def test_imatrix_for_another_model_is_refused(
    tiny_gguf: Path, tiny256_bf16: Path, calib_txt: Path, tmp_path: Path
) -> None:
    """An importance matrix of the width-64 model given for the width-256 one."""
    other = tmp_path / "w64-imatrix.gguf"
    compute_imatrix(tiny_gguf, other, text=calib_txt, n_ctx=64, max_chunks=1)
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("quantize", str(tiny256_bf16), str(out / "q.gguf"), "-t", "IQ2_XXS",
                   "--imatrix", str(other))  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "made for another model" in proc.stderr and "64 values" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []
