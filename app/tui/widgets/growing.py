"""Text that grows at its end (streamed reasoning and answers), drawn with Textual's Line API.

Why a widget of its own: a streamed answer gets a new piece many times a second for minutes. With
Textual's `Markdown` widget every Markdown block is a widget of its own, so each update lays out and
re-measures more widgets as the answer grows, and a 5,000-token answer costs three times as much per
token at its end as at its start. Here the text is one widget whatever its length: finished blocks
are rendered to lines once (per width) and kept; an append re-renders only the unfinished last
block. While streaming, the height grows in steps of a few lines, so most appends repaint a few
lines instead of laying out the whole chat. Rendering goes through Rich (`Text` for reasoning,
`Markdown` for answers: tables, code with highlighting), so what is drawn is what Rich would print.
"""

from __future__ import annotations

import re

from markdown_it import MarkdownIt
from rich.console import RenderableType
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text
from textual.geometry import Region, Size
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget

LONG_LINE = 2048  # plain text: a line longer than this is cut at a space so the tail stays small


def is_blank(line: list[Segment]) -> bool:
    """Nothing visible: no text and no background (a code block's padding line is not blank)."""
    return all(
        not segment.text.strip() and (segment.style is None or segment.style.bgcolor is None)
        for segment in line
    )


class GrowingText(Widget):
    """Plain text that grows at its end; finished lines are rendered once.

    Subclasses change what a block is (`split`) and how one is drawn (`renderable`).
    """

    DEFAULT_CSS = "GrowingText { height: auto; }"
    STREAM_STEP = 6  # why steps: a new height means a layout and a repaint of the whole chat
    BLOCK_GAP = 0  # blank lines drawn between blocks

    def __init__(self, text: str = "", streaming: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.streaming = streaming  # while True, height grows in steps of STREAM_STEP lines
        self._blocks: list[str] = []  # finished source blocks: never split or parsed again
        self._tail = text  # the unfinished last block (at first: all of `text`, not cut yet)
        self._unsplit = bool(text)  # cut into blocks when first drawn: a long old chat opens fast
        self._width = 0  # the width `_lines` were rendered at (0: not yet)
        self._lines: list[Strip] = []  # the rendered finished blocks
        self._rendered = 0  # how many of `_blocks` are in `_lines`
        self._tail_lines: list[Strip] = []
        self._tail_dirty = False
        self.rendered_chars = 0  # source characters rendered so far (tests read this)
        self._style_key: object = None

    # -- content ---------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        return "".join(self._blocks) + self._tail

    def append(self, text: str) -> None:
        """Add text at the end; only the unfinished block is drawn again."""
        if not text:
            return
        self._cut(text)
        if not self._width:
            return  # not laid out yet: drawn on first layout
        old_height, start = self._height, self._tail_top
        self._update_lines(self._width)
        if self._height != old_height:
            self.refresh(layout=True)
        else:  # same height: repaint only from where the unfinished block was
            self.refresh(Region(0, start, self._width, max(1, self._height - start)))

    def _cut(self, more: str = "") -> None:
        """Add `more` to the tail and move the blocks it finishes into `_blocks`."""
        self._unsplit = False
        finished, self._tail = self.split(self._tail + more)
        self._blocks.extend(block for block in finished if block)
        self._tail_dirty = True

    def finish(self) -> None:
        """Streaming ended: drop the room kept for lines to come."""
        if self.streaming:
            self.streaming = False
            self.refresh(layout=True)

    def split(self, source: str) -> tuple[list[str], str]:
        """Cut `source` into finished blocks and the unfinished rest (here: complete lines)."""
        cut = source.rfind("\n") + 1
        blocks, rest = [source[:cut]], source[cut:]
        while len(rest) > LONG_LINE:  # a runaway line: cut at a space (its wrap may differ)
            cut = rest.rfind(" ", 0, LONG_LINE) + 1 or LONG_LINE
            blocks.append(rest[:cut])
            rest = rest[cut:]
        return blocks, rest

    def renderable(self, block: str) -> RenderableType:
        """How one block is drawn."""
        return Text(block.removesuffix("\n"), end="")

    # -- drawing ---------------------------------------------------------------------------------
    @property
    def _tail_top(self) -> int:
        """The line the tail's lines start at (after the finished blocks and the gap)."""
        gap = self.BLOCK_GAP if self._lines and self._tail_lines else 0
        return len(self._lines) + gap

    @property
    def _shown(self) -> int:
        """Lines with text."""
        return self._tail_top + len(self._tail_lines)

    @property
    def _height(self) -> int:
        """Lines with text, rounded up while streaming so most updates keep the layout as it is."""
        shown = self._shown
        if not self.streaming:
            return shown
        return -(-(shown + 1) // self.STREAM_STEP) * self.STREAM_STEP

    def _render_block(self, block: str, width: int) -> list[Strip]:
        self.rendered_chars += len(block)
        console = self.app.console
        options = console.options.update(width=width, height=None)
        lines = console.render_lines(self.renderable(block), options, pad=False)
        if self.BLOCK_GAP:  # blank lines around a block: the gap between blocks is ours to draw
            visible = [i for i, line in enumerate(lines) if not is_blank(line)]
            lines = lines[visible[0] : visible[-1] + 1] if visible else []
        return [Strip(line) for line in lines]

    def _update_lines(self, width: int) -> None:
        """Bring the rendered lines up to date for `width` (all of them only when it changed)."""
        stale = self._unsplit or self._tail_dirty or self._rendered < len(self._blocks)
        if width == self._width and not stale:
            return  # up to date: the common case (this runs once per drawn line)
        if self._unsplit:
            self._cut()
        if width != self._width:
            self._width, self._lines, self._rendered = width, [], 0
            self._tail_dirty = True
        for block in self._blocks[self._rendered :]:
            if self._lines and self.BLOCK_GAP:
                self._lines.extend([Strip.blank(0)] * self.BLOCK_GAP)
            self._lines.extend(self._render_block(block, width))
        self._rendered = len(self._blocks)
        if self._tail_dirty:
            tail = self._tail if self._tail.strip() else ""
            self._tail_lines = self._render_block(tail, width) if tail else []
            self._tail_dirty = False

    def style_key(self) -> object:
        """What the rendered lines depend on besides the width (the widget's own colours are
        applied when a line is drawn, so hover and focus never cost a re-render)."""
        return None

    def notify_style_update(self) -> None:
        super().notify_style_update()
        key = self.style_key()
        if key != self._style_key:
            self._style_key = key
            self._width = 0  # draw everything again at the next layout

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width <= 0:
            return 0
        self._update_lines(width)
        return self._height

    def _line(self, y: int) -> Strip | None:
        """Line `y` as rendered (None: a gap or past the end)."""
        if y < len(self._lines):
            return self._lines[y]
        top = self._tail_top
        if top <= y < top + len(self._tail_lines):
            return self._tail_lines[y - top]
        return None

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        if width <= 0:
            return Strip.blank(0)
        self._update_lines(width)
        style = self.rich_style
        line = self._line(y)
        if line is None:
            return Strip.blank(width, style)
        line = line.crop_extend(0, width, style).apply_style(style).apply_offsets(0, y)
        selection = self.text_selection
        span = selection.get_span(y) if selection is not None else None
        if span is not None:  # mouse selection: highlight the selected cells
            start, end = span
            end = width if end == -1 else end
            highlight = self.screen.get_component_rich_style("screen--selection")
            left, middle, right = line.divide([start, end, width])
            middle = Strip(Segment.apply_style(middle, post_style=highlight))
            line = Strip.join([left, middle, right])
        return line

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        """The selected text as shown (what the mouse selection copies)."""
        self._update_lines(self._width or self.content_size.width)
        shown = [self._line(y) for y in range(self._shown)]
        text = "\n".join(line.text.rstrip() if line else "" for line in shown)
        return selection.extract(text), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()


_parser = MarkdownIt().enable("strikethrough").enable("table")  # as Rich's Markdown parses


_NEWLINE = re.compile("\n")


def line_starts(source: str) -> list[int]:
    """Where each line starts (lines split at "\\n", as markdown-it counts them)."""
    return [0, *(match.end() for match in _NEWLINE.finditer(source))]


class MarkdownText(GrowingText):
    """Markdown that grows at its end: finished top-level blocks are parsed and drawn once.

    A block is final once another top-level block starts after it: in CommonMark only the last
    block can still change (a paragraph becoming a table or a heading, a fence or a list growing).
    """

    BLOCK_GAP = 1

    def __init__(
        self,
        text: str = "",
        streaming: bool = False,
        code_theme: str | None = None,
        **kwargs: object,
    ) -> None:
        self.code_theme = code_theme  # None: a Pygments theme that suits the app's light/dark theme
        super().__init__(text, streaming, **kwargs)

    def split(self, source: str) -> tuple[list[str], str]:
        starts = [
            token.map[0]
            for token in _parser.parse(source)
            if token.level == 0 and token.nesting >= 0 and token.map  # opens a top-level block
        ]
        if len(starts) < 2:
            return [], source
        offsets = line_starts(source)
        if starts[-1] >= len(offsets):  # a lone "\r", which markdown-it counts as a line break
            return [], source
        cuts = [0, *(offsets[start] for start in starts[1:])]
        blocks = [source[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
        return [block for block in blocks if block.strip()], source[cuts[-1] :]

    def style_key(self) -> object:
        return self.pygments_theme()

    def pygments_theme(self) -> str:
        """The code blocks' colours: the one asked for, else one for the app's light/dark theme."""
        if self.code_theme:
            return self.code_theme
        return "monokai" if self.app.current_theme.dark else "default"

    def renderable(self, block: str) -> RenderableType:
        return Markdown(block, code_theme=self.pygments_theme())
