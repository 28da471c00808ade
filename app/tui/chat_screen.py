"""The main screen: sidebar of chats, the conversation, the prompt box and the status line.

Data flows one way: keys -> Session (in a thread worker) -> events -> EventBuffer -> widgets.
The worker never waits for the UI; the UI drains the buffer at most once per frame.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from qwq_chat.app.config import DEFAULT_KEYMAP
from qwq_chat.app.events import Done, Event, Stats, ToolCall, ToolResult
from qwq_chat.app.messages import Message as StoredMessage
from qwq_chat.app.session import Session, tool_result_event
from qwq_chat.app.tui.screens.modals import ConfirmScreen, EditScreen, RenameScreen
from qwq_chat.app.tui.screens.settings import SettingsScreen
from qwq_chat.app.tui.stream import Batch, EventBuffer
from qwq_chat.app.tui.widgets.composer import Composer
from qwq_chat.app.tui.widgets.message import AssistantMessage, Part, ReasoningMode, UserMessage
from qwq_chat.app.tui.widgets.sidebar import Sidebar
from qwq_chat.app.tui.widgets.status import StatusLine
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Button, Footer
from textual.worker import Worker


class ChatHost(Protocol):
    """What the chat screen needs from its app (qwq_chat.app.tui.app.ChatApp provides it)."""

    def new_session(self, conversation_id: str | None = None) -> Session: ...
    def export_conversation(self, session: Session) -> tuple[Any, Any]: ...
    def copy_text(self, text: str, what: str) -> None: ...
    def toggle_theme(self) -> None: ...


FRAME_S = 1 / 30  # the UI applies streamed text at most this often...
MAX_FRAME_S = 1 / 2  # ...and at least this often


def ui_cpu_share(cores: int | None = None) -> float:
    """The share of one core the UI may use for streamed updates before it spaces them out.

    About 1.25% of the machine, kept between 2.5% and 15% of a core. Why: every frame Textual draws
    is CPU and GIL time taken from llama.cpp and the engine thread, and on a small machine decode
    slows by more than the UI's share. Measured on 2 cores (median TUI/raw decode): a 5% cap 0.90-0.92,
    2.5% 0.95-0.97 at ~6 updates/s (a frame costs ~3-4 ms: most updates keep the layout as it is).
    """
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return min(0.15, max(0.025, 0.0125 * (cores or 1)))


UI_CPU_SHARE = ui_cpu_share()  # above this share of a core, updates are spaced out
HISTORY_PAGE = (
    40  # messages mounted when a chat opens; older ones on request (long chats stay fast)
)

# (action id = keymap name, description, show in footer); keys come from settings.ui.keymap.
SCREEN_ACTIONS = [
    ("stop", "Stop", True),
    ("new_chat", "New chat", True),
    ("regenerate", "Regenerate", True),
    ("edit_last", "Edit last", False),
    ("toggle_reasoning", "Reasoning", True),
    ("toggle_sidebar", "Sidebar", False),
    ("search", "Search", False),
    ("rename", "Rename", False),
    ("delete", "Delete", False),
    ("export", "Export", True),
    ("copy_answer", "Copy", False),
    ("settings", "Settings", True),
    ("toggle_theme", "Theme", False),
    ("tools", "Tools", False),
]


def screen_bindings(keymap: dict[str, str]) -> list[Binding]:
    """Priority bindings (they work while typing in the prompt box) with the user's keys."""
    return [
        Binding(keymap[name], name, description, show=show, priority=True, id=name)
        for name, description, show in SCREEN_ACTIONS
    ]


class StreamWake(Message):
    """Posted by the worker when the event buffer goes from empty to non-empty."""


class GenerationEnded(Message):
    """Posted by the worker after the session's generator is exhausted (or failed)."""


