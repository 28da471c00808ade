"""Tool-integrated RL on the CPU toy (toy.py: the answer is data only the python tool can read):
`qwq-chat rl demo --tools` end to end, the loss mask on a logged batch, the tool metrics, and
`rl eval --tools` for the HF checkpoint and its GGUF side by side.

One module-scoped run feeds every test here (the expensive part: about 13 minutes on 2 cores:
a 120-step cold start, 12 GRPO steps of ~32 s, two evals).
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from qwq_chat.app.cli import cli
from qwq_chat.rl_finetune.toy import TOOL_PROGRAM
from typer.testing import CliRunner

SEED = 0
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap (bwrap) is not installed"),
]


def test_training_tools_are_the_chats_tools_and_prompts_render_alike(
    tiny_checkpoint: Path,
) -> None:
    """The schema TRL builds from our environment methods is the chat's; TRL's prompt (the
    tokenizer's template with those tools) is the chat's prompt, byte for byte."""
    from qwq_chat.app.prompt import render
    from qwq_chat.app.tools.registry import build_registry
    from qwq_chat.rl_finetune.agentic import environment_class
    from transformers import AutoTokenizer
    from transformers.utils import get_json_schema

    names = ["python", "calculator"]
    env = environment_class(names)()
    registry = build_registry(names)
    schemas = [get_json_schema(getattr(env, n)) for n in names]
    assert schemas == registry.schemas()
    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    messages = [{"role": "user", "content": "What is 2**100?"}]
    trl_prompt = tok.apply_chat_template(
        messages, tools=[getattr(env, n) for n in names], tokenize=False, add_generation_prompt=True
    )
    assert trl_prompt == render(messages, tools=registry.schemas())


@pytest.fixture(scope="module")
def tool_run(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("rl-tool-demo")
    args = ["rl", "demo", "--tools", "-o", str(out), "--seed", str(SEED)]
    result = CliRunner().invoke(cli, [*args, "--tokenizer-from", str(tiny_checkpoint)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    lines = result.output.strip().splitlines()
    acc = re.fullmatch(r"accuracy: before=([0-9.]+) after=([0-9.]+)", lines[-1])
    calls = re.fullmatch(r"tool calls: before=([0-9.]+) after=([0-9.]+)", lines[-2])
    assert acc and calls, lines[-2:]
    return {
        "dir": out,
        "run": out / "run",
        "a0": float(acc.group(1)),
        "a1": float(acc.group(2)),
        "r0": float(calls.group(1)),
        "r1": float(calls.group(2)),
    }


def test_accuracy_and_tool_call_rate_rise_on_held_out_rows(tool_run: dict) -> None:
    a0, a1, r0, r1 = tool_run["a0"], tool_run["a1"], tool_run["r0"], tool_run["r1"]
    print(f"A0={a0:.3f} A1={a1:.3f} calls {r0:.2f} -> {r1:.2f}")
    # 30 rows x 4 samples: a rise of 0.15 is ~2.5 standard errors of the difference at these
    # rates (seed 0 gives 0.17 -> 0.42 here), so it is learning, not noise, on any CPU's floats.
    assert a1 >= a0 + 0.15, (a0, a1)
    assert r1 >= r0 + 0.2, (r0, r1)
    rows = [json.loads(x) for x in (tool_run["run"] / "eval.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["cold_start", "stage1"]
    assert all(r["tools"] == "python" and r["prompts"] == 30 for r in rows)
    # The answers vary: no single guessed digit could reach A1.
    data = tool_run["dir"] / "data"
    answers = [json.loads(x)["answer"] for x in (data / "tool_eval.jsonl").read_text().splitlines()]
    assert max(answers.count(a) for a in set(answers)) / len(answers) < 0.3


def test_logged_batch_masks_exactly_the_tool_responses_with_real_sandbox_results(
    tool_run: dict,
) -> None:
    records = [
        json.loads(x)
        for x in (tool_run["run"] / "stage1" / "rollouts.jsonl").read_text().splitlines()
    ]
    called = [r for r in records if 0 in r["tool_mask"]]
    assert len(called) >= 5
    exact = 0
    turn = re.compile(
        r"\n<\|im_start\|>user\n<tool_response>\n(.*?)\n</tool_response><\|im_end\|>\n"
        r"<\|im_start\|>assistant\n<think>\n",
        re.S,
    )
    for r in called:
        # Masked text = the tool turns only; the model's own call and answer stay in the loss.
        assert "".join(m.group(0) for m in turn.finditer(r["text"])) == r["masked_text"]
        assert "<tool_call>" in r["text"] and "<tool_call>" not in r["masked_text"]
        # The tool's output is what the sandbox prints for this row's hidden stdin.
        results = [m.group(1) for m in turn.finditer(r["text"])]
        if json.dumps({"code": TOOL_PROGRAM}) in r["text"].split("</tool_call>")[0]:
            assert results[0] == r["stdin"] and r["stdin"][-1] == r["answer"]
            exact += 1
    assert exact >= 3  # well-formed calls whose result the sandbox computed from the row
    assert all(1 in r["tool_mask"] for r in records)


def test_tool_metrics_in_jsonl_tensorboard_and_plots(tool_run: dict) -> None:
    run = tool_run["run"]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if r["stage"] == "stage1"]
    assert grpo
    for key in ("tool_calls_per_rollout", "tool_call_rate", "tool_error_rate", "accuracy"):
        assert all(key in r for r in grpo), key
    assert any("accuracy_with_tool" in r for r in grpo)
    q = max(1, len(grpo) // 4)
    assert sum(r["tool_call_rate"] for r in grpo[-q:]) > sum(r["tool_call_rate"] for r in grpo[:q])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard" / "stage1")).Reload()
    assert "train/tools/tool_call_rate" in events.Tags()["scalars"]
    assert (run / "plots" / "tools.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rl_eval_tools_hf_and_gguf_side_by_side(tool_run: dict) -> None:
    run = tool_run["run"]
    result = CliRunner().invoke(cli, ["rl", "export", str(run)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    gguf = run / "export" / "model-bf16.gguf"
    data = tool_run["dir"] / "data" / "tool_eval.jsonl"
    table = run / "tool-eval-table.jsonl"
    for model, label in ((run / "stage1" / "final", "hf"), (gguf, "gguf")):
        r = CliRunner().invoke(
            cli,
            [
                "rl", "eval", "--model", str(model), "--data", str(data), "-k", "2",
                "--temperature", "0.7", "--top-k", "0", "--top-p", "1.0",
                "--max-new-tokens", "176", "--math-suffix", "", "--label", label,
                "--results", str(table), "--tools", "python", "--max-tool-calls", "2",
            ],
        )  # fmt: skip
        assert r.exit_code == 0, r.output + repr(r.exception)
    print(r.output)
    hf, gg = [json.loads(x) for x in table.read_text().splitlines()]
    assert (hf["backend"], gg["backend"]) == ("transformers", "llama.cpp")
    n = 30 * 2
    noise = max(0.15, 3 * math.sqrt(max(hf["pass_at_1"] * (1 - hf["pass_at_1"]), 0.05) / n))
    assert abs(hf["pass_at_1"] - gg["pass_at_1"]) <= 2 * noise, (hf, gg)
    assert abs(hf["tool_call_rate"] - gg["tool_call_rate"]) <= 2 * noise, (hf, gg)
    assert gg["tool_call_rate"] > 0.5


def test_cold_start_trace_masks_the_tool_turn(tiny_checkpoint: Path) -> None:
    """The SFT example of a tool trace: the tool-response turn is out of the loss, the call and
    the copied answer are in, and the tokens are what TRL concatenates in a rollout."""
    from qwq_chat.rl_finetune import toy
    from qwq_chat.rl_finetune.agentic import tool_turn_text
    from qwq_chat.rl_finetune.stages import _sft_example
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_checkpoint))
    trace = toy.tool_trace("7", "7")
    assert tool_turn_text(["7"]) in trace  # the template's own tool turn
    ex = _sft_example(tok, "PROMPT", trace + tok.eos_token, 512)
    n_prompt = len(tok("PROMPT", add_special_tokens=False).input_ids)
    out = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab == -100]
    kept = [t for t, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != -100]
    assert tok.decode(out[n_prompt:]) == tool_turn_text(["7"])[len("<|im_end|>") :]
    assert tok.decode(kept).endswith("\\boxed{7}<|im_end|>")
    assert "<tool_call>" in tok.decode(kept) and "<tool_response>" not in tok.decode(kept)


def test_tool_reward_scores_the_final_answer_and_logs_tool_metrics() -> None:
    """Completions as TRL hands them over in tool rollouts (message lists)."""
    from qwq_chat.rl_finetune.agentic import environment_class, tool_accuracy_reward

    call = {"type": "function", "function": {"name": "python", "arguments": {"code": "x"}}}
    with_tool = [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "name": "python", "content": "7"},
        {"role": "assistant", "reasoning_content": "Copy.", "content": "\\boxed{7}"},
    ]
    malformed = [{"role": "assistant", "content": "<tool_call>\n{bad\n</tool_call>"}]
    guess = [{"role": "assistant", "reasoning_content": "Guess.", "content": "\\boxed{3}"}]
    envs = [environment_class(["python"])() for _ in range(3)]
    envs[0].calls, envs[0].errors = 1, 0
    logged: dict[str, float] = {}
    scores = tool_accuracy_reward(
        [None] * 3,
        [with_tool, malformed, guess],
        answer=["7", "7", "7"],
        environments=envs,
        log_metric=logged.__setitem__,
    )
    assert scores == [1.0, 0.0, 0.0]
    assert logged["tools/tool_call_rate"] == pytest.approx(1 / 3)
    assert logged["tools/tool_calls_per_rollout"] == pytest.approx(1 / 3)
    assert logged["tools/tool_malformed_rate"] == pytest.approx(1 / 3)
    assert logged["tools/accuracy_with_tool"] == 1.0
    assert logged["tools/accuracy_without_tool"] == 0.0
    assert logged["tools/tool_error_rate"] == 0.0


def test_python_tool_reads_the_rows_stdin_in_the_sandbox() -> None:
    from qwq_chat.app.splitter import parse_tool_call
    from qwq_chat.rl_finetune.agentic import toolbox

    box = toolbox(["python"], "293557591836")
    result = box.run(
        parse_tool_call('{"name": "python", "arguments": {"code": "print(input()[-1])"}}')
    )
    assert (result.content, result.is_error, box.calls) == ("6", False, 1)
    bad = box.run(parse_tool_call('{"name": "python", "arguments": {"code": "1/0"}}'))
    assert bad.is_error and "ZeroDivisionError" in bad.content
    assert box.run(parse_tool_call("{not json")).is_error and box.env.errors == 2
