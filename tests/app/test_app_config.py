"""Settings: TOML + environment + options; clear errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from qwq_chat.app import paths
from qwq_chat.app.assets import asset_path
from qwq_chat.app.config import DEFAULT_KEYMAP, Settings, load_settings
from qwq_chat.app.errors import UserError


def test_defaults_are_qwq_model_card() -> None:
    s = load_settings()
    sampling = s.sampling
    assert (sampling.temperature, sampling.top_p, sampling.top_k, sampling.min_p) == (
        0.6,
        0.95,
        40,
        0.0,
    )
    assert sampling.repeat_penalty == 1.0
    assert s.backend == "llama" and s.n_gpu_layers == "auto"
    assert s.n_ctx > 512  # never llama-cpp-python's useless default
    assert s.ui.keymap == DEFAULT_KEYMAP


def test_shipped_default_config_matches_the_defaults() -> None:
    shipped = load_settings(asset_path("default_config.toml"))
    assert shipped.model_dump() == Settings().model_dump()


def test_file_in_config_dir_env_and_options_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    (paths.config_dir() / "config.toml").write_text(
        'n_ctx = 4096\nmax_tokens = 100\n[sampling]\ntemperature = 0.5\n[ui.keymap]\nstop = "ctrl+x"\n'
    )
    monkeypatch.setenv("QWQ_CHAT_MAX_TOKENS", "200")
    monkeypatch.setenv("QWQ_CHAT_SAMPLING__TOP_K", "20")
    s = load_settings(n_ctx=8192, model=None)
    assert s.n_ctx == 8192  # option beats file
    assert s.max_tokens == 200  # env beats file
    assert s.sampling.temperature == 0.5 and s.sampling.top_k == 20
    assert s.ui.keymap["stop"] == "ctrl+x" and s.ui.keymap["quit"] == DEFAULT_KEYMAP["quit"]


def test_n_gpu_layers_accepts_auto_and_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_settings(n_gpu_layers="12").n_gpu_layers == 12
    assert load_settings(n_gpu_layers="auto").n_gpu_layers == "auto"
    with pytest.raises(UserError, match="n_gpu_layers"):
        load_settings(n_gpu_layers="many")


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ('[sampling]\ntemperature = "hot"\n', "sampling.temperature"),
        ("n_ctxx = 10\n", "n_ctxx: unknown key"),
        ('backend = "ollama"\n', "backend"),
        ("n_ctx = 100\n", "n_ctx"),
        ('[ui]\nreasoning = "sometimes"\n', "ui.reasoning"),
        ('[ui.keymap]\nfly = "f9"\n', "unknown action(s) fly"),
    ],
)
def test_invalid_file_names_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(toml)
    with pytest.raises(UserError) as info:
        load_settings(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_broken_toml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("n_ctx = = 3\n")
    with pytest.raises(UserError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(UserError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_env_error_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QWQ_CHAT_MAX_TOKENS", "lots")
    with pytest.raises(UserError, match="max_tokens"):
        load_settings()
