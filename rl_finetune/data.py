"""Datasets for the recipe: JSONL rows validated one by one, then rendered into QwQ prompts.

Row shapes (docs/rl.md): math `{prompt, answer}`; code `{prompt, tests, entry_point?}`;
general `{prompt, constraints?}`; cold-start traces `{prompt, reasoning, answer}` or
`{prompt, completion}`. A bad row raises `ConfigError` naming the file, the line and the field.
A source may also be `hf:REPO[:split]` (a Hugging Face dataset with the same columns).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from qwq_chat.rl_finetune.config import ConfigError


class _Row(BaseModel):
    model_config = ConfigDict(extra="allow")
    prompt: str = Field(min_length=1)


class MathRow(_Row):
    answer: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _number_answers(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("answer"), (int, float)):
            data = {**data, "answer": str(data["answer"])}
        return data


class CodeTest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stdin: str | None = None
    expected_stdout: str | None = None
    # "assert" is a Python keyword, hence the alias.
    assert_: str | None = Field(None, alias="assert")

    @model_validator(mode="after")
    def _one_kind(self) -> CodeTest:
        io = self.expected_stdout is not None
        if io == (self.assert_ is not None):
            raise ValueError("a test has either expected_stdout (with stdin) or assert, not both")
        return self


class CodeRow(_Row):
    tests: list[CodeTest] = Field(min_length=1)
    entry_point: str | None = None


class GeneralRow(_Row):
    constraints: list[dict[str, Any]] | dict[str, Any] | None = None


class TraceRow(_Row):
    reasoning: str | None = None
    answer: str | None = None
    completion: str | None = None

    @model_validator(mode="after")
    def _has_target(self) -> TraceRow:
        if self.completion is None and (self.reasoning is None or self.answer is None):
            raise ValueError("a trace needs `completion`, or both `reasoning` and `answer`")
        if self.completion is not None and "</think>" not in self.completion:
            raise ValueError(
                "`completion` must close the reasoning with </think> before the answer"
            )
        return self

    def target(self) -> str:
        """Model output after the prompt's `<think>\\n`: reasoning, `</think>`, answer."""
        if self.completion is not None:
            return self.completion
        return f"{self.reasoning.strip()}\n</think>\n\n{self.answer.strip()}"


Kind = Literal["math", "code", "general", "trace"]
_SCHEMAS: dict[str, type[_Row]] = {
    "math": MathRow,
    "code": CodeRow,
    "general": GeneralRow,
    "trace": TraceRow,
}


def read_rows(source: str | Path, kind: Kind, base: Path | None = None) -> list[dict[str, Any]]:
    """Validated rows of one source (a JSONL path or `hf:REPO[:split]`) as plain dicts."""
    text = str(source)
    if text.startswith("hf:"):
        return _read_hf(text, kind)
    path = Path(text).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if not path.is_file():
        raise ConfigError(f"{path}: dataset not found; give a JSONL file or hf:REPO[:split]")
    schema = _SCHEMAS[kind]
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            if not isinstance(raw, dict):
                raise ConfigError(f"{path}:{number}: each line must be a JSON object")
            rows.append(_validate(schema, raw, f"{path}:{number}"))
    if not rows:
        raise ConfigError(f"{path}: no rows; a {kind} dataset needs at least one JSON line")
    return rows


def _validate(schema: type[_Row], raw: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        row = schema.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(row)"
        raise ConfigError(f"{where}: field {field}: {err['msg']}") from None
    out = row.model_dump(by_alias=True, exclude_none=True)
    if isinstance(row, TraceRow):
        out["completion"] = row.target()
    return out


def _read_hf(source: str, kind: Kind) -> list[dict[str, Any]]:
    import datasets

    _, _, rest = source.partition(":")
    repo, _, split = rest.partition(":")
    ds = datasets.load_dataset(repo, split=split or "train")
    schema = _SCHEMAS[kind]
    return [_validate(schema, dict(r), f"{source}[{i}]") for i, r in enumerate(ds)]


def render_prompt(
    tokenizer: Any, user: str, system: str | None = None, tools: list[dict] | None = None
) -> str:
    """QwQ's chat-template prompt, ending inside the reasoning (`<think>\\n`); with `tools`
    (schemas), the template's `# Tools` block as in tool rollouts."""
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": user}
    ]
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=False, add_generation_prompt=True
    )


def math_user_text(prompt: str, suffix: str) -> str:
    """The model card's instruction appended once (datasets often carry it already)."""
    if suffix and suffix not in prompt:
        return f"{prompt.rstrip()} {suffix}"
    return prompt
