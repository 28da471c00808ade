"""The prompt box: a multi-line text area where the configured "send" key submits."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea


class Composer(TextArea):
    """Enter sends (by default); the "newline" key (shift+enter, or ctrl+j) inserts a line break."""

    DEFAULT_CSS = """
    Composer { height: auto; max-height: 10; min-height: 3; }
    """

    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, send_key: str = "enter", newline_key: str = "shift+enter", **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, **kwargs)
        self.send_key = send_key
        self.newline_keys = {newline_key, "ctrl+j"} - {send_key}

    async def _on_key(self, event: events.Key) -> None:
        if event.key == self.send_key:
            event.prevent_default()
            event.stop()
            text = self.text
            if text.strip():
                self.post_message(self.Submitted(text))
            return
        if event.key in self.newline_keys:
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        await super()._on_key(event)
