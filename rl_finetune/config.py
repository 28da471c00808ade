"""The RL recipe's configuration: one TOML file, validated by pydantic.

Every field has a default taken from the published recipes (DAPO, DeepSeek-R1/QwQ, TRL's GRPO docs)
and a description; `qwq-chat rl train --help-config` prints them. A bad value is reported as a
`ConfigError` naming the file, the line and the field, so a user can fix it without reading a trace.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from qwq_chat.app.errors import UserError


class ConfigError(UserError):
    """An invalid config file or dataset row (message names file, line and field)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSection(_Section):
    base: str = Field(
        "Qwen/QwQ-32B",
        description="HF model id or local checkpoint directory to start from (the cold-start input).",
    )
    finetune: Literal["lora", "full", "qlora"] = Field(
        "lora",
        description="lora: peft adapters on a frozen base (default; 1/3 the memory of full); "
        "full: every weight trains; qlora: LoRA on a 4-bit bitsandbytes base (CUDA only).",
    )
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="Weights dtype; auto = bfloat16 on CUDA, float32 on CPU."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto uses CUDA when a GPU is visible, else the CPU."
    )
    gradient_checkpointing: bool = Field(
        False, description="Trade compute for memory (recommended for 32B on GPUs)."
    )
    freeze_embeddings: bool = Field(
        False,
        description="Full fine-tuning only: keep the input embeddings frozen (QwQ's 152k-row "
        "table is a large share of a small model's optimizer state; the CPU toy sets this).",
    )
    attn_implementation: str | None = Field(
        None, description="e.g. flash_attention_2 on CUDA; None lets transformers choose."
    )


class LoraSection(_Section):
    r: int = Field(16, gt=0, description="LoRA rank.")
    alpha: int = Field(32, gt=0, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout (0 keeps RL on-policy).")
    target_modules: list[str] = Field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
        description="Linear layers that get adapters (all attention and MLP projections).",
    )


class RunSection(_Section):
    output_dir: str = Field(
        "runs/qwq-rl",
        description="Where checkpoints, metrics.jsonl, TensorBoard logs and plots go "
        "(relative paths are relative to the config file).",
    )
    seed: int = Field(42, description="Seed for data order, sampling and initialisation.")
    system_prompt: str | None = Field(
        None, description="Optional system message put in front of every prompt."
    )
    math_suffix: str = Field(
        "Please reason step by step, and put your final answer within \\boxed{}.",
        description="Appended to math prompts (QwQ model card's instruction).",
    )


class ColdStartSection(_Section):
    enabled: bool = Field(True, description="Run supervised fine-tuning on reasoning traces first.")
    data: list[str] = Field(
        default_factory=list,
        description="JSONL files (or hf:REPO[:split]) of {prompt, reasoning, answer} or "
        "{prompt, completion} traces (completion = reasoning, '</think>', answer).",
    )
    epochs: float = Field(2.0, gt=0, description="Passes over the traces.")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: use epochs).")
    learning_rate: float = Field(1e-5, gt=0, description="AdamW learning rate.")
    batch_size: int = Field(8, gt=0, description="Sequences per device per step.")
    gradient_accumulation_steps: int = Field(1, gt=0, description="Steps per optimizer update.")
    max_length: int = Field(32768, gt=0, description="Truncate traces to this many tokens.")
    save_steps: int = Field(50, gt=0, description="Checkpoint every N steps (resume point).")


