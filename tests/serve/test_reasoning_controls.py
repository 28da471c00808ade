"""Reasoning controls shared by serve, `ask` and the TUI: the loop guard and reasoning effort.

The loop guard runs in the real session over a scripted engine that repeats itself (it must fire,
nudge, then close the reasoning, or stop, as configured) and over normal reasoning (it must not).
"""

# ruff: noqa: F811 (`api` is a fixture imported from serve_helpers)

from __future__ import annotations

import io
import json
from pathlib import Path

from qwq_chat.app.ask import JsonPrinter
from qwq_chat.app.events import AnswerDelta, Done, ReasoningDelta
from qwq_chat.app.reasoning import LoopDetector, ReasoningSettings
from qwq_chat.app.session import Session
from qwq_chat.app.store import Store
from scripted_engine import ScriptedEngine, qwq_turn, words
from serve_helpers import Api, api  # noqa: F401 (the fixture)

LOOP = "Let me check whether 9.11 is larger than 9.9 once more. " * 30
NORMAL = (
    "The user asks which is larger, 9.9 or 9.11. Wait, decimals compare digit by digit after the "
    "point. 9.9 is the same as 9.90. Now 9.11 has 1 in the tenths place while 9.9 has 9 there. "
    "So 9.90 is larger than 9.11. Wait, maybe the user is thinking of version numbers, where "
    "9.11 comes after 9.9. Let me check that reading too. In software versions, 11 is larger "
    "than 9, so 9.11 would be the newer version. But the question asks about numbers, not "
    "versions. Let me verify with subtraction: 9.90 minus 9.11 is 0.79, which is positive. "
    "Hmm, let me make sure I did not misread. 9.11 is nine and eleven hundredths. 9.9 is nine "
    "and ninety hundredths. Ninety hundredths is more than eleven hundredths. Wait, let me "
    "check the arithmetic once more: 0.90 - 0.11 = 0.79. Yes. So the answer is 9.9.\n"
)
REPO = Path(__file__).resolve().parents[2]


def test_the_detector_fires_on_a_repeated_sentence_and_on_a_repeated_block() -> None:
    detector = LoopDetector()
    reasons = [detector.feed(piece) for piece in words(LOOP)]
    first = next(i for i, reason in enumerate(reasons) if reason)
    assert first < len(words(LOOP)) // 5  # within the first few repetitions
    assert "came 4 times" in (detector.fired or "")
    block = LoopDetector()
    for piece in words("one two three four five six seven eight " * 20):  # no sentence end
        block.feed(piece)
    assert block.fired and "repeated 4 times in a row" in block.fired


def test_the_detector_stays_quiet_on_normal_reasoning_and_prose() -> None:
    texts = [NORMAL * 1]
    texts += [(REPO / "docs" / name).read_text(encoding="utf-8") for name in
              ("architecture.md", "chat.md", "configuration.md")]  # fmt: skip
    for text in texts:
        detector = LoopDetector()
        for piece in words(text):
            detector.feed(piece)
        assert detector.fired is None, text[:80]


def _session(engine: ScriptedEngine, action: str) -> Session:
    session = Session(Store(":memory:"), engine)
    return session.with_reasoning(ReasoningSettings(loop_guard=action))  # type: ignore[arg-type]


def test_a_looping_reasoning_is_nudged_then_closed_and_the_reason_is_given() -> None:
    engine = ScriptedEngine([words(LOOP), words(LOOP), words("9.9 is larger.")])
    events = list(_session(engine, "nudge").send("Which is larger, 9.9 or 9.11?"))
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "reasoning_loop"
    assert done.detail and "loop guard" in done.detail and "reasoning closed" in done.detail
    nudge = ReasoningSettings().loop_nudge
    assert len(engine.calls) == 3
    assert engine.calls[1]["prefill"].endswith(nudge)  # the nudge went into the reasoning
    assert engine.calls[2]["prefill"].endswith(nudge + "</think>\n\n")  # then it was closed
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert reasoning.count(nudge) == 2 and len(reasoning) < 2 * len(LOOP)
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "9.9 is larger."
    out = io.StringIO()  # `ask --json` prints the reason in its done event
    JsonPrinter(out).handle(done)
    assert json.loads(out.getvalue())["detail"] == done.detail


def test_the_stop_setting_ends_the_reply_at_the_loop() -> None:
    engine = ScriptedEngine([words(LOOP)])
    events = list(_session(engine, "stop").send("Which is larger?"))
    done = events[-1]
    assert isinstance(done, Done) and done.finish_reason == "reasoning_loop"
    assert done.detail and done.detail.endswith("stopped") and done.reasoning_unfinished
    assert len(engine.calls) == 1


def test_normal_reasoning_is_left_alone() -> None:
    engine = ScriptedEngine([qwq_turn(NORMAL * 1, "9.9 is larger.")])
    events = list(_session(engine, "nudge").send("Which is larger?"))
    assert events[-1] == Done(finish_reason="stop") and len(engine.calls) == 1


def test_the_server_reports_the_loop_in_finish_details(api: Api) -> None:
    api.use(ScriptedEngine([words(LOOP), words(LOOP), words("9.9 is larger.")]))
    body = api.post(
        "/chat/completions", json={"messages": [{"role": "user", "content": "Which?"}]}
    ).json()
    choice = body["choices"][0]
    assert choice["message"]["content"] == "9.9 is larger." and choice["finish_reason"] == "stop"
    assert choice["finish_details"]["reason"] == "reasoning_loop"
    assert "loop guard" in choice["finish_details"]["detail"]
