"""Overhead of one MCP tool round trip: the calculator through `qwq-chat mcp serve` over stdio
(the chat's MCP client: JSON-RPC over pipes, the background loop, the SDK's validation on both
sides) vs calling the same Python function in process, same machine, same run.

Run: `pytest tests/benchmarks/test_bench_mcp.py -s`
"""

from __future__ import annotations

import statistics
import sys
import time

import pytest
from qwq_chat.app.tools.calculator import calculator_tool
from qwq_chat.app.tools.mcp_client import McpManager
from qwq_chat.app.tools.mcp_config import ServerSpec

pytestmark = pytest.mark.benchmark

N = 200
ROUNDS = 5
EXPRESSION = "(3/7 + 0.1) * 14"


def _per_call_ms(call, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        call()
    return (time.perf_counter() - start) * 1000 / n


def test_bench_mcp_round_trip_vs_in_process() -> None:
    tool = calculator_tool()
    expected = tool.call({"expression": EXPRESSION})
    spec = ServerSpec("qwq", command=sys.executable, args=("-m", "qwq_chat.app", "mcp", "serve"))
    manager = McpManager([spec], timeout_s=30, startup_timeout_s=60)
    manager.start()
    manager.wait_ready()
    try:
        assert manager.servers["qwq"].status == "ready", manager.servers["qwq"].error
        assert manager.call("qwq", "calculator", {"expression": EXPRESSION}) == expected
        local, remote = [], []
        for _ in range(ROUNDS):  # alternate, so drifts in machine load hit both alike
            local.append(_per_call_ms(lambda: tool.call({"expression": EXPRESSION}), N))
            remote.append(
                _per_call_ms(
                    lambda: manager.call("qwq", "calculator", {"expression": EXPRESSION}), N
                )
            )
    finally:
        manager.close()
    local_ms, remote_ms = statistics.median(local), statistics.median(remote)
    ratios = sorted(r / loc for r, loc in zip(remote, local, strict=True))
    print(
        f"\ncalculator {EXPRESSION!r}, {N} calls x {ROUNDS} rounds (medians): "
        f"in process {local_ms:.3f} ms, over MCP stdio {remote_ms:.3f} ms; "
        f"overhead {remote_ms - local_ms:.3f} ms per call; ratio {statistics.median(ratios):.1f}x "
        f"(rounds {ratios[0]:.1f}-{ratios[-1]:.1f}x)"
    )
    assert remote_ms - local_ms < 50  # one round trip must stay far below a model's token time
