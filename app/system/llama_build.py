"""The llama.cpp build inside llama-cpp-python: its backends, GPU offload, and how to rebuild it.

The most common failure of llama-cpp-python installs is silent: a GPU in the machine and a CPU-only
build of llama.cpp. The engine's warning and `qwq-chat doctor` both name the exact reinstall
command built here.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any


def parse_system_info(info: str) -> list[str]:
    """Backend names from llama.cpp's system info, e.g. 'CUDA : ARCHS = 890 | CPU : AVX2 = 1 |'."""
    backends: list[str] = []
    for part in info.split("|"):
        if " : " in part:
            name = part.split(" : ", 1)[0].strip()
            if name and name not in backends:
                backends.append(name)
    return backends


def backends_from_libs(lib_dir: Path) -> list[str]:
    """Backends llama-cpp-python was built with, from its shared libraries (libggml-cuda.so...)."""
    known = {
        "cuda": "CUDA",
        "metal": "Metal",
        "vulkan": "Vulkan",
        "hip": "HIP",
        "sycl": "SYCL",
        "blas": "BLAS",
        "cpu": "CPU",
    }
    found = []
    if lib_dir.is_dir():
        for path in sorted(lib_dir.iterdir()):
            stem = path.name.removeprefix("lib").split(".")[0]
            if stem.startswith("ggml-") and stem[5:] in known and known[stem[5:]] not in found:
                found.append(known[stem[5:]])
    return found


def llama_cpp_info() -> dict[str, Any]:
    """Version, GPU offload flag and backends of the installed llama-cpp-python (import errors kept)."""
    try:
        import llama_cpp
    except Exception as exc:  # ImportError, or OSError from a broken shared library
        return {"installed": False, "error": f"{type(exc).__name__}: {exc}"}
    info: dict[str, Any] = {"installed": True, "version": getattr(llama_cpp, "__version__", "?")}
    try:
        info["gpu_offload"] = bool(llama_cpp.llama_supports_gpu_offload())
    except Exception as exc:
        info["gpu_offload"] = False
        info["error"] = f"llama_supports_gpu_offload failed: {exc}"
    try:
        raw = llama_cpp.llama_print_system_info()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except Exception:
        text = ""
    backends = parse_system_info(text)
    for name in backends_from_libs(Path(llama_cpp.__file__).parent / "lib"):
        if name not in backends:
            backends.append(name)
    info["backends"] = backends or ["CPU"]
    info["system_info"] = text.strip()
    return info


def offload_supported() -> bool:
    """True when the installed llama.cpp can put layers on a GPU (False when it is not installed)."""
    try:
        import llama_cpp

        return bool(llama_cpp.llama_supports_gpu_offload())
    except Exception:  # ImportError, or OSError from a broken shared library
        return False


def installed_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return None


def reinstall_command(backend: str, version: str | None = None) -> str:
    """The exact command that rebuilds llama-cpp-python for `backend` ("cuda" or "metal") here.

    From source (`--no-binary`), without pip's wheel cache (it would hand back the CPU build), into
    this interpreter's environment (the installed version unless `version` is given); `uv pip` where the environment has no pip (uv tool installs).
    """
    flag = {"cuda": "-DGGML_CUDA=on", "metal": "-DGGML_METAL=on"}[backend]
    version = version or installed_version()
    package = f"llama-cpp-python=={version}" if version and version != "?" else "llama-cpp-python"
    windows = os.name == "nt"
    python = f'"{sys.executable}"' if windows else shlex.quote(sys.executable)
    if _has_pip():
        installer = (
            f"{'& ' if windows else ''}{python} -m pip install --force-reinstall --no-cache-dir"
        )
    else:
        installer = (
            f"uv pip install --python {python} --reinstall-package llama-cpp-python --no-cache"
        )
    command = f"{installer} --no-deps --no-binary llama-cpp-python "
    if windows:
        return f'$env:CMAKE_ARGS="{flag}"; {command}"{package}"'
    return f'CMAKE_ARGS="{flag}" {command}{shlex.quote(package)}'


def _has_pip() -> bool:
    import importlib.util

    return importlib.util.find_spec("pip") is not None
