"""RL really learns on this CPU: the toy recipe (cold start -> stage 1 GRPO -> eval) through the
`qwq-chat rl demo` command, then the same run exported to GGUF and scored through llama.cpp.

One module-scoped run feeds every test here (it is the expensive part: a few minutes on 2 cores).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from qwq_chat.app.cli import cli
from typer.testing import CliRunner

SEED = 0


@pytest.fixture(scope="module")
def toy_run(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("rl-demo")
    result = CliRunner().invoke(
        cli,
        [
            "rl",
            "demo",
            "-o",
            str(out),
            "--seed",
            str(SEED),
            "--tokenizer-from",
            str(tiny_checkpoint),
        ],
    )
    assert result.exit_code == 0, result.output + repr(result.exception)
    last = result.output.strip().splitlines()[-1]
    m = re.fullmatch(r"accuracy: before=([0-9.]+) after=([0-9.]+)", last)
    assert m, f"last line was {last!r}"
    return {"dir": out, "run": out / "run", "a0": float(m.group(1)), "a1": float(m.group(2))}


def test_stage1_grpo_raises_held_out_accuracy_by_at_least_0_3(toy_run: dict) -> None:
    a0, a1 = toy_run["a0"], toy_run["a1"]
    print(f"A0={a0:.3f} A1={a1:.3f}")
    assert a1 >= a0 + 0.3, (a0, a1)
    rows = [json.loads(x) for x in (toy_run["run"] / "eval.jsonl").read_text().splitlines()]
    assert [r["label"] for r in rows] == ["cold_start", "stage1"]
    n_eval = len((toy_run["dir"] / "data" / "eval.jsonl").read_text().splitlines())
    assert n_eval == 30
    assert all(r["prompts"] == n_eval and r["k"] == 4 for r in rows)
    # Held out: no eval prompt appears in the RL or cold-start data.
    data = toy_run["dir"] / "data"
    eval_prompts = {json.loads(x)["prompt"] for x in (data / "eval.jsonl").read_text().splitlines()}
    for name in ("train.jsonl", "cold_start.jsonl"):
        seen = {json.loads(x)["prompt"] for x in (data / name).read_text().splitlines()}
        assert not eval_prompts & seen


def test_run_is_watched_jsonl_tensorboard_and_plots(toy_run: dict) -> None:
    run = toy_run["run"]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    grpo = [r for r in rows if r["stage"] == "stage1"]
    assert len(grpo) >= 20
    for key in (
        "reward",
        "reward/math_accuracy_reward",
        "accuracy",
        "response_length_mean",
        "response_length_max",
        "truncation_ratio",
        "entropy",
        "clip_ratio",
        "zero_variance_group_fraction",
    ):
        assert all(key in r for r in grpo), key
    assert any(r["stage"] == "cold_start" and "loss" in r for r in rows)
    # Accuracy during training goes up too (first vs last quarter of the logged steps).
    q = max(1, len(grpo) // 4)
    first = sum(r["accuracy"] for r in grpo[:q]) / q
    last = sum(r["accuracy"] for r in grpo[-q:]) / q
    assert last > first
    assert list((run / "tensorboard" / "stage1").rglob("events.out.tfevents.*"))
    for name in ("reward.png", "accuracy.png", "response_length.png"):
        png = run / "plots" / name
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # On demand, from the CLI.
    (run / "plots" / "reward.png").unlink()
    assert CliRunner().invoke(cli, ["rl", "plot", str(run)]).exit_code == 0
    assert (run / "plots" / "reward.png").is_file()


def _noise(p: float, n: int) -> float:
    """3 standard errors of a pass@1 estimate from n samples (at least 0.1)."""
    return max(0.1, 3 * math.sqrt(max(p * (1 - p), 0.05) / n))


def test_export_to_gguf_and_quantized_scores_match_hf_eval(toy_run: dict) -> None:
    run = toy_run["run"]
    result = CliRunner().invoke(cli, ["rl", "export", str(run), "--quant", "Q8_0"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    bf16 = run / "export" / "model-bf16.gguf"
    q8 = run / "export" / "model-Q8_0.gguf"
    assert bf16.is_file() and q8.is_file()
    from qwq_chat.convert.quantize import quantize_gguf

    q4 = quantize_gguf(bf16, run / "export" / "model-Q4_K_M.gguf", "Q4_K_M")

    from qwq_chat.rl_finetune.evaluate import evaluate

    data = [toy_run["dir"] / "data" / "eval.jsonl"]
    common = dict(k=4, temperature=0.7, top_p=1.0, top_k=0, max_new_tokens=16, math_suffix="")
    hf = json.loads((run / "eval.jsonl").read_text().splitlines()[-1])["pass_at_1"]
    n = 30 * 4
    for gguf in (bf16, q8, q4):
        got = evaluate(gguf, data, **common)
        assert got.backend == "llama.cpp"
        print(f"{gguf.name}: pass@1 {got.pass_at_1:.3f} (HF {hf:.3f})")
        assert abs(got.pass_at_1 - hf) <= _noise(hf, n) + (0.1 if gguf is q4 else 0.0), (
            gguf.name,
            got.pass_at_1,
            hf,
        )

    # The same comparison from the command line: one table across back ends and runs.
    results = run / "eval-table.jsonl"
    for model, label in ((run / "stage1" / "final", "hf"), (q4, "q4_k_m")):
        r = CliRunner().invoke(
            cli,
            [
                "rl",
                "eval",
                "--model",
                str(model),
                "--data",
                str(data[0]),
                "-k",
                "2",
                "--temperature",
                "0.7",
                "--top-k",
                "0",
                "--top-p",
                "1.0",
                "--max-new-tokens",
                "16",
                "--math-suffix",
                "",
                "--label",
                label,
                "--results",
                str(results),
            ],
        )
        assert r.exit_code == 0, r.output + repr(r.exception)
    table = r.output.splitlines()
    assert table[0].split()[:2] == ["label", "model"]
    assert [line.split()[0] for line in table[1:]] == ["hf", "q4_k_m"]
    assert "transformers" in table[1] and "llama.cpp" in table[2]


def test_stage2_reward_model_and_rules_run_and_math_eval_is_reported_before_and_after(
    toy_run: dict, tiny_checkpoint: Path
) -> None:
    from qwq_chat.rl_finetune.demo import prepare
    from qwq_chat.rl_finetune.evaluate import format_table, read_results
    from qwq_chat.rl_finetune.pipeline import train
    from tiny_reward_model import build_tiny_reward_model

    out = toy_run["dir"]
    rm = build_tiny_reward_model(out / "reward-model", tiny_checkpoint)
    general = out / "data" / "general.jsonl"
    general.write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"prompt": "Say hello.", "constraints": [{"id": "change_case:english_lowercase"}]},
                {"prompt": "Name a colour."},
                {
                    "prompt": "Write one word.",
                    "constraints": [
                        {
                            "id": "length_constraints:number_words",
                            "kwargs": {"relation": "less than", "num_words": 3},
                        }
                    ],
                },
                {"prompt": "Greet me."},
            ]
        )
    )
    cfg = prepare(out, SEED, tiny_checkpoint)
    cfg.stage2.enabled = True
    cfg.stage2.general_data = [str(general)]
    cfg.stage2.reward_model = str(rm)
    cfg.stage2.math_code_fraction = 0.5
    cfg.stage2.max_steps = 3
    cfg.stage2.batch_size = 16
    cfg.stage2.num_generations = 8
    cfg.stage2.max_completion_length = 16
    cfg.stage2.temperature = 0.7
    cfg.stage2.learning_rate = 1e-4
    train(cfg)

    rows = read_results(cfg.output_dir / "eval.jsonl")
    labels = [r["label"] for r in rows]
    assert labels == ["cold_start", "stage1", "stage2"], labels
    table = format_table(rows)
    print(table)
    assert "stage1" in table and "stage2" in table
    metrics = [json.loads(x) for x in (cfg.output_dir / "metrics.jsonl").read_text().splitlines()]
    s2 = [r for r in metrics if r["stage"] == "stage2"]
    assert len(s2) >= 3
    for key in (
        "reward/reward_model_reward",
        "reward/format_reward",
        "reward/math_accuracy_reward",
    ):
        assert any(key in r for r in s2), key
    assert (cfg.output_dir / "stage2" / "final" / "config.json").is_file()
