"""Text for `imatrix` (calibration) and `verify --kld` (held-out evaluation).

A file is plain text (`.txt` or any non-JSONL file: used as is) or JSONL with one document per
line: `{"text": "..."}` (used as is) or `{"messages": [{"role": ..., "content": ...}, ...]}`, a
conversation rendered with the model's own chat template, so the model sees the markup it sees
in use. A conversation ending with an assistant turn is rendered as at generation time: the
prompt with its generation prefix, then the assistant's full text (its `<think>` reasoning kept)
and the model's end-of-turn token.

The project ships two sets written for it (assets/calibration/): `imatrix.jsonl`, the default
calibration (QwQ-style `<think>` traces, code, math, multilingual chat, prose), and
`heldout.jsonl`, different text of the same kinds for measuring quality, never used to calibrate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwq_chat.convert.errors import ConvertError

CALIBRATION_ASSET = "calibration/imatrix.jsonl"
HELDOUT_ASSET = "calibration/heldout.jsonl"
THINK_OPEN = "<think>\n"


@dataclass(frozen=True)
class Document:
    """One text, or one conversation to render with the model's template."""

    text: str | None = None
    messages: tuple[dict[str, Any], ...] | None = None


@dataclass(frozen=True)
class Corpus:
    documents: list[Document]
    label: str  # what the imatrix file records as its dataset


def shipped(asset: str) -> Path:
    from qwq_chat.app.assets import asset_path

    return asset_path(asset)


def load_corpus(path: Path | str | None, default_asset: str) -> Corpus:
    """Documents from `path`, or from the shipped `default_asset` when `path` is None."""
    if path is None:
        return Corpus(read_documents(shipped(default_asset)), f"qwq-chat:{default_asset}")
    path = Path(path)
    return Corpus(read_documents(path), str(path))


def read_documents(path: Path) -> list[Document]:
    if not path.is_file():
        raise ConvertError(f"{path} does not exist: give a .txt or .jsonl file of text")
    try:
        content = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConvertError(f"{path} is not UTF-8 text ({exc})") from None
    if path.suffix.lower() == ".jsonl":
        docs = [_parse_line(path, n, line) for n, line in enumerate(content.splitlines(), 1)]
        docs = [d for d in docs if d is not None]
    else:
        docs = [Document(text=content)] if content.strip() else []
    if not docs:
        raise ConvertError(
            f"{path} holds no text: give plain text, or JSONL lines of "
            '{"text": ...} or {"messages": [...]}'
        )
    return docs


def _parse_line(path: Path, n: int, line: str) -> Document | None:
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConvertError(f"{path}:{n} is not valid JSON ({exc.msg})") from None
    if isinstance(row, dict) and isinstance(row.get("text"), str):
        return Document(text=row["text"]) if row["text"].strip() else None
    messages = row.get("messages") if isinstance(row, dict) else None
    if (
        isinstance(messages, list)
        and messages
        and all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in messages
        )
    ):
        return Document(messages=tuple(messages))
    raise ConvertError(
        f'{path}:{n}: expected {{"text": "..."}} or {{"messages": [{{"role": ..., '
        '"content": ...}, ...]}'
    )


def render_corpus(corpus: Corpus, chat_template: str | None, eos_text: str) -> str:
    """All documents as one text (conversations through the model's chat template)."""
    parts = []
    for doc in corpus.documents:
        if doc.text is not None:
            parts.append(doc.text)
        else:
            parts.append(render_conversation(list(doc.messages or ()), chat_template, eos_text))
    return "\n\n".join(parts)


def corpus_chunks(model: Any, corpus: Corpus, n_ctx: int, max_chunks: int | None) -> Any:
    """The corpus rendered with `model`'s chat template (a ChunkModel), tokenized and cut to whole
    chunks of `n_ctx` tokens, at most `max_chunks` of them: what imatrix and verify --kld run."""
    rendered = render_corpus(corpus, model.meta("tokenizer.chat_template"), model.eos_text)
    tokens = model.tokenize(rendered)
    n_chunks = len(tokens) // n_ctx
    if n_chunks == 0:
        raise ConvertError(
            f"{corpus.label} gives only {len(tokens)} tokens: one chunk needs {n_ctx}; add text "
            "or lower --n-ctx"
        )
    if max_chunks:
        n_chunks = min(n_chunks, max_chunks)
    return tokens[: n_chunks * n_ctx]


def render_conversation(
    messages: list[dict[str, Any]], chat_template: str | None, eos_text: str
) -> str:
    """A conversation as the model sees it while generating its last assistant turn."""
    from qwq_chat.app.prompt import choose_template, render

    template = choose_template(chat_template).source
    if messages[-1]["role"] != "assistant":
        return render(messages, template=template, add_generation_prompt=False)
    prompt = render(messages[:-1], template=template, add_generation_prompt=True)
    answer = messages[-1]["content"]
    if prompt.endswith(THINK_OPEN) and answer.startswith(THINK_OPEN):
        answer = answer[len(THINK_OPEN) :]  # the template already opened the reasoning
    return prompt + answer + eos_text
