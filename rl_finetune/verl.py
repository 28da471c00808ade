"""`rl train --engine verl`: for 32B runs that outgrow one machine, hand stage 1 to verl.

We write (1) parquet files in verl's RL dataset shape (prompt as chat messages, `data_source`,
`reward_model.ground_truth`, `extra_info` with our code server URL) and (2) a list of Hydra overrides
for `python -m verl.trainer.main_ppo` that point `custom_reward_function` at our
`rl_finetune/rewards.py:compute_score`, set GRPO with DAPO's settings from our config, and size the
cluster. The command is written to RUN/verl/launch.sh; when verl's files are present the run is first
checked against verl's own config (verl_check.py), and started only when not a dry run.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

from qwq_chat.app.errors import UserError
from qwq_chat.rl_finetune.config import RLConfig
from qwq_chat.rl_finetune.data import math_user_text, read_rows


def verl_rows(cfg: RLConfig, sandbox_url: str) -> list[dict[str, Any]]:
    """Stage-1 data in verl's shape: one dict per prompt."""
    rows: list[dict[str, Any]] = []
    section = cfg.stage1
    for src in section.math_data:
        for r in read_rows(cfg.resolve(src), "math"):
            rows.append(
                {
                    "data_source": "math",
                    "prompt": [
                        {
                            "role": "user",
                            "content": math_user_text(r["prompt"], cfg.run.math_suffix),
                        }
                    ],
                    "ability": "math",
                    "reward_model": {"style": "rule", "ground_truth": r["answer"]},
                    "extra_info": {"sandbox_url": sandbox_url, **_tools_kwargs(section, r)},
                }
            )
    for src in section.code_data:
        for r in read_rows(cfg.resolve(src), "code"):
            extra = {"sandbox_url": sandbox_url}
            if r.get("entry_point"):
                extra["entry_point"] = r["entry_point"]
            rows.append(
                {
                    "data_source": "code",
                    "prompt": [{"role": "user", "content": r["prompt"]}],
                    "ability": "code",
                    "reward_model": {"style": "rule", "ground_truth": json.dumps(r["tests"])},
                    "extra_info": extra,
                }
            )
    if not rows:
        raise UserError(f"{cfg.source}: [stage1] has no math_data or code_data for verl")
    return rows


def _tools_kwargs(section: Any, row: dict[str, Any]) -> dict[str, Any]:
    """verl's per-row tool arguments: the row's `stdin` for the python tool's programs."""
    if not section.tools:
        return {}
    stdin = row.get("stdin") or ""
    return {"tools_kwargs": {t: {"create_kwargs": {"stdin": stdin}} for t in section.tools}}


def verl_overrides(
    cfg: RLConfig, train_file: Path, val_file: Path, tool_config: Path | None = None
) -> list[str]:
    """Hydra overrides for verl's main_ppo (GRPO, DAPO clip-higher, our reward function)."""
    import qwq_chat.rl_finetune.rewards as rewards_module

    s = cfg.stage1
    engine = cfg.engine
    n_gpus = engine.verl_nodes * engine.verl_gpus_per_node
    prompts_per_step = max(
        1, s.batch_size * s.gradient_accumulation_steps * n_gpus // s.num_generations
    )
    lora = cfg.model.finetune in ("lora", "qlora")
    kv = {
        "algorithm.adv_estimator": "grpo",
        "algorithm.use_kl_in_reward": False,
        "algorithm.norm_adv_by_std_in_grpo": s.scale_rewards != "none",
        "data.train_files": str(train_file),
        "data.val_files": str(val_file),
        "data.prompt_key": "prompt",
        "data.train_batch_size": prompts_per_step,
        "data.max_prompt_length": s.max_prompt_length or 2048,
        "data.max_response_length": s.max_completion_length,
        "data.filter_overlong_prompts": True,
        "actor_rollout_ref.model.path": cfg.model.base,
        "actor_rollout_ref.model.enable_gradient_checkpointing": True,
        "actor_rollout_ref.actor.optim.lr": s.learning_rate,
        "actor_rollout_ref.actor.ppo_mini_batch_size": prompts_per_step,
        "actor_rollout_ref.actor.ppo_epochs": s.num_iterations,
        "actor_rollout_ref.actor.clip_ratio_low": s.epsilon,
        "actor_rollout_ref.actor.clip_ratio_high": s.epsilon_high,
        "actor_rollout_ref.actor.loss_agg_mode": {
            "dapo": "token-mean",
            "grpo": "seq-mean-token-mean",
            "dr_grpo": "seq-mean-token-sum-norm",
        }.get(s.loss_type, "token-mean"),
        "actor_rollout_ref.actor.use_kl_loss": s.beta > 0,
        "actor_rollout_ref.actor.kl_loss_coef": s.beta,
        "actor_rollout_ref.actor.strategy": "fsdp",
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": s.num_generations,
        "actor_rollout_ref.rollout.temperature": s.temperature,
        "actor_rollout_ref.rollout.top_p": s.top_p,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": engine.verl_rollout_tp,
        "actor_rollout_ref.rollout.gpu_memory_utilization": s.vllm_gpu_memory_utilization
        if s.vllm_gpu_memory_utilization > 0.3
        else 0.6,
        "reward.custom_reward_function.path": str(Path(rewards_module.__file__).resolve()),
        "reward.custom_reward_function.name": "compute_score",
        "reward.reward_model.enable": False,
        "trainer.n_gpus_per_node": engine.verl_gpus_per_node,
        "trainer.nnodes": engine.verl_nodes,
        "trainer.total_training_steps": s.max_steps,
        "trainer.save_freq": s.save_steps,
        "trainer.test_freq": s.save_steps,
        "trainer.default_local_dir": str(cfg.output_dir / "verl" / "checkpoints"),
        "trainer.project_name": "qwq-chat",
        "trainer.experiment_name": cfg.output_dir.name,
        "trainer.logger": "['console','tensorboard']",
        "trainer.resume_mode": "auto",
    }
    if lora:
        kv["actor_rollout_ref.model.lora_rank"] = cfg.lora.r
        kv["actor_rollout_ref.model.lora_alpha"] = cfg.lora.alpha
        kv["actor_rollout_ref.model.target_modules"] = "all-linear"
    if s.overlong_buffer:
        kv["reward.reward_manager.name"] = "dapo"
        kv["+reward.reward_kwargs.overlong_buffer_cfg.enable"] = True
        kv["+reward.reward_kwargs.overlong_buffer_cfg.len"] = s.overlong_buffer
        kv["+reward.reward_kwargs.overlong_buffer_cfg.penalty_factor"] = s.overlong_penalty
        kv["+reward.reward_kwargs.max_resp_len"] = s.max_completion_length
    if s.tools and tool_config is not None:
        # verl's multi-turn rollout (its tool_agent loop) with the chat's tools; QwQ's
        # <tool_call> JSON is the format verl calls "hermes".
        kv["actor_rollout_ref.rollout.multi_turn.enable"] = True
        kv["actor_rollout_ref.rollout.multi_turn.tool_config_path"] = str(tool_config)
        kv["actor_rollout_ref.rollout.multi_turn.max_assistant_turns"] = s.max_tool_calls + 1
        kv["actor_rollout_ref.rollout.multi_turn.format"] = "hermes"
        kv["actor_rollout_ref.rollout.agent.default_agent_loop"] = "tool_agent"
    return [f"{k}={_hydra(v)}" for k, v in kv.items()]


