"""Per-conversation settings: system prompt and sampling, validated like the config file."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, TextArea

from app.config import SamplingSettings
from app.tui.screens.modals import dialog_css

# (field, label) in display order; all live in SamplingSettings except max_tokens/reasoning_budget.
SAMPLING_FIELDS = [
    ("temperature", "Temperature"),
    ("top_p", "Top p"),
    ("top_k", "Top k"),
    ("min_p", "Min p"),
    ("repeat_penalty", "Repeat penalty"),
    ("presence_penalty", "Presence penalty"),
]
LIMIT_FIELDS = [("max_tokens", "Max tokens"), ("reasoning_budget", "Reasoning budget (0: none)")]


class SettingsScreen(ModalScreen[dict[str, Any] | None]):
    """Dismisses with {"system_prompt", "sampling": {...}, "max_tokens", "reasoning_budget"}."""

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

    def __init__(self, values: dict[str, Any]) -> None:
        super().__init__()
        self.values = values

    def compose(self) -> ComposeResult:
        sampling = self.values.get("sampling", {})
        with Vertical():
            yield Label("Settings for this chat")
            with VerticalScroll():
                yield Label("System prompt")
                yield TextArea(
                    self.values.get("system_prompt", ""), id="system_prompt", compact=True
                )
                for name, label in SAMPLING_FIELDS:
                    with Horizontal(classes="row"):
                        yield Label(label)
                        yield Input(str(sampling.get(name, "")), id=name, compact=True)
                for name, label in LIMIT_FIELDS:
                    with Horizontal(classes="row"):
                        yield Label(label)
                        yield Input(
                            str(self.values.get(name, "")), id=name, type="integer", compact=True
                        )
            yield Label("", id="error")
            with Horizontal():
                yield Button("Cancel", id="cancel")
                yield Button("Save", id="ok", variant="primary")

    def action_save(self) -> None:
        raw = {name: self.query_one(f"#{name}", Input).value.strip() for name, _ in SAMPLING_FIELDS}
        error = self.query_one("#error", Label)
        try:
            sampling = SamplingSettings(**{k: v for k, v in raw.items() if v != ""})
        except ValidationError as exc:
            first = exc.errors()[0]
            error.update(f"{first['loc'][0]}: {first['msg']}")
            return
        result: dict[str, Any] = {
            "system_prompt": self.query_one("#system_prompt", TextArea).text,
            "sampling": sampling.model_dump(exclude={"seed"}),
        }
        for name, _ in LIMIT_FIELDS:
            value = self.query_one(f"#{name}", Input).value.strip()
            if value:
                number = int(value)
                if number < (1 if name == "max_tokens" else 0):
                    error.update(f"{name}: must be at least {1 if name == 'max_tokens' else 0}")
                    return
                result[name] = number
        self.dismiss(result)

    @on(Button.Pressed, "#ok")
    def _ok(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
