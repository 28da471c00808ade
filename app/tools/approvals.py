"""Who decides whether a tool call may run: the rules from the config, then an approver callback.

The toolbox asks before every MCP tool call (and before built-in ones when `[mcp]
approve_builtin = true`) unless the tool is in `[mcp] always_allow`. The approver is the
frontend's: the TUI shows a modal, `ask` allows everything with `--approve-tools` and otherwise
denies with one line on stderr. "Always allow" is written back to the config file, so it holds
for the next run too.
"""

from __future__ import annotations

import os
import tempfile
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

Decision = Literal["once", "always", "deny"]
DENIED = "denied by the user"


@dataclass(frozen=True)
class ApprovalRequest:
    """One call waiting for a decision. `server` is None for a built-in tool."""

    name: str  # the name the model used (made unique across servers)
    tool: str  # the server's own name for it
    server: str | None
    arguments: dict[str, Any]

    @property
    def key(self) -> str:
        """How `always_allow` names the tool: "SERVER/TOOL", or the built-in tool's name."""
        return f"{self.server}/{self.tool}" if self.server else self.tool


Approver = Callable[[ApprovalRequest], Decision]


@dataclass
class ApprovalRules:
    """The config's rules; `remember()` adds a tool to `always_allow` in memory and in the file."""

    always_allow: set[str] = field(default_factory=set)
    approve_builtin: bool = False
    config_path: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Any) -> ApprovalRules:
        return cls(
            set(settings.mcp.always_allow),
            settings.mcp.approve_builtin,
            getattr(settings, "_config_path", None),
        )

    def needs_approval(self, request: ApprovalRequest) -> bool:
        if request.key in self.always_allow:
            return False
        return request.server is not None or self.approve_builtin

    def remember(self, request: ApprovalRequest) -> str | None:
        """Allow this tool from now on; returns a warning when the file could not be updated."""
        with self._lock:
            self.always_allow.add(request.key)
            if self.config_path is None:
                return None
            try:
                add_always_allow(self.config_path, request.key)
            except (OSError, tomllib.TOMLDecodeError) as exc:
                return f"could not save “always allow” to {self.config_path}: {exc}"
        return None


def add_always_allow(path: Path, key: str) -> None:
    """Add `key` to `[mcp] always_allow` in the TOML file at `path`, atomically.

    When the file has no `[mcp]` table of its own the table is appended and the user's text
    (comments included) is kept as it was; otherwise the file is rewritten with tomli-w.
    """
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    data = tomllib.loads(text)
    mcp = data.setdefault("mcp", {})
    allowed = list(mcp.get("always_allow", []))
    if key in allowed:
        return
    allowed.append(key)
    has_table = any(line.strip().replace(" ", "") == "[mcp]" for line in text.splitlines())
    if not has_table and "always_allow" not in mcp:
        import tomli_w

        block = tomli_w.dumps({"mcp": {"always_allow": allowed}})
        new_text = text + ("" if not text or text.endswith("\n") else "\n") + "\n" + block
    else:
        import tomli_w

        mcp["always_allow"] = allowed
        new_text = tomli_w.dumps(data)
    _write_atomic(path, new_text)


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def headless_approver(allow: bool, err: TextIO) -> Approver:
    """For `ask`: allow every call with --approve-tools; else deny, saying once how to allow it."""
    told: set[str] = set()

    def decide(request: ApprovalRequest) -> Decision:
        if allow:
            return "once"
        if request.key not in told:
            told.add(request.key)
            err.write(
                f"tool call {request.key} denied: pass --approve-tools to run MCP tools, or add "
                f'"{request.key}" to [mcp] always_allow in the config\n'
            )
            err.flush()
        return "deny"

    return decide


def deny_all(request: ApprovalRequest) -> Decision:
    """No one to ask (e.g. `serve`): only what the rules allow runs."""
    return "deny"
