"""The chat app's commands: `ask`, `render-prompt`, `models list|pull`, and the shared engine options.

Registered into the one CLI by app/cli.py (`register(cli)`); nothing heavy is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

# The engine/model options shared by the TUI (root command) and `ask`.
ModelOpt = typer.Option(
    None, "--model", "-m", help="GGUF path, REPO[:QUANT], checkpoint dir or remote model name."
)
BackendOpt = typer.Option(None, "--backend", help="llama (default) | openai | transformers.")
BaseUrlOpt = typer.Option(None, "--base-url", help="OpenAI-compatible server URL (backend openai).")
ConfigOpt = typer.Option(
    None, "--config", help="TOML config file (default: the config dir's config.toml)."
)
NCtxOpt = typer.Option(None, "--n-ctx", help="Context length in tokens.")
GpuLayersOpt = typer.Option(None, "--n-gpu-layers", help='"auto", 0 (CPU) or a number of layers.')
BudgetOpt = typer.Option(
    None, "--reasoning-budget", help="Close the reasoning after N tokens (0: off)."
)
# fmt: skip


def settings_from_options(ctx: typer.Context | None = None, **options: Any) -> Any:
    """Settings from --config, environment and these options (root options fill in what is unset)."""
    from app.config import load_settings

    inherited: dict[str, Any] = {}
    if ctx is not None and ctx.parent is not None and isinstance(ctx.parent.obj, dict):
        inherited = ctx.parent.obj
    merged = {**inherited, **{k: v for k, v in options.items() if v is not None}}
    config = merged.pop("config", None)
    return load_settings(config, **merged)


def ensure_model(settings: Any) -> Any:
    """llama backend without a model: a downloaded one, or offer the quant that fits (TTY only)."""
    import sys

    if settings.backend == "llama" and not settings.model:
        from app.hub import pick_default_model

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
    model: str | None = ModelOpt,
    backend: str | None = BackendOpt,
    base_url: str | None = BaseUrlOpt,
    config: Path | None = ConfigOpt,
    n_ctx: int | None = NCtxOpt,
    n_gpu_layers: str | None = GpuLayersOpt,
    reasoning_budget: int | None = BudgetOpt,
) -> None:
    """Ask one question: reasoning, then answer, streamed to the terminal."""  # fmt: skip
    from app.ask import read_prompt, run_ask

    settings = settings_from_options(
        ctx, model=model, backend=backend, base_url=base_url, config=config, n_ctx=n_ctx,
        n_gpu_layers=n_gpu_layers, reasoning_budget=reasoning_budget, max_tokens=max_tokens,
    )  # fmt: skip
    text = read_prompt(prompt)
    ensure_model(settings)
    raise typer.Exit(run_ask(settings, text, as_json=json_output, save=not no_save))


def render_prompt(
    ctx: typer.Context,
    conversation: Path = typer.Argument(..., help="JSON file: a list of OpenAI-style messages."),
    tools: Path | None = typer.Option(None, "--tools", help="JSON file: a list of tool schemas."),
    no_generation_prompt: bool = typer.Option(
        False, "--no-generation-prompt", help="Leave out the assistant prefix."
    ),
    model: str | None = ModelOpt,
    config: Path | None = ConfigOpt,
) -> None:
    """Print the exact text the model would receive for a conversation."""  # fmt: skip
    import sys

    from app.prompt import choose_template, load_conversation, load_tools, render

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
    from app.hub import find_local, is_repo_ref, parse_repo_ref

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
        from app.errors import UserError

        raise UserError(f"model file {path} does not exist")
    import contextlib

    from app.engines.llama_engine import load_llama, route_llama_logs

    route_llama_logs()
    with open(Path(route_llama_logs()), "a") as log, contextlib.redirect_stderr(log):
        llm = load_llama(model_path=str(path), vocab_only=True, verbose=True)
    try:
        meta = llm.metadata
        special = {
            "bos_token": llm._model.token_get_text(llm.token_bos()) if llm.token_bos() >= 0 else "",
            "eos_token": llm._model.token_get_text(llm.token_eos()) if llm.token_eos() >= 0 else "",
        }
        return meta.get("tokenizer.chat_template"), special
    finally:
        llm.close()


models_app = typer.Typer(
    help="Local models and downloads from the Hugging Face Hub.", no_args_is_help=True
)


@models_app.command("list")
def models_list(json_output: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """GGUF files downloaded into the models directory."""
    import json

    from app import paths
    from app.hub import describe, list_local

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
        state = "verified" if m.verified else "NOT verified (partial or interrupted?)"
        typer.echo(f"{m.size_bytes / 1e9:7.2f} GB  {m.repo or '-':30}  {m.path}  [{state}]")


@models_app.command("pull")
def models_pull(
    repo: str = typer.Argument(..., help="Hub repo, e.g. Qwen/QwQ-32B-GGUF (or REPO:QUANT)."),
    quant: str | None = typer.Option(None, "--quant", help="Quantization, e.g. Q4_K_M (default)."),
) -> None:
    """Download a GGUF with progress; an interrupted download resumes; sha256 checked."""
    import sys

    from app.hub import parse_repo_ref, pull

    name, ref_quant = parse_repo_ref(repo)
    path = pull(name, quant or ref_quant, progress=sys.stderr.isatty())
    typer.echo(str(path))


def register(cli: typer.Typer) -> None:
    cli.command("ask")(ask)
    cli.command("render-prompt")(render_prompt)
    cli.add_typer(models_app, name="models")
