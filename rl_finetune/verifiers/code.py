"""Code answers: pull the program out of a completion and score it against test cases.

The answer's last fenced code block (```python ... ``` or a bare ``` block) after the reasoning is
the program. Scoring runs it through the sandbox server (`qwq_chat.app.sandbox`); the reward is the
fraction of tests passed.
"""

from __future__ import annotations

import json
import re
from typing import Any

from qwq_chat.rl_finetune.verifiers.answer import strip_reasoning

_FENCE_RE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)```", re.DOTALL)
PYTHON_TAGS = {"", "python", "python3", "py"}


def extract_code(completion: str) -> str | None:
    """The last Python (or untagged) fenced block after the reasoning, or None."""
    answer = strip_reasoning(completion)
    if answer is None:
        return None
    blocks = [body for tag, body in _FENCE_RE.findall(answer) if tag.lower() in PYTHON_TAGS]
    return blocks[-1] if blocks and blocks[-1].strip() else None


def parse_tests(tests: Any) -> list[dict[str, Any]]:
    """Tests as a list of dicts, from a list or a JSON string (how verl stores ground truth)."""
    if isinstance(tests, str):
        tests = json.loads(tests)
    if isinstance(tests, dict) and "inputs" in tests and "outputs" in tests:  # APPS / codecontests
        return [
            {"stdin": i, "expected_stdout": o}
            for i, o in zip(tests["inputs"], tests["outputs"], strict=True)
        ]
    if not isinstance(tests, list):
        raise ValueError("tests must be a list of test objects (or a JSON string of one)")
    return list(tests)
