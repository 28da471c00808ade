"""The recipe's stages, run in order and each resumable: cold start (SFT), stage 1, stage 2 (GRPO).

Layout of a run directory:

    RUN/cold_start/checkpoint-N/   Trainer checkpoints (resume points, the last few kept)
    RUN/cold_start/final/          the stage's result (LoRA adapter, or full weights); its presence
                                   means "stage done" and the next `rl train` skips the stage
    RUN/stage1/..., RUN/stage2/...
    RUN/metrics.jsonl              one row per logged step, all stages
    RUN/tensorboard/<stage>/       TensorBoard event files
    RUN/plots/*.png                reward, accuracy and response-length curves
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwq_chat.rl_finetune.config import GRPOSection, RLConfig
from qwq_chat.rl_finetune.data import math_user_text, read_rows, render_prompt
from qwq_chat.rl_finetune.metrics import JsonlMetrics
from qwq_chat.rl_finetune.model import (
    check_gpu_options,
    load_policy,
    load_tokenizer,
    resolve_device,
    save_policy,
)

STAGES = ("cold_start", "stage1", "stage2")


def stage_dir(cfg: RLConfig, stage: str) -> Path:
    return cfg.output_dir / stage


def final_dir(cfg: RLConfig, stage: str) -> Path:
    return stage_dir(cfg, stage) / "final"


def last_checkpoint(directory: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not directory.is_dir():
        return None
    found = get_last_checkpoint(str(directory))
    return Path(found) if found else None


def enabled_stages(cfg: RLConfig) -> list[str]:
    return [s for s in STAGES if getattr(cfg, s).enabled]


def stage_input(cfg: RLConfig, stage: str) -> Path | None:
    """The weights a stage starts from: the previous enabled stage's final output, or the base."""
    previous = None
    for s in STAGES:
        if s == stage:
            return previous
        if getattr(cfg, s).enabled and final_dir(cfg, s).exists():
            previous = final_dir(cfg, s)
    return previous


def tokenizer_source(cfg: RLConfig) -> str:
    local = cfg.resolve(cfg.model.base)
    return str(local) if local.exists() else cfg.model.base


def _trainer_common(cfg: RLConfig, stage: str, device: str) -> dict[str, Any]:
    # transformers 5 reads the TensorBoard directory from the environment when the Trainer is built.
    os.environ["TENSORBOARD_LOGGING_DIR"] = str(cfg.output_dir / "tensorboard" / stage)
    return {
        "output_dir": str(stage_dir(cfg, stage)),
        "seed": cfg.run.seed,
        "data_seed": cfg.run.seed,
        "use_cpu": device == "cpu",
        "bf16": device == "cuda" and cfg.model.dtype in ("auto", "bfloat16"),
        "report_to": ["tensorboard"] if cfg.logging.tensorboard else [],
        "save_strategy": "steps",
        "save_total_limit": 2,
        "disable_tqdm": not cfg.logging.progress,
        "logging_first_step": True,
    }


# --- cold start -----------------------------------------------------------------------------------


def run_cold_start(cfg: RLConfig, callbacks: list[Any] | None = None) -> Path:
    """Supervised fine-tuning on `<think>` traces so the model writes QwQ's format.

    transformers' Trainer (checkpoints, resume, TensorBoard, progress bar) on pre-tokenised
    prompt+completion pairs with the loss on the completion only. (TRL's SFTTrainer does the same
    but was about 10x slower per step on CPU here, mostly in its extra full-vocabulary metrics.)
    """
    from transformers import TrainingArguments

    check_gpu_options(cfg)
    device = resolve_device(cfg)
    section = cfg.cold_start
    tok = load_tokenizer(tokenizer_source(cfg))
    rows = [r for src in section.data for r in read_rows(cfg.resolve(src), "trace")]
    if not rows:
        from qwq_chat.rl_finetune.config import ConfigError

        raise ConfigError(f"{cfg.source}: [cold_start] is enabled but cold_start.data is empty")
    # With tools in stage 1 the traces see the same `# Tools` block as the rollouts will.
    tools = [t.schema() for t in _chat_tools(cfg.stage1.tools)] if cfg.stage1.tools else None
    examples = [
        _sft_example(
            tok,
            render_prompt(tok, r["prompt"], cfg.run.system_prompt, tools),
            r["completion"] + tok.eos_token,
            section.max_length,
        )
        for r in rows
    ]
    args = TrainingArguments(
        **_trainer_common(cfg, "cold_start", device),
        num_train_epochs=section.epochs,
        max_steps=section.max_steps,
        learning_rate=section.learning_rate,
        per_device_train_batch_size=section.batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        save_steps=section.save_steps,
        logging_steps=1,
        lr_scheduler_type="constant",
        remove_unused_columns=False,
    )
    model = load_policy(cfg, None)
    trainer = _labelled_logits_trainer()(
        model=model,
        args=args,
        train_dataset=examples,
        data_collator=_PadCollator(tok.pad_token_id),
        callbacks=[
            JsonlMetrics(cfg.output_dir / "metrics.jsonl", "cold_start"),
            *(callbacks or []),
        ],
    )
    trainer.train(resume_from_checkpoint=_resume_point(cfg, "cold_start"))
    save_policy(trainer.model, tok, final_dir(cfg, "cold_start"))
    return final_dir(cfg, "cold_start")


