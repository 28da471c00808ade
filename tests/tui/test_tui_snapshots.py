"""Snapshots of the main screens (pytest-textual-snapshot). Update after an intended change with
`pytest tests/tui/test_tui_snapshots.py --snapshot-update` and review the SVGs in the diff."""

from __future__ import annotations

import pytest
from qwq_chat.app.tui.widgets import message
from tui_helpers import make_app, send, wait_idle

SIZE = (110, 36)


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "Thought for N s" must not depend on how busy the machine is."""
    monkeypatch.setattr(message, "now", lambda: 1000.0)


async def _answered(pilot) -> None:
    await send(pilot, pilot.app, "Say hello and show a table")


def test_snapshot_answer_with_collapsed_reasoning(snap_compare) -> None:
    app, _ = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=_answered)


def test_snapshot_reasoning_expanded(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _answered(pilot)
        await pilot.press("ctrl+t")
        await pilot.pause()

    app, _ = make_app()
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_snapshot_settings_modal(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _answered(pilot)
        await pilot.press("f3")
        await pilot.pause()

    app, _ = make_app()
    assert snap_compare(app, terminal_size=(110, 44), run_before=run_before)


def test_snapshot_light_theme_with_sidebar(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await _answered(pilot)
        await pilot.press("ctrl+n")
        await send(pilot, pilot.app, "A second chat")
        await wait_idle(pilot, pilot.app)

    app, _ = make_app(settings_overrides={"ui": {"theme": "light"}})
    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
