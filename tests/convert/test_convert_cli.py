"""Bad input through the real `qwq-chat` command: clear message, exit 2, no output file left."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import qwq_chat.convert.hf_to_gguf as hf_to_gguf
import tiny256

run_cli = tiny256.run_cli


def linked_copy(src: Path, dst: Path, *, copy: tuple[str, ...] = ()) -> Path:
    """A checkpoint folder of symlinks to `src`'s files, except `copy` (real copies, to edit)."""
    dst.mkdir()
    for item in src.iterdir():
        if item.name in copy:
            shutil.copy(item, dst / item.name)
        else:
            (dst / item.name).symlink_to(item)
    return dst


def assert_user_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "error:" in proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def assert_nothing_written(out_dir: Path) -> None:
    assert list(out_dir.iterdir()) == [], list(out_dir.iterdir())


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


def test_missing_config(tiny_checkpoint: Path, tmp_path: Path, out_dir: Path) -> None:
    ckpt = linked_copy(tiny_checkpoint, tmp_path / "ck")
    (ckpt / "config.json").unlink()
    proc = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    assert_user_error(proc, "config.json")
    assert_nothing_written(out_dir)


def test_unsupported_architecture(tiny_checkpoint: Path, tmp_path: Path, out_dir: Path) -> None:
    ckpt = linked_copy(tiny_checkpoint, tmp_path / "ck", copy=("config.json",))
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["architectures"] = ["LlamaForCausalLM"]
    (ckpt / "config.json").write_text(json.dumps(cfg))
    proc = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    assert_user_error(proc, "LlamaForCausalLM", "Qwen2ForCausalLM")
    assert_nothing_written(out_dir)


def test_truncated_shard(tiny_checkpoint: Path, tmp_path: Path, out_dir: Path) -> None:
    shard = sorted(tiny_checkpoint.glob("model-*.safetensors"))[-1].name
    ckpt = linked_copy(tiny_checkpoint, tmp_path / "ck", copy=(shard,))
    size = (ckpt / shard).stat().st_size
    with open(ckpt / shard, "r+b") as f:
        f.truncate(size - 1000)
    proc = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    assert_user_error(proc, shard, "truncated")
    assert_nothing_written(out_dir)


def test_missing_tokenizer_files(tiny_checkpoint: Path, tmp_path: Path, out_dir: Path) -> None:
    ckpt = linked_copy(tiny_checkpoint, tmp_path / "ck")
    (ckpt / "tokenizer.json").unlink()
    proc = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    assert_user_error(proc, "tokenizer.json")
    assert_nothing_written(out_dir)


def test_tensor_that_maps_to_nothing(tiny_checkpoint: Path, tmp_path: Path, out_dir: Path) -> None:
    from safetensors.numpy import save_file

    ckpt = linked_copy(tiny_checkpoint, tmp_path / "ck", copy=("model.safetensors.index.json",))
    odd = "model.layers.0.mlp.mystery_proj.weight"
    save_file({odd: np.zeros((4, 64), dtype=np.float32)}, str(ckpt / "extra.safetensors"))
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    index["weight_map"][odd] = "extra.safetensors"
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    proc = run_cli("convert", str(ckpt), "-o", str(out_dir / "m.gguf"))
    assert_user_error(proc, odd)
    assert_nothing_written(out_dir)


def test_output_in_missing_directory(tiny_checkpoint: Path, tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "dir" / "m.gguf"
    proc = run_cli("convert", str(tiny_checkpoint), "-o", str(target))
    assert_user_error(proc, "does not exist", str(target.parent))
    assert not (tmp_path / "no").exists()


def test_unknown_outtype(tiny_checkpoint: Path, out_dir: Path) -> None:
    proc = run_cli(
        "convert", str(tiny_checkpoint), "-o", str(out_dir / "m.gguf"), "--outtype", "q3"
    )
    assert_user_error(proc, "q3", "bf16", "q8_0")
    assert_nothing_written(out_dir)


def test_unknown_quant_type(tiny_gguf: Path, out_dir: Path) -> None:
    proc = run_cli("quantize", str(tiny_gguf), str(out_dir / "q.gguf"), "--type", "Q9_Z")
    assert_user_error(proc, "Q9_Z", "Q4_K_M", "IQ4_XS", "Q6_K")
    assert_nothing_written(out_dir)


def test_quantize_output_in_missing_directory(tiny_gguf: Path, tmp_path: Path) -> None:
    proc = run_cli("quantize", str(tiny_gguf), str(tmp_path / "nope" / "q.gguf"), "--type", "Q8_0")
    assert_user_error(proc, "does not exist")
    assert not (tmp_path / "nope").exists()


def test_quantize_rejects_non_gguf(tmp_path: Path, out_dir: Path) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("not a model")
    proc = run_cli("quantize", str(bogus), str(out_dir / "q.gguf"))
    assert_user_error(proc, "not a GGUF file")
    assert_nothing_written(out_dir)


def test_failure_mid_write_leaves_no_file(
    tiny_checkpoint: Path, out_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error after the header and some tensors are written removes the temp file."""
    real: Callable = hf_to_gguf._converter
    calls = {"n": 0}

    def failing(src_dtype: str, qtype: object) -> Callable:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError("disk full (simulated)")
        return real(src_dtype, qtype)

    monkeypatch.setattr(hf_to_gguf, "_converter", failing)
    with pytest.raises(OSError, match="disk full"):
        hf_to_gguf.convert_checkpoint(tiny_checkpoint, out_dir / "m.gguf", outtype="bf16")
    assert calls["n"] == 5
    assert_nothing_written(out_dir)


def test_convert_and_quantize_through_cli(tiny_checkpoint: Path, out_dir: Path) -> None:
    proc = run_cli(
        "convert", str(tiny_checkpoint), "-o", str(out_dir / "m.gguf"), "--outtype", "f32"
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    proc = run_cli("quantize", str(out_dir / "m.gguf"), str(out_dir / "q.gguf"), "--type", "q6_k")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["m.gguf", "q.gguf"]
    with open(out_dir / "q.gguf", "rb") as f:
        assert f.read(4) == b"GGUF"
