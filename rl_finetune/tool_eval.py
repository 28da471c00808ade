"""Sampling with the tool loop on, for `rl eval --tools` (the scoring is evaluate.py's).

HF checkpoints: a text loop in QwQ's format, batched per round (generate until `<|im_end|>`; a
turn with a `<tool_call>` gets the tool's result appended as the chat template renders it, then
generation continues). GGUF files: the chat's own `Session` over the llama.cpp engine, with the
same tools, so "after RL" is measured the way the chat uses the model. Both run the tools through
`agentic.toolbox` (the chat's tools; a row's `stdin` goes to the python tool's programs).

Each returns, per prompt, the k final answers (the text after the last tool response) and the
number of tool calls of each sample.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

_CALL = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)


def generate_hf(
    path: Path,
    rows: list[dict[str, Any]],
    texts: list[str],
    prompts: list[str],
    k: int,
    seed: int,
    tools: list[str],
    max_calls: int,
    **sampling: Any,
) -> tuple[list[list[str]], list[list[int]]]:
    import torch
    from qwq_chat.app.splitter import parse_tool_call
    from qwq_chat.rl_finetune.agentic import tool_turn_text, toolbox
    from qwq_chat.rl_finetune.model import load_for_inference, load_tokenizer

    torch.manual_seed(seed)
    model = load_for_inference(path)
    tok = load_tokenizer(path)
    tok.padding_side = "left"
    eos = [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]
    max_new = sampling["max_new_tokens"]
    samples = [
        {"row": i, "text": p, "final": "", "calls": 0, "left": max_new, "box": None}
        for i, p in enumerate(prompts)
        for _ in range(k)
    ]
    for s in samples:
        s["box"] = toolbox(tools, rows[s["row"]].get("stdin"))
    active = list(samples)
    while active:
        enc = tok([s["text"] for s in active], return_tensors="pt", padding=True)
        budget = max(s["left"] for s in active)
        with torch.no_grad():
            ids = model.generate(
                **enc,
                max_new_tokens=budget,
                eos_token_id=eos,
                pad_token_id=tok.pad_token_id,
                do_sample=sampling["temperature"] > 0,
                **(
                    {
                        "temperature": sampling["temperature"],
                        "top_p": sampling["top_p"],
                        "top_k": sampling["top_k"],
                    }
                    if sampling["temperature"] > 0
                    else {}
                ),
            )
        new_ids = ids[:, enc.input_ids.shape[1] :].tolist()
        still = []
        for s, row_ids in zip(active, new_ids, strict=True):
            row_ids = [t for t in row_ids if t != tok.pad_token_id][: s["left"]]
            s["left"] -= len(row_ids)
            turn = tok.decode([t for t in row_ids if t not in eos])
            call = _CALL.search(turn)
            if call and s["calls"] < max_calls and s["left"] > 0:
                s["calls"] += 1
                result = s["box"].run(parse_tool_call(call.group(1)))
                s["text"] += turn[: call.end()] + tool_turn_text([result.content], result.name)
                still.append(s)
            else:
                s["final"] = turn
        active = still
    out: list[list[str]] = [[] for _ in prompts]
    calls: list[list[int]] = [[] for _ in prompts]
    for s in samples:
        out[s["row"]].append(s["final"])
        calls[s["row"]].append(s["calls"])
    return out, calls


def generate_gguf(
    path: Path,
    rows: list[dict[str, Any]],
    texts: list[str],
    prompts: list[str],
    k: int,
    seed: int,
    tools: list[str],
    max_calls: int,
    **sampling: Any,
) -> tuple[list[list[str]], list[list[int]]]:
    from qwq_chat.app.engines.llama_engine import LlamaEngine
    from qwq_chat.app.sampling import Limits, Sampling
    from qwq_chat.app.session import Session
    from qwq_chat.app.store import Store
    from qwq_chat.rl_finetune.agentic import toolbox

    engine = LlamaEngine(path, n_ctx=2048, n_gpu_layers=0, seed=seed)
    rng = random.Random(seed)
    out: list[list[str]] = []
    calls: list[list[int]] = []
    for row, text in zip(rows, texts, strict=True):
        finals, counts = [], []
        for _ in range(k):
            box = toolbox(tools, row.get("stdin"))
            session = Session(
                Store(":memory:"),
                engine,
                sampling=Sampling(
                    temperature=sampling["temperature"],
                    top_p=sampling["top_p"],
                    top_k=sampling["top_k"],
                    seed=rng.randrange(2**31),
                ),
                limits=Limits(max_tokens=sampling["max_new_tokens"]),
                tools=box,
                max_tool_rounds=max_calls,
            )
            for _event in session.send(text):
                pass
            last = [m for m in session.messages if m.role == "assistant"][-1]
            finals.append(f"{last.reasoning}\n</think>\n\n{last.content}")
            counts.append(box.calls)
        out.append(finals)
        calls.append(counts)
    return out, calls