# The turn QwQ's template inserts for tool results, up to the next reasoning opener: not the model's
# text, so out of the loss (as TRL's tool_mask does in GRPO).
_TOOL_TURN = re.compile(
    r"\n<\|im_start\|>user\n<tool_response>.*?</tool_response><\|im_end\|>\n"
    r"<\|im_start\|>assistant\n<think>\n",
    re.S,
)


def _chat_tools(names: list[str]) -> list[Any]:
    from qwq_chat.rl_finetune.agentic import chat_tools

    return chat_tools(names)


def _sft_example(tok: Any, prompt: str, completion: str, max_length: int) -> dict[str, list[int]]:
    """input_ids = prompt + completion; labels = -100 on the prompt and on tool-response turns
    (the loss is on the model's own tokens only). Segments are tokenised separately, as TRL
    concatenates them in tool rollouts."""
    p = tok(prompt, add_special_tokens=False).input_ids
    ids, labels = list(p), [-100] * len(p)
    pos = 0
    for m in [*_TOOL_TURN.finditer(completion), None]:
        own = completion[pos : m.start() if m else len(completion)]
        if own:
            c = tok(own, add_special_tokens=False).input_ids
            ids += c
            labels += c
        if m:
            t = tok(m.group(0), add_special_tokens=False).input_ids
            ids += t
            labels += [-100] * len(t)
            pos = m.end()
    return {"input_ids": ids[:max_length], "labels": labels[:max_length]}


def _labelled_logits_loss(model: Any, inputs: dict[str, Any]) -> Any:
    """Causal-LM loss computing logits only from the first labelled position on: with QwQ's
    152k-token vocabulary the logits of long prompts (a `# Tools` block) dominate a step."""
    import torch

    labels = inputs["labels"]
    n = labels.shape[1]
    labelled = (labels != -100).any(dim=0).nonzero()
    first = int(labelled[0]) if len(labelled) else n - 1
    keep = n - first + 1 if first > 0 else n
    out = model(
        input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=keep
    )
    logits = out.logits[:, :-1].float()
    target = labels[:, n - keep + 1 :]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
    )


def _labelled_logits_trainer() -> type:
    from transformers import Trainer

    class LabelledLogitsTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss = _labelled_logits_loss(model, inputs)
            return (loss, None) if return_outputs else loss

    return LabelledLogitsTrainer


