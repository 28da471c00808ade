"""Release hygiene: `python -m build` makes an sdist and a wheel that install and run in a clean venv.

The clean venv gets only the core dependencies (no torch). llama-cpp-python is installed from the
wheel pip built and cached when this environment was set up, so nothing is recompiled. The wheel
then goes in through packaging/install.sh (a real run of its CPU path, ending with `qwq-chat
doctor`), and the installed command is smoke-tested from outside the checkout.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import llama_cpp
import pytest
from qwq_chat.app import __version__

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def shipped_assets() -> set[str]:
    """Every file under assets/ (what the package must carry), relative to the repo."""
    return {
        p.relative_to(REPO).as_posix()
        for p in (REPO / "assets").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def cached_llama_wheel() -> Path | None:
    """The llama-cpp-python wheel pip built for this environment, from pip's wheel cache."""
    version = importlib.metadata.version("llama-cpp-python")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "cache", "list", "llama_cpp_python", "--format=abspath"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    for line in done.stdout.splitlines():
        path = Path(line.strip())
        if path.name.startswith(f"llama_cpp_python-{version}-") and path.is_file():
            return path
    return None


def unrelated_wheel(folder: Path, name: str) -> Path:
    """A wheel of someone else's package whose import name is `name` (built by hand: no build)."""
    wheel = folder / f"unrelated_{name}-1.0-py3-none-any.whl"
    info = f"unrelated_{name}-1.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}/__init__.py", f"WHO = 'unrelated {name}'\n")
        archive.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: unrelated-{name}\n"
                         "Version: 1.0\n")  # fmt: skip
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: qwq-chat-tests\n"
                         "Root-Is-Purelib: true\nTag: py3-none-any\n")  # fmt: skip
        archive.writestr(f"{info}/RECORD", f"{name}/__init__.py,,\n{info}/METADATA,,\n"
                         f"{info}/WHEEL,,\n{info}/RECORD,,\n")  # fmt: skip
    return wheel


def test_sdist_and_wheel_carry_the_version_and_assets(dist: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    sdist = next(dist.glob("*.tar.gz"))
    assert wheel.name == f"qwq_chat-{__version__}-py3-none-any.whl"
    assert sdist.name == f"qwq_chat-{__version__}.tar.gz"
    names = set(zipfile.ZipFile(wheel).namelist())
    in_wheel = {"qwq_chat/" + name for name in shipped_assets()}
    assert in_wheel <= names, in_wheel - names
    assert {"qwq_chat/app/cli.py", "qwq_chat/convert/__init__.py"} <= names
    assert "qwq_chat/rl_finetune/__init__.py" in names
    # One top-level import package: nothing named app, convert, rl_finetune or assets.
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"qwq_chat"}, top
    metadata = zipfile.ZipFile(wheel).read(f"qwq_chat-{__version__}.dist-info/METADATA").decode()
    assert f"Version: {__version__}" in metadata
    assert re.search(r"^Requires-Dist: llama-cpp-python", metadata, re.MULTILINE)
    assert "Requires-Dist: torch" in metadata and 'extra == "hf"' in metadata  # torch is optional
    entry_points = zipfile.ZipFile(wheel).read(f"qwq_chat-{__version__}.dist-info/entry_points.txt")
    assert b"qwq-chat = qwq_chat.app.cli:main" in entry_points
    with tarfile.open(sdist) as tar:
        members = {m.name.split("/", 1)[1] for m in tar.getmembers() if "/" in m.name}
    assert shipped_assets() <= members
    assert {"pyproject.toml", "README.md", "LICENSE"} <= members


def test_wheel_installs_and_runs_in_a_clean_venv(dist: Path, tmp_path: Path) -> None:
    llama_wheel = cached_llama_wheel()
    if llama_wheel is None:
        pytest.skip(
            "no cached llama-cpp-python wheel: installing it would compile llama.cpp (~7 min)"
        )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    subprocess.run(
        [str(py), "-m", "pip", "install", "--quiet", str(llama_wheel)], check=True, timeout=300
    )

    wheel = next(dist.glob("*.whl"))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    install = subprocess.run(
        ["bash", str(REPO / "packaging" / "install.sh"), "--cpu", "--venv", str(venv)]
        + ["--from", str(wheel), "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    gpu_here = shutil.which("nvidia-smi") is not None and not llama_cpp.llama_supports_gpu_offload()
    assert install.returncode == (1 if gpu_here else 0), install.stdout + install.stderr
    assert "+ " + str(venv / "bin" / "qwq-chat") + " doctor" in install.stdout
    assert "llama-cpp-python " + llama_cpp.__version__ in install.stdout  # the doctor's report

    exe = venv / "bin" / "qwq-chat"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(exe), *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env
        )

    assert run("--version").stdout.strip() == f"qwq-chat {__version__}"

    conversation = tmp_path / "conversation.json"
    conversation.write_text(json.dumps([{"role": "user", "content": "What is 2+2?"}]))
    rendered = run("render-prompt", str(conversation))
    assert rendered.returncode == 0, rendered.stderr
    assert (
        rendered.stdout
        == "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    )

    # The installed package is the wheel's (not this checkout), carries its assets, and no torch.
    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import qwq_chat.app as app, importlib.util, json;"
            " from qwq_chat.app.assets import asset_path;"
            "print(json.dumps({'app': app.__file__,"
            " 'template': str(asset_path('chat_template.jinja')),"
            " 'torch': importlib.util.find_spec('torch') is not None}))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    info = json.loads(probe.stdout)
    assert Path(info["app"]).is_relative_to(venv) and Path(info["template"]).is_relative_to(venv)
    template = (REPO / "assets" / "chat_template.jinja").read_bytes()
    assert Path(info["template"]).read_bytes() == template
    assert info["torch"] is False

    # Beside unrelated installed packages named `app` and `convert`, and a user's own app.py and
    # convert.py in the working directory, all of them import and qwq-chat still runs.
    for name in ("app", "convert"):
        subprocess.run(
            [str(py), "-m", "pip", "install", "--quiet", str(unrelated_wheel(tmp_path, name))],
            check=True,
            timeout=300,
            env=env,
        )
    workdir = tmp_path / "project"
    workdir.mkdir()
    for name in ("app", "convert"):
        (workdir / f"{name}.py").write_text(f"raise SystemExit('the user\\'s own {name}.py ran')\n")
    both = subprocess.run(
        [str(py), "-c", "import app, convert, qwq_chat.app.cli; print(app.WHO, '|', convert.WHO)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert both.stdout.strip() == "unrelated app | unrelated convert", both.stderr
    assert run("--version").stdout.strip() == f"qwq-chat {__version__}"
    in_project = subprocess.run(
        [str(exe), "--version"], capture_output=True, text=True, timeout=60, cwd=workdir, env=env
    )
    assert in_project.stdout.strip() == f"qwq-chat {__version__}", in_project.stderr
