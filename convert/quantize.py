"""Quantize a GGUF file with llama.cpp's own quantizer, through llama-cpp-python.

`llama_model_quantize(src, dst, params)` does the work (all K-quants and I-quants, llama.cpp's
per-tensor type choices such as Q6_K for half of `ffn_down` in Q4_K_M). We add what a user needs
around it: the type names llama.cpp's `llama-quantize` accepts, a progress bar fed from llama.cpp's
per-tensor log lines (`[  12/ 771] blk.0.attn_q.weight ...`), the full log in the log directory,
an optional importance matrix (llama.cpp's imatrix GGUF file), and a temp file renamed at the end.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from qwq_chat.convert.errors import ConvertError, OutputPathError, QuantTypeError

# llama.cpp's LLAMA_FTYPE_MOSTLY_* names as `llama-quantize` spells them (Q4_K_M, IQ4_XS, ...).
_EXCLUDED = {"GUESSED", "MXFP4_MOE"}  # not a target / only meaningful for MoE expert tensors


def quant_types() -> dict[str, int]:
    """Every quantization type this llama-cpp-python build offers: name -> llama_ftype value."""
    import llama_cpp

    types: dict[str, int] = {}
    for attr in dir(llama_cpp):
        if not attr.startswith("LLAMA_FTYPE_"):
            continue
        name = attr.removeprefix("LLAMA_FTYPE_").removeprefix("MOSTLY_").removeprefix("ALL_")
        if name in _EXCLUDED:
            continue
        types[name] = int(getattr(llama_cpp, attr))
    return dict(sorted(types.items(), key=lambda kv: kv[0]))


def resolve_type(name: str) -> int:
    types = quant_types()
    key = name.strip().upper()
    if key not in types:
        raise QuantTypeError(f"unknown quantization type {name!r}. Valid types: {', '.join(types)}")
    return types[key]


_TENSOR_LINE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]\s+(\S+)")


@contextlib.contextmanager
def _capture_llama_log(
    log_file: Path, on_tensor: Callable[[int, int, str], None]
) -> Iterator[None]:
    """Route llama.cpp's log to `log_file` and report per-tensor progress while quantizing."""
    import llama_cpp

    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8") as sink:

        @llama_cpp.llama_log_callback
        def callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            line = text.decode("utf-8", errors="replace")
            sink.write(line)
            match = _TENSOR_LINE.match(line.lstrip())
            if match:
                on_tensor(int(match.group(1)), int(match.group(2)), match.group(3))

        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            yield
        finally:
            # Back to the handler that was active: the app's log file if it routed llama.cpp's
            # logs there (qwq_chat.app.engines.llama_engine.route_llama_logs), else llama-cpp-python's own.
            from llama_cpp import _logger
            from qwq_chat.app.engines import llama_engine

            previous = llama_engine._log_callback or _logger.llama_log_callback
            llama_cpp.llama_log_set(previous, ctypes.c_void_p(0))


def load_imatrix(path: Path) -> dict[str, list[float]]:
    """Read an importance matrix written by llama.cpp's `llama-imatrix` (GGUF format).

    The file holds, per weight matrix, `NAME.in_sum2` (sums of squared activations, one row per
    expert) and `NAME.counts`; the quantizer wants their quotient, flattened.
    """
    import gguf
    import numpy as np

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise ConvertError(
            f"{path} is not an importance-matrix GGUF file ({exc}); create one with "
            "llama.cpp's llama-imatrix"
        ) from exc
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    out: dict[str, list[float]] = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name.removesuffix(".in_sum2")
        counts = tensors.get(base + ".counts")
        if counts is None:
            raise ConvertError(f"{path}: {base}.in_sum2 has no matching {base}.counts")
        counts = counts.reshape(-1)
        rows = sums.reshape(len(counts), -1)
        # Like llama-quantize: mean squared activation per column; a matrix (expert) that saw no
        # calibration input gets neutral weights of 1.
        safe = np.where(counts > 0, counts, 1.0).reshape(-1, 1)
        values = np.where(counts.reshape(-1, 1) > 0, rows / safe, 1.0)
        out[base] = values.reshape(-1).astype(np.float32).tolist()
    if not out:
        raise ConvertError(f"{path} holds no `*.in_sum2` tensors: not an importance matrix")
    return out


def _imatrix_array(data: dict[str, list[float]]):
    """The NULL-terminated C array of llama_model_imatrix_data llama.cpp reads (kept alive by caller)."""
    import llama_cpp

    entries = (llama_cpp.llama_model_imatrix_data * (len(data) + 1))()
    keep = []
    for i, (name, values) in enumerate(data.items()):
        name_b = ctypes.create_string_buffer(name.encode())
        arr = (ctypes.c_float * len(values))(*values)
        keep += [name_b, arr]
        entries[i].name = ctypes.cast(name_b, ctypes.c_char_p)
        entries[i].data = ctypes.cast(arr, ctypes.POINTER(ctypes.c_float))
        entries[i].size = len(values)
    entries[len(data)].name = None
    return entries, keep


def quantize_gguf(
    src: Path | str,
    dst: Path | str,
    qtype: str = "Q4_K_M",
    *,
    threads: int | None = None,
    imatrix: Path | str | None = None,
    progress: bool = False,
    log_file: Path | None = None,
) -> Path:
    """Quantize `src` (a GGUF file) to `dst` as `qtype`; returns `dst`."""
    import llama_cpp
    from qwq_chat.convert.hf_to_gguf import atomic_output

    src, dst = Path(src), Path(dst)
    ftype = resolve_type(qtype)
    if not src.is_file():
        raise ConvertError(f"{src} does not exist: give the GGUF file to quantize")
    with open(src, "rb") as f:
        if f.read(4) != b"GGUF":
            raise ConvertError(
                f"{src} is not a GGUF file (convert a checkpoint with `qwq-chat convert`)"
            )
    if not dst.parent.is_dir():
        raise OutputPathError(
            f"cannot write {dst}: the directory {dst.parent} does not exist (create it first)"
        )
    if dst.resolve() == src.resolve():
        raise OutputPathError("the output file must differ from the input file")
    imatrix_data = load_imatrix(Path(imatrix)) if imatrix is not None else None
    if log_file is None:
        from qwq_chat.app.paths import log_dir

        log_file = log_dir() / "quantize.log"

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    params.allow_requantize = True  # llama.cpp refuses already-quantized input otherwise
    keep = None
    if imatrix_data is not None:
        entries, keep = _imatrix_array(imatrix_data)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        keep.append(entries)

    try:
        with atomic_output(dst) as tmp:
            with (
                _quant_progress(progress, qtype.upper()) as on_tensor,
                _capture_llama_log(log_file, on_tensor),
            ):
                rc = llama_cpp.llama_model_quantize(
                    str(src).encode(), str(tmp).encode(), ctypes.byref(params)
                )
            if rc != 0 or not tmp.is_file():
                raise ConvertError(
                    f"llama.cpp could not quantize {src} to {qtype.upper()} (code {rc}); "
                    f"its log is in {log_file}. Some I-quants (IQ1/IQ2 types) need --imatrix"
                )
    finally:
        del keep
    return dst


@contextlib.contextmanager
def _quant_progress(enabled: bool, label: str) -> Iterator[Callable[[int, int, str], None]]:
    if not enabled:
        yield lambda i, n, name: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]quantizing to {label}[/] " + "{task.fields[tensor]:<28}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("quantize", total=None, tensor="")

        def on_tensor(i: int, n: int, name: str) -> None:
            bar.update(task, completed=i, total=n, tensor=name)

        yield on_tensor
