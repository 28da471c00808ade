"""The CUDA paths, on a real NVIDIA GPU: llama.cpp offload, the layer plan, doctor, LoRA/QLoRA steps.

Every test here is marked `cuda` and skips with "no CUDA GPU" on machines without one (CI), so the
default `pytest` run only collects them. `packaging/gpu-check.sh` builds llama-cpp-python for CUDA on
a GPU machine and runs `pytest -m cuda` (see docs/packaging.md).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from qwq_chat.app.engines.gpu import COMPUTE_RESERVE_BYTES, GIB, plan_layers
from qwq_chat.app.system.gpu import Gpu, detect_gpu

# nvidia-smi answers in milliseconds, and where it is missing (CI) nothing else is imported.
GPU = detect_gpu()
HAS_NVIDIA = GPU is not None and GPU.kind == "cuda"

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not HAS_NVIDIA, reason="no CUDA GPU")]

GREEDY_TOKENS = 24
PROMPTS = [
    "Count from one to ten.",
    "Why is the sky blue?",
    "Write a haiku about rain.",
    "What is 17 times 23?",
    "Name three prime numbers.",
    "Translate 'good morning' to French.",
    "Summarise the plot of Hamlet.",
    "List the planets of the solar system.",
    "How do magnets work?",
    "Give me a word that rhymes with cat.",
    "What is the capital of Peru?",
    "Explain recursion in one sentence.",
]


def need_llama_cuda() -> None:
    """Skip unless the installed llama.cpp build can offload to the GPU."""
    from qwq_chat.app.system.llama_build import offload_supported

    if not offload_supported():
        pytest.skip("no CUDA GPU support in this llama-cpp-python build (CPU-only)")


def need_torch_cuda() -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch (CPU build of torch?)")


# --- llama.cpp offload ----------------------------------------------------------------------------


def logits_along(llm: Any, prompt: list[int], n: int, forced: list[int] | None = None) -> Any:
    """Decode n steps from the raw logits (no sampler): argmax, or the `forced` tokens.

    Returns (tokens, logits per step). Stops after an end-of-generation token.
    """
    import llama_cpp
    import numpy as np

    n_vocab = llm.n_vocab()
    llm.reset()
    llm.eval(prompt)
    tokens: list[int] = []
    rows: list[Any] = []
    for step in range(n if forced is None else len(forced)):
        row = np.ctypeslib.as_array(llama_cpp.llama_get_logits(llm.ctx), shape=(n_vocab,)).copy()
        token = int(row.argmax()) if forced is None else forced[step]
        tokens.append(token)
        rows.append(row)
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token):
            break
        llm.eval([token])
    return tokens, rows


def margins(rows: list[Any]) -> list[float]:
    """Top-1 minus top-2 logit at each step: how far each greedy choice is from a tie."""
    import numpy as np

    return [float(np.diff(np.sort(row)[-2:])[0]) for row in rows]


def offloaded_layers(log_text: str) -> tuple[int, int]:
    """The last 'offloaded N/M layers to GPU' line llama.cpp logged while loading."""
    found = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", log_text)
    assert found, "llama.cpp logged no 'offloaded N/M layers to GPU' line"
    done, total = found[-1]
    return int(done), int(total)


def llama_log_text() -> str:
    """What llama.cpp logged in this process (the engine opens its log file once per process)."""
    from qwq_chat.app.engines import llama_engine

    handle = llama_engine._log_file
    assert handle is not None, "no LlamaEngine was loaded yet"
    handle.flush()
    return Path(handle.name).read_text(encoding="utf-8", errors="replace")


# The largest |logit| difference GPU vs CPU accepted, per weight type: f32 is the same math in
# another order; with bf16 weights cuBLAS may round activations to bf16 where the CPU keeps f32
# (in torch, bf16 autocast moves this model's logits by up to 0.1).
LOGIT_TOLERANCE = {"f32": 0.01, "bf16": 0.15}
MIN_COMPARED = 4  # greedy tokens compared at least (bf16 at the tolerance: ties every ~4-7)


@pytest.mark.parametrize("outtype", ["f32", "bf16"])
def test_all_layers_on_the_gpu_and_greedy_text_equals_the_cpus(
    tiny_gguf_factory: Any, outtype: str
) -> None:
    need_llama_cuda()
    from qwq_chat.app.engines.llama_engine import LlamaEngine

    path = tiny_gguf_factory(outtype)
    cpu = LlamaEngine(path, n_ctx=512, n_gpu_layers=0, seed=0)
    gpu = LlamaEngine(path, n_ctx=512, n_gpu_layers="auto", seed=0)
    try:
        done, total = offloaded_layers(llama_log_text())
        assert gpu.gpu_plan.n_gpu_layers == -1, gpu.gpu_plan
        assert gpu.gpu_plan.offloaded == gpu.n_layers > 0
        assert done == total == gpu.n_layers + 1  # the repeating layers plus the output layer
        assert cpu.gpu_plan.offloaded == 0

        # Numerics first: the GPU's logits along the CPU's own greedy tokens, for every prompt.
        runs = []
        for text in PROMPTS:
            prompt = cpu.tokenize(cpu.render_prompt([{"role": "user", "content": text}]))
            assert len(prompt) < 32  # short: a 0-layer run then stays entirely on the CPU
            tokens, cpu_rows = logits_along(cpu.llm, prompt, GREEDY_TOKENS)
            _, gpu_rows = logits_along(gpu.llm, prompt, GREEDY_TOKENS, forced=tokens)
            diff = max(float(abs(a - b).max()) for a, b in zip(cpu_rows, gpu_rows, strict=True))
            runs.append((prompt, tokens, margins(cpu_rows), diff))
        noise = max(run[3] for run in runs)
        print(f"{outtype}: max |logit GPU - CPU| {noise:.6f} over {len(runs)} prompts")
        assert noise <= LOGIT_TOLERANCE[outtype], [run[3] for run in runs]

        # Greedy text: a choice can only flip where the CPU's top-2 gap is below twice the noise
        # measured; the GPU's own run must equal the CPU's up to the first such near tie, on the
        # prompt whose CPU run stays clear of ties longest (all of it when there is none).
        tie = 2 * max(noise, 1e-4)

        def clear(run: tuple) -> int:
            return next((i for i, m in enumerate(run[2]) if m < tie), len(run[1]))

        best = max(runs, key=clear)
        prompt, cpu_tokens, n = best[0], best[1], clear(best)
        assert n >= MIN_COMPARED, f"every prompt meets a near tie within {n} tokens"
        gpu_tokens, _ = logits_along(gpu.llm, prompt, GREEDY_TOKENS)
        assert gpu_tokens[:n] == cpu_tokens[:n]
        if n == len(cpu_tokens):
            assert gpu_tokens == cpu_tokens
        text = cpu.llm.detokenize(cpu_tokens[:n])
        assert text and gpu.llm.detokenize(gpu_tokens[:n]) == text
        print(f"{outtype}: {n} greedy tokens equal ({len(cpu_tokens)} generated)")
    finally:
        gpu.close()
        cpu.close()


# --- the automatic GPU-layer plan against the real free VRAM --------------------------------------

QWQ_Q4_K_M = int(18.48 * GIB)
KV_16K = 4 * GIB  # QwQ-32B f16 KV cache for 16k tokens


def test_auto_plan_follows_the_real_free_vram() -> None:
    need_torch_cuda()
    import torch

    gpu = detect_gpu()
    assert gpu is not None and gpu.free_bytes is not None and gpu.total_bytes is not None
    free, total = torch.cuda.mem_get_info()
    assert abs(gpu.total_bytes - total) < 0.05 * total, (gpu, total)
    assert abs(gpu.free_bytes - free) < max(GIB, 0.05 * total), (gpu, free)

    roomy = plan_layers("auto", 64, QWQ_Q4_K_M, KV_16K, gpu, offload_supported=True)
    if gpu.free_bytes - COMPUTE_RESERVE_BYTES >= QWQ_Q4_K_M + KV_16K:
        assert roomy.n_gpu_layers == -1 and roomy.offloaded == 64

    # Take all but 6 GiB of the card, then plan again: only part of QwQ-32B fits now.
    keep = 6 * GIB
    hog = torch.empty(max(0, free - keep), dtype=torch.uint8, device="cuda")
    try:
        squeezed = detect_gpu()
        assert squeezed is not None and squeezed.free_bytes is not None
        assert squeezed.free_bytes < keep + GIB, squeezed
        plan = plan_layers("auto", 64, QWQ_Q4_K_M, KV_16K, squeezed, offload_supported=True)
        per_layer = (QWQ_Q4_K_M + KV_16K) / 65
        assert 0 < plan.n_gpu_layers < 64, plan
        assert (plan.n_gpu_layers + 1) * per_layer <= squeezed.free_bytes - COMPUTE_RESERVE_BYTES
        assert f"{plan.n_gpu_layers}/64" in plan.summary
    finally:
        del hog
        torch.cuda.empty_cache()


def test_engine_auto_plan_uses_the_gpu_found(tiny_gguf: Path) -> None:
    need_llama_cuda()
    from qwq_chat.app.engines.llama_engine import LlamaEngine

    engine = LlamaEngine(tiny_gguf, n_ctx=1024)
    try:
        assert engine.gpu_plan.n_gpu_layers == -1
        assert isinstance(GPU, Gpu) and GPU.name in engine.gpu_plan.summary
        assert engine.gpu_plan.warning is None
    finally:
        engine.close()


# --- doctor ---------------------------------------------------------------------------------------


def test_doctor_says_ok_for_the_gpu() -> None:
    need_llama_cuda()
    done = subprocess.run(
        [sys.executable, "-m", "qwq_chat.app", "doctor", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.stdout.strip(), done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["gpu"]["status"] == "ok", checks["gpu"]
    assert checks["gpu"]["summary"].startswith("NVIDIA: ")
    llama = checks["llama-cpp-python"]
    assert llama["status"] == "ok" and llama["details"]["gpu_offload"] is True, llama
    assert "CUDA" in llama["details"]["backends"], llama
    assert checks["training"]["status"] != "warn", checks["training"]  # not a CPU torch
    assert done.returncode == 0 and report["ok"] is True, done.stdout


# --- training steps on CUDA -----------------------------------------------------------------------


def _toy_cfg(tmp_path: Path, base: Path, finetune: str) -> Any:
    from qwq_chat.rl_finetune.toy import toy_config, write_datasets

    data = write_datasets(tmp_path / "data", n_cold=8, n_train=16)
    cfg = toy_config(tmp_path / "run", base, data)
    cfg.model.finetune = finetune
    cfg.model.device = "cuda"
    cfg.model.dtype = "auto"  # bfloat16 on CUDA
    cfg.model.freeze_embeddings = False
    cfg.cold_start.max_steps = 2
    cfg.cold_start.batch_size = 4
    cfg.stage1.max_steps = 2
    cfg.stage1.batch_size = 8
    cfg.stage1.num_generations = 4
    cfg.stage1.max_completion_length = 8
    cfg.stage1.save_steps = 100
    cfg.logging.tensorboard = False
    cfg.logging.plots = False
    cfg.logging.progress = False
    return cfg


def device_recorder() -> Any:
    """A Trainer callback that counts steps and records where the trained weights live."""
    from transformers import TrainerCallback

    class Recorder(TrainerCallback):
        def __init__(self) -> None:
            self.devices: set[str] = set()
            self.steps = 0

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.steps += 1
            model = kw.get("model")
            if model is not None:
                self.devices |= {p.device.type for p in model.parameters() if p.requires_grad}

    return Recorder()


def _trained_lora(final: Path) -> dict[str, float]:
    """Largest |lora_B| per adapter file: peft starts B at zero, so > 0 means a step was taken."""
    from safetensors.torch import load_file

    weights = load_file(str(final / "adapter_model.safetensors"))
    lora_b = {k: float(v.float().abs().max()) for k, v in weights.items() if "lora_B" in k}
    assert lora_b, f"no lora_B tensors in {final}"
    return lora_b


def _metrics(cfg: Any, stage: str) -> list[dict[str, Any]]:
    path = cfg.output_dir / "metrics.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r.get("stage") == stage]


def distinct_characters(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    """A reward that differs between completions, so GRPO's advantages (and gradients) are not 0."""
    return [float(len(set(str(c)))) for c in completions]


