"""Loading the policy: base weights, then LoRA / QLoRA / full fine-tuning, on CPU or CUDA.

LoRA keeps ONE adapter for the whole run (cold start, stage 1 and stage 2 continue training it), so
the last adapter is always relative to the original base: `rl export --lora-gguf` can then ship it
as a GGUF adapter for the quantized base, and merging needs only the base and that adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwq_chat.app.errors import UserError
from qwq_chat.rl_finetune.config import RLConfig

ADAPTER_FILE = "adapter_config.json"


class NoCudaError(UserError):
    """A GPU-only option was asked for on a machine without CUDA."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_device(cfg: RLConfig) -> str:
    if cfg.model.device == "cuda" and not cuda_available():
        raise NoCudaError(
            "model.device = 'cuda' but no CUDA GPU is visible; set device = 'auto' or 'cpu'"
        )
    if cfg.model.device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return cfg.model.device


def check_gpu_options(cfg: RLConfig) -> None:
    """Fail early, with what to do, when a CUDA-only option is set on a CPU machine."""
    gpu = cuda_available()
    if cfg.model.finetune == "qlora":
        if not gpu:
            raise NoCudaError(
                "model.finetune = 'qlora' needs a CUDA GPU (bitsandbytes 4-bit kernels); "
                "use finetune = 'lora' on this machine"
            )
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise UserError(
                "model.finetune = 'qlora' needs bitsandbytes: pip install 'qwq-chat[train-cuda]'"
            ) from None
    for name in ("stage1", "stage2"):
        stage = getattr(cfg, name)
        if stage.enabled and stage.use_vllm:
            if not gpu:
                raise NoCudaError(
                    f"{name}.use_vllm = true needs a CUDA GPU; set it to false to generate "
                    "rollouts with transformers"
                )
            try:
                import vllm  # noqa: F401
            except ImportError:
                raise UserError(
                    f"{name}.use_vllm = true needs vLLM: pip install 'qwq-chat[train-cuda]'"
                ) from None


def torch_dtype(cfg: RLConfig, device: str) -> Any:
    import torch

    if cfg.model.dtype == "auto":
        return torch.bfloat16 if device == "cuda" else torch.float32
    return getattr(torch, cfg.model.dtype)


def is_adapter_dir(path: Path) -> bool:
    return (Path(path) / ADAPTER_FILE).is_file()


def load_tokenizer(source: str | Path) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(source))
    if tok.pad_token is None:
        tok.pad_token = "<|endoftext|>"
    return tok


def load_policy(cfg: RLConfig, start: str | Path | None) -> Any:
    """The trainable model: `start` is None (the config's base) or a previous stage's output
    (an adapter directory for LoRA runs, a full checkpoint for full fine-tuning)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = resolve_device(cfg)
    dtype = torch_dtype(cfg, device)
    kwargs: dict[str, Any] = {"dtype": dtype}
    if cfg.model.attn_implementation:
        kwargs["attn_implementation"] = cfg.model.attn_implementation
    if cfg.model.finetune == "qlora":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
    adapter = Path(start) if start is not None and is_adapter_dir(Path(start)) else None
    weights = cfg.model.base if start is None or adapter is not None else str(start)
    model = AutoModelForCausalLM.from_pretrained(_resolve_base(cfg, weights), **kwargs)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if cfg.model.finetune == "full":
        if cfg.model.freeze_embeddings:
            model.get_input_embeddings().weight.requires_grad_(False)
        return model
    from peft import LoraConfig, PeftModel, get_peft_model, prepare_model_for_kbit_training

    if cfg.model.finetune == "qlora":
        model = prepare_model_for_kbit_training(model)
    if adapter is not None:
        return PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def _resolve_base(cfg: RLConfig, name: str) -> str:
    """A local path relative to the config file, or an HF id as given."""
    local = cfg.resolve(name)
    return str(local) if local.exists() else name


def save_policy(model: Any, tokenizer: Any, out: Path) -> None:
    """Write the stage's final weights (adapter or full) plus the tokenizer, atomically."""
    import shutil

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def load_for_inference(path: str | Path, base: str | None = None, dtype: Any = None) -> Any:
    """A ready-to-generate model from a full checkpoint or an adapter dir (merged onto its base)."""
    import json

    import torch
    from transformers import AutoModelForCausalLM

    path = Path(path)
    dtype = dtype or torch.float32
    if is_adapter_dir(path):
        from peft import PeftModel

        base = base or json.loads((path / ADAPTER_FILE).read_text())["base_model_name_or_path"]
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        model = PeftModel.from_pretrained(model, str(path)).merge_and_unload()
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    model.eval()
    return model
