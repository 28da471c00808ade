"""How many layers to put on the GPU, and a loud warning when llama-cpp-python cannot use one.

"auto" puts all layers on the GPU when the weights plus the KV cache fit in free VRAM, otherwise as
many as fit (a reserve is kept for llama.cpp's compute buffers). The most common complaint of
llama-cpp-python users is a CPU-only build next to a perfectly good GPU: then we say so, with the
exact reinstall command.
"""

from __future__ import annotations

from dataclasses import dataclass

from qwq_chat.app.system.gpu import Gpu
from qwq_chat.app.system.llama_build import reinstall_command

GIB = 1024**3
COMPUTE_RESERVE_BYTES = int(0.75 * GIB)  # llama.cpp compute buffers, CUDA context, fragmentation


@dataclass(frozen=True)
class GpuPlan:
    n_gpu_layers: int  # passed to llama.cpp (-1 = all)
    offloaded: int  # repeating layers on the GPU, out of `n_layers`
    n_layers: int
    summary: str  # one line for the status bar / log
    warning: str | None = None


def plan_layers(
    requested: int | str,
    n_layers: int,
    model_bytes: int,
    kv_bytes: int,
    gpu: Gpu | None,
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
    budget = (gpu.free_bytes or 0) - COMPUTE_RESERVE_BYTES
    if model_bytes + kv_bytes <= budget:
        return GpuPlan(-1, n_layers, n_layers, f"GPU: all {n_layers} layers ({gpu.name})")
    per_layer = (model_bytes + kv_bytes) / max(1, n_layers + 1)  # +1: embeddings and output
    fit = max(0, min(n_layers, int(budget // per_layer) - 1))
    return GpuPlan(
        fit,
        fit,
        n_layers,
        f"GPU: {fit}/{n_layers} layers ({gpu.name}, {(gpu.free_bytes or 0) / GIB:.1f} GiB free)",
    )
