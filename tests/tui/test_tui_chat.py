"""The chat TUI driven through Textual's Pilot, over a scripted engine and a real SQLite store."""

from __future__ import annotations

import json
import threading

from qwq_chat.app.tui.chat_screen import HISTORY_PAGE, ui_cpu_share
from qwq_chat.app.tui.screens.modals import ConfirmScreen, EditScreen, RenameScreen
from qwq_chat.app.tui.screens.settings import SettingsScreen
from qwq_chat.app.tui.widgets.growing import MarkdownText
from qwq_chat.app.tui.widgets.message import (
    AssistantMessage,
    ReasoningSection,
    ToolCallView,
    UserMessage,
    code_blocks,
)
from scripted_engine import qwq_turn, words
from textual.widgets import Input, TextArea
from tui_helpers import (
    ANSWER,
    REASONING,
    drawn_strips,
    make_app,
    screen_lines,
    send,
    wait_for,
    wait_idle,
)


def last_view(app) -> AssistantMessage:
    return app.chat_screen.chat.query(AssistantMessage).last()


async def test_streams_reasoning_and_answer_into_their_panes() -> None:
    app, engine = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello")
        view = last_view(app)
        assert view.reasoning_text.strip() == REASONING.strip()
        assert view.answer_text == ANSWER
        markdown = view.query_one(MarkdownText)
        assert markdown.text == ANSWER  # the answer went through the Markdown widget
        shown = screen_lines(markdown)
        assert any("─" in line for line in shown)  # a table, not raw text
        assert not any("|---" in line or "```" in line for line in shown)
        code = next(strip for strip in drawn_strips(markdown) if "print" in strip.text)
        assert len({seg.style.color for seg in code if seg.style and seg.style.color}) >= 2
        section = view.query_one(ReasoningSection)
        assert section.collapsed  # collapsed once the answer started
        header = str(section.header.render())
        # one token per reasoning delta: the words, plus the "\n" that came with "</th"
        assert (
            header.startswith("▶ Thought for") and f"{len(words(REASONING)) + 1} tokens" in header
        )
        # the store has the reasoning apart from the answer
        stored = app.store.messages(app.chat_screen.session.conversation_id)
        assert [m.role for m in stored] == ["user", "assistant"]
        assert stored[1].content == ANSWER and stored[1].reasoning.strip() == REASONING.strip()
        # the model was sent the user's text
        assert engine.calls[0]["messages"][-1] == {"role": "user", "content": "hello"}
        assert "42.0 tok/s" in app.chat_screen.status.text
        assert "TTFT 0.25 s" in app.chat_screen.status.text
        assert "ctx 72/16,384" in app.chat_screen.status.text
        assert "GPU layers 0" in app.chat_screen.status.text


async def test_live_header_while_thinking_then_collapse() -> None:
    release = threading.Event()
    pieces = qwq_turn(REASONING, ANSWER)

    def turn():
        yield from pieces[:8]
        release.wait(10)  # the model "thinks" here until the test has looked
        yield from pieces[8:]

    app, _ = make_app([turn])
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        app.chat_screen.composer.insert("hi")
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.chat_screen.live_view is not None)
        view = app.chat_screen.live_view
        await wait_for(pilot, lambda: view.reasoning_tokens == 8)
        section = view.reasoning_sections[0]
        header = str(section.header.render())
        assert header.startswith("▼ Thinking… 8 tokens, ") and header.endswith(" s")
        assert not section.collapsed and section.body.region.height > 0
        assert view.answer_text == ""
        release.set()
        await wait_idle(pilot, app)
        assert section.collapsed
        assert section.body.region.height == 0


async def test_click_header_and_key_toggle_reasoning() -> None:
    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello")
        section = last_view(app).query_one(ReasoningSection)
        assert section.collapsed
        await pilot.click(section.header)
        assert not section.collapsed
        assert section.body.region.height > 0  # the text is on screen again
        await pilot.press("ctrl+t")  # keymap "toggle_reasoning", works from the prompt box
        assert section.collapsed
        assert str(section.header.render()).startswith("▶")
        # focused message: `t` toggles it
        last_view(app).focus()
        await pilot.press("t")
        assert not section.collapsed


async def test_reasoning_open_and_hidden_settings() -> None:
    app, _ = make_app(settings_overrides={"ui": {"reasoning": "open"}})
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello")
        assert not last_view(app).query_one(ReasoningSection).collapsed
    app, _ = make_app(settings_overrides={"ui": {"reasoning": "hidden"}})
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello")
        section = last_view(app).query_one(ReasoningSection)
        assert not section.display  # hidden entirely
        assert section.text.strip() == REASONING.strip()  # but kept
        assert last_view(app).answer_text == ANSWER


