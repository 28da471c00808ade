"""The chat's tools as verl `BaseTool`s, for `rl train --engine verl` with stage1.tools set.

verl's multi-turn rollout (its `tool_agent` loop) reads RUN/verl/tool_config.yaml, which names
`SandboxTool` here with the chat's own schema for each tool. On a cluster the python tool runs on
the code server at `sandbox_url` (`qwq-chat sandbox serve --host 0.0.0.0`), with a row's `stdin`
passed through verl's per-row `tools_kwargs.<tool>.create_kwargs`; the calculator runs in
process. Importing this module needs verl's full install (it imports `verl.tools`), so the
checks that run without one read its class names from the source (tests/rl).
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from verl.tools.base_tool import BaseTool
from verl.tools.schemas import OpenAIFunctionToolSchema, ToolResponse


class SandboxTool(BaseTool):
    """One chat tool (config `tool`: python or calculator); python runs on `sandbox_url`."""

    def __init__(self, config: dict, tool_schema: OpenAIFunctionToolSchema) -> None:
        super().__init__(config, tool_schema)
        self.tool = config["tool"]
        self.sandbox_url = config.get("sandbox_url") or ""
        self._stdin: dict[str, str] = {}

    async def create(self, instance_id: str | None = None, **kwargs: Any):
        instance_id = instance_id or str(uuid4())
        self._stdin[instance_id] = (kwargs.get("create_kwargs") or {}).get("stdin") or ""
        return instance_id, ToolResponse()

    async def execute(self, instance_id: str, parameters: dict[str, Any], **kwargs: Any):
        if self.tool == "python":
            text = await self._python(parameters, self._stdin.get(instance_id, ""))
        else:
            from qwq_chat.app.events import ToolCall
            from qwq_chat.app.tools.registry import build_registry

            result = build_registry([self.tool]).run(ToolCall(self.tool, parameters))
            text = result.content
        return ToolResponse(text=text), 0.0, {}

    async def _python(self, parameters: dict[str, Any], stdin: str) -> str:
        import httpx

        code = parameters.get("code")
        if not isinstance(code, str) or not code.strip():
            return 'error: give the program as {"code": "print(1 + 1)"}'
        async with httpx.AsyncClient(timeout=30) as http:
            r = await http.post(
                self.sandbox_url.rstrip("/") + "/run_code",
                json={"code": code, "language": "python", "stdin": stdin, "run_timeout": 10},
            )
        run = r.json().get("run_result") or {}
        out = (run.get("stdout") or "").rstrip("\n")
        err = (run.get("stderr") or "").rstrip("\n")
        return "\n".join(p for p in (out, "stderr:\n" + err if err else "") if p) or (
            "(no output; use print() to show results)"
        )

    async def release(self, instance_id: str, **kwargs: Any) -> None:
        self._stdin.pop(instance_id, None)
