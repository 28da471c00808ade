"""The verifiers as reward functions for TRL and verl.

TRL (GRPOTrainer) calls `f(prompts=..., completions=..., completion_ids=..., **dataset_columns)` and
accepts `None` for a row the function does not apply to. Completions are strings, or (for
conversational datasets) lists of message dicts whose assistant contents we join. Dataset columns
follow the project's JSONL shapes: math `answer`, code `tests` (+ `entry_point`), general
`constraints`.

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info=None)`; point its
`custom_reward_function.path` at this file and `name` at `compute_score`.

No torch imports here: the chat app and other RL engines use these too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any

from qwq_chat.rl_finetune.verifiers import math as math_verifier
from qwq_chat.rl_finetune.verifiers import rules
from qwq_chat.rl_finetune.verifiers.code import extract_code, parse_tests

SANDBOX_URL_ENV = "QWQ_SANDBOX_URL"

Completion = str | list[dict[str, Any]]


def completion_text(completion: Completion) -> str:
    """The model's text: a string as is; for a message list, the assistant contents joined.

    A message with `reasoning_content` (OpenAI-style APIs) gets it back in front as
    `<think>`-delimited text, so the verifiers see the same shape either way.
    """
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        reasoning = message.get("reasoning_content")
        if reasoning:
            parts.append(f"<think>\n{reasoning}\n</think>\n")
        content = message.get("content") or ""
        parts.append(content if isinstance(content, str) else _text_of_parts(content))
    return "".join(parts)


def _text_of_parts(content: list[Any]) -> str:
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def _rows(column: Sequence[Any] | None, n: int) -> list[Any]:
    """A dataset column as a list, or n Nones when the dataset has no such column."""
    return [None] * n if column is None else list(column)


# --- TRL reward functions ------------------------------------------------------------------------


def math_accuracy_reward(
    prompts: Sequence[Any],
    completions: Sequence[Completion],
    answer: Sequence[Any] | None = None,
    **columns: Any,
) -> list[float | None]:
    """1.0/0.0 by `verifiers.math.verify` against the `answer` column; None where there is none."""
    golds = list(answer) if answer is not None else [None] * len(completions)
    rows = [i for i, g in enumerate(golds) if g is not None and str(g).strip()]
    scores = (
        math_verifier.verify_batch(
            [completion_text(completions[i]) for i in rows], [str(golds[i]) for i in rows]
        )
        if rows
        else []
    )
    out: list[float | None] = [None] * len(completions)
    for i, s in zip(rows, scores, strict=True):
        out[i] = s
    return out


def format_reward(
    prompts: Sequence[Any], completions: Sequence[Completion], **columns: Any
) -> list[float | None]:
    """1.0 when the reasoning is closed, the answer non-empty and free of template/tool tags."""
    return [rules.format_score(completion_text(c)) for c in completions]


def instruction_reward(
    prompts: Sequence[Any],
    completions: Sequence[Completion],
    constraints: Sequence[Any] | None = None,
    **columns: Any,
) -> list[float | None]:
    """Fraction of IFEval-style `constraints` followed; None for rows without constraints."""
    rows = _rows(constraints, len(completions))
    out: list[float | None] = []
    for prompt, completion, c in zip(prompts, completions, rows, strict=True):
        if not c:
            out.append(None)
            continue
        out.append(rules.instruction_score(completion_text(completion), c, _prompt_text(prompt)))
    return out


def make_soft_overlong_reward(
    max_completion_length: int, cache_length: int
) -> Callable[..., list[float | None]]:
    """DAPO's soft overlong punishment as a TRL reward (counts `completion_ids` tokens)."""

    def soft_overlong_reward(
        prompts: Sequence[Any],
        completions: Sequence[Completion],
        completion_ids: Sequence[Sequence[int]] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        if completion_ids is None:
            raise ValueError("soft_overlong_reward needs completion_ids (TRL passes them)")
        return [
            rules.soft_overlong_penalty(len(ids), max_completion_length, cache_length)
            for ids in completion_ids
        ]

    return soft_overlong_reward


def make_code_reward(url: str | None = None, *, timeout: float = 10.0) -> Callable[..., Any]:
    """An async TRL reward: the fraction of `tests` the answer's code passes on the sandbox server
    at `url` (default: $QWQ_SANDBOX_URL). None for rows without tests; 0.0 when there is no code."""
    from qwq_chat.app.sandbox.client import SandboxClient

    base = url or os.environ.get(SANDBOX_URL_ENV)
    if not base:
        raise ValueError(
            f"no sandbox URL: pass url= or set {SANDBOX_URL_ENV} "
            "(start one with `qwq-chat sandbox serve` or qwq_chat.app.sandbox.server.serve_in_background())"
        )
    client = SandboxClient(base)

    async def code_reward(
        prompts: Sequence[Any],
        completions: Sequence[Completion],
        tests: Sequence[Any] | None = None,
        entry_point: Sequence[Any] | None = None,
        **columns: Any,
    ) -> list[float | None]:
        import httpx

        n = len(completions)
        test_rows = _rows(tests, n)
        entry_rows = _rows(entry_point, n)

        async def one(http: httpx.AsyncClient, i: int) -> float | None:
            if not test_rows[i]:
                return None
            code = extract_code(completion_text(completions[i]))
            if code is None:
                return 0.0
            result = await client.aevaluate(
                code, parse_tests(test_rows[i]), entry_rows[i] or None, timeout=timeout, client=http
            )
            return float(result["pass_fraction"])

        async with httpx.AsyncClient(timeout=client.timeout_s) as http:
            return list(await asyncio.gather(*(one(http, i) for i in range(n))))

    return code_reward


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        return "\n".join(str(m.get("content", "")) for m in prompt if m.get("role") == "user")
    return ""


# --- verl -----------------------------------------------------------------------------------------

MATH_SOURCES = ("math", "gsm8k", "aime", "amc", "olympiad", "numina", "deepscaler", "dapo")
CODE_SOURCES = (
    "code",
    "apps",
    "taco",
    "leetcode",
    "livecodebench",
    "humaneval",
    "mbpp",
    "primeintellect",
)
IF_SOURCES = ("ifeval", "ifbench", "instruction")


def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None
) -> float:
    """verl's custom reward entry point.

    `data_source` picks the verifier: names containing a math dataset name (math, gsm8k, aime, ...)
    use `verify`; code datasets (code, apps, taco, humaneval, ...) run `ground_truth` as tests on the
    sandbox at `extra_info["sandbox_url"]` or $QWQ_SANDBOX_URL; IFEval-style sources check
    `ground_truth` as constraints. Anything else raises NotImplementedError, as verl's own does.
    """
    source = (data_source or "").lower()
    extra = extra_info or {}
    if any(s in source for s in IF_SOURCES):
        return rules.instruction_score(solution_str, ground_truth, str(extra.get("prompt", "")))
    if any(s in source for s in CODE_SOURCES):
        from qwq_chat.app.sandbox.client import SandboxClient

        url = extra.get("sandbox_url") or os.environ.get(SANDBOX_URL_ENV)
        if not url:
            raise ValueError(
                f"code reward for {data_source!r} needs extra_info['sandbox_url'] or ${SANDBOX_URL_ENV}"
            )
        code = extract_code(solution_str)
        if code is None:
            return 0.0
        result = SandboxClient(url).evaluate(
            code, parse_tests(ground_truth), extra.get("entry_point")
        )
        return float(result["pass_fraction"])
    if any(s in source for s in MATH_SOURCES):
        return math_verifier.verify(solution_str, str(ground_truth))
    raise NotImplementedError(f"no verifier for data_source {data_source!r}")
