"""Small dialogs: rename a chat, confirm a deletion, edit a message before resending it."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea


def dialog_css(name: str) -> str:
    """The shared look of the dialogs (DEFAULT_CSS is scoped, so each names its own class)."""
    return f"""
    {name} {{ align: center middle; background: $background 60%; }}
    {name} > Vertical {{ width: 80%; max-width: 100; height: auto; border: thick $primary;
        background: $surface; padding: 1 2; }}
    {name} Horizontal {{ height: auto; align-horizontal: right; margin-top: 1; }}
    {name} Button {{ margin-left: 1; }}
    {name} TextArea {{ height: 12; }}
    """


class RenameScreen(ModalScreen[str | None]):
    """Ask for a new title; dismisses with the title, or None when cancelled."""

    DEFAULT_CSS = dialog_css("RenameScreen")
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, title: str) -> None:
        super().__init__()
        self._title = title

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Rename chat")
            yield Input(self._title, id="title")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Rename", id="ok", variant="primary")

    @on(Input.Submitted)
    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        title = self.query_one("#title", Input).value.strip()
        self.dismiss(title or None)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no question; `y` confirms, `n`/Esc cancels."""

    DEFAULT_CSS = dialog_css("ConfirmScreen")
    BINDINGS = [
        Binding("escape,n", "dismiss(False)", "No"),
        Binding("y", "dismiss(True)", "Yes"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self._question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self._question)
            with Horizontal():
                yield Button("No", id="no")
                yield Button("Yes", id="yes", variant="error")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class EditScreen(ModalScreen[str | None]):
    """Edit a user message; ctrl+s (or the button) resends it, Esc cancels."""

    DEFAULT_CSS = dialog_css("EditScreen")
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+s", "resend", "Resend"),
    ]

    def __init__(self, text: str) -> None:
        super().__init__()
        self._text = text

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Edit the message; resending drops everything after it")
            yield TextArea(self._text, id="text", soft_wrap=True)
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Resend", id="ok", variant="primary")

    def action_resend(self) -> None:
        text = self.query_one("#text", TextArea).text
        self.dismiss(text if text.strip() else None)

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.action_resend()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
