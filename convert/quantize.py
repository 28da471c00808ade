"""Quantize a GGUF file with llama.cpp's own quantizer, through llama-cpp-python.

`llama_model_quantize(src, dst, params)` does the work (all K-quants and I-quants, llama.cpp's
per-tensor type choices such as Q6_K for half of `ffn_down` in Q4_K_M, and its fallbacks for
tensors whose width does not fit a type's blocks). Around it, what `llama-quantize` offers and a
user needs: type names as llama-quantize spells them; an importance matrix (ours or
llama-imatrix's), computed from the shipped calibration text when a low-bit type is asked for
without one; per-tensor types (`--tensor-type REGEX=TYPE`, `--output-tensor-type`,
`--token-embedding-type`, `--pure`); requantizing an already quantized file only when asked; split
input and output files; a progress bar fed from llama.cpp's per-tensor log lines; the full log in
the log directory; and temp files renamed at the end, so a failure leaves no output behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from qwq_chat.convert.errors import ConvertError, OutputPathError, QuantTypeError
from qwq_chat.convert.gguf_info import TensorInfo, read_info

# llama.cpp's LLAMA_FTYPE_MOSTLY_* names as `llama-quantize` spells them (Q4_K_M, IQ4_XS, ...).
_EXCLUDED = {"GUESSED", "MXFP4_MOE"}  # not a target / only meaningful for MoE expert tensors
# Types of 3 bits per weight or fewer: quality falls fast there and an importance matrix helps
# most, so one is computed when none is given. (TQ1_0/TQ2_0 are for ternary-trained models.)
LOW_BIT_PREFIXES = ("Q2_", "Q3_", "IQ1_", "IQ2_", "IQ3_")
UNQUANTIZED = ("F32", "F16", "BF16")
AUTO_IMATRIX_N_CTX = 512
AUTO_IMATRIX_MAX_CHUNKS: int | None = None  # all of the shipped text


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


# llama-quantize's short names for the medium K-quant mixes.
_ALIASES = {"Q3_K": "Q3_K_M", "Q4_K": "Q4_K_M", "Q5_K": "Q5_K_M"}


def resolve_type(name: str) -> int:
    types = quant_types()
    key = name.strip().upper()
    key = _ALIASES.get(key, key)
    if key not in types:
        raise QuantTypeError(f"unknown quantization type {name!r}. Valid types: {', '.join(types)}")
    return types[key]


def is_low_bit(qtype: str) -> bool:
    return qtype.strip().upper().startswith(LOW_BIT_PREFIXES)


def ggml_type(name: str, option: str) -> int:
    """A ggml tensor type by name, case-insensitive (`q8_0`, `f16`, `iq4_nl`...), as llama-quantize
    parses --tensor-type, --output-tensor-type and --token-embedding-type."""
    import gguf

    names = {t.name.upper(): int(t.value) for t in gguf.GGMLQuantizationType}
    key = name.strip().upper()
    if key not in names:
        valid = ", ".join(n.lower() for n in names)
        raise QuantTypeError(f"{option}: unknown tensor type {name!r}. Valid types: {valid}")
    return names[key]


def model_tensors(pieces: Sequence[Path]) -> dict[str, TensorInfo]:
    """Name -> shape and type of every tensor, over all pieces of a (split) model."""
    return {t.name: t for piece in pieces for t in read_info(piece).tensors}


@dataclass(frozen=True)
class TensorTypeOverride:
    """`--tensor-type REGEX=TYPE`: tensors whose name matches REGEX (searched, as llama.cpp's
    std::regex_search does; the pattern lower-cased as llama-quantize does) become TYPE. The first
    matching override wins."""

    pattern: str
    type_name: str
    type_value: int


def parse_tensor_types(
    specs: Sequence[str], tensors: dict[str, TensorInfo]
) -> list[TensorTypeOverride]:
    out = []
    matrices = [name for name, info in tensors.items() if info.is_matrix]
    for spec in specs:
        pattern, sep, type_name = spec.partition("=")
        if not sep or not pattern or not type_name:
            raise ConvertError(
                f"--tensor-type {spec!r} is not REGEX=TYPE (e.g. attn_v=q8_0 or "
                r"'blk\.[0-3]\.ffn_down=q6_k')"
            )
        pattern = pattern.lower()
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConvertError(
                f"--tensor-type {spec!r}: {pattern!r} is not a regex ({exc})"
            ) from None
        if not any(regex.search(name) for name in matrices):
            example = ", ".join(matrices[:3])
            raise ConvertError(
                f"--tensor-type {spec!r} matches no weight matrix of the model (its names look "
                f"like {example}); check the pattern"
            )
        out.append(
            TensorTypeOverride(pattern, type_name.lower(), ggml_type(type_name, "--tensor-type"))
        )
    return out


def check_imatrix_fits(
    values: dict[str, object], tensors: dict[str, TensorInfo], path: Path
) -> None:
    """Refuse an importance matrix made for another model: its entries must name this model's
    weight matrices and hold one value per input column (times experts)."""
    bad = []
    for name, vals in values.items():
        info = tensors.get(name)
        n = len(vals)  # type: ignore[arg-type]
        if info is None or not info.is_matrix:
            bad.append(f"{name} (no such weight in the model)")
        elif n % info.shape[0] or n // info.shape[0] not in (1, *info.shape[2:]):
            bad.append(f"{name} ({n} values, the weight is {info.shape[0]} wide)")
    if bad:
        raise ConvertError(
            f"{path} does not fit this model ({len(bad)} of {len(values)} entries differ, e.g. "
            f"{bad[0]}): it was made for another model. Make one for this model with "
            "`qwq-chat imatrix MODEL.gguf -o imatrix.gguf`"
        )


_TENSOR_LINE = re.compile(r"\[\s*(\d+)\s*/\s*(\d+)\s*\]\s+(\S+)")


@contextlib.contextmanager
def _capture_llama_log(
    log_file: Path, on_tensor: Callable[[int, int, str], None], warnings: list[str]
) -> Iterator[None]:
    """Route llama.cpp's log to `log_file`, report per-tensor progress, keep fallback warnings."""
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
            elif "required fallback quantization" in line or "requires an imatrix" in line:
                warnings.append(line.split("WARNING:", 1)[-1].strip())

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


