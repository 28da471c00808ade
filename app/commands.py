"""The chat app's commands: `ask`, `render-prompt` and `models list|pull`.

Registered into the one CLI by app/cli.py (`register(cli)`); nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from qwq_chat.app.cli_options import ENGINE_OPTIONS, engine_options, settings_from_options


def ensure_model(settings: Any) -> Any:
    """llama backend without a model: a downloaded one, or offer the quant that fits (TTY only)."""
    import sys

    if settings.backend == "llama" and not settings.model:
        from qwq_chat.app.hub import pick_default_model

        settings.model = pick_default_model(interactive=sys.stdin.isatty() and sys.stderr.isatty())
    return settings


def ask(
    ctx: typer.Context,
    prompt: str | None = typer.Argument(None, help="The question; '-' or absent: read stdin."),
    json_output: bool = typer.Option(False, "--json", help="One JSON event per line."),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", help="Cap reasoning + answer tokens."
    ),
    no_save: bool = typer.Option(
        False, "--no-save", help="Do not keep this exchange in the chat history."
    ),
    approve_tools: bool = typer.Option(
        False, "--approve-tools", help="Run MCP tools without asking (else their calls are denied)."
    ),
    engine: dict[str, Any] | None = None,
) -> None:
    """Ask one question: reasoning, then answer, streamed to the terminal."""
    from qwq_chat.app.ask import read_prompt, run_ask

    settings = settings_from_options(ctx, **(engine or {}), max_tokens=max_tokens)
    text = read_prompt(prompt)
    ensure_model(settings)
    code = run_ask(
        settings, text, as_json=json_output, save=not no_save, approve_tools=approve_tools
    )
    raise typer.Exit(code)


def render_prompt(
    ctx: typer.Context,
    conversation: Path = typer.Argument(..., help="JSON file: a list of OpenAI-style messages."),
    tools: Path | None = typer.Option(None, "--tools", help="JSON file: a list of tool schemas."),
    no_generation_prompt: bool = typer.Option(
        False, "--no-generation-prompt", help="Leave out the assistant prefix."
    ),
    model: str | None = ENGINE_OPTIONS["model"][1],
    config: str | None = ENGINE_OPTIONS["config"][1],
) -> None:
    """Print the exact text the model would receive for a conversation."""
    import sys

    from qwq_chat.app.prompt import choose_template, load_conversation, load_tools, render

    settings = settings_from_options(ctx, model=model, config=config)
    messages = load_conversation(str(conversation))
    tool_list = load_tools(str(tools)) if tools else None
    template, special = _template_for(settings.model)
    chosen = choose_template(template)
    text = render(
        messages, tools=tool_list, template=chosen.source,
        add_generation_prompt=not no_generation_prompt, **special,
    )  # fmt: skip
    typer.echo(f"[template: {chosen.origin}; {chosen.reason}]", err=True)
    sys.stdout.write(text)
    sys.stdout.flush()


def _template_for(model: str | None) -> tuple[str | None, dict[str, str]]:
    """The chat template and special tokens stored in a local GGUF (vocab only: fast)."""
    if not model:
        return None, {}
    from qwq_chat.app.hub import find_local, is_repo_ref, parse_repo_ref

    if is_repo_ref(model):
        path = find_local(*parse_repo_ref(model))
        if path is None:
            return None, {}
    else:
        path = Path(model).expanduser()
    if path.is_dir():  # a HF checkpoint
        import json

        cfg = path / "tokenizer_config.json"
        if cfg.is_file():
            data = json.loads(cfg.read_text(encoding="utf-8"))
            return data.get("chat_template"), {}
        return None, {}
    if not path.is_file():
        from qwq_chat.app.errors import UserError

        raise UserError(f"model file {path} does not exist")
    from qwq_chat.app.engines.llama_engine import read_chat_template

    return read_chat_template(path)


models_app = typer.Typer(
    help="Local models and downloads from the Hugging Face Hub.", no_args_is_help=True
)


@models_app.command("list")
def models_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """GGUF files downloaded into the models directory."""
    import json

    from qwq_chat.app import paths
    from qwq_chat.app.hub import describe, list_local

    models = list_local()
    if json_output:
        typer.echo(json.dumps(describe(models), indent=2))
        return
    if not models:
        typer.echo(
            f"no models in {paths.models_dir()}; get one with `qwq-chat models pull REPO --quant Q4_K_M`"
        )
        return
    for m in models:
        if m.missing:
            state = f"INCOMPLETE: {', '.join(m.missing)} missing"
        else:
            state = "verified" if m.verified else "NOT verified (partial or interrupted?)"
        pieces = f" ({m.pieces} pieces)" if m.pieces > 1 else ""
        typer.echo(f"{m.size_bytes / 1e9:7.2f} GB  {m.repo or '-':30}  {m.path}{pieces}  [{state}]")


@models_app.command("pull")
def models_pull(
    repo: str = typer.Argument(..., help="Hub repo, e.g. Qwen/QwQ-32B-GGUF (or REPO:QUANT)."),
    quant: str | None = typer.Option(None, "--quant", help="Quantization, e.g. Q4_K_M (default)."),
) -> None:
    """Download a GGUF with progress; an interrupted download resumes; sha256 checked."""
    import sys

    from qwq_chat.app.hub import draft_hint, parse_repo_ref, pull

    name, ref_quant = parse_repo_ref(repo)
    path = pull(name, quant or ref_quant, progress=sys.stderr.isatty())
    typer.echo(str(path))  # stdout: the path alone, for scripts
    hint = draft_hint(name)
    if hint:
        typer.echo(hint, err=True)


def register(cli: typer.Typer) -> None:
    cli.command("ask")(engine_options(ask))
    cli.command("render-prompt")(render_prompt)
    cli.add_typer(models_app, name="models")
