"""The `python` tool: QwQ runs Python while it reasons, inside the bubblewrap sandbox.

Each call is a fresh interpreter in the same isolation the RL code server uses (no network, no
access to your files, CPU/memory/process limits, a wall-clock kill); nothing persists between
calls. The sandbox is checked once, on the first call: if bubblewrap cannot isolate code here the
tool answers with an error instead of running it bare.
"""

from __future__ import annotations

import threading
from typing import Any

from qwq_chat.app.tools.base import Tool, ToolError

MAX_CODE_CHARS = 100_000
MAX_RESULT_CHARS = 8_000
DEFAULT_TIMEOUT_S = 10.0

_sandbox: Any = None
_sandbox_error: str | None = None
_lock = threading.Lock()


def _get_sandbox() -> Any:
    """The shared, checked sandbox (one probe per process)."""
    global _sandbox, _sandbox_error
    with _lock:
        if _sandbox is None and _sandbox_error is None:
            from qwq_chat.app.sandbox.runner import Sandbox, SandboxUnavailable

            try:
                sandbox = Sandbox(prewarm=1)  # the next call starts without waiting
                sandbox.check()
                _sandbox = sandbox
            except SandboxUnavailable as exc:
                _sandbox_error = str(exc)
        if _sandbox_error is not None:
            raise ToolError(f"the python sandbox is unavailable: {_sandbox_error}")
        return _sandbox


def run_python(arguments: dict[str, Any], *, timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    code = arguments.get("code")
    if not isinstance(code, str) or not code.strip():
        raise ToolError('give the program as {"code": "print(1 + 1)"}')
    if len(code) > MAX_CODE_CHARS:
        raise ToolError(f"the program is {len(code)} characters; the limit is {MAX_CODE_CHARS}")
    from qwq_chat.app.sandbox.runner import Limits

    result = _get_sandbox().run_python(code, limits=Limits(wall_s=timeout_s, memory_mb=1024))
    return format_result(result, timeout_s)


def format_result(result: Any, timeout_s: float) -> str:
    """What the model reads: the output, then any error, kept short."""
    parts = []
    if result.stdout:
        parts.append(result.stdout.rstrip("\n"))
    if result.status == "timeout":
        parts.append(f"[timed out after {timeout_s:g} s and was stopped]")
    elif result.status == "output_limit":
        parts.append("[stopped: too much output]")
    elif result.status == "sandbox_error":
        raise ToolError(f"the sandbox failed: {result.message or result.stderr[:300]}")
    if result.stderr:
        parts.append("stderr:\n" + result.stderr.rstrip("\n"))
    if result.status == "finished" and result.return_code != 0:
        parts.append(f"[exit code {result.return_code}]")
    text = "\n".join(parts) or "(no output; use print() to show results)"
    if result.truncated:
        text += "\n[output truncated]"
    if len(text) > MAX_RESULT_CHARS:
        half = MAX_RESULT_CHARS // 2
        text = text[:half] + "\n[... output truncated ...]\n" + text[-half:]
    return text


def python_tool() -> Tool:
    return Tool(
        name="python",
        description=(
            "Run a Python 3 program in an isolated sandbox and return what it prints. Each call "
            "starts a fresh interpreter (no state is kept between calls); no network and no files "
            "from the host; standard library only; 10 second limit. Use print() for results."
        ),
        parameters={
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "The complete Python program."}
            },
            "required": ["code"],
        },
        run=run_python,
    )
