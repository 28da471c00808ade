"""`rl train`: the enabled stages in order, skipping finished ones and resuming interrupted ones,
with an evaluation of each stage's result on the held-out data (one table across the run)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qwq_chat.rl_finetune.config import RLConfig
from qwq_chat.rl_finetune.evaluate import EvalResult, append_result, evaluate
from qwq_chat.rl_finetune.stages import (
    enabled_stages,
    final_dir,
    run_cold_start,
    run_grpo,
)


@contextlib.contextmanager
def sandbox_for(cfg: RLConfig, stages: list[str]) -> Iterator[str | None]:
    """The code server URL for the run: the configured one, or one started for it ('auto')."""
    needs = [s for s in stages if s != "cold_start" and getattr(cfg, s).code_data]
    if not needs:
        yield None
        return
    url = getattr(cfg, needs[0]).sandbox_url
    if url != "auto":
        yield url
        return
    from qwq_chat.app.sandbox.server import launch_subprocess

    server = launch_subprocess()
    try:
        yield server.url
    finally:
        server.close()


def eval_stage(cfg: RLConfig, model: Path, label: str) -> EvalResult | None:
    """Score `model` on [eval].data and append the row to RUN/eval.jsonl."""
    if not cfg.eval.data:
        return None
    result = evaluate(
        model,
        [cfg.resolve(d) for d in cfg.eval.data],
        k=cfg.eval.k,
        temperature=cfg.eval.temperature,
        top_p=cfg.eval.top_p,
        top_k=0,
        max_new_tokens=cfg.eval.max_new_tokens,
        limit=cfg.eval.limit,
        seed=cfg.run.seed,
        label=label,
        math_suffix=cfg.run.math_suffix,
        tools=cfg.eval.tools or None,
        max_tool_calls=cfg.eval.max_tool_calls,
    )
    append_result(cfg.output_dir / "eval.jsonl", result)
    return result


def train(
    cfg: RLConfig,
    *,
    only: list[str] | None = None,
    evaluate_stages: bool = True,
    callbacks: list[Any] | None = None,
) -> dict[str, EvalResult | None]:
    """Run the config's stages; return the eval of each stage finished in this call."""
    out = cfg.output_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "rl_config.json").write_text(cfg.model_dump_json(indent=2))
    stages = [s for s in enabled_stages(cfg) if not only or s in only]
    results: dict[str, EvalResult | None] = {}
    with sandbox_for(cfg, stages) as url:
        for stage in stages:
            if final_dir(cfg, stage).exists():
                continue  # finished in an earlier call
            if stage == "cold_start":
                path = run_cold_start(cfg, callbacks)
            else:
                if stage == "stage2" and evaluate_stages and not _has_eval(cfg, "stage1"):
                    # The math eval just before stage 2, so the report shows both.
                    prev = final_dir(cfg, "stage1")
                    if prev.exists():
                        results["stage1"] = eval_stage(cfg, prev, "stage1")
                path = run_grpo(cfg, stage, sandbox_url=url, callbacks=callbacks)
            if evaluate_stages:
                results[stage] = eval_stage(cfg, path, stage)
        if cfg.logging.plots:
            from qwq_chat.rl_finetune.plots import write_plots

            write_plots(out)
    return results


def _has_eval(cfg: RLConfig, label: str) -> bool:
    from qwq_chat.rl_finetune.evaluate import read_results

    return any(r.get("label") == label for r in read_results(cfg.output_dir / "eval.jsonl"))


def check_data(cfg: RLConfig) -> dict[str, int]:
    """Validate every dataset the config names, row by row (no model or tokenizer loaded)."""
    from qwq_chat.rl_finetune.data import read_rows

    counts: dict[str, int] = {}
    if cfg.cold_start.enabled:
        counts["cold_start"] = sum(
            len(read_rows(cfg.resolve(s), "trace")) for s in cfg.cold_start.data
        )
    for stage in ("stage1", "stage2"):
        section = getattr(cfg, stage)
        if not section.enabled:
            continue
        n = sum(len(read_rows(cfg.resolve(s), "math")) for s in section.math_data)
        n += sum(len(read_rows(cfg.resolve(s), "code")) for s in section.code_data)
        if stage == "stage2":
            n += sum(len(read_rows(cfg.resolve(s), "general")) for s in section.general_data)
        counts[stage] = n
    for src in cfg.eval.data:
        read_rows(cfg.resolve(src), "math")
    return counts


def summary(cfg: RLConfig) -> str:
    return json.dumps({"output_dir": str(cfg.output_dir), "stages": enabled_stages(cfg)})
