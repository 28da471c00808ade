"""Benchmark: HF -> GGUF conversion of a synthetic Qwen2 checkpoint of more than 2 GB.

Prints two ratios, both measured in this process on the same disk:
- throughput: conversion speed / speed of copying the same shard bytes (copy = 1.0). Target >= 0.5.
- peak RSS of the converting child process / size of the largest tensor. Target: peak RSS <=
  largest tensor + 512 MiB (the converter streams, so it should stay far below that).

The checkpoint is random bf16 data in Qwen2's tensor layout (hidden 2048, 6 layers, vocab 152064:
2.2 GB, largest tensor 623 MB) plus QwQ's real tokenizer, written shard by shard without holding
it in memory. Run: python -m pytest tests/benchmarks/test_bench_convert.py -s
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

HIDDEN, INTER, LAYERS, VOCAB, HEADS, KV_HEADS = 2048, 11008, 6, 152064, 16, 2
HEAD_DIM = HIDDEN // HEADS


def _tensor_shapes() -> dict[str, tuple[int, ...]]:
    kv = KV_HEADS * HEAD_DIM
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (VOCAB, HIDDEN)}
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "input_layernorm.weight": (HIDDEN,),
                p + "post_attention_layernorm.weight": (HIDDEN,),
                p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN),
                p + "self_attn.q_proj.bias": (HIDDEN,),
                p + "self_attn.k_proj.weight": (kv, HIDDEN),
                p + "self_attn.k_proj.bias": (kv,),
                p + "self_attn.v_proj.weight": (kv, HIDDEN),
                p + "self_attn.v_proj.bias": (kv,),
                p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                p + "mlp.gate_proj.weight": (INTER, HIDDEN),
                p + "mlp.up_proj.weight": (INTER, HIDDEN),
                p + "mlp.down_proj.weight": (HIDDEN, INTER),
            }
        )
    shapes["model.norm.weight"] = (HIDDEN,)
    shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    return shapes


def _write_shard(path: Path, names: list[str], shapes: dict, noise: np.ndarray) -> None:
    """Write one bf16 safetensors shard, streaming a repeating random block (bounded memory)."""
    header, offset = {}, 0
    for name in names:
        n = int(np.prod(shapes[name])) * 2
        header[name] = {
            "dtype": "BF16",
            "shape": list(shapes[name]),
            "data_offsets": [offset, offset + n],
        }
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    raw = noise.tobytes()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob)
        left = offset
        while left:
            k = min(left, len(raw))
            f.write(raw[:k])
            left -= k


def build_synthetic_checkpoint(out: Path) -> dict[str, tuple[int, ...]]:
    from qwq_chat.convert.qwen_tokenizer import write_tokenizer_files

    out.mkdir(parents=True, exist_ok=True)
    shapes = _tensor_shapes()
    rng = np.random.default_rng(0)
    # Random bf16 bit patterns of small normal values (top half of float32 bits).
    noise = (rng.standard_normal(16 * 2**20, dtype=np.float32) * 0.02).view(np.uint32) >> 16
    noise = noise.astype(np.uint16)
    names = list(shapes)
    shards: list[list[str]] = [[]]
    size = 0
    for name in names:
        n = int(np.prod(shapes[name])) * 2
        if size + n > 700 * 2**20 and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += n
    weight_map = {}
    for i, group in enumerate(shards):
        fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        _write_shard(out / fname, group, shapes, noise)
        weight_map.update({name: fname for name in group})
    total = sum(int(np.prod(s)) * 2 for s in shapes.values())
    (out / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map})
    )
    config = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_size": HIDDEN,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "vocab_size": VOCAB,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    (out / "config.json").write_text(json.dumps(config))
    write_tokenizer_files(out)
    return shapes


def _copy_shards(src: Path, dst: Path) -> int:
    dst.mkdir()
    total = 0
    for shard in sorted(src.glob("*.safetensors")):
        shutil.copyfile(shard, dst / shard.name)
        with open(dst / shard.name, "rb+") as f:
            os.fsync(f.fileno())
        total += shard.stat().st_size
    return total


# The child reports its own high-water mark (VmHWM, per address space, reset by exec). The
# parent's ru_maxrss for a child would include the pages of the forked pytest image.
_REPORT_PEAK = (
    "print([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])"
)


def _run_child(code: str) -> tuple[float, int]:
    """Run Python code in a fresh process; return (seconds, its peak RSS in bytes)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + "\n" + _REPORT_PEAK], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    return seconds, int(proc.stdout.split()[-1]) * 1024


