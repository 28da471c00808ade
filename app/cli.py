"""The one command-line entry point, `qwq-chat`.

Heavy libraries (llama_cpp, torch, transformers, textual) are imported only inside the command that
needs them, so `qwq-chat --help` stays fast.
"""

from __future__ import annotations

import typer

from app import __version__

cli = typer.Typer(
    name="qwq-chat",
    help="Chat with QwQ-32B locally, convert checkpoints to GGUF, and fine-tune with RL.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qwq-chat {__version__}")
        raise typer.Exit()


@cli.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="GGUF path, REPO[:QUANT], checkpoint dir or remote model name."
    ),
    backend: str | None = typer.Option(
        None, "--backend", help="llama (default) | openai | transformers."
    ),
    base_url: str | None = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
    config: str | None = typer.Option(None, "--config", help="TOML config file."),
    n_ctx: int | None = typer.Option(None, "--n-ctx", help="Context length in tokens."),
    n_gpu_layers: str | None = typer.Option(None, "--n-gpu-layers", help='"auto", 0 or a number.'),
    reasoning_budget: int | None = typer.Option(
        None, "--reasoning-budget", help="Close the reasoning after N tokens (0: off)."
    ),
) -> None:
    """Open the chat TUI when no command is given (options also apply to `ask`)."""
    options = {
        "model": model, "backend": backend, "base_url": base_url, "config": config,
        "n_ctx": n_ctx, "n_gpu_layers": n_gpu_layers, "reasoning_budget": reasoning_budget,
    }  # fmt: skip
    ctx.obj = {k: v for k, v in options.items() if v is not None}
    if ctx.invoked_subcommand is None:
        from app.commands import ensure_model, settings_from_options

        settings = ensure_model(settings_from_options(None, **ctx.obj))
        try:
            from app import tui
        except ImportError:
            typer.echo("The TUI is not installed in this build; use `qwq-chat ask`.", err=True)
            raise typer.Exit(2) from None
        tui.run(settings)


def _register_subcommands() -> None:
    """Each part adds its own commands; those modules import nothing heavy at import time."""
    import importlib

    for module in (
        "app.commands",
        "convert.cli",
        "rl_finetune.cli",
        "rl_finetune.sandbox_cli",
        "app.doctor",
    ):
        importlib.import_module(module).register(cli)


_register_subcommands()


def main() -> None:
    """Run the CLI; a `UserError` becomes one red line on stderr and a non-zero exit, no traceback."""
    from app.errors import UserError

    try:
        cli()
    except UserError as exc:
        _print_error(str(exc))
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _print_error(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {message}", markup=True)


if __name__ == "__main__":
    main()
