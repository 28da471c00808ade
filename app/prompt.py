"""The exact prompt text: an OpenAI-style message list (+ tools) rendered with a chat template.

Which template: a GGUF's own `tokenizer.chat_template` when it is QwQ's upstream template, or any
template of another model family (e.g. SmolLM2's ChatML); for QwQ-family copies that are known to be
wrong the upstream template shipped in `assets/` is used instead (docs/architecture.md):
- llama.cpp's copy with `enable_thinking`: rendered without that variable (as llama-cpp-python does)
  it appends `</think>`, silently switching thinking off;
- old copies whose generation prompt lacks `<think>\\n`;
- any other edited copy (a QwQ-style template that is not byte-identical to upstream).
A GGUF without a template gets the shipped one too.

Rendering matches transformers' `apply_chat_template`: a sandboxed jinja2 environment with
`trim_blocks`/`lstrip_blocks`, `loopcontrols`, `raise_exception`, `strftime_now` and a `tojson` that
keeps key order and does not HTML-escape (plain jinja2's `tojson` sorts keys and escapes `<>&'`,
which changes the tool schemas the model was trained on).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import TemplateError
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment
from qwq_chat.app.assets import chat_template as shipped_template
from qwq_chat.app.errors import UserError

UPSTREAM_MD5 = "9aecb5549f55f72c2022cbf65c9ba798"


@dataclass(frozen=True)
class ChosenTemplate:
    """The template to use and why (shown by `render-prompt` and in the log)."""

    source: str
    origin: str  # "gguf" or "shipped"
    reason: str


def _is_qwq_family(template: str) -> bool:
    return "</think>" in template and "<|im_start|>" in template


def choose_template(gguf_template: str | None) -> ChosenTemplate:
    """Pick the GGUF's template or the shipped upstream one (see module docstring)."""
    if not gguf_template:
        return ChosenTemplate(shipped_template(), "shipped", "the model file has no chat template")
    digest = hashlib.md5(gguf_template.encode("utf-8")).hexdigest()
    if digest == UPSTREAM_MD5 or gguf_template.strip() == shipped_template().strip():
        return ChosenTemplate(gguf_template, "gguf", "the model's template is QwQ's upstream one")
    if _is_qwq_family(gguf_template):
        if "enable_thinking" in gguf_template:
            reason = "the model's template is llama.cpp's enable_thinking copy (disables thinking)"
        elif "<think>\\n" not in gguf_template and "<think>\n" not in gguf_template:
            reason = "the model's template is an old copy without <think> in the generation prompt"
        else:
            reason = "the model's template is a modified QwQ copy"
        return ChosenTemplate(shipped_template(), "shipped", reason)
    return ChosenTemplate(gguf_template, "gguf", "the model's own template (not a QwQ model)")


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """transformers' chat-template `tojson`: key order kept, nothing HTML-escaped."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


@lru_cache(maxsize=8)
def _compile(source: str) -> Any:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def render(
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    template: str | None = None,
    add_generation_prompt: bool = True,
    **extra: Any,
) -> str:
    """Render `messages` with `template` (default: the shipped QwQ template).

    `extra` carries special tokens some templates use (`bos_token`, `eos_token`).
    """
    source = template if template is not None else shipped_template()
    try:
        return _compile(source).render(
            messages=messages,
            tools=tools or None,
            add_generation_prompt=add_generation_prompt,
            **extra,
        )
    except TemplateError as exc:
        raise UserError(f"the chat template failed on this conversation: {exc}") from None


def opens_reasoning(prompt: str) -> bool:
    """True when the prompt ends inside an opened reasoning block (QwQ: "...assistant\\n<think>\\n")."""
    tail = prompt.rstrip(" \n")
    return tail.endswith("<think>")


def _read_json(path: str) -> Any:
    """A JSON file's content, or a UserError saying why it can't be read."""
    from pathlib import Path

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None


def load_conversation(path: str) -> list[dict[str, Any]]:
    """Read a conversation JSON file for `render-prompt`: a list of messages or {"messages": [...]}."""
    data = _read_json(path)
    if isinstance(data, dict):
        data = data.get("messages")
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) for m in data
    ):
        raise UserError(
            f'{path} must hold a list of messages like [{{"role": "user", "content": "..."}}] '
            'or {"messages": [...]}'
        )
    return data


def load_tools(path: str) -> list[dict[str, Any]]:
    """Read a tools JSON file: a list of OpenAI-style function schemas (or {"tools": [...]})."""
    data = _read_json(path)
    if isinstance(data, dict):
        data = data.get("tools")
    if not isinstance(data, list):
        raise UserError(f'{path} must hold a list of tool schemas or {{"tools": [...]}}')
    return data
