"""`qwq-chat convert | quantize | verify | convert-lora`: thin typer wrappers over convert/.

Nothing heavy is imported here at module level (see app/cli.py): each command imports its module
when it runs.
"""

from __future__ import annotations

from pathlib import Path

import typer


def _status(message: str) -> None:
    typer.echo(message, err=True)


def _report_written(path: Path) -> None:
    from qwq_chat.app.gguf_files import split_pieces

    files = split_pieces(path)
    if len(files) == 1:
        typer.echo(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB)")
        return
    total = sum(f.stat().st_size for f in files)
    typer.echo(f"wrote {len(files)} pieces ({total / 2**20:.1f} MiB); load the first: {path}")
    for f in files:
        typer.echo(f"  {f.name} ({f.stat().st_size / 2**20:.1f} MiB)")


_SPLIT_HELP = (
    "Write pieces of at most this much tensor data (45G, 500M, 2GiB): NAME-00001-of-0000N.gguf, "
    "which llama.cpp loads as one model from the first piece (the Hub refuses files over 50 GB)."
)


def convert(
    checkpoint: Path = typer.Argument(
        ..., help="Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer)."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="GGUF file to write."),
    outtype: str = typer.Option(
        "auto", "--outtype", help="auto | bf16 | f16 | f32 | q8_0 (auto keeps bf16/f16)."
    ),
    split_max_size: str | None = typer.Option(None, "--split-max-size", help=_SPLIT_HELP),
) -> None:
    """Convert a Qwen2-family checkpoint (QwQ-32B, Qwen2.5, R1-Distill-Qwen) to GGUF."""
    from qwq_chat.convert.gguf_split import parse_size
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint

    max_bytes = parse_size(split_max_size) if split_max_size else None
    path = convert_checkpoint(
        checkpoint, out, outtype=outtype, progress=True, split_max_size=max_bytes
    )
    _report_written(path)


def imatrix(
    model: Path = typer.Argument(
        ..., help="GGUF model (bf16/f16 ideally; the first piece of a split model)."
    ),
    out: Path = typer.Option(..., "-o", "--out", help="Importance-matrix file to write (.gguf)."),
    text: Path | None = typer.Option(
        None,
        "--text",
        help='Calibration text: .txt, or .jsonl of {"text"} / {"messages"} lines. '
        "Default: the shipped set (<think> traces, code, math, multilingual chat).",
    ),
    n_ctx: int = typer.Option(512, "--n-ctx", help="Tokens per chunk (llama-imatrix's -c)."),
    chunks: int | None = typer.Option(None, "--chunks", help="Use at most this many chunks."),
    threads: int = typer.Option(0, "--threads", help="Threads (0: all cores)."),
    n_gpu_layers: int | None = typer.Option(
        None, "--n-gpu-layers", help="Layers on the GPU (default: all when llama.cpp can offload)."
    ),
) -> None:
    """Compute an importance matrix from calibration text (for `quantize --imatrix`)."""
    from qwq_chat.convert.imatrix import compute_imatrix

    run = compute_imatrix(
        model,
        out,
        text=text,
        n_ctx=n_ctx,
        max_chunks=chunks,
        threads=threads or None,
        n_gpu_layers=n_gpu_layers,
        progress=True,
        on_status=_status,
    )
    typer.echo(
        f"wrote {run.path}: {run.entries} matrices, {run.chunks} chunks of {run.chunk_size} tokens"
    )


