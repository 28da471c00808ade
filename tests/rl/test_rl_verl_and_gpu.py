"""--engine verl writes a correct verl run; CUDA-only options fail clearly here (no CUDA GPU)."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from qwq_chat.rl_finetune.config import RLConfig
from qwq_chat.rl_finetune.model import NoCudaError, check_gpu_options, cuda_available

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def _cfg(tmp_path: Path, **stage1) -> RLConfig:
    return RLConfig.model_validate(
        {
            "model": {"base": "Qwen/QwQ-32B", "finetune": "lora"},
            "run": {"output_dir": str(tmp_path / "run")},
            "stage1": {
                "math_data": [str(ASSETS / "datasets/math_sample.jsonl")],
                "code_data": [str(ASSETS / "datasets/code_sample.jsonl")],
                "sandbox_url": "http://10.0.0.5:8080",
                "overlong_buffer": 4096,
                **stage1,
            },
            "engine": {"name": "verl", "verl_nodes": 2, "verl_gpus_per_node": 8},
        }
    )


def test_verl_run_uses_our_reward_module_code_server_and_dapo_settings(tmp_path: Path) -> None:
    from qwq_chat.rl_finetune.verl import launch_verl

    cfg = _cfg(tmp_path)
    script = launch_verl(cfg, dry_run=True)
    overrides = dict(
        o.split("=", 1) for o in json.loads((script.parent / "overrides.json").read_text())
    )
    assert overrides["algorithm.adv_estimator"] == "grpo"
    assert overrides["actor_rollout_ref.actor.clip_ratio_high"] == "0.28"
    assert overrides["actor_rollout_ref.actor.clip_ratio_low"] == "0.2"
    assert overrides["actor_rollout_ref.actor.use_kl_loss"] == "false"
    assert overrides["actor_rollout_ref.actor.loss_agg_mode"] == "token-mean"
    assert overrides["actor_rollout_ref.rollout.n"] == "16"
    assert overrides["trainer.nnodes"] == "2" and overrides["trainer.n_gpus_per_node"] == "8"
    assert overrides["actor_rollout_ref.model.lora_rank"] == "16"
    assert overrides["+reward.reward_kwargs.overlong_buffer_cfg.len"] == "4096"
    reward_path = Path(overrides["reward.custom_reward_function.path"])
    assert reward_path.name == "rewards.py" and reward_path.is_file()
    assert overrides["reward.custom_reward_function.name"] == "compute_score"
    # The script is a shell command line with every override quoted.
    text = script.read_text()
    assert "python3 -m verl.trainer.main_ppo" in text
    assert "QWQ_SANDBOX_URL=http://10.0.0.5:8080" in text
    assert shlex.split(text.splitlines()[-1].strip().rstrip("\\"))

    rows = pq.read_table(overrides["data.train_files"]).to_pylist()
    rows += pq.read_table(overrides["data.val_files"]).to_pylist()
    assert len(rows) == 8 + 3
    math_row = next(r for r in rows if r["data_source"] == "math")
    code_row = next(r for r in rows if r["data_source"] == "code")
    assert (
        math_row["prompt"][0]["role"] == "user" and "\\boxed{}" in math_row["prompt"][0]["content"]
    )
    assert code_row["extra_info"]["sandbox_url"] == "http://10.0.0.5:8080"

    # verl imports the file by path and calls compute_score(data_source, solution, gt, extra_info).
    spec = importlib.util.spec_from_file_location("custom_reward", reward_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    gold = math_row["reward_model"]["ground_truth"]
    good = f"thinking...\n</think>\n\nThe answer is \\boxed{{{gold}}}."
    assert module.compute_score("math", good, gold, math_row["extra_info"]) == 1.0
    assert module.compute_score("math", "</think>\n\\boxed{12345}", gold, None) == 0.0


def test_verl_needs_a_reachable_code_server(tmp_path: Path) -> None:
    from qwq_chat.app.errors import UserError
    from qwq_chat.rl_finetune.verl import write_verl_run

    with pytest.raises(UserError, match="stage1.sandbox_url"):
        write_verl_run(_cfg(tmp_path, sandbox_url="auto"))


@pytest.mark.skipif(cuda_available(), reason="checks the CPU-machine error")
def test_qlora_and_vllm_say_they_need_cuda(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    cfg.model.finetune = "qlora"
    with pytest.raises(NoCudaError, match="needs a CUDA GPU.*finetune = 'lora'"):
        check_gpu_options(cfg)
    cfg.model.finetune = "lora"
    cfg.stage1.use_vllm = True
    with pytest.raises(NoCudaError, match="use_vllm = true needs a CUDA GPU"):
        check_gpu_options(cfg)


@pytest.mark.skipif(not cuda_available(), reason="no CUDA GPU")
def test_qlora_loads_a_4bit_base_on_cuda(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from qwq_chat.rl_finetune.model import load_policy

    cfg = _cfg(tmp_path)
    cfg.model.base = str(tiny_checkpoint)
    cfg.model.finetune = "qlora"
    cfg.model.device = "cuda"
    model = load_policy(cfg, None)
    assert any("4bit" in type(m).__name__ for m in model.modules())
