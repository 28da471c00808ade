"""The exact calculator (no eval) and the tool registry."""

from __future__ import annotations

import pytest
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import ToolCall
from qwq_chat.app.tools.base import ToolError
from qwq_chat.app.tools.calculator import evaluate
from qwq_chat.app.tools.registry import BUILTIN_TOOLS, ToolRegistry, build_registry


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("2**100", "1267650600228229401496703205376"),
        ("2^10", "1024"),
        ("0.1 + 0.2", "3/10 ≈ 0.300000000000000"),
        ("sqrt(8)", "2*sqrt(2) ≈ 2.82842712474619"),
        ("factorial(20)", "2432902008176640000"),
        ("gcd(84, 36) + lcm(4, 6)", "24"),
        ("solve(x**2 - 2, x)", "[-sqrt(2), sqrt(2)]"),
        ("diff(x**3, x)", "3*x**2"),
        ("7 // 2 + 7 % 3", "4"),
        ("-(3 - 5) * 2", "4"),
        ("9.9 - 9.11", "79/100 ≈ 0.790000000000000"),
    ],
)
def test_exact_results(expression: str, expected: str) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("__import__('os').system('echo hi')", "unsupported syntax"),
        ("__import__('os')", "unknown function"),
        ("().__class__", "unsupported syntax"),
        ("open", "unknown name"),
        ("lambda: 1", "unsupported syntax"),
        ("10**10**10", "too large"),
        ("factorial(10**7)", "too large"),
        ("1/0", "undefined"),
        ("2 +", "cannot parse"),
        ("", "empty"),
        ("x" * 3000, "longer than"),
    ],
)
def test_rejected_safely(expression: str, message: str) -> None:
    with pytest.raises(ToolError, match=message):
        evaluate(expression)


def test_registry_runs_and_reports_errors() -> None:
    registry = build_registry(["calculator"])
    assert registry.names == ["calculator"] and "calculator" in BUILTIN_TOOLS
    schema = registry.schemas()[0]
    assert schema["function"]["parameters"]["required"] == ["expression"]
    ok = registry.run(ToolCall("calculator", {"expression": "6*7"}, id="c1"))
    assert (ok.content, ok.is_error, ok.id) == ("42", False, "c1")
    bad = registry.run(ToolCall("calculator", {"expression": "1/0"}))
    assert bad.is_error and "undefined" in bad.content
    unknown = registry.run(ToolCall("weather", {}))
    assert unknown.is_error and "available: calculator" in unknown.content
    assert ToolRegistry().run(ToolCall("", {}, raw="{oops")).is_error
    with pytest.raises(UserError, match="unknown tool"):
        build_registry(["nope"])
