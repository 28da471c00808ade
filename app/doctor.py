"""`qwq-chat doctor`: is this install able to run QwQ-32B well, and if not, what exactly to fix.

The most common failure of llama-cpp-python installs is silent: a GPU in the machine and a CPU-only
build of llama.cpp, so a 32B model crawls. The doctor looks at the Python, the llama.cpp build
(backends, GPU offload), the GPUs (nvidia-smi, Apple Silicon), RAM, the model files and the configured
model, and prints one line per check plus the command that fixes each problem.

Exit status: 0 when nothing is broken (warnings allowed, e.g. no model downloaded yet), 1 when a check
failed (llama-cpp-python missing or broken, a GPU that the build cannot use, a configured model that
does not exist, an invalid config). `--json` prints the same report as one JSON object.

Only the standard library and typer are imported at module level: `register` runs on every
`qwq-chat` start, so the probes import what they need inside.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import typer
from qwq_chat.app.system.gpu import Gpu, is_apple_silicon, nvidia_gpus
from qwq_chat.app.system.llama_build import llama_cpp_info, reinstall_command
from qwq_chat.app.system.memory import memory_bytes

Status = Literal["ok", "warn", "fail", "info"]

MIN_PYTHON = (3, 11)
GIB = 1024**3


@dataclass
class Check:
    """One line of the report; `fix` is the command or step that resolves a warn/fail."""

    name: str
    status: Status
    summary: str
    fix: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Probes: each looks at one thing and never raises.
# ---------------------------------------------------------------------------------------------


def check_python() -> Check:
    version = platform.python_version()
    frozen = bool(getattr(sys, "frozen", False))
    details = {"version": version, "executable": sys.executable, "frozen": frozen}
    if sys.version_info < MIN_PYTHON:
        return Check(
            "python",
            "fail",
            f"Python {version} is too old",
            fix="Install Python 3.11 or newer and reinstall qwq-chat with it.",
            details=details,
        )
    where = "standalone binary" if frozen else sys.executable
    return Check("python", "ok", f"Python {version} ({where})", details=details)


# ---------------------------------------------------------------------------------------------
# Checks built from the probes.
# ---------------------------------------------------------------------------------------------


def check_llama(info: dict[str, Any]) -> Check:
    if not info.get("installed"):
        return Check(
            "llama-cpp-python",
            "fail",
            f"llama-cpp-python cannot be imported ({info.get('error')})",
            fix="Reinstall it: packaging/install.sh (or `pip install --force-reinstall "
            "llama-cpp-python`), then run `qwq-chat doctor` again.",
            details=info,
        )
    offload = "GPU offload" if info.get("gpu_offload") else "no GPU offload"
    backends = ", ".join(info.get("backends", []))
    return Check(
        "llama-cpp-python",
        "ok",
        f"llama-cpp-python {info['version']}: backends {backends}; {offload}",
        details=info,
    )


def check_gpu(gpus: list[Gpu], smi_error: str | None, llama: dict[str, Any]) -> Check:
    """Compare the GPUs the machine has with what the llama.cpp build can use."""
    offload = bool(llama.get("gpu_offload"))
    version = llama.get("version")
    frozen = bool(getattr(sys, "frozen", False))
    details: dict[str, Any] = {"nvidia": [asdict(g) for g in gpus], "apple_silicon": False}
    if gpus:
        names = "; ".join(
            f"{g.name} ({_gib(g.total_bytes)} VRAM, {_gib(g.free_bytes)} free)" for g in gpus
        )
        if offload or not llama.get("installed"):
            return Check("gpu", "ok", f"NVIDIA: {names}", details=details)
        fix = reinstall_command("cuda", version)
        if shutil.which("nvcc") is None:
            fix = (
                "Install the CUDA toolkit (nvcc on PATH; https://developer.nvidia.com/cuda-downloads), "
                f"then: {fix}"
            )
        if frozen:
            fix = (
                "The standalone binary is CPU-only; install with packaging/install.sh for GPU "
                "offload."
            )
        return Check(
            "gpu",
            "fail",
            f"NVIDIA: {names}, but this llama-cpp-python build is CPU-only",
            fix=fix,
            details=details,
        )
    if is_apple_silicon():
        details["apple_silicon"] = True
        if offload or not llama.get("installed"):
            return Check("gpu", "ok", "Apple Silicon GPU (Metal, unified memory)", details=details)
        return Check(
            "gpu",
            "fail",
            "Apple Silicon GPU, but this llama-cpp-python build has no Metal support",
            fix=reinstall_command("metal", version),
            details=details,
        )
    if smi_error:
        return Check(
            "gpu",
            "warn",
            smi_error,
            fix="Check the NVIDIA driver (`nvidia-smi` must list the GPU).",
            details=details,
        )
    status: Status = "info"
    summary = "no GPU found: llama.cpp runs on the CPU (slow for a 32B model)"
    if offload:
        summary = "no NVIDIA/Apple GPU found by nvidia-smi; the build supports GPU offload"
    return Check("gpu", status, summary, details=details)


def check_memory(total: int | None, available: int | None) -> Check:
    if total is None:
        return Check("ram", "info", "RAM size unknown")
    text = f"{total / GIB:.1f} GiB total"
    if available is not None:
        text += f", {available / GIB:.1f} GiB available"
    return Check("ram", "ok", text, details={"total": total, "available": available})


def gguf_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.gguf") if p.is_file()) if root.is_dir() else []


def is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def pull_hint() -> str:
    """The pull command for the best QwQ-32B quantization that fits this machine (qwq_chat.app.hub's rule)."""
    from qwq_chat.app import hub

    quant = hub.recommend_quant(hub.usable_memory_bytes())
    if quant is None:
        return (
            f"QwQ-32B's smallest listed quant ({hub.DEFAULT_QUANT}) does not fit here; use a remote "
            "server: qwq-chat --backend openai --base-url URL --model NAME"
        )
    return (
        f"qwq-chat models pull {hub.DEFAULT_REPO} --quant {quant}  (or pass --model PATH.gguf); "
        f"for faster decoding also: qwq-chat models pull {hub.DRAFT_REPO} --quant {hub.DRAFT_QUANT}"
    )


def check_draft() -> Check:
    """Speculative decoding: what drafts for the configured model, or the draft that would match."""
    from qwq_chat.app import hub
    from qwq_chat.app.config import load_settings
    from qwq_chat.app.errors import UserError

    try:
        settings = load_settings()
    except UserError:
        return Check("draft", "info", "settings unreadable (see the config check)")
    details: dict[str, Any] = {"draft_model": settings.draft_model, "kind": settings.draft.kind}
    if settings.draft_model and settings.draft.kind != "off":
        return Check(
            "draft", "ok", f"speculative decoding with {settings.draft_model}", details=details
        )
    hint = hub.draft_hint(settings.model, settings.n_ctx)
    if hint is None:
        return Check("draft", "info", "speculative decoding off", details=details)
    return Check("draft", "info", "speculative decoding off", fix=hint, details=details)


def check_models(models_dir: Path) -> Check:
    files = gguf_files(models_dir)
    verified = _verified_downloads()
    listed = [
        {
            "path": str(p),
            "size": p.stat().st_size,
            "valid": is_gguf(p),
            "verified": str(p) in verified,
        }
        for p in files
    ]
    details = {"models_dir": str(models_dir), "files": listed}
    if not files:
        return Check(
            "models", "warn", f"no GGUF models in {models_dir}", fix=pull_hint(), details=details
        )
    broken = [item["path"] for item in listed if not item["valid"]]
    names = ", ".join(f"{Path(i['path']).name} ({i['size'] / GIB:.2f} GiB)" for i in listed)
    if broken:
        return Check(
            "models",
            "warn",
            f"not GGUF files (broken or partial downloads): {', '.join(broken)}",
            fix="Delete them and pull again: qwq-chat models pull REPO --quant Q4_K_M",
            details=details,
        )
    return Check("models", "ok", f"{len(files)} in {models_dir}: {names}", details=details)


def _verified_downloads() -> set[str]:
    """Paths of downloads whose sha256 qwq_chat.app.hub checked against the Hub."""
    from qwq_chat.app import hub

    return {str(m.path) for m in hub.list_local() if m.verified}


def check_configured_model(ram_total: int | None, gpus: list[Gpu]) -> Check:
    """The model the config (file or QWQ_CHAT_MODEL) names: does it exist, and does it fit?"""
    from qwq_chat.app import hub
    from qwq_chat.app.config import default_config_path, load_settings
    from qwq_chat.app.errors import UserError

    try:
        settings = load_settings()
    except UserError as exc:
        return Check(
            "config",
            "fail",
            str(exc),
            fix=f"Edit {default_config_path()} (see assets/default_config.toml).",
        )
    model = settings.model
    details: dict[str, Any] = {"model": model, "backend": settings.backend}
    if not model:
        return Check(
            "config",
            "info",
            f"no model configured: pass --model, or set `model = ...` in {default_config_path()}",
            details=details,
        )
    if settings.backend == "openai":
        return Check(
            "config", "ok", f"remote model {model!r} at {settings.base_url}", details=details
        )
    path = Path(model).expanduser()
    if settings.backend == "llama" and hub.is_repo_ref(model):
        repo, quant = hub.parse_repo_ref(model)
        local = hub.find_local(repo, quant)
        if local is None:
            pull = f"qwq-chat models pull {repo}" + (f" --quant {quant}" if quant else "")
            return Check(
                "config",
                "info",
                f"configured model {model} is not downloaded yet: it is pulled on first use "
                f"(or now: {pull})",
                details=details,
            )
        path = local
    if path.exists():
        size = _path_size(path)
        details["size"] = size
        details["path"] = str(path)
        return _fit_check(path, size, ram_total, gpus, details)
    if _looks_like_path(model):
        return Check(
            "config",
            "fail",
            f"configured model {model} does not exist",
            fix=f"Fix `model` in {default_config_path()} or QWQ_CHAT_MODEL, or pull one: "
            "qwq-chat models pull Qwen/QwQ-32B-GGUF --quant Q4_K_M",
            details=details,
        )
    return Check(
        "config",
        "info",
        f"configured model {model} is a Hub repo; it is fetched on first use",
        details=details,
    )


def _fit_check(
    path: Path, size: int, ram_total: int | None, gpus: list[Gpu], details: dict[str, Any]
) -> Check:
    vram = sum(g.total_bytes or 0 for g in gpus)
    text = f"configured model {path} ({size / GIB:.2f} GiB)"
    if ram_total is not None and size > ram_total + vram:
        return Check(
            "config",
            "warn",
            f"{text} is larger than RAM + VRAM ({(ram_total + vram) / GIB:.1f} GiB)",
            fix="Use a smaller quantization (e.g. Q4_K_M, Q3_K_M) or a machine with more memory.",
            details=details,
        )
    if gpus and size > vram:
        text += f"; it will be split between VRAM ({vram / GIB:.1f} GiB) and RAM"
    return Check("config", "ok", text, details=details)


def _looks_like_path(model: str) -> bool:
    return (
        model.endswith(".gguf") or model.startswith(("/", ".", "~")) or os.sep in model.strip("/")
    )


def _path_size(path: Path) -> int:
    """Bytes of a model: a file (all parts of a split GGUF) or a checkpoint directory."""
    if path.is_file():
        split = re.search(r"-00001-of-(\d{5})\.gguf$", path.name)
        if split:
            prefix = path.name[: split.start()]
            parts = path.parent.glob(f"{prefix}-*-of-{split.group(1)}.gguf")
            return sum(p.stat().st_size for p in parts)
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


TRAINING_PACKAGES = ("torch", "transformers", "trl", "peft", "vllm", "bitsandbytes", "deepspeed")


def check_training(gpus: list[Gpu]) -> Check:
    """The optional RL stack, read from package metadata (importing torch would take seconds).

    A CPU build of torch next to an NVIDIA GPU is the same silent failure as a CPU llama.cpp.
    """
    from importlib.metadata import PackageNotFoundError, version

    versions: dict[str, str] = {}
    for name in TRAINING_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    details: dict[str, Any] = {"packages": versions}
    if "torch" not in versions:
        return Check(
            "training",
            "info",
            "RL stack not installed (only needed for `qwq-chat rl`): pip install 'qwq-chat[train]'",
            details=details,
        )
    listed = ", ".join(f"{k} {v}" for k, v in versions.items())
    torch_version = versions["torch"]
    if gpus and "+cpu" in torch_version:
        base = torch_version.split("+", 1)[0]
        return Check(
            "training",
            "warn",
            f"torch {torch_version} is a CPU build, but an NVIDIA GPU is present ({listed})",
            fix=f"{shlex.quote(sys.executable)} -m pip install --force-reinstall "
            f'"torch=={base}" --index-url https://pypi.org/simple  (PyPI\'s Linux torch is CUDA)',
            details=details,
        )
    return Check("training", "ok", listed, details=details)


def check_sandbox() -> Check:
    """The RL code server sandboxes programs with bubblewrap (Linux only)."""
    if platform.system() != "Linux":
        return Check("sandbox", "info", "bubblewrap sandbox is Linux-only (RL code server)")
    exe = shutil.which("bwrap")
    if exe is None:
        return Check(
            "sandbox",
            "warn",
            "bubblewrap (bwrap) not found: `qwq-chat sandbox serve` cannot isolate code",
            fix="sudo apt-get install bubblewrap  (or your distribution's package)",
        )
    return Check("sandbox", "ok", f"bubblewrap at {exe}")


def _gib(value: int | None) -> str:
    return "?" if value is None else f"{value / GIB:.1f} GiB"


def run_checks() -> list[Check]:
    """All checks, in the order they are printed."""
    from qwq_chat.app import __version__, paths

    llama = llama_cpp_info()
    gpus, smi_error = nvidia_gpus()
    total, available = memory_bytes()
    return [
        Check("qwq-chat", "ok", f"qwq-chat {__version__}", details={"version": __version__}),
        check_python(),
        check_llama(llama),
        check_gpu(gpus, smi_error, llama),
        check_memory(total, available),
        check_models(paths.models_dir()),
        check_configured_model(total, gpus),
        check_draft(),
        check_training(gpus),
        check_sandbox(),
    ]


def report_json(checks: list[Check]) -> dict[str, Any]:
    return {
        "ok": not any(c.status == "fail" for c in checks),
        "checks": [asdict(c) for c in checks],
    }


def print_report(checks: list[Check]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console(highlight=False, soft_wrap=True)
    style = {"ok": "green", "warn": "yellow", "fail": "bold red", "info": "cyan"}
    for c in checks:
        console.print(
            f"[{style[c.status]}]{c.status.upper():>4}[/] {c.name:<16} {escape(c.summary)}"
        )
        if c.fix and c.status in ("warn", "fail"):
            console.print(f"     {'':<16} [bold]fix:[/] {escape(c.fix)}")
    failed = [c.name for c in checks if c.status == "fail"]
    if failed:
        console.print(f"[bold red]{len(failed)} problem(s): {', '.join(failed)}[/]")
    else:
        console.print("[green]No problems found.[/]")


def register(cli: typer.Typer) -> None:
    @cli.command()
    def doctor(
        as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    ) -> None:
        """Check Python, the llama.cpp build (GPU offload), GPUs, RAM and models; say what to fix.

        Exits 1 when something is broken, 0 otherwise (warnings included).
        """
        import json

        checks = run_checks()
        if as_json:
            typer.echo(json.dumps(report_json(checks), indent=2))
        else:
            print_report(checks)
        if any(c.status == "fail" for c in checks):
            raise typer.Exit(1)
