"""MCP configuration: `[mcp.servers.NAME]`, the `mcpServers` JSON file, `${VAR}` substitution, the
rules that make a bad entry a clear message, "always allow" written back to config.toml, and
`qwq-chat tools list`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from mcp_helpers import stdio_server
from qwq_chat.app.config import load_settings
from qwq_chat.app.errors import UserError
from qwq_chat.app.tools.approvals import ApprovalRequest, ApprovalRules, add_always_allow
from qwq_chat.app.tools.mcp_config import (
    McpConfigError,
    configured_servers,
    load_mcp_json,
    resolve,
    substitute,
)
from qwq_chat.app.tools.toolbox import build_toolbox, serve_toolbox


def test_variables_are_filled_from_the_environment_and_a_missing_one_is_named() -> None:
    env = {"TOKEN": "s3cret", "HOST": "example.org"}
    assert substitute("Bearer ${TOKEN} @ ${HOST}", env) == "Bearer s3cret @ example.org"
    assert substitute("${PORT:-8080}", env) == "8080"
    with pytest.raises(McpConfigError, match="environment variable NOPE is not set"):
        substitute("x ${NOPE}", env)


def test_the_mcp_servers_json_shape_of_other_apps_is_read(tmp_path: Path) -> None:
    file = tmp_path / "mcp.json"
    file.write_text(json.dumps({"mcpServers": {
        "files": {"command": "npx", "args": ["-y", "fs", "${HOME_DIR}"], "env": {"K": "${KEY}"}},
        "search": {"type": "http", "url": "https://x.test/mcp",
                   "headers": {"Authorization": "Bearer ${KEY}"}},
        "old": {"command": "srv", "disabled": True, "alwaysAllow": ["a"]},
    }}))  # fmt: skip
    servers = load_mcp_json(file)
    assert servers["old"].enabled is False
    env = {"HOME_DIR": "/data", "KEY": "k1"}
    files = resolve("files", servers["files"], env)
    assert (files.transport, files.command, files.args, files.env) == (
        "stdio", "npx", ("-y", "fs", "/data"), {"K": "k1"}
    )  # fmt: skip
    search = resolve("search", servers["search"], env)
    assert (search.transport, search.headers) == ("http", {"Authorization": "Bearer k1"})
    # the file given with --mcp-config joins config.toml's servers; disabled ones are left out
    settings = load_settings(mcp_config=str(file), mcp={"servers": {"own": {"command": "a"}}})
    assert list(configured_servers(settings)) == ["own", "files", "search"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ('{"servers": {}}', 'has no "mcpServers" object'),
        ('{"mcpServers": {"a": {"url": "u", "type": "sse"}}}', "only stdio and Streamable HTTP"),
        ('{"mcpServers": {"a": {"command": "c", "bogus": 1}}}', "bogus: Extra inputs"),
    ],
)
def test_a_bad_json_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    file = tmp_path / "mcp.json"
    file.write_text(content)
    with pytest.raises(UserError, match=message):
        load_mcp_json(file)
    with pytest.raises(UserError, match="does not exist; check --mcp-config"):
        load_mcp_json(tmp_path / "missing.json")


def test_an_entry_that_cannot_start_is_a_failed_server_not_a_crash() -> None:
    settings = load_settings(tools=["calculator"], mcp={"servers": {
        "both": {"command": "a", "url": "http://x"}, "secret": {"command": "${UNSET_VAR_X}"}}})  # fmt: skip
    toolbox = build_toolbox(settings)
    try:
        rows = {r["server"]: r for r in toolbox.status()}
        assert "either `command`" in rows["both"]["description"]
        assert "UNSET_VAR_X is not set" in rows["secret"]["description"]
        assert rows["built-in"]["name"] == "calculator" and len(toolbox) == 1
    finally:
        toolbox.close()


def test_always_allow_is_added_to_the_config_file_keeping_the_users_text(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('# my settings\nn_ctx = 4096\n\n[mcp.servers.files]\ncommand = "srv"\n')
    rules = ApprovalRules.from_settings(load_settings(config))
    request = ApprovalRequest("lookup", "lookup", "files", {})
    assert rules.needs_approval(request)
    assert rules.remember(request) is None
    assert not rules.needs_approval(request)
    text = config.read_text()
    assert text.startswith("# my settings\nn_ctx = 4096\n")  # comments kept
    assert load_settings(config).mcp.always_allow == ["files/lookup"]
    add_always_allow(config, "files/shout")  # now [mcp] exists: rewritten, both kept
    assert tomllib.loads(config.read_text())["mcp"]["always_allow"] == [
        "files/lookup", "files/shout"
    ]  # fmt: skip
    assert load_settings(config).mcp.servers["files"].command == "srv"
    # built-in tools run without asking unless the config says otherwise
    assert not rules.needs_approval(ApprovalRequest("calculator", "calculator", None, {}))
    assert ApprovalRules(approve_builtin=True).needs_approval(
        ApprovalRequest("calculator", "calculator", None, {})
    )


def test_serve_offers_mcp_tools_only_with_approval_rules() -> None:
    with pytest.raises(UserError, match="needs approval rules"):
        serve_toolbox(load_settings(mcp={"servers": {"s": {"command": "x"}}}))


def test_tools_list_shows_every_tool_with_its_server_and_status(tmp_path: Path) -> None:
    file = tmp_path / "mcp.json"
    file.write_text(json.dumps({"mcpServers": {"files": stdio_server("ok"),
                                               "dead": stdio_server("exit")}}))  # fmt: skip
    argv = [
        sys.executable,
        "-m",
        "qwq_chat.app",
        "tools",
        "list",
        "--json",
        "--mcp-config",
        str(file),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=os.environ)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["name"], r["server"], r["status"]) for r in rows] == [
        ("calculator", "built-in", "ready"), ("lookup", "files", "ready"),
        ("shout", "files", "ready"), ("picture", "files", "ready"), ("", "dead", "failed"),
    ]  # fmt: skip
    assert "refusing to start" in rows[-1]["description"]
    bad = subprocess.run([*argv[:-1], str(tmp_path / "nope.json")], capture_output=True,
                         text=True, timeout=60, env=os.environ)  # fmt: skip
    assert bad.returncode == 2 and "does not exist; check --mcp-config" in " ".join(
        bad.stderr.split()
    )
    assert "Traceback" not in bad.stderr
