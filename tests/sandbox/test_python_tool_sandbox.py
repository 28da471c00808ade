"""The chat app's `python` tool: runs code in the bubblewrap sandbox through the tool registry."""

from __future__ import annotations

import pytest
from qwq_chat.app.events import ToolCall
from qwq_chat.app.tools import python_tool as pt
from qwq_chat.app.tools.base import ToolError
from qwq_chat.app.tools.registry import build_registry


def test_registry_offers_python_and_runs_it() -> None:
    registry = build_registry(["python"])
    schema = registry.schemas()[0]["function"]
    assert schema["name"] == "python" and schema["parameters"]["required"] == ["code"]
    result = registry.run(ToolCall(name="python", arguments={"code": "print(2**100)"}))
    assert not result.is_error
    assert result.content == str(2**100)


def test_code_is_isolated() -> None:
    out = pt.run_python({"code": "import os; print(os.getuid(), os.path.exists('/etc/passwd'))"})
    assert out == "65534 False"


def test_errors_timeouts_and_silence_are_reported_to_the_model() -> None:
    out = pt.run_python({"code": "1/0"})
    assert "ZeroDivisionError" in out and "[exit code 1]" in out
    out = pt.run_python({"code": "import time; time.sleep(30)"}, timeout_s=1)
    assert "timed out after 1 s" in out
    assert "no output" in pt.run_python({"code": "x = 1"})


def test_long_output_is_shortened() -> None:
    out = pt.run_python({"code": "for i in range(100000): print(i)"})
    assert len(out) <= pt.MAX_RESULT_CHARS + 100 and "truncated" in out


def test_bad_arguments_are_tool_errors() -> None:
    with pytest.raises(ToolError, match="give the program"):
        pt.run_python({})
    registry = build_registry(["python"])
    result = registry.run(ToolCall(name="python", arguments={"code": ""}))
    assert result.is_error and "give the program" in result.content


def test_unavailable_sandbox_is_an_error_not_a_bare_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pt, "_sandbox", None)
    monkeypatch.setattr(pt, "_sandbox_error", None)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolError, match="sandbox is unavailable.*bubblewrap"):
        pt.run_python({"code": "print(1)"})
