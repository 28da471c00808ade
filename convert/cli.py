"""`qwq-chat convert | quantize | verify | convert-lora`: thin typer wrappers over convert/.

Nothing heavy is imported here at module level (see app/cli.py): each command imports its module
when it runs.
"""

from __future__ import annotations

from pathlib import Path

import typer


def convert(
    checkpoint: Path = typer.Argument(
        ..., help="Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer)."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="GGUF file to write."),
    outtype: str = typer.Option(
        "auto", "--outtype", help="auto | bf16 | f16 | f32 | q8_0 (auto keeps bf16/f16)."
    ),
) -> None:
    """Convert a Qwen2-family checkpoint (QwQ-32B, Qwen2.5, R1-Distill-Qwen) to GGUF."""
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint

    path = convert_checkpoint(checkpoint, out, outtype=outtype, progress=True)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def quantize(
    src: Path = typer.Argument(
        ..., help="GGUF file to quantize (usually the bf16 output of `qwq_chat.convert`)."
    ),
    dst: Path = typer.Argument(..., help="GGUF file to write."),
    qtype: str = typer.Option(
        "Q4_K_M",
        "--type",
        "-t",
        help="Q4_K_M, Q5_K_M, Q6_K, Q8_0, IQ4_XS, ... (any llama.cpp type).",
    ),
    threads: int = typer.Option(0, "--threads", help="Threads (0: all cores)."),
    imatrix: Path | None = typer.Option(
        None,
        "--imatrix",
        help="Importance matrix from llama.cpp's llama-imatrix (GGUF format); improves low-bit types.",
    ),
) -> None:
    """Quantize a GGUF file with llama.cpp's quantizer."""
    from qwq_chat.convert.quantize import quantize_gguf

    path = quantize_gguf(src, dst, qtype, threads=threads or None, imatrix=imatrix, progress=True)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")


def verify(
    checkpoint: Path = typer.Argument(..., help="The Hugging Face checkpoint the GGUF came from."),
    model: Path = typer.Argument(..., help="The GGUF file to check."),
    threads: int = typer.Option(0, "--threads", help="llama.cpp threads (0: default)."),
    hf_dtype: str = typer.Option(
        "float32",
        "--hf-dtype",
        help="float32 (exact reference, 4 bytes/param of RAM) or bfloat16 (half the RAM, looser).",
    ),
    tokenizer_only: bool = typer.Option(
        False, "--tokenizer-only", help="Skip the logit comparison (no torch model load)."
    ),
) -> None:
    """Tokenizer and logit parity between the checkpoint (transformers) and the GGUF (llama.cpp)."""
    from qwq_chat.convert.errors import VerificationFailed
    from qwq_chat.convert.verify import print_report
    from qwq_chat.convert.verify import verify as run_verify

    report = run_verify(
        checkpoint,
        model,
        threads=threads or None,
        check_logits=not tokenizer_only,
        hf_dtype=hf_dtype,
    )
    print_report(report, model)
    if not report.passed:
        failed = ", ".join(c.name for c in report.checks if not c.passed)
        raise VerificationFailed(f"parity check failed: {failed}")


def convert_lora(
    adapter: Path = typer.Argument(
        ..., help="PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors)."
    ),
    base: Path = typer.Option(
        ..., "--base", help="The base model's HF checkpoint folder (for its config)."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="GGUF LoRA adapter file to write."),
) -> None:
    """Convert a PEFT LoRA adapter to a GGUF adapter for llama.cpp (`lora_path`)."""
    from qwq_chat.convert.lora import convert_lora as run

    path = run(adapter, base, out)
    typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.2f} MiB)")


def register(cli: typer.Typer) -> None:
    """Add the conversion commands to the `qwq-chat` app."""
    cli.command("convert")(convert)
    cli.command("quantize")(quantize)
    cli.command("verify")(verify)
    cli.command("convert-lora")(convert_lora)
