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

from qwq_chat.rl_finetune import toy


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
data = ["{data["cold_start"]}"]
max_steps = 3
batch_size = 4
learning_rate = 1e-2
save_steps = 100

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
    data = toy.write_datasets(tmp_path / "data", n_cold=4, n_train=64)
    cfg = _config(tmp_path, base, data)
    cmd = [sys.executable, "-m", "qwq_chat.app", "rl", "train", str(cfg), "--no-eval"]
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

    # The run trained a LoRA adapter: export it as a GGUF adapter and apply it in llama.cpp on top
    # of the base GGUF, and also merged (fp32 merge -> bf16 GGUF); both load and generate.
    from qwq_chat.app.cli import cli
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint
    from qwq_chat.convert.llama_runtime import open_llama
    from typer.testing import CliRunner

    run = tmp_path / "run"
    r = CliRunner().invoke(cli, ["rl", "export", str(run), "--lora-gguf"])
    assert r.exit_code == 0, r.output + repr(r.exception)
    adapter = run / "export" / "adapter.gguf"
    assert adapter.read_bytes()[:4] == b"GGUF"
    base_gguf = convert_checkpoint(base, tmp_path / "base.gguf", outtype="bf16")
    r = CliRunner().invoke(cli, ["rl", "export", str(run)])
    assert r.exit_code == 0, r.output + repr(r.exception)
    merged = run / "export" / "model-bf16.gguf"
    import numpy as np

    prompt = "<|im_start|>user\nWhat is 12 times 0?<|im_end|>\n<|im_start|>assistant\n<think>\n"

    def last_logits(path: Path, **kwargs) -> np.ndarray:
        llm = open_llama(path, n_ctx=256, logits_all=True, **kwargs)
        ids = llm.tokenize(prompt.encode(), special=True)
        llm.eval(ids)
        out = np.array(llm.scores[len(ids) - 1], dtype=np.float64)
        del llm
        return out

    merged_logits = last_logits(merged)
    adapted_logits = last_logits(base_gguf, lora_path=str(adapter))
    plain_logits = last_logits(base_gguf)
    effect = float(np.abs(plain_logits - adapted_logits).max())
    rounding = float(np.abs(merged_logits - adapted_logits).max())
    print(f"adapter effect {effect:.4f}, merged vs base+adapter {rounding:.4f}")
    # The adapter changes the base (the cold start trained it), and merging it gives the same
    # model as applying it at load time, up to bf16 rounding of the merged weights.
    assert effect > 0.01
    assert rounding < 0.25 * effect
