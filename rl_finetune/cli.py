"""`qwq-chat rl ...`: train, eval, export, demo, plot, config. Heavy imports only inside commands."""

from __future__ import annotations

from pathlib import Path

import typer

rl = typer.Typer(help="RL fine-tuning: the QwQ recipe (cold start, GRPO stages), eval, export.")


@rl.command("train")
def train_cmd(
    config: Path = typer.Argument(..., help="TOML config (see assets/rl/configs/)."),
    stage: list[str] = typer.Option(
        [], "--stage", help="Run only these stages (cold_start, stage1, stage2); repeatable."
    ),
    engine: str = typer.Option(
        "", "--engine", help="trl (run here) or verl (write a verl config and launch verl)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Validate the config and every dataset row, then stop."
    ),
    no_eval: bool = typer.Option(False, "--no-eval", help="Skip the eval after each stage."),
) -> None:
    """Run the config's stages in order; an interrupted run continues from its last checkpoint."""
    from qwq_chat.rl_finetune.config import load_config

    cfg = load_config(config)
    name = engine or cfg.engine.name
    if name == "verl":
        from qwq_chat.rl_finetune.verl import launch_verl

        launch_verl(cfg, dry_run=dry_run)
        return
    if name != "trl":
        from qwq_chat.app.errors import UserError

        raise UserError(f"--engine {name!r}: choose trl or verl")
    from qwq_chat.rl_finetune.pipeline import check_data, train

    counts = check_data(cfg)
    typer.echo("data: " + ", ".join(f"{k}={v} rows" for k, v in counts.items()))
    if dry_run:
        return
    results = train(cfg, only=stage or None, evaluate_stages=not no_eval)
    _print_results(cfg.output_dir)
    if results:
        typer.echo(f"run: {cfg.output_dir}")


def _print_results(run_dir: Path) -> None:
    from qwq_chat.rl_finetune.evaluate import format_table, read_results

    rows = read_results(run_dir / "eval.jsonl")
    if rows:
        typer.echo(format_table(rows))


@rl.command("eval")
def eval_cmd(
    model: Path = typer.Option(
        ..., "--model", help="HF checkpoint dir, LoRA adapter dir or .gguf."
    ),
    data: list[Path] = typer.Option(
        ..., "--data", help="JSONL of {prompt, answer} (or code rows)."
    ),
    k: int = typer.Option(4, "-k", help="Samples per prompt (pass@1 averages them; pass@k)."),
    temperature: float = typer.Option(0.6, help="Sampling temperature (QwQ card: 0.6)."),
    top_p: float = typer.Option(0.95, help="Nucleus sampling."),
    top_k: int = typer.Option(40, help="Top-k sampling (0: off)."),
    max_new_tokens: int = typer.Option(4096, help="Generation limit per sample."),
    limit: int = typer.Option(0, help="Only the first N rows (0: all)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    label: str = typer.Option("", help="Name for this row in the table."),
    results: Path = typer.Option(
        None, help="Append to this JSONL and show all its rows (default: user data dir)."
    ),
    math_suffix: str = typer.Option(
        "Please reason step by step, and put your final answer within \\boxed{}.",
        help="Appended to math prompts ('' for none).",
    ),
    sandbox_url: str = typer.Option("", help="Code server for code rows."),
    tools: str = typer.Option(
        "", "--tools", help="Tool loop on with these chat tools, e.g. python,calculator."
    ),
    max_tool_calls: int = typer.Option(4, help="Tool-calling turns per sample (with --tools)."),
) -> None:
    """pass@1 and pass@k with the project's verifiers, for HF checkpoints and GGUF (llama.cpp)."""
    from qwq_chat.app.paths import data_dir
    from qwq_chat.rl_finetune.evaluate import append_result, evaluate, format_table, read_results

    result = evaluate(
        model,
        list(data),
        k=k,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        max_new_tokens=max_new_tokens,
        limit=limit or None,
        seed=seed,
        label=label,
        math_suffix=math_suffix,
        sandbox_url=sandbox_url or None,
        tools=[t.strip() for t in tools.split(",") if t.strip()] or None,
        max_tool_calls=max_tool_calls,
    )
    path = results or data_dir() / "rl-eval.jsonl"
    append_result(path, result)
    typer.echo(format_table(read_results(path)))


@rl.command("export")
def export_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory (or a stage's final/ directory)."),
    quant: str = typer.Option("", "--quant", help="Also quantize, e.g. Q8_0 or Q4_K_M."),
    lora_gguf: bool = typer.Option(
        False, "--lora-gguf", help="Write a GGUF LoRA adapter instead of merging."
    ),
    base: str = typer.Option(
        "", help="Base checkpoint of the adapter (default: the recorded one)."
    ),
    out: Path = typer.Option(
        None, "-o", "--out", help="Output directory (default RUN_DIR/export)."
    ),
) -> None:
    """Merge LoRA in fp32 and convert (+ quantize) to GGUF, or write a GGUF LoRA adapter."""
    from qwq_chat.rl_finetune.export import export_run

    for path in export_run(
        run_dir, out, quant=quant or None, lora_gguf=lora_gguf, base=base or None, progress=True
    ):
        typer.echo(str(path))


@rl.command("plot")
def plot_cmd(run_dir: Path = typer.Argument(..., help="A run directory.")) -> None:
    """Write PNG plots (reward, accuracy, response length, health) from RUN_DIR/metrics.jsonl."""
    from qwq_chat.app.errors import UserError
    from qwq_chat.rl_finetune.plots import write_plots

    if not (run_dir / "metrics.jsonl").is_file():
        raise UserError(f"{run_dir}: no metrics.jsonl here; give the run's output directory")
    for path in write_plots(run_dir):
        typer.echo(str(path))


@rl.command("config")
def config_cmd() -> None:
    """Print every config field with its default and description (a starting TOML file)."""
    from qwq_chat.rl_finetune.config import dump_defaults

    typer.echo(dump_defaults())


@rl.command("demo")
def demo_cmd(
    out: Path = typer.Option(Path("runs/rl-demo"), "-o", "--out", help="Run directory."),
    steps: int = typer.Option(0, help="GRPO steps (0: the toy's default)."),
    seed: int = typer.Option(0, help="Seed (the figures in docs/rl.md use 0)."),
    tokenizer_from: Path = typer.Option(
        None, help="Copy QwQ's tokenizer files from this checkpoint instead of building them."
    ),
    tools: bool = typer.Option(
        False, "--tools", help="The tool toy: the answer is data only the python tool can read."
    ),
) -> None:
    """The CPU toy: cold start -> stage 1 GRPO -> eval; ends with `accuracy: before=A0 after=A1`."""
    from qwq_chat.rl_finetune.demo import run_demo, run_tool_demo

    if tools:
        a0, a1, r0, r1 = run_tool_demo(
            out, steps=steps or None, seed=seed, tokenizer_dir=tokenizer_from
        )
        typer.echo(f"plots: {out / 'run' / 'plots'}")
        typer.echo(f"tool calls: before={r0:.2f} after={r1:.2f}")
    else:
        a0, a1 = run_demo(out, steps=steps or None, seed=seed, tokenizer_dir=tokenizer_from)
        typer.echo(f"plots: {out / 'plots'}")
    typer.echo(f"accuracy: before={a0:.2f} after={a1:.2f}")


def register(cli: typer.Typer) -> None:
    cli.add_typer(rl, name="rl")
