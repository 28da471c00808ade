"""GrowingText / MarkdownText: streamed text drawn incrementally, the same as drawn at once."""

from __future__ import annotations

from qwq_chat.app.tui.widgets.growing import LONG_LINE, GrowingText, MarkdownText
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.geometry import Offset
from textual.selection import Selection
from tui_helpers import drawn_strips, screen_lines

DOC = """# Plan

Some *emphasis*, `inline code` and **bold** text that is long enough to wrap at least once here.

| step | cost |
|------|------|
| one  | 1    |
| two  | 2    |

```python
def f(x):

    return x + 1
```

- first item

- second item, loose

1. first
2. second

> a quote
> over two lines

Final paragraph.
"""


class Host(App):
    """Widgets under test in a scroll view, as in the chat."""

    def __init__(self, *widgets: GrowingText) -> None:
        super().__init__()
        self.widgets = widgets

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield from self.widgets


async def test_markdown_streamed_in_pieces_draws_what_it_draws_at_once() -> None:
    whole, streamed = MarkdownText(DOC), MarkdownText()
    app = Host(whole, streamed)
    async with app.run_test(size=(70, 120)) as pilot:
        for i in range(0, len(DOC), 3):
            streamed.append(DOC[i : i + 3])
            if i % 30 == 0:
                await pilot.pause()  # drawn mid-stream too, at odd cut points
        await pilot.pause()
        assert streamed.text == DOC
        assert screen_lines(streamed) == screen_lines(whole)
        shown = "\n".join(screen_lines(whole))
        assert "Plan" in shown and "# Plan" not in shown  # a heading, not raw Markdown
        assert "─" in shown and "|------|" not in shown  # a table
        assert "```" not in shown and "def f(x):" in shown  # a code block
        assert "• second item, loose" in shown and "1 first" in shown and "▌ a quote" in shown


async def test_only_the_unfinished_block_is_drawn_again() -> None:
    section = (
        "## Step {n}\n\nWe compute the value carefully, one term at a time, and check it.\n\n"
        "```python\nx_{n} = {n} * 2\nprint(x_{n})\n```\n\n"
    )
    text = "".join(section.format(n=n) for n in range(150))
    widget = MarkdownText()
    async with Host(widget).run_test(size=(80, 40)) as pilot:
        await pilot.pause()
        for i in range(0, len(text), 8):
            widget.append(text[i : i + 8])  # drawn at once: the width is known
        await pilot.pause()
        assert widget.text == text
        # Redrawing everything per append would draw len(text)**2 / 16 characters (~1.3e8).
        assert widget.rendered_chars < 10 * len(text), (widget.rendered_chars, len(text))
        assert len(widget._blocks) > 100  # finished blocks were frozen as they completed
        shown = screen_lines(widget)
        assert sum("Step" in line for line in shown) == 150
        assert sum("print(x_" in line for line in shown) == 150


async def test_a_fence_with_blank_lines_stays_one_block_until_it_closes() -> None:
    widget = MarkdownText()
    async with Host(widget).run_test(size=(60, 30)) as pilot:
        widget.append("Intro.\n\n```python\na = 1\n\n\nb = 2\n")
        await pilot.pause()
        assert [block.strip() for block in widget._blocks] == ["Intro."]
        assert widget._tail.startswith("```python")  # still open: still the tail
        widget.append("```\n\nAfter.")
        await pilot.pause()
        assert widget._blocks[-1].startswith("```python") and widget._tail == "After."
        assert "a = 1" in "\n".join(screen_lines(widget))


async def test_plain_text_keeps_blank_lines_and_bounds_the_tail() -> None:
    plain = GrowingText("alpha\n\nbeta\n")
    async with Host(plain).run_test(size=(60, 30)) as pilot:
        await pilot.pause()
        assert screen_lines(plain) == ["alpha", "", "beta"]
        plain.append("word " * 3000)  # 15,000 characters and no newline
        assert len(plain._tail) <= LONG_LINE
        await pilot.pause()
        assert plain.text == "alpha\n\nbeta\n" + "word " * 3000
        assert all(len(line) <= 60 for line in screen_lines(plain))


async def test_a_resize_rewraps_every_block() -> None:
    widget = MarkdownText("A sentence that is long enough to wrap on a narrow screen. " * 4)
    widget.append("\n\nSecond paragraph, also long enough to wrap when narrow. " * 2)
    async with Host(widget).run_test(size=(100, 40)) as pilot:
        await pilot.pause()
        wide = screen_lines(widget)
        await pilot.resize_terminal(40, 40)
        await pilot.pause()
        narrow = screen_lines(widget)
        assert len(narrow) > len(wide)
        assert all(len(line) <= 40 for line in narrow)
        assert " ".join(" ".join(narrow).split()) == " ".join(" ".join(wide).split())


