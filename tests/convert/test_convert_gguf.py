"""HF -> GGUF conversion of the tiny QwQ-shaped checkpoint: structure, metadata, exact round trip."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from qwq_chat.app.assets import chat_template
from qwq_chat.convert.hf_to_gguf import convert_checkpoint


def _fields(reader) -> dict:
    return {name: field for name, field in reader.fields.items()}


@pytest.fixture(scope="module")
def read_gguf(tiny_gguf_factory: Callable[[str], Path]) -> Callable[[str], object]:
    """gguf's reader parses all 300k vocabulary strings up front (seconds): one per file type."""
    import gguf

    readers: dict[str, object] = {}

    def read(outtype: str):
        if outtype not in readers:
            readers[outtype] = gguf.GGUFReader(tiny_gguf_factory(outtype))
        return readers[outtype]

    return read


def _llama_metadata(path: Path) -> dict[str, str]:
    """GGUF key/values as llama.cpp itself reads them (vocab-only load: fast)."""
    from qwq_chat.convert.llama_runtime import open_llama

    return dict(open_llama(path, vocab_only=True).metadata)


def _source_tensors(ckpt: Path) -> dict:
    """Every source tensor as a torch tensor (safetensors' torch API reads bf16)."""
    from safetensors.torch import load_file

    out = {}
    for shard in sorted(ckpt.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


HF_TO_GGUF = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
LAYER_MAP = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}


def _gguf_name(hf_name: str) -> str:
    if hf_name in HF_TO_GGUF:
        return HF_TO_GGUF[hf_name]
    _, _, layer, rest = hf_name.split(".", 3)
    return f"blk.{layer}.{LAYER_MAP[rest]}"


