"""The CPU toy that shows RL learning: "What is 37 times 0?" answered in `\\boxed{}`.

What the toy can and cannot show: a model this small (hidden 64, 2 layers, plus QwQ's 152k-token
vocabulary) does not learn to copy digits from the prompt in a few minutes on two CPU cores (we
tried "which is larger: 3 or 8?": neither the cold start nor 40 GRPO steps got it to copy), so the
task's rule does not depend on the digits: anything times 0 is 0. What RL has to find is that rule,
from nothing but the math verifier's 0/1 reward, and it must hold on held-out multiplicands.

- cold start: 48 `<think>` traces teach QwQ's format (reasoning, `</think>`, a boxed answer) with a
  random digit in the box, so the model answers in format but right only about 1 time in 10 (A0);
- stage 1: GRPO with rewards ONLY from the math verifier (`qwq_chat.rl_finetune.verifiers.math.verify`);
  sampling hits 0 now and then, and the group-relative advantage pushes the policy towards it (A1).

The model is a Qwen2ForCausalLM with QwQ's tokenizer and chat format (vocab 152064, q/k/v biases,
untied head), only narrow and shallow, so the run exports to GGUF like the real thing.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from qwq_chat.rl_finetune.config import RLConfig


def question(n: int) -> str:
    return f"What is {n} times 0?"


def problems(seed: int, n_train: int, n_eval: int = 30) -> tuple[list[int], list[int]]:
    """Two-digit multiplicands; the held-out ones never appear in training."""
    rng = random.Random(seed)
    numbers = list(range(10, 100))
    rng.shuffle(numbers)
    held, seen = numbers[:n_eval], numbers[n_eval:]
    return [rng.choice(seen) for _ in range(n_train)], held


def write_datasets(
    out_dir: Path, seed: int = 0, n_cold: int = 48, n_train: int = 512
) -> dict[str, Path]:
    """cold_start.jsonl (traces with a random digit), train.jsonl, eval.jsonl (held out)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 1)
    train, held = problems(seed, n_train)
    files = {
        "cold_start": [
            {
                "prompt": question(n),
                "reasoning": "Multiply.",
                "answer": f"\\boxed{{{rng.randrange(10)}}}",
            }
            for n in train[:n_cold]
        ],
        "train": [{"prompt": question(n), "answer": "0"} for n in train],
        "eval": [{"prompt": question(n), "answer": "0"} for n in held],
    }
    paths = {}
    for name, rows in files.items():
        path = out_dir / f"{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[name] = path
    return paths


def build_toy_model(
    out_dir: Path,
    tokenizer_dir: Path | None = None,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
) -> Path:
    """A small randomly initialised Qwen2 with QwQ's tokenizer, saved in bf16 like QwQ-32B."""
    import torch
    from qwq_chat.convert.tiny_model import QWQ_VOCAB_SIZE
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = Qwen2Config(
        vocab_size=QWQ_VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
        rope_theta=1_000_000.0,
        tie_word_embeddings=False,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
    )
    config.architectures = ["Qwen2ForCausalLM"]
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    with torch.no_grad():
        # Unit-scale token embeddings: with the default std 0.02 the token identity is drowned in
        # the residual stream of so narrow a model and the cold start learns the format far slower.
        model.get_input_embeddings().weight.normal_(0.0, 1.0)
    model = model.to(torch.bfloat16)
    model.generation_config = GenerationConfig(
        bos_token_id=151643, eos_token_id=[151645, 151643], pad_token_id=151643
    )
    model.save_pretrained(str(out_dir))
    if tokenizer_dir is not None:
        for f in Path(tokenizer_dir).iterdir():
            if f.name.startswith(("tokenizer", "vocab", "merges", "special_tokens")):
                shutil.copy(f, out_dir / f.name)
    else:
        from qwq_chat.convert.qwen_tokenizer import write_tokenizer_files

        write_tokenizer_files(out_dir)
    return out_dir