def _imatrix_array(data: dict[str, object]):
    """The NULL-terminated C array of llama_model_imatrix_data llama.cpp reads (kept alive by caller)."""
    import llama_cpp
    import numpy as np

    entries = (llama_cpp.llama_model_imatrix_data * (len(data) + 1))()
    keep = []
    for i, (name, values) in enumerate(data.items()):
        name_b = ctypes.create_string_buffer(name.encode())
        arr = np.ascontiguousarray(values, dtype=np.float32)
        keep += [name_b, arr]
        entries[i].name = ctypes.cast(name_b, ctypes.c_char_p)
        entries[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        entries[i].size = arr.size
    entries[len(data)].name = None
    keep.append(entries)
    return entries, keep


def _overrides_array(overrides: Sequence[TensorTypeOverride]):
    import llama_cpp

    arr = (llama_cpp.llama_model_tensor_override * (len(overrides) + 1))()
    keep = [arr]
    for i, o in enumerate(overrides):
        pattern = ctypes.create_string_buffer(o.pattern.encode())
        keep.append(pattern)
        arr[i].pattern = ctypes.cast(pattern, ctypes.c_char_p)
        arr[i].type = o.type_value
    arr[len(overrides)].pattern = None
    return arr, keep


def _kv_overrides_array(values: dict[str, str | int]):
    """`quantize.imatrix.*` keys for the output, as llama-quantize records its importance matrix."""
    import llama_cpp

    arr = (llama_cpp.llama_model_kv_override * (len(values) + 1))()
    for i, (key, value) in enumerate(values.items()):
        arr[i].key = key.encode()[:127]
        if isinstance(value, int):
            arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            arr[i].value.val_i64 = value
        else:
            arr[i].tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            arr[i].value.val_str = value.encode()[:127]
    arr[len(values)].key = b""
    return arr


@dataclass
class QuantizeOptions:
    """Everything `qwq-chat quantize` can ask of llama.cpp's quantizer besides the type."""

    imatrix: Path | None = None
    auto_imatrix: bool = True
    tensor_types: Sequence[str] = ()
    output_tensor_type: str | None = None
    token_embedding_type: str | None = None
    pure: bool = False
    allow_requantize: bool = False
    keep_split: bool = False
    split_max_size: int | None = None


def quantize_gguf(
    src: Path | str,
    dst: Path | str,
    qtype: str = "Q4_K_M",
    *,
    threads: int | None = None,
    imatrix: Path | str | None = None,
    options: QuantizeOptions | None = None,
    progress: bool = False,
    log_file: Path | None = None,
    on_status: Callable[[str], None] | None = None,
) -> Path:
    """Quantize `src` (a GGUF file, or the first piece of a split one) to `dst` as `qtype`;
    returns the file written (the first piece when the output is split)."""
    import llama_cpp
    from qwq_chat.app.gguf_files import split_pieces
    from qwq_chat.convert.gguf_split import atomic_pieces, split_gguf
    from qwq_chat.convert.hf_to_gguf import temp_path_for
    from qwq_chat.convert.imatrix import load_imatrix

    opts = options or QuantizeOptions()
    if imatrix is not None:
        opts = dataclasses.replace(opts, imatrix=Path(imatrix))
    say = on_status or (lambda message: None)
    src, dst = Path(src), Path(dst)
    ftype = resolve_type(qtype)
    pieces = split_pieces(src)
    with open(pieces[0], "rb") as f:
        if f.read(4) != b"GGUF":
            raise ConvertError(
                f"{src} is not a GGUF file (convert a checkpoint with `qwq-chat convert`)"
            )
    if not dst.parent.is_dir():
        raise OutputPathError(
            f"cannot write {dst}: the directory {dst.parent} does not exist (create it first)"
        )
    if any(dst.resolve() == p.resolve() for p in pieces):
        raise OutputPathError("the output file must differ from the input file")
    if opts.keep_split and opts.split_max_size:
        raise ConvertError("--keep-split and --split-max-size exclude each other: choose one")
    tensors = model_tensors(pieces)
    _check_requantize(src, tensors, opts.allow_requantize, say)
    overrides = parse_tensor_types(opts.tensor_types, tensors)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    params.allow_requantize = opts.allow_requantize
    params.pure = opts.pure
    params.keep_split = opts.keep_split and len(pieces) > 1
    if opts.output_tensor_type:
        params.output_tensor_type = ggml_type(opts.output_tensor_type, "--output-tensor-type")
    if opts.token_embedding_type:
        params.token_embedding_type = ggml_type(opts.token_embedding_type, "--token-embedding-type")

    imatrix_path = opts.imatrix
    if imatrix_path is None and opts.auto_imatrix and is_low_bit(qtype):
        imatrix_path = auto_imatrix(pieces, threads=threads, progress=progress, on_status=say)
    keep: list[object] = []
    if imatrix_path is not None:
        im = load_imatrix(Path(imatrix_path))
        check_imatrix_fits(im.values, tensors, Path(imatrix_path))
        entries, held = _imatrix_array(im.values)
        keep += held
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
        kv = _kv_overrides_array(
            {
                "quantize.imatrix.file": str(imatrix_path),
                "quantize.imatrix.dataset": im.datasets[-1] if im.datasets else "",
                "quantize.imatrix.entries_count": len(im.values),
                "quantize.imatrix.chunks_count": im.chunk_count,
            }
        )
        keep.append(kv)
        params.kv_overrides = ctypes.cast(kv, ctypes.POINTER(llama_cpp.llama_model_kv_override))
    if overrides:
        arr, held = _overrides_array(overrides)
        keep += held
        params.tt_overrides = ctypes.cast(
            arr, ctypes.POINTER(llama_cpp.llama_model_tensor_override)
        )
    if log_file is None:
        from qwq_chat.app.paths import log_dir

        log_file = log_dir() / "quantize.log"

    warnings: list[str] = []

    def run(target: Path) -> None:
        # With keep_split llama.cpp names the pieces `PREFIX-0000i-of-0000n.gguf` itself.
        name = str(target.with_suffix("")) if params.keep_split else str(target)
        with (
            _quant_progress(progress, qtype.upper()) as on_tensor,
            _capture_llama_log(log_file, on_tensor, warnings),
        ):
            rc = llama_cpp.llama_model_quantize(
                str(pieces[0]).encode(), name.encode(), ctypes.byref(params)
            )
        if rc != 0:
            hint = ""
            if any("requires an imatrix" in w for w in warnings):
                hint = ": this type needs an importance matrix (pass --imatrix FILE, or leave "
                hint += "out --no-imatrix to compute one)"
            raise ConvertError(
                f"llama.cpp could not quantize {src} to {qtype.upper()} (code {rc}){hint}; "
                f"its log is in {log_file}"
            )

    try:
        if opts.split_max_size:  # llama.cpp writes one file; it is then cut into pieces
            single = temp_path_for(dst.with_name(dst.stem + ".single.gguf"))
            try:
                run(single)
                files = split_gguf(single, dst, opts.split_max_size)
            finally:
                single.unlink(missing_ok=True)
        else:
            with atomic_pieces(dst) as out:
                run(out.tmp)
            files = out.files
    finally:
        del keep
    for line in warnings:
        say(f"llama.cpp: {line} (the tensor widths do not fit the type's blocks)")
    return files[0]


def _check_requantize(
    src: Path, tensors: dict[str, TensorInfo], allowed: bool, say: Callable[[str], None]
) -> None:
    quantized = sorted(
        {t.type_name for t in tensors.values() if t.is_matrix and t.type_name not in UNQUANTIZED}
    )
    if not quantized:
        return
    if not allowed:
        raise ConvertError(
            f"{src} is already quantized ({', '.join(quantized)}): quantizing it again loses "
            "more quality than quantizing the bf16/f16 file. Use that file, or pass "
            "--allow-requantize to do it anyway"
        )
    say(
        f"warning: requantizing {src.name}, already {', '.join(quantized)}: quality suffers "
        "compared with quantizing the bf16/f16 file"
    )


def auto_imatrix(
    pieces: Sequence[Path],
    *,
    threads: int | None = None,
    progress: bool = False,
    on_status: Callable[[str], None] | None = None,
) -> Path:
    """An importance matrix for the model from the shipped calibration text, computed once and
    kept in the cache directory (keyed by the model files and the text)."""
    from qwq_chat.app.paths import cache_dir
    from qwq_chat.convert.calibration import CALIBRATION_ASSET, shipped
    from qwq_chat.convert.imatrix import compute_imatrix

    say = on_status or (lambda message: None)
    h = hashlib.sha256()
    for p in pieces:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(shipped(CALIBRATION_ASSET).read_bytes())
    h.update(f"{AUTO_IMATRIX_N_CTX}|{AUTO_IMATRIX_MAX_CHUNKS}".encode())
    folder = cache_dir() / "imatrix"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pieces[0].stem}-{h.hexdigest()[:16]}.gguf"
    if path.is_file():
        say(
            f"no --imatrix given: using the one computed earlier from the shipped calibration text ({path})"
        )
        return path
    say(
        "no --imatrix given: computing one from the shipped calibration text first (low-bit "
        f"types lose much less quality with it); it is kept in {path}. Pass --imatrix FILE to "
        "use your own, or --no-imatrix to skip"
    )
    compute_imatrix(
        pieces[0],
        path,
        n_ctx=AUTO_IMATRIX_N_CTX,
        max_chunks=AUTO_IMATRIX_MAX_CHUNKS,
        threads=threads,
        progress=progress,
        on_status=say,
    )
    return path


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
