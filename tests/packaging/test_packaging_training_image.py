"""packaging/Dockerfile and compose.yaml, checked without a Docker engine.

The image cannot be built here, so these tests read it: every pinned package the Dockerfile installs
must be pinned identically in pyproject's `train-cuda` extra (and the reverse), the project is
installed with that extra, the sandbox has bubblewrap and runs unprivileged, and the compose file
starts `qwq-chat sandbox serve` beside a trainer that points QWQ_SANDBOX_URL at it.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "packaging" / "Dockerfile"


def pyproject() -> dict:
    with (REPO / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)


def run_instructions() -> list[str]:
    """The Dockerfile's RUN instructions, with line continuations joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return [ln.strip()[4:] for ln in lines if ln.strip().startswith("RUN ")]


def pip_installs() -> list[list[str]]:
    """The arguments of every `pip install` in the RUN instructions."""
    installs = []
    for run in run_instructions():
        for command in run.split("&&"):
            words = shlex.split(command)
            if "pip" in words and "install" in words:
                installs.append(words[words.index("install") + 1 :])
    return installs


def pinned(requirements: list[str]) -> dict[str, Requirement]:
    out = {}
    for text in requirements:
        req = Requirement(text)
        if any(spec.operator == "==" for spec in req.specifier):
            out[req.name.lower()] = req
    return out


def test_dockerfile_pins_match_the_train_cuda_extra() -> None:
    extra = pyproject()["project"]["optional-dependencies"]["train-cuda"]
    in_docker = pinned(
        [arg for args in pip_installs() for arg in args if not arg.startswith(("-", ".", "/"))]
    )
    in_extra = pinned(extra)
    assert set(in_docker) == set(in_extra)
    for name, req in in_extra.items():
        assert str(in_docker[name].specifier) == str(req.specifier), name
        assert in_docker[name].extras == req.extras, name
    assert {"torch", "trl", "peft", "vllm", "bitsandbytes", "transformers"} <= set(in_extra)
    assert "qwq-chat[train]" in extra  # the extra builds on the project's RL dependencies


def test_train_cuda_pins_satisfy_the_project_ranges() -> None:
    """The pins must also satisfy the looser ranges of the hf/train extras and core dependencies."""
    project = pyproject()["project"]
    extras = project["optional-dependencies"]
    ranges = [Requirement(r) for r in project["dependencies"] + extras["hf"] + extras["train"]]
    pins = pinned(extras["train-cuda"])
    checked = 0
    for req in ranges:
        pin = pins.get(req.name.lower())
        if pin is not None:
            version = next(s.version for s in pin.specifier if s.operator == "==")
            assert req.specifier.contains(version), f"{pin} is outside {req}"
            checked += 1
    assert checked >= 5


def test_dockerfile_installs_the_project_and_the_sandbox_tools() -> None:
    text = DOCKERFILE.read_text()
    installs = pip_installs()
    assert any(".[train-cuda]" in args for args in installs)
    assert any("bubblewrap" in run and "apt-get install" in run for run in run_instructions())
    # Every package pyproject ships is copied into the image before `pip install .`.
    for name in pyproject()["tool"]["setuptools"]["package-dir"].values():
        assert re.search(rf"^COPY {name} ", text, re.MULTILINE), f"{name}/ is not copied"
    # llama.cpp is built for CUDA, from source, and not from pip's cache.
    llama = [args for args in installs if any(a.startswith("llama-cpp-python") for a in args)]
    assert llama and "--no-binary" in llama[0] and "--no-cache-dir" in llama[0]
    assert 'CMAKE_ARGS="-DGGML_CUDA=on' in text
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)  # NPROC limits need a non-root uid
    base = re.search(r"^ARG CUDA_IMAGE=(\S+)", text, re.MULTILINE)
    assert base and base.group(1).startswith("nvidia/cuda:13.")  # torch 2.13 wheels are CUDA 13


def test_compose_runs_the_sandbox_beside_the_trainer() -> None:
    compose = yaml.safe_load((REPO / "packaging" / "compose.yaml").read_text())
    sandbox, train = compose["services"]["sandbox"], compose["services"]["train"]
    assert sandbox["build"]["dockerfile"] == "packaging/Dockerfile"
    command = sandbox["command"]
    assert command[:3] == ["qwq-chat", "sandbox", "serve"]
    port = command[command.index("--port") + 1]
    assert "ports" not in sandbox  # reachable from the trainer only
    assert "seccomp=unconfined" in sandbox["security_opt"]  # bubblewrap needs user namespaces
    assert port in " ".join(sandbox["healthcheck"]["test"])
    assert train["environment"]["QWQ_SANDBOX_URL"] == f"http://sandbox:{port}"
    assert train["depends_on"]["sandbox"]["condition"] == "service_healthy"
    assert train["image"] == sandbox["image"]
    gpu = train["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_sandbox_url_variable_is_the_one_the_rewards_read() -> None:
    from qwq_chat.rl_finetune.rewards import SANDBOX_URL_ENV

    compose = yaml.safe_load((REPO / "packaging" / "compose.yaml").read_text())
    assert SANDBOX_URL_ENV in compose["services"]["train"]["environment"]
