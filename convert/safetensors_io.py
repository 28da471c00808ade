"""Read safetensors shards tensor by tensor, in bounded chunks, without mapping whole files.

A safetensors file is an 8-byte little-endian header length, a JSON header
(`name -> {dtype, shape, data_offsets}`) and the raw little-endian tensor bytes. We parse the header
ourselves and read each tensor with `readinto` into one reusable buffer, so the converter's memory
stays flat whatever the model size (memory-mapping would count every touched page of a 65 GB
checkpoint towards the process's resident set until it is unmapped).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qwq_chat.convert.errors import CheckpointError

# safetensors dtype name -> (bytes per element, numpy dtype used to hold the raw bits)
DTYPES: dict[str, tuple[int, np.dtype]] = {
    "BF16": (2, np.dtype("<u2")),  # numpy has no bfloat16: keep the raw 16 bits
    "F16": (2, np.dtype("<f2")),
    "F32": (4, np.dtype("<f4")),
    "F64": (8, np.dtype("<f8")),
}


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor lives: file, absolute byte range, dtype and shape."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def read_header(path: Path) -> list[TensorEntry]:
    """Parse one shard's header and check the file really holds every byte it promises."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a safetensors file (only {size} bytes)")
        (n,) = struct.unpack("<Q", head)
        if n > 100_000_000 or 8 + n > size:
            raise CheckpointError(
                f"{path} is truncated or not a safetensors file (header of {n} bytes in a "
                f"{size}-byte file): download it again"
            )
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(
                f"{path} has a damaged header ({exc}): download it again"
            ) from exc
    base = 8 + n
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = info["dtype"]
        if dtype not in DTYPES:
            raise CheckpointError(
                f"{path}: tensor {name} has dtype {dtype}; supported: {', '.join(DTYPES)}"
            )
        begin, end = info["data_offsets"]
        shape = tuple(int(d) for d in info["shape"])
        entry = TensorEntry(name, path, dtype, shape, base + begin, base + end)
        if entry.nbytes != entry.n_elements * DTYPES[dtype][0]:
            raise CheckpointError(f"{path}: tensor {name} has inconsistent size in its header")
        entries.append(entry)
    end = max((e.end for e in entries), default=base)
    if end > size:
        raise CheckpointError(
            f"{path} is truncated: {size} bytes on disk but its header needs {end}. "
            "Download this shard again."
        )
    return entries


def read_rows(entry: TensorEntry, buf: bytearray, max_rows: int) -> Iterator[np.ndarray]:
    """Yield the tensor as consecutive row blocks (views into `buf`, valid until the next yield).

    A 1-D tensor is one row. `buf` must hold at least one row; it is reused for every block.
    """
    width, np_dtype = DTYPES[entry.dtype]
    shape = entry.shape or (1,)
    rows = shape[0] if len(shape) > 1 else 1
    row_shape = shape[1:] if len(shape) > 1 else shape
    row_bytes = entry.nbytes // rows if rows else 0
    step = max(1, min(max_rows, len(buf) // max(row_bytes, 1)))
    view = memoryview(buf)
    with open(entry.path, "rb", buffering=0) as f:
        f.seek(entry.start)
        done = 0
        while done < rows:
            n = min(step, rows - done)
            want = n * row_bytes
            got = 0
            while got < want:
                k = f.readinto(view[got:want])
                if not k:
                    raise CheckpointError(f"{entry.path} ended early while reading {entry.name}")
                got += k
            yield np.frombuffer(buf, dtype=np_dtype, count=want // width).reshape((n, *row_shape))
            done += n
