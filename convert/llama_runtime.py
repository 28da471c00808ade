"""Open GGUF files with llama-cpp-python for conversion checks (verify, imatrix, KL divergence).

Loading goes through the app's `load_llama`, which turns off llama.cpp's extra CPU buffer types on
CPUs advertising Intel AMX: there the AMX matrix multiply of the bundled llama.cpp crashes the
process (SIGSEGV in `ggml_backend_amx_mul_mat`) for Q4_0/Q4_1/Q8_0/K-quant weights. See
app/system/cpu.py. llama.cpp's own log lines go to the app's log file.

`ChunkModel` is the lower-level path `imatrix` and `verify --kld` need: fixed-size chunks of
tokens evaluated with a fresh KV cache each, the way llama.cpp's llama-imatrix and
llama-perplexity do, and optionally an eval callback (`cb_eval`) that sees each graph node.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

import numpy as np
from qwq_chat.convert.errors import ConvertError


def open_llama(model_path: Path | str, **kwargs: Any):  # -> llama_cpp.Llama
    """`llama_cpp.Llama(model_path, ...)`, AMX-safe, quiet by default."""
    from qwq_chat.app.engines.llama_engine import load_llama, route_llama_logs

    route_llama_logs()  # llama.cpp's chatter goes to the log file, not the terminal
    kwargs.setdefault("verbose", False)
    return load_llama(model_path=str(model_path), **kwargs)


def default_gpu_layers() -> int:
    """All layers on the GPU when this llama.cpp build can offload, else none."""
    import llama_cpp

    return 999 if llama_cpp.llama_supports_gpu_offload() else 0


class ChunkModel:
    """A GGUF model and one llama.cpp context of `n_ctx` tokens, for chunked evaluation.

    `cb_eval` (a `llama_cpp.ggml_backend_sched_eval_callback`) is called for each graph node, as
    llama.cpp's imatrix tool uses it. The caller keeps the callback object alive.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        n_ctx: int,
        n_threads: int | None = None,
        n_gpu_layers: int | None = None,
        cb_eval: Any = None,
    ) -> None:
        import llama_cpp
        from qwq_chat.app.engines.llama_engine import route_llama_logs
        from qwq_chat.app.gguf_files import split_pieces
        from qwq_chat.app.system.cpu import extra_buffers_safe

        split_pieces(path)  # a clear message for a missing piece, before llama.cpp's
        route_llama_logs()
        self.path = Path(path)
        self.n_ctx = n_ctx
        mparams = llama_cpp.llama_model_default_params()
        mparams.use_extra_bufts = extra_buffers_safe()
        mparams.n_gpu_layers = default_gpu_layers() if n_gpu_layers is None else n_gpu_layers
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode(), mparams)
        if not self._model:
            raise ConvertError(
                f"llama.cpp could not load {self.path} (see the llama.cpp log in the log "
                "directory); check that it is a complete GGUF model file"
            )
        threads = n_threads or os.cpu_count() or 1
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx
        cparams.n_batch = n_ctx
        cparams.n_ubatch = n_ctx
        cparams.n_seq_max = 1
        cparams.n_threads = threads
        cparams.n_threads_batch = threads
        cparams.no_perf = True
        if cb_eval is not None:
            cparams.cb_eval = cb_eval
            cparams.cb_eval_user_data = None
        self._ctx = llama_cpp.llama_init_from_model(self._model, cparams)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise ConvertError(f"llama.cpp could not create a {n_ctx}-token context for {path}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(self._vocab))
        self._batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)

    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as text, or None when the model has no such key."""
        import llama_cpp

        buf = ctypes.create_string_buffer(1 << 16)
        n = llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):  # long values (chat templates): ask again with room for them
            buf = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(self._model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    def token_text(self, token: int) -> str:
        import llama_cpp

        buf = ctypes.create_string_buffer(256)
        n = llama_cpp.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, True)
        return buf.raw[: max(n, 0)].decode("utf-8", errors="replace")

    @property
    def eos_text(self) -> str:
        import llama_cpp

        return self.token_text(int(llama_cpp.llama_vocab_eos(self._vocab)))

    def tokenize(self, text: str) -> np.ndarray:
        """Token ids of `text` with the model's own BOS rule and special tokens parsed (so chat
        markup like `<|im_start|>` is one token), as the model sees it in use."""
        import llama_cpp

        raw = text.encode("utf-8")
        n_max = len(raw) + 16
        buf = (llama_cpp.llama_token * n_max)()
        n = llama_cpp.llama_tokenize(self._vocab, raw, len(raw), buf, n_max, True, True)
        if n < 0:  # buffer too small (cannot happen: a token covers at least one byte)
            raise ConvertError("internal error: llama.cpp's tokenizer needed a bigger buffer")
        return np.ctypeslib.as_array(buf)[:n].astype(np.int32)

    def eval_chunk(
        self, tokens: np.ndarray, first_output: int = 0, *, logits: bool = True
    ) -> np.ndarray | None:
        """Run one chunk of tokens from an empty KV cache; return the logits of positions
        `first_output`... (rows, float32), or None with `logits=False` (the positions are still
        computed as outputs: the last layer then sees every row). With `add_bos` the first token
        is replaced by BOS, as llama-imatrix and llama-perplexity do for each chunk."""
        import llama_cpp

        n = len(tokens)
        if n > self.n_ctx:
            raise ValueError(f"chunk of {n} tokens does not fit the {self.n_ctx}-token context")
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        batch = self._batch
        batch.n_tokens = n
        for i, tok in enumerate(tokens):
            batch.token[i] = self.bos if (i == 0 and self.add_bos) else int(tok)
            batch.pos[i] = i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = i >= first_output
        rc = llama_cpp.llama_decode(self._ctx, batch)
        if rc != 0:
            raise ConvertError(f"llama.cpp failed to evaluate a chunk of {self.path} (code {rc})")
        if not logits:
            return None
        rows = n - first_output
        ptr = llama_cpp.llama_get_logits(self._ctx)
        return np.ctypeslib.as_array(ptr, shape=(rows, self.n_vocab)).copy()

    def close(self) -> None:
        import llama_cpp

        if getattr(self, "_batch", None) is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> ChunkModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
