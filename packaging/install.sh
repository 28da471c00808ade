#!/usr/bin/env bash
# Install qwq-chat with a llama.cpp build that matches this machine's GPU, then run `qwq-chat doctor`.
#
# Why: `pip install llama-cpp-python` compiles llama.cpp for the CPU unless CMAKE_ARGS says
# otherwise, and pip's wheel cache then keeps handing out that CPU build. The result is an install
# that works but leaves the GPU idle. This script picks the backend, builds llama-cpp-python for it
# without the cache, installs qwq-chat, and lets the doctor confirm GPU offload.
#
# Backend choice (first match wins; --cpu/--cuda/--metal override it):
#   Apple Silicon (Darwin arm64)          -> Metal  (CMAKE_ARGS=-DGGML_METAL=on)
#   CUDA toolkit (nvcc on PATH/CUDA_HOME) -> CUDA   (CMAKE_ARGS=-DGGML_CUDA=on)
#   nvidia-smi but no nvcc                -> CPU, and says how to get CUDA
#   nothing                               -> CPU
#
# Usage: packaging/install.sh [--dry-run] [--cpu|--cuda|--metal] [--venv DIR] [--from SPEC]
#                             [--python PYTHON] [--no-doctor]
set -euo pipefail

usage() {
  cat <<'EOF'
Install qwq-chat with GPU support for llama.cpp, then check the install with `qwq-chat doctor`.

Options:
  --dry-run        print what would be detected and run, change nothing
  --cpu|--cuda|--metal
                   force a backend instead of detecting one
  --venv DIR       install into this virtual environment (created if missing).
                   Default: the active one ($VIRTUAL_ENV), else ~/.local/share/qwq-chat/venv
                   with `qwq-chat` linked into ~/.local/bin
  --from SPEC      what to install: a checkout, a wheel, or a pip requirement
                   (default: the checkout this script lives in, else "qwq-chat")
  --python PYTHON  the Python (>= 3.11) that creates the venv (default: python3)
  --no-doctor      skip `qwq-chat doctor` at the end
EOF
}

DRY_RUN=0
BACKEND=""
VENV=""
SPEC=""
PYTHON="${PYTHON:-python3}"
RUN_DOCTOR=1
LLAMA_REQ="llama-cpp-python>=0.3.36"

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --cpu) BACKEND=cpu ;;
    --cuda) BACKEND=cuda ;;
    --metal) BACKEND=metal ;;
    --venv) VENV="${2:?--venv needs a directory}"; shift ;;
    --from) SPEC="${2:?--from needs a path or requirement}"; shift ;;
    --python) PYTHON="${2:?--python needs an interpreter}"; shift ;;
    --no-doctor) RUN_DOCTOR=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }

# Print a command (shell-quoted), and run it unless --dry-run.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  if [ "$DRY_RUN" = 0 ]; then
    "$@"
  fi
}