async def test_unfinished_reasoning_is_shown_as_such() -> None:
    app, _ = make_app([words("I keep thinking and never close the reasoning")])
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello")
        view = last_view(app)
        section = view.query_one(ReasoningSection)
        assert "unfinished" in str(section.header.render())
        assert not section.collapsed  # nothing else to show: the thinking stays open
        assert view.answer_text == ""
        stored = app.store.messages(app.chat_screen.session.conversation_id)[-1]
        assert stored.reasoning_unfinished


async def test_escape_stops_and_keeps_partial_text() -> None:
    long_answer = "word " * 400
    app, engine = make_app([qwq_turn("short thought", long_answer)], delay_s=0.005)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        app.chat_screen.composer.insert("go")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(last_view(app).answer_text) > 20)
        await pilot.press("escape")
        await wait_idle(pilot, app)
        view = last_view(app)
        assert view.finish_reason == "cancelled"
        kept = view.answer_text
        assert 20 < len(kept) < len(long_answer)
        assert "stopped" in str(view.query(".turn-note").last().render())
        stored = app.store.messages(app.chat_screen.session.conversation_id)[-1]
        assert stored.finish_reason == "cancelled"
        assert stored.content == kept  # what was on screen is what was saved
        assert app.chat_screen.status.state == "stopped"


async def test_regenerate_replaces_the_last_answer() -> None:
    app, engine = make_app([qwq_turn("first", "First answer."), qwq_turn("second", "Second!")])
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "question")
        assert last_view(app).answer_text == "First answer."
        await pilot.press("ctrl+r")
        await pilot.pause()
        await wait_idle(pilot, app)
        views = app.chat_screen.chat.query(AssistantMessage)
        assert len(views) == 1 and views.last().answer_text == "Second!"
        stored = app.store.messages(app.chat_screen.session.conversation_id)
        assert [(m.role, m.content) for m in stored] == [
            ("user", "question"),
            ("assistant", "Second!"),
        ]
        assert len(engine.calls) == 2
        assert engine.calls[1]["messages"] == [{"role": "user", "content": "question"}]


async def test_edit_and_resend_a_user_message() -> None:
    app, engine = make_app([qwq_turn("a", "One."), qwq_turn("b", "Two."), qwq_turn("c", "Three.")])
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "first question")
        await send(pilot, app, "second question")
        first = app.chat_screen.chat.query(UserMessage).first()
        first.focus()
        await pilot.press("e")
        await pilot.pause()
        assert isinstance(app.screen, EditScreen)
        area = app.screen.query_one(TextArea)
        assert area.text == "first question"
        area.text = "edited question"
        await pilot.press("ctrl+s")
        await pilot.pause()
        await wait_idle(pilot, app)
        users = [u.text for u in app.chat_screen.chat.query(UserMessage)]
        assert users == ["edited question"]  # everything after the edited message is gone
        assert last_view(app).answer_text == "Three."
        stored = app.store.messages(app.chat_screen.session.conversation_id)
        assert [(m.role, m.content) for m in stored] == [
            ("user", "edited question"),
            ("assistant", "Three."),
        ]
        assert engine.calls[-1]["messages"] == [{"role": "user", "content": "edited question"}]


