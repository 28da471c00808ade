"""`verify`: tokenizer parity (HF vs llama.cpp) and logit parity per file type, on real files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import qwq_chat.convert.hf_to_gguf as hf_to_gguf
import tiny256
from qwq_chat.convert.verify import TOKENIZER_CORPUS, thresholds_for, verify

# Session fixtures shared with the other convert tests (tests/convert/tiny256.py).
tiny256_checkpoint = tiny256.tiny256_checkpoint
tiny256_bf16 = tiny256.tiny256_bf16
tiny256_q4_k_m = tiny256.tiny256_q4_k_m


def test_corpus_covers_the_hard_cases() -> None:
    text = "".join(TOKENIZER_CORPUS)
    for needle in (
        "<think>",
        "</think>",
        "<tool_call>",
        "<|im_start|>",
        "你好",
        "🚀",
        "\t\t",
        "   ",
    ):
        assert needle in text
    assert "def " in text  # code


def test_tokenizer_parity_is_total(tiny_checkpoint: Path, tiny_gguf: Path) -> None:
    report = verify(tiny_checkpoint, tiny_gguf, check_logits=False)
    (check,) = report.checks
    assert check.name == "tokenizer parity"
    assert check.value == 1.0 and check.passed, report.mismatches
    assert report.mismatches == []


@pytest.mark.parametrize(
    ("outtype", "file_type"),
    [("f32", "ALL_F32"), ("bf16", "MOSTLY_BF16"), ("q8_0", "MOSTLY_Q8_0")],
)
def test_logit_parity(
    tiny_checkpoint: Path, tiny_gguf_factory: Callable[[str], Path], outtype: str, file_type: str
) -> None:
    report = verify(tiny_checkpoint, tiny_gguf_factory(outtype))
    assert report.file_type == file_type
    by_name = {c.name: c for c in report.checks}
    assert by_name["tokenizer parity"].passed
    assert by_name["top-1 agreement"].value >= thresholds_for(file_type).min_top1
    if outtype == "q8_0":
        assert "mean KL (nats)" in by_name and "logit NMSE" not in by_name
    else:
        assert "logit NMSE" in by_name
    assert report.passed, report.checks


def test_logit_parity_q4_k_m(tiny256_checkpoint: Path, tiny256_q4_k_m: Path) -> None:
    report = verify(tiny256_checkpoint, tiny256_q4_k_m)
    assert report.file_type == "MOSTLY_Q4_K_M"
    kl = next(c for c in report.checks if c.name == "mean KL (nats)")
    assert 0 < kl.value <= thresholds_for("MOSTLY_Q4_K_M").max_kl  # changed, but within bound
    assert report.passed, report.checks


def test_verify_fails_when_biases_are_dropped(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A converter that forgets the q/k/v biases writes a file that loads: verify must catch it."""
    real_plan = hf_to_gguf.plan_tensors

    def plan_without_biases(ckpt, outtype):
        return [p for p in real_plan(ckpt, outtype) if not p.name.endswith(".bias")]

    monkeypatch.setattr(hf_to_gguf, "plan_tensors", plan_without_biases)
    broken = hf_to_gguf.convert_checkpoint(tiny_checkpoint, tmp_path / "nobias.gguf", "f32")
    monkeypatch.undo()
    proc = subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", "verify", str(tiny_checkpoint), str(broken)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL" in proc.stdout
    assert "tokenizer parity" in proc.stdout and "logit NMSE" in proc.stdout
    assert "parity check failed" in proc.stderr
