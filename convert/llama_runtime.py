"""Open GGUF files with llama-cpp-python for conversion checks (verify, tests).

Loading goes through the app's `load_llama`, which turns off llama.cpp's extra CPU buffer types on
CPUs advertising Intel AMX: there the AMX matrix multiply of the bundled llama.cpp crashes the
process (SIGSEGV in `ggml_backend_amx_mul_mat`) for Q4_0/Q4_1/Q8_0/K-quant weights. See
app/system/cpu.py. llama.cpp's own log lines go to the app's log file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def open_llama(model_path: Path | str, **kwargs: Any):  # -> llama_cpp.Llama
    """`llama_cpp.Llama(model_path, ...)`, AMX-safe, quiet by default."""
    from qwq_chat.app.engines.llama_engine import load_llama, route_llama_logs

    route_llama_logs()  # llama.cpp's chatter goes to the log file, not the terminal
    kwargs.setdefault("verbose", False)
    return load_llama(model_path=str(model_path), **kwargs)
