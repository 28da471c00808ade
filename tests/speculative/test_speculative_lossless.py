"""Speculative decoding on the real llama.cpp: greedy output identical to plain decoding, token for
token, for prompt lookup and for draft models (same tokenizer, different table padding), across
turns (both KV caches follow the text); an incompatible draft refused with a clear message."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import speculative_drafts
from qwq_chat.app.engines.llama_engine import LlamaEngine
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import Stats
from qwq_chat.app.sampling import Sampling

GREEDY = Sampling(top_k=1, seed=0)
N_TOKENS = 32
# Prompts that repeat themselves (code to edit, a restated question) and ones that do not.
PROMPTS = [
    "def area(w, h):\n    return w * h\n\ndef area(w, h):\n    return w * h\n\nRename area to size.",
    "How many r's are in strawberry? How many r's are in strawberry? Count them one by one.",
    "Write a haiku about the sea.",
]


def generate(
    engine: LlamaEngine, messages: list[dict], sampling: Sampling = GREEDY, n: int = N_TOKENS
) -> tuple[list[str], Stats]:
    pieces: list[str] = []
    stats = None
    for chunk in engine.stream(messages, sampling, n):
        if chunk.tokens:
            pieces.append(chunk.text)
        if chunk.stats is not None:
            stats = chunk.stats
    assert stats is not None
    return pieces, stats


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def assert_lossless(plain: LlamaEngine, speculative: LlamaEngine) -> list[Stats]:
    """Every prompt: same pieces with and without speculation; the speculative runs' stats."""
    all_stats = []
    for prompt in PROMPTS:
        expected, _ = generate(plain, user(prompt))
        got, stats = generate(speculative, user(prompt))
        assert got == expected, f"speculation changed the output for {prompt!r}"
        assert len(got) == N_TOKENS or stats.completion_tokens == len(got)
        all_stats.append(stats)
    return all_stats


@pytest.fixture(scope="session")
def q8_draft_gguf(tiny_gguf_factory: Callable[[str], Path]) -> Path:
    """The target quantized: the same weights, so it agrees on nearly every token (accept path)."""
    return tiny_gguf_factory("q8_0")


@pytest.fixture(scope="session")
def padded_draft_gguf() -> Path:
    """Another seed with a 151,936-row table: same tokenizer, mostly rejected (reject path)."""
    return speculative_drafts.padded_draft_gguf()


@pytest.fixture(scope="module")
def tiny_plain(tiny_gguf: Path) -> Iterator[LlamaEngine]:
    """The target without speculation (flash attention on, as speculation turns it on)."""
    engine = LlamaEngine(tiny_gguf, n_ctx=1024, flash_attn=True)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def tiny_ngram(tiny_gguf: Path):
    engine = LlamaEngine(tiny_gguf, n_ctx=1024, draft="ngram")
    yield engine
    engine.close()


def test_prompt_lookup_is_lossless_on_the_tiny_qwq_model(
    tiny_plain: LlamaEngine, tiny_ngram: LlamaEngine
) -> None:
    """The random model's text never repeats a token, so this mostly checks the plumbing (the
    prompt evaluated as without speculation); guesses are exercised by the next test and SmolLM2."""
    stats = assert_lossless(tiny_plain, tiny_ngram)
    assert tiny_ngram.speculator is not None and tiny_ngram.speculator.kind == "ngram"
    assert "draft: prompt lookup" in tiny_ngram.description
    assert all(s.tokens_per_pass is not None and s.tokens_per_pass >= 1.0 for s in stats)


class Oracle:
    """Guesses the plain run's tokens, every other guess with a wrong last token (keep and reject
    paths, and KV truncation after each rejection)."""

    kind = "oracle"

    def __init__(self, truth: list[int]) -> None:
        self.truth = truth
        self.calls = 0

    def propose(self, context: list[int], n: int) -> list[int]:
        guess = list(self.truth[len(context) : len(context) + n])
        self.calls += 1
        if guess and self.calls % 2 == 0:
            guess[-1] = (guess[-1] + 1) % 1000
        return guess

    def close(self) -> None:
        pass


def test_right_and_wrong_guesses_keep_the_output(
    tiny_plain: LlamaEngine, tiny_ngram: LlamaEngine
) -> None:
    ngram = tiny_ngram.speculator.drafter  # type: ignore[union-attr]
    try:
        for prompt in PROMPTS:
            expected, _ = generate(tiny_plain, user(prompt))
            truth = tiny_plain.llm.input_ids[: tiny_plain.llm.n_tokens].tolist()
            tiny_ngram.speculator.drafter = Oracle(truth)  # type: ignore[union-attr]
            got, stats = generate(tiny_ngram, user(prompt))
            assert got == expected
            assert 0.3 < stats.draft_acceptance_rate < 1.0 and stats.tokens_per_pass > 1.5
    finally:
        tiny_ngram.speculator.drafter = ngram  # type: ignore[union-attr]


