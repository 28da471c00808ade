"""Where qwq-chat keeps its state.

platformdirs picks the per-user directories; each can be overridden by an environment variable so
tests (and users with unusual setups) can point them at a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "qwq-chat"


def _dir(env_var: str, default: str) -> Path:
    path = Path(os.environ.get(env_var) or default).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_dir() -> Path:
    """TOML config lives here (QWQ_CHAT_CONFIG_DIR overrides)."""
    return _dir("QWQ_CHAT_CONFIG_DIR", platformdirs.user_config_dir(APP_NAME))


def data_dir() -> Path:
    """The conversation database lives here (QWQ_CHAT_DATA_DIR overrides)."""
    return _dir("QWQ_CHAT_DATA_DIR", platformdirs.user_data_dir(APP_NAME))


def cache_dir() -> Path:
    """Downloaded models live here (QWQ_CHAT_CACHE_DIR overrides)."""
    return _dir("QWQ_CHAT_CACHE_DIR", platformdirs.user_cache_dir(APP_NAME))


def log_dir() -> Path:
    """llama.cpp and app logs go here, never over the TUI (QWQ_CHAT_LOG_DIR overrides)."""
    return _dir("QWQ_CHAT_LOG_DIR", platformdirs.user_log_dir(APP_NAME))


def models_dir() -> Path:
    """GGUF files pulled from the hub."""
    path = cache_dir() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path
