"""Start-up: `qwq-chat --help` must answer within 0.5 s (heavy imports only inside commands).

Baseline in the same run: a bare `python -c pass`. Best of 5 each.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.benchmark


def best_of(args: list[str], n: int = 5) -> float:
    best = float("inf")
    for _ in range(n):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        best = min(best, time.perf_counter() - start)
    return best


def test_help_starts_fast() -> None:
    bare = best_of([sys.executable, "-c", "pass"])
    help_s = best_of([sys.executable, "-m", "qwq_chat.app", "--help"])
    print(f"\nBENCH app start-up: `qwq-chat --help` {help_s:.3f} s, bare python {bare:.3f} s, "
          f"ratio {help_s / bare:.1f}x (target: help <= 0.5 s)")  # fmt: skip
    assert help_s <= 0.5