def toy_config(run_dir: Path, base: Path, data: dict[str, Path], **overrides: Any) -> RLConfig:
    """Settings that make the toy learn in minutes on 2 CPU cores (fixed seed)."""
    cfg = RLConfig.model_validate(
        {
            "model": {
                "base": str(base),
                "finetune": "full",
                "device": "cpu",
                "dtype": "float32",
                "freeze_embeddings": True,
            },
            "run": {"output_dir": str(run_dir), "seed": 0, "math_suffix": ""},
            "cold_start": {
                "data": [str(data["cold_start"])],
                "epochs": 5,
                "learning_rate": 1e-2,
                "batch_size": 8,
                "max_length": 128,
                "save_steps": 1000,
            },
            "stage1": {
                "math_data": [str(data["train"])],
                "max_steps": 20,
                "learning_rate": 3e-3,
                "batch_size": 16,
                "num_generations": 8,
                "max_completion_length": 16,
                "temperature": 0.7,
                "save_steps": 10,
            },
            "stage2": {"enabled": False},
            "eval": {
                "data": [str(data["eval"])],
                "k": 4,
                "temperature": 0.7,
                "top_p": 1.0,
                "max_new_tokens": 16,
            },
            "logging": {"tensorboard": True, "plots": True, "progress": True},
        }
    )
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        setattr(getattr(cfg, section), key, value)
    return cfg


# --- the code toy: rewards from the real code execution server ------------------------------------

CODE_PROMPT = "Read a sum like {a}+{b} from stdin and print its value. Use Python."
CODE_RIGHT = "print(eval(input()))"
CODE_WRONG = "print(input())"


def code_completion(program: str) -> dict[str, str]:
    return {"reasoning": "Compare.", "answer": f"```python\n{program}\n```"}


