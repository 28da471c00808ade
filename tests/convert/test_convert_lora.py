"""PEFT LoRA -> GGUF adapter: llama.cpp (base GGUF + adapter) matches the merged model in transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from qwq_chat.convert.llama_runtime import open_llama
from qwq_chat.convert.lora import convert_lora
from qwq_chat.convert.verify import gguf_logits, logit_metrics

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
IDS = [151644, 872, 198, 9707, 1879, 0, 151645, 198, 151644, 77091, 198, 151667, 198, 40, 1744]


@pytest.fixture(scope="module")
def adapter_and_reference(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """A random (non-zero B) LoRA with rsLoRA scaling and a per-module alpha, saved by PEFT,
    and the merged model's logits on IDS."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    cfg = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=TARGETS,
        init_lora_weights=False,  # random A and B: the adapter really changes the output
        use_rslora=True,
        alpha_pattern={"down_proj": 4},
    )
    torch.manual_seed(0)
    peft_model = get_peft_model(model, cfg)
    adapter_dir = tmp_path_factory.mktemp("adapter") / "my-lora"
    peft_model.save_pretrained(adapter_dir)
    with torch.no_grad():
        merged = peft_model.merge_and_unload()
        ref = merged(torch.tensor([IDS])).logits[0].numpy()
    return adapter_dir, ref


def test_adapter_layout(adapter_and_reference, tiny_checkpoint: Path, tmp_path: Path) -> None:
    adapter_dir, _ = adapter_and_reference
    out = convert_lora(adapter_dir, tiny_checkpoint, tmp_path / "a.gguf")
    meta = dict(open_llama_meta(out))
    assert meta["general.type"] == "adapter"
    assert meta["adapter.type"] == "lora"
    assert float(meta["adapter.lora.alpha"]) == 16.0
    import gguf

    names = {t.name: t for t in gguf.GGUFReader(out).tensors}
    assert len(names) == 2 * 2 * len(TARGETS)  # 2 layers, a and b each
    a = names["blk.0.attn_q.weight.lora_a"]
    b = names["blk.0.attn_q.weight.lora_b"]
    assert list(a.shape) == [64, 8] and list(b.shape) == [8, 64]  # GGUF order: ne0 first
    assert [p.name for p in tmp_path.iterdir()] == ["a.gguf"]


def open_llama_meta(path: Path) -> dict[str, str]:
    import gguf

    reader = gguf.GGUFReader(path)
    return {k: str(f.contents()) for k, f in reader.fields.items() if not k.startswith("GGUF.")}


# On the quantized base the comparison is against an unquantized merge: Q8_0's own error
# (same bounds as `verify` uses for Q8_0 files) on top of the adapter's.
@pytest.mark.parametrize(
    ("base_type", "min_top1", "max_nmse", "max_kl"),
    [("f32", 1.0, 1e-4, 1e-3), ("q8_0", 0.8, None, 0.05)],
)
def test_base_plus_adapter_matches_merged_model(
    adapter_and_reference,
    tiny_checkpoint: Path,
    tiny_gguf_factory: Callable[[str], Path],
    tmp_path: Path,
    base_type: str,
    min_top1: float,
    max_nmse: float | None,
    max_kl: float,
) -> None:
    adapter_dir, ref = adapter_and_reference
    adapter = convert_lora(adapter_dir, tiny_checkpoint, tmp_path / "adapter.gguf")
    base = tiny_gguf_factory(base_type)
    with_lora = gguf_logits(
        open_llama(base, lora_path=str(adapter), n_ctx=64, logits_all=True), IDS
    )
    without = gguf_logits(open_llama(base, n_ctx=64, logits_all=True), IDS)
    m = logit_metrics(ref, with_lora)
    assert m["top1"] >= min_top1, m
    assert m["kl"] <= max_kl, m
    if max_nmse is not None:
        assert m["nmse"] <= max_nmse, m
    # Without the adapter the base model is far from the merged one: the adapter did the work.
    assert logit_metrics(ref, without)["kl"] > 100 * m["kl"]
    assert not np.allclose(with_lora, without)


def test_cli_convert_lora_and_bad_adapter(
    adapter_and_reference, tiny_checkpoint: Path, tmp_path: Path
) -> None:
    adapter_dir, _ = adapter_and_reference
    env = {**os.environ, "COLUMNS": "1000"}
    out = tmp_path / "out"
    out.mkdir()
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwq_chat.app",
            "convert-lora",
            str(adapter_dir),
            "--base",
            str(tiny_checkpoint),
            "-o",
            str(out / "a.gguf"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert (out / "a.gguf").is_file()
    empty = tmp_path / "not-an-adapter"
    empty.mkdir()
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwq_chat.app",
            "convert-lora",
            str(empty),
            "--base",
            str(tiny_checkpoint),
            "-o",
            str(out / "b.gguf"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert bad.returncode == 2
    assert "adapter_config.json" in bad.stderr and "Traceback" not in bad.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.gguf"]