def quantize(
    src: Path = typer.Argument(
        ..., help="GGUF file to quantize (usually the bf16 output of `qwq-chat convert`)."
    ),
    dst: Path = typer.Argument(..., help="GGUF file to write."),
    qtype: str = typer.Option(
        "Q4_K_M",
        "--type",
        "-t",
        help="Q4_K_M, Q5_K_M, Q6_K, Q8_0, IQ4_XS, Q3_K_S, IQ3_XXS, Q2_K... (any llama.cpp type).",
    ),
    threads: int = typer.Option(0, "--threads", help="Threads (0: all cores)."),
    imatrix: Path | None = typer.Option(
        None,
        "--imatrix",
        help="Importance matrix (from `qwq-chat imatrix` or llama-imatrix). Types of 3 bits or "
        "fewer get one computed from the shipped calibration text when none is given.",
    ),
    no_imatrix: bool = typer.Option(
        False, "--no-imatrix", help="Do not compute an importance matrix for low-bit types."
    ),
    tensor_type: list[str] = typer.Option(
        [],
        "--tensor-type",
        help="REGEX=TYPE: tensors whose name matches become TYPE (repeatable; first match wins), "
        "e.g. attn_v=q8_0 or 'blk\\.[0-3]\\.ffn_down=q6_k'.",
    ),
    output_tensor_type: str | None = typer.Option(
        None, "--output-tensor-type", help="Type of output.weight (e.g. q8_0, f16)."
    ),
    token_embedding_type: str | None = typer.Option(
        None, "--token-embedding-type", help="Type of token_embd.weight (e.g. q8_0)."
    ),
    pure: bool = typer.Option(
        False, "--pure", help="Every tensor the default type (no per-tensor mixture)."
    ),
    allow_requantize: bool = typer.Option(
        False,
        "--allow-requantize",
        help="Quantize an already quantized file (quality suffers; prefer the bf16/f16 file).",
    ),
    keep_split: bool = typer.Option(
        False, "--keep-split", help="A split input gives an output split the same way."
    ),
    split_max_size: str | None = typer.Option(None, "--split-max-size", help=_SPLIT_HELP),
) -> None:
    """Quantize a GGUF file with llama.cpp's quantizer."""
    from qwq_chat.convert.errors import ConvertError
    from qwq_chat.convert.gguf_split import parse_size
    from qwq_chat.convert.quantize import QuantizeOptions, quantize_gguf

    if imatrix is not None and no_imatrix:
        raise ConvertError("--imatrix and --no-imatrix exclude each other: choose one")
    options = QuantizeOptions(
        imatrix=imatrix,
        auto_imatrix=not no_imatrix,
        tensor_types=tensor_type,
        output_tensor_type=output_tensor_type,
        token_embedding_type=token_embedding_type,
        pure=pure,
        allow_requantize=allow_requantize,
        keep_split=keep_split,
        split_max_size=parse_size(split_max_size) if split_max_size else None,
    )
    path = quantize_gguf(
        src,
        dst,
        qtype,
        threads=threads or None,
        options=options,
        progress=True,
        on_status=_status,
    )
    _report_written(path)


def verify(
    paths: list[Path] = typer.Argument(
        ...,
        help="CHECKPOINT_DIR MODEL.gguf (parity), or with --kld: the quantized GGUF files.",
        show_default=False,
    ),
    kld: Path | None = typer.Option(
        None,
        "--kld",
        help="Reference GGUF (bf16): report each given quant's KL divergence from it over a corpus.",
    ),
    text: Path | None = typer.Option(
        None, "--text", help="--kld corpus (.txt/.jsonl). Default: the shipped held-out text."
    ),
    max_kld: float | None = typer.Option(
        None, "--max-kld", help="--kld: exit 1 when a quant's mean KLD exceeds this."
    ),
    n_ctx: int = typer.Option(512, "--n-ctx", help="--kld: tokens per chunk."),
    chunks: int | None = typer.Option(
        None, "--chunks", help="--kld: use at most this many chunks."
    ),
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
    """Parity of a GGUF with its checkpoint, or (--kld) quants' KL divergence from a reference."""
    from qwq_chat.convert.errors import ConvertError, VerificationFailed

    if kld is not None:
        from qwq_chat.convert.kld import compare, print_table

        results = compare(
            kld,
            paths,
            text=text,
            n_ctx=n_ctx,
            max_chunks=chunks,
            threads=threads or None,
            progress=True,
        )
        print_table(results, kld, max_kld)
        over = [r.path.name for r in results if max_kld is not None and r.mean_kld > max_kld]
        if over:
            raise VerificationFailed(f"mean KLD above {max_kld}: {', '.join(over)}")
        return
    if len(paths) != 2:
        raise ConvertError(
            "verify takes CHECKPOINT_DIR MODEL.gguf, or --kld REFERENCE.gguf QUANT.gguf..."
        )
    from qwq_chat.convert.verify import print_report
    from qwq_chat.convert.verify import verify as run_verify

    checkpoint, model = paths
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
    cli.command("imatrix")(imatrix)
    cli.command("quantize")(quantize)
    cli.command("verify")(verify)
    cli.command("convert-lora")(convert_lora)