class GRPOSection(_Section):
    """GRPO settings shared by stage 1 and stage 2 (TRL GRPOTrainer)."""

    enabled: bool = Field(True, description="Run this stage.")
    max_steps: int = Field(500, gt=0, description="Optimizer steps in this stage.")
    learning_rate: float = Field(1e-6, gt=0, description="AdamW learning rate (DAPO: 1e-6).")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    lr_scheduler: str = Field("constant", description="transformers scheduler name.")
    batch_size: int = Field(
        16,
        gt=0,
        description="Completions per device per step; a multiple of num_generations "
        "(prompts per step = batch_size * grad_accum * devices / num_generations).",
    )
    gradient_accumulation_steps: int = Field(1, gt=0, description="Steps per optimizer update.")
    num_generations: int = Field(
        16, ge=2, description="Group size G: completions sampled per prompt (DAPO 16; 8-16 usual)."
    )
    max_prompt_length: int | None = Field(
        None, description="Drop prompts longer than this many tokens (None: keep all)."
    )
    max_completion_length: int = Field(
        16384, gt=0, description="Maximum generated tokens per completion (DAPO: 20480)."
    )
    temperature: float = Field(1.0, gt=0, description="Rollout sampling temperature (DAPO: 1.0).")
    top_p: float = Field(1.0, gt=0, le=1, description="Rollout nucleus sampling.")
    top_k: int = Field(0, ge=0, description="Rollout top-k (0: off).")
    loss_type: Literal["dapo", "grpo", "dr_grpo", "bnpo", "cispo", "sapo"] = Field(
        "dapo",
        description="dapo: token-level normalisation over the global batch (DAPO); grpo: per-"
        "sequence mean (original GRPO, length-biased); dr_grpo: constant normaliser (Dr. GRPO).",
    )
    epsilon: float = Field(0.2, gt=0, description="Lower clip range (PPO/GRPO: 0.2).")
    epsilon_high: float = Field(
        0.28,
        gt=0,
        description="Upper clip range, DAPO's clip-higher (0.28) against entropy collapse.",
    )
    beta: float = Field(
        0.0, ge=0, description="KL coefficient to the reference model (DAPO/Dr.GRPO: 0, no KL)."
    )
    scale_rewards: Literal["group", "batch", "none"] = Field(
        "group",
        description="Advantage scaling: group std (GRPO), batch std, or none (Dr. GRPO).",
    )
    mask_truncated_completions: bool = Field(
        True, description="Exclude completions cut at max_completion_length from the loss (DAPO)."
    )
    num_iterations: int = Field(1, gt=0, description="PPO epochs per generation batch (mu).")
    overlong_buffer: int = Field(
        0,
        ge=0,
        description="DAPO soft overlong punishment: penalise linearly over the last N tokens before "
        "max_completion_length (0: off; DAPO uses 4096).",
    )
    overlong_penalty: float = Field(1.0, ge=0, description="Largest overlong penalty.")
    save_steps: int = Field(25, gt=0, description="Checkpoint every N steps (resume point).")
    logging_steps: int = Field(1, gt=0, description="Log metrics every N steps.")
    use_vllm: bool = Field(False, description="Generate rollouts with vLLM (CUDA only).")
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="colocate: vLLM in the training process; server: `trl vllm-serve`."
    )
    vllm_gpu_memory_utilization: float = Field(
        0.3, gt=0, le=1, description="GPU memory share vLLM may take in colocate mode."
    )


class Stage1Section(GRPOSection):
    math_data: list[str] = Field(
        default_factory=list, description="JSONL files (or hf:REPO[:split]) of {prompt, answer}."
    )
    code_data: list[str] = Field(
        default_factory=list,
        description="JSONL files of {prompt, tests: [{stdin, expected_stdout} | {assert}], "
        "entry_point?} scored by the code execution server.",
    )
    sandbox_url: str = Field(
        "auto",
        description="Code execution server URL; 'auto' starts `qwq-chat sandbox serve` on a free "
        "port for the run.",
    )
    tools: list[str] = Field(
        default_factory=list,
        description="Tools the model may call during rollouts, by the chat's names (python, "
        "calculator): a call ends the turn, the tool runs, its result comes back as "
        "<tool_response> (masked from the loss) and generation continues. Empty: no tools.",
    )
    max_tool_calls: int = Field(
        4, gt=0, description="Tool-calling turns per rollout (TRL max_tool_calling_iterations)."
    )
    malformed_call_penalty: float = Field(
        0.0, ge=0, description="Subtracted from the reward of a rollout with an unreadable call."
    )


class Stage2Section(Stage1Section):
    max_steps: int = Field(50, gt=0, description="A short stage: a few dozen steps (QwQ recipe).")
    general_data: list[str] = Field(
        default_factory=list, description="JSONL files of {prompt, constraints?} general prompts."
    )
    reward_model: str | None = Field(
        None,
        description="HF id or path of a sequence-classification reward model; reasoning is "
        "stripped before scoring. None: rule verifiers only.",
    )
    reward_model_weight: float = Field(1.0, ge=0, description="Weight of the reward model score.")
    rule_verifiers: list[Literal["format", "instructions"]] = Field(
        default_factory=lambda: ["format", "instructions"],
        description="Rule rewards added in stage 2 (format: </think> then a non-empty answer; "
        "instructions: IFEval-style constraints of the row).",
    )
    math_code_fraction: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Share of stage-2 prompts drawn from the stage-1 math/code data so those "
        "skills do not drop.",
    )


