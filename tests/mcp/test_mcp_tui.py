"""MCP tools in the TUI (Pilot): the approval modal (allow once, always allow: remembered in the
config file, deny), the per-chat tools panel (saved with the chat) and the expandable tool entry.
A real MCP server (the SDK's, over stdio) runs the calls; a scripted engine plays the model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mcp_helpers import read_log, stdio_server
from qwq_chat.app.config import load_settings
from qwq_chat.app.tui.screens.approval import ApprovalScreen
from qwq_chat.app.tui.screens.tools import ToolsScreen
from qwq_chat.app.tui.widgets.tool_entry import ToolCallView
from scripted_engine import qwq_turn
from textual.widgets import Checkbox

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tui"))
from tui_helpers import make_app, screen_text, wait_for, wait_idle  # noqa: E402


def call(key: str) -> list[str]:
    body = json.dumps({"name": "lookup", "arguments": {"key": key}})
    return qwq_turn("I will look it up.", f"<tool_call>\n{body}\n</tool_call>")


async def _send(pilot, app, text: str) -> None:
    app.chat_screen.composer.focus()
    app.chat_screen.composer.insert(text)
    await pilot.press("enter")


async def _approval(pilot, app) -> ApprovalScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, ApprovalScreen), timeout=30)
    await pilot.pause()
    return app.screen


def _results(app) -> list[str]:
    return [m.content for m in app.chat_screen.session.messages if m.role == "tool"]


async def test_approval_modal_allow_once_deny_and_always(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    turns = [call("alpha"), qwq_turn("ok", "Alpha done."), call("omega"), qwq_turn("ok", "No."),
             call("alpha"), qwq_turn("ok", "Always."), call("omega"), qwq_turn("ok", "Again.")]  # fmt: skip
    app, _ = make_app(turns, settings_overrides={
        "tools": [], "mcp": {"servers": {"files": stdio_server("ok", log)}}})  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None and app.tools is not None)
        await wait_for(pilot, lambda: len(app.tools) == 3, timeout=30)  # the server is ready
        # 1. allow once: the modal shows the tool, its server and its arguments
        await _send(pilot, app, "look up alpha")
        modal = await _approval(pilot, app)
        text = screen_text(app)
        assert "lookup" in text and "files" in text and '"key": "alpha"' in text
        await pilot.press("y")
        await wait_idle(pilot, app, timeout=30)
        assert read_log(log) == [{"server": "ok", "tool": "lookup", "arguments": {"key": "alpha"}}]
        assert _results(app) == ["first letter"]
        # the entry between reasoning and answer: one line, opened with Enter to the full result
        entry = app.chat_screen.chat.query(ToolCallView).last()
        collapsed = str(entry.render())
        assert "▸ tool call lookup" in collapsed and "→ first letter" in collapsed
        assert " s" in collapsed.splitlines()[-1]  # time taken
        entry.focus()
        await pilot.press("enter")
        opened = str(entry.render())
        assert "arguments:" in opened and "result:\nfirst letter" in opened
        # 2. deny: the tool does not run, the model reads "denied by the user" and goes on
        await _send(pilot, app, "look up omega")
        modal = await _approval(pilot, app)
        await pilot.press("n")
        await wait_idle(pilot, app, timeout=30)
        assert len(read_log(log)) == 1
        assert _results(app)[-1] == "error: denied by the user"
        assert app.chat_screen.session.messages[-1].content == "No."
        # 3. always allow: runs now, remembered in the config file, not asked again
        await _send(pilot, app, "alpha again")
        modal = await _approval(pilot, app)
        await pilot.click("#always")
        await wait_idle(pilot, app, timeout=30)
        assert load_settings().mcp.always_allow == ["files/lookup"]
        await _send(pilot, app, "omega again")
        await wait_idle(pilot, app, timeout=30)
        assert not isinstance(app.screen, ApprovalScreen)
        assert [c["arguments"]["key"] for c in read_log(log)] == ["alpha", "alpha", "omega"]
        assert _results(app)[-1] == "last letter"
        assert modal.answer is not None and modal.answer.result() == "always"


async def test_tools_panel_switches_tools_off_for_one_chat_and_saves_it(tmp_path: Path) -> None:
    servers = {"files": stdio_server("ok"), "dead": stdio_server("exit")}
    app, _ = make_app([qwq_turn("Hm.", "Hi.")], settings_overrides={
        "tools": ["calculator"], "mcp": {"servers": servers}})  # fmt: skip
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.tools is not None and len(app.tools) == 4, timeout=30)
        # a server that did not start: a notice at once, and its status in the panel
        await wait_for(pilot, lambda: app.tools.mcp.servers["dead"].status == "failed", timeout=30)
        await wait_for(
            pilot, lambda: any("MCP server dead" in n.message for n in app._notifications)
        )
        await _send(pilot, app, "hello")
        await wait_idle(pilot, app)
        await pilot.press("f6")
        await wait_for(pilot, lambda: isinstance(app.screen, ToolsScreen))
        await pilot.pause()
        boxes = {box.name: box for box in app.screen.query(Checkbox)}
        assert list(boxes) == ["calculator", "lookup", "shout", "picture"]
        assert all(box.value for box in boxes.values())
        assert "MCP server dead failed: could not start" in screen_text(app)
        boxes["lookup"].value = False
        boxes["calculator"].value = False
        await pilot.click("#save")
        await pilot.pause()
        session = app.chat_screen.session
        assert session.disabled_tools == ["calculator", "lookup"]
        offered = [s["function"]["name"] for s in session.tools.schemas()]
        assert offered == ["shout", "picture"]
        # saved with the chat: reopening it restores the choice; a new chat has every tool
        reopened = app.new_session(session.conversation_id)
        assert reopened.disabled_tools == ["calculator", "lookup"]
        assert len(reopened.tools) == 2 and len(app.new_session().tools) == 4
