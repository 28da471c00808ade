"""`qwq-chat doctor` run as a real subprocess against this machine's real llama-cpp-python build.

The GPU cases put a stand-in `nvidia-smi` on PATH (this machine has no GPU): the doctor must then
notice that the installed llama.cpp build cannot use it and print the exact reinstall command.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import llama_cpp
import pytest
from qwq_chat.app import __version__, hub, paths
from qwq_chat.app.doctor import _path_size
from qwq_chat.app.system.gpu import Gpu, parse_nvidia_smi
from qwq_chat.app.system.llama_build import backends_from_libs, parse_system_info, reinstall_command

CPU_ONLY = not llama_cpp.llama_supports_gpu_offload()


def _version_or_none(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_doctor(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", "doctor", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def doctor_json(env: dict[str, str] | None = None) -> tuple[int, dict]:
    done = run_doctor("--json", env=env)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def by_name(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def fake_tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_doctor_reports_this_install(isolated_state: Path) -> None:
    code, report = doctor_json()
    checks = by_name(report)
    assert code == 0 and report["ok"] is True
    assert checks["qwq-chat"]["details"]["version"] == __version__
    llama = checks["llama-cpp-python"]
    assert llama["status"] == "ok"
    assert llama["details"]["version"] == importlib.metadata.version("llama-cpp-python")
    assert llama["details"]["gpu_offload"] is (not CPU_ONLY)
    assert "CPU" in llama["details"]["backends"]
    assert checks["python"]["details"]["version"].startswith(f"{sys.version_info[0]}.")
    assert checks["ram"]["details"]["total"] > 0
    # A fresh state dir has no models yet: a warning with the pull command, not a failure.
    assert checks["models"]["status"] == "warn"
    fix = checks["models"]["fix"]
    # The best QwQ-32B quant that fits this machine, or a remote server when none does.
    assert "qwq-chat models pull Qwen/QwQ-32B-GGUF --quant " in fix or "--backend openai" in fix
    assert checks["config"]["details"]["model"] is None
    training = checks["training"]
    assert training["details"]["packages"].get("torch") == _version_or_none("torch")
    assert training["status"] in ("ok", "info")


def test_doctor_lists_model_files_and_flags_broken_ones(
    isolated_state: Path, smollm_gguf: Path
) -> None:
    models = paths.models_dir()
    (models / "smol").mkdir()
    (models / "smol" / "smol.gguf").symlink_to(smollm_gguf)
    _, report = doctor_json()
    listed = by_name(report)["models"]
    assert listed["status"] == "ok"
    assert [Path(f["path"]).name for f in listed["details"]["files"]] == ["smol.gguf"]
    assert listed["details"]["files"][0]["size"] == smollm_gguf.stat().st_size

    (models / "partial.gguf").write_bytes(b"<html>not a model</html>")
    code, report = doctor_json()
    listed = by_name(report)["models"]
    assert code == 0
    assert listed["status"] == "warn" and "partial.gguf" in listed["summary"]


def test_doctor_checks_configured_model(isolated_state: Path, smollm_gguf: Path) -> None:
    code, report = doctor_json({"QWQ_CHAT_MODEL": str(smollm_gguf)})
    config = by_name(report)["config"]
    assert code == 0 and config["status"] == "ok"
    assert config["details"]["size"] == smollm_gguf.stat().st_size

    missing = isolated_state / "nowhere" / "QwQ-32B-Q4_K_M.gguf"
    code, report = doctor_json({"QWQ_CHAT_MODEL": str(missing)})
    config = by_name(report)["config"]
    assert code == 1 and report["ok"] is False
    assert config["status"] == "fail" and str(missing) in config["summary"]


def test_doctor_resolves_a_configured_hub_repo(isolated_state: Path, smollm_gguf: Path) -> None:
    code, report = doctor_json({"QWQ_CHAT_MODEL": "someone/Some-GGUF:Q4_1"})
    config = by_name(report)["config"]
    assert code == 0 and config["status"] == "info"
    assert "qwq-chat models pull someone/Some-GGUF --quant Q4_1" in config["summary"]

    # Once downloaded (and verified, as `models pull` leaves it), the doctor checks that file.
    download = hub.repo_dir("someone/Some-GGUF") / "some-model.Q4_1.gguf"
    download.parent.mkdir(parents=True)
    download.symlink_to(smollm_gguf)
    Path(str(download) + hub.VERIFIED_SUFFIX).touch()
    code, report = doctor_json({"QWQ_CHAT_MODEL": "someone/Some-GGUF:Q4_1"})
    config = by_name(report)["config"]
    assert code == 0 and config["status"] == "ok"
    assert config["details"]["path"] == str(download)
    assert config["details"]["size"] == smollm_gguf.stat().st_size
    listed = by_name(report)["models"]["details"]["files"]
    assert [(f["path"], f["verified"]) for f in listed] == [(str(download), True)]


def test_split_gguf_size_counts_every_part(tmp_path: Path) -> None:
    for i, size in enumerate((5, 7, 11), start=1):
        (tmp_path / f"qwq-32b-q8_0-{i:05d}-of-00003.gguf").write_bytes(b"x" * size)
    (tmp_path / "other.gguf").write_bytes(b"x" * 100)
    assert _path_size(tmp_path / "qwq-32b-q8_0-00001-of-00003.gguf") == 23


def test_doctor_fails_on_invalid_config(isolated_state: Path) -> None:
    (paths.config_dir() / "config.toml").write_text("n_ctx = [not toml\n")
    code, report = doctor_json()
    config = by_name(report)["config"]
    assert code == 1
    assert config["status"] == "fail" and "config.toml" in config["fix"]


@pytest.mark.skipif(not CPU_ONLY, reason="this llama-cpp-python build already has GPU offload")
def test_doctor_gpu_with_cpu_only_build_gives_reinstall_command(isolated_state: Path) -> None:
    bin_dir = isolated_state / "fakebin"
    fake_tool(bin_dir, "nvidia-smi", 'echo "NVIDIA H100 80GB HBM3, 81559, 80000, 580.65.06"\n')
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    code, report = doctor_json(env)
    gpu = by_name(report)["gpu"]
    assert code == 1
    assert gpu["status"] == "fail" and "CPU-only" in gpu["summary"]
    assert gpu["details"]["nvidia"][0]["name"] == "NVIDIA H100 80GB HBM3"
    version = importlib.metadata.version("llama-cpp-python")
    assert 'CMAKE_ARGS="-DGGML_CUDA=on"' in gpu["fix"]
    assert f"llama-cpp-python=={version}" in gpu["fix"]
    assert sys.executable in gpu["fix"] and "--force-reinstall" in gpu["fix"]

    # A CPU build of torch next to that GPU is pointed out too (a warning: chat does not need torch).
    training = by_name(report)["training"]
    torch_version = _version_or_none("torch")
    if torch_version and "+cpu" in torch_version:
        assert training["status"] == "warn"
        assert f'"torch=={torch_version.split("+")[0]}"' in training["fix"]

    # The human-readable report shows the same problem and fix, and also exits 1.
    done = run_doctor(env=env)
    assert done.returncode == 1
    assert "FAIL gpu" in done.stdout and "fix:" in done.stdout
    assert "1 problem(s): gpu" in done.stdout


def test_doctor_reports_a_failing_nvidia_smi(isolated_state: Path) -> None:
    bin_dir = isolated_state / "fakebin"
    fake_tool(
        bin_dir,
        "nvidia-smi",
        'echo "NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver." >&2\nexit 9\n',
    )
    code, report = doctor_json({"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    gpu = by_name(report)["gpu"]
    assert code == 0
    assert gpu["status"] == "warn" and "could not communicate" in gpu["summary"]


def test_parse_nvidia_smi_rows() -> None:
    out = "NVIDIA GeForce RTX 4090, 24564, 23012, 550.54.14\nTesla T4, [N/A], [N/A], 535.1\n"
    gpus = parse_nvidia_smi(out)
    assert [g.name for g in gpus] == ["NVIDIA GeForce RTX 4090", "Tesla T4"]
    assert (gpus[0].total_bytes, gpus[0].free_bytes) == (24564 * 2**20, 23012 * 2**20)
    assert gpus[1].total_bytes is None and gpus[1].driver == "535.1"


def test_backend_detection_from_system_info_and_libs(tmp_path: Path) -> None:
    info = "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | CPU : SSE3 = 1 | AVX2 = 1 | "
    assert parse_system_info(info) == ["CUDA", "CPU"]
    assert parse_system_info(llama_cpp.llama_print_system_info().decode())[0] in (
        "CPU",
        "CUDA",
        "Metal",
    )
    for name in ("libggml-base.so", "libggml-cpu.so", "libggml-cuda.so.0", "libllama.so"):
        (tmp_path / name).touch()
    assert backends_from_libs(tmp_path) == ["CPU", "CUDA"]
    real = backends_from_libs(Path(llama_cpp.__file__).parent / "lib")
    assert "CPU" in real and ("CUDA" in real) is (not CPU_ONLY)


def test_reinstall_command_for_metal() -> None:
    cmd = reinstall_command("metal", "0.3.36")
    assert "-DGGML_METAL=on" in cmd and "llama-cpp-python==0.3.36" in cmd


def test_doctor_fails_when_llama_cpp_cannot_be_imported(isolated_state: Path) -> None:
    # `sys.modules[name] = None` makes `import llama_cpp` raise ImportError, as a broken install does.
    code = "import sys; sys.modules['llama_cpp'] = None; sys.argv[0] = 'qwq-chat'; "
    code += "from qwq_chat.app.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    llama = by_name(report)["llama-cpp-python"]
    assert done.returncode == 1 and report["ok"] is False
    assert llama["status"] == "fail" and "cannot be imported" in llama["summary"]
    assert "install.sh" in llama["fix"]
    assert by_name(report)["gpu"]["status"] in ("info", "ok", "warn")  # no second, derived failure


def test_gpu_check_on_apple_silicon_and_in_the_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paths this Linux machine cannot take for real: a Mac, and the frozen binary."""
    import qwq_chat.app.doctor as doctor

    cpu_build = {"installed": True, "gpu_offload": False, "version": "0.3.36"}
    monkeypatch.setattr(doctor, "is_apple_silicon", lambda: True)
    check = doctor.check_gpu([], None, cpu_build)
    assert check.status == "fail" and "Metal" in check.summary
    assert 'CMAKE_ARGS="-DGGML_METAL=on"' in check.fix
    ok = doctor.check_gpu([], None, {**cpu_build, "gpu_offload": True})
    assert ok.status == "ok" and ok.details["apple_silicon"] is True

    monkeypatch.setattr(doctor, "is_apple_silicon", lambda: False)
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    h100 = Gpu("cuda", "NVIDIA H100", 81559 * 2**20, 80000 * 2**20, "580.65.06")
    check = doctor.check_gpu([h100], None, cpu_build)
    assert check.status == "fail" and "standalone binary is CPU-only" in check.fix
