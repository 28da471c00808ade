"""PEFT LoRA adapter -> GGUF LoRA adapter that llama.cpp applies at load time (`lora_path`).

With the adapter as its own small GGUF, a fine-tune of QwQ-32B runs on top of the already-quantized
base file: no merge, no re-quantization of 32B weights.

GGUF LoRA layout (what llama.cpp's loader reads): `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, and for each adapted weight `W` (GGUF name, e.g. `blk.0.attn_q.weight`) two
tensors `W.lora_a` (PEFT's lora_A, r x in) and `W.lora_b` (lora_B, out x r). llama.cpp scales the
product by alpha / r with r read from each tensor. PEFT's own scale can differ per module
(rank_pattern, alpha_pattern) or use sqrt(r) (rsLoRA); we fold any difference into lora_b, so the
adapter computes exactly what PEFT computes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from qwq_chat.convert.errors import CheckpointError, ConvertError, UnsupportedModelError
from qwq_chat.convert.safetensors_io import read_header, read_rows

PEFT_PREFIX = "base_model.model."


def _read_f32(entry) -> np.ndarray:
    """A whole (small) adapter tensor as float32."""
    buf = bytearray(max(entry.nbytes, 1))
    (rows,) = list(read_rows(entry, buf, max_rows=1 << 30))
    if entry.dtype == "BF16":
        return (rows.astype(np.uint32) << 16).view(np.float32).reshape(entry.shape).copy()
    return rows.astype(np.float32).reshape(entry.shape)


def _load_adapter_config(adapter_dir: Path) -> dict:
    cfg_path = adapter_dir / "adapter_config.json"
    if not cfg_path.is_file():
        raise CheckpointError(
            f"{adapter_dir} has no adapter_config.json: pass the folder PEFT's save_pretrained wrote"
        )
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("peft_type", "LORA") != "LORA":
        raise UnsupportedModelError(
            f"{adapter_dir} is a {cfg['peft_type']} adapter; only LoRA converts"
        )
    if cfg.get("use_dora"):
        raise UnsupportedModelError(
            "DoRA adapters have no llama.cpp form: merge the adapter instead"
        )
    if cfg.get("fan_in_fan_out"):
        raise UnsupportedModelError(
            "fan_in_fan_out adapters (Conv1D models) are not Qwen2 adapters"
        )
    return cfg


def _module_scale(cfg: dict, module: str, rank: int) -> float:
    """The factor PEFT multiplies B @ A by for `module` (alpha / r, or alpha / sqrt(r))."""
    alpha = float(cfg.get("lora_alpha", 8))
    for pattern, value in (cfg.get("alpha_pattern") or {}).items():
        if module.endswith(pattern) or pattern in module:
            alpha = float(value)
    return alpha / math.sqrt(rank) if cfg.get("use_rslora") else alpha / rank


def convert_lora(adapter_dir: Path | str, base_dir: Path | str, out_path: Path | str) -> Path:
    """Write a GGUF LoRA adapter for the Qwen2 base model in `base_dir`; returns `out_path`."""
    import gguf
    from qwq_chat.convert.hf_to_gguf import (
        SUPPORTED_ARCHITECTURES,
        SUPPORTED_MODELS,
        _check_output_path,
        atomic_output,
    )

    adapter_dir, base_dir, out_path = Path(adapter_dir), Path(base_dir), Path(out_path)
    _check_output_path(out_path)
    if not adapter_dir.is_dir():
        raise CheckpointError(f"{adapter_dir} is not a directory: pass the PEFT adapter folder")
    cfg = _load_adapter_config(adapter_dir)
    base_cfg_path = base_dir / "config.json"
    if not base_cfg_path.is_file():
        raise CheckpointError(f"{base_dir} has no config.json: --base must be the base checkpoint")
    base_cfg = json.loads(base_cfg_path.read_text(encoding="utf-8"))
    if not any(a in SUPPORTED_ARCHITECTURES for a in base_cfg.get("architectures") or []):
        raise UnsupportedModelError(f"the base model is not {SUPPORTED_MODELS}")
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise CheckpointError(
            f"{adapter_dir} has no adapter_model.safetensors (PEFT's weights file)"
        )

    entries = {e.name: e for e in read_header(weights)}
    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, int(base_cfg["num_hidden_layers"]))
    pairs: dict[str, dict[str, object]] = {}
    for name, entry in entries.items():
        short = name.removeprefix(PEFT_PREFIX)
        for part in ("lora_A", "lora_B"):
            marker = f".{part}.weight"
            if short.endswith(marker) or f".{part}." in short:
                module = short.split(f".{part}.")[0]
                pairs.setdefault(module, {})[part] = entry
                break
        else:
            raise UnsupportedModelError(
                f"adapter tensor {name} is not a LoRA A/B matrix (embedding or full-weight parts "
                "cannot be applied as a llama.cpp LoRA): merge the adapter into the model instead"
            )
    if not pairs:
        raise CheckpointError(f"{weights} holds no LoRA tensors")

    alpha_out = float(cfg.get("lora_alpha", 8))
    tensors: list[tuple[str, np.ndarray]] = []
    for module, parts in sorted(pairs.items()):
        if set(parts) != {"lora_A", "lora_B"}:
            raise CheckpointError(f"{weights}: {module} has only {', '.join(parts)}")
        gguf_name = name_map.get_name(module + ".weight", try_suffixes=(".weight",))
        if gguf_name is None:
            raise UnsupportedModelError(f"adapter targets {module}, which has no qwen2 GGUF tensor")
        a = _read_f32(parts["lora_A"])
        b = _read_f32(parts["lora_B"])
        rank = a.shape[0]
        # llama.cpp applies alpha_out / rank; PEFT applies _module_scale. Fold the ratio into B.
        b = b * (_module_scale(cfg, module, rank) * rank / alpha_out)
        tensors += [(gguf_name + ".lora_a", a), (gguf_name + ".lora_b", b.astype(np.float32))]

    with atomic_output(out_path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
        try:
            writer.add_type(gguf.GGUFType.ADAPTER)
            writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
            writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha_out)
            writer.add_name(adapter_dir.name)
            for name, data in tensors:
                writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
    return out_path


__all__ = ["ConvertError", "convert_lora"]
