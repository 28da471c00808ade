"""The bridge from the generation thread to the UI: a coalescing event buffer.

Why not one Textual message per token: at thousands of tokens per second the UI would re-render per
token and fall behind. Instead the worker appends events to this buffer (cheap, never blocks on the
UI) and posts a single `wake` message when the buffer goes from empty to non-empty; the UI drains
everything that piled up since, at most once per frame, joining consecutive deltas of the same kind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from qwq_chat.app.events import AnswerDelta, Event, ReasoningDelta


class EventBuffer:
    """Thread-safe: `put()` from the worker thread, `drain()` from the UI thread."""

    def __init__(self, wake: Callable[[], object]) -> None:
        self._wake = wake
        self._lock = threading.Lock()
        self._events: list[Event] = []

    def put(self, event: Event) -> None:
        with self._lock:
            was_empty = not self._events
            self._events.append(event)
        if was_empty:
            self._wake()

    def drain(self) -> list[Event]:
        """Everything received since the last drain, consecutive deltas of one kind joined."""
        with self._lock:
            events, self._events = self._events, []
        return coalesce(events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)


class Batch:
    """Consecutive deltas of one kind joined into one, remembering how many deltas it holds."""

    __slots__ = ("kind", "parts", "count")

    def __init__(self, kind: type, text: str) -> None:
        self.kind = kind
        self.parts = [text]
        self.count = 1

    @property
    def text(self) -> str:
        return "".join(self.parts)


def coalesce(events: list[Event]) -> list[Event | Batch]:
    """Join runs of ReasoningDelta / AnswerDelta into `Batch`es; keep other events in order."""
    out: list[Event | Batch] = []
    for event in events:
        if isinstance(event, ReasoningDelta | AnswerDelta):
            last = out[-1] if out else None
            if isinstance(last, Batch) and last.kind is type(event):
                last.parts.append(event.text)
                last.count += 1
            else:
                out.append(Batch(type(event), event.text))
        else:
            out.append(event)
    return out