class ChatScreen(Screen):
    """Everything the user sees; owns the current `Session`."""

    app: ChatHost  # type: ignore[assignment]  # plus everything a Textual App has
    BINDINGS = screen_bindings(DEFAULT_KEYMAP)  # the app's keymap (settings.ui.keymap) rebinds them

    def __init__(self, session: Session, reasoning_mode: ReasoningMode, keymap: dict[str, str]):
        super().__init__()
        self.session = session
        self.reasoning_mode: ReasoningMode = reasoning_mode
        self.keymap = keymap
        self.buffer = EventBuffer(self._wake)
        self.live_view: AssistantMessage | None = None
        self.worker: Worker | None = None
        self.in_engine = False  # the generation thread is iterating the session right now
        self.pending_prompt: str | None = None  # sent before the model finished loading
        self._last_drain = 0.0
        self._last_cpu = 0.0
        self.frame_s = FRAME_S  # adapted to what the UI costs on this machine (see drain())
        self._drain_scheduled = False
        self._older: list[Widget] = []  # views of old messages not mounted yet
        self.applied_tokens = 0  # deltas shown so far in the current turn (benchmarks read this)
        self.on_tokens: Callable[[int], None] | None = None  # benchmark hook: called per drain

    # -- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Sidebar(id="sidebar")
        with Vertical(id="main"):
            yield VerticalScroll(id="chat")
            yield Composer(
                send_key=self.keymap["send"],
                newline_key=self.keymap["newline"],
                id="composer",
            )
            yield StatusLine(id="status")
        yield Footer()

    @property
    def chat(self) -> VerticalScroll:
        return self.query_one("#chat", VerticalScroll)

    @property
    def composer(self) -> Composer:
        return self.query_one("#composer", Composer)

    @property
    def status(self) -> StatusLine:
        return self.query_one("#status", StatusLine)

    @property
    def sidebar(self) -> Sidebar:
        return self.query_one("#sidebar", Sidebar)

    @property
    def generating(self) -> bool:
        """An answer is being produced (its thread may outlive a cancelled worker at quit)."""
        return self.in_engine or (self.worker is not None and self.worker.is_running)

    async def on_mount(self) -> None:
        self.composer.focus()
        self.refresh_sidebar()
        await self.show_conversation()

    # -- conversation display ----------------------------------------------------------------------
    async def show_conversation(self) -> None:
        """(Re)build the chat view from the session's messages; only the newest page is mounted."""
        await self.chat.remove_children()
        views = self.views_for(self.session.messages)
        self._older = views[:-HISTORY_PAGE] if len(views) > HISTORY_PAGE else []
        recent = views[len(self._older) :]
        if self._older:
            await self.chat.mount(self._more_button())
        await self.chat.mount_all(recent)
        self.chat.scroll_end(animate=False)
        self.sub_title = self.session.title

    def _more_button(self) -> Button:
        return Button(f"Show {len(self._older)} earlier messages", id="more", variant="default")

    @on(Button.Pressed, "#more")
    async def show_older(self) -> None:
        page, self._older = self._older[-HISTORY_PAGE:], self._older[:-HISTORY_PAGE]
        await self.query_one("#more").remove()
        await self.chat.mount_all(page, before=0)
        if self._older:
            await self.chat.mount(self._more_button(), before=0)

    def views_for(self, messages: list[StoredMessage]) -> list[Widget]:
        """One widget per user message and per assistant turn (tool rounds joined into one)."""
        views: list[Widget] = []
        parts: list[Part | ToolCall | ToolResult] = []
        unfinished = False

        def close_turn() -> None:
            nonlocal parts, unfinished
            if parts:
                views.append(AssistantMessage.from_parts(parts, self.reasoning_mode, unfinished))
            parts, unfinished = [], False

        for index, message in enumerate(messages):
            if message.role == "user":
                close_turn()
                views.append(UserMessage(message.content, index))
            elif message.role == "assistant":
                if message.reasoning:
                    tokens = (message.stats or {}).get("reasoning_tokens") or None
                    parts.append(
                        Part("reasoning", message.reasoning, tokens, message.reasoning_unfinished)
                    )
                for call in message.tool_calls:
                    parts.append(
                        ToolCall(
                            call.get("name", ""),
                            call.get("arguments", {}),
                            id=call.get("id", ""),
                            raw=call.get("raw", ""),
                        )
                    )
                if message.content:
                    parts.append(Part("answer", message.content))
                unfinished = unfinished or message.unfinished
            elif message.role == "tool":
                parts.append(tool_result_event(message))
        close_turn()
        return views

    def refresh_sidebar(self, query: str = "") -> None:
        store = self.session.store
        conversations = store.search(query) if query else store.list_conversations()
        self.sidebar.show(conversations, self.session.conversation_id)

    # -- sending and streaming ---------------------------------------------------------------------
    @on(Composer.Submitted)
    async def on_submit(self, event: Composer.Submitted) -> None:
        if self.generating:
            self.notify("Still answering; press Esc to stop first.", severity="warning")
            return
        self.composer.clear()
        text = event.text.strip()
        index = len(self.session.messages)
        await self.chat.mount(UserMessage(text, index))
        if self.session.engine is None:
            self.pending_prompt = text
            self.notify("The model is still loading; your message will be sent when it is ready.")
            return
        await self.start(lambda: self.session.send(text))

    async def send_pending(self) -> None:
        """Called by the app once the engine is loaded."""
        if self.pending_prompt is not None and not self.generating:
            text, self.pending_prompt = self.pending_prompt, None
            await self.start(lambda: self.session.send(text))

    async def start(self, make_events: Callable[[], Iterator[Event]]) -> None:
        """Mount a live assistant view and iterate `make_events()` in a thread worker."""
        self.live_view = AssistantMessage(mode=self.reasoning_mode, live=True)
        self.applied_tokens = 0
        await self.chat.mount(self.live_view)
        self.chat.anchor()
        self.composer.cursor_blink = (
            False  # a blinking cursor redraws twice a second: CPU the engine needs
        )
        self.status.state = "generating…"
        self.worker = self._generate(make_events)

    @work(thread=True, exclusive=True, group="generation")
    def _generate(self, make_events: Callable[[], Iterator[Event]]) -> None:
        """Runs in a thread: every event goes into the buffer; the UI picks them up per frame."""
        buffer = self.buffer
        self.in_engine = True
        try:
            for event in make_events():
                buffer.put(event)
        except Exception as exc:  # SessionError (a UserError) or an engine failure
            buffer.put(Done(finish_reason="error", error=str(exc)))
        finally:
            self.in_engine = False
            self.post_message(GenerationEnded())

    def _wake(self) -> None:
        self.post_message(StreamWake())

    async def on_stream_wake(self, _: StreamWake) -> None:
        wait = self.frame_s - (time.monotonic() - self._last_drain)
        if wait > 0:
            if not self._drain_scheduled:
                self._drain_scheduled = True
                self.set_timer(wait, self._scheduled_drain)
            return
        await self.drain()

    async def _scheduled_drain(self) -> None:
        self._drain_scheduled = False
        await self.drain()

    async def drain(self) -> None:
        """Apply everything the worker produced since the last frame."""
        self._pace()
        view = self.live_view
        events = self.buffer.drain()
        if view is None or not events:
            return
        tokens = 0
        for event in events:
            if isinstance(event, Batch):
                tokens += event.count
                if event.kind.__name__ == "ReasoningDelta":
                    await view.add_reasoning(event.text, event.count)
                    if self.reasoning_mode == "hidden":
                        self.status.state = f"thinking… {view.reasoning_tokens:,} tokens"
                else:
                    await view.add_answer(event.text)
            elif isinstance(event, ToolCall):
                await view.add_tool_call(event)
            elif isinstance(event, ToolResult):
                view.add_tool_result(event)
            elif isinstance(event, Stats):
                self.status.show_stats(event)
            elif isinstance(event, Done):
                await self._finish(view, event)
        self.applied_tokens += tokens
        if self.on_tokens is not None:
            self.on_tokens(self.applied_tokens)

    def _pace(self) -> None:
        """Space updates out when drawing them used more than UI_CPU_SHARE of a core.

        The UI thread's CPU time (our updates plus Textual's layout and rendering) since the last
        update tells what a frame costs here; on a slow or busy machine fewer, bigger updates
        keep the engine's thread fed, and the cost per token stays flat.
        """
        now, cpu = time.monotonic(), time.thread_time()
        if self._last_drain:
            share = (cpu - self._last_cpu) / max(now - self._last_drain, 1e-6)
            factor = 1.25 if share > UI_CPU_SHARE else 0.8
            self.frame_s = min(MAX_FRAME_S, max(FRAME_S, self.frame_s * factor))
        self._last_drain, self._last_cpu = now, cpu

    async def _finish(self, view: AssistantMessage, done: Done) -> None:
        await view.finish(done.finish_reason)
        self.live_view = None
        self.composer.cursor_blink = True
        self.status.state = {"cancelled": "stopped", "error": "error"}.get(
            done.finish_reason, "ready"
        )
        if done.error:
            self.notify(done.error, title="Generation failed", severity="error", timeout=10)
        if done.detail:  # a reasoning control stepped in (the loop guard): say so, and why
            self.status.state = f"{self.status.state} · loop guard"
            self.notify(done.detail, title="Reasoning loop", severity="warning", timeout=10)
        if self.session.store_warning:
            self.notify(self.session.store_warning, severity="warning", timeout=10)
        self.refresh_sidebar(self.sidebar.query_one("#search").value)  # type: ignore[attr-defined]
        self.sub_title = self.session.title

    async def on_generation_ended(self, _: GenerationEnded) -> None:
        await self.drain()  # whatever is left, Done included

    # -- actions (keys from settings.ui.keymap) --------------------------------------------------------
    def action_stop(self) -> None:
        if self.generating:
            self.session.cancel()
            self.status.state = "stopping…"
        elif self.pending_prompt is not None:
            self.pending_prompt = None
            self.notify("Cancelled the message waiting for the model.")

    async def action_new_chat(self) -> None:
        if self.generating:
            self.notify("Stop the current answer first (Esc).", severity="warning")
            return
        self.session = self.app.new_session()
        await self.show_conversation()
        self.refresh_sidebar()
        self.composer.focus()

    async def action_regenerate(self) -> None:
        if self.generating or self.session.engine is None:
            self.notify(
                "Not now: an answer is running or the model is loading.", severity="warning"
            )
            return
        users = list(self.chat.query_children(UserMessage))
        if not users:
            self.notify("Nothing to regenerate yet.", severity="warning")
            return
        await self._remove_after(users[-1])
        await self.start(self.session.regenerate)

    def action_edit_last(self) -> None:
        users = list(self.chat.query_children(UserMessage))
        if users:
            self.edit_message(users[-1])

    @on(UserMessage.EditRequested)
    def _edit_requested(self, event: UserMessage.EditRequested) -> None:
        self.edit_message(event.message)

    def edit_message(self, message: UserMessage) -> None:
        if self.generating or self.session.engine is None:
            self.notify(
                "Not now: an answer is running or the model is loading.", severity="warning"
            )
            return

        async def resend(text: str | None) -> None:
            if text is None or message.index is None:
                return
            await self._remove_after(message)
            await message.remove()
            await self.chat.mount(UserMessage(text, message.index))
            index = message.index
            await self.start(lambda: self.session.edit_and_resend(index, text))

        self.app.push_screen(EditScreen(message.text), resend)

    async def _remove_after(self, widget: Widget) -> None:
        children = list(self.chat.children)
        await self.chat.remove_children(children[children.index(widget) + 1 :])

    def _target_view(self) -> AssistantMessage | None:
        """The focused assistant message, else the newest one."""
        if isinstance(self.focused, AssistantMessage):
            return self.focused
        views = list(self.chat.query_children(AssistantMessage))
        return views[-1] if views else None

    def action_toggle_reasoning(self) -> None:
        view = self._target_view()
        if view is not None:
            view.action_toggle_reasoning()

    def action_toggle_sidebar(self) -> None:
        self.sidebar.toggle_class("-hidden")

    def action_search(self) -> None:
        self.sidebar.remove_class("-hidden")
        self.sidebar.query_one("#search").focus()

    def _selected_conversation(self) -> str | None:
        """The highlighted sidebar row when the sidebar has focus, else the open chat."""
        options = self.sidebar.options
        if options.has_focus and options.highlighted is not None:
            return options.get_option_at_index(options.highlighted).id
        return self.session.conversation_id

    def action_rename(self) -> None:
        conv_id = self._selected_conversation()
        info = self.session.store.get_conversation(conv_id) if conv_id else None
        if info is None:
            self.notify("Send a message first: this chat is not saved yet.", severity="warning")
            return

        def done(title: str | None) -> None:
            if title:
                self.session.store.rename(info.id, title)
                self.refresh_sidebar()
                self.sub_title = self.session.title

        self.app.push_screen(RenameScreen(info.title), done)

    def action_delete(self) -> None:
        conv_id = self._selected_conversation()
        info = self.session.store.get_conversation(conv_id) if conv_id else None
        if info is None:
            self.notify("Nothing to delete: this chat is not saved yet.", severity="warning")
            return
        if self.generating and conv_id == self.session.conversation_id:
            self.notify("Stop the current answer first (Esc).", severity="warning")
            return

        async def done(yes: bool | None) -> None:
            if not yes:
                return
            self.session.store.delete(info.id)
            if info.id == self.session.conversation_id:
                self.session = self.app.new_session()
                await self.show_conversation()
            self.refresh_sidebar()
            self.notify(f"Deleted “{info.title}”.")

        self.app.push_screen(ConfirmScreen(f"Delete “{info.title}”? This cannot be undone."), done)

    def action_export(self) -> None:
        if self.session.conversation_id is None:
            self.notify("Nothing to export yet.", severity="warning")
            return
        paths = self.app.export_conversation(self.session)
        self.notify("Exported to " + " and ".join(str(p) for p in paths), timeout=10)

    def action_copy_answer(self) -> None:
        view = self._target_view()
        if view is None or not view.answer_text:
            self.notify("No answer to copy yet.", severity="warning")
            return
        self.app.copy_text(view.answer_text, "answer")

    @on(AssistantMessage.CopyRequested)
    def _copy_requested(self, event: AssistantMessage.CopyRequested) -> None:
        self.app.copy_text(event.text, event.what)

    def action_settings(self) -> None:
        session = self.session

        def done(result: dict | None) -> None:
            if result is None:
                return
            session.update_settings(**result)
            self.notify("Settings saved for this chat.")

        self.app.push_screen(
            SettingsScreen(session.system_prompt, session.sampling, session.limits), done
        )

    def action_toggle_theme(self) -> None:
        self.app.toggle_theme()

    def action_tools(self) -> None:
        """The tools panel: switch tools on and off for this chat (saved with it)."""
        from qwq_chat.app.tui.screens.tools import ToolsScreen

        toolbox, session = getattr(self.app, "tools", None), self.session
        if toolbox is None:
            self.notify("The tools are still loading.", severity="warning")
            return

        def done(disabled: list[str] | None) -> None:
            if disabled is not None:
                session.update_settings(disabled_tools=disabled)
                self.notify("Tool choice saved for this chat.")

        self.app.push_screen(ToolsScreen(toolbox.status(), session.disabled_tools), done)

    # -- sidebar -------------------------------------------------------------------------------------
    @on(Sidebar.SearchChanged)
    def _search(self, event: Sidebar.SearchChanged) -> None:
        self.refresh_sidebar(event.query)

    @on(Sidebar.Selected)
    async def _open(self, event: Sidebar.Selected) -> None:
        if event.conversation_id == self.session.conversation_id:
            return
        if self.generating:
            self.notify("Stop the current answer first (Esc).", severity="warning")
            return
        self.session = self.app.new_session(event.conversation_id)
        await self.show_conversation()
