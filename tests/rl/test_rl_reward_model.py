"""Stage 2's reward model reward: a real (tiny, random) Qwen2ForSequenceClassification that scores
the user prompt and the answer, with the reasoning stripped first."""

from __future__ import annotations

from pathlib import Path

from qwq_chat.rl_finetune.reward_model import answer_text, make_reward_model_reward, user_text
from tiny_reward_model import build_tiny_reward_model


def test_reasoning_is_stripped_and_scores_depend_on_the_answer(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    rm = build_tiny_reward_model(tmp_path / "rm", tiny_checkpoint)
    reward = make_reward_model_reward(str(rm), weight=2.0)
    prompt = "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n<think>\n"
    assert user_text(prompt) == "Name a colour."
    assert answer_text("a long chain of thought\n</think>\n\nBlue.") == "Blue."
    scores = reward(
        [prompt] * 3,
        [
            "I think... many words of reasoning\n</think>\n\nBlue.",
            "Blue.",
            "</think>\n\nThe sky at noon is a deep and pleasant blue, I would say.",
        ],
    )
    assert all(isinstance(s, float) for s in scores)
    assert abs(scores[0] - scores[1]) < 1e-5  # same answer, reasoning ignored
    assert abs(scores[0] - scores[2]) > 1e-6  # a different answer scores differently
