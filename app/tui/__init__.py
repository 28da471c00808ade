"""The chat TUI (Textual). Imported only when the TUI opens, so `qwq-chat --help` stays fast."""

from __future__ import annotations

from typing import Any


def run(settings: Any, engine_factory: Any = None) -> None:
    """Open the chat app for `settings` (qwq_chat.app.config.Settings); returns when the user quits.

    `engine_factory` (a no-argument callable returning an Engine) defaults to the engine the
    settings describe; it is called in a worker thread so the window opens before the model loads.
    """
    from qwq_chat.app.tools.mcp_config import configured_servers
    from qwq_chat.app.tui.app import ChatApp

    configured_servers(settings)  # a bad --mcp-config file: a clear error before the window opens
    if engine_factory is None:
        from qwq_chat.app.engines import create_engine

        def engine_factory() -> Any:
            return create_engine(settings)

    ChatApp(settings, engine_factory).run()
