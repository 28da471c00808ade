"""The splitter: raw deltas -> reasoning / answer / tool-call events, however the text is cut."""

from __future__ import annotations

import pytest
from qwq_chat.app.events import AnswerDelta, ReasoningDelta, ToolCall
from qwq_chat.app.splitter import Splitter, split_text


def run(
    deltas: list[str], start_in_reasoning: bool = True
) -> tuple[str, str, list[ToolCall], Splitter]:
    splitter = Splitter(start_in_reasoning)
    events = []
    for delta in deltas:
        events += splitter.feed(delta)
    events += splitter.finish()
    reasoning = "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    answer = "".join(e.text for e in events if isinstance(e, AnswerDelta))
    return reasoning, answer, [e for e in events if isinstance(e, ToolCall)], splitter


def every_split(text: str) -> list[list[str]]:
    """The text cut at every position into two deltas, and into single characters."""
    return [[text[:i], text[i:]] for i in range(len(text) + 1)] + [list(text)]


def test_qwq_output_has_only_the_closing_tag() -> None:
    reasoning, answer, calls, splitter = run(["Let me count: r, r, r.", "</think>", "\n\nThree."])
    assert reasoning == "Let me count: r, r, r."
    assert answer == "Three."
    assert calls == [] and not splitter.reasoning_unfinished


@pytest.mark.parametrize("deltas", every_split("abc</think>\n\nxyz"))
def test_closing_tag_split_anywhere(deltas: list[str]) -> None:
    reasoning, answer, _, _ = run(deltas)
    assert (reasoning, answer) == ("abc", "xyz")


def test_partial_tag_is_held_back_then_released_as_text() -> None:
    splitter = Splitter()
    assert splitter.feed("a </thi") == [ReasoningDelta("a ")]
    assert splitter.feed("ng> b") == [ReasoningDelta("</thing> b")]


def test_reasoning_that_never_closes_is_unfinished() -> None:
    reasoning, answer, _, splitter = run(["thinking and thinking", " </th"])
    assert reasoning == "thinking and thinking </th"
    assert answer == ""
    assert splitter.reasoning_unfinished


def test_answer_first_stream_with_think_in_content() -> None:
    """A remote server that sends <think>...</think> inside content."""
    for deltas in every_split("\n<think>\nhmm</think>\n\nok"):
        reasoning, answer, _, splitter = run(deltas, start_in_reasoning=False)
        assert (reasoning.strip(), answer) == ("hmm", "ok"), deltas
        assert not splitter.reasoning_unfinished


def test_answer_first_stream_without_tags_is_all_answer() -> None:
    reasoning, answer, _, splitter = run(["Hello", " <b>world</b>"], start_in_reasoning=False)
    assert (reasoning, answer) == ("", "Hello <b>world</b>")
    assert not splitter.reasoning_unfinished


def test_think_later_in_an_answer_is_text() -> None:
    _, answer, _, _ = run(["Use the <think> tag"], start_in_reasoning=False)
    assert answer == "Use the <think> tag"


def test_lone_closing_tag_in_answer_state_is_dropped() -> None:
    reasoning, answer, _, _ = run(["abc</think>def"], start_in_reasoning=False)
    assert (reasoning, answer) == ("", "abcdef")


def test_flagged_reasoning_passes_through() -> None:
    splitter = Splitter(start_in_reasoning=False)
    events = splitter.feed("Thinking </think> hard", reasoning=True) + splitter.feed("Answer")
    assert events == [ReasoningDelta("Thinking </think> hard"), AnswerDelta("Answer")]
    assert not splitter.reasoning_unfinished


def test_flagged_reasoning_without_answer_is_unfinished() -> None:
    splitter = Splitter(start_in_reasoning=False)
    splitter.feed("only thoughts", reasoning=True)
    splitter.finish()
    assert splitter.reasoning_unfinished


TOOL_TEXT = (
    'Need math.<tool_call>\n{"name": "calculator", "arguments": {"expression": "2**10"}}\n'
    "</tool_call>"
)


@pytest.mark.parametrize("deltas", every_split(TOOL_TEXT)[::3])
def test_tool_call_split_anywhere(deltas: list[str]) -> None:
    reasoning, answer, calls, splitter = run(deltas)
    assert reasoning == "Need math."
    assert answer == ""
    assert [(c.name, c.arguments) for c in calls] == [("calculator", {"expression": "2**10"})]
    assert calls[0].id.startswith("call_")


def test_tool_call_in_answer_and_text_around_it() -> None:
    text = 'r</think>\n\nLet me check. <tool_call>{"name": "f", "arguments": "{\\"x\\": 1}"}</tool_call> done'
    reasoning, answer, calls, _ = run([text])
    assert reasoning == "r"
    assert answer == "Let me check.  done"
    assert calls[0].name == "f" and calls[0].arguments == {"x": 1}


def test_invalid_tool_call_json_becomes_nameless_call() -> None:
    _, _, calls, _ = run(["<tool_call>not json</tool_call>"])
    assert calls[0].name == "" and calls[0].raw == "not json"


def test_unterminated_tool_call_is_shown_as_text() -> None:
    reasoning, _, calls, _ = run(['x<tool_call>{"name": "f"'])
    assert calls == []
    assert reasoning == 'x<tool_call>{"name": "f"'


def test_after_reasoning_splitter_strips_leading_newlines() -> None:
    splitter = Splitter.after_reasoning()
    events = splitter.feed("\n") + splitter.feed("\nAnswer") + splitter.finish()
    assert events == [AnswerDelta("Answer")]


def test_split_text_helper() -> None:
    assert split_text("a</think>\n\nb") == ("a", "b")
    assert split_text("plain", start_in_reasoning=False) == ("", "plain")
