"""Stage 2's general reward: a sequence-classification reward model scoring (prompt, answer).

The reasoning is stripped before scoring (the reward model judges what the user sees, and long
thoughts would only dilute it). The prompt is the user's text, recovered from the rendered prompt,
and the pair goes through the reward model's own chat template when it has one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

_USER_RE = re.compile(r"<\|im_start\|>user\n(.*?)<\|im_end\|>", re.DOTALL)


def user_text(prompt: Any) -> str:
    """The last user message of a rendered ChatML prompt or a message list."""
    if isinstance(prompt, list):
        users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
        return str(users[-1]) if users else ""
    found = _USER_RE.findall(str(prompt))
    return found[-1] if found else str(prompt)


def answer_text(completion: Any) -> str:
    """The text after `</think>` (all of it when the reasoning was never closed: scored as is)."""
    from qwq_chat.rl_finetune.rewards import completion_text

    text = completion_text(completion)
    return text.split("</think>")[-1].strip()


def make_reward_model_reward(
    name_or_path: str, *, weight: float = 1.0, batch_size: int = 8, device: str | None = None
) -> Callable[..., list[float | None]]:
    """A TRL reward function backed by `AutoModelForSequenceClassification` (1 label: the score)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = AutoTokenizer.from_pretrained(name_or_path)
    model = AutoModelForSequenceClassification.from_pretrained(name_or_path).to(device).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id

    def render(prompt: Any, completion: Any) -> str:
        messages = [
            {"role": "user", "content": user_text(prompt)},
            {"role": "assistant", "content": answer_text(completion)},
        ]
        if tok.chat_template:
            return tok.apply_chat_template(messages, tokenize=False)
        return f"{messages[0]['content']}\n\n{messages[1]['content']}"

    @torch.no_grad()
    def reward_model_reward(
        prompts: Sequence[Any], completions: Sequence[Any], **columns: Any
    ) -> list[float | None]:
        texts = [render(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float | None] = []
        for i in range(0, len(texts), batch_size):
            enc = tok(texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True)
            logits = model(**enc.to(device)).logits
            scores.extend(weight * float(v) for v in logits[:, 0].float().cpu())
        return scores

    return reward_model_reward
