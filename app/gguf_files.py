"""Which files make up a GGUF model: one file, or the pieces of a split model.

llama.cpp writes and loads split models as `NAME-00001-of-00003.gguf`, ... and is given the first
piece (it derives the other names). The chat (`--model`, `models list`) and convert (`quantize`,
`verify`, `imatrix`) both need to know a model's pieces, so the naming rule lives here, once.
"""

from __future__ import annotations

import re
from pathlib import Path

from qwq_chat.app.errors import UserError

# llama.cpp's llama_split_path format ("%s-%05d-of-%05d.gguf"); gguf-py's SHARD_NAME_FORMAT too.
PIECE_RE = re.compile(r"^(?P<prefix>.+)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def piece_name(prefix: str, index: int, count: int) -> str:
    """File name of piece `index` (0-based) of `count`."""
    return f"{prefix}-{index + 1:05d}-of-{count:05d}.gguf"


def is_later_piece(path: Path | str) -> bool:
    """True for piece 2, 3, ... of a split model (listed and loaded through its first piece)."""
    match = PIECE_RE.match(Path(path).name)
    return match is not None and int(match["no"]) != 1


def unsplit_name(name: str) -> str:
    """`m-Q8_0-00001-of-00003.gguf` -> `m-Q8_0.gguf`; other names unchanged."""
    match = PIECE_RE.match(name)
    return f"{match['prefix']}.gguf" if match else name


def piece_files(path: Path | str) -> list[Path]:
    """Every file name of the model `path` (a single file, or any piece of a split model) belongs
    to, in order, whether present or not."""
    path = Path(path)
    match = PIECE_RE.match(path.name)
    if match is None:
        return [path]
    count = int(match["count"])
    return [path.with_name(piece_name(match["prefix"], i, count)) for i in range(count)]


def split_pieces(path: Path | str) -> list[Path]:
    """All files of the model `path` names, in order: `[path]` for a single file, every piece for
    the first piece of a split model. Raises a UserError naming a missing piece, or when `path`
    is a later piece (llama.cpp must be given the first)."""
    path = Path(path)
    match = PIECE_RE.match(path.name)
    if match is None:
        if not path.is_file():
            raise UserError(f"{path} does not exist: give a GGUF model file")
        return [path]
    no, count = int(match["no"]), int(match["count"])
    if count < 1 or not 1 <= no <= count:
        raise UserError(f"{path.name} is not a valid split-file name (piece {no} of {count})")
    pieces = piece_files(path)
    first = pieces[0]
    if no != 1:
        raise UserError(
            f"{path.name} is piece {no} of a split model: pass its first piece, {first.name}"
        )
    missing = [p.name for p in pieces if not p.is_file()]
    if missing:
        raise UserError(
            f"split model {first.name} is incomplete: {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing from {path.parent} "
            f"(all {count} pieces must sit side by side; download or copy the missing ones)"
        )
    return pieces


def model_size(path: Path | str) -> int:
    """Bytes on disk of a model, all pieces together."""
    return sum(p.stat().st_size for p in split_pieces(path))
