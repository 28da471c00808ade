"""Speculative decoding from the outside: settings and --draft-model, `ask --json` stats, the status
line, and the draft that doctor suggests for QwQ."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from qwq_chat.app.ask import run_ask
from qwq_chat.app.cli_options import ENGINE_OPTIONS
from qwq_chat.app.config import load_settings
from qwq_chat.app.engines import create_engine
from qwq_chat.app.engines.speculative import draft_source
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import Stats, draft_summary


def test_draft_settings_and_their_off_switches(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(draft_model="ngram")
    assert settings.draft.kind == "auto" and settings.draft.max_tokens == 8
    assert draft_source(settings.draft_model, settings.draft.kind) == "ngram"
    assert draft_source("draft.gguf", "auto") == "draft.gguf"
    assert draft_source("draft.gguf", "off") is None
    assert draft_source(None, "auto") is None
    assert draft_source(None, "ngram") == "ngram"
    with pytest.raises(UserError, match="no draft model is set"):
        draft_source(None, "model")
    monkeypatch.setenv("QWQ_CHAT_DRAFT__MAX_TOKENS", "0")
    with pytest.raises(UserError, match="draft.max_tokens"):
        load_settings()
    assert "--draft-model" in ENGINE_OPTIONS["draft_model"][1].param_decls


def test_create_engine_turns_on_prompt_lookup(tiny_gguf: Path) -> None:
    settings = load_settings(model=str(tiny_gguf), n_ctx=512, draft_model="ngram")
    settings.draft.max_tokens = 5
    engine = create_engine(settings)
    try:
        assert engine.speculator.kind == "ngram" and engine.speculator.max_draft == 5
    finally:
        engine.close()


def test_ask_json_reports_acceptance_and_tokens_per_pass(tiny_gguf: Path) -> None:
    settings = load_settings(model=str(tiny_gguf), n_ctx=512, max_tokens=32, draft_model="ngram")
    settings.sampling = settings.sampling.replace(top_k=1)
    out, err = io.StringIO(), io.StringIO()
    prompt = "Repeat: one two three four, one two three four, one two three four."
    assert run_ask(settings, prompt, as_json=True, out=out, err=err) == 0
    stats = [json.loads(line) for line in out.getvalue().splitlines()][-2]
    assert stats["type"] == "stats" and stats["tokens_per_pass"] >= 1.0
    assert "draft_acceptance_rate" in stats


def test_status_text_for_speculation() -> None:
    assert draft_summary(Stats()) is None
    text = draft_summary(Stats(draft_acceptance_rate=0.725, tokens_per_pass=2.4))
    assert text == "draft 72% · 2.4 tok/pass"
    assert draft_summary(Stats(tokens_per_pass=1.0)) == "draft no guesses · 1.0 tok/pass"


async def test_status_line_shows_the_draft_figures() -> None:
    from qwq_chat.app.tui.widgets.status import StatusLine
    from textual.app import App, ComposeResult

    class Host(App):
        def compose(self) -> ComposeResult:
            yield StatusLine()

    async with Host().run_test() as pilot:
        line = pilot.app.query_one(StatusLine)
        line.show_stats(
            Stats(tokens_per_second=9.0, draft_acceptance_rate=0.5, tokens_per_pass=1.8)
        )
        assert "draft 50% · 1.8 tok/pass" in line.text


def test_doctor_suggests_the_matching_draft(monkeypatch: pytest.MonkeyPatch) -> None:
    from qwq_chat.app import hub
    from qwq_chat.app.doctor import check_draft, pull_hint

    monkeypatch.setenv("QWQ_CHAT_MODEL", "Qwen/QwQ-32B-GGUF:Q4_K_M")
    check = check_draft()
    assert check.status == "info" and check.fix is not None
    assert "--draft-model Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0" in check.fix
    assert "~0.9 GB more memory at a 16384-token context" in check.fix
    monkeypatch.setattr(hub, "usable_memory_bytes", lambda: 64 * hub.GIB)  # QwQ fits
    assert f"models pull {hub.DRAFT_REPO} --quant Q8_0" in pull_hint()
    assert hub.draft_hint("SmolLM2-135M.gguf") is None  # no known draft for other models
    monkeypatch.setenv("QWQ_CHAT_DRAFT_MODEL", "ngram")
    assert check_draft().status == "ok" and "ngram" in check_draft().summary
