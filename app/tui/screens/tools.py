"""The tools panel: switch tools on and off for the open chat (saved with it), see server status.

Lists every tool the toolbox offers now, with its server, and every MCP server that is not ready
(starting, failed, stopped) with why. Dismisses with the names switched off, or None (Esc).
"""

from __future__ import annotations

from typing import Any

from qwq_chat.app.tui.screens.modals import dialog_css
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Label


class ToolsScreen(ModalScreen[list[str] | None]):
    """One checkbox per tool (checked: offered to the model in this chat)."""

    DEFAULT_CSS = (
        dialog_css("ToolsScreen")
        + "ToolsScreen VerticalScroll { height: auto; max-height: 20; }"
        + "ToolsScreen .server-status { color: $warning; }"
    )
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, rows: list[dict[str, Any]], disabled: list[str]) -> None:
        super().__init__()
        self.rows = rows
        self.disabled = set(disabled)

    def compose(self) -> ComposeResult:
        tools = [r for r in self.rows if r["name"]]
        servers = [r for r in self.rows if not r["name"]]
        with Vertical():
            yield Label("Tools for this chat (checked: the model may call it)")
            with VerticalScroll():
                for row in tools:
                    yield Checkbox(
                        f"{row['name']}  [{row['server']}]",
                        value=row["name"] not in self.disabled,
                        name=row["name"],
                    )
                for row in servers:
                    detail = f": {row['description']}" if row["description"] else ""
                    yield Label(
                        f"MCP server {row['server']} {row['status']}{detail}",
                        classes="server-status",
                        markup=False,
                    )
                if not tools:
                    yield Label("No tools are available.")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="save", variant="primary")

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        shown = {box.name for box in self.query(Checkbox)}
        off = {box.name for box in self.query(Checkbox) if not box.value and box.name}
        # tools not listed now (a server still starting) keep the choice made before
        kept = {name for name in self.disabled if name not in shown}
        self.dismiss(sorted(off | kept))

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
