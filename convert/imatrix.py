"""Importance matrix from calibration text, computed in-process through llama.cpp.

What llama.cpp's `llama-imatrix` does, without its binary: the text is tokenized with the model's
tokenizer and cut into chunks of `n_ctx` tokens (whole chunks only; each starts with BOS when the
model adds one); each chunk runs from an empty KV cache with every position an output, and the
context's eval callback sees each matrix multiplication. For each weight `blk.*` multiplied with
at least 16 F32 activation rows, the squared activations are summed per input column
(`in_sum2[j] += x[j]^2` over every row) and the rows counted (`counts += rows`). The quantizer uses
`in_sum2 / counts`, the mean squared activation per column, to weigh its rounding error.

The file is llama.cpp's GGUF imatrix format (`general.type = imatrix`, `imatrix.datasets`,
`imatrix.chunk_count`, `imatrix.chunk_size`, tensors `NAME.in_sum2` and `NAME.counts`), which
`qwq-chat quantize --imatrix` and llama.cpp's tools read.

A long run saves its sums beside the output every minute; rerunning the same command (same model,
text and chunk size) resumes from the last saved chunk.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qwq_chat.convert.errors import ConvertError, OutputPathError

MIN_ROWS = 16  # llama-imatrix ignores multiplications with fewer activation rows
DEFAULT_N_CTX = 512
SAVE_EVERY_S = 60.0


@dataclass
class ImatrixStats:
    """Per weight: summed squared activations (one value per input column) and rows seen."""

    sums: dict[str, np.ndarray]
    counts: dict[str, int]

    @classmethod
    def empty(cls) -> ImatrixStats:
        return cls({}, {})


def accumulate(
    stats: ImatrixStats, name: str, x: np.ndarray, weight_ne2: int = 1, weight_ne3: int = 1
) -> None:
    """Add one multiplication's activations `x` (ne3, ne2, ne1 rows, ne0 columns) for weight
    `name` (ne2 x ne3 matrices), by llama-imatrix's rule for dense weights: column sums of x^2,
    activations of 3-D+ batches folded onto the matrix they multiply, one count per row."""
    ne3, ne2, ne1, ne0 = x.shape
    n_mat = weight_ne2 * weight_ne3
    acc = stats.sums.get(name)
    if acc is None:
        acc = stats.sums[name] = np.zeros(ne0 * n_mat, dtype=np.float64)
        stats.counts[name] = 0
    elif acc.size != ne0 * n_mat:
        raise ConvertError(f"inconsistent activation width for {name}: {acc.size} vs {ne0 * n_mat}")
    col_sums = np.square(x).sum(axis=2, dtype=np.float64)  # (ne3, ne2, ne0)
    for i3 in range(ne3):
        for i2 in range(ne2):
            mat = (i3 % weight_ne3) * weight_ne2 + (i2 % weight_ne2)
            acc[mat * ne0 : (mat + 1) * ne0] += col_sums[i3, i2]
    if not np.isfinite(acc).all():
        raise ConvertError(
            f"non-finite activations reached {name}: the model produces inf/NaN on this text"
        )
    stats.counts[name] += (ne1 * ne2 * ne3) // n_mat


class Collector:
    """The eval callback: picks the multiplications llama-imatrix picks and accumulates them."""

    def __init__(self, stats: ImatrixStats) -> None:
        import llama_cpp
        from qwq_chat.convert.ggml_tensor import check_layout

        check_layout()
        self.stats = stats
        self.error: BaseException | None = None
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_node)

    def _on_node(self, address: int, ask: bool, _user_data: int) -> bool:
        from qwq_chat.convert import ggml_tensor as gt

        try:
            t = gt.tensor_at(address)
            op = gt.op_name(t.op)
            if ask:
                if op != "MUL_MAT":
                    return False
                src0, src1 = gt.tensor_at(t.src[0]), gt.tensor_at(t.src[1])
                return (
                    src1.ne[1] >= MIN_ROWS
                    and src1.type == gt.GGML_TYPE_F32
                    and gt.weight_name(src0.name).startswith("blk.")
                )
            src0 = gt.tensor_at(t.src[0])
            accumulate(
                self.stats,
                gt.weight_name(src0.name),
                gt.read_f32(t.src[1]),
                int(src0.ne[2]),
                int(src0.ne[3]),
            )
            return True
        except BaseException as exc:  # noqa: BLE001 - re-raised by the caller after the chunk
            self.error = exc
            return False


@dataclass(frozen=True)
class ImatrixRun:
    path: Path
    chunks: int
    chunk_size: int
    tokens: int
    entries: int
    resumed_from: int


def compute_imatrix(
    model_path: Path | str,
    out_path: Path | str,
    *,
    text: Path | str | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    max_chunks: int | None = None,
    threads: int | None = None,
    n_gpu_layers: int | None = None,
    progress: bool = False,
    on_status: Callable[[str], None] | None = None,
) -> ImatrixRun:
    """Compute the importance matrix of `model_path` over `text` (default: the shipped
    calibration set) and write it to `out_path` (GGUF imatrix format)."""
    from qwq_chat.app.gguf_files import split_pieces
    from qwq_chat.convert.calibration import CALIBRATION_ASSET, corpus_chunks, load_corpus
    from qwq_chat.convert.hf_to_gguf import atomic_output
    from qwq_chat.convert.llama_runtime import ChunkModel

    say = on_status or (lambda message: None)
    out_path = Path(out_path)
    pieces = split_pieces(model_path)
    _check_output(out_path)
    if n_ctx < MIN_ROWS:
        raise ConvertError(f"--n-ctx must be at least {MIN_ROWS} tokens, not {n_ctx}")
    corpus = load_corpus(text, CALIBRATION_ASSET)

    stats = ImatrixStats.empty()
    collector = Collector(stats)
    with ChunkModel(
        pieces[0], n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers,
        cb_eval=collector.callback,
    ) as model:  # fmt: skip
        _refuse_moe(model)
        tokens = corpus_chunks(model, corpus, n_ctx, max_chunks)
        n_chunks = len(tokens) // n_ctx
        state = _ResumeState(out_path, _run_key(pieces, tokens, n_ctx))
        start = state.load(stats)
        if start:
            say(f"resuming from chunk {start + 1} of {n_chunks} ({state.path.name})")
        done, last_save = start, time.monotonic()
        try:
            with _chunk_progress(progress, n_chunks, start) as advance:
                for i in range(start, n_chunks):
                    try:
                        model.eval_chunk(tokens[i * n_ctx : (i + 1) * n_ctx], 0, logits=False)
                    finally:  # the callback's own error says more than "evaluation failed"
                        if collector.error is not None:
                            raise collector.error
                    done = i + 1
                    advance()
                    if time.monotonic() - last_save > SAVE_EVERY_S and done < n_chunks:
                        state.save(stats, done)
                        last_save = time.monotonic()
        except KeyboardInterrupt:
            if done > start:
                state.save(stats, done)
                say(f"interrupted: rerun the same command to resume from chunk {done + 1}")
            raise
    if not stats.sums:
        raise ConvertError(f"{model_path} ran no matrix multiplication llama-imatrix would record")
    with atomic_output(out_path) as tmp:
        write_imatrix(tmp, stats, datasets=[corpus.label], chunk_count=n_chunks, chunk_size=n_ctx)
    state.clear()
    return ImatrixRun(out_path, n_chunks, n_ctx, n_chunks * n_ctx, len(stats.sums), start)


def _check_output(out_path: Path) -> None:
    if out_path.is_dir():
        raise OutputPathError(f"{out_path} is a directory: give a file name such as imatrix.gguf")
    if not out_path.parent.is_dir():
        raise OutputPathError(
            f"cannot write {out_path}: the directory {out_path.parent} does not exist (create it first)"
        )


def _refuse_moe(model) -> None:
    arch = model.meta("general.architecture") or ""
    experts = model.meta(f"{arch}.expert_count")
    if experts and int(experts) > 0:
        raise ConvertError(
            f"{model.path.name} is a mixture-of-experts model: `qwq-chat imatrix` handles dense "
            "models; use llama.cpp's llama-imatrix for this one"
        )


def _run_key(pieces: list[Path], tokens: np.ndarray, n_ctx: int) -> str:
    """Identifies a run for resuming: the model files (name, size, mtime), the tokens, n_ctx."""
    h = hashlib.sha256()
    for p in pieces:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    h.update(tokens.astype(np.int32).tobytes())
    h.update(str(n_ctx).encode())
    return h.hexdigest()


class _ResumeState:
    """The sums so far, saved beside the output (`.NAME.resume.npz`) while a run is in progress."""

    def __init__(self, out_path: Path, key: str) -> None:
        self.path = out_path.with_name(f".{out_path.name}.resume.npz")
        self.key = key

    def load(self, stats: ImatrixStats) -> int:
        if not self.path.is_file():
            return 0
        try:
            with np.load(self.path, allow_pickle=False) as data:
                if str(data["key"]) != self.key:
                    return 0
                names = [str(n) for n in data["names"]]
                for i, name in enumerate(names):
                    stats.sums[name] = data[f"sum{i}"].astype(np.float64)
                    stats.counts[name] = int(data["counts"][i])
                return int(data["next_chunk"])
        except (OSError, ValueError, KeyError):
            stats.sums.clear()
            stats.counts.clear()
            return 0  # unreadable: start over

    def save(self, stats: ImatrixStats, next_chunk: int) -> None:
        names = sorted(stats.sums)
        arrays = {f"sum{i}": stats.sums[n] for i, n in enumerate(names)}
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(
            tmp,
            key=np.array(self.key),
            names=np.array(names),
            counts=np.array([stats.counts[n] for n in names], dtype=np.int64),
            next_chunk=np.array(next_chunk),
            **arrays,
        )
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def write_imatrix(
    path: Path, stats: ImatrixStats, *, datasets: list[str], chunk_count: int, chunk_size: int
) -> None:
    """The GGUF imatrix layout llama-imatrix writes (tensors sorted by name; one count per dense
    weight, its sums as one vector)."""
    import gguf

    writer = gguf.GGUFWriter(path, arch="")
    # llama-imatrix's files carry no architecture key; gguf-py's writer always adds one.
    writer.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE, None)
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", datasets)
    writer.add_uint32("imatrix.chunk_count", chunk_count)
    writer.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(stats.sums):
        # 1-D, as ggml stores [n, 1] tensors (trailing dimensions of 1 are dropped).
        writer.add_tensor(f"{name}.in_sum2", stats.sums[name].astype(np.float32))
        writer.add_tensor(f"{name}.counts", np.array([stats.counts[name]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@dataclass(frozen=True)
class Imatrix:
    """An importance matrix as the quantizer takes it: mean squared activation per column."""

    values: dict[str, np.ndarray]
    datasets: list[str]
    chunk_count: int


def load_imatrix(path: Path) -> Imatrix:
    """Read a GGUF importance matrix (ours or llama-imatrix's): `in_sum2 / counts` per matrix,
    flattened; a matrix (expert) that saw no calibration input gets neutral weights of 1, as in
    llama-quantize."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise ConvertError(
            f"{path} is not an importance-matrix GGUF file ({exc}); create one with "
            "`qwq-chat imatrix MODEL.gguf -o imatrix.gguf`"
        ) from exc
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    values: dict[str, np.ndarray] = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name.removesuffix(".in_sum2")
        counts = tensors.get(base + ".counts")
        if counts is None:
            raise ConvertError(f"{path}: {base}.in_sum2 has no matching {base}.counts")
        counts = counts.reshape(-1)
        rows = sums.reshape(len(counts), -1)
        safe = np.where(counts > 0, counts, 1.0).reshape(-1, 1)
        mean = np.where(counts.reshape(-1, 1) > 0, rows / safe, 1.0)
        values[base] = mean.reshape(-1).astype(np.float32)
    if not values:
        raise ConvertError(f"{path} holds no `*.in_sum2` tensors: not an importance matrix")
    datasets_field = reader.fields.get("imatrix.datasets")
    chunks_field = reader.fields.get("imatrix.chunk_count")
    return Imatrix(
        values,
        list(datasets_field.contents()) if datasets_field is not None else [],
        int(chunks_field.contents()) if chunks_field is not None else 0,
    )


@contextmanager
def _chunk_progress(enabled: bool, total: int, done: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]imatrix[/] chunks"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as bar:
        task = bar.add_task("imatrix", total=total, completed=done)
        yield lambda: bar.update(task, advance=1)
