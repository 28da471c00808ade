"""`quantize` options as llama-quantize has them, read back from the files; split GGUF files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tiny256
from qwq_chat.app.gguf_files import split_pieces
from qwq_chat.convert.errors import ConvertError
from qwq_chat.convert.quantize import QuantizeOptions, quantize_gguf

tiny256_bf16 = tiny256.tiny256_bf16
tiny256_checkpoint = tiny256.tiny256_checkpoint
tiny256_q4_k_m = tiny256.tiny256_q4_k_m
tiny256_quant = tiny256.tiny256_quant


run_cli = tiny256.run_cli


def _types(path: Path) -> dict[str, str]:
    """Tensor name -> type name, read back from the file (gguf_info agrees with gguf-py's reader,
    test_convert_gguf_info.py; it skips the 152k-entry vocabulary arrays gguf-py parses)."""
    from qwq_chat.convert.gguf_info import read_info

    return {t.name: t.type_name for t in read_info(path).tensors}


def _logits(path: Path, text: str = "The quick brown fox jumps over the lazy dog.") -> np.ndarray:
    from qwq_chat.convert.llama_runtime import open_llama

    llm = open_llama(path, n_ctx=64, logits_all=True)
    ids = llm.tokenize(text.encode(), add_bos=False)
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def test_tensor_type_overrides_land_on_the_named_tensors(
    tiny256_bf16: Path, tiny256_q4_k_m: Path, tmp_path: Path
) -> None:
    default = _types(tiny256_q4_k_m)
    out = quantize_gguf(
        tiny256_bf16,
        tmp_path / "custom.gguf",
        "Q4_K_M",
        options=QuantizeOptions(
            tensor_types=["attn_q=q5_k", r"BLK\.1\.FFN_UP=q8_0", "ffn_up=iq4_nl"],
            output_tensor_type="q8_0",
            token_embedding_type="q5_k",
        ),
        log_file=tmp_path / "q.log",
    )
    types = _types(out)
    for i in (0, 1):
        assert default[f"blk.{i}.attn_q.weight"] == "Q4_K"
        assert types[f"blk.{i}.attn_q.weight"] == "Q5_K"
    assert types["blk.1.ffn_up.weight"] == "Q8_0"  # the first matching pattern wins
    assert types["blk.0.ffn_up.weight"] == "IQ4_NL"
    assert (default["output.weight"], types["output.weight"]) == ("Q6_K", "Q8_0")
    assert (default["token_embd.weight"], types["token_embd.weight"]) == ("Q4_K", "Q5_K")
    # Untouched tensors keep Q4_K_M's own choices.
    for name in ("blk.0.ffn_down.weight", "blk.1.attn_v.weight", "blk.0.attn_k.weight"):
        assert types[name] == default[name]
    assert "applying manual override" in (tmp_path / "q.log").read_text()


def test_pure_gives_every_matrix_the_default_type(tiny256_bf16: Path, tmp_path: Path) -> None:
    types = _types(
        quantize_gguf(
            tiny256_bf16,
            tmp_path / "pure.gguf",
            "Q4_K_M",
            options=QuantizeOptions(pure=True),
            log_file=tmp_path / "q.log",
        )
    )
    blocks = {t for name, t in types.items() if name.startswith("blk.") and name.endswith("weight")}
    assert blocks - {"F32"} == {"Q4_K"}  # no Q6_K ffn_down/attn_v as in the Q4_K_M mixture


def test_tensor_type_regex_that_matches_nothing(tiny256_bf16: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    proc = run_cli("quantize", str(tiny256_bf16), str(out / "q.gguf"), "--tensor-type",
                   "attn_qq=q8_0")  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "'attn_qq=q8_0' matches no weight matrix" in proc.stderr
    assert "blk.0.attn_k.weight" in proc.stderr  # shows what the names look like
    assert "Traceback" not in proc.stderr and list(out.iterdir()) == []
    for bad, needle in (("attn_q=q9_9", "unknown tensor type 'q9_9'"), ("attn_q", "REGEX=TYPE"),
                        ("attn_q[=q8_0", "is not a regex")):  # fmt: skip
        proc = run_cli("quantize", str(tiny256_bf16), str(out / "q.gguf"), "--tensor-type", bad)
        assert proc.returncode == 2 and needle in proc.stderr, (bad, proc.stderr)
    assert list(out.iterdir()) == []


def test_requantizing_needs_allow_requantize(
    tiny_gguf_factory: Callable[[str], Path], tmp_path: Path
) -> None:
    q8 = tiny_gguf_factory("q8_0")
    with pytest.raises(ConvertError, match="already quantized .*--allow-requantize"):
        quantize_gguf(q8, tmp_path / "q4.gguf", "Q4_0")
    assert list(tmp_path.iterdir()) == []
    said: list[str] = []
    out = quantize_gguf(
        q8,
        tmp_path / "q4.gguf",
        "Q4_0",
        options=QuantizeOptions(allow_requantize=True),
        on_status=said.append,
        log_file=tmp_path / "q.log",
    )
    assert any("quality suffers" in s for s in said), said
    assert _types(out)["blk.0.attn_q.weight"] == "Q4_0"


def test_split_output_loads_as_one_model_with_the_same_logits(
    tiny256_bf16: Path, tiny256_quant: Callable[[str], Path], tmp_path: Path
) -> None:
    """`--split-max-size` on the quantizer's output: pieces, keys llama.cpp needs, same logits."""
    from qwq_chat.convert.gguf_info import read_info

    single = tiny256_quant("Q8_0")
    proc = run_cli("quantize", str(tiny256_bf16), str(tmp_path / "q8.gguf"), "-t", "Q8_0",
                   "--split-max-size", "20M")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pieces = sorted(p.name for p in tmp_path.glob("*.gguf"))
    assert pieces == [f"q8-0000{i}-of-00004.gguf" for i in (1, 2, 3, 4)], pieces
    assert "load the first: " in proc.stdout
    first = tmp_path / pieces[0]
    infos = [read_info(tmp_path / p) for p in pieces]
    assert [i.kv["split.no"] for i in infos] == [0, 1, 2, 3]
    assert {i.kv["split.count"] for i in infos} == {4}
    assert {i.kv["split.tensors.count"] for i in infos} == {27}
    assert sum(len(i.tensors) for i in infos) == 27
    assert "tokenizer.ggml.tokens" in infos[0].kv and "tokenizer.ggml.tokens" not in infos[1].kv
    assert max(sum(_nbytes(t) for t in i.tensors) for i in infos) <= 20_000_000 or any(
        len(i.tensors) == 1 for i in infos
    )
    np.testing.assert_array_equal(_logits(first), _logits(single))