async def test_mouse_selection_copies_and_highlights_what_is_shown() -> None:
    widget = MarkdownText("First paragraph.\n\n- one\n- two\n")
    app = Host(widget)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        assert screen_lines(widget) == ["First paragraph.", "", " • one", " • two"]
        selection = Selection.from_offsets(Offset(6, 0), Offset(6, 2))
        assert widget.get_selection(selection) == ("paragraph.\n\n • one", "\n")
        app.screen.selections = {widget: selection}
        highlight = app.screen.get_component_rich_style("screen--selection")
        first = drawn_strips(widget)[0]
        selected = [
            seg.text for seg in first if seg.style and seg.style.bgcolor == highlight.bgcolor
        ]
        assert "".join(selected).startswith("paragraph.")
        assert first.text.startswith("First ")  # offsets let Textual map the mouse to text


async def test_code_blocks_follow_the_light_or_dark_theme() -> None:
    widget = MarkdownText("```python\nprint('hi')\n```\n")
    app = Host(widget)

    def code_background() -> set:
        line = next(strip for strip in drawn_strips(widget) if "print" in strip.text)
        return {seg.style.bgcolor for seg in line if seg.style and seg.style.bgcolor}

    async with app.run_test(size=(60, 20)) as pilot:
        app.theme = "textual-dark"
        await pilot.pause()
        dark = code_background()
        app.theme = "textual-light"
        await pilot.pause()
        light = code_background()
        assert dark and light and dark != light


async def test_while_streaming_the_height_grows_in_steps_then_fits_the_text() -> None:
    widget = GrowingText(streaming=True)
    layouts = 0
    refresh = widget.refresh

    def counting_refresh(*args, **kwargs):
        nonlocal layouts
        layouts += bool(kwargs.get("layout"))
        return refresh(*args, **kwargs)

    widget.refresh = counting_refresh  # type: ignore[method-assign]
    async with Host(widget).run_test(size=(40, 50)) as pilot:
        await pilot.pause()
        layouts, heights = 0, set()
        for i in range(30):
            widget.append(f"line {i}\n")
            await pilot.pause()
            heights.add(widget.size.height)
            assert screen_lines(widget)[i] == f"line {i}"  # each line shows as it arrives
        step = GrowingText.STREAM_STEP
        assert all(height % step == 0 for height in heights)
        assert layouts < 15  # not one layout per line (the count includes Textual's own on resize)
        widget.finish()
        await pilot.pause()
        assert widget.size.height == 30
        assert screen_lines(widget) == [f"line {i}" for i in range(30)]


async def test_focus_and_hover_restyles_do_not_draw_the_text_again() -> None:
    text = "A paragraph of reasoning.\n\n" * 200
    plain, markdown = GrowingText(text), MarkdownText(text)
    app = Host(plain, markdown)
    async with app.run_test(size=(60, 30)) as pilot:
        await pilot.pause()
        drawn = plain.rendered_chars, markdown.rendered_chars
        assert drawn[0] >= len(text) and drawn[1] >= len(text)
        for widget in (plain, markdown):
            widget.notify_style_update()  # what Textual calls on :hover / :focus changes
            widget.refresh(layout=True)
        await pilot.pause()
        assert (plain.rendered_chars, markdown.rendered_chars) == drawn


async def test_stored_text_is_cut_into_blocks_only_when_first_drawn() -> None:
    shown, unshown = MarkdownText(DOC), MarkdownText(DOC)  # e.g. an old chat's 300 answers
    assert shown._blocks == [] and shown.text == DOC  # nothing parsed at construction
    async with Host(shown).run_test(size=(70, 60)) as pilot:
        await pilot.pause()
        assert len(shown._blocks) > 5 and shown.text == DOC
        assert "def f(x):" in "\n".join(screen_lines(shown))
    assert unshown._blocks == [] and unshown.rendered_chars == 0


def test_lone_carriage_returns_keep_the_text_whole() -> None:
    """markdown-it counts a lone "\\r" as a line break; the cut must not misplace blocks then."""
    widget = MarkdownText()
    source = "one\r\rtwo\r\rthree\n\nfour"
    blocks, tail = widget.split(source)
    assert "".join(blocks) + tail == source
    blocks, tail = widget.split("one\n\ntwo\r\n\r\nthree")
    assert blocks == ["one\n\n", "two\r\n\r\n"] and tail == "three"