def test_structure_and_metadata(tiny_checkpoint: Path, read_gguf) -> None:
    import gguf

    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    layers = cfg["num_hidden_layers"]
    reader = read_gguf("bf16")
    names = [t.name for t in reader.tensors]
    assert len(names) == 12 * layers + 3
    for i in range(layers):
        for part in ("attn_q", "attn_k", "attn_v"):
            assert f"blk.{i}.{part}.bias" in names
        assert f"blk.{i}.attn_output.bias" not in names
    assert "output.weight" in names  # untied lm_head kept
    for t in reader.tensors:
        if len(t.shape) == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32, t.name
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.BF16, t.name
    f = _fields(reader)

    def val(key: str):
        return f[key].contents()

    assert val("general.architecture") == "qwen2"
    assert val("general.file_type") == gguf.LlamaFileType.MOSTLY_BF16
    assert val("qwen2.block_count") == layers
    assert val("qwen2.embedding_length") == cfg["hidden_size"]
    assert val("qwen2.feed_forward_length") == cfg["intermediate_size"]
    assert val("qwen2.attention.head_count") == cfg["num_attention_heads"]
    assert val("qwen2.attention.head_count_kv") == cfg["num_key_value_heads"]
    assert val("qwen2.context_length") == 40960
    assert val("qwen2.rope.freq_base") == 1e6
    assert val("qwen2.attention.layer_norm_rms_epsilon") == pytest.approx(1e-5)
    assert "qwen2.rope.scaling.type" not in f
    assert val("tokenizer.ggml.model") == "gpt2"
    assert val("tokenizer.ggml.pre") == "qwen2"
    tokens = val("tokenizer.ggml.tokens")
    types = val("tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == 152064
    assert tokens[9707] == "Hello" and tokens[1879] == "Ġworld"
    assert tokens[151667] == "<think>" and tokens[151645] == "<|im_end|>"
    assert types[9707] == gguf.TokenType.NORMAL
    assert types[151644] == gguf.TokenType.CONTROL  # <|im_start|>
    for tag in (151657, 151658, 151665, 151666, 151667, 151668):  # tool_call.., think..
        assert types[tag] == gguf.TokenType.USER_DEFINED, tokens[tag]
    assert types[151700] == gguf.TokenType.UNUSED
    merges = val("tokenizer.ggml.merges")
    assert len(merges) == 151387 and merges[0] == "Ġ Ġ"
    assert val("tokenizer.ggml.eos_token_id") == 151645
    assert val("tokenizer.ggml.padding_token_id") == 151643
    assert val("tokenizer.ggml.bos_token_id") == 151643
    assert val("tokenizer.ggml.add_bos_token") is False
    template = f["tokenizer.chat_template"]
    raw = bytes(template.parts[template.data[0]])
    assert raw == chat_template().encode("utf-8")  # byte-identical
    assert val("general.sampling.top_k") == 40
    assert val("general.sampling.temp") == pytest.approx(0.6)


@pytest.mark.parametrize("outtype", ["bf16", "f32", "f16"])
def test_round_trip_exact(tiny_checkpoint: Path, read_gguf, outtype: str) -> None:
    import gguf
    import torch

    reader = read_gguf(outtype)
    by_name = {t.name: t for t in reader.tensors}
    source = _source_tensors(tiny_checkpoint)
    assert len(source) == len(by_name)
    for hf_name, tensor in source.items():
        t = by_name[_gguf_name(hf_name)]
        data = np.asarray(t.data)
        if t.tensor_type == gguf.GGMLQuantizationType.BF16:
            expected = tensor.view(torch.int16).numpy().view(np.uint16)
            assert data.view(np.uint16).reshape(expected.shape).tobytes() == expected.tobytes()
        elif t.tensor_type == gguf.GGMLQuantizationType.F16:
            # bf16 -> f16 is a rounding; the file must hold exactly numpy's rounding of it.
            expected = tensor.float().numpy().astype(np.float16)
            assert data.view(np.float16).reshape(expected.shape).tobytes() == expected.tobytes()
        else:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            expected = tensor.float().numpy()
            assert np.array_equal(data.reshape(expected.shape), expected), hf_name
    if outtype == "f16":
        assert {t.tensor_type for t in reader.tensors} == {
            gguf.GGMLQuantizationType.F16,
            gguf.GGMLQuantizationType.F32,
        }


def test_round_trip_q8_0_within_bound(tiny_checkpoint: Path, read_gguf) -> None:
    import gguf

    reader = read_gguf("q8_0")
    by_name = {t.name: t for t in reader.tensors}
    source = _source_tensors(tiny_checkpoint)
    for hf_name, tensor in source.items():
        t = by_name[_gguf_name(hf_name)]
        x = tensor.float().numpy()
        if x.ndim == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            assert np.array_equal(np.asarray(t.data), x)
            continue
        assert t.tensor_type == gguf.GGMLQuantizationType.Q8_0
        y = gguf.quants.dequantize(np.asarray(t.data), gguf.GGMLQuantizationType.Q8_0)
        y = y.reshape(x.shape)
        blocks = x.reshape(-1, 32)
        step = np.abs(blocks).max(axis=1, keepdims=True) / 127.0
        # Half a step of rounding, plus the f16 rounding of the block scale (127 * 2^-11 steps).
        bound = step * (0.5 + 127 * 2.0**-11) + 1e-12
        err = np.abs(y.reshape(-1, 32) - blocks)
        assert (err <= bound).all(), hf_name
        assert err.max() > 0  # really quantized


def test_yarn_rope_scaling_keys(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "yarn"
    ckpt.mkdir()
    for item in tiny_checkpoint.iterdir():
        (ckpt / item.name).symlink_to(item)
    cfg = json.loads((tiny_checkpoint / "config.json").read_text())
    # The legacy form QwQ's model card tells users to add to config.json.
    cfg.pop("rope_parameters", None)
    cfg["rope_theta"] = 1000000.0
    cfg["rope_scaling"] = {
        "factor": 4.0,
        "original_max_position_embeddings": 32768,
        "type": "yarn",
    }
    (ckpt / "config.json").unlink()
    (ckpt / "config.json").write_text(json.dumps(cfg))
    out = convert_checkpoint(ckpt, tmp_path / "yarn.gguf", outtype="bf16")
    meta = _llama_metadata(out)
    assert meta["qwen2.rope.scaling.type"] == "yarn"
    assert float(meta["qwen2.rope.scaling.factor"]) == 4.0
    assert int(meta["qwen2.rope.scaling.original_context_length"]) == 32768
    assert float(meta["qwen2.rope.freq_base"]) == 1e6


def test_auto_outtype_keeps_bf16(tiny_checkpoint: Path, tmp_path: Path) -> None:
    import gguf

    out = convert_checkpoint(tiny_checkpoint, tmp_path / "auto.gguf")
    assert int(_llama_metadata(out)["general.file_type"]) == gguf.LlamaFileType.MOSTLY_BF16
    assert [p.name for p in tmp_path.iterdir()] == ["auto.gguf"]  # no temp file left


def test_loads_in_llama_cpp_and_generates(tiny_gguf: Path) -> None:
    from qwq_chat.convert.llama_runtime import open_llama

    llm = open_llama(tiny_gguf, n_ctx=256, n_threads=2, seed=1)
    assert llm.n_vocab() == 152064
    prompt = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n"
    ids = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    assert ids[0] == 151644 and ids[-2:] == [151667, 198]
    out = llm.create_completion(prompt, max_tokens=8, temperature=0.6, top_p=0.95, top_k=40)
    assert out["usage"]["completion_tokens"] >= 1
    assert isinstance(out["choices"][0]["text"], str)


def test_q8_0_loads_and_generates(tiny_gguf_factory: Callable[[str], Path]) -> None:
    from qwq_chat.convert.llama_runtime import open_llama

    llm = open_llama(tiny_gguf_factory("q8_0"), n_ctx=128, n_threads=2, seed=1)
    out = llm.create_completion("Hello world!", max_tokens=4, temperature=0.6)
    assert out["usage"]["completion_tokens"] >= 1


def test_chat_template_from_jinja_file(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """Newer checkpoints keep the template in chat_template.jinja instead of tokenizer_config."""
    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    for item in tiny_checkpoint.iterdir():
        if item.name != "tokenizer_config.json":
            (ckpt / item.name).symlink_to(item)
    cfg = json.loads((tiny_checkpoint / "tokenizer_config.json").read_text())
    del cfg["chat_template"]
    (ckpt / "tokenizer_config.json").write_text(json.dumps(cfg))
    template = chat_template() + "\n"  # the shipped template plus a final newline
    (ckpt / "chat_template.jinja").write_text(template, encoding="utf-8")
    out = convert_checkpoint(ckpt, tmp_path / "t.gguf", outtype="bf16")
    assert _llama_metadata(out)["tokenizer.chat_template"] == template


def test_missing_shard_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    from qwq_chat.convert.errors import CheckpointError

    ckpt = tmp_path / "ck"
    ckpt.mkdir()
    shards = sorted(tiny_checkpoint.glob("model-*.safetensors"))
    for item in tiny_checkpoint.iterdir():
        if item != shards[0]:
            (ckpt / item.name).symlink_to(item)
    with pytest.raises(CheckpointError, match=shards[0].name):
        convert_checkpoint(ckpt, tmp_path / "m.gguf")
    assert not (tmp_path / "m.gguf").exists()
