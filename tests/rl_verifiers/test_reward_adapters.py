"""The verifiers as TRL reward functions and as verl's compute_score, called the way those call them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from qwq_chat.app.sandbox.server import BackgroundServer, ServerConfig, serve_in_background
from qwq_chat.rl_finetune import rewards

GOOD = "<think>\n2+2 is 4\n</think>\n\nThe answer is $\\boxed{4}$."
BAD = "<think>\nhmm\n</think>\n\nThe answer is $\\boxed{5}$."
CODE_OK = "<think>write add</think>\n```python\ndef add(a, b):\n    return a + b\n```"
CODE_BAD = "<think>x</think>\n```python\ndef add(a, b):\n    return a - b\n```"


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serve_in_background(config=ServerConfig(concurrency=2)) as s:
        yield s


def test_math_reward_strings_and_missing_answers() -> None:
    scores = rewards.math_accuracy_reward(
        prompts=["p1", "p2", "p3"],
        completions=[GOOD, BAD, GOOD],
        completion_ids=[[1], [2], [3]],
        answer=["4", "4", None],
        other_column=[1, 2, 3],
    )
    assert scores == [1.0, 0.0, None]


def test_math_reward_conversational_completions() -> None:
    conv = [
        [{"role": "assistant", "content": "</think>\n\\boxed{4}"}],
        [{"role": "assistant", "reasoning_content": "r", "content": "\\boxed{4}"}],
        [{"role": "assistant", "content": "I think it is 4"}],  # no box, no "answer:" line
        [{"role": "assistant", "content": [{"type": "text", "text": "</think>\\boxed{3}"}]}],
    ]
    prompts = [[{"role": "user", "content": "2+2?"}]] * 4
    assert rewards.math_accuracy_reward(prompts=prompts, completions=conv, answer=["4"] * 4) == [
        1.0,
        1.0,
        0.0,
        0.0,
    ]


def test_completion_text_restores_reasoning_tags() -> None:
    msg = [{"role": "assistant", "reasoning_content": "thinking", "content": "answer"}]
    assert rewards.completion_text(msg) == "<think>\nthinking\n</think>\nanswer"


def test_format_and_instruction_rewards() -> None:
    assert rewards.format_reward(prompts=["p", "p"], completions=[GOOD, "no close"]) == [1.0, 0.0]
    constraints = [[{"id": "keywords:existence", "keywords": ["answer"]}], None]
    got = rewards.instruction_reward(
        prompts=["p", "p"], completions=[GOOD, GOOD], constraints=constraints
    )
    assert got == [1.0, None]


def test_soft_overlong_reward_counts_token_ids() -> None:
    f = rewards.make_soft_overlong_reward(max_completion_length=10, cache_length=4)
    assert f(
        prompts=["p"] * 3, completions=["a"] * 3, completion_ids=[[0] * 6, [0] * 8, [0] * 11]
    ) == [
        0.0,
        -0.5,
        -1.0,
    ]


async def test_async_code_reward_against_the_real_server(server: BackgroundServer) -> None:
    f = rewards.make_code_reward(server.url)
    tests = [{"assert": "assert add(1, 2) == 3"}, {"assert": "assert candidate(-1, 1) == 0"}]
    scores = await f(
        prompts=["p"] * 5,
        completions=[CODE_OK, CODE_BAD, "<think>x</think>no code here", CODE_OK, CODE_OK],
        tests=[tests, tests, tests, None, json.dumps(tests)],
        entry_point=["add"] * 5,
    )
    assert scores == [1.0, 0.0, 0.0, None, 1.0]


def test_code_reward_needs_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(rewards.SANDBOX_URL_ENV, raising=False)
    with pytest.raises(ValueError, match="QWQ_SANDBOX_URL"):
        rewards.make_code_reward()


def test_verl_compute_score(server: BackgroundServer) -> None:
    assert rewards.compute_score("openai/gsm8k", GOOD, "4") == 1.0
    assert rewards.compute_score("lighteval/MATH", BAD, "4", None) == 0.0
    stdin_tests = json.dumps({"inputs": ["1 2\n", "5 5\n"], "outputs": ["3\n", "10\n"]})
    program = "</think>```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    extra = {"sandbox_url": server.url}
    assert rewards.compute_score("codecontests", program, stdin_tests, extra) == 1.0
    constraints = [{"id": "change_case:english_lowercase"}]
    assert rewards.compute_score("ifeval", "</think>all lower case", constraints) == 1.0
    with pytest.raises(NotImplementedError):
        rewards.compute_score("unknown-source", GOOD, "4")
