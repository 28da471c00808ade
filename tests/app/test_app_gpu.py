"""GPU offload decisions (pure logic) and, where a CUDA GPU exists, the real offload."""

from __future__ import annotations

from pathlib import Path

import pytest
from qwq_chat.app.engines.gpu import GIB, plan_layers
from qwq_chat.app.system.gpu import Gpu
from qwq_chat.app.system.llama_build import reinstall_command

H100 = Gpu("cuda", "NVIDIA H100", free_bytes=78 * GIB, total_bytes=80 * GIB)
SMALL = Gpu("cuda", "RTX 3060", free_bytes=12 * GIB, total_bytes=12 * GIB)
Q4 = int(18.48 * GIB)
KV_16K = 4 * GIB  # QwQ-32B f16 KV cache for 16k tokens


def test_all_layers_when_they_fit() -> None:
    plan = plan_layers("auto", 64, Q4, KV_16K, H100, offload_supported=True)
    assert (plan.n_gpu_layers, plan.offloaded) == (-1, 64)
    assert "all 64 layers" in plan.summary and plan.warning is None


def test_as_many_as_fit_otherwise() -> None:
    plan = plan_layers("auto", 64, Q4, KV_16K, SMALL, offload_supported=True)
    assert 0 < plan.n_gpu_layers < 64 and plan.offloaded == plan.n_gpu_layers
    per_layer = (Q4 + KV_16K) / 65
    assert plan.n_gpu_layers * per_layer <= SMALL.free_bytes
    assert f"{plan.n_gpu_layers}/64" in plan.summary


def test_explicit_count_and_cpu_only() -> None:
    assert plan_layers(20, 64, Q4, KV_16K, SMALL, True).n_gpu_layers == 20
    assert plan_layers("auto", 64, Q4, KV_16K, None, True).summary == "CPU only (no GPU found)"
    assert plan_layers("auto", 64, Q4, KV_16K, None, False).n_gpu_layers == 0


def test_gpu_visible_but_cpu_build_warns_with_the_reinstall_command() -> None:
    plan = plan_layers("auto", 64, Q4, KV_16K, H100, offload_supported=False)
    assert plan.n_gpu_layers == 0
    assert plan.warning is not None and "NVIDIA H100" in plan.warning
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in plan.warning and "llama-cpp-python" in plan.warning
    assert "-DGGML_METAL=on" in reinstall_command("metal")


@pytest.mark.cuda
def test_real_offload_on_a_cuda_gpu(smollm_gguf: Path) -> None:
    import llama_cpp
    from qwq_chat.app.system.gpu import detect_gpu

    gpu = detect_gpu()
    if gpu is None or gpu.kind != "cuda" or not llama_cpp.llama_supports_gpu_offload():
        pytest.skip("no CUDA GPU (or llama-cpp-python built without CUDA)")
    from qwq_chat.app.engines.llama_engine import LlamaEngine

    engine = LlamaEngine(smollm_gguf, n_ctx=1024)
    assert engine.gpu_plan.offloaded == engine.n_layers == 30
    engine.close()
