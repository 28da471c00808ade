"""Should llama.cpp use its CPU "extra buffer types" (AMX / repacked weights) on this machine?

Why this exists: llama-cpp-python is compiled on the user's machine with `-march=native`. On a Xeon
that advertises AMX (`amx_tile` in /proc/cpuinfo), llama.cpp then puts quantized weights in its AMX
buffer type and multiplies them with AMX tiles. In some virtual machines (measured: Firecracker
guests on Sapphire Rapids, November 2026) that faults on `ldtilecfg`, even with the AMX permission
granted, so the first prompt of two or more tokens kills the process (SIGSEGV in libggml-cpu).
A cheap in-process probe cannot tell the good machines from the bad ones, so when AMX is advertised
we load models with `use_extra_bufts = False`: the plain CPU kernels, correct and only somewhat
slower at prompt processing. `QWQ_CHAT_LLAMA_EXTRA_BUFTS=1` turns them back on (=0 forces off).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

ENV_VAR = "QWQ_CHAT_LLAMA_EXTRA_BUFTS"


def cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


@functools.cache
def extra_buffers_safe() -> bool:
    """False on CPUs that advertise AMX unless the user opted in (see module docstring)."""
    choice = os.environ.get(ENV_VAR, "").strip()
    if choice in ("0", "1"):
        return choice == "1"
    return "amx_tile" not in cpu_flags()
