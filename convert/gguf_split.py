"""Split GGUF files, as llama.cpp writes and loads them: `NAME-00001-of-00003.gguf`, ...

The Hugging Face Hub refuses files over 50 GB and QwQ-32B in bf16 is 65 GB, so big models travel in
pieces. Each piece is a GGUF file holding some of the tensors and the keys `split.no` (0-based),
`split.count` and `split.tensors.count`; the first piece also holds all the model's metadata.
llama.cpp loads the whole model when given the first piece (it derives the other names from it),
so that is the file to pass to `qwq-chat`, `verify` and llama.cpp's own tools.

Pieces are written under temporary names beside the output and renamed once all are complete, so a
failure never leaves a partial set behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from qwq_chat.app.gguf_files import PIECE_RE, piece_name
from qwq_chat.convert.errors import ConvertError

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(I?B?)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def parse_size(text: str) -> int:
    """`45G` -> 45_000_000_000 bytes (decimal units as llama.cpp's --split-max-size; `45GiB`: binary)."""
    match = _SIZE_RE.match(text)
    if not match or float(match.group(1)) <= 0:
        raise ConvertError(f"--split-max-size {text!r} is not a size: write e.g. 45G, 500M or 2GiB")
    unit = match.group(2).upper()
    binary = match.group(3).upper().startswith("I")
    scale = 1024 ** list(_SIZE_UNITS).index(unit) if binary else _SIZE_UNITS[unit]
    return int(float(match.group(1)) * scale)


def _temp_base(out_path: Path) -> Path:
    return out_path.with_name(f".{out_path.stem}.{os.getpid()}.partial.gguf")


def _temp_pieces(tmp: Path) -> list[Path]:
    return sorted(tmp.parent.glob(f"{tmp.stem}-*-of-*.gguf"))


@dataclass
class PieceOutput:
    """A write in progress: `tmp` is the path to write; `files` lists the final files after it."""

    tmp: Path
    files: list[Path] = field(default_factory=list)


@contextmanager
def atomic_pieces(out_path: Path) -> Iterator[PieceOutput]:
    """Yield a temporary `.gguf` path to write (one file, or pieces named after it as gguf-py and
    llama.cpp name them); on success rename the file or every piece onto `out_path`'s names
    (`model.gguf` or `model-00001-of-00003.gguf`, ...), on failure remove them all."""
    out = PieceOutput(_temp_base(out_path))
    try:
        yield out
        pieces = _temp_pieces(out.tmp)
        if not pieces:
            os.replace(out.tmp, out_path)
            out.files = [out_path]
            return
        for piece in pieces:
            match = PIECE_RE.match(piece.name)
            assert match is not None
            final = out_path.with_name(
                piece_name(out_path.stem, int(match["no"]) - 1, int(match["count"]))
            )
            os.replace(piece, final)
            out.files.append(final)
    except BaseException:
        out.tmp.unlink(missing_ok=True)
        for piece in _temp_pieces(out.tmp):
            piece.unlink(missing_ok=True)
        raise


def _copy_fields(reader, writer) -> None:
    """Every key of a GGUF file (read with gguf-py) into a writer, types kept; split keys and the
    architecture (the writer sets it) are left out."""
    import gguf

    for name, kv in reader.fields.items():
        if name.startswith(("GGUF.", "split.")) or name == gguf.Keys.General.ARCHITECTURE:
            continue
        vtype = kv.types[0]
        sub_type = kv.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        if name == gguf.Keys.General.ALIGNMENT:
            writer.data_alignment = int(kv.contents())
        writer.add_key_value(name, kv.contents(), vtype, sub_type=sub_type)


def split_gguf(src: Path | str, out_path: Path | str, max_bytes: int) -> list[Path]:
    """Rewrite the single GGUF file `src` as pieces of at most `max_bytes` of tensor data each
    (a bigger tensor gets a piece of its own); returns the files written. A model that fits in one
    piece is written as one plain file, as gguf-py and llama.cpp do."""
    import gguf
    import numpy as np

    src, out_path = Path(src), Path(out_path)
    reader = gguf.GGUFReader(src)
    arch_field = reader.fields.get(gguf.Keys.General.ARCHITECTURE)
    arch = arch_field.contents() if arch_field is not None else ""
    with atomic_pieces(out_path) as out:
        data_bytes = sum(int(t.n_bytes) for t in reader.tensors)
        writer = gguf.GGUFWriter(
            out.tmp, arch=arch, split_max_size=max_bytes if data_bytes > max_bytes else 0
        )
        try:
            _copy_fields(reader, writer)
            for t in reader.tensors:
                # gguf-py wants numpy (row-major) order; GGUF stores ggml order (ne0 first).
                shape = [int(d) for d in reversed(t.shape.tolist())]
                writer.add_tensor_info(
                    t.name, shape, np.dtype(np.float32), int(t.n_bytes), raw_dtype=t.tensor_type
                )
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            by_name = {t.name: t for t in reader.tensors}
            for fout, infos in zip(writer.fout, writer.tensors, strict=True):
                for name in infos:
                    data = np.ascontiguousarray(by_name[name].data)
                    writer.write_padding(fout, fout.tell())
                    fout.write(memoryview(data).cast("B"))
                    writer.write_padding(fout, data.nbytes)
                fout.flush()
        finally:
            writer.close()
    return out.files
