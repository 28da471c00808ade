"""Engines: llama.cpp (default), OpenAI-compatible HTTP, transformers. One protocol, see base.py.

`create_engine(settings)` builds the one the settings ask for. It may take long (model load,
download), so the TUI calls it in a worker thread. Heavy imports happen inside it, never at import.
"""

from __future__ import annotations

from typing import Any

from qwq_chat.app.engine_protocol import Engine
from qwq_chat.app.errors import UserError


def create_engine(settings: Any, progress: bool = False) -> Engine:
    """The engine for `qwq_chat.app.config.Settings`; `progress` shows download progress bars (terminal)."""
    from qwq_chat.app.logs import setup_logging

    setup_logging()
    if settings.backend == "llama":
        from qwq_chat.app.engines.llama_engine import LlamaEngine
        from qwq_chat.app.hub import resolve_model

        if not settings.model:
            from qwq_chat.app.hub import no_model_message

            raise UserError(no_model_message())
        from qwq_chat.app.engines.speculative import draft_source

        path = resolve_model(settings.model, progress=progress)
        draft = draft_source(settings.draft_model, settings.draft.kind)
        if draft is not None and draft != "ngram":
            draft = str(resolve_model(draft, progress=progress))
        return LlamaEngine(
            path,
            n_ctx=settings.n_ctx,
            n_gpu_layers=settings.n_gpu_layers,
            n_threads=settings.n_threads,
            flash_attn=settings.flash_attn,
            cache_type=settings.cache_type,
            yarn=settings.yarn,
            seed=settings.sampling.seed,
            draft=draft,
            draft_max=settings.draft.max_tokens,
            draft_adaptive=settings.draft.adaptive,
        )
    if settings.backend == "openai":
        from qwq_chat.app.engines.openai_engine import OpenAIEngine

        return OpenAIEngine.from_settings(settings)
    if settings.backend == "transformers":
        from qwq_chat.app.engines.transformers_engine import TransformersEngine

        if not settings.model:
            raise UserError("the transformers backend needs --model CHECKPOINT_DIR")
        return TransformersEngine(settings.model)
    raise UserError(f"unknown backend {settings.backend!r}; use llama, openai or transformers")
