"""Check a GGUF file against the HF checkpoint it came from: same tokens, same logits.

Two checks, each with a pass/fail threshold:

1. Tokenizer parity: the HF tokenizer and llama.cpp's tokenizer (vocab-only load of the GGUF) must
   give identical ids on a corpus of English, Chinese, code, emoji, whitespace runs and chat-formatted
   text with <think>, <tool_call> and <|im_start|>. The threshold is 100%.
2. Logit parity: transformers (float32) and llama.cpp run the same token ids. Unquantized files are
   judged by top-1 agreement and NMSE = sum((a-b)^2) / sum(a^2); quantized files by top-1 agreement
   and the mean KL divergence KL(p_hf || p_gguf), since quantization error is expected and what
   matters is how far the next-token distribution moves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Text without decomposed accents: HF normalises to NFC, llama.cpp does not (see FACTS.md).
TOKENIZER_CORPUS: list[str] = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog. It's 3.14159, isn't it? I'll say we've won.",
    "你好，世界！我是通义千问，一个大型语言模型。今天天气很好。",
    "日本語のテキストと한국어 텍스트, and Ελληνικά, русский текст.",
    "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    'for (int i = 0; i < 10; ++i) { printf("%d\\n", i); }',
    "emoji: 🤖🚀✅ 😶\u200d🌫️ 👍🏽 family 👨\u200d👩\u200d👧",
    "   leading spaces, trailing spaces   ",
    "tabs\t\tand\n\n\nnewlines\r\n   \n\t \n",
    "a" * 40 + " " * 17 + "b",
    "12345678901234567890 3.3 3..3 3...3 1e-10 0x1F",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
    "<|im_start|>assistant\n<think>\nLet me add: 2+2=4.\n</think>\n\nThe answer is 4.<|im_end|>\n",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
    '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n',
    "<|endoftext|><|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "Mixed 中文 and English with <think> inline </think> tags.",
]

# Prompts whose token ids both engines run for the logit comparison (chat-formatted, as in use).
LOGIT_PROMPTS: list[str] = [
    "<|im_start|>user\nWhat is 17 * 23? Please reason step by step.<|im_end|>\n"
    "<|im_start|>assistant\n<think>\nOkay, 17 times 23: 17*20 = 340 and 17*3 = 51, so 391.\n"
    "</think>\n\nThe answer is 391.",
    "<|im_start|>user\n写一首关于大海的短诗。<|im_end|>\n<|im_start|>assistant\n<think>\n好的，"
    "大海辽阔而深邃。\n</think>\n\n蓝色的海浪拍打着岸边。",
    "def quicksort(xs):\n    if len(xs) <= 1:\n        return xs\n    pivot = xs[0]\n",
]


@dataclass(frozen=True)
class Thresholds:
    """Pass limits for one GGUF file type."""

    min_top1: float
    max_nmse: float | None = None
    max_kl: float | None = None


# Keyed by GGUF general.file_type name. Unquantized types are judged by NMSE, quantized by KL.
# The limits leave a margin over what the tiny random test model measures (docs/convert.md, "verify").
THRESHOLDS: dict[str, Thresholds] = {
    "ALL_F32": Thresholds(min_top1=0.99, max_nmse=1e-5),
    "MOSTLY_F16": Thresholds(min_top1=0.95, max_nmse=1e-3),
    "MOSTLY_BF16": Thresholds(min_top1=0.95, max_nmse=1e-3),
    "MOSTLY_Q8_0": Thresholds(min_top1=0.90, max_kl=0.02),
    "MOSTLY_Q6_K": Thresholds(min_top1=0.85, max_kl=0.05),
    "MOSTLY_Q5_K_M": Thresholds(min_top1=0.80, max_kl=0.10),
    "MOSTLY_Q5_K_S": Thresholds(min_top1=0.80, max_kl=0.10),
    "MOSTLY_Q5_0": Thresholds(min_top1=0.80, max_kl=0.10),
    "MOSTLY_Q5_1": Thresholds(min_top1=0.80, max_kl=0.10),
}
# About 4 bits per weight (Q4_K_M, Q4_0, IQ4_XS, Q3_K_L, ...), and below that.
FOUR_BIT = Thresholds(min_top1=0.55, max_kl=0.25)
LOW_BIT = Thresholds(min_top1=0.30, max_kl=1.0)
_LOW_BIT_PREFIXES = (
    "MOSTLY_Q1",
    "MOSTLY_Q2",
    "MOSTLY_IQ1",
    "MOSTLY_IQ2",
    "MOSTLY_TQ",
    "MOSTLY_IQ3",
)
_LOW_BIT_NAMES = ("MOSTLY_Q3_K_S", "MOSTLY_Q3_K_M")


def thresholds_for(file_type: str) -> Thresholds:
    if file_type in THRESHOLDS:
        return THRESHOLDS[file_type]
    if file_type.startswith(_LOW_BIT_PREFIXES) or file_type in _LOW_BIT_NAMES:
        return LOW_BIT
    return FOUR_BIT


@dataclass
class Check:
    name: str
    value: float
    limit: float
    passed: bool
    detail: str = ""


@dataclass
class Report:
    file_type: str
    checks: list[Check] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def file_type_name(gguf_path: Path) -> str:
    """GGUF `general.file_type` as its LlamaFileType name (ALL_F32, MOSTLY_Q4_K_M, ...)."""
    import gguf
    from qwq_chat.convert.llama_runtime import open_llama

    meta = open_llama(gguf_path, vocab_only=True).metadata
    value = int(meta.get("general.file_type", -1))
    try:
        return gguf.LlamaFileType(value).name
    except ValueError:
        return f"UNKNOWN_{value}"


def tokenizer_parity(hf_tok, llm, corpus: list[str]) -> tuple[int, list[str]]:
    """Count texts tokenized identically; describe the ones that differ."""
    same, diffs = 0, []
    for text in corpus:
        a = hf_tok(text, add_special_tokens=False).input_ids
        b = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        if a == b:
            same += 1
        else:
            diffs.append(f"{text[:40]!r}: HF {a[:12]}... llama.cpp {b[:12]}...")
    return same, diffs


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def logit_metrics(ref: np.ndarray, got: np.ndarray) -> dict[str, float]:
    """top-1 agreement, NMSE and mean KL(ref || got) over positions (rows)."""
    ref = ref.astype(np.float32)
    got = got.astype(np.float32)
    top1 = float((ref.argmax(-1) == got.argmax(-1)).mean())
    nmse = float(
        np.square(ref - got, dtype=np.float64).sum() / np.square(ref, dtype=np.float64).sum()
    )
    lp, lq = _log_softmax(ref), _log_softmax(got)
    kl = float((np.exp(lp) * (lp - lq)).sum(-1, dtype=np.float64).mean())
    return {"top1": top1, "nmse": nmse, "kl": kl}


def hf_logits(model, ids: list[int]) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def gguf_logits(llm, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def verify(
    checkpoint: Path | str,
    gguf_path: Path | str,
    *,
    corpus: list[str] | None = None,
    prompts: list[str] | None = None,
    threads: int | None = None,
    check_logits: bool = True,
    hf_dtype: str = "float32",
) -> Report:
    """Run both parity checks and return the report (the CLI prints it and sets the exit code)."""
    from qwq_chat.app.gguf_files import split_pieces
    from qwq_chat.convert.errors import ConvertError
    from qwq_chat.convert.hf_to_gguf import load_checkpoint
    from qwq_chat.convert.llama_runtime import open_llama
    from transformers import AutoTokenizer

    checkpoint, gguf_path = Path(checkpoint), Path(gguf_path)
    if hf_dtype not in ("float32", "bfloat16"):
        raise ConvertError(f"--hf-dtype must be float32 or bfloat16, not {hf_dtype!r}")
    load_checkpoint(checkpoint)  # same input checks (and messages) as `qwq_chat.convert`
    if not gguf_path.is_file():
        raise ConvertError(f"{gguf_path} does not exist: give the GGUF file to verify")
    split_pieces(gguf_path)  # a split model: every piece present (llama.cpp loads them all)
    corpus = TOKENIZER_CORPUS if corpus is None else corpus
    prompts = LOGIT_PROMPTS if prompts is None else prompts
    report = Report(file_type_name(gguf_path))
    limits = thresholds_for(report.file_type)

    hf_tok = AutoTokenizer.from_pretrained(checkpoint)
    vocab = open_llama(gguf_path, vocab_only=True)
    same, diffs = tokenizer_parity(hf_tok, vocab, corpus)
    del vocab
    report.mismatches = diffs
    report.checks.append(
        Check(
            "tokenizer parity",
            same / len(corpus),
            1.0,
            same == len(corpus),
            f"{same}/{len(corpus)} texts",
        )
    )
    if not check_logits:
        return report

    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, hf_dtype))
    model.eval()
    id_lists = [hf_tok(p, add_special_tokens=False).input_ids for p in prompts]
    n_ctx = max(len(x) for x in id_lists) + 16
    llm = open_llama(gguf_path, n_ctx=n_ctx, n_batch=n_ctx, logits_all=True, n_threads=threads)
    refs, gots = [], []
    for ids in id_lists:
        refs.append(hf_logits(model, ids))
        gots.append(gguf_logits(llm, ids))
    m = logit_metrics(np.concatenate(refs), np.concatenate(gots))
    positions = sum(len(x) for x in id_lists)
    report.checks.append(
        Check(
            "top-1 agreement",
            m["top1"],
            limits.min_top1,
            m["top1"] >= limits.min_top1,
            f"{positions} positions",
        )
    )
    if limits.max_nmse is not None:
        report.checks.append(
            Check("logit NMSE", m["nmse"], limits.max_nmse, m["nmse"] <= limits.max_nmse)
        )
    if limits.max_kl is not None:
        report.checks.append(
            Check("mean KL (nats)", m["kl"], limits.max_kl, m["kl"] <= limits.max_kl)
        )
    return report


def print_report(report: Report, gguf_path: Path) -> None:
    """A rich table: one row per check, value against its limit, PASS/FAIL."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"parity of {gguf_path.name} ({report.file_type})")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("result")
    table.add_column("detail")
    for c in report.checks:
        cmp = "≥" if c.name in ("tokenizer parity", "top-1 agreement") else "≤"
        value = f"{c.value:.2%}" if cmp == "≥" else f"{c.value:.3g}"
        limit = f"{cmp} {c.limit:.0%}" if cmp == "≥" else f"{cmp} {c.limit:.3g}"
        result = "[green]PASS[/]" if c.passed else "[bold red]FAIL[/]"
        table.add_row(c.name, value, limit, result, c.detail)
    console = Console()
    console.print(table)
    for line in report.mismatches:
        console.print(f"[yellow]tokenizer mismatch[/] {line}", markup=True, highlight=False)
