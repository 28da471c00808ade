"""The version comes from one place (app.__version__) and every place that shows it agrees."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from app import __version__

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_reads_the_version_from_the_package() -> None:
    with (REPO / "pyproject.toml").open("rb") as fh:
        data = tomllib.load(fh)
    assert "version" not in data["project"] and "version" in data["project"]["dynamic"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "app.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?(\.dev\d+)?", __version__)


def test_version_option_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "app", "--version"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout == f"qwq-chat {__version__}\n"


def test_changelog_has_an_entry_for_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (\d+\.\d+\.\d+\S*) - \d{4}-\d{2}-\d{2}$", changelog, re.MULTILINE)
    assert versions, "CHANGELOG.md has no '## X.Y.Z - YYYY-MM-DD' entries"
    assert versions[0] == __version__, "the newest CHANGELOG entry must be the package version"
    assert changelog.index("## Unreleased") < changelog.index(f"## {__version__} ")
