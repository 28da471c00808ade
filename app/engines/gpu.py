"""How many layers to put on the GPU, and a loud warning when llama-cpp-python cannot use one.

"auto" puts all layers on the GPU when the weights plus the KV cache fit in free VRAM, otherwise as
many as fit (a reserve is kept for llama.cpp's compute buffers). The most common complaint of
llama-cpp-python users is a CPU-only build next to a perfectly good GPU: then we say so, with the
exact reinstall command.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass

GIB = 1024**3
COMPUTE_RESERVE_BYTES = int(0.75 * GIB)  # llama.cpp compute buffers, CUDA context, fragmentation


@dataclass(frozen=True)
class GpuInfo:
    kind: str  # "cuda" or "metal"
    name: str
    free_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class GpuPlan:
    n_gpu_layers: int  # passed to llama.cpp (-1 = all)
    offloaded: int  # repeating layers on the GPU, out of `n_layers`
    n_layers: int
    summary: str  # one line for the status bar / log
    warning: str | None = None


def detect_gpu() -> GpuInfo | None:
    """The first NVIDIA GPU (nvidia-smi) or Apple Silicon's unified memory; None when there is none."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,memory.free,memory.total", "--format=csv,noheader,nounits"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
            name, free, total = (s.strip() for s in out.strip().splitlines()[0].split(","))
            return GpuInfo("cuda", name, int(float(free)) * 1024**2, int(float(total)) * 1024**2)
        except (OSError, subprocess.SubprocessError, ValueError, IndexError):
            pass
    if sys.platform == "darwin" and platform.machine() == "arm64":
        try:
            total = int(
                subprocess.run(
                    ["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5
                ).stdout.strip()
            )
        except (OSError, subprocess.SubprocessError, ValueError):
            return None
        # Metal may wire about 3/4 of unified memory by default.
        return GpuInfo("metal", "Apple Silicon", int(total * 0.75), total)
    return None


def reinstall_command(kind: str) -> str:
    """The exact command that rebuilds llama-cpp-python with GPU offload for this interpreter.

    One wording for the engine's warning and `qwq-chat doctor`: the doctor module builds it.
    """
    from importlib.metadata import PackageNotFoundError, version

    from app.doctor import reinstall_command as doctor_command

    try:
        installed = version("llama-cpp-python")
    except PackageNotFoundError:
        installed = None
    return doctor_command(kind, installed)


def plan_layers(
    requested: int | str,
    n_layers: int,
    model_bytes: int,
    kv_bytes: int,
    gpu: GpuInfo | None,
    offload_supported: bool,
) -> GpuPlan:
    """Decide `n_gpu_layers`. `kv_bytes` is the whole KV cache for the chosen n_ctx."""
    if gpu is not None and not offload_supported:
        warning = (
            f"a GPU is visible ({gpu.name}) but this llama-cpp-python was built without GPU "
            f"offload, so the model runs on the CPU (slowly). Reinstall it with:\n  "
            f"{reinstall_command(gpu.kind)}"
        )
        return GpuPlan(0, 0, n_layers, "CPU only (llama-cpp-python has no GPU support)", warning)
    if not offload_supported:
        return GpuPlan(0, 0, n_layers, "CPU only")
    if requested != "auto":
        count = int(requested)
        offloaded = n_layers if count < 0 or count > n_layers else count
        return GpuPlan(count, offloaded, n_layers, f"GPU: {offloaded}/{n_layers} layers (set)")
    if gpu is None:
        return GpuPlan(0, 0, n_layers, "CPU only (no GPU found)")
    budget = gpu.free_bytes - COMPUTE_RESERVE_BYTES
    if model_bytes + kv_bytes <= budget:
        return GpuPlan(-1, n_layers, n_layers, f"GPU: all {n_layers} layers ({gpu.name})")
    per_layer = (model_bytes + kv_bytes) / max(1, n_layers + 1)  # +1: embeddings and output
    fit = max(0, min(n_layers, int(budget // per_layer) - 1))
    return GpuPlan(
        fit,
        fit,
        n_layers,
        f"GPU: {fit}/{n_layers} layers ({gpu.name}, {gpu.free_bytes / GIB:.1f} GiB free)",
    )
