"""A tiny QwQ-shaped model taught to call the calculator, for tool-loop tests on real llama.cpp.

No small model that a PyPI package ships emits QwQ's `<tool_call>` format, so the tiny random
checkpoint (convert/tiny_model.py) is fine-tuned to memorise one tool round: asked "What is 12*12?"
with the calculator offered, it thinks, calls `calculator` with "12*12", and once it sees the tool's
response it answers. The training prompts are the ones the real Session and chat template produce
(recorded from a scripted run), so the converted GGUF is driven through exactly the production path.
"""

from __future__ import annotations

from pathlib import Path

from qwq_chat.app.prompt import render
from qwq_chat.app.session import Session
from qwq_chat.app.store import open_store
from qwq_chat.app.tools.registry import build_registry
from scripted_engine import ScriptedEngine

QUESTION = "What is 12*12?"
TOOL_CALL = (
    '<tool_call>\n{"name": "calculator", "arguments": {"expression": "12*12"}}\n</tool_call>'
)
FIRST = "I should use the calculator for this.\n</think>\n\n" + TOOL_CALL
SECOND = "The calculator returned the product.\n</think>\n\nThe answer is 144."
VERSION = "1"


def training_pairs() -> list[tuple[str, str]]:
    """(prompt, completion) for both rounds, as the real session renders them."""
    engine = ScriptedEngine([[FIRST], [SECOND]])
    tools = build_registry(["calculator"])
    session = Session(open_store(":memory:"), engine, tools=tools)
    events = list(session.send(QUESTION))
    assert any(getattr(event, "name", None) == "calculator" for event in events), events
    prompts = [render(call["messages"], tools=tools.schemas()) for call in engine.calls]
    assert len(prompts) == 2 and "<tool_response>\n144\n</tool_response>" in prompts[1]
    return [(prompts[0], FIRST + "<|im_end|>"), (prompts[1], SECOND + "<|im_end|>")]


def build_tool_model(tiny_checkpoint: Path, out_dir: Path, steps: int = 400) -> Path:
    """Fine-tune the tiny checkpoint on `training_pairs()` (loss on completions only); save HF."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint, dtype=torch.float32)
    batch = []
    for prompt, completion in training_pairs():
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        batch.append((torch.tensor([prompt_ids + completion_ids]), len(prompt_ids)))
    model.model.embed_tokens.weight.requires_grad_(False)  # 152k rows: too costly to train here
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=3e-3)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = torch.zeros(())
        for ids, start in batch:  # logits only where the completion is predicted
            hidden = model.model(input_ids=ids).last_hidden_state[0, start - 1 : -1]
            loss = loss + torch.nn.functional.cross_entropy(model.lm_head(hidden), ids[0, start:])
        loss.backward()
        optimizer.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.01, f"the tool round was not memorised (loss {loss.item():.3f})"
    model.eval()
    model.save_pretrained(out_dir)
    for source in Path(tiny_checkpoint).iterdir():  # tokenizer files and generation config as-is
        if source.is_file() and not source.name.startswith(("model", "config.json")):
            (Path(out_dir) / source.name).write_bytes(source.read_bytes())
    return Path(out_dir)


def cached_tool_gguf(tiny_checkpoint: Path) -> Path:
    """The tool-trained model converted to an f32 GGUF, built once and kept in the test cache."""
    from conftest import cached_build
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint
    from qwq_chat.convert.tiny_model import BUILD_VERSION

    def build(tmp: Path) -> None:
        hf = tmp / "hf"
        hf.mkdir()
        build_tool_model(tiny_checkpoint, hf)
        convert_checkpoint(hf, tmp / "model.gguf", outtype="f32")

    return cached_build(f"tiny-qwq-{BUILD_VERSION}-tools-{VERSION}", build) / "model.gguf"
