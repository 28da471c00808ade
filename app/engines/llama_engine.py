"""The default engine: a local GGUF through llama-cpp-python (llama.cpp).

Choices made here and why:
- The prompt is rendered by `qwq_chat.app.prompt` (QwQ's upstream template unless the GGUF is another model
  family), tokenized once, and driven through `Llama.generate`, which keeps the KV cache of the
  longest common token prefix: a follow-up turn only evaluates what changed.
- Tokens are decoded one at a time with an incremental UTF-8 decoder (O(1) per token; the library's
  own streaming re-decodes the whole completion every token).
- Sampling (QwQ's model card) is always passed explicitly: the library's defaults are wrong for QwQ.
- llama.cpp logs go to `qwq_chat.app.paths.log_dir()/llama.log` (`llama_log_set`), never to the terminal; the
  model is loaded with verbose=True so the library does not dup2 the process's stdout/stderr away
  (which would blank a running TUI), while its Python prints go to the same log file.
- Cancel is checked per token and, during a long prompt evaluation, by llama.cpp's abort callback.
- Stats come from llama.cpp's perf counters (`llama_perf_context`): prompt tokens actually evaluated
  after cache reuse, time to first token, decode tokens/s.
"""

from __future__ import annotations

import codecs
import contextlib
import ctypes
import dataclasses
import logging
import random
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

from qwq_chat.app import paths
from qwq_chat.app.engine_protocol import Chunk
from qwq_chat.app.engines.gpu import GpuPlan, plan_layers
from qwq_chat.app.engines.speculative import (
    DRAFT_MAX,
    SpeculativeDecoder,
    applicable,
    make_speculator,
)
from qwq_chat.app.errors import UserError
from qwq_chat.app.events import Stats
from qwq_chat.app.prompt import ChosenTemplate, choose_template, opens_reasoning, render
from qwq_chat.app.sampling import Sampling
from qwq_chat.app.system.cpu import extra_buffers_safe
from qwq_chat.app.system.gpu import detect_gpu
from qwq_chat.app.system.llama_build import offload_supported

LOG_FILE_NAME = "llama.log"
log = logging.getLogger(__name__)
_CACHE_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # GGML_TYPE_*
_CACHE_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}

_log_lock = threading.Lock()
_log_file: Any = None
_log_callback: Any = None  # keep the ctypes callback alive


def route_llama_logs() -> Path:
    """Send all llama.cpp / ggml logging to the log file (once per process); returns its path."""
    global _log_file, _log_callback
    import llama_cpp

    path = paths.log_dir() / LOG_FILE_NAME
    with _log_lock:
        if _log_callback is None:
            _log_file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115

            @llama_cpp.llama_log_callback
            def _callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
                with contextlib.suppress(Exception):
                    _log_file.write(text.decode("utf-8", errors="replace"))

            _log_callback = _callback
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    return path


_load_lock = threading.Lock()


@contextlib.contextmanager
def safe_load_params() -> Iterator[None]:
    """While active, models load without llama.cpp's extra CPU buffer types where they crash.

    See app/system/cpu.py: on CPUs advertising AMX the model is loaded with
    `use_extra_bufts = False`. Llama() offers no argument for it, so its default-params factory is
    wrapped for the duration of the load (under a lock).
    """
    import llama_cpp.llama as llama_module

    if extra_buffers_safe():
        yield
        return
    with _load_lock:
        original = llama_module.llama_cpp.llama_model_default_params

        def params() -> Any:
            p = original()
            p.use_extra_bufts = False
            return p

        llama_module.llama_cpp.llama_model_default_params = params
        try:
            yield
        finally:
            llama_module.llama_cpp.llama_model_default_params = original


def load_llama(**kwargs: Any) -> Any:
    """`llama_cpp.Llama(**kwargs)` under `safe_load_params()`; other parts loading GGUFs use this."""
    import llama_cpp

    with safe_load_params():
        return llama_cpp.Llama(**kwargs)


def _metadata_int(metadata: dict[str, str], suffix: str, default: int = 0) -> int:
    arch = metadata.get("general.architecture", "")
    try:
        return int(metadata.get(f"{arch}.{suffix}", default))
    except ValueError:
        return default


