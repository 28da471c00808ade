"""Tool-integrated GRPO: the model may call the chat's tools while it generates (docs/rl.md).

What TRL 1.16 does for us (its `environment_factory` + `max_tool_calling_iterations`): it renders
the prompt with the tool schemas through the tokenizer's chat template (QwQ's), parses each turn,
runs the calls, appends the results with the template's own tool-response suffix (QwQ:
`<|im_start|>user\\n<tool_response>\\n...\\n</tool_response><|im_end|>\\n<|im_start|>assistant
\\n<think>\\n`), generates again, and keeps a `tool_mask` that takes those suffix tokens out of the
loss. Where we go around it:

- QwQ's template is not in TRL's table of known response parsers, so we set the tokenizer's
  `response_template` to TRL's Qwen3 one (same `<think>` / `<tool_call>` JSON format);
- TRL builds a tool's schema from a Python function's signature and docstring, so each tool is a
  method generated from the chat's own `Tool` (name, description, parameter descriptions): the
  schema the model is trained with equals the one `qwq-chat` offers (a test checks this);
- a call is executed by the chat's `ToolRegistry.run`, so errors read as they do in the chat.

Per-rollout environment: a row may carry `stdin`, data the model sees only through the tool (the
python tool's programs read it on standard input); the CPU toy uses this (see toy.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from qwq_chat.rl_finetune.rewards import completion_text

TOOL_CALL_OPEN = "<tool_call>"


def chat_tools(names: Sequence[str]) -> list[Any]:
    """The chat's `Tool` objects for `names` (an unknown name is a UserError)."""
    from qwq_chat.app.tools.registry import build_registry

    registry = build_registry(names)
    return [registry.get(n) for n in registry.names]


def _docstring(tool: Any) -> str:
    """A Google-style docstring from which transformers rebuilds exactly `tool.schema()`."""
    props = tool.parameters.get("properties", {})
    args = "\n".join(f"    {name}: {spec.get('description', name)}" for name, spec in props.items())
    return f"{tool.description}\n\nArgs:\n{args}\n" if props else tool.description