find_nvcc() {
  if command -v nvcc >/dev/null 2>&1; then
    command -v nvcc
  elif [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then
    echo "$CUDA_HOME/bin/nvcc"
  elif [ -n "${CUDA_PATH:-}" ] && [ -x "$CUDA_PATH/bin/nvcc" ]; then
    echo "$CUDA_PATH/bin/nvcc"
  fi
}

detect_backend() {
  local os arch nvcc
  os="$(uname -s)"
  arch="$(uname -m)"
  if [ "$os" = Darwin ]; then
    if [ "$arch" = arm64 ]; then
      say "Apple Silicon detected: building llama.cpp with Metal"
      BACKEND=metal
      return
    fi
    if [ "$(sysctl -n hw.optional.arm64 2>/dev/null || echo 0)" = 1 ]; then
      warn "this shell runs under Rosetta (x86_64) on Apple Silicon: Metal needs an arm64 Python."
      warn "run the script from an arm64 shell (arch -arm64 bash packaging/install.sh) for GPU support."
    fi
    say "Intel Mac: installing the CPU build of llama.cpp"
    BACKEND=cpu
    return
  fi
  nvcc="$(find_nvcc)"
  if [ -n "$nvcc" ]; then
    say "CUDA toolkit found ($nvcc): building llama.cpp with CUDA"
    if ! command -v nvidia-smi >/dev/null 2>&1; then
      warn "nvidia-smi not found: no NVIDIA driver here; the CUDA build runs only where a GPU is."
    fi
    BACKEND=cuda
    return
  fi
  if command -v nvidia-smi >/dev/null 2>&1; then
    warn "an NVIDIA GPU is present (nvidia-smi) but the CUDA toolkit (nvcc) is not installed,"
    warn "so llama.cpp can only be built for the CPU. For GPU offload, install the CUDA toolkit"
    warn "(https://developer.nvidia.com/cuda-downloads), put nvcc on PATH and run this again."
    say "falling back to the CPU build of llama.cpp"
    BACKEND=cpu
    return
  fi
  say "no GPU found: installing the CPU build of llama.cpp (a 32B model will be slow)"
  BACKEND=cpu
}

# --- Python -----------------------------------------------------------------------------------
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "install.sh: '$PYTHON' not found; install Python 3.11 or newer, or pass --python PATH" >&2
  exit 1
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "install.sh: $("$PYTHON" --version 2>&1) is too old; qwq-chat needs Python 3.11 or newer (--python PATH)" >&2
  exit 1
fi

# --- what to install --------------------------------------------------------------------------
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ -z "$SPEC" ]; then
  if [ -f "$SCRIPT_DIR/../pyproject.toml" ] && grep -q '^name = "qwq-chat"' "$SCRIPT_DIR/../pyproject.toml"; then
    SPEC="$(cd "$SCRIPT_DIR/.." && pwd)"
  else
    SPEC="qwq-chat"
  fi
fi

# --- where ------------------------------------------------------------------------------------
LINK_DIR=""
if [ -z "$VENV" ]; then
  if [ -n "${VIRTUAL_ENV:-}" ]; then
    VENV="$VIRTUAL_ENV"
  else
    VENV="${XDG_DATA_HOME:-$HOME/.local/share}/qwq-chat/venv"
    LINK_DIR="$HOME/.local/bin"
  fi
fi
VPY="$VENV/bin/python"

# --- backend ----------------------------------------------------------------------------------
if [ -z "$BACKEND" ]; then
  detect_backend
else
  say "backend forced: $BACKEND"
fi
case "$BACKEND" in
  cuda) CMAKE_ARGS_VALUE="-DGGML_CUDA=on" ;;
  metal) CMAKE_ARGS_VALUE="-DGGML_METAL=on" ;;
  cpu) CMAKE_ARGS_VALUE="" ;;
esac

say "installing $SPEC into $VENV"
if [ ! -x "$VPY" ]; then
  run "$PYTHON" -m venv "$VENV"
fi
run "$VPY" -m pip install --quiet --upgrade pip

if [ -n "$CMAKE_ARGS_VALUE" ]; then
  # Built first and without pip's cache: a cached CPU wheel of the same version would otherwise win.
  say "building llama-cpp-python with CMAKE_ARGS=$CMAKE_ARGS_VALUE (takes several minutes)"
  if [ "$BACKEND" = cuda ] && [ -z "$(command -v nvcc 2>/dev/null || true)" ]; then
    export CUDACXX
    CUDACXX="$(find_nvcc)"
  fi
  run env CMAKE_ARGS="$CMAKE_ARGS_VALUE" FORCE_CMAKE=1 "$VPY" -m pip install \
    --force-reinstall --no-deps --no-cache-dir --no-binary llama-cpp-python "$LLAMA_REQ"
fi
run "$VPY" -m pip install "$SPEC"

if [ -n "$LINK_DIR" ]; then
  run mkdir -p "$LINK_DIR"
  run ln -sf "$VENV/bin/qwq-chat" "$LINK_DIR/qwq-chat"
  case ":$PATH:" in
    *":$LINK_DIR:"*) ;;
    *) warn "$LINK_DIR is not on PATH; add it (export PATH=\"$LINK_DIR:\$PATH\")" ;;
  esac
fi

if [ "$RUN_DOCTOR" = 1 ]; then
  say "checking the install"
  status=0
  run "$VENV/bin/qwq-chat" doctor || status=$?
  if [ "$status" != 0 ]; then
    warn "qwq-chat doctor found a problem (see the 'fix:' lines above)."
    exit "$status"
  fi
fi
say "done: run qwq-chat"