def test_prompt_lookup_is_lossless_on_smollm(smollm_gguf: Path) -> None:
    # One thread: two spin-waiting threads crawl on a busy 2-core CI machine.
    plain = LlamaEngine(smollm_gguf, n_ctx=1024, flash_attn=True, n_threads=1)
    speculative = LlamaEngine(smollm_gguf, n_ctx=1024, draft="ngram", n_threads=1)
    try:
        stats = assert_lossless(plain, speculative)
    finally:
        plain.close()
        speculative.close()
    assert sum(s.tokens_per_pass for s in stats) / len(stats) > 1.0  # some guesses were kept


@pytest.mark.parametrize("draft_fixture", ["q8_draft_gguf", "padded_draft_gguf"])
def test_draft_model_is_lossless(
    draft_fixture: str, request: pytest.FixtureRequest, tiny_gguf: Path, tiny_plain: LlamaEngine
) -> None:
    draft = request.getfixturevalue(draft_fixture)
    engine = LlamaEngine(tiny_gguf, n_ctx=1024, draft=draft, draft_max=4)
    try:
        stats = assert_lossless(tiny_plain, engine)
        assert engine.speculator is not None and engine.speculator.kind == "model"
        assert f"draft: {draft.name}" in engine.description
    finally:
        engine.close()
    rates = [s.draft_acceptance_rate for s in stats]
    assert all(r is not None for r in rates)
    if draft_fixture == "q8_draft_gguf":  # a quantized copy agrees with its original
        assert min(rates) > 0.6 and min(s.tokens_per_pass for s in stats) > 1.5
    else:  # another seed: mostly rejected, which must not change the output either
        assert max(rates) < 0.5


def test_kv_caches_follow_the_text_across_turns(
    tiny_gguf: Path, q8_draft_gguf: Path, tiny_plain: LlamaEngine
) -> None:
    engine = LlamaEngine(tiny_gguf, n_ctx=1024, draft=q8_draft_gguf, draft_max=4)
    try:
        messages = user(PROMPTS[0])
        for turn in range(3):
            expected, plain_stats = generate(tiny_plain, messages, n=24)
            got, stats = generate(engine, messages, n=24)
            assert got == expected, f"turn {turn} differs"
            if turn:  # the earlier turns' prompt was reused, not evaluated again
                assert stats.prompt_tokens_processed < stats.prompt_tokens
                assert stats.prompt_tokens_processed <= plain_stats.prompt_tokens_processed + 1
            messages = [
                *messages,
                {"role": "assistant", "content": "".join(got)},
                {"role": "user", "content": f"Again, step {turn}."},
            ]
        # the draft's cache holds the conversation too: its tokens are a prefix-sharing copy
        drafter = engine.speculator.drafter  # type: ignore[union-attr]
        assert len(drafter._cached) > stats.prompt_tokens // 2
    finally:
        engine.close()


def test_speculation_switches_itself_off_for_penalties(tiny_ngram: LlamaEngine) -> None:
    penalised = GREEDY.replace(presence_penalty=0.5)
    _, stats = generate(tiny_ngram, user(PROMPTS[1]), penalised, n=8)
    assert stats.draft_acceptance_rate is None and stats.tokens_per_pass is None
    _, stats = generate(tiny_ngram, user(PROMPTS[1]), GREEDY, n=8)
    assert stats.tokens_per_pass is not None


def test_sampling_with_prompt_lookup_is_reproducible(tiny_ngram: LlamaEngine) -> None:
    sampled = Sampling(seed=7)  # QwQ's card: temperature 0.6, top_p 0.95, top_k 40
    first, stats = generate(tiny_ngram, user(PROMPTS[0]), sampled, n=32)
    again, _ = generate(tiny_ngram, user(PROMPTS[0]), sampled, n=32)
    assert first == again and len(first) == stats.completion_tokens
    assert stats.tokens_per_pass is not None


def test_a_draft_with_another_tokenizer_is_refused(tiny_gguf: Path, smollm_gguf: Path) -> None:
    with pytest.raises(UserError) as err:
        LlamaEngine(tiny_gguf, n_ctx=512, draft=smollm_gguf)
    message = str(err.value)
    assert "SmolLM2-135M-Instruct.Q4_1.gguf cannot draft for model.gguf" in message
    assert "do not share a tokenizer" in message and "token 0 is" in message
    assert "Qwen2.5-0.5B-Instruct" in message  # what to use instead


def test_a_missing_draft_file_is_a_user_error(tiny_gguf: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="draft model file .* does not exist"):
        LlamaEngine(tiny_gguf, n_ctx=512, draft=tmp_path / "nope.gguf")