class EvalSection(_Section):
    data: list[str] = Field(
        default_factory=list, description="Held-out JSONL files scored before and after each stage."
    )
    k: int = Field(4, gt=0, description="Samples per prompt (pass@1 is averaged over them).")
    temperature: float = Field(0.6, ge=0, description="Sampling temperature (QwQ card: 0.6).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling (QwQ card: 0.95).")
    max_new_tokens: int = Field(32768, gt=0, description="Generation limit per sample.")
    limit: int | None = Field(None, description="Only the first N rows (quick checks).")
    tools: list[str] = Field(
        default_factory=list,
        description="Score with the tool loop on (the chat's tool names, e.g. python, calculator).",
    )
    max_tool_calls: int = Field(4, gt=0, description="Tool-calling turns per sample.")


class LoggingSection(_Section):
    tensorboard: bool = Field(True, description="Also write TensorBoard event files.")
    plots: bool = Field(True, description="Write PNG plots when a stage ends.")
    progress: bool = Field(True, description="Show a progress bar with ETA.")


class EngineSection(_Section):
    name: Literal["trl", "verl"] = Field(
        "trl", description="trl: run here with TRL; verl: write a verl config and launch verl."
    )
    accelerate_config: str | None = Field(
        None,
        description="accelerate config for multi-GPU runs (shipped: assets/rl/accelerate/"
        "deepspeed_zero3.yaml, fsdp.yaml); used by `accelerate launch`.",
    )
    verl_nodes: int = Field(1, gt=0, description="verl: number of nodes.")
    verl_gpus_per_node: int = Field(8, gt=0, description="verl: GPUs per node.")
    verl_rollout_tp: int = Field(4, gt=0, description="verl: vLLM tensor parallel size.")


class RLConfig(_Section):
    """The whole file."""

    model: ModelSection = Field(default_factory=ModelSection)
    lora: LoraSection = Field(default_factory=LoraSection)
    run: RunSection = Field(default_factory=RunSection)
    cold_start: ColdStartSection = Field(default_factory=ColdStartSection)
    stage1: Stage1Section = Field(default_factory=Stage1Section)
    stage2: Stage2Section = Field(default_factory=Stage2Section)
    eval: EvalSection = Field(default_factory=EvalSection)
    logging: LoggingSection = Field(default_factory=LoggingSection)
    engine: EngineSection = Field(default_factory=EngineSection)

    # Where the file was read from; relative paths inside it resolve against this directory.
    source: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_groups(self) -> RLConfig:
        for name in ("stage1", "stage2"):
            stage: GRPOSection = getattr(self, name)
            total = stage.batch_size * stage.gradient_accumulation_steps
            if stage.enabled and total % stage.num_generations:
                raise ValueError(
                    f"{name}.batch_size * gradient_accumulation_steps ({total}) must be a multiple"
                    f" of num_generations ({stage.num_generations})"
                )
        return self

    def resolve(self, path: str) -> Path:
        """A path from the config, relative to the config file's directory."""
        p = Path(path).expanduser()
        if p.is_absolute() or self.source is None:
            return p
        return (self.source.parent / p).resolve()

    @property
    def output_dir(self) -> Path:
        return self.resolve(self.run.output_dir)


def load_config(path: str | Path) -> RLConfig:
    """Read and validate a TOML config; any problem becomes a ConfigError naming file:line and field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found; see assets/rl/configs/ for examples")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        cfg = RLConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        line = _line_of(text, loc)
        where = f"{path}:{line}" if line else str(path)
        field = ".".join(loc) or "(top level)"
        hint = "unknown field; check the spelling" if err["type"] == "extra_forbidden" else ""
        raise ConfigError(f"{where}: field {field}: {hint or err['msg']}") from None
    cfg.source = path.resolve()
    return cfg


def _line_of(text: str, loc: list[str]) -> int | None:
    """1-based line of `key` inside `[section]` (best effort; TOML parsers don't keep positions)."""
    if not loc:
        return None
    section, key = (loc[0], loc[-1]) if len(loc) > 1 else ("", loc[0])
    current = ""
    section_line = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        header = re.match(r"^\[([^\]]+)\]", line)
        if header:
            current = header.group(1).strip()
            if current == section:
                section_line = number
            continue
        if current == section and re.match(rf"^{re.escape(key)}\s*=", line):
            return number
    return section_line


def dump_defaults() -> str:
    """Every field with its default and description, as a commented TOML file."""
    lines = ["# qwq-chat rl config: every field, its default and what it does.", ""]
    for name, field in RLConfig.model_fields.items():
        if name == "source":
            continue
        section_cls = field.annotation
        lines.append(f"[{name}]")
        for key, sub in section_cls.model_fields.items():
            default = sub.get_default(call_default_factory=True)
            lines.append(f"# {sub.description}")
            lines.append(f"{key} = {_toml_value(default)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: object) -> str:
    import json

    if value is None:
        return '""  # unset'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)
