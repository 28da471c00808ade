"""A tiny randomly initialised reward model for the RL tests (imported as `tiny_reward_model`)."""

from __future__ import annotations

from typing import Any


def build_tiny_reward_model(out_dir: Any, tokenizer_dir: Any, seed: int = 0) -> Any:
    """A randomly initialised Qwen2ForSequenceClassification with QwQ's tokenizer files."""
    import shutil
    from pathlib import Path

    import torch
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=152064,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=1,
        pad_token_id=151643,
        tie_word_embeddings=False,
    )
    Qwen2ForSequenceClassification(config).save_pretrained(str(out_dir))
    for f in Path(tokenizer_dir).iterdir():
        if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
            shutil.copy(f, out_dir / f.name)
    return out_dir