def _convert_in_child(src: Path, out: Path, outtype: str) -> tuple[float, int]:
    """Run the converter in a child process (fsync included); return (seconds, peak RSS)."""
    return _run_child(
        "import os\nfrom qwq_chat.convert.hf_to_gguf import convert_checkpoint\n"
        f"p = convert_checkpoint({str(src)!r}, {str(out)!r}, outtype={outtype!r})\n"
        "f = open(p, 'rb+'); os.fsync(f.fileno()); f.close()"
    )


def _child_baseline_rss() -> int:
    """Peak RSS of a child that only imports the converter (interpreter + numpy + gguf)."""
    return _run_child("import qwq_chat.convert.hf_to_gguf, gguf, numpy")[1]


@pytest.mark.benchmark
def test_bench_convert_throughput_and_memory(tmp_path: Path) -> None:
    src = tmp_path / "synthetic-qwen2"
    shapes = build_synthetic_checkpoint(src)
    total = sum(p.stat().st_size for p in src.glob("*.safetensors"))
    largest = max(int(np.prod(s)) * 2 for s in shapes.values())
    assert total >= 2 * 10**9

    # Alternate copy and conversion twice and keep each one's best run: the shards start in the
    # page cache for both, and a burst of other activity on the machine does not decide the ratio.
    copy_runs, conv_runs, peaks = [], [], []
    for _ in range(2):
        t0 = time.perf_counter()
        copied = _copy_shards(src, tmp_path / "copy")
        copy_runs.append(time.perf_counter() - t0)
        shutil.rmtree(tmp_path / "copy")
        seconds, peak = _convert_in_child(src, tmp_path / "out-bf16.gguf", "bf16")
        conv_runs.append(seconds)
        peaks.append(peak)
        gguf_size = (tmp_path / "out-bf16.gguf").stat().st_size
        (tmp_path / "out-bf16.gguf").unlink()
    copy_s, conv_s, peak = min(copy_runs), min(conv_runs), max(peaks)
    f16_s, f16_peak = _convert_in_child(src, tmp_path / "out-f16.gguf", "f16")
    (tmp_path / "out-f16.gguf").unlink()
    base_rss = _child_baseline_rss()

    ratio = copy_s / conv_s  # conversion speed relative to copy speed (same bytes)
    f16_ratio = copy_s / f16_s
    mib = 2**20
    print()
    print(
        f"synthetic checkpoint: {total / 1e9:.2f} GB in {len(list(src.glob('*.safetensors')))} shards, largest tensor {largest / mib:.0f} MiB"
    )
    print(
        f"copy (same bytes, same disk, fsync): {copy_s:.2f} s = {copied / copy_s / mib:.0f} MiB/s (runs: {', '.join(f'{x:.2f}' for x in copy_runs)})"
    )
    print(
        f"convert bf16 -> bf16 GGUF ({gguf_size / 1e9:.2f} GB, fsync, child process): {conv_s:.2f} s (runs: {', '.join(f'{x:.2f}' for x in conv_runs)})"
    )
    print(f"  throughput ratio vs copy: {ratio:.2f} (target >= 0.5)")
    print(
        f"  peak RSS of the converting process: {peak / mib:.0f} MiB = {peak / largest:.2f} x largest tensor "
        f"(target <= largest + 512 MiB = {(largest + 512 * mib) / mib:.0f} MiB); "
        f"interpreter+imports alone: {base_rss / mib:.0f} MiB"
    )
    print(
        f"convert bf16 -> f16 (numeric conversion): {f16_s:.2f} s, ratio vs copy {f16_ratio:.2f}, peak RSS {f16_peak / mib:.0f} MiB"
    )
    assert peak <= largest + 512 * mib
    assert ratio >= 0.5