def chat_template_of(llm: Any) -> tuple[str | None, dict[str, str]]:
    """The chat template a loaded GGUF stores, and the BOS/EOS texts a template may use."""

    def text(token: int) -> str:
        return llm._model.token_get_text(token) if token >= 0 else ""

    special = {"bos_token": text(llm.token_bos()), "eos_token": text(llm.token_eos())}
    return llm.metadata.get("tokenizer.chat_template"), special


def read_chat_template(path: Path) -> tuple[str | None, dict[str, str]]:
    """`chat_template_of` a GGUF file, loading its vocabulary only (fast)."""
    log_path = route_llama_logs()
    with open(log_path, "a") as log_file, contextlib.redirect_stderr(log_file):
        llm = load_llama(model_path=str(path), vocab_only=True, verbose=True)
    try:
        return chat_template_of(llm)
    finally:
        llm.close()


class LlamaEngine:
    """A loaded GGUF. Construct in a worker thread (loading takes seconds to minutes)."""

    name = "llama"

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 16384,
        n_gpu_layers: int | str = "auto",
        n_threads: int | None = None,
        flash_attn: bool = False,
        cache_type: str = "f16",
        yarn: bool = False,
        seed: int | None = None,
        draft: str | Path | None = None,
        draft_max: int = DRAFT_MAX,
        draft_adaptive: bool = True,
    ) -> None:
        """`draft`: "ngram" or a draft GGUF path turns on speculative decoding (speculative.py)."""
        import llama_cpp

        path = Path(model_path).expanduser()
        if not path.is_file():
            raise UserError(f"model file {path} does not exist; pass a GGUF path or REPO[:QUANT]")
        self.model_path = path
        self.log_path = route_llama_logs()
        self.n_ctx = n_ctx
        self.prompt_opens_reasoning = True
        self._cancel = threading.Event()
        self._piece_buf = ctypes.create_string_buffer(256)
        self.gpu_plan = self._plan_gpu(llama_cpp, path, n_gpu_layers, n_ctx, cache_type)
        self.speculator: SpeculativeDecoder | None = None
        if draft is not None and not flash_attn and not self.gpu_plan.offloaded:
            # On the CPU, flash attention is batch-invariant: speculation stays lossless there
            # (docs/models-and-gpus.md, "Faster decoding").
            flash_attn = True
            log.info("speculative decoding: flash attention turned on")
        kwargs: dict[str, Any] = {
            "model_path": str(path),
            "n_ctx": n_ctx,
            "n_gpu_layers": self.gpu_plan.n_gpu_layers,
            "flash_attn": flash_attn,
            "type_k": _CACHE_TYPES[cache_type],
            "type_v": _CACHE_TYPES[cache_type],
            "seed": seed if seed is not None else random.randrange(2**31),
            "verbose": True,  # see module docstring: avoids the library's fd redirection
        }
        if n_threads:
            kwargs["n_threads"] = n_threads
            kwargs["n_threads_batch"] = n_threads
        if yarn:  # YaRN x4 over QwQ's original 32k positions (docs/models-and-gpus.md)
            kwargs.update(
                rope_scaling_type=llama_cpp.LLAMA_ROPE_SCALING_TYPE_YARN,
                rope_freq_scale=0.25,
                yarn_orig_ctx=32768,
            )
        assert _log_file is not None
        try:
            with contextlib.redirect_stderr(_log_file), contextlib.redirect_stdout(_log_file):
                self.llm = load_llama(**kwargs)
        except ValueError as exc:
            raise UserError(
                f"llama.cpp could not load {path} ({exc}); see {self.log_path} for details. "
                "Is it a complete GGUF file?"
            ) from None
        self.llm.verbose = False  # no per-call prints from the library
        self._llama_cpp = llama_cpp
        metadata = self.llm.metadata
        self.n_layers = _metadata_int(metadata, "block_count")
        if self.gpu_plan.n_layers == 0:  # the plan was made without reading the file
            self.gpu_plan = GpuPlan(
                self.gpu_plan.n_gpu_layers,
                self.gpu_plan.offloaded,
                self.n_layers,
                self.gpu_plan.summary,
                self.gpu_plan.warning,
            )
        stored_template, self._special = chat_template_of(self.llm)
        self.template: ChosenTemplate = choose_template(stored_template)

        log.info(
            "loaded %s: n_ctx=%d, %s, template: %s (%s)",
            path, n_ctx, self.gpu_plan.summary, self.template.origin, self.template.reason,
        )  # fmt: skip
        if self.gpu_plan.warning:
            log.warning(self.gpu_plan.warning)

        @llama_cpp.ggml_abort_callback
        def _abort(_data: ctypes.c_void_p) -> bool:
            return self._cancel.is_set()

        self._abort = _abort
        self._abort_checks(True)
        if draft is not None:
            try:
                with contextlib.redirect_stderr(_log_file), contextlib.redirect_stdout(_log_file):
                    self.speculator = make_speculator(
                        self.llm, draft, load_llama, n_gpu_layers=self.gpu_plan.n_gpu_layers,
                        max_draft=draft_max, adaptive=draft_adaptive, n_threads=n_threads,
                    )  # fmt: skip
            except BaseException:
                self.close()  # a refused draft must not leave the main model loaded
                raise

    # -- set-up ----------------------------------------------------------------------------------

    @staticmethod
    def _plan_gpu(
        llama_cpp: Any, path: Path, requested: int | str, n_ctx: int, cache_type: str
    ) -> GpuPlan:
        supported = offload_supported()
        gpu = detect_gpu()
        if not (supported and gpu is not None and requested == "auto"):
            return plan_layers(requested, 0, 0, 0, gpu, supported)
        # Read the sizes we need (vocab only: fast) to see what fits.
        with contextlib.redirect_stderr(_log_file), contextlib.redirect_stdout(_log_file):
            probe = load_llama(model_path=str(path), vocab_only=True, verbose=True)
        meta = probe.metadata
        n_layers = _metadata_int(meta, "block_count")
        heads = max(1, _metadata_int(meta, "attention.head_count", 1))
        kv_heads = _metadata_int(meta, "attention.head_count_kv", heads)
        head_dim = _metadata_int(meta, "attention.key_length", 0) or (
            _metadata_int(meta, "embedding_length") // heads
        )
        probe.close()
        kv_bytes = int(n_ctx * n_layers * kv_heads * head_dim * 2 * _CACHE_BYTES[cache_type])
        return plan_layers(requested, n_layers, path.stat().st_size, kv_bytes, gpu, supported)

    # -- prompts ---------------------------------------------------------------------------------

    @property
    def placement(self) -> str:
        return self.gpu_plan.summary

    @property
    def load_warning(self) -> str | None:
        return self.gpu_plan.warning

    @property
    def description(self) -> str:
        """One line for the user: which model, where it runs, which template."""
        return (
            f"{self.model_path.name}: {self.gpu_plan.summary}, context {self.n_ctx}, "
            f"template: {self.template.origin} ({self.template.reason})"
            + (f", draft: {self.speculator.describe()}" if self.speculator else "")
        )

    def render_prompt(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> str:
        """The exact text this model would receive (template chosen by `qwq_chat.app.prompt`)."""
        return render(messages, tools=tools, template=self.template.source, **self._special)

    def _abort_checks(self, on: bool) -> None:
        """Let a cancel stop llama.cpp inside a graph (on) or only between tokens (off).

        llama.cpp asks the callback at every graph node, hundreds of times per token, and each
        ask takes the GIL: worth it while a long prompt is evaluated, a measurable slowdown of
        one-token decode steps (more so when a server thread holds the GIL), which the stream
        loop can stop at the next token anyway."""
        callback = self._abort if on else self._llama_cpp.ggml_abort_callback()
        self._llama_cpp.llama_set_abort_callback(self.llm.ctx, callback, ctypes.c_void_p(0))

    def tokenize(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    # -- generation ------------------------------------------------------------------------------

    def stream(
        self,
        messages: list[dict[str, Any]],
        sampling: Sampling,
        max_tokens: int,
        tools: list[dict[str, Any]] | None = None,
        prefill: str = "",
        grammar: Any = None,
        raw_prompt: str | None = None,
    ) -> Iterator[Chunk]:
        """Render, evaluate what is not cached yet, and yield one chunk per token."""
        llama_cpp = self._llama_cpp
        self._cancel.clear()
        prompt = raw_prompt if raw_prompt is not None else self.render_prompt(messages, tools)
        self.prompt_opens_reasoning = opens_reasoning(prompt)
        tokens = self.tokenize(prompt + prefill)
        if len(tokens) >= self.n_ctx:
            raise UserError(
                f"the conversation ({len(tokens)} tokens) no longer fits the context "
                f"(n_ctx={self.n_ctx}); start a new chat or raise n_ctx"
            )
        max_new = max(1, min(max_tokens, self.n_ctx - len(tokens)))
        seed = sampling.seed if sampling.seed is not None else random.randrange(2**31)
        self.llm.set_seed(seed)
        llama_cpp.llama_perf_context_reset(self.llm.ctx)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        vocab = self.llm._model.vocab
        started = time.perf_counter()
        first_token_at: float | None = None
        generated = 0
        finish = "length"
        # Speculation switches itself off where it could change the output (grammar, penalties).
        speculating = self.speculator is not None and applicable(sampling, grammar) is None
        generator: Generator[int, Any, None]
        if self.speculator is not None and speculating:
            generator = self.speculator.generate(tokens, sampling, seed)
        else:
            generator = self.llm.generate(
                tokens,
                top_k=sampling.top_k,
                top_p=sampling.top_p,
                min_p=sampling.min_p,
                temp=sampling.temperature,
                repeat_penalty=sampling.repeat_penalty,
                presence_penalty=sampling.presence_penalty,
                frequency_penalty=sampling.frequency_penalty,
                grammar=grammar,
            )
        self._abort_checks(True)  # for the prompt's evaluation
        try:
            for token in generator:
                if first_token_at is None:
                    first_token_at = time.perf_counter()
                    self._abort_checks(False)  # the prompt is in: decode steps are short
                if llama_cpp.llama_vocab_is_eog(vocab, token):
                    finish = "stop"
                    break
                generated += 1
                yield Chunk(decoder.decode(self._piece(vocab, token)), tokens=1)
                if self._cancel.is_set():
                    finish = "cancelled"
                    break
                if generated >= max_new:
                    finish = "length"
                    break
        except RuntimeError:
            if not self._cancel.is_set():
                raise
            finish = "cancelled"  # the abort callback stopped a prompt evaluation
        finally:
            generator.close()
        tail = decoder.decode(b"", final=True)
        if tail:
            yield Chunk(tail)
        yield Chunk(
            stats=self._stats(len(tokens), generated, started, first_token_at, speculating),
            finish_reason=finish,
        )

    def _stats(
        self,
        prompt_tokens: int,
        generated: int,
        started: float,
        first_token_at: float | None,
        speculating: bool = False,
    ) -> Stats:
        perf = self._llama_cpp.llama_perf_context(self.llm.ctx)
        eval_s = perf.t_eval_ms / 1000.0
        stats = Stats(
            prompt_tokens=prompt_tokens,
            completion_tokens=generated,
            prompt_tokens_processed=int(perf.n_p_eval),
            time_to_first_token_s=(first_token_at - started) if first_token_at else None,
            tokens_per_second=(perf.n_eval / eval_s) if eval_s > 0 and perf.n_eval else None,
            context_size=self.n_ctx,
            gpu_layers=self.gpu_plan.offloaded,
        )
        if not speculating or self.speculator is None:
            return stats
        # llama.cpp counts a check batch as prompt evaluation: the decoder's own counts instead.
        spec = self.speculator.last
        return dataclasses.replace(
            stats,
            prompt_tokens_processed=spec.prompt_evaluated,
            tokens_per_second=spec.tokens_per_second,
            draft_acceptance_rate=spec.acceptance_rate,
            tokens_per_pass=spec.tokens_per_pass,
        )

    def _piece(self, vocab: Any, token: int) -> bytes:
        """The token's bytes; control tokens (<|im_end|>...) give b"", `</think>` its text."""
        llama_cpp = self._llama_cpp
        n = llama_cpp.llama_token_to_piece(
            vocab, token, self._piece_buf, len(self._piece_buf), 0, False
        )
        if n < 0:  # buffer too small: -n is the size needed
            self._piece_buf = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(
                vocab, token, self._piece_buf, len(self._piece_buf), 0, False
            )
        return self._piece_buf.raw[:n]

    def cancel(self) -> None:
        self._cancel.set()

    def close(self) -> None:
        speculator = getattr(self, "speculator", None)
        if speculator is not None:
            speculator.close()
            self.speculator = None
        llm = getattr(self, "llm", None)
        if llm is not None:
            llm.close()  # frees the context first; self._abort stays referenced until then
            self.llm = None