def test_lora_grpo_step_on_cuda(tiny_checkpoint: Path, tmp_path: Path) -> None:
    need_torch_cuda()
    if importlib.util.find_spec("trl") is None:
        pytest.skip("TRL not installed (the LoRA SFT step below covers peft on CUDA)")
    from qwq_chat.rl_finetune.stages import run_grpo

    cfg = _toy_cfg(tmp_path, tiny_checkpoint, "lora")
    cfg.cold_start.enabled = False
    # An untrained model never answers right and every completion is cut at 8 tokens: with the
    # math reward and DAPO's masking of cut completions, the advantages would all be 0.
    cfg.stage1.mask_truncated_completions = False
    recorder = device_recorder()
    final = run_grpo(cfg, "stage1", callbacks=[recorder], reward_funcs=[distinct_characters])
    assert recorder.steps == 2 and recorder.devices == {"cuda"}, recorder.devices
    assert (final / "adapter_config.json").is_file()
    assert max(_trained_lora(final).values()) > 0
    rows = _metrics(cfg, "stage1")
    assert rows and all(r["reward_std"] > 0 for r in rows), rows


def test_lora_sft_step_on_cuda(tiny_checkpoint: Path, tmp_path: Path) -> None:
    """torch + transformers + peft only: the cold start's Trainer with a LoRA adapter."""
    need_torch_cuda()
    from qwq_chat.rl_finetune.stages import run_cold_start

    cfg = _toy_cfg(tmp_path, tiny_checkpoint, "lora")
    recorder = device_recorder()
    final = run_cold_start(cfg, callbacks=[recorder])
    assert recorder.steps == 2 and recorder.devices == {"cuda"}, recorder.devices
    assert max(_trained_lora(final).values()) > 0
    losses = [r["loss"] for r in _metrics(cfg, "cold_start") if "loss" in r]
    assert losses and all(x == x and x > 0 for x in losses), losses  # finite, not NaN


def test_qlora_sft_step_on_cuda(tiny_checkpoint: Path, tmp_path: Path) -> None:
    need_torch_cuda()
    if importlib.util.find_spec("bitsandbytes") is None:
        pytest.skip("bitsandbytes not installed")
    from qwq_chat.rl_finetune.stages import run_cold_start

    cfg = _toy_cfg(tmp_path, tiny_checkpoint, "qlora")
    recorder = device_recorder()
    seen_4bit: list[str] = []

    from transformers import TrainerCallback

    class Quantized(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            seen_4bit.extend(
                type(m).__name__ for m in kw["model"].modules() if "4bit" in type(m).__name__
            )

    final = run_cold_start(cfg, callbacks=[recorder, Quantized()])
    assert seen_4bit, "the base was not loaded in 4 bit"
    assert recorder.steps == 2 and recorder.devices == {"cuda"}, recorder.devices
    assert max(_trained_lora(final).values()) > 0
