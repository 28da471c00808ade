"""The list of past conversations, newest first, with a search box over titles, answers, reasoning."""

from __future__ import annotations

from qwq_chat.app.store import ConversationInfo
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, OptionList
from textual.widgets.option_list import Option


class Sidebar(Vertical):
    """Search box above an option list; selecting a row posts `Sidebar.Selected`."""

    DEFAULT_CSS = """
    Sidebar { width: 32; dock: left; border-right: vkey $foreground 20%; }
    Sidebar.-hidden { display: none; }
    Sidebar > Input { margin: 0; }
    Sidebar > OptionList { height: 1fr; border: none; }
    """

    class Selected(Message):
        def __init__(self, conversation_id: str) -> None:
            super().__init__()
            self.conversation_id = conversation_id

    class SearchChanged(Message):
        def __init__(self, query: str) -> None:
            super().__init__()
            self.query = query

    def compose(self) -> ComposeResult:
        yield Input(placeholder="Search chats…", id="search")
        yield OptionList(id="conversations")

    @property
    def options(self) -> OptionList:
        return self.query_one("#conversations", OptionList)

    def show(self, conversations: list[ConversationInfo], current: str | None) -> None:
        """Replace the rows; highlight the open conversation."""
        options = self.options
        options.clear_options()
        options.add_options(
            [Option(info.title or "(untitled)", id=info.id) for info in conversations]
        )
        for index, info in enumerate(conversations):
            if info.id == current:
                options.highlighted = index
                break

    @property
    def titles(self) -> list[str]:
        options = self.options
        return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]

    @on(Input.Changed, "#search")
    def _search(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.SearchChanged(event.value))

    @on(OptionList.OptionSelected, "#conversations")
    def _selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option.id is not None:
            self.post_message(self.Selected(event.option.id))
