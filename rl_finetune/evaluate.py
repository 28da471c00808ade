"""pass@1 and pass@k of a model on held-out prompts, for HF checkpoints and GGUF files alike.

The same prompts (QwQ's shipped chat template, ending in `<think>\\n`), the same sampling settings
and the same verifiers for both back ends, so a before-RL / after-stage-1 / after-stage-2 /
after-quantization comparison is one table. Results are appended to a JSONL file; the table shows
every row in it.

pass@1 is the mean correctness over the k samples of each prompt; pass@k uses the unbiased
estimator of Chen et al. (2021) with n = k samples, i.e. "any of the k samples is correct".
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qwq_chat.app.errors import UserError
from qwq_chat.rl_finetune.data import math_user_text, read_rows


@dataclass
class EvalResult:
    model: str
    data: str
    backend: str
    prompts: int
    k: int
    pass_at_1: float
    pass_at_k: float
    temperature: float
    label: str = ""
    seconds: float = 0.0
    tools: str = ""
    tool_call_rate: float | None = None  # share of samples that called a tool (tool evals only)
    samples: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("samples")
        return out


MATH_SUFFIX = "Please reason step by step, and put your final answer within \\boxed{}."


def load_eval_rows(paths: list[str | Path], limit: int | None = None) -> list[dict[str, Any]]:
    """Math rows ({prompt, answer}) and code rows ({prompt, tests}) from JSONL files."""
    rows: list[dict[str, Any]] = []
    for p in paths:
        first = _first_row(Path(p))
        kind = "code" if "tests" in first else "math"
        for r in read_rows(p, kind):
            r["kind"] = kind
            rows.append(r)
    return rows[:limit] if limit else rows


def _first_row(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"{path}: evaluation data not found (a JSONL file of {{prompt, answer}})")
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                try:
                    return json.loads(line)
                except json.JSONDecodeError:
                    return {}
    return {}


def user_text(row: dict[str, Any], math_suffix: str = MATH_SUFFIX) -> str:
    return math_user_text(row["prompt"], math_suffix) if row["kind"] == "math" else row["prompt"]


def score(row: dict[str, Any], completion: str, sandbox_url: str | None) -> float:
    if row["kind"] == "math":
        from qwq_chat.rl_finetune.verifiers.math import verify

        return verify(completion, row["answer"])
    from qwq_chat.rl_finetune.rewards import compute_score

    if not sandbox_url:
        raise UserError("code rows need a sandbox: pass --sandbox-url (qwq-chat sandbox serve)")
    return compute_score(
        "code", completion, row["tests"], {"sandbox_url": sandbox_url, **_entry(row)}
    )


def _math_scores(rows: list[dict[str, Any]], outputs: list[list[str]]) -> dict[int, list[float]]:
    """All math completions verified in one parallel batch (the verifier's worker pool)."""
    from qwq_chat.rl_finetune.verifiers.math import verify_batch

    pairs = [
        (i, c, row["answer"])
        for i, (row, cs) in enumerate(zip(rows, outputs, strict=True))
        if row["kind"] == "math"
        for c in cs
    ]
    flat = verify_batch([c for _, c, _ in pairs], [g for _, _, g in pairs]) if pairs else []
    out: dict[int, list[float]] = {}
    for (i, _, _), s in zip(pairs, flat, strict=True):
        out.setdefault(i, []).append(s)
    return out


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {"entry_point": row["entry_point"]} if row.get("entry_point") else {}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct (Chen et al. 2021)."""
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def evaluate(
    model: str | Path,
    data: list[str | Path],
    *,
    k: int = 4,
    temperature: float = 0.6,
    top_p: float = 0.95,
    top_k: int = 40,
    max_new_tokens: int = 1024,
    limit: int | None = None,
    seed: int = 0,
    sandbox_url: str | None = None,
    label: str = "",
    math_suffix: str = MATH_SUFFIX,
    batch_size: int = 64,
    progress: bool = False,
    tools: list[str] | None = None,
    max_tool_calls: int = 4,
) -> EvalResult:
    """Sample k completions per prompt and score them; HF dir or .gguf file. With `tools` (the
    chat's tool names) the model may call them: HF through a text tool loop in QwQ's format,
    GGUF through the chat's own Session and tool loop; the final answer is scored."""
    from qwq_chat.app.prompt import render

    rows = load_eval_rows(data, limit)
    schemas = _tool_schemas(tools)
    prompts = [
        render([{"role": "user", "content": user_text(r, math_suffix)}], tools=schemas)
        for r in rows
    ]
    path = Path(model)
    if not path.exists():
        raise UserError(f"{model}: no such checkpoint directory or GGUF file")
    start = time.time()
    sampling = dict(
        temperature=temperature, top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens
    )
    calls: list[list[int]] | None = None
    if tools:
        from qwq_chat.rl_finetune import tool_eval

        run = tool_eval.generate_gguf if path.suffix == ".gguf" else tool_eval.generate_hf
        backend = "llama.cpp" if path.suffix == ".gguf" else "transformers"
        texts = [user_text(r, math_suffix) for r in rows]
        outputs, calls = run(path, rows, texts, prompts, k, seed, tools, max_tool_calls, **sampling)
    elif path.suffix == ".gguf":
        backend = "llama.cpp"
        outputs = _generate_gguf(path, prompts, k, seed, **sampling)
    else:
        backend = "transformers"
        outputs = _generate_hf(path, prompts, k, seed, batch_size=batch_size, **sampling)
    samples, p1, pk = [], [], []
    math_scores = _math_scores(rows, outputs)
    for i, (row, completions) in enumerate(zip(rows, outputs, strict=True)):
        if row["kind"] == "math":
            scores = math_scores[i]
        else:
            scores = [score(row, c, sandbox_url) for c in completions]
        correct = sum(s >= 1.0 for s in scores)
        p1.append(sum(scores) / len(scores))
        pk.append(pass_at_k(len(scores), correct, k))
        samples.append({"prompt": row["prompt"], "completions": completions, "scores": scores})
    n = max(1, len(rows))
    return EvalResult(
        model=str(model),
        data=",".join(str(d) for d in data),
        backend=backend,
        prompts=len(rows),
        k=k,
        pass_at_1=sum(p1) / n,
        pass_at_k=sum(pk) / n,
        temperature=temperature,
        label=label,
        seconds=round(time.time() - start, 2),
        samples=samples,
        tools=",".join(tools or []),
        tool_call_rate=(
            sum(c > 0 for cs in calls for c in cs) / max(1, sum(len(cs) for cs in calls))
            if calls is not None
            else None
        ),
    )


def _tool_schemas(names: list[str] | None) -> list[dict[str, Any]] | None:
    if not names:
        return None
    from qwq_chat.rl_finetune.agentic import chat_tools

    return [t.schema() for t in chat_tools(names)]


def _generate_hf(
    path: Path, prompts: list[str], k: int, seed: int, *, batch_size: int, **sampling: Any
) -> list[list[str]]:
    import torch
    from qwq_chat.rl_finetune.model import load_for_inference, load_tokenizer

    torch.manual_seed(seed)
    model = load_for_inference(path)
    tok = load_tokenizer(path)
    tok.padding_side = "left"
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    max_new = sampling.pop("max_new_tokens")
    temperature = sampling.pop("temperature")
    gen_kwargs: dict[str, Any] = {"max_new_tokens": max_new, "eos_token_id": eos}
    if temperature > 0:
        gen_kwargs.update(do_sample=True, temperature=temperature, **sampling)
    else:
        gen_kwargs.update(do_sample=False)
    per_batch = max(1, batch_size // k)
    out: list[list[str]] = []
    with torch.no_grad():
        for i in range(0, len(prompts), per_batch):
            chunk = prompts[i : i + per_batch]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            ids = model.generate(
                **enc, num_return_sequences=k, pad_token_id=tok.pad_token_id, **gen_kwargs
            )
            texts = tok.batch_decode(ids[:, enc.input_ids.shape[1] :], skip_special_tokens=True)
            out.extend(texts[j * k : (j + 1) * k] for j in range(len(chunk)))
    return out


def _generate_gguf(
    path: Path, prompts: list[str], k: int, seed: int, **sampling: Any
) -> list[list[str]]:
    from qwq_chat.app.paths import log_dir
    from qwq_chat.convert.llama_runtime import open_llama

    log_dir().mkdir(parents=True, exist_ok=True)
    llm = open_llama(path, n_ctx=2048, seed=seed, logits_all=False, verbose=False)
    rng = random.Random(seed)
    out: list[list[str]] = []
    for prompt in prompts:
        completions = []
        for _ in range(k):
            llm.set_seed(rng.randrange(2**31))
            r = llm.create_completion(
                prompt,
                max_tokens=sampling["max_new_tokens"],
                temperature=sampling["temperature"],
                top_p=sampling["top_p"],
                top_k=sampling["top_k"],
                min_p=0.0,
                repeat_penalty=1.0,
                stop=["<|im_end|>", "<|endoftext|>"],
            )
            completions.append(r["choices"][0]["text"])
        out.append(completions)
    return out


def append_result(path: Path, result: EvalResult) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(result.row()) + "\n")


def read_results(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def format_table(rows: list[dict[str, Any]]) -> str:
    """One plain-text table: every evaluation so far, comparable line by line."""
    head = ["label", "model", "backend", "data", "n", "k", "pass@1", "pass@k", "tools", "calls"]
    lines = [
        [
            r.get("label") or "-",
            _short(r["model"]),
            r["backend"],
            _short(r["data"]),
            str(r["prompts"]),
            str(r["k"]),
            f"{r['pass_at_1']:.3f}",
            f"{r['pass_at_k']:.3f}",
            r.get("tools") or "-",
            "-" if r.get("tool_call_rate") is None else f"{r['tool_call_rate']:.2f}",
        ]
        for r in rows
    ]
    widths = [max(len(x) for x in col) for col in zip(head, *lines, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*line) for line in [head, *lines])


def _short(text: str, width: int = 48) -> str:
    return text if len(text) <= width else "…" + text[-(width - 1) :]
