"""Watching a run: TRL's per-step logs, renamed to a stable set, appended to metrics.jsonl.

TensorBoard gets the same numbers through the Trainer's own `report_to=["tensorboard"]`; the
progress bar with ETA is the Trainer's. This callback adds the JSONL file the plots (and any
script) read, with one row per logged step: stage, step, reward per verifier, accuracy, response
length (mean/max), truncation ratio, KL, entropy, clip ratio and zero-variance-group fraction;
with tools, the tool metrics (calls per rollout, share calling, errors, accuracy with/without).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

# TRL GRPOTrainer log key -> our name. Keys missing in a step (e.g. kl with beta=0) are left out.
_RENAME = {
    "reward": "reward",
    "reward_std": "reward_std",
    "completions/mean_length": "response_length_mean",
    "completions/max_length": "response_length_max",
    "completions/clipped_ratio": "truncation_ratio",
    "kl": "kl",
    "entropy": "entropy",
    "clip_ratio/region_mean": "clip_ratio",
    "clip_ratio/high_mean": "clip_ratio_high",
    "clip_ratio/low_mean": "clip_ratio_low",
    "frac_reward_zero_std": "zero_variance_group_fraction",
    "loss": "loss",
    "learning_rate": "learning_rate",
    "grad_norm": "grad_norm",
}

# Reward functions whose mean is the "accuracy" (a 0/1 verifier).
ACCURACY_REWARDS = ("math_accuracy_reward", "toy_accuracy_reward", "tool_accuracy_reward")


def normalise(logs: dict[str, Any]) -> dict[str, float]:
    """TRL's log dict -> our stable metric names (numbers only)."""
    out: dict[str, float] = {}
    for key, value in logs.items():
        if not isinstance(value, (int, float)):
            continue
        if key in _RENAME:
            out[_RENAME[key]] = float(value)
        elif key.startswith("tools/"):
            # Tool rollouts (agentic.py): tool_calls_per_rollout, tool_call_rate, tool_error_rate,
            # tool_malformed_rate, accuracy_with_tool / _without_tool; TRL's own call_frequency
            # and failure_frequency become tool_call_frequency / tool_failure_frequency.
            name = key[len("tools/") :]
            out[name if name.startswith(("tool", "accuracy")) else f"tool_{name}"] = float(value)
        elif key.startswith("rewards/") and key.endswith("/mean"):
            name = key[len("rewards/") : -len("/mean")]
            out[f"reward/{name}"] = float(value)
            if name in ACCURACY_REWARDS:
                out["accuracy"] = float(value)
    return out


class JsonlMetrics(TrainerCallback):
    """Appends one JSON object per logged step to `path` (survives resume: append-only)."""

    def __init__(self, path: Path, stage: str) -> None:
        self.path = Path(path)
        self.stage = stage
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any):
        if not logs or "train_runtime" in logs:
            return
        row = {"stage": self.stage, "step": int(state.global_step), "time": time.time()}
        row.update(normalise(logs))
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")


def read_metrics(path: Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
