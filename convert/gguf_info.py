"""Read a GGUF file's scalar keys and tensor infos quickly, without its vocabulary arrays.

gguf-py's GGUFReader builds a numpy view for every element of every array, which takes seconds
for QwQ's 152k-token vocabulary and merges; option checks before quantizing (tensor names and
shapes, the weights' types) need none of that. This reader walks the header (GGUF v2/v3, little
endian) and skips arrays, keeping only their lengths.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path

from qwq_chat.convert.errors import ConvertError

# GGUF value types: struct format of the scalars; 8 = string, 9 = array.
_SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class TensorInfo:
    """One tensor: ggml shape (ne0, the row width, first), ggml type value, and where its data
    starts relative to the file's data section."""

    name: str
    shape: tuple[int, ...]
    type_value: int
    offset: int = 0

    @property
    def type_name(self) -> str:
        import gguf

        try:
            return gguf.GGMLQuantizationType(self.type_value).name
        except ValueError:
            return f"TYPE_{self.type_value}"

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) >= 2


@dataclass
class GgufInfo:
    """Scalar and string keys (arrays: their length), and the tensor infos, of one GGUF file."""

    kv: dict[str, object] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    data_start: int = 0  # file offset of the (aligned) tensor data section


class _Cursor:
    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str) -> object:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise ConvertError(f"{self.path} ends inside its header: the file is truncated")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = int(self.take("Q"))  # type: ignore[arg-type]
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        return raw.decode("utf-8", errors="replace")

    def value(self, vtype: int) -> object:
        if vtype in _SCALARS:
            return self.take(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            sub, n = int(self.take("I")), int(self.take("Q"))  # type: ignore[arg-type]
            if sub in _SCALARS:
                self.pos += n * struct.calcsize("<" + _SCALARS[sub])
            else:
                for _ in range(n):
                    self.value(sub)
            return n
        raise ConvertError(f"{self.path}: unknown GGUF value type {vtype}: the file is damaged")


def read_info(path: Path | str) -> GgufInfo:
    """The keys and tensor infos of one GGUF file (one piece of a split model)."""
    path = Path(path)
    info = GgufInfo()
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != b"GGUF":
                raise ConvertError(f"{path} is not a GGUF file")
            cur = _Cursor(buf, path)
            cur.pos = 4
            version = cur.take("I")
            if version not in (2, 3):
                raise ConvertError(f"{path} is GGUF version {version}; versions 2 and 3 are read")
            n_tensors, n_kv = int(cur.take("Q")), int(cur.take("Q"))  # type: ignore[arg-type]
            for _ in range(n_kv):
                key = cur.string()
                info.kv[key] = cur.value(int(cur.take("I")))  # type: ignore[arg-type]
            for _ in range(n_tensors):
                name = cur.string()
                n_dims = int(cur.take("I"))  # type: ignore[arg-type]
                shape = tuple(int(cur.take("Q")) for _ in range(n_dims))  # type: ignore[arg-type]
                type_value = int(cur.take("I"))  # type: ignore[arg-type]
                offset = int(cur.take("Q"))  # type: ignore[arg-type]
                info.tensors.append(TensorInfo(name, shape, type_value, offset))
            align = int(info.kv.get("general.alignment", 32))  # type: ignore[call-overload]
            info.data_start = -(-cur.pos // align) * align
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{path} is not a readable GGUF file ({exc})") from exc
    return info


def read_tensor(path: Path | str, name: str):  # -> np.ndarray
    """One F32/F16/BF16 tensor's values as float32, in numpy (row-major) shape."""
    import numpy as np

    info = read_info(path)
    t = next((t for t in info.tensors if t.name == name), None)
    if t is None:
        raise ConvertError(f"{path} has no tensor {name}")
    n = 1
    for d in t.shape:
        n *= d
    dtype = {0: np.float32, 1: np.float16, 30: np.uint16}.get(t.type_value)
    if dtype is None:
        raise ConvertError(f"{name} in {path} is quantized ({t.type_name}); read it with gguf-py")
    raw = np.fromfile(path, dtype=dtype, count=n, offset=info.data_start + t.offset)
    if t.type_value == 30:  # BF16: the high half of a float32
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.astype(np.float32).reshape(tuple(reversed(t.shape)))
