"""QwQ's tokenizer rebuilt from qwen.tiktoken, and the tiny QwQ-shaped checkpoint that carries it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from qwq_chat.app.assets import chat_template
from qwq_chat.convert import qwen_tokenizer as qt


@pytest.fixture(scope="module")
def hf_tok(tiny_checkpoint: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


def test_merges_recovered_exactly() -> None:
    merges = qt.recover_merges()
    assert len(merges) == qt.NUM_MERGES == 151387
    ranks = qt.load_ranks()
    rank_of = {tok: r for r, tok in enumerate(ranks)}
    # Every merge produces a vocabulary token, each multi-byte token exactly once, in rank order.
    produced = [rank_of[a + b] for a, b in merges]
    assert produced == sorted(produced)
    assert len(set(produced)) == len(produced)
    # Both halves of a merge are older (lower-rank) tokens than the result.
    assert all(
        rank_of[a] < r and rank_of[b] < r for (a, b), r in zip(merges, produced, strict=True)
    )
    # The first merges of Qwen's vocabulary: "  " (two spaces) and "  " + "  ".
    assert merges[0] == (b" ", b" ")
    assert merges[1] == (b"  ", b"  ")


def test_files_written(tiny_checkpoint: Path) -> None:
    for name in qt.TOKENIZER_FILES:
        assert (tiny_checkpoint / name).is_file(), name
    merges_txt = (tiny_checkpoint / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert merges_txt[0] == "#version: 0.2"
    assert len(merges_txt) - 1 == 151387
    assert merges_txt[1] == "Ġ Ġ"
    vocab = json.loads((tiny_checkpoint / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 151643
    assert vocab["Hello"] == 9707 and vocab["Ġworld"] == 1879 and vocab["!"] == 0
    cfg = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert cfg["chat_template"] == chat_template()
    assert cfg["bos_token"] is None and cfg["add_bos_token"] is False
    assert cfg["eos_token"] == "<|im_end|>" and cfg["pad_token"] == "<|endoftext|>"
    tj = json.loads((tiny_checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    assert tj["normalizer"]["type"] == "NFC"
    split = tj["pre_tokenizer"]["pretokenizers"][0]
    assert split["type"] == "Split" and split["pattern"]["Regex"] == qt.SPLIT_PATTERN
    assert split["behavior"] == "Isolated"
    assert tj["decoder"]["type"] == "ByteLevel"
    assert len(tj["model"]["merges"]) == 151387


def test_added_tokens_and_special_flags(hf_tok) -> None:
    added = hf_tok.added_tokens_decoder
    assert sorted(added) == list(range(151643, 151669))
    assert [added[i].content for i in range(151643, 151669)] == [c for c, _ in qt.ADDED_TOKENS]
    not_special = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"}
    not_special |= {"<think>", "</think>"}
    for i in range(151643, 151669):
        tok = added[i]
        assert tok.special == (tok.content not in not_special), tok.content
        assert tok.special == tok.content.startswith("<|")
    assert hf_tok.convert_tokens_to_ids("<think>") == 151667
    assert hf_tok.convert_tokens_to_ids("</think>") == 151668
    assert hf_tok.convert_tokens_to_ids("<tool_call>") == 151657
    assert hf_tok.convert_tokens_to_ids("<tool_response>") == 151665
    assert hf_tok.eos_token_id == 151645 and hf_tok.pad_token_id == 151643
    assert hf_tok.bos_token is None


def test_encodes_like_qwq(hf_tok) -> None:
    assert hf_tok("Hello world!").input_ids == [9707, 1879, 0]
    # No BOS is prepended, and <think> is one token.
    assert hf_tok("<think>\nx</think>").input_ids[0] == 151667
    assert 151668 in hf_tok("<think>\nx</think>").input_ids
    assert hf_tok("<|im_start|>user\n").input_ids == [151644, 872, 198]
    # Chinese and code round-trip through encode/decode unchanged.
    for text in [
        "你好，世界！我是通义千问。",
        "def f(x):\n    return x ** 2\n",
        "emoji 🤖🚀 ok",
        "a  \n\n\t b",
    ]:
        ids = hf_tok(text).input_ids
        assert hf_tok.decode(ids) == text
        assert all(i < 151643 for i in ids)
    # Digits are split one by one (Qwen's \p{N} rule) and the single-digit tokens are "0".."9".
    assert hf_tok("12345").input_ids == [16, 17, 18, 19, 20]
    # Special (control) tokens are dropped when decoding with skip_special_tokens, tags stay.
    ids = hf_tok("<|im_start|>assistant\n<think>\nhmm</think>ok<|im_end|>").input_ids
    assert hf_tok.decode(ids, skip_special_tokens=True) == "assistant\n<think>\nhmm</think>ok"


def test_nfc_normalisation(hf_tok) -> None:
    # "é" as e + combining acute is normalised to the single code point first.
    assert hf_tok("caf\u0065\u0301").input_ids == hf_tok("caf\u00e9").input_ids


def test_chat_template_generation_prompt(hf_tok) -> None:
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    text = hf_tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n<think>\n")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?")


def test_tiny_checkpoint_layout(tiny_checkpoint: Path) -> None:
    shards = sorted(tiny_checkpoint.glob("model-*-of-*.safetensors"))
    assert len(shards) >= 2
    index = json.loads((tiny_checkpoint / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {s.name for s in shards}
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    assert cfg["architectures"] == ["Qwen2ForCausalLM"]
    assert cfg["vocab_size"] == 152064 and cfg["tie_word_embeddings"] is False
    assert cfg["rms_norm_eps"] == 1e-5
    theta = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
    assert theta == 1e6
    assert cfg["num_key_value_heads"] < cfg["num_attention_heads"]
    gen = json.loads((tiny_checkpoint / "generation_config.json").read_text())
    assert (gen["temperature"], gen["top_p"], gen["top_k"]) == (0.6, 0.95, 40)
    names = set(index["weight_map"])
    assert "lm_head.weight" in names
    for proj in ("q_proj", "k_proj", "v_proj"):
        assert f"model.layers.0.self_attn.{proj}.bias" in names
    assert "model.layers.0.self_attn.o_proj.bias" not in names


def test_tiny_model_runs_in_transformers(tiny_checkpoint: Path, hf_tok) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_checkpoint)
    assert next(model.parameters()).dtype == torch.bfloat16
    ids = hf_tok("Hello world!", return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits.float()
    assert logits.shape == (1, 3, 152064)
    # Logits spread over several units (not all ~0), so top-1 comparisons mean something.
    assert logits.std(-1).min() > 1.0
