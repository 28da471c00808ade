"""Our converter against llama.cpp's own convert_hf_to_gguf.py on the same checkpoint.

Both run on the tiny QwQ-shaped checkpoint, given QwQ-32B's folder name and a model card like its
Hub page (so the name/size/license/base-model heuristics have something to work on). The GGUF
files must hold the same keys with the same types and values, and the same tensors, byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import cached_build
from llama_sources import run_llama_converter, sdist_version
from qwq_chat.convert.hf_to_gguf import convert_checkpoint
from qwq_chat.convert.tiny_model import BUILD_VERSION

MODEL_CARD = """---
license: apache-2.0
license_link: https://huggingface.co/Qwen/QWQ-32B/blob/main/LICENSE
language:
- en
pipeline_tag: text-generation
base_model: Qwen/Qwen2.5-32B
tags:
- chat
library_name: transformers
---

# QwQ-32B (tiny test copy)
"""


def _qwq_named_copy(tiny_checkpoint: Path, parent: Path) -> Path:
    """The tiny checkpoint's files (linked) in a folder called QwQ-32B, plus a model card."""
    ckpt = parent / "QwQ-32B"
    ckpt.mkdir(parents=True)
    for item in tiny_checkpoint.iterdir():
        (ckpt / item.name).symlink_to(item)
    (ckpt / "README.md").write_text(MODEL_CARD, encoding="utf-8")
    return ckpt


@pytest.fixture(scope="module")
def both_files(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """(llama.cpp's GGUF, ours) for the same checkpoint, read with gguf-py."""
    import gguf

    def build_reference(tmp: Path) -> None:
        ckpt = _qwq_named_copy(tiny_checkpoint, tmp / "src")
        run_llama_converter(ckpt, tmp / "model.gguf", "bf16")

    ref_dir = cached_build(
        f"llama-converted-{sdist_version()}-tiny-qwq-{BUILD_VERSION}", build_reference
    )
    ckpt = _qwq_named_copy(tiny_checkpoint, tmp_path_factory.mktemp("ours"))
    ours = convert_checkpoint(ckpt, ckpt.parent / "ours.gguf", outtype="bf16")
    return gguf.GGUFReader(ref_dir / "model.gguf"), gguf.GGUFReader(ours)


def _fields(reader) -> dict[str, object]:
    return {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}


def test_same_metadata_keys_types_and_values(both_files) -> None:
    ref, ours = both_files
    ref_f, our_f = _fields(ref), _fields(ours)
    assert set(our_f) == set(ref_f), {
        "only llama.cpp": sorted(set(ref_f) - set(our_f)),
        "only ours": sorted(set(our_f) - set(ref_f)),
    }
    # The keys this parity was first missing, and the model-card ones, are really there.
    for key in (
        "general.sampling.penalty_repeat",
        "tokenizer.ggml.add_eos_token",
        "general.size_label",
        "general.license",
        "general.base_model.0.repo_url",
    ):
        assert key in our_f, key
    for key, field in ref_f.items():
        mine = our_f[key]
        assert [t.name for t in mine.types] == [t.name for t in field.types], key
        assert mine.contents() == field.contents(), key


def test_same_tensors_byte_for_byte(both_files) -> None:
    ref, ours = both_files
    ref_t = {t.name: t for t in ref.tensors}
    our_t = {t.name: t for t in ours.tensors}
    assert set(our_t) == set(ref_t)
    for name, t in ref_t.items():
        mine = our_t[name]
        assert mine.tensor_type == t.tensor_type, name
        assert list(mine.shape) == list(t.shape), name
        assert np.asarray(mine.data).tobytes() == np.asarray(t.data).tobytes(), name
