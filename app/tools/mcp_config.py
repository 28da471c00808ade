"""Which MCP servers to start: `[mcp.servers.NAME]` in config.toml plus a `mcpServers` JSON file.

The JSON file has the shape Claude Desktop, Cursor and LM Studio use, so a user can point
`--mcp-config` at the file they already have:

    {"mcpServers": {"files": {"command": "npx", "args": ["-y", "server-fs", "/tmp"]},
                    "search": {"url": "https://example.com/mcp",
                               "headers": {"Authorization": "Bearer ${SEARCH_TOKEN}"}}}}

`${VAR}` (and `${VAR:-default}`) in any string is filled from the environment when the server
starts, so secrets stay out of files; a variable that is not set is that server's error.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from qwq_chat.app.config import McpServerSettings
from qwq_chat.app.errors import UserError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
# Keys other apps write into their mcpServers entries that mean nothing here (or are handled below).
_FOREIGN_KEYS = {"type", "transport", "transportType", "disabled", "alwaysAllow", "autoApprove",
                 "description", "timeout"}  # fmt: skip
_TRANSPORTS = {"stdio", "http", "streamable-http", "streamableHttp", "streamable_http"}


class McpConfigError(UserError):
    """A server entry that cannot be used as written (bad file, missing variable...)."""


@dataclass(frozen=True)
class ServerSpec:
    """One server, variables filled in: either `command` (stdio) or `url` (Streamable HTTP)."""

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float | None = None

    @property
    def transport(self) -> str:
        return "stdio" if self.command else "http"


def substitute(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Fill `${VAR}` / `${VAR:-default}` from `environ` (default: the process environment)."""
    env = os.environ if environ is None else environ

    def fill(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise McpConfigError(
            f"environment variable {name} is not set (used as ${{{name}}}); set it and restart"
        )

    return _VAR.sub(fill, text)


def resolve(
    name: str, server: McpServerSettings, environ: Mapping[str, str] | None = None
) -> ServerSpec:
    """The server with variables filled in; exactly one of command and url must be given."""
    if bool(server.command) == bool(server.url):
        raise McpConfigError(
            f"MCP server {name!r}: give either `command` (a stdio server) or `url` "
            "(a Streamable HTTP server), not both or neither"
        )

    def sub(text: str) -> str:
        return substitute(text, environ)

    return ServerSpec(
        name=name,
        command=sub(server.command) if server.command else None,
        args=tuple(sub(a) for a in server.args),
        env={k: sub(v) for k, v in server.env.items()},
        cwd=sub(server.cwd) if server.cwd else None,
        url=sub(server.url) if server.url else None,
        headers={k: sub(v) for k, v in server.headers.items()},
        timeout_s=server.timeout_s,
    )


def load_mcp_json(path: str | Path) -> dict[str, McpServerSettings]:
    """Servers from a `{"mcpServers": {NAME: {...}}}` file; a bad file is a clear UserError."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise McpConfigError(f"MCP config file {file} does not exist; check --mcp-config") from None
    except OSError as exc:
        raise McpConfigError(f"cannot read MCP config file {file}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise McpConfigError(
            f"MCP config file {file} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    servers = data.get("mcpServers") if isinstance(data, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(
            f'MCP config file {file} has no "mcpServers" object; expected '
            '{"mcpServers": {"NAME": {"command": ..., "args": [...]}}}'
        )
    return {name: _entry(file, name, entry) for name, entry in servers.items()}


def _entry(file: Path, name: str, entry: Any) -> McpServerSettings:
    if not isinstance(entry, dict):
        raise McpConfigError(f"MCP config file {file}: server {name!r} must be an object")
    transport = entry.get("type") or entry.get("transport") or entry.get("transportType")
    if transport is not None and transport not in _TRANSPORTS:
        raise McpConfigError(
            f"MCP config file {file}: server {name!r} uses transport {transport!r}; "
            "only stdio and Streamable HTTP are supported"
        )
    known = {k: v for k, v in entry.items() if k not in _FOREIGN_KEYS}
    if entry.get("disabled") is True:
        known["enabled"] = False
    try:
        return McpServerSettings.model_validate(known)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg']}" for e in exc.errors()
        )
        raise McpConfigError(f"MCP config file {file}: server {name!r}: {problems}") from None


def configured_servers(settings: Any) -> dict[str, McpServerSettings]:
    """The enabled servers of `settings`: config.toml's, then the --mcp-config file's (which win)."""
    servers = dict(settings.mcp.servers)
    if settings.mcp_config:
        servers.update(load_mcp_json(settings.mcp_config))
    return {name: server for name, server in servers.items() if server.enabled}
