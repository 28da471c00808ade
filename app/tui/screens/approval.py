"""The approval modal: may the model run this tool? Allow once, always allow, or deny.

The toolbox calls its approver from the generation thread; `TuiApprover` shows this modal on the
UI thread (via `call_from_thread`) and blocks that thread until the user answers, so the model
waits, not the window. Esc denies. If the app closes while asking, the call is denied.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from qwq_chat.app.tools.approvals import ApprovalRequest, Decision
from qwq_chat.app.tui.screens.modals import dialog_css
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

ARGUMENTS_CHARS = 4000


class ApprovalScreen(ModalScreen[str]):
    """Shows the tool, its server and its arguments; dismisses with "once", "always" or "deny"."""

    DEFAULT_CSS = (
        dialog_css("ApprovalScreen")
        + "ApprovalScreen #arguments { height: auto; max-height: 16; border: round $panel; }"
    )
    BINDINGS = [
        Binding("escape,n", "dismiss('deny')", "Deny"),
        Binding("y", "dismiss('once')", "Allow once"),
        Binding("a", "dismiss('always')", "Always allow"),
    ]

    def __init__(self, request: ApprovalRequest, answer: Future[str] | None = None) -> None:
        super().__init__()
        self.request = request
        self.answer = (
            answer  # settled on dismiss, or with "deny" if the screen goes away unanswered
        )

    def compose(self) -> ComposeResult:
        request = self.request
        where = f"MCP server “{request.server}”" if request.server else "built-in"
        title = Text()
        title.append("The model wants to run ", style="bold")
        title.append(request.name, style="bold cyan")
        title.append(f"  ({where}, tool “{request.tool}”)")
        arguments = json.dumps(request.arguments, ensure_ascii=False, indent=2)
        if len(arguments) > ARGUMENTS_CHARS:
            arguments = arguments[:ARGUMENTS_CHARS] + "\n… (cut)"
        with Vertical():
            yield Label(title)
            with VerticalScroll(id="arguments"):
                yield Static(arguments, markup=False)
            with Horizontal():
                yield Button("Deny (n)", id="deny", variant="error")
                yield Button("Always allow (a)", id="always")
                yield Button("Allow once (y)", id="once", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#once", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "deny")

    def settle(self, decision: str | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(decision or "deny")

    def on_unmount(self) -> None:
        self.settle("deny")  # the app is closing with the question open


class TuiApprover:
    """The toolbox's approver for the TUI: asks with `ApprovalScreen`, one call at a time."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._one_at_a_time = threading.Lock()

    def __call__(self, request: ApprovalRequest) -> Decision:
        with self._one_at_a_time:
            answer: Future[str] = Future()
            screen = ApprovalScreen(request, answer)
            self.app.call_from_thread(self.app.push_screen, screen, screen.settle)
            while True:  # not one long wait: the app may close while the modal is open
                try:
                    decision = answer.result(timeout=0.2)
                    break
                except FutureTimeout:
                    if not self.app.is_running:
                        return "deny"
            return decision if decision in ("once", "always") else "deny"  # type: ignore[return-value]
