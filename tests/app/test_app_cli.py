"""The command line as users run it: subprocesses, exit codes, no tracebacks, stdin."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from qwq_chat.app import paths
from qwq_chat.app.hub import VERIFIED_SUFFIX, repo_dir


def qwq(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )


def test_cli_import_is_light() -> None:
    code = (
        "import sys, app.cli; heavy = ('llama_cpp', 'torch', 'transformers', 'textual', 'openai',"
        " 'huggingface_hub', 'sympy', 'jinja2'); print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_model_is_a_clear_error_without_traceback() -> None:
    result = qwq("ask", "hello")
    assert result.returncode == 2
    assert "error: no model given" in result.stderr and "--model" in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_config_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[sampling]\ntop_p = 7\n")
    result = qwq("ask", "hello", "--config", str(config))
    assert result.returncode == 2
    assert "sampling.top_p" in result.stderr and "Traceback" not in result.stderr
    result = qwq("--config", str(config), "ask", "hi")  # root option, same check
    assert result.returncode == 2 and "sampling.top_p" in result.stderr


def test_missing_model_file() -> None:
    result = qwq("ask", "hi", "--model", "/nonexistent/model.gguf")
    assert result.returncode == 2 and "neither an existing file" in result.stderr


def test_stdin_prompt_and_a_downloaded_model_is_picked(smollm_gguf: Path) -> None:
    folder = repo_dir("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")
    folder.mkdir(parents=True)
    target = folder / "smollm2-135m-instruct-q4_1.gguf"
    shutil.copy(smollm_gguf, target)
    Path(str(target) + VERIFIED_SUFFIX).write_text("ok\n")
    result = qwq("ask", "--max-tokens", "8", "--n-ctx", "512", "--json", stdin="Say hi.")
    assert result.returncode == 0, result.stderr
    assert f"using {target}" in result.stderr
    assert '"type": "done"' in result.stdout.splitlines()[-1]
    listed = qwq("models", "list")
    assert "verified" in listed.stdout and str(target) in listed.stdout
    assert paths.models_dir() in target.parents


def test_empty_prompt_is_refused() -> None:
    result = qwq("ask", "-", stdin="   \n")
    assert result.returncode == 2 and "prompt is empty" in result.stderr
