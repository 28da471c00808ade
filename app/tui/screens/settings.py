"""Per-conversation settings: system prompt, sampling and limits, validated like the config file.

The fields and their labels come from `Sampling` and `Limits` (qwq_chat.app.sampling), so a new
sampling setting shows up here, in the config file and in what is saved with a chat at once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from qwq_chat.app.sampling import Limits, Sampling, field_titles
from qwq_chat.app.tui.screens.modals import dialog_css
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea


class SettingsScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with {"system_prompt": str, "sampling": Sampling, "limits": Limits}, or None."""

    DEFAULT_CSS = (
        dialog_css("SettingsScreen")
        + """
    SettingsScreen > Vertical { max-height: 90%; }
    SettingsScreen VerticalScroll { height: auto; max-height: 30; }
    SettingsScreen .row { height: 1; margin-bottom: 1; }
    SettingsScreen .row > Label { width: 28; }
    SettingsScreen .row > Input { width: 1fr; }
    SettingsScreen #system_prompt { height: 5; margin-bottom: 1; }
    SettingsScreen #error { color: $error; height: auto; }
    """
    )
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, system_prompt: str, sampling: Sampling, limits: Limits) -> None:
        super().__init__()
        self.system_prompt = system_prompt
        self.sampling = sampling
        self.limits = limits

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Settings for this chat")
            with VerticalScroll():
                yield Label("System prompt")
                yield TextArea(self.system_prompt, id="system_prompt", compact=True)
                for values in (self.sampling, self.limits):
                    for name, label in field_titles(type(values)).items():
                        value = getattr(values, name)
                        with Horizontal(classes="row"):
                            yield Label(label)
                            yield Input("" if value is None else str(value), id=name, compact=True)
            yield Label("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="ok", variant="primary")

    def _read(self, model: type[BaseModel]) -> Any:
        """The model built from its inputs; an empty input means "unset" (the field's default)."""
        raw = {name: self.query_one(f"#{name}", Input).value.strip() for name in model.model_fields}
        return model.model_validate({k: v for k, v in raw.items() if v != ""})

    def action_save(self) -> None:
        try:
            sampling = self._read(Sampling)
            limits = self._read(Limits)
        except ValidationError as exc:
            first = exc.errors()[0]
            self.query_one("#error", Label).update(f"{first['loc'][0]}: {first['msg']}")
            return
        system_prompt = self.query_one("#system_prompt", TextArea).text
        self.dismiss({"system_prompt": system_prompt, "sampling": sampling, "limits": limits})

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
