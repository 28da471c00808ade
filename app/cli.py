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
) -> None:
    """Open the chat TUI when no command is given."""
    if ctx.invoked_subcommand is None:
        typer.echo("The TUI is not built yet.", err=True)
        raise typer.Exit(2)


def _register_subcommands() -> None:
    """Each part adds its own commands; those modules import nothing heavy at import time."""
    import importlib

    for module in ("convert.cli", "rl_finetune.cli", "rl_finetune.sandbox_cli", "app.doctor"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        mod.register(cli)


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
