"""llama.cpp's own sources and tools, as references for the convert tests and benchmarks.

The llama-cpp-python sdist (the version installed here) carries llama.cpp under `vendor/llama.cpp`:
its HF converter (`convert_hf_to_gguf.py` with its `conversion/` package and `gguf-py`) and the
sources of `llama-imatrix`, `llama-quantize`, `llama-perplexity`. The sdist is looked for in
`.test-cache/sdist/` (tarball or extracted) and downloaded there once with pip when absent; a test
that needs it is skipped, saying why, only if that download fails. Building the tools takes about
12 minutes on 2 cores, so only benchmarks and opt-in tests (QWQ_LLAMA_TOOLS=1) do it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import _cache_root, cached_build

TOOL_TARGETS = ("llama-imatrix", "llama-quantize", "llama-perplexity", "llama-gguf-split")


def sdist_version() -> str:
    """The llama-cpp-python version installed: its sdist holds the matching llama.cpp."""
    return version("llama-cpp-python")


def _sdist_root() -> Path:
    root = _cache_root() / "sdist"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _tarball(ver: str) -> Path:
    """The sdist tarball in the cache, downloaded with pip on first use (skip if that fails)."""
    root = _sdist_root()
    tarball = root / f"llama_cpp_python-{ver}.tar.gz"
    if tarball.is_file():
        return tarball
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         f"llama-cpp-python=={ver}", "-d", str(root)],
        capture_output=True,
        text=True,
        timeout=1800,
    )  # fmt: skip
    if proc.returncode != 0 or not tarball.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        pytest.skip(
            f"llama.cpp's sources are needed (llama-cpp-python {ver} sdist) and pip could not "
            f"download them into {root}: {tail[0]}"
        )
    return tarball


def llama_cpp_source() -> Path:
    """`vendor/llama.cpp` of the llama-cpp-python sdist matching the installed version."""
    ver = sdist_version()
    name = f"llama_cpp_python-{ver}"
    extracted = _sdist_root() / name / "vendor" / "llama.cpp"
    if extracted.is_dir():
        return extracted

    def extract(tmp: Path) -> None:
        prefix = f"{name}/vendor/llama.cpp/"
        with tarfile.open(_tarball(ver)) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(prefix)]
            tar.extractall(tmp, members=members, filter="data")
        # The archive's top folder is `name`: move its content up into the build folder.
        inner = tmp / name
        for item in inner.iterdir():
            item.rename(tmp / item.name)
        inner.rmdir()

    return cached_build(f"sdist/{name}", extract) / "vendor" / "llama.cpp"


def _sentencepiece_shim() -> Path:
    """An importable `sentencepiece` for machines without it. The converter imports it before
    looking for `tokenizer.model`; BPE checkpoints like Qwen2's have none, so it raises
    FileNotFoundError and takes its gpt2 path without ever using the class (as with the real one).
    """

    def build(tmp: Path) -> None:
        (tmp / "sentencepiece").mkdir()
        (tmp / "sentencepiece" / "__init__.py").write_text(
            "class SentencePieceProcessor:  # never instantiated for BPE checkpoints\n"
            "    def __init__(self, *a, **k):\n"
            "        raise ImportError('sentencepiece is not installed')\n"
        )

    return cached_build("sentencepiece-shim", build)


def run_llama_converter(checkpoint: Path, out: Path, outtype: str = "bf16") -> Path:
    """Convert `checkpoint` with llama.cpp's own convert_hf_to_gguf.py (its gguf-py first)."""
    src = llama_cpp_source()
    paths = [str(src / "gguf-py"), str(src)]
    if importlib.util.find_spec("sentencepiece") is None:
        paths.append(str(_sentencepiece_shim()))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    proc = subprocess.run(
        [sys.executable, str(src / "convert_hf_to_gguf.py"), str(checkpoint),
         "--outfile", str(out), "--outtype", outtype],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def llama_tools() -> Path:
    """A folder with llama.cpp's llama-imatrix, llama-quantize, llama-perplexity, llama-gguf-split
    built from the sdist (CPU, static; cached). On CPUs with AMX run them with `--no-repack`."""
    if shutil.which("cmake") is None or shutil.which("ninja") is None:
        pytest.skip("building llama.cpp's tools needs cmake and ninja on PATH")
    ver = sdist_version()
    src = llama_cpp_source()
    build_dir = _cache_root() / f"llama-tools-build-{ver}"  # kept: rebuilds are incremental

    def build(tmp: Path) -> None:
        subprocess.run(
            ["cmake", "-S", str(src), "-B", str(build_dir), "-G", "Ninja",
             "-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_OPENSSL=OFF",
             "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
             "-DLLAMA_BUILD_APP=OFF"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        subprocess.run(
            ["cmake", "--build", str(build_dir), "-j", str(os.cpu_count() or 2),
             "--target", *TOOL_TARGETS],
            check=True,
            capture_output=True,
        )  # fmt: skip
        for target in TOOL_TARGETS:
            shutil.copy2(build_dir / "bin" / target, tmp / target)

    return cached_build(f"llama-tools-{ver}", build)


def tools_opted_in() -> bool:
    """Tests that build llama.cpp's tools (minutes) run only when asked: QWQ_LLAMA_TOOLS=1."""
    return os.environ.get("QWQ_LLAMA_TOOLS", "") not in ("", "0")