def _method(tool: Any) -> Callable[..., str]:
    """`def <tool.name>(self, <param>: str, ...)` calling the environment's runner (no return
    annotation: transformers would add a `return` entry the chat's schema does not have)."""
    props = tool.parameters.get("properties", {})
    types = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}
    params = ", ".join(f"{p}: {types.get(s.get('type'), 'str')}" for p, s in props.items())
    source = (
        f"def {tool.name}(self, {params}):\n"
        f"    return self._call({tool.name!r}, dict({', '.join(f'{p}={p}' for p in props)}))\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # noqa: S102 - a fixed template over the registry's identifiers
    fn = namespace[tool.name]
    fn.__doc__ = _docstring(tool)
    return fn


class ToolEnvironment:
    """One rollout's tools (TRL environment): counts calls and errors, keeps the results."""

    tool_names: tuple[str, ...] = ()

    def __init__(self) -> None:
        from qwq_chat.app.tools.registry import ToolRegistry

        self.registry = ToolRegistry(chat_tools(self.tool_names))
        self.stdin: str | None = None
        self.calls = 0
        self.errors = 0
        self.results: list[str] = []

    def reset(self, stdin: str | None = None, **row: Any) -> None:
        self.stdin, self.calls, self.errors, self.results = stdin, 0, 0, []

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        from qwq_chat.app.events import ToolCall

        self.calls += 1
        if name == "python" and self.stdin:
            content, is_error = _python_with_stdin(arguments, self.stdin)
        else:
            result = self.registry.run(ToolCall(name=name, arguments=arguments, id="", raw=""))
            content, is_error = result.content, result.is_error
        self.errors += int(is_error)
        self.results.append(content)
        return content


def _python_with_stdin(arguments: dict[str, Any], stdin: str) -> tuple[str, bool]:
    """The chat's python tool (same sandbox, limits and output format) with the row's stdin."""
    from qwq_chat.app.sandbox.runner import Limits
    from qwq_chat.app.tools.base import ToolError
    from qwq_chat.app.tools.python_tool import DEFAULT_TIMEOUT_S, _get_sandbox, format_result

    code = arguments.get("code")
    if not isinstance(code, str) or not code.strip():
        return 'error: give the program as {"code": "print(1 + 1)"}', True
    try:
        result = _get_sandbox().run_python(
            code, stdin=stdin, limits=Limits(wall_s=DEFAULT_TIMEOUT_S, memory_mb=1024)
        )
        text = format_result(result, DEFAULT_TIMEOUT_S)
    except ToolError as exc:
        return f"error: {exc}", True
    return text, result.status != "finished" or result.return_code != 0


def environment_class(names: Sequence[str]) -> type[ToolEnvironment]:
    """A ToolEnvironment subclass whose public methods are exactly the named chat tools."""
    tools = chat_tools(names)
    attrs: dict[str, Any] = {t.name: _method(t) for t in tools}
    attrs["tool_names"] = tuple(t.name for t in tools)
    return type("ToolEnvironment_" + "_".join(attrs["tool_names"]), (ToolEnvironment,), attrs)


def set_response_parser(tokenizer: Any) -> Any:
    """QwQ turns parse like Qwen3's (`<think>`, `<tool_call>` JSON): give TRL that parser."""
    from trl.chat_template_utils import qwen3_schema, qwen3_template

    if getattr(tokenizer, "response_template", None) is None:
        try:
            tokenizer.response_template = qwen3_template
        except AttributeError:  # transformers < 5.13 only knows the legacy schema
            tokenizer.response_schema = qwen3_schema
    return tokenizer


# --- rewards and metrics over a tool rollout ------------------------------------------------------


def final_answer(completion: Any) -> str:
    """The text of the last assistant turn (after the last tool response)."""
    if isinstance(completion, str):
        return completion
    last = [m for m in completion if m.get("role", "assistant") == "assistant"][-1:]
    return completion_text(last)


def malformed_call(completion: Any) -> bool:
    """A `<tool_call>` the parser could not read stays in the text of an assistant turn."""
    if isinstance(completion, str):
        return TOOL_CALL_OPEN in completion
    return any(
        TOOL_CALL_OPEN in completion_text([m])
        for m in completion
        if m.get("role", "assistant") == "assistant"
    )


def tool_calls(completion: Any) -> int:
    if isinstance(completion, str):
        return len(re.findall(r"<tool_call>.*?</tool_call>", completion, re.S))
    return sum(len(m.get("tool_calls") or []) for m in completion)


def rollout_stats(
    completions: Sequence[Any], scores: Sequence[float | None], environments: Sequence[Any] | None
) -> dict[str, float]:
    """Per-batch tool metrics: calls per rollout, share calling a tool, tool errors, malformed
    calls, accuracy with and without a call (absent when no rollout falls in that group)."""
    n = max(1, len(completions))
    calls = [tool_calls(c) for c in completions]
    errors = [getattr(e, "errors", 0) for e in environments] if environments else [0] * len(calls)
    out = {
        "tool_calls_per_rollout": sum(calls) / n,
        "tool_call_rate": sum(c > 0 for c in calls) / n,
        "tool_error_rate": sum(errors) / max(1, sum(calls)),
        "tool_malformed_rate": sum(malformed_call(c) for c in completions) / n,
    }
    for key, keep in (("accuracy_with_tool", True), ("accuracy_without_tool", False)):
        group = [s for s, c in zip(scores, calls, strict=True) if (c > 0) == keep and s is not None]
        if group:
            out[key] = sum(group) / len(group)
    return out


def tool_accuracy_reward(
    prompts: Sequence[Any],
    completions: Sequence[Any],
    answer: Sequence[Any] | None = None,
    environments: Sequence[Any] | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **columns: Any,
) -> list[float | None]:
    """The math verifier on the final answer of each tool rollout (0/1); logs the tool metrics."""
    from qwq_chat.rl_finetune.verifiers.math import verify_batch

    golds = list(answer) if answer is not None else [None] * len(completions)
    rows = [i for i, g in enumerate(golds) if g is not None and str(g).strip()]
    scores: list[float | None] = [None] * len(completions)
    got = verify_batch([final_answer(completions[i]) for i in rows], [str(golds[i]) for i in rows])
    for i, s in zip(rows, got, strict=True):
        scores[i] = s
    if log_metric is not None:
        for key, value in rollout_stats(completions, scores, environments).items():
            log_metric(f"tools/{key}", value)
    return scores


def make_malformed_call_penalty(penalty: float) -> Callable[..., list[float | None]]:
    """-penalty for a rollout with an unreadable `<tool_call>` (an optional shaping term)."""

    def malformed_tool_call_penalty(
        prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        return [-penalty if malformed_call(c) else 0.0 for c in completions]

    return malformed_tool_call_penalty


# --- what one logged batch holds (the loss-mask check reads it) -----------------------------------


def batch_record(
    tokenizer: Any,
    output: dict[str, Any],
    step: int,
    inputs: Sequence[dict[str, Any]] = (),
    limit: int = 8,
) -> list[dict[str, Any]]:
    """Rollouts of one training batch: token ids, TRL's completion and tool masks, and the text
    of the tokens that are in and out of the loss (tool-calling rollouts first)."""
    ids = output["completion_ids"].tolist()
    mask = output["completion_mask"].tolist()
    tool_mask = output.get("tool_mask")
    tool_mask = tool_mask.tolist() if tool_mask is not None else [[1] * len(r) for r in ids]
    records = []
    rows = list(inputs) if len(inputs) == len(ids) else [{} for _ in ids]
    for row_ids, row_mask, row_tool, row in zip(ids, mask, tool_mask, rows, strict=True):
        n = sum(row_mask)
        row_ids, row_tool = row_ids[:n], row_tool[:n]
        masked = [t for t, m in zip(row_ids, row_tool, strict=True) if not m]
        records.append(
            {
                "step": step,
                "answer": row.get("answer"),
                "stdin": row.get("stdin"),
                "completion_ids": row_ids,
                "tool_mask": row_tool,
                "text": tokenizer.decode(row_ids),
                "masked_text": tokenizer.decode(masked),
            }
        )
    records.sort(key=lambda r: 0 if 0 in r["tool_mask"] else 1)
    return records[:limit]


# --- the same tools outside training: the chat's Toolbox protocol and a text tool loop ------------


class Toolbox:
    """One sample's tools as the chat's `Toolbox` (schemas/run/len), so `Session` runs its calls
    through the same environment code as training. (Not methods of the environment: TRL offers
    every public environment method to the model as a tool.)"""

    def __init__(self, env: ToolEnvironment) -> None:
        self.env = env

    @property
    def calls(self) -> int:
        return self.env.calls

    def __len__(self) -> int:
        return len(self.env.registry)

    def schemas(self) -> list[dict[str, Any]]:
        return self.env.registry.schemas()

    def run(self, call: Any) -> Any:
        from qwq_chat.app.events import ToolResult

        env = self.env
        if not call.name or env.registry.get(call.name) is None:
            env.calls += 1
            env.errors += 1
            return env.registry.run(call)
        before = env.errors
        content = env._call(call.name, call.arguments)
        return ToolResult(name=call.name, content=content, id=call.id, is_error=env.errors > before)


def toolbox(names: Sequence[str], stdin: str | None = None) -> Toolbox:
    """Fresh tools for one sample (a row's `stdin` goes to the python tool's programs)."""
    env = environment_class(names)()
    env.reset(stdin=stdin)
    return Toolbox(env)


def tool_turn_text(results: Sequence[str], name: str = "python") -> str:
    """What QwQ's template puts after a turn that ended in tool calls, up to the next reasoning
    opener: `<|im_end|>` + the tool-response user turn + `<|im_start|>assistant\\n<think>\\n`."""
    from qwq_chat.app.prompt import render

    call = {"type": "function", "function": {"name": name, "arguments": {}}}
    head = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ]
    prefix = render(head, add_generation_prompt=False)
    full = render(head + [{"role": "tool", "content": r} for r in results])
    cut = prefix.rindex("<|im_end|>")
    return full[cut:]
