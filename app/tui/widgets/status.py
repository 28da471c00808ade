"""The one-line status bar: model state, speed, time to first token, context use, GPU layers."""

from __future__ import annotations

from qwq_chat.app.events import Stats, draft_summary
from textual.reactive import reactive
from textual.widgets import Static


class StatusLine(Static):
    """Shows what the last generation cost and what the model is doing now."""

    DEFAULT_CSS = """
    StatusLine { height: 1; background: $panel; color: $text-muted; padding: 0 1; }
    """

    state: reactive[str] = reactive("loading model…")
    model: reactive[str] = reactive("")

    def __init__(self, **kwargs: object) -> None:
        super().__init__("", markup=False, **kwargs)  # type: ignore[arg-type]
        self.stats: Stats | None = None
        self.context_used: int | None = None

    def show_stats(self, stats: Stats) -> None:
        self.stats = stats
        self.context_used = stats.prompt_tokens + stats.completion_tokens
        self._redraw()

    def watch_state(self) -> None:
        self._redraw()

    def watch_model(self) -> None:
        self._redraw()

    def _redraw(self) -> None:
        parts = [self.state]
        stats = self.stats
        if stats is not None:
            if stats.tokens_per_second is not None:
                parts.append(f"{stats.tokens_per_second:.1f} tok/s")
            if (draft := draft_summary(stats)) is not None:
                parts.append(draft)
            if stats.time_to_first_token_s is not None:
                parts.append(f"TTFT {stats.time_to_first_token_s:.2f} s")
            if stats.context_size:
                parts.append(f"ctx {self.context_used or 0:,}/{stats.context_size:,}")
            if stats.gpu_layers is not None:
                parts.append(f"GPU layers {stats.gpu_layers}")
        if self.model:
            parts.append(self.model)  # last: the longest part, cut first on narrow terminals
        self.update(" │ ".join(parts))

    @property
    def text(self) -> str:
        return str(self.render())