def write_tool_config(cfg: RLConfig, path: Path, sandbox_url: str) -> Path:
    """verl's multi-turn tool file: each stage-1 tool as `verl_tools.SandboxTool` with the chat's
    own schema (the one the model sees in `qwq-chat`)."""
    import yaml
    from qwq_chat.rl_finetune.agentic import chat_tools

    entries = [
        {
            "class_name": "qwq_chat.rl_finetune.verl_tools.SandboxTool",
            "config": {"type": "native", "tool": t.name, "sandbox_url": sandbox_url},
            "tool_schema": t.schema(),
        }
        for t in chat_tools(cfg.stage1.tools)
    ]
    path.write_text(yaml.safe_dump({"tools": entries}, sort_keys=False), encoding="utf-8")
    return path


def _hydra(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_verl_run(cfg: RLConfig, sandbox_url: str | None = None) -> Path:
    """Write RUN/verl/{train,val}.parquet, overrides.json and launch.sh; return launch.sh."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    url = sandbox_url or (cfg.stage1.sandbox_url if cfg.stage1.sandbox_url != "auto" else "")
    if (cfg.stage1.code_data or "python" in cfg.stage1.tools) and not url:
        raise UserError(
            "verl runs on other machines: set stage1.sandbox_url to a code server they can reach "
            "(start one there with `qwq-chat sandbox serve --host 0.0.0.0`)"
        )
    out = cfg.output_dir / "verl"
    out.mkdir(parents=True, exist_ok=True)
    rows = verl_rows(cfg, url)
    n_val = max(1, min(64, len(rows) // 20))
    train_file, val_file = out / "train.parquet", out / "val.parquet"
    pq.write_table(pa.Table.from_pylist(rows[n_val:] or rows), train_file)
    pq.write_table(pa.Table.from_pylist(rows[:n_val]), val_file)
    tool_config = (
        write_tool_config(cfg, out / "tool_config.yaml", url) if cfg.stage1.tools else None
    )
    overrides = verl_overrides(cfg, train_file, val_file, tool_config)
    (out / "overrides.json").write_text(json.dumps(overrides, indent=2))
    script = out / "launch.sh"
    env = f"QWQ_SANDBOX_URL={shlex.quote(url)} " if url else ""
    script.write_text(
        "#!/bin/sh\n# Written by `qwq-chat rl train --engine verl`; run on the Ray head node.\n"
        f"{env}exec python3 -m verl.trainer.main_ppo \\\n  "
        + " \\\n  ".join(shlex.quote(o) for o in overrides)
        + "\n"
    )
    script.chmod(0o755)
    return script


def launch_verl(cfg: RLConfig, dry_run: bool = False) -> Path:
    """Write the verl run; start it when verl is installed (and not a dry run)."""
    import importlib.util

    script = write_verl_run(cfg)
    print(f"verl launch script: {script}")
    if importlib.util.find_spec("verl") is not None:
        from qwq_chat.rl_finetune.verl_check import check_run

        check_run(script.parent)  # verl's own config, reward loader and tool schema accept it
        print("verl config check: ok")
    if dry_run:
        return script
    if importlib.util.find_spec("verl") is None:
        raise UserError(
            f"verl is not installed here; the run is written to {script}: copy the run directory "
            "to a CUDA cluster with verl (pip install verl[vllm]) and run that script"
        )
    subprocess.run([str(script)], check=True)
    return script
