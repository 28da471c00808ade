"""The transformers engine on the tiny QwQ-shaped checkpoint (real model, real streamer)."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import pytest
from qwq_chat.app.ask import run_ask
from qwq_chat.app.config import load_settings
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import Done, ReasoningDelta, Stats
from qwq_chat.app.sampling import Limits, Sampling
from qwq_chat.app.session import Session
from qwq_chat.app.store import Store


@pytest.fixture(scope="module")
def engine(tiny_checkpoint: Path):
    from qwq_chat.app.engines.transformers_engine import TransformersEngine

    return TransformersEngine(tiny_checkpoint)


def test_streams_reasoning_with_stats(engine) -> None:
    session = Session(
        Store(":memory:"), engine, sampling=Sampling(seed=0), limits=Limits(max_tokens=12)
    )
    events = list(session.send("How many r's are in strawberry?"))
    assert engine.template.origin == "gguf"  # the checkpoint carries QwQ's upstream template
    assert isinstance(events[0], ReasoningDelta)  # the prompt opened <think>
    [stats] = [e for e in events if isinstance(e, Stats)]
    assert stats.completion_tokens == 12 and stats.prompt_tokens > 10
    assert events[-1] == Done("length", reasoning_unfinished=True)
    assert session.messages[-1].reasoning_unfinished


def test_cancel_stops_generate(engine) -> None:
    session = Session(
        Store(":memory:"), engine, sampling=Sampling(seed=1), limits=Limits(max_tokens=5000)
    )
    seen: list = []
    started = threading.Event()

    def consume() -> None:
        for event in session.send("go"):
            seen.append(event)
            started.set()

    worker = threading.Thread(target=consume)
    worker.start()
    assert started.wait(60)
    session.cancel()
    worker.join(60)
    assert not worker.is_alive() and seen[-1].finish_reason == "cancelled"
    assert session.messages[-1].stats["completion_tokens"] < 5000


def test_ask_with_the_transformers_backend(tiny_checkpoint: Path) -> None:
    settings = load_settings(backend="transformers", model=str(tiny_checkpoint), max_tokens=6)
    out = io.StringIO()
    assert run_ask(settings, "hi", as_json=True, out=out, err=io.StringIO()) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[-1] == {"type": "done", "finish_reason": "length", "error": None,
                         "reasoning_unfinished": True}  # fmt: skip


def test_not_a_checkpoint(tmp_path: Path) -> None:
    from qwq_chat.app.engines.transformers_engine import TransformersEngine

    with pytest.raises(UserError, match="config.json"):
        TransformersEngine(tmp_path)
