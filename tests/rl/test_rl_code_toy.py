"""The second toy: stage 1 rewarded by the real code execution server (bubblewrap sandbox, started
by the run itself with sandbox_url = "auto"); the mean code reward rises within a few steps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from qwq_chat.rl_finetune import toy


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed")
def test_code_reward_from_the_sandbox_rises(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from qwq_chat.rl_finetune.pipeline import train

    base = toy.build_toy_model(tmp_path / "base", tiny_checkpoint)
    data = toy.write_code_datasets(tmp_path / "data")
    cfg = toy.code_toy_config(tmp_path / "run", base, data)
    cfg.logging.tensorboard = False
    assert cfg.stage1.sandbox_url == "auto"
    train(cfg, evaluate_stages=False)

    rows = [json.loads(x) for x in (cfg.output_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["stage"] == "stage1"]
    rewards = [r["reward/code_reward"] for r in steps]
    print("code reward per step:", [round(x, 2) for x in rewards])
    assert len(rewards) == cfg.stage1.max_steps
    # The cold start's outputs mix passing and failing programs: real verdicts, not a constant.
    assert rewards[0] < 0.9 and any(0.0 < r < 1.0 for r in rewards)
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.15, rewards
