"""Benchmark: how fast the headless TUI ingests a stream, and whether it slows down as text grows.

A scripted engine yields 30,000 reasoning tokens, `</think>`, then 5,000 Markdown answer tokens as fast
as it can, through the real Session (splitter, SQLite persistence) into the real ChatApp under
Textual's headless driver. Figures:
- sustained tokens/s: all tokens / (time from Enter until the last token is on screen); target ≥ 5,000;
- cost per token in the last tenth of the stream vs the first tenth; target ≤ 1.5 (no slow-down);
- ratio against a baseline run in the same process: the same Session iterated with no UI.

Run: `pytest tests/benchmarks/test_bench_tui_ingest.py -s`
"""

from __future__ import annotations

import bisect
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tui"))

from qwq_chat.app.config import load_settings  # noqa: E402
from qwq_chat.app.session import Session  # noqa: E402
from qwq_chat.app.store import open_store  # noqa: E402
from scripted_engine import ScriptedEngine  # noqa: E402
from tui_helpers import make_app, wait_for  # noqa: E402  (tests/tui/tui_helpers.py)

REASONING_TOKENS = 30_000
ANSWER_TOKENS = 5_000
LOCKSTEP_BATCH = 250  # tokens per UI update in the lockstep run (7,500 tokens/s at 30 updates/s)
MAX_TOKENS = 40_000  # above the stream's length, so the max-tokens guard does not cut it
VOCAB = [
    "the",
    "model",
    "considers",
    "each",
    "step",
    "carefully",
    "so",
    "that",
    "nothing",
    "is",
    "missed",
    "and",
]


def reasoning_pieces(n: int) -> list[str]:
    """Prose-like deltas: a newline every 20 tokens, a blank line every 200."""
    pieces = []
    for i in range(n):
        word = VOCAB[i % len(VOCAB)]
        sep = "\n\n" if i % 200 == 199 else "\n" if i % 20 == 19 else " "
        pieces.append(word + sep)
    return pieces


def answer_pieces(n: int) -> list[str]:
    """Markdown deltas: paragraphs, a bullet list and a code block every 500 tokens."""
    pieces: list[str] = []
    i = 0
    while len(pieces) < n:
        block = i % 500
        if block == 0:
            pieces.append("\n\n## Section\n\n")
        elif block == 100:
            pieces.append("\n\n```python\n")
        elif 100 < block < 160:
            pieces.append(f"x_{block} = {block}\n" if block % 6 == 0 else "y ")
        elif block == 160:
            pieces.append("\n```\n\n")
        elif 200 <= block < 260 and block % 10 == 0:
            pieces.append("\n- item ")
        else:
            pieces.append(VOCAB[i % len(VOCAB)] + (" " if i % 40 else "\n\n"))
        i += 1
    return pieces[:n]


def script() -> list[str]:
    return [*reasoning_pieces(REASONING_TOKENS), "</think>\n\n", *answer_pieces(ANSWER_TOKENS)]


def baseline_tokens_per_s() -> float:
    """The same Session and engine with no UI: how fast events can be produced at all."""
    engine = ScriptedEngine([script()])
    settings = load_settings(max_tokens=MAX_TOKENS)
    session = Session.from_settings(settings, open_store(":memory:"), engine)
    start = time.perf_counter()
    count = sum(1 for event in session.send("go") if event.type in ("reasoning", "answer"))
    assert count > 0
    return count / (time.perf_counter() - start)


def at(timeline: list[tuple[float, float, int]], tokens: float, column: int) -> float:
    """Interpolated clock (column 0: wall, 1: UI-thread CPU) when `tokens` tokens were shown."""
    counts = [row[2] for row in timeline]
    i = bisect.bisect_left(counts, tokens)
    if i == 0:
        return timeline[0][column]
    lo, hi = timeline[i - 1], timeline[i]
    return lo[column] + (hi[column] - lo[column]) * (tokens - lo[2]) / (hi[2] - lo[2])


def tenths(timeline: list[tuple[float, float, int]], column: int) -> tuple[float, float]:
    """Clock time per token over the first and the last tenth of the tokens."""
    shown = timeline[-1][2]
    tenth = shown / 10
    first = at(timeline, tenth, column) - timeline[0][column]
    last = timeline[-1][column] - at(timeline, shown - tenth, column)
    return first / tenth, last / tenth


async def ingest(pieces: list[str], batch: int | None) -> list[tuple[float, float, int]]:
    """Stream `pieces` into the headless app; returns (wall, UI CPU, tokens shown) per UI update.

    batch=None: the engine runs flat out. batch=B: after every B tokens it waits until the UI
    has shown them (lockstep), so every update carries B tokens and the UI's own cost per token
    can be read as the stream grows, free of the producer and of other load on the machine.
    """
    timeline: list[tuple[float, float, int]] = []
    shown = threading.Event()
    state = {"shown": 0}

    def on_tokens(n: int) -> None:
        timeline.append((time.perf_counter(), time.thread_time(), n))
        state["shown"] = n
        shown.set()

    def paced() -> Iterator[str]:
        produced = 0
        for piece in pieces:
            yield piece
            if piece.startswith("</think>"):
                continue  # shows nothing by itself
            produced += 1
            if produced % batch == 0:
                while state["shown"] < produced:
                    shown.wait(0.05)
                    shown.clear()

    turn = pieces if batch is None else paced
    app, _ = make_app([turn], fixed_stats=False, settings_overrides={"max_tokens": MAX_TOKENS})
    async with app.run_test(size=(140, 50)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        screen = app.chat_screen
        screen.on_tokens = on_tokens
        screen.composer.insert("go")
        timeline.append((time.perf_counter(), time.thread_time(), 0))
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.live_view is None and not screen.generating, 600)
        view = screen.chat.children[-1]
        assert (
            len(view.answer_text) > 2 * ANSWER_TOKENS
            and len(view.reasoning_text) > 3 * REASONING_TOKENS
        )
    return timeline


@pytest.mark.benchmark
async def test_bench_tui_ingest() -> None:
    total = REASONING_TOKENS + ANSWER_TOKENS  # "</think>\n\n" itself shows nothing
    baseline = baseline_tokens_per_s()

    free = await ingest(script(), batch=None)
    assert free[-1][2] == total, (free[-1][2], total)
    elapsed = free[-1][0] - free[0][0]
    rate = total / elapsed
    first_wall, last_wall = tenths(free, 0)

    lock = await ingest(script(), batch=LOCKSTEP_BATCH)
    assert lock[-1][2] == total
    first_cpu, last_cpu = tenths(lock, 1)
    ui_cpu = lock[-1][1] - lock[0][1]
    print(
        f"\nTUI ingest, engine flat out: {total:,} tokens in {elapsed:.2f} s = {rate:,.0f} tokens/s "
        f"(target ≥ 5,000) in {len(free) - 1} UI updates; last/first tenth wall time per token "
        f"{last_wall / first_wall:.2f}\n"
        f"no-UI baseline (same Session, same process): {baseline:,.0f} tokens/s; "
        f"TUI / baseline = {rate / baseline:.2f}\n"
        f"lockstep, {LOCKSTEP_BATCH} tokens per UI update ({len(lock) - 1} updates): UI thread CPU "
        f"{ui_cpu:.2f} s = {total / ui_cpu:,.0f} tokens per CPU-second; cost per token last tenth / "
        f"first tenth = {last_cpu / first_cpu:.2f} (target ≤ 1.5) "
        f"[{first_cpu * 1e6:.0f} µs vs {last_cpu * 1e6:.0f} µs]"
    )
    assert rate > 0 and first_cpu > 0 and last_cpu > 0
