"""`qwq-chat rl demo`: the toy recipe end to end on CPU (see toy.py for why it is built this way)."""

from __future__ import annotations

from pathlib import Path

from qwq_chat.rl_finetune.config import RLConfig


def prepare(
    out: Path, seed: int = 0, tokenizer_dir: Path | None = None, tools: bool = False, **overrides
) -> RLConfig:
    """Toy model, datasets and config under `out` (reused when already there)."""
    from qwq_chat.rl_finetune import toy

    out = Path(out)
    base = out / "base"
    if not (base / "config.json").is_file():
        tmp = out / "base.partial"
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        toy.build_toy_model(tmp, tokenizer_dir, seed=seed)
        tmp.rename(base)
    if tools:
        data = toy.write_tool_datasets(out / "data", seed=seed)
        cfg = toy.tool_toy_config(out / "run", base, data, **overrides)
    else:
        data = toy.write_datasets(out / "data", seed=seed)
        cfg = toy.toy_config(out / "run", base, data, **overrides)
    cfg.run.seed = seed
    return cfg


def run_demo(
    out: Path, steps: int | None = None, seed: int = 0, tokenizer_dir: Path | None = None
) -> tuple[float, float]:
    """Cold start, stage 1, eval after each; returns (A0, A1) held-out pass@1."""
    import torch
    from qwq_chat.rl_finetune.evaluate import read_results
    from qwq_chat.rl_finetune.pipeline import train

    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = prepare(out, seed, tokenizer_dir)
    if steps:
        cfg.stage1.max_steps = steps
    train(cfg)
    rows = {r["label"]: r for r in read_results(cfg.output_dir / "eval.jsonl")}
    return rows["cold_start"]["pass_at_1"], rows["stage1"]["pass_at_1"]


def run_tool_demo(
    out: Path, steps: int | None = None, seed: int = 0, tokenizer_dir: Path | None = None
) -> tuple[float, float, float, float]:
    """The tool toy (toy.py): returns (A0, A1, tool-call rate before, after) on held-out rows."""
    import torch
    from qwq_chat.rl_finetune.evaluate import read_results
    from qwq_chat.rl_finetune.pipeline import train

    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = prepare(out, seed, tokenizer_dir, tools=True)
    if steps:
        cfg.stage1.max_steps = steps
    train(cfg)
    rows = {r["label"]: r for r in read_results(cfg.output_dir / "eval.jsonl")}
    before, after = rows["cold_start"], rows["stage1"]
    return (
        before["pass_at_1"],
        after["pass_at_1"],
        before["tool_call_rate"],
        after["tool_call_rate"],
    )