async def test_new_chat_sidebar_search_rename_delete() -> None:
    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "apples are red")
        first_id = app.chat_screen.session.conversation_id
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert not app.chat_screen.chat.query(UserMessage)
        await send(pilot, app, "bananas are yellow")
        sidebar = app.chat_screen.sidebar
        assert sidebar.titles == ["bananas are yellow", "apples are red"]
        # search (ctrl+f focuses the box) filters by title and content
        await pilot.press("ctrl+f")
        await pilot.press(*"apple")
        await pilot.pause()
        assert sidebar.titles == ["apples are red"]
        search = sidebar.query_one(Input)
        search.value = ""
        await pilot.pause()
        # open the first chat from the sidebar
        sidebar.options.focus()
        sidebar.options.highlighted = 1
        await pilot.press("enter")
        await pilot.pause()
        assert app.chat_screen.session.conversation_id == first_id
        assert [u.text for u in app.chat_screen.chat.query(UserMessage)] == ["apples are red"]
        assert last_view(app).answer_text == ANSWER  # rebuilt from the store
        # rename the open chat
        app.chat_screen.composer.focus()
        await pilot.press("f2")
        await pilot.pause()
        assert isinstance(app.screen, RenameScreen)
        app.screen.query_one(Input).value = "Fruit talk"
        await pilot.press("enter")
        await pilot.pause()
        assert app.store.get_conversation(first_id).title == "Fruit talk"
        assert "Fruit talk" in sidebar.titles
        # delete it (with confirmation)
        await pilot.press("ctrl+d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot.pause()
        assert app.store.get_conversation(first_id) is None
        assert sidebar.titles == ["bananas are yellow"]
        assert not app.chat_screen.chat.query(UserMessage)  # a fresh chat is open


async def test_export_markdown_and_json(tmp_path) -> None:
    app, _ = make_app()
    app.export_dir = tmp_path / "exports"
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello there")
        await pilot.press("ctrl+s")
        await pilot.pause()
        files = sorted(p.name for p in app.export_dir.iterdir())
        conv = app.chat_screen.session.conversation_id
        assert files == [f"hello-there-{conv[:8]}.json", f"hello-there-{conv[:8]}.md"]
        md = (app.export_dir / files[1]).read_text()
        assert md.startswith("# hello there\n")
        assert "## User\n\nhello there" in md
        assert "<details><summary>Reasoning</summary>" in md and "greet them back" in md
        assert ANSWER.strip() in md
        data = json.loads((app.export_dir / files[0]).read_text())
        assert data["id"] == conv
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"]
        assert data["messages"][1]["content"] == ANSWER
        assert data["messages"][1]["reasoning"].strip() == REASONING.strip()


async def test_copy_answer_and_code_block() -> None:
    app, _ = make_app()
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello")
        await pilot.press("ctrl+y")
        assert app.clipboard == ANSWER  # what OSC 52 sent
        assert app.clipboard_fallback.read_text() == ANSWER  # the file fallback
        last_view(app).focus()
        await pilot.press("k")
        await pilot.pause()
        assert app.clipboard == "print('hi')\n"
    assert code_blocks("a\n```py\nx = 1\n```\nb\n```\ny") == ["x = 1\n", "y"]


async def test_settings_modal_changes_sampling_and_system_prompt() -> None:
    app, engine = make_app([qwq_turn("a", "One."), qwq_turn("b", "Two.")])
    async with app.run_test(size=(120, 50)) as pilot:
        await send(pilot, app, "first")
        await pilot.press("f3")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)
        assert app.screen.query_one("#temperature", Input).value == "0.6"  # QwQ's default
        app.screen.query_one("#temperature", Input).value = "5"  # out of range
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, SettingsScreen)  # refused, with a message
        assert "temperature" in str(app.screen.query_one("#error").render())
        app.screen.query_one("#temperature", Input).value = "0.3"
        app.screen.query_one("#system_prompt", TextArea).text = "You are terse."
        app.screen.query_one("#max_tokens", Input).value = "500"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert not isinstance(app.screen, SettingsScreen)
        await send(pilot, app, "second")
        sampling = engine.calls[-1]["sampling"]
        assert sampling.temperature == 0.3
        assert engine.calls[-1]["messages"][0] == {"role": "system", "content": "You are terse."}
        saved = app.store.get_settings(app.chat_screen.session.conversation_id)
        assert saved["system_prompt"] == "You are terse."
        assert saved["sampling"]["temperature"] == 0.3
        assert saved["limits"]["max_tokens"] == 500
        assert engine.calls[-1]["max_tokens"] <= 500


async def test_per_chat_reasoning_budget_survives_reopening() -> None:
    """The budget set in the settings dialog is saved with the chat and used again after reopening."""
    app, engine = make_app([qwq_turn("a", "One."), qwq_turn("b", "Two."), qwq_turn("c", "3.")])
    async with app.run_test(size=(120, 50)) as pilot:
        await send(pilot, app, "first")
        first_id = app.chat_screen.session.conversation_id
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.query_one("#reasoning_budget", Input).value == "0"
        app.screen.query_one("#reasoning_budget", Input).value = "7"
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert app.chat_screen.session.reasoning_budget == 7
        await pilot.press("ctrl+n")  # another chat, then back to the first one
        await send(pilot, app, "other")
        assert app.chat_screen.session.reasoning_budget == 0  # the config's value, not chat 1's
        app.chat_screen.session = app.new_session(first_id)
        await app.chat_screen.show_conversation()
        await pilot.pause()
        assert app.chat_screen.session.reasoning_budget == 7
        await pilot.press("f3")
        await pilot.pause()
        assert app.screen.query_one("#reasoning_budget", Input).value == "7"


async def test_keymap_override_from_settings() -> None:
    app, _ = make_app(settings_overrides={"ui": {"keymap": {"new_chat": "ctrl+o"}}})
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "hello")
        assert app.chat_screen.chat.query(UserMessage)
        await pilot.press("ctrl+n")  # the default key no longer starts a new chat
        await pilot.pause()
        assert app.chat_screen.chat.query(UserMessage)
        await pilot.press("ctrl+o")
        await pilot.pause()
        assert not app.chat_screen.chat.query(UserMessage)
        assert app.chat_screen.session.conversation_id is None


