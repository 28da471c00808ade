"""Session fixtures shared by the convert tests: a width-256 tiny model and its Q4_K_M GGUF."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import qwq_chat.convert.hf_to_gguf as hf_to_gguf
from conftest import cached_build
from qwq_chat.convert.tiny_model import BUILD_VERSION, build_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny256_checkpoint() -> Path:
    """Width 256, so K-quant blocks (256 wide) apply and Q4_K_M really is Q4_K/Q6_K, no fallback."""

    def build(tmp: Path) -> None:
        build_tiny_checkpoint(tmp, hidden_size=256, max_shard_size="60MB", seed=1)

    return cached_build(f"tiny-qwq-{BUILD_VERSION}-w256", build)


@pytest.fixture(scope="session")
def tiny256_bf16(tiny256_checkpoint: Path) -> Path:
    def build(tmp: Path) -> None:
        hf_to_gguf.convert_checkpoint(tiny256_checkpoint, tmp / "model.gguf", outtype="bf16")

    return cached_build(f"tiny-qwq-{BUILD_VERSION}-w256-bf16", build) / "model.gguf"


@pytest.fixture(scope="session")
def tiny256_q4_k_m(tiny256_bf16: Path) -> Path:
    from qwq_chat.convert.quantize import quantize_gguf

    def build(tmp: Path) -> None:
        quantize_gguf(tiny256_bf16, tmp / "model.gguf", "Q4_K_M", log_file=tmp / "q.log")

    return cached_build(f"tiny-qwq-{BUILD_VERSION}-w256-q4_k_m", build) / "model.gguf"


@pytest.fixture(scope="session")
def tiny256_quant(tiny256_bf16: Path):
    """tiny256_quant("Q8_0" | "Q2_K" | ...): the width-256 model quantized, no imatrix (cached)."""
    from qwq_chat.convert.quantize import QuantizeOptions, quantize_gguf

    def make(qtype: str) -> Path:
        def build(tmp: Path) -> None:
            quantize_gguf(
                tiny256_bf16,
                tmp / "model.gguf",
                qtype,
                options=QuantizeOptions(auto_imatrix=False),
                log_file=tmp / "q.log",
            )

        return cached_build(f"tiny-qwq-{BUILD_VERSION}-w256-{qtype.lower()}", build) / "model.gguf"

    return make


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """`qwq-chat ARGS` in a child process, with a wide terminal (rich wraps at its width)."""
    env = {**os.environ, "COLUMNS": "1000"}
    return subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
