"""Open GGUF files with llama-cpp-python safely on CPUs with Intel AMX.

llama.cpp's CPU backend puts Q4_0/Q4_1/Q8_0/K-quant weights into an "extra" AMX buffer type on
CPUs that have AMX tiles (Sapphire Rapids and later Xeons). In the llama.cpp bundled with
llama-cpp-python 0.3.36 the AMX matrix multiply crashes the process (SIGSEGV in
`ggml_backend_amx_mul_mat`) for every such model we tried, including the SmolLM2 Q4_1 GGUF.
Turning the extra buffer types off (`llama_model_params.use_extra_bufts = False`) makes llama.cpp
use its ordinary CPU kernels, which work. The Llama class offers no argument for it, so we wrap
llama-cpp-python's default-parameter function, only when the CPU has AMX.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any


@functools.cache
def cpu_has_amx() -> bool:
    """True when /proc/cpuinfo lists AMX tile support (Linux; other systems: False)."""
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False


@functools.cache
def apply_amx_workaround() -> bool:
    """Make every later `llama_cpp.Llama(...)` in this process skip the AMX buffers, on AMX CPUs.

    Returns whether the workaround was applied. Safe to call many times.
    """
    if not cpu_has_amx():
        return False
    import llama_cpp.llama as llama_module

    low_level = llama_module.llama_cpp
    original = low_level.llama_model_default_params
    if getattr(original, "_qwq_no_extra_bufts", False):
        return True

    @functools.wraps(original)
    def default_params():  # noqa: ANN202 - returns the ctypes struct
        params = original()
        params.use_extra_bufts = False
        return params

    default_params._qwq_no_extra_bufts = True  # type: ignore[attr-defined]
    low_level.llama_model_default_params = default_params
    return True


def open_llama(model_path: Path | str, **kwargs: Any):  # -> llama_cpp.Llama
    """`llama_cpp.Llama(model_path, ...)` with the AMX workaround and quiet logs by default."""
    apply_amx_workaround()
    from llama_cpp import Llama

    kwargs.setdefault("verbose", False)
    return Llama(model_path=str(model_path), **kwargs)
