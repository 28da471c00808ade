"""The one command-line entry point, `qwq-chat`.

Heavy libraries (llama_cpp, torch, transformers, textual) are imported only inside the command that
needs them, so `qwq-chat --help` stays fast.
"""

from __future__ import annotations

from typing import Any

import typer
from qwq_chat.app import __version__
from qwq_chat.app.cli_options import engine_options

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
@engine_options
def root(
    ctx: typer.Context,
    engine: dict[str, Any],
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Open the chat TUI when no command is given (engine options also apply to `ask`/`serve`)."""
    ctx.obj = engine
    if ctx.invoked_subcommand is None:
        from qwq_chat.app.cli_options import settings_from_options
        from qwq_chat.app.commands import ensure_model

        settings = ensure_model(settings_from_options(None, **engine))
        try:
            from qwq_chat.app import tui
        except ImportError:
            typer.echo("The TUI is not installed in this build; use `qwq-chat ask`.", err=True)
            raise typer.Exit(2) from None
        tui.run(settings)


def _register_subcommands() -> None:
    """Each part adds its own commands; those modules import nothing heavy at import time."""
    import importlib

    for module in (
        "qwq_chat.app.commands",
        "qwq_chat.app.serve.cli",
        "qwq_chat.convert.cli",
        "qwq_chat.rl_finetune.cli",
        "qwq_chat.app.sandbox.cli",
        "qwq_chat.app.doctor",
        "qwq_chat.app.tool_commands",
    ):
        importlib.import_module(module).register(cli)


_register_subcommands()


def main() -> None:
    """Run the CLI; a `UserError` becomes one red line on stderr and a non-zero exit, no traceback."""
    from qwq_chat.app.errors import UserError

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
