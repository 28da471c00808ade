"""The version comes from one place (qwq_chat.app.__version__) and every place that shows it agrees;
the package list in pyproject.toml names every package the repository has."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

from qwq_chat.app import __version__

REPO = Path(__file__).resolve().parents[2]


def test_pyproject_reads_the_version_from_the_package() -> None:
    with (REPO / "pyproject.toml").open("rb") as fh:
        data = tomllib.load(fh)
    assert "version" not in data["project"] and "version" in data["project"]["dynamic"]
    assert data["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "qwq_chat.app.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+([ab]\d+|rc\d+)?(\.dev\d+)?", __version__)


def test_version_option_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and done.stdout == f"qwq-chat {__version__}\n"


def test_changelog_has_an_entry_for_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (\d+\.\d+\.\d+\S*) - \d{4}-\d{2}-\d{2}$", changelog, re.MULTILINE)
    assert versions, "CHANGELOG.md has no '## X.Y.Z - YYYY-MM-DD' entries"
    assert versions[0] == __version__, "the newest CHANGELOG entry must be the package version"
    assert changelog.index("## Unreleased") < changelog.index(f"## {__version__} ")


def test_pyproject_lists_every_package_under_the_namespace() -> None:
    """setuptools' package-dir mapping needs each subpackage named: a forgotten one would be
    missing from the wheel while an editable install still finds it."""
    with (REPO / "pyproject.toml").open("rb") as fh:
        setuptools = tomllib.load(fh)["tool"]["setuptools"]
    folders = {package: folder for package, folder in setuptools["package-dir"].items()}
    expected = set()
    for package, folder in folders.items():
        for init in (REPO / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(REPO / folder).parts
            expected.add(".".join([package, *relative]))
    assert set(setuptools["packages"]) == expected
    assert set(folders) == {
        f"qwq_chat.{part}" for part in ("app", "convert", "rl_finetune", "assets")
    }
