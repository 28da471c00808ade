"""The fast GGUF header reader agrees with gguf-py's reader on real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tiny256
from qwq_chat.convert.errors import ConvertError
from qwq_chat.convert.gguf_info import read_info, read_tensor

tiny256_bf16 = tiny256.tiny256_bf16
tiny256_checkpoint = tiny256.tiny256_checkpoint
tiny256_q4_k_m = tiny256.tiny256_q4_k_m


def test_same_keys_and_tensors_as_gguf_py(tiny256_q4_k_m: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(tiny256_q4_k_m)
    info = read_info(tiny256_q4_k_m)
    fields = {k: f for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    assert set(info.kv) == set(fields)
    for key, field in fields.items():
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            assert info.kv[key] == len(field.data), key  # arrays: their length
        else:
            assert info.kv[key] == pytest.approx(field.contents()), key
    assert [(t.name, t.shape, t.type_name) for t in info.tensors] == [
        (t.name, tuple(int(d) for d in t.shape), t.tensor_type.name) for t in reader.tensors
    ]
    assert info.data_start == reader.data_offset


def test_read_tensor_values(tmp_path: Path) -> None:
    """F32, F16 and BF16 tensors written with gguf-py come back with their values and shapes."""
    import gguf

    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 5)).astype(np.float32)
    b = rng.standard_normal((4, 2)).astype(np.float16)
    c = rng.standard_normal((2, 6)).astype(np.float32)
    c_bf16 = (c.view(np.uint32) >> 16).astype(np.uint16)  # truncated to bf16
    path = tmp_path / "t.gguf"
    writer = gguf.GGUFWriter(path, arch="test")
    writer.add_tensor("a", a)
    writer.add_tensor("b", b)
    writer.add_tensor("c", c_bf16, raw_dtype=gguf.GGMLQuantizationType.BF16)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    np.testing.assert_array_equal(read_tensor(path, "a"), a)
    np.testing.assert_array_equal(read_tensor(path, "b"), b.astype(np.float32))
    expected = (c_bf16.astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(read_tensor(path, "c"), expected)
    with pytest.raises(ConvertError, match="no tensor d"):
        read_tensor(path, "d")


def test_truncated_and_foreign_files(tiny256_bf16: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(tiny256_bf16.read_bytes()[:5000])
    with pytest.raises(ConvertError, match="truncated"):
        read_info(cut)
    other = tmp_path / "notes.gguf"
    other.write_text("hello")
    with pytest.raises(ConvertError, match="not a GGUF file"):
        read_info(other)
