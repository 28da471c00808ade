"""Export a conversation as Markdown (for people) and JSON (for programs), written atomically."""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict
from pathlib import Path

from qwq_chat.app.messages import Message


def to_markdown(title: str, messages: list[Message]) -> str:
    """Headings per turn; reasoning in a collapsible <details> block, apart from the answer."""
    lines = [f"# {title}", ""]
    for message in messages:
        if message.role == "user":
            lines += ["## User", "", message.content, ""]
        elif message.role == "system":
            lines += ["## System", "", message.content, ""]
        elif message.role == "assistant":
            lines += ["## Assistant", ""]
            if message.reasoning:
                state = " (unfinished)" if message.reasoning_unfinished else ""
                lines += [f"<details><summary>Reasoning{state}</summary>", "", message.reasoning]
                lines += ["", "</details>", ""]
            for call in message.tool_calls:
                args = json.dumps(call.get("arguments", {}), ensure_ascii=False)
                lines += [f"**Tool call** `{call.get('name', '')}` `{args}`", ""]
            if message.content:
                lines += [message.content, ""]
            if message.unfinished or message.finish_reason in ("cancelled", "length", "error"):
                lines += [f"*({message.finish_reason or 'unfinished'})*", ""]
        elif message.role == "tool":
            lines += [f"**Tool result** `{message.name}`:", "", "```", message.content, "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(conversation_id: str, title: str, messages: list[Message], settings: dict) -> str:
    data = {
        "id": conversation_id,
        "title": title,
        "settings": settings,
        "messages": [asdict(m) for m in messages],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def slug(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", title).strip("-").lower()[:40] or "chat"


def write_atomic(path: Path, text: str) -> None:
    """Temp file in the same directory, then rename: never a half-written export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_conversation(
    directory: Path,
    conversation_id: str,
    title: str,
    messages: list[Message],
    settings: dict,
) -> tuple[Path, Path]:
    """Write `<slug>-<id8>.md` and `.json` into `directory`; returns both paths."""
    stem = f"{slug(title)}-{conversation_id[:8]}"
    md, js = directory / f"{stem}.md", directory / f"{stem}.json"
    write_atomic(md, to_markdown(title, messages))
    write_atomic(js, to_json(conversation_id, title, messages, settings))
    return md, js