def _nbytes(t) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(t.type_value)]
    n = 1
    for d in t.shape:
        n *= d
    return n // block * size


def test_convert_splits_and_keep_split_follows(
    tiny_checkpoint: Path, tiny_gguf: Path, tmp_path: Path
) -> None:
    """`convert --split-max-size` writes pieces that load with the single file's logits;
    `quantize --keep-split` keeps that layout."""
    proc = run_cli("convert", str(tiny_checkpoint), "-o", str(tmp_path / "m.gguf"),
                   "--split-max-size", "10M")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in tmp_path.glob("*.gguf"))
    n = len(written)
    assert n >= 3 and written == [f"m-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
    first = tmp_path / written[0]
    assert [p.name for p in split_pieces(first)] == written
    np.testing.assert_array_equal(_logits(first), _logits(tiny_gguf))
    out = quantize_gguf(
        first, tmp_path / "q8.gguf", "Q8_0", options=QuantizeOptions(keep_split=True),
        log_file=tmp_path / "q.log",
    )  # fmt: skip
    assert out.name == f"q8-00001-of-{n:05d}.gguf"
    assert len(split_pieces(out)) == n
    assert _logits(out).shape == _logits(first).shape
    # The chat loads the split model from its first piece, or from the folder holding it, and
    # answers as on the single file (greedy, same seed).
    answers = [_ask_greedy(str(model)) for model in (tiny_gguf, first, tmp_path / "split-only")]
    assert answers[0] == answers[1] == answers[2] and answers[0]


def _ask_greedy(model: str) -> str:
    import io
    import shutil

    from qwq_chat.app.ask import run_ask
    from qwq_chat.app.config import load_settings

    folder = Path(model)
    if folder.name == "split-only":  # a folder holding only the pieces of one split model
        folder.mkdir()
        for piece in sorted(folder.parent.glob("m-*-of-*.gguf")):
            shutil.copy(piece, folder / piece.name)
    settings = load_settings(model=model, n_ctx=512, max_tokens=12)
    settings.sampling = settings.sampling.replace(top_k=1, seed=3)
    out, err = io.StringIO(), io.StringIO()
    assert run_ask(settings, "Hello there", as_json=False, out=out, err=err) == 0, err.getvalue()
    return out.getvalue()


def test_split_pieces_missing_or_not_first(tiny_checkpoint: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    proc = run_cli("convert", str(tiny_checkpoint), "-o", str(src / "m.gguf"), "--split-max-size",
                   "10M")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    out.mkdir()
    first, second = sorted(src.glob("*.gguf"))[:2]
    proc = run_cli("quantize", str(second), str(out / "q.gguf"), "-t", "Q8_0")
    assert proc.returncode == 2 and f"pass its first piece, {first.name}" in proc.stderr
    second.rename(src / "elsewhere.gguf")
    for args in (
        ("quantize", str(first), str(out / "q.gguf"), "-t", "Q8_0"),
        ("imatrix", str(first), "-o", str(out / "im.gguf")),
        ("verify", "--kld", str(first), str(first)),
    ):
        proc = run_cli(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert f"{second.name} is missing" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert list(out.iterdir()) == []
