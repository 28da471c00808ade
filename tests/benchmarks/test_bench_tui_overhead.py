"""Overhead of the TUI over raw llama-cpp-python: same GGUF, prompt and sampling.

Raw: `Llama.create_completion(stream=True)` on the rendered prompt. TUI: the headless ChatApp
(Textual's run_test) on LlamaEngine -> splitter -> Session (SQLite) -> event buffer -> widgets,
rendering every frame. Decode speed from the first token to the last, measured in the generation
thread (model load and prompt evaluation excluded), best of six runs of 400 tokens in
alternating order, and the median of the six paired ratios (steadier on a noisy machine).
Target: TUI / raw >= 0.95, read as the median of the paired ratios.

Run: `pytest tests/benchmarks/test_bench_tui_overhead.py -s`
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tui"))

from qwq_chat.app.config import load_settings  # noqa: E402
from qwq_chat.app.engines.llama_engine import LlamaEngine, load_llama  # noqa: E402
from qwq_chat.app.events import AnswerDelta, Done, ReasoningDelta, Stats  # noqa: E402
from qwq_chat.app.sampling import Limits, Sampling  # noqa: E402
from qwq_chat.app.store import open_store  # noqa: E402
from qwq_chat.app.tui.app import ChatApp  # noqa: E402
from test_bench_app_overhead import PROMPT, ROUNDS, TOKENS, raw_tokens_per_second  # noqa: E402
from tui_helpers import wait_for, wait_idle  # noqa: E402

pytestmark = pytest.mark.benchmark


async def tui_tokens_per_second(app: ChatApp, pilot, seed: int) -> tuple[float, int]:
    """One answer in a new chat; timing taken in the worker thread as events pass through."""
    await pilot.press("ctrl+n")
    await pilot.pause()
    session = app.chat_screen.session
    session.sampling = Sampling(seed=seed)
    session.limits = Limits(max_tokens=TOKENS)
    timing: dict[str, float] = {}
    send = session.send

    def timed_send(text: str):
        for event in send(text):
            if "first" not in timing and isinstance(event, (ReasoningDelta, AnswerDelta)):
                timing["first"] = time.perf_counter()
            if isinstance(event, Stats):
                timing["completion"] = event.completion_tokens
            if isinstance(event, Done):
                timing["end"] = time.perf_counter()
            yield event

    session.send = timed_send  # type: ignore[method-assign]
    app.chat_screen.composer.insert(PROMPT)
    cpu, wall = time.thread_time(), time.perf_counter()  # this coroutine runs on the UI thread
    await pilot.press("enter")
    await pilot.pause()
    await wait_idle(pilot, app, timeout=300, poll_s=0.5)  # timed in the worker: polls add nothing
    ui_share = (time.thread_time() - cpu) / (time.perf_counter() - wall)
    print(f"  UI thread used {ui_share:.0%} of a core while answering")
    shown = app.chat_screen.applied_tokens
    completion = int(timing["completion"])
    assert shown >= completion - 2  # everything generated reached the screen
    return (completion - 1) / (timing["end"] - timing["first"]), completion


async def test_tui_overhead_vs_raw_llama_cpp(smollm_gguf: Path) -> None:
    engine = LlamaEngine(smollm_gguf, n_ctx=1024)
    prompt = engine.render_prompt([{"role": "user", "content": PROMPT}])
    raw_llm = load_llama(model_path=str(smollm_gguf), n_ctx=1024, verbose=False)
    settings = load_settings(model=str(smollm_gguf), tools=[])
    app = ChatApp(settings, lambda: engine, store=open_store())
    raw_runs: list[float] = []
    tui_runs: list[float] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None, 120)
        for seed in range(1, ROUNDS + 1):  # alternating order, so both see the same load
            if seed % 2:
                raw, raw_n = raw_tokens_per_second(raw_llm, prompt, seed)
                tui, tui_n = await tui_tokens_per_second(app, pilot, seed)
            else:
                tui, tui_n = await tui_tokens_per_second(app, pilot, seed)
                raw, raw_n = raw_tokens_per_second(raw_llm, prompt, seed)
            raw_runs.append(raw)
            tui_runs.append(tui)
            print(
                f"seed {seed}: raw {raw:.1f} tok/s ({raw_n} tokens), TUI {tui:.1f} tok/s ({tui_n})"
            )
    raw_llm.close()
    ratio = statistics.median(t / r for t, r in zip(tui_runs, raw_runs, strict=True))
    best = max(tui_runs) / max(raw_runs)
    print(
        f"\nBENCH TUI overhead: median of {ROUNDS} paired runs TUI/raw = {ratio:.3f} "
        f"(target >= 0.95); best of {ROUNDS}: raw llama-cpp-python {max(raw_runs):.1f} tok/s, "
        f"qwq-chat TUI {max(tui_runs):.1f} tok/s, ratio {best:.3f} (one lucky run moves it)"
    )
    assert ratio > 0
