"""Run llama.cpp's own tools (built by llama_sources.llama_tools) on the same inputs as ours."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

# This CPU family advertises AMX, where llama.cpp's weight repacking crashes; the tools'
# --no-repack keeps them on the plain CPU path (as qwq-chat's load_llama does for the library).
COMMON = ("--no-repack", "-t", "2")


def rendered_text(model: Path, asset: str, out: Path) -> Path:
    """A shipped corpus rendered for `model` exactly as qwq-chat feeds it, as a .txt file."""
    from qwq_chat.convert.calibration import load_corpus, render_corpus
    from qwq_chat.convert.llama_runtime import ChunkModel

    with ChunkModel(model, n_ctx=16) as m:
        text = render_corpus(
            load_corpus(None, asset), m.meta("tokenizer.chat_template"), m.eos_text
        )
    out.write_text(text, encoding="utf-8")
    return out


def plain_text(asset: str, out: Path) -> Path:
    """The corpus without chat markup (llama-perplexity does not parse special tokens)."""
    from qwq_chat.convert.calibration import shipped

    parts = []
    for line in shipped(asset).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if "text" in row:
            parts.append(row["text"])
        else:
            parts += [m["content"] for m in row["messages"] if m["role"] in ("user", "assistant")]
    out.write_text("\n\n".join(parts), encoding="utf-8")
    return out


def llama_imatrix(tools: Path, model: Path, text: Path, out: Path, n_ctx: int, chunks: int | None):
    args = [str(tools / "llama-imatrix"), "-m", str(model), "-f", str(text), "-o", str(out),
            "-c", str(n_ctx), "-b", str(n_ctx), "--no-ppl", "--parse-special", *COMMON]  # fmt: skip
    if chunks:
        args += ["--chunks", str(chunks)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def llama_kld(
    tools: Path, reference: Path, quant: Path, text: Path, work: Path, n_ctx: int, chunks: int
) -> dict:
    """llama-perplexity --kl-divergence's summary numbers for `quant` against `reference`."""
    base = work / f"{reference.stem}-{n_ctx}.kld"
    if not base.exists():
        proc = subprocess.run(
            [str(tools / "llama-perplexity"), "-m", str(reference), "-f", str(text), "-c",
             str(n_ctx), "-b", str(n_ctx), "--chunks", str(chunks), "--kl-divergence-base",
             str(base), *COMMON],
            capture_output=True, text=True, timeout=3600,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run(
        [str(tools / "llama-perplexity"), "-m", str(quant), "-c", str(n_ctx), "-b", str(n_ctx),
         "--kl-divergence-base", str(base), "--kl-divergence", *COMMON],
        capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = {}
    for line in (proc.stdout + proc.stderr).splitlines():
        for key, label in (("mean_kld", "Mean    KLD:"), ("p99", "99.0%   KLD:"),
                           ("p999", "99.9%   KLD:"), ("ppl", "Mean PPL(Q)  "),
                           ("ppl_ref", "Mean PPL(base)"), ("top1", "Same top p:")):  # fmt: skip
            if line.startswith(label):
                value = line.split(":", 1)[1].split()[0]
                out[key] = float(value) / (100 if key == "top1" else 1)
    return out