def write_code_datasets(
    out_dir: Path, seed: int = 0, n_cold: int = 32, n_train: int = 128
) -> dict[str, Path]:
    """Code rows with stdin/expected-stdout tests; the cold start shows a right and a wrong program
    half and half, so the sandbox's pass fraction is what tells RL which one to keep."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)

    def row() -> dict[str, Any]:
        a, b = rng.randrange(10, 99), rng.randrange(10, 99)
        tests = [{"stdin": f"{a}+{b}\n", "expected_stdout": f"{a + b}\n"}]
        for _ in range(2):
            x, y = rng.randrange(100), rng.randrange(100)
            tests.append({"stdin": f"{x}+{y}\n", "expected_stdout": f"{x + y}\n"})
        return {"prompt": CODE_PROMPT.format(a=a, b=b), "tests": tests}

    cold = [
        {"prompt": row()["prompt"], **code_completion(CODE_RIGHT if i % 2 else CODE_WRONG)}
        for i in range(n_cold)
    ]
    paths = {"cold_start": out_dir / "code_cold_start.jsonl", "train": out_dir / "code_train.jsonl"}
    paths["cold_start"].write_text("".join(json.dumps(r) + "\n" for r in cold), encoding="utf-8")
    paths["train"].write_text(
        "".join(json.dumps(row()) + "\n" for _ in range(n_train)), encoding="utf-8"
    )
    return paths


def code_toy_config(run_dir: Path, base: Path, data: dict[str, Path], **overrides: Any) -> RLConfig:
    """Cold start on the two programs, then stage 1 with only the code reward (sandbox 'auto')."""
    cfg = toy_config(
        run_dir,
        base,
        {"cold_start": data["cold_start"], "train": data["train"], "eval": data["train"]},
    )
    cfg.stage1.math_data = []
    cfg.stage1.code_data = [str(data["train"])]
    cfg.stage1.max_completion_length = 24
    cfg.stage1.max_steps = 8
    cfg.stage1.batch_size = 16
    cfg.eval.data = []
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        setattr(getattr(cfg, section), key, value)
    return cfg


# --- the tool toy: the answer is data only the python tool can read --------------------------------
#
# Each row hides a digit on the python tool's standard input, written DIGIT_REPEATS times; the
# question asks which digit it is. The model never sees stdin, so alone it can only guess (about 1
# in 10); one fixed-shape call (TOOL_PROGRAM, the same for every row) makes the sandbox print the
# run of digits, and the model answers with that digit. Why a run and not one digit: copying a
# single token from a fixed distance back needs an induction-like attention circuit, which a model
# this small forms only after hundreds of steps (docs/rl.md, "The tool toy"); a long run of the
# digit is a large share of the context, so it reaches the answer position through attention that
# is still broad, and the cold start learns to read it within tens of steps. The cold start shows
# the call in half of its traces and a guess in the other half, so RL has to find out from the
# verifier's reward alone that calling pays.

TOOL_PROMPT = (
    "A digit is written many times on the python tool's standard input. Which digit is it?"
)
TOOL_PROGRAM = "print(input())"
TOOL_NAMES = ["python"]
DIGIT_REPEATS = 96


def tool_answer(stdin: str) -> str:
    return stdin[-1]


def tool_call_text(program: str = TOOL_PROGRAM) -> str:
    """The call as QwQ writes it (the chat template's <tool_call> JSON)."""
    return (
        "<tool_call>\n"
        + json.dumps({"name": "python", "arguments": {"code": program}})
        + "\n</tool_call>"
    )


def tool_trace(result: str, answer: str) -> str:
    """A cold-start completion that calls the tool: reasoning, the call, the (masked) tool turn
    exactly as QwQ's template renders it, then the answer read from the result."""
    return (
        "Run it.\n</think>\n\n"
        + tool_call_text()
        + "<|im_end|>\n<|im_start|>user\n<tool_response>\n"
        + result
        + "\n</tool_response><|im_end|>\n<|im_start|>assistant\n<think>\n"
        + f"</think>\n\n\\boxed{{{answer}}}"
    )


def write_tool_datasets(
    out_dir: Path, seed: int = 0, n_cold: int = 96, n_train: int = 256, n_eval: int = 30
) -> dict[str, Path]:
    """tool_cold_start.jsonl (half calls, half guesses), tool_train.jsonl, tool_eval.jsonl."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed + 7)

    def row() -> dict[str, str]:
        stdin = str(rng.randrange(10)) * DIGIT_REPEATS
        return {"prompt": TOOL_PROMPT, "answer": tool_answer(stdin), "stdin": stdin}

    eval_rows = [row() for _ in range(n_eval)]
    train_rows = [row() for _ in range(n_train)]
    cold = []
    for i, r in enumerate(train_rows[:n_cold]):
        completion = (
            tool_trace(r["stdin"], r["answer"])
            if i % 2 == 0
            else f"Guess.\n</think>\n\n\\boxed{{{rng.randrange(10)}}}"
        )
        cold.append({"prompt": r["prompt"], "completion": completion})
    files = {"cold_start": cold, "train": train_rows, "eval": eval_rows}
    paths = {}
    for name, rows in files.items():
        path = out_dir / f"tool_{name}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        paths[name] = path
    return paths


def tool_toy_config(run_dir: Path, base: Path, data: dict[str, Path], **overrides: Any) -> RLConfig:
    """The toy recipe with the python tool in stage 1 and in the eval."""
    cfg = toy_config(run_dir, base, data)
    cfg.cold_start.max_length = 448
    cfg.cold_start.epochs = 10
    cfg.stage1.tools = list(TOOL_NAMES)
    cfg.stage1.max_tool_calls = 2
    cfg.stage1.max_completion_length = 176  # the call, the tool's run of digits, the answer
    cfg.stage1.max_steps = 12
    cfg.eval.tools = list(TOOL_NAMES)
    cfg.eval.max_tool_calls = 2
    cfg.eval.max_new_tokens = 176
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        setattr(getattr(cfg, section), key, value)
    return cfg
