"""Re-export a run for the chat app: merged GGUF (optionally quantized) or a GGUF LoRA adapter.

Merging happens in float32 on the original base (bf16 weights upcast, adapter added, result cast
back to bf16), so the merge itself adds no rounding beyond the final bf16 cast; convert/ then writes
the GGUF and llama.cpp's quantizer makes Q8_0 / Q4_K_M. `--lora-gguf` skips the merge and writes a
small adapter that llama.cpp applies on top of the (already quantized) base GGUF.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from qwq_chat.app.errors import UserError
from qwq_chat.rl_finetune.model import ADAPTER_FILE, is_adapter_dir

STAGE_ORDER = ("stage2", "stage1", "cold_start")


def latest_output(run_dir: Path) -> Path:
    """The most advanced finished stage of a run (or RUN_DIR itself if it is a checkpoint)."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file() or is_adapter_dir(run_dir):
        return run_dir
    for stage in STAGE_ORDER:
        final = run_dir / stage / "final"
        if final.is_dir():
            return final
    raise UserError(
        f"{run_dir}: no finished stage found (expected stage2/final, stage1/final or "
        "cold_start/final); run `qwq-chat rl train CONFIG` first"
    )


def adapter_base(adapter_dir: Path, base: str | None = None) -> str:
    if base:
        return base
    return json.loads((adapter_dir / ADAPTER_FILE).read_text())["base_model_name_or_path"]


def merge_to_checkpoint(source: Path, out_dir: Path, base: str | None = None) -> Path:
    """A standalone bf16 HF checkpoint: LoRA merged in float32, or full weights re-saved in bf16."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = Path(source)
    tmp = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    if is_adapter_dir(source):
        from peft import PeftModel

        base_path = adapter_base(source, base)
        model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        model = PeftModel.from_pretrained(model, str(source)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32)
    model = model.to(torch.bfloat16)
    model.config.torch_dtype = "bfloat16"
    model.save_pretrained(str(tmp))
    AutoTokenizer.from_pretrained(str(source)).save_pretrained(str(tmp))
    gen = (
        Path(adapter_base(source, base)) if is_adapter_dir(source) else source
    ) / "generation_config.json"
    if gen.is_file():
        shutil.copy(gen, tmp / "generation_config.json")
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.rename(out_dir)
    return out_dir


def export_run(
    run_dir: Path,
    out_dir: Path | None = None,
    *,
    quant: str | None = None,
    lora_gguf: bool = False,
    base: str | None = None,
    progress: bool = False,
) -> list[Path]:
    """Write the run's GGUF files into `out_dir` (default RUN_DIR/export); return their paths."""
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "export"
    out_dir.mkdir(parents=True, exist_ok=True)
    source = latest_output(run_dir)
    if lora_gguf:
        if not is_adapter_dir(source):
            raise UserError(
                f"{source} holds full weights, not a LoRA adapter: export it without --lora-gguf"
            )
        from qwq_chat.convert.lora import convert_lora

        out = out_dir / "adapter.gguf"
        convert_lora(source, adapter_base(source, base), out)
        return [out]
    merged = merge_to_checkpoint(source, out_dir / "merged", base)
    bf16 = convert_checkpoint(
        merged, out_dir / "model-bf16.gguf", outtype="bf16", progress=progress
    )
    written = [bf16]
    if quant:
        from qwq_chat.convert.quantize import quantize_gguf

        written.append(
            quantize_gguf(bf16, out_dir / f"model-{quant.upper()}.gguf", quant, progress=progress)
        )
    return written
