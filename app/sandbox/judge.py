"""Test cases to verdicts: stdin/expected-stdout cases and assert-style cases (with an entry point).

Each test is one sandboxed run, so one test's infinite loop or crash cannot spoil another's verdict.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from qwq_chat.app.sandbox.runner import RunResult

Verdict = Literal[
    "passed",
    "wrong_answer",
    "runtime_error",
    "timeout",
    "memory_limit",
    "output_limit",
    "sandbox_error",
]
VERDICTS: tuple[str, ...] = Verdict.__args__  # type: ignore[attr-defined]


class BadTest(ValueError):
    """A test case in neither accepted shape."""


@dataclass(frozen=True)
class TestCase:
    """Either `stdin` + `expected_stdout`, or `assert_` (Python run after the code)."""

    stdin: str = ""
    expected_stdout: str | None = None
    assert_: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TestCase:
        if not isinstance(d, dict):
            raise BadTest(f"a test must be an object, got {type(d).__name__}")
        if "assert" in d:
            if not isinstance(d["assert"], str):
                raise BadTest('"assert" must be a string of Python')
            return cls(assert_=d["assert"])
        if "expected_stdout" in d or "output" in d:
            stdin, expected = (
                d.get("stdin", d.get("input", "")),
                d.get("expected_stdout", d.get("output")),
            )
            if not isinstance(stdin, str) or not isinstance(expected, str):
                raise BadTest('"stdin" and "expected_stdout" must be strings')
            return cls(stdin=stdin, expected_stdout=expected)
        raise BadTest(
            'each test needs either "assert" or "expected_stdout" (with optional "stdin"); '
            f"got keys {sorted(d)}"
        )


@dataclass
class TestResult:
    verdict: Verdict
    wall_s: float
    stdout: str = ""
    stderr: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SOLUTION_FILE = "solution.py"
_ASSERT_PRELUDE = (
    "import runpy as _runpy\n"
    "globals().update({_k: _v for _k, _v in _runpy.run_path("
    f"{SOLUTION_FILE!r}, run_name='solution').items() if not _k.startswith('__')}})\n"
)


def program_for(
    code: str, test: TestCase, entry_point: str | None
) -> tuple[str, str, dict[str, bytes]]:
    """(program, stdin, extra files) for one test.

    stdin tests run the code as the main program. Assert tests import it as a module first (so an
    `if __name__ == "__main__":` demo in the answer does not run and wait for input), then run the
    asserts with the answer's names in scope and `candidate` bound to the entry point.
    """
    if test.assert_ is None:
        return code, test.stdin, {}
    alias = f"candidate = {entry_point}\n" if entry_point else ""
    program = f"{_ASSERT_PRELUDE}{alias}{test.assert_}\n"
    return program, "", {SOLUTION_FILE: code.encode()}


def verdict_for(test: TestCase, run: RunResult) -> Verdict:
    if run.status == "sandbox_error":
        return "sandbox_error"
    if run.status == "timeout":
        return "timeout"
    if run.status == "output_limit":
        return "output_limit"
    if run.memory_exceeded:
        return "memory_limit"
    if run.return_code != 0:
        if test.assert_ is not None and _last_line(run.stderr).startswith("AssertionError"):
            return "wrong_answer"  # the code ran; the check failed
        return "runtime_error"
    if test.expected_stdout is not None and _norm(run.stdout) != _norm(test.expected_stdout):
        return "wrong_answer"
    return "passed"


def judge(
    code: str,
    tests: list[TestCase],
    entry_point: str | None,
    run: Callable[[str, str, dict[str, bytes]], RunResult],
) -> list[TestResult]:
    """Run each test through `run(program, stdin, files)` in order (the server runs them
    concurrently)."""
    results = []
    for test in tests:
        r = run(*program_for(code, test, entry_point))
        results.append(to_result(test, r))
    return results


def to_result(test: TestCase, run: RunResult, keep: int = 2000) -> TestResult:
    return TestResult(
        verdict_for(test, run), round(run.wall_s, 4), run.stdout[:keep], run.stderr[-keep:]
    )


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _norm(text: str) -> list[str]:
    """Compare outputs line by line, ignoring trailing spaces and trailing blank lines."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines
