"""Kill `qwq-chat rl train` mid-stage (SIGKILL, no clean-up) and run it again: it continues from the
last checkpoint instead of starting over, and finishes the stage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rl_finetune import toy


def _config(tmp_path: Path, base: Path, data: dict[str, Path]) -> Path:
    cfg = tmp_path / "resume.toml"
    cfg.write_text(
        f"""
[model]
base = "{base}"
finetune = "lora"
device = "cpu"
dtype = "float32"

[lora]
r = 4
alpha = 8

[run]
output_dir = "run"
math_suffix = ""

[cold_start]
enabled = false

[stage1]
math_data = ["{data["train"]}"]
max_steps = 8
save_steps = 2
batch_size = 8
num_generations = 4
max_completion_length = 8
learning_rate = 1e-3

[stage2]
enabled = false

[logging]
tensorboard = false
plots = false
progress = false
"""
    )
    return cfg


def test_killed_run_continues_from_its_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> None:
    base = toy.build_toy_model(tmp_path / "base", tiny_checkpoint)
    data = toy.write_datasets(tmp_path / "data", n_cold=4, n_train=64, n_eval=4)
    cfg = _config(tmp_path, base, data)
    cmd = [sys.executable, "-m", "app", "rl", "train", str(cfg), "--no-eval"]
    stage = tmp_path / "run" / "stage1"
    metrics = tmp_path / "run" / "metrics.jsonl"

    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 240
    try:
        while not (stage / "checkpoint-4" / "trainer_state.json").is_file():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint-4 within 240 s"
            time.sleep(0.2)
        time.sleep(0.5)  # let it get into step 5 or beyond
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (stage / "final").exists()
    rows_before = len(metrics.read_text().splitlines())
    killed_at = max(int(p.name.split("-")[1]) for p in stage.glob("checkpoint-*"))
    assert killed_at < 8

    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (stage / "final" / "adapter_config.json").is_file()
    state = json.loads((stage / "checkpoint-8" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    resumed = [json.loads(x) for x in metrics.read_text().splitlines()[rows_before:]]
    steps = [r["step"] for r in resumed if r["stage"] == "stage1"]
    assert steps and min(steps) > killed_at, (killed_at, steps)  # continued, not restarted

    # A third call finds the stage finished and does nothing.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0
    assert len(metrics.read_text().splitlines()) == rows_before + len(resumed)
