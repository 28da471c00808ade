"""A tiny, randomly initialised checkpoint in QwQ-32B's exact format, built offline for tests.

Same architecture switches as QwQ-32B (q/k/v biases, untied lm_head, rms eps 1e-5, rope theta 1e6,
GQA, vocab 152064), same file layout (bf16 safetensors in several shards with an index,
config.json, generation_config.json) and QwQ's real tokenizer, but a few layers of width 64.

The weights are scaled up from transformers' default init so that logits spread over several units:
with the default (std 0.02) every logit is ~0 and the top-1 token is decided by rounding noise,
which would make parity tests meaningless. The q/k/v biases are random too, so a converter that
dropped them would produce visibly different logits.
"""

from __future__ import annotations

import json
from pathlib import Path

# Bump when the files this writes change: tests/conftest.py caches the build under this key.
BUILD_VERSION = "1"

QWQ_VOCAB_SIZE = 152064
QWQ_GENERATION_CONFIG = {
    "bos_token_id": 151643,
    "do_sample": True,
    "eos_token_id": [151645, 151643],
    "pad_token_id": 151643,
    "repetition_penalty": 1.0,
    "temperature": 0.6,
    "top_k": 40,
    "top_p": 0.95,
}


def build_tiny_checkpoint(
    out_dir: Path,
    *,
    num_layers: int = 2,
    hidden_size: int = 64,
    intermediate_size: int | None = None,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 2,
    max_shard_size: str = "20MB",
    rope_scaling: dict | None = None,
    seed: int = 0,
) -> Path:
    """Write a QwQ-shaped Qwen2ForCausalLM checkpoint (random weights) into `out_dir`; return it."""
    import torch
    from qwq_chat.convert.qwen_tokenizer import write_tokenizer_files
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = Qwen2Config(
        vocab_size=QWQ_VOCAB_SIZE,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 3 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        hidden_act="silu",
        max_position_embeddings=40960,
        initializer_range=0.02,
        rms_norm_eps=1e-5,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
        use_sliding_window=False,
        sliding_window=32768,
        max_window_layers=num_layers,
        attention_dropout=0.0,
        bos_token_id=151643,
        eos_token_id=151645,
        torch_dtype="bfloat16",
    )
    if rope_scaling is not None:
        _set_rope_scaling(config, rope_scaling)
    config.architectures = ["Qwen2ForCausalLM"]
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    _spread_weights(model, hidden_size, seed)
    model = model.to(torch.bfloat16)
    model.save_pretrained(out_dir, max_shard_size=max_shard_size)
    (out_dir / "generation_config.json").write_text(
        json.dumps(QWQ_GENERATION_CONFIG, indent=2) + "\n", encoding="utf-8"
    )
    write_tokenizer_files(out_dir)
    return out_dir


def _set_rope_scaling(config, rope_scaling: dict) -> None:
    """Put a YaRN-style `rope_scaling` into the config the way QwQ's model card tells users to."""
    params = dict(getattr(config, "rope_parameters", None) or {})
    params.update(rope_scaling)
    params.setdefault("rope_type", params.get("type", "default"))
    params.setdefault("rope_theta", 1_000_000.0)
    config.rope_parameters = params


def _spread_weights(model, hidden_size: int, seed: int) -> None:
    """Re-draw weights so activations and logits are O(1), not ~0 (see module docstring)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                # Around 1 but not exactly, so a converter that swapped norms would be caught.
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=gen))
            elif name.endswith(".bias"):
                param.copy_(0.5 * torch.randn(param.shape, generator=gen))
            elif name == "model.embed_tokens.weight":
                param.copy_(torch.randn(param.shape, generator=gen))
            elif name == "lm_head.weight":
                param.copy_((3.0 / hidden_size**0.5) * torch.randn(param.shape, generator=gen))
            else:
                fan_in = param.shape[-1]
                param.copy_((1.0 / fan_in**0.5) * torch.randn(param.shape, generator=gen))
