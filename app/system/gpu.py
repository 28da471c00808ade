"""The GPUs this machine has: NVIDIA cards through `nvidia-smi`, Apple Silicon's unified memory."""

from __future__ import annotations

import platform
import shutil
import subprocess
from dataclasses import dataclass

MIB = 1024**2
NVIDIA_SMI_QUERY = [
    "--query-gpu=name,memory.total,memory.free,driver_version",
    "--format=csv,noheader,nounits",
]
# Metal may wire about 3/4 of unified memory by default.
METAL_SHARE = 0.75


@dataclass(frozen=True)
class Gpu:
    kind: str  # "cuda" or "metal"
    name: str
    total_bytes: int | None  # None where the board does not report it ("[N/A]")
    free_bytes: int | None
    driver: str | None = None


def parse_nvidia_smi(output: str) -> list[Gpu]:
    """Rows of `nvidia-smi` with NVIDIA_SMI_QUERY (name, total MiB, free MiB, driver)."""

    def mib(text: str) -> int | None:
        try:
            return int(float(text)) * MIB
        except ValueError:  # "[N/A]" on some boards
            return None

    gpus = []
    for line in output.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) >= 3 and cells[0]:
            driver = cells[3] if len(cells) > 3 else None
            gpus.append(Gpu("cuda", cells[0], mib(cells[1]), mib(cells[2]), driver))
    return gpus


def nvidia_gpus() -> tuple[list[Gpu], str | None]:
    """GPUs nvidia-smi reports, and an error text when it is present but fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return [], None
    try:
        done = subprocess.run(
            [exe, *NVIDIA_SMI_QUERY], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [], f"nvidia-smi could not run: {exc}"
    if done.returncode != 0:
        message = (done.stderr or done.stdout).strip().splitlines()
        return [], f"nvidia-smi failed: {message[0] if message else f'exit {done.returncode}'}"
    return parse_nvidia_smi(done.stdout), None


def is_apple_silicon() -> bool:
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def apple_gpu() -> Gpu | None:
    """Apple Silicon's GPU, with the share of unified memory Metal may use."""
    if not is_apple_silicon():
        return None
    try:
        total = int(
            subprocess.run(
                ["sysctl", "-n", "hw.memsize"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return Gpu("metal", "Apple Silicon", total, int(total * METAL_SHARE))


def detect_gpu() -> Gpu | None:
    """The first NVIDIA GPU that reports its free memory, else Apple Silicon's; None without one."""
    gpus, _ = nvidia_gpus()
    for gpu in gpus:
        if gpu.free_bytes is not None:
            return gpu
    return apple_gpu()