class _PadCollator:
    """Right-pads a batch; padded positions are masked out of attention and loss."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        n = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), n), self.pad_id)
        labels = torch.full((len(batch), n), -100)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, b in enumerate(batch):
            k = len(b["input_ids"])
            ids[i, :k] = torch.tensor(b["input_ids"])
            labels[i, :k] = torch.tensor(b["labels"])
            mask[i, :k] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def _resume_point(cfg: RLConfig, stage: str) -> str | None:
    ckpt = last_checkpoint(stage_dir(cfg, stage))
    return str(ckpt) if ckpt else None


# --- GRPO stages ----------------------------------------------------------------------------------


def grpo_args(cfg: RLConfig, stage: str, section: GRPOSection, device: str) -> Any:
    """TRL GRPOConfig from our section (the published-recipe defaults live in config.py)."""
    from trl import GRPOConfig

    return GRPOConfig(
        **_trainer_common(cfg, stage, device),
        max_steps=section.max_steps,
        learning_rate=section.learning_rate,
        warmup_steps=section.warmup_steps,
        lr_scheduler_type=section.lr_scheduler,
        per_device_train_batch_size=section.batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        num_generations=section.num_generations,
        max_completion_length=section.max_completion_length,
        temperature=section.temperature,
        top_p=section.top_p,
        top_k=section.top_k,
        loss_type=section.loss_type,
        epsilon=section.epsilon,
        epsilon_high=section.epsilon_high,
        beta=section.beta,
        scale_rewards=section.scale_rewards,
        mask_truncated_completions=section.mask_truncated_completions,
        num_iterations=section.num_iterations,
        save_steps=section.save_steps,
        logging_steps=section.logging_steps,
        use_vllm=section.use_vllm,
        vllm_mode=section.vllm_mode,
        vllm_gpu_memory_utilization=section.vllm_gpu_memory_utilization,
        **({"max_tool_calling_iterations": section.max_tool_calls} if section.tools else {}),
        # Only when asked: transformers 5.24 warns on the (deprecated) name even when it is False.
        **({"gradient_checkpointing": True} if cfg.model.gradient_checkpointing else {}),
    )


def math_code_rows(cfg: RLConfig, section: Any, tok: Any) -> list[dict[str, Any]]:
    """Stage-1 prompts: math rows carry `answer`, code rows `tests` (+ `entry_point`); with
    tools, a row's optional `stdin` is what the python tool's programs read."""
    rows: list[dict[str, Any]] = []
    chat = bool(section.tools)
    for src in section.math_data:
        for r in read_rows(cfg.resolve(src), "math"):
            user = math_user_text(r["prompt"], cfg.run.math_suffix)
            rows.append(_row(tok, cfg, user, chat, answer=r["answer"], stdin=r.get("stdin")))
    for src in section.code_data:
        for r in read_rows(cfg.resolve(src), "code"):
            rows.append(
                _row(
                    tok,
                    cfg,
                    r["prompt"],
                    chat,
                    tests=r["tests"],
                    entry_point=r.get("entry_point"),
                    stdin=r.get("stdin"),
                )
            )
    return rows


def general_rows(cfg: RLConfig, section: Any, tok: Any) -> list[dict[str, Any]]:
    return [
        _row(tok, cfg, r["prompt"], bool(section.tools), constraints=r.get("constraints"))
        for src in section.general_data
        for r in read_rows(cfg.resolve(src), "general")
    ]


_COLUMNS = ("answer", "tests", "entry_point", "constraints", "stdin")


def _row(tok: Any, cfg: RLConfig, user: str, chat: bool = False, **columns: Any) -> dict[str, Any]:
    """Every row has every column (None where it doesn't apply) so datasets can hold a mix; the
    reward functions answer None for rows that aren't theirs. `chat`: the prompt as messages,
    which TRL renders itself with the tool schemas (tool rollouts need that)."""
    if chat:
        system = (
            [{"role": "system", "content": cfg.run.system_prompt}] if cfg.run.system_prompt else []
        )
        row: dict[str, Any] = {"prompt": [*system, {"role": "user", "content": user}]}
    else:
        row = {"prompt": render_prompt(tok, user, cfg.run.system_prompt)}
    for name in _COLUMNS:
        value = columns.get(name)
        # Nested lists/dicts go in as JSON text: Arrow can't hold mixed test shapes in one column,
        # and the verifiers parse JSON strings (as verl stores ground truth).
        row[name] = json.dumps(value) if isinstance(value, (list, dict)) else value
    return row


def stage_rewards(cfg: RLConfig, stage: str, rows: list[dict[str, Any]], sandbox_url: str | None):
    """Reward functions for a stage. Stage 1: math verifier + code server only (QwQ recipe)."""
    from qwq_chat.rl_finetune import rewards

    section = getattr(cfg, stage)
    funcs: list[Callable[..., Any]] = []
    if any(r["answer"] is not None for r in rows):
        if section.tools:
            from qwq_chat.rl_finetune.agentic import tool_accuracy_reward

            funcs.append(tool_accuracy_reward)
        else:
            funcs.append(rewards.math_accuracy_reward)
    if section.tools and section.malformed_call_penalty:
        from qwq_chat.rl_finetune.agentic import make_malformed_call_penalty

        funcs.append(make_malformed_call_penalty(section.malformed_call_penalty))
    if any(r["tests"] is not None for r in rows):
        funcs.append(rewards.make_code_reward(sandbox_url))
    if stage == "stage2":
        if "format" in section.rule_verifiers:
            funcs.append(rewards.format_reward)
        if "instructions" in section.rule_verifiers and any(r["constraints"] for r in rows):
            funcs.append(_json_constraints(rewards.instruction_reward))
        if section.reward_model:
            from qwq_chat.rl_finetune.reward_model import make_reward_model_reward

            funcs.append(
                make_reward_model_reward(
                    str(cfg.resolve(section.reward_model))
                    if cfg.resolve(section.reward_model).exists()
                    else section.reward_model,
                    weight=section.reward_model_weight,
                )
            )
    if section.overlong_buffer:
        funcs.append(
            rewards.make_soft_overlong_reward(
                section.max_completion_length, section.overlong_buffer
            )
        )
    return funcs


def _json_constraints(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The dataset holds constraints as JSON text (see `_row`); the rule verifier wants objects."""

    def wrapped(prompts: Any, completions: Any, constraints: Any = None, **kw: Any) -> Any:
        decoded = [json.loads(c) if isinstance(c, str) else c for c in (constraints or [])]
        return fn(prompts, completions, constraints=decoded or None, **kw)

    wrapped.__name__ = fn.__name__
    return wrapped


def stage_dataset(cfg: RLConfig, stage: str, tok: Any) -> list[dict[str, Any]]:
    section = getattr(cfg, stage)
    if stage == "stage1":
        rows = math_code_rows(cfg, section, tok)
    else:
        general = general_rows(cfg, section, tok)
        kept = math_code_rows(cfg, section, tok) or math_code_rows(cfg, cfg.stage1, tok)
        n_keep = round(
            len(general) * section.math_code_fraction / max(1e-9, 1 - section.math_code_fraction)
        )
        if section.math_code_fraction >= 1:
            n_keep = len(kept)
        rng = random.Random(cfg.run.seed)
        rows = general + (rng.sample(kept, min(n_keep, len(kept))) if kept else [])
    if not rows:
        from qwq_chat.rl_finetune.config import ConfigError

        raise ConfigError(f"{cfg.source}: [{stage}] is enabled but has no data rows")
    return rows


def run_grpo(
    cfg: RLConfig,
    stage: str,
    sandbox_url: str | None = None,
    callbacks: list[Any] | None = None,
    reward_funcs: list[Callable[..., Any]] | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> Path:
    """One GRPO stage with TRL; returns the stage's final directory."""
    from datasets import Dataset
    from trl import GRPOTrainer

    check_gpu_options(cfg)
    device = resolve_device(cfg)
    section: GRPOSection = getattr(cfg, stage)
    tok = load_tokenizer(tokenizer_source(cfg))
    rows = rows if rows is not None else stage_dataset(cfg, stage, tok)
    funcs = reward_funcs or stage_rewards(cfg, stage, rows, sandbox_url)
    model = load_policy(cfg, stage_input(cfg, stage))
    tool_kwargs: dict[str, Any] = {}
    trainer_cls = GRPOTrainer
    if section.tools:
        from qwq_chat.rl_finetune.agentic import environment_class, set_response_parser

        set_response_parser(tok)
        tool_kwargs["environment_factory"] = environment_class(section.tools)
        trainer_cls = _logging_trainer(GRPOTrainer, stage_dir(cfg, stage) / "rollouts.jsonl")
    trainer = trainer_cls(
        model=model,
        reward_funcs=funcs,
        args=grpo_args(cfg, stage, section, device),
        train_dataset=Dataset.from_list(rows),
        processing_class=tok,
        callbacks=[JsonlMetrics(cfg.output_dir / "metrics.jsonl", stage), *(callbacks or [])],
        **tool_kwargs,
    )
    trainer.train(resume_from_checkpoint=_resume_point(cfg, stage))
    save_policy(trainer.model, tok, final_dir(cfg, stage))
    return final_dir(cfg, stage)


def _logging_trainer(base: type, path: Path) -> type:
    """`base` that appends a few rollouts of every training batch to `path`: token ids, TRL's
    tool mask and the decoded text in and out of the loss (how the masking is checked)."""
    from qwq_chat.rl_finetune.agentic import batch_record

    class RolloutLoggingTrainer(base):  # type: ignore[misc, valid-type]
        def _generate_and_score_completions(self, inputs: Any) -> Any:
            output = super()._generate_and_score_completions(inputs)
            if self.model.training:
                path.parent.mkdir(parents=True, exist_ok=True)
                records = batch_record(
                    self.processing_class, output, int(self.state.global_step), inputs
                )
                with path.open("a", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(r) + "\n" for r in records)
            return output

    return RolloutLoggingTrainer
