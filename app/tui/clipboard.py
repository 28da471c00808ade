"""Copying text out of a terminal app: OSC 52 first, a system tool if there is one, and a file.

OSC 52 (what `App.copy_to_clipboard` sends) works in most modern terminals and over SSH, but the
terminal cannot tell us whether it did; so the text is also handed to wl-copy/xclip/xsel/pbcopy
when present, and always saved to a file the user can open, whose path the notification shows.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from qwq_chat.app import paths

COMMANDS = (
    ["wl-copy"],
    ["xclip", "-selection", "clipboard"],
    ["xsel", "--clipboard", "--input"],
    ["pbcopy"],
    ["clip.exe"],
)


def clipboard_file() -> Path:
    return paths.cache_dir() / "clipboard.txt"


def copy_with_system_tool(text: str) -> str | None:
    """Name of the tool that took the text, or None."""
    for command in COMMANDS:
        if shutil.which(command[0]):
            try:
                subprocess.run(command, input=text.encode(), timeout=2, check=True)
            except (OSError, subprocess.SubprocessError):
                continue
            return command[0]
    return None


def save_fallback(text: str) -> Path:
    path = clipboard_file()
    path.write_text(text, encoding="utf-8")
    return path