async def test_tool_call_and_result_are_shown() -> None:
    call = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "12*12"}}\n</tool_call>'
    app, engine = make_app(
        [
            [*words("I need to multiply. "), call],
            qwq_turn("The tool said 144.", "12 × 12 = **144**."),
        ]
    )
    async with app.run_test(size=(120, 40)) as pilot:
        await send(pilot, app, "what is 12*12?")
        view = last_view(app)
        tool = view.query_one(ToolCallView)
        text = str(tool.render())
        assert "calculator" in text and "12*12" in text and "→ 144" in text
        assert view.answer_text == "12 × 12 = **144**."
        # the model got the tool result back before answering
        assert engine.calls[1]["messages"][-1]["role"] == "tool"
        assert engine.calls[1]["messages"][-1]["content"].strip() == "144"
        # reopening the chat rebuilds the same picture from the store
        await app.chat_screen.show_conversation()
        await pilot.pause()
        view = last_view(app)
        assert "→ 144" in str(view.query_one(ToolCallView).render())
        assert len(view.query(ReasoningSection)) == 2
        assert view.answer_text == "12 × 12 = **144**."


async def test_interactive_before_the_model_loads() -> None:
    loaded = threading.Event()
    app, engine = make_app()

    def slow_factory():
        loaded.wait(10)
        return engine

    app.engine_factory = slow_factory
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.chat_screen.status.state == "loading model…"
        assert app.engine is None
        app.chat_screen.composer.focus()
        await pilot.press(*"early bird", "enter")
        await pilot.pause()
        assert [u.text for u in app.chat_screen.chat.query(UserMessage)] == ["early bird"]
        assert not engine.calls
        loaded.set()
        await wait_for(pilot, lambda: app.engine is not None)
        await wait_idle(pilot, app)
        assert last_view(app).answer_text == ANSWER
        assert engine.calls[0]["messages"][-1]["content"] == "early bird"


async def test_model_load_failure_keeps_the_app_usable() -> None:
    def broken():
        raise FileNotFoundError("no such model: /nope.gguf")

    app, _ = make_app(engine_factory=broken)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.chat_screen.status.state == "model failed to load")
        assert app.is_running
        assert any("/nope.gguf" in str(n.message) for n in app._notifications)


async def test_long_conversation_mounts_only_recent_messages() -> None:
    app, _ = make_app()
    store = app.store
    conv = store.create_conversation("long")
    from qwq_chat.app.messages import Message

    for i in range(150):
        store.add_message(conv, Message("user", content=f"question {i}"))
        store.add_message(
            conv, Message("assistant", content=f"answer {i}", reasoning=f"thinking {i}")
        )
    app._first_conversation = conv
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        chat = app.chat_screen.chat
        assert (
            len(chat.query_children(UserMessage)) + len(chat.query_children(AssistantMessage))
            == HISTORY_PAGE
        )
        assert last_view(app).answer_text == "answer 149"
        more = chat.query_one("#more")
        assert f"Show {300 - HISTORY_PAGE} earlier" in str(more.render())
        chat.scroll_home(animate=False)
        await pilot.pause()
        await pilot.click(more)
        await pilot.pause()
        assert len(chat.query_children(UserMessage)) == HISTORY_PAGE
        assert chat.query_children(UserMessage).first().text == f"question {150 - HISTORY_PAGE}"


async def test_theme_toggle() -> None:
    app, _ = make_app(settings_overrides={"ui": {"theme": "light"}})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.theme == "textual-light"
        await pilot.press("f4")
        assert app.theme == "textual-dark"


async def test_quit_mid_answer_stops_generation_before_closing_the_engine() -> None:
    app, engine = make_app([qwq_turn("thinking " * 50, "answer " * 500)], delay_s=0.01)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: app.engine is not None)
        app.chat_screen.composer.insert("go")
        await pilot.press("enter")
        await wait_for(pilot, lambda: engine.streaming)
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert engine.closed and not engine.closed_while_streaming
    stored = app.store.messages(app.chat_screen.session.conversation_id)[-1]
    assert stored.finish_reason == "cancelled"  # what was generated is kept


def test_ui_cpu_cap_leaves_small_machines_to_the_engine() -> None:
    """The UI's CPU cap while streaming: 2.5% of a core on 2 cores, more with more, at most 15%."""
    assert ui_cpu_share(1) == ui_cpu_share(2) == 0.025
    assert ui_cpu_share(2) < ui_cpu_share(4) < ui_cpu_share(8) < ui_cpu_share(12)
    assert ui_cpu_share(12) == ui_cpu_share(64) == 0.15
    assert 0.025 <= ui_cpu_share() <= 0.15  # this machine
