"""How the model samples, and how long a reply may get: defined once, used everywhere.

`Sampling` is the config file's `[sampling]` table, what every engine is given, the per-chat settings
dialog's fields and what is saved with a chat. `Limits` holds the two per-reply limits (the config
file's top-level `max_tokens` and `reasoning_budget`). The defaults are QwQ-32B's model card
(docs/configuration.md): temperature 0.6, top_p 0.95, top_k 40, min_p 0, no repetition penalty.
Each field's `title` is the label the settings dialog shows.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def replace(self, **changes: Any) -> Any:
        """A validated copy with `changes` applied (model_copy would skip validation)."""
        return type(self).model_validate({**self.model_dump(), **changes})


class Sampling(_Frozen):
    """The sampler's settings. Never greedy by default: QwQ repeats itself when greedy."""

    temperature: float = Field(0.6, gt=0.0, le=2.0, title="Temperature")
    top_p: float = Field(0.95, gt=0.0, le=1.0, title="Top p")
    top_k: int = Field(40, ge=0, title="Top k")
    min_p: float = Field(0.0, ge=0.0, le=1.0, title="Min p")
    repeat_penalty: float = Field(1.0, gt=0.0, title="Repeat penalty")
    # Raise (0..2) against endless loops, as the model card suggests.
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, title="Presence penalty")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, title="Frequency penalty")
    seed: int | None = Field(None, title="Seed (empty: random)")


class Limits(_Frozen):
    """How long one assistant reply (all its tool rounds) may get."""

    max_tokens: int = Field(32768, ge=1, title="Max tokens")  # reasoning + answer
    reasoning_budget: int = Field(0, ge=0, title="Reasoning budget (0: none)")


def field_titles(model: type[BaseModel]) -> dict[str, str]:
    """Field name -> label, in declaration order (what the settings dialog shows)."""
    return {name: info.title or name for name, info in model.model_fields.items()}
