"""The engine options, declared once for the root command (the TUI), `ask` and `serve`.

`@engine_options` adds them to a Typer command as keyword parameters and hands the command the
values that were given as one dict (`engine`); options given on the root command fill in what a
subcommand leaves unset (`qwq-chat --model M ask ...`). Nothing heavy is imported here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import typer

# name -> (type, Typer option); the order is the order `--help` lists them in.
ENGINE_OPTIONS: dict[str, tuple[Any, Any]] = {
    "model": (
        str | None,
        typer.Option(
            None, "--model", "-m", help="GGUF path, REPO[:QUANT], checkpoint dir or remote model name."
        ),
    ),
    "backend": (str | None, typer.Option(None, "--backend", help="llama (default) | openai | transformers.")),
    "base_url": (str | None, typer.Option(None, "--base-url", help="OpenAI-compatible server URL (backend openai).")),
    "config": (
        str | None,
        typer.Option(None, "--config", help="TOML config file (default: the config dir's config.toml)."),
    ),
    "n_ctx": (int | None, typer.Option(None, "--n-ctx", help="Context length in tokens.")),
    "n_gpu_layers": (str | None, typer.Option(None, "--n-gpu-layers", help='"auto", 0 (CPU) or a number of layers.')),
    "reasoning_budget": (
        int | None,
        typer.Option(None, "--reasoning-budget", help="Close the reasoning after N tokens (0: off)."),
    ),
    "draft_model": (
        str | None,
        typer.Option(
            None, "--draft-model",
            help="Speculative decoding: a draft GGUF path or REPO[:QUANT] with the model's tokenizer, or ngram (prompt lookup).",
        ),
    ),
    "mcp_config": (
        str | None,
        typer.Option(None, "--mcp-config", help="JSON file of MCP servers (the mcpServers shape)."),
    ),
}  # fmt: skip


def engine_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Give `command` the engine options; it receives them as `engine: dict` (given ones only)."""
    signature = inspect.signature(command)
    own = [p for p in signature.parameters.values() if p.name != "engine"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind)
        for name, (kind, option) in ENGINE_OPTIONS.items()
    ]

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in ENGINE_OPTIONS}
        return command(*args, engine={k: v for k, v in given.items() if v is not None}, **kwargs)

    wrapper.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {
        **{k: v for k, v in command.__annotations__.items() if k != "engine"},
        **{name: kind for name, (kind, _) in ENGINE_OPTIONS.items()},
    }
    return wrapper


def settings_from_options(ctx: typer.Context | None = None, **options: Any) -> Any:
    """Settings from --config, environment and these options (root options fill in what is unset)."""
    from qwq_chat.app.config import load_settings

    inherited: dict[str, Any] = {}
    if ctx is not None and ctx.parent is not None and isinstance(ctx.parent.obj, dict):
        inherited = ctx.parent.obj
    merged = {**inherited, **{k: v for k, v in options.items() if v is not None}}
    config = merged.pop("config", None)
    return load_settings(config, **merged)
