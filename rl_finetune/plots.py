"""PNG plots of a run from its metrics.jsonl: reward and accuracy curves, response length."""

from __future__ import annotations

from pathlib import Path

from qwq_chat.rl_finetune.metrics import read_metrics

PLOTS = {
    "reward.png": ("Reward per verifier", lambda k: k == "reward" or k.startswith("reward/")),
    "accuracy.png": ("Accuracy (verifier mean)", lambda k: k == "accuracy"),
    "response_length.png": (
        "Response length (tokens)",
        lambda k: k in ("response_length_mean", "response_length_max"),
    ),
    "tools.png": (
        "Tool use: calls per rollout, share calling, errors, accuracy with/without a call",
        lambda k: (
            k in ("tool_calls_per_rollout", "tool_call_rate", "tool_error_rate")
            or k in ("tool_malformed_rate", "accuracy_with_tool", "accuracy_without_tool")
        ),
    ),
    "health.png": (
        "Truncation, clipping, zero-variance groups, entropy, KL",
        lambda k: (
            k in ("truncation_ratio", "clip_ratio", "zero_variance_group_fraction", "entropy", "kl")
        ),
    ),
}


def write_plots(run_dir: Path) -> list[Path]:
    """Write the PNGs under RUN/plots/ (GRPO stages only; the x axis counts steps across stages)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = [r for r in read_metrics(run_dir / "metrics.jsonl") if r["stage"] != "cold_start"]
    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    stages = list(dict.fromkeys(r["stage"] for r in rows))
    offsets, total = {}, 0
    for stage in stages:
        offsets[stage] = total
        total += max((r["step"] for r in rows if r["stage"] == stage), default=0)
    for name, (title, wanted) in PLOTS.items():
        keys = sorted({k for r in rows for k in r if wanted(k)})
        if name == "tools.png" and not keys:
            continue  # a run without tools
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            pts = [(offsets[r["stage"]] + r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=key, marker=".", linewidth=1)
        for stage in stages[1:]:
            ax.axvline(offsets[stage], color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("step")
        if keys:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / name
        tmp = path.with_suffix(".tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(path)
        written.append(path)
    return written
