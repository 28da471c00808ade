"""Code execution speed: a trivial Python program through the sandbox server (HTTP + bubblewrap +
rlimits) vs plain `python3 -c` subprocesses with no isolation, same machine, same run.

Run: `pytest tests/benchmarks/test_bench_sandbox.py -s`
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import time

import httpx
from qwq_chat.app.sandbox.runner import Sandbox, find_system_python
from qwq_chat.app.sandbox.server import ServerConfig, serve_in_background

N = 300
PROGRAM = "print(sum(range(100)))"


def bare_rate(n: int, workers: int) -> float:
    python = find_system_python()

    def one(_: int) -> None:
        r = subprocess.run([python, "-c", PROGRAM], capture_output=True, timeout=30)
        assert r.stdout == b"4950\n"

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(n)))
    return n / (time.perf_counter() - start)


def server_rate(url: str, n: int, clients: int) -> float:
    async def run() -> None:
        sem = asyncio.Semaphore(clients)
        async with httpx.AsyncClient(timeout=60) as client:

            async def one() -> None:
                async with sem:
                    r = await client.post(url + "/run_code", json={"code": PROGRAM})
                assert r.json()["run_result"]["stdout"] == "4950\n"

            await asyncio.gather(*(one() for _ in range(n)))

    start = time.perf_counter()
    asyncio.run(run())
    return n / (time.perf_counter() - start)


def test_bench_sandbox_throughput() -> None:
    cores = os.cpu_count() or 1
    bare_rate(20, cores)  # warm the page cache
    bare = bare_rate(N, cores)
    sandbox = Sandbox()
    start = time.perf_counter()
    for _ in range(50):
        sandbox.run_python(PROGRAM)
    in_process_latency = (time.perf_counter() - start) / 50
    rates = {}
    for concurrency in (cores, 2 * cores):
        with serve_in_background(config=ServerConfig(concurrency=concurrency)) as server:
            server_rate(server.url, 20, 4 * cores)
            rates[concurrency] = server_rate(server.url, N, 4 * cores)
    bare_again = bare_rate(N, cores)  # the machine is shared: bracket the server runs
    baseline = (bare + bare_again) / 2
    print(
        f"\nsandbox: {N} runs of a trivial program, {cores} cores\n"
        f"  plain python3 -c, {cores} at a time (no isolation): {bare:.0f} and {bare_again:.0f} runs/s\n"
        + "".join(
            f"  server /run_code, concurrency {c}: {r:.0f} runs/s, ratio {r / baseline:.2f}\n"
            for c, r in rates.items()
        )
        + f"  one sandboxed run in-process, sequential: {in_process_latency * 1000:.0f} ms"
    )
    assert max(rates.values()) > 0
