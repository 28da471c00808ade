"""Rule verifiers: format, IFEval-style instruction checks (if-verifiable), DAPO soft overlong."""

from __future__ import annotations

import pytest
from qwq_chat.rl_finetune.verifiers.rules import (
    UnknownInstruction,
    format_score,
    instruction_score,
    soft_overlong_penalty,
)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("reasoning...\n</think>\n\nThe answer is 4.", 1.0),
        ("<think>\nreasoning\n</think>\nFour.", 1.0),
        ("reasoning that never ends", 0.0),  # not closed
        ("reasoning</think>   \n ", 0.0),  # empty answer
        ("a</think>b</think>c", 0.0),  # closed twice
        ("r</think>Answer <tool_call>{}</tool_call>", 0.0),  # stray tool tag
        ("r</think>Answer<|im_end|>", 0.0),  # template token leaked
        ("r</think><think>again", 0.0),
    ],
)
def test_format_score(completion: str, expected: float) -> None:
    assert format_score(completion) == expected


TEXT = "<think>plan the reply</think>Hello world. This reply has exactly three sentences. Done."


def test_instruction_score_counts_followed_instructions() -> None:
    constraints = [
        {"id": "length_constraints:number_words", "relation": "less than", "num_words": 20},
        {"id": "length_constraints:number_sentences", "relation": "at least", "num_sentences": 3},
        {"id": "keywords:existence", "keywords": ["world"]},
        {"id": "change_case:english_lowercase"},  # fails: capitals present
        {"id": "detectable_format:json_format"},  # fails: not JSON
        {"id": "language:response_language", "language": "en"},
    ]
    assert instruction_score(TEXT, constraints) == pytest.approx(4 / 6)
    assert instruction_score(TEXT, constraints, partial=False) == 0.0
    assert instruction_score(TEXT, constraints[:3] + constraints[5:], partial=False) == 1.0


def test_instruction_score_ignores_the_reasoning() -> None:
    c = [{"id": "keywords:forbidden_words", "forbidden_words": ["plan"]}]
    assert instruction_score(TEXT, c) == 1.0  # "plan" is only in the reasoning
    assert instruction_score("<think>x</think>my plan", c) == 0.0


def test_instruction_score_json_and_ifeval_native_shape() -> None:
    native = {"instruction_id_list": ["detectable_format:json_format"], "kwargs": [{}]}
    assert instruction_score('<think>x</think>{"a": 1}', native) == 1.0
    assert instruction_score("<think>x</think>{a: 1", native) == 0.0


def test_sentence_count_works_offline() -> None:
    c = [{"id": "length_constraints:number_sentences", "relation": "less than", "num_sentences": 2}]
    assert instruction_score("<think>x</think>One sentence only.", c) == 1.0
    assert instruction_score("<think>x</think>One. Two. Three.", c) == 0.0


def test_unknown_instruction_is_an_error_not_a_free_pass() -> None:
    with pytest.raises(UnknownInstruction, match="no_such:thing"):
        instruction_score(TEXT, [{"id": "no_such:thing"}])
    with pytest.raises(ValueError):
        instruction_score(TEXT, "not constraints")


@pytest.mark.parametrize(
    ("length", "expected"),
    [(0, 0.0), (80, 0.0), (90, -0.5), (100, -1.0), (101, -1.0), (85, -0.25)],
)
def test_soft_overlong_penalty_matches_dapo(length: int, expected: float) -> None:
    assert soft_overlong_penalty(length, max_length=100, cache_length=20) == pytest.approx(expected)


def test_soft_overlong_penalty_agrees_with_trl() -> None:
    from trl.rewards import get_soft_overlong_punishment

    trl_fn = get_soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)
    lengths = [10, 80, 81, 95, 100, 150]
    assert trl_fn([[1] * n for n in lengths]) == pytest.approx(
        [soft_overlong_penalty(n, 100, 20) for n in lengths]
    )


def test_soft_overlong_penalty_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        soft_overlong_penalty(10, 100, 200)
