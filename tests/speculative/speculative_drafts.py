"""A draft model for the speculative-decoding tests, built offline like the tiny QwQ model.

A second tiny checkpoint (another seed) whose embedding and output tables have 151,936 rows
instead of 152,064 (Qwen2.5-0.5B's size next to QwQ's): the same tokenizer, different padding,
and it disagrees with the target almost everywhere (the reject path). The agreeing draft is the
target quantized to Q8_0 (tests/conftest.py's tiny_gguf_factory).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import cached_build

PADDED_VOCAB = 151936


def padded_draft_gguf() -> Path:
    """Another seed, embedding and output tables cut to 151,936 rows, as a bf16 GGUF."""
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint
    from qwq_chat.convert.tiny_model import BUILD_VERSION, build_tiny_checkpoint

    def build(tmp: Path) -> None:
        from transformers import AutoModelForCausalLM

        source = build_tiny_checkpoint(tmp / "seed1", seed=1)
        model = AutoModelForCausalLM.from_pretrained(source)
        model.resize_token_embeddings(PADDED_VOCAB)
        padded = tmp / "padded"
        model.save_pretrained(padded)
        for name in source.iterdir():
            if name.name.startswith(("tokenizer", "vocab", "merges", "generation_config")):
                shutil.copy(name, padded / name.name)
        convert_checkpoint(padded, tmp / "model.gguf", outtype="bf16")
        shutil.rmtree(source)
        shutil.rmtree(padded)

    return cached_build(f"tiny-qwq-{BUILD_VERSION}-padded-draft-1", build) / "model.gguf"
