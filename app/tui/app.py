"""The Textual application: settings, store, engine loading, theme, clipboard and export.

The window is usable at once: the engine loads in a thread worker ("loading model…" in the status
line) and a message sent meanwhile waits for it.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwq_chat.app import paths
from qwq_chat.app.assets import asset_path
from qwq_chat.app.config import DEFAULT_KEYMAP, Settings
from qwq_chat.app.engine_protocol import Engine
from qwq_chat.app.session import Session
from qwq_chat.app.store import Store, open_store
from qwq_chat.app.tools.toolbox import ChatTools, Toolbox, build_toolbox
from qwq_chat.app.tui import clipboard
from qwq_chat.app.tui.chat_screen import ChatScreen
from qwq_chat.app.tui.export import export_conversation
from qwq_chat.app.tui.screens.approval import TuiApprover
from textual import work
from textual.app import App
from textual.binding import Binding

SWITCH_INTERVAL_S = 0.0002
CLOSE_WAIT_S = 10.0  # on quit, how long to wait for a running generation to stop
THEMES = {"dark": "textual-dark", "light": "textual-light"}


class ChatApp(App):
    """`qwq-chat`: chat with a reasoning model; see docs/chat.md for the keys."""

    CSS_PATH = str(asset_path("chat.tcss"))
    TITLE = "qwq-chat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", id="quit", priority=True)]

    def __init__(
        self,
        settings: Settings,
        engine_factory: Callable[[], Engine],
        store: Store | None = None,
        conversation_id: str | None = None,
        export_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.engine_factory = engine_factory
        self.store = store if store is not None else open_store()
        self.engine: Engine | None = None
        self.export_dir = export_dir or paths.data_dir() / "exports"
        self.keymap = {**DEFAULT_KEYMAP, **settings.ui.keymap}
        self._first_conversation = conversation_id
        self.clipboard_fallback: Path | None = None
        self.tools: Toolbox | None = None  # built-in and MCP tools (docs/tools.md)

    # -- start-up ------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        # The engine runs in a thread and needs the GIL back after every token; the default 5 ms
        # switch interval would let a busy frame delay each token by up to 5 ms (and a fast
        # producer delay the UI likewise). Hand over sooner, in both directions.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self.theme = THEMES[self.settings.ui.theme]
        self.set_keymap(self.keymap)  # binding ids are the keymap's action names
        self.chat_screen = ChatScreen(
            self.new_session(self._first_conversation), self.settings.ui.reasoning, self.keymap
        )
        self.push_screen(self.chat_screen)
        if self.store.warning:
            self.notify(self.store.warning, severity="error", timeout=30)
        self.load_engine()

    @work(thread=True, exclusive=True, group="engine")
    def load_engine(self) -> None:
        """Load the model off the UI thread; the user can type (and even send) meanwhile."""
        try:
            # MCP servers start in the background; their tools appear once they are ready.
            self.tools = build_toolbox(self.settings, approver=TuiApprover(self))
            self.tools.on_notice = self._tool_notice
            engine = self.engine_factory()
        except Exception as exc:  # a bad model path, out of memory...: say so, keep the app usable
            self.call_from_thread(self._engine_failed, str(exc))
            return
        self.call_from_thread(self._engine_ready, engine)

    def _engine_failed(self, error: str) -> None:
        self.chat_screen.status.state = "model failed to load"
        self.notify(error, title="Could not load the model", severity="error", timeout=30)

    async def _engine_ready(self, engine: Engine) -> None:
        self.engine = engine
        self.chat_screen.session.engine = engine
        self.chat_screen.session.tools = self.chat_tools(self.chat_screen.session)
        status = self.chat_screen.status
        status.state = "ready"
        status.model = Path(self.settings.model).name if self.settings.model else engine.name
        status.model += f" · {engine.placement}"
        if engine.load_warning:  # e.g. a GPU is visible but llama-cpp-python was built without it
            self.notify(engine.load_warning, title="Model", severity="warning", timeout=30)
        await self.chat_screen.send_pending()

    def new_session(self, conversation_id: str | None = None) -> Session:
        # Tools are built once in the loading worker (the calculator imports sympy: ~1 s that
        # must not delay the first frame); until then a session has none.
        session = Session.from_settings(self.settings, self.store, self.engine, conversation_id)
        session.tools = self.chat_tools(session)
        return session

    def chat_tools(self, session: Session) -> ChatTools | None:
        """The toolbox as this chat sees it: without the tools switched off for it."""
        if self.tools is None:
            return None
        return self.tools.for_chat(lambda: session.disabled_tools)

    def _tool_notice(self, text: str) -> None:
        """A tool failed (server down, timeout...): the model reads the error, the user this."""
        if self.is_running:
            self.call_from_thread(self.notify, text, title="Tool", severity="warning", timeout=10)

    # -- services for the screen ---------------------------------------------------------------------
    def export_conversation(self, session: Session) -> tuple[Path, Path]:
        assert session.conversation_id is not None
        settings: dict[str, Any] = self.store.get_settings(session.conversation_id)
        return export_conversation(
            self.export_dir, session.conversation_id, session.title, session.messages, settings
        )

    def copy_text(self, text: str, what: str) -> None:
        """OSC 52, plus a system clipboard tool when there is one, plus a file as the fallback."""
        self.copy_to_clipboard(text)
        tool = clipboard.copy_with_system_tool(text)
        self.clipboard_fallback = clipboard.save_fallback(text)
        via = f" (also via {tool})" if tool else ""
        self.notify(f"Copied the {what}{via}; also saved to {self.clipboard_fallback}")

    def toggle_theme(self) -> None:
        self.theme = THEMES["light"] if self.theme == THEMES["dark"] else THEMES["dark"]

    async def on_unmount(self) -> None:
        """Quit mid-answer: stop the generation and let its thread leave the engine first.

        Closing a llama.cpp model while a thread is still decoding with it crashes the process.
        """
        sys.setswitchinterval(self._switch_interval)
        screen = getattr(self, "chat_screen", None)
        if screen is not None and screen.generating:
            screen.session.cancel()
            deadline = time.monotonic() + CLOSE_WAIT_S
            while screen.generating and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if screen.generating:
                return  # still inside the engine: leave the model to the process exit
        if self.engine is not None:
            self.engine.close()
        if self.tools is not None:
            self.tools.close()
