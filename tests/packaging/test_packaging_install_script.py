"""packaging/install.sh picks the llama.cpp backend from what the machine has.

Each case runs the real script in --dry-run mode with a PATH holding only the system directories and a
temp dir of stand-in tools (nvcc, nvidia-smi, uname), so the detection logic meets each kind of
machine. The real install path (a CPU install into a fresh venv) runs in test_packaging_release.py.
"""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packaging" / "install.sh"
SYSTEM_PATH = "/usr/bin:/bin"  # not /usr/local/bin: this machine has a real nvcc there


def shim(bin_dir: Path, name: str, body: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def fake_uname(bin_dir: Path, system: str, machine: str) -> None:
    shim(bin_dir, "uname", f'case "$1" in -m) echo {machine} ;; *) echo {system} ;; esac\n')


def install_dry_run(
    tmp_path: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    env = {
        "PATH": f"{bin_dir}:{SYSTEM_PATH}",
        "HOME": str(tmp_path / "home"),
        **(extra_env or {}),
    }
    return subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--dry-run",
            "--python",
            sys.executable,
            "--venv",
            str(tmp_path / "venv"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def pip_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("+") and "pip install" in line]


def test_cuda_toolkit_builds_with_ggml_cuda(tmp_path: Path) -> None:
    shim(tmp_path / "bin", "nvcc", "echo 'Cuda compilation tools, release 12.8'\n")
    shim(tmp_path / "bin", "nvidia-smi", "echo 'NVIDIA RTX 4090, 24564, 23000, 570.1'\n")
    done = install_dry_run(tmp_path)
    assert done.returncode == 0, done.stderr
    assert "building llama.cpp with CUDA" in done.stdout
    build, project = pip_lines(done.stdout)[1:]
    assert "CMAKE_ARGS=-DGGML_CUDA=on" in build and "--no-cache-dir" in build
    assert "--force-reinstall" in build and "llama-cpp-python" in build
    assert project.endswith(f"pip install {REPO}")
    assert "qwq-chat doctor" in done.stdout
    assert "nvidia-smi not found" not in done.stderr


def test_nvcc_without_driver_still_builds_cuda_but_warns(tmp_path: Path) -> None:
    shim(tmp_path / "bin", "nvcc", "exit 0\n")
    done = install_dry_run(tmp_path)
    assert done.returncode == 0
    assert any("-DGGML_CUDA=on" in line for line in pip_lines(done.stdout))
    assert "nvidia-smi not found" in done.stderr


def test_cuda_home_is_searched_when_nvcc_is_not_on_path(tmp_path: Path) -> None:
    cuda = tmp_path / "cuda-12.8"
    shim(cuda / "bin", "nvcc", "exit 0\n")
    done = install_dry_run(tmp_path, extra_env={"CUDA_HOME": str(cuda)})
    assert done.returncode == 0
    assert f"CUDA toolkit found ({cuda}/bin/nvcc)" in done.stdout
    assert any("-DGGML_CUDA=on" in line for line in pip_lines(done.stdout))


def test_gpu_without_cuda_toolkit_falls_back_to_cpu_with_a_clear_message(tmp_path: Path) -> None:
    shim(tmp_path / "bin", "nvidia-smi", "echo 'NVIDIA RTX 4090, 24564, 23000, 570.1'\n")
    done = install_dry_run(tmp_path)
    assert done.returncode == 0
    assert "CUDA toolkit (nvcc) is not installed" in done.stderr
    assert "falling back to the CPU build" in done.stdout
    assert not any("CMAKE_ARGS" in line for line in pip_lines(done.stdout))


def test_apple_silicon_builds_with_metal(tmp_path: Path) -> None:
    fake_uname(tmp_path / "bin", "Darwin", "arm64")
    shim(tmp_path / "bin", "nvcc", "exit 0\n")  # ignored on a Mac
    done = install_dry_run(tmp_path)
    assert done.returncode == 0
    assert "Apple Silicon detected" in done.stdout
    assert any("CMAKE_ARGS=-DGGML_METAL=on" in line for line in pip_lines(done.stdout))


def test_intel_mac_and_plain_linux_get_the_cpu_build(tmp_path: Path) -> None:
    fake_uname(tmp_path / "bin", "Darwin", "x86_64")
    shim(tmp_path / "bin", "sysctl", "echo 0\n")
    done = install_dry_run(tmp_path)
    assert done.returncode == 0 and "Intel Mac" in done.stdout
    assert not any("CMAKE_ARGS" in line for line in pip_lines(done.stdout))

    plain = tmp_path / "plain"
    plain.mkdir()
    done = install_dry_run(plain)
    assert done.returncode == 0 and "no GPU found" in done.stdout
    assert len(pip_lines(done.stdout)) == 2  # upgrade pip, install qwq-chat


def test_forced_backend_wins_over_detection(tmp_path: Path) -> None:
    shim(tmp_path / "bin", "nvcc", "exit 0\n")
    done = install_dry_run(tmp_path, "--cpu", "--no-doctor", "--from", "qwq-chat==0.1.0")
    assert done.returncode == 0 and "backend forced: cpu" in done.stdout
    assert not any("CMAKE_ARGS" in line for line in pip_lines(done.stdout))
    assert pip_lines(done.stdout)[-1].endswith("pip install qwq-chat==0.1.0")
    assert "doctor" not in done.stdout


def test_default_venv_is_linked_into_local_bin(tmp_path: Path) -> None:
    env = {"PATH": f"{tmp_path / 'bin'}:{SYSTEM_PATH}", "HOME": str(tmp_path / "home")}
    (tmp_path / "bin").mkdir()
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    venv = tmp_path / "home" / ".local" / "share" / "qwq-chat" / "venv"
    assert done.returncode == 0, done.stderr
    assert f"into {venv}" in done.stdout
    assert f"ln -sf {venv}/bin/qwq-chat {tmp_path}/home/.local/bin/qwq-chat" in done.stdout
    assert "is not on PATH" in done.stderr
    assert not venv.exists()  # a dry run changes nothing


def test_bad_python_and_bad_options_are_refused(tmp_path: Path) -> None:
    shim(tmp_path / "bin", "oldpython", "exit 1\n")
    done = install_dry_run(tmp_path, "--python", str(tmp_path / "bin" / "oldpython"))
    assert done.returncode == 1 and "needs Python 3.11 or newer" in done.stderr
    done = install_dry_run(tmp_path, "--rocm")
    assert done.returncode == 2 and "unknown option '--rocm'" in done.stderr


@pytest.mark.skipif(
    shutil.which("shellcheck") is None,
    reason="shellcheck not installed (apt-get install shellcheck)",
)
def test_install_sh_passes_shellcheck() -> None:
    done = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout


def test_powershell_installer_uses_the_same_build_flags() -> None:
    ps1 = (REPO / "packaging" / "install.ps1").read_text()
    sh = SCRIPT.read_text()
    for text in (
        '"-DGGML_CUDA=on"',
        '"--no-cache-dir"',
        '"--force-reinstall"',
        "-DryRun",
        "doctor",
    ):
        assert text in ps1
    sh_req = sh.split('LLAMA_REQ="', 1)[1].split('"', 1)[0]
    assert f'$LlamaReq = "{sh_req}"' in ps1
    # ... and the same llama-cpp-python requirement as the package itself.
    with (REPO / "pyproject.toml").open("rb") as fh:
        deps = tomllib.load(fh)["project"]["dependencies"]
    assert sh_req in deps


def test_active_virtualenv_is_used_and_nothing_is_linked(tmp_path: Path) -> None:
    active = tmp_path / "active-venv"
    (tmp_path / "bin").mkdir()
    env = {
        "PATH": f"{tmp_path / 'bin'}:{SYSTEM_PATH}",
        "HOME": str(tmp_path / "home"),
        "VIRTUAL_ENV": str(active),
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--python", sys.executable],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert f"into {active}" in done.stdout
    assert pip_lines(done.stdout)[-1].startswith(f"+ {active}/bin/python -m pip install")
    assert "ln -sf" not in done.stdout
