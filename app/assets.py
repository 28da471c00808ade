"""Access to the files in `assets/`, wherever the package is installed (wheel, editable, PyInstaller)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def asset_path(name: str) -> Path:
    """Path of a shipped asset file, e.g. `asset_path("chat_template.jinja")`."""
    return Path(str(resources.files("qwq_chat.assets").joinpath(name)))


def chat_template() -> str:
    """QwQ-32B's upstream chat template, byte for byte (see assets/chat_template.jinja)."""
    return asset_path("chat_template.jinja").read_text(encoding="utf-8")
