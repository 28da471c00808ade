"""Read ggml graph tensors from Python, inside llama.cpp's eval callback (`cb_eval`).

llama-cpp-python exposes the callback but not `struct ggml_tensor`, so its layout is mirrored here
from ggml.h of the bundled llama.cpp. `check_layout()` compares the mirror's size with the one the
library reports (`ggml_tensor_overhead()` minus ggml's 32-byte object header) so a build whose
layout differs fails with a clear message instead of reading garbage. Op names come from ggml
itself (`ggml_op_name`), never from enum values that change between versions.
"""

from __future__ import annotations

import ctypes
from functools import cache

import numpy as np
from qwq_chat.convert.errors import ConvertError

GGML_MAX_DIMS = 4
GGML_MAX_SRC = 10
GGML_MAX_NAME = 64
GGML_OBJECT_SIZE = 32  # struct ggml_object: offs, size, next, type, padding[4]
GGML_TYPE_F32 = 0


class GgmlTensor(ctypes.Structure):
    """`struct ggml_tensor` (ggml/include/ggml.h)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("buffer", ctypes.c_void_p),
        ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
        ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
        ("op", ctypes.c_int),
        ("op_params", ctypes.c_int32 * 16),
        ("flags", ctypes.c_int32),
        ("src", ctypes.c_void_p * GGML_MAX_SRC),
        ("view_src", ctypes.c_void_p),
        ("view_offs", ctypes.c_size_t),
        ("data", ctypes.c_void_p),
        ("name", ctypes.c_char * GGML_MAX_NAME),
        ("extra", ctypes.c_void_p),
        ("padding", ctypes.c_char * 8),
    ]


@cache
def _lib() -> ctypes.CDLL:
    """llama-cpp-python's libllama handle; ggml's symbols resolve through its dependencies."""
    from llama_cpp import llama_cpp

    lib = llama_cpp._lib
    lib.ggml_op_name.restype = ctypes.c_char_p
    lib.ggml_op_name.argtypes = [ctypes.c_int]
    lib.ggml_nbytes.restype = ctypes.c_size_t
    lib.ggml_nbytes.argtypes = [ctypes.c_void_p]
    lib.ggml_tensor_overhead.restype = ctypes.c_size_t
    lib.ggml_tensor_overhead.argtypes = []
    lib.ggml_backend_buffer_is_host.restype = ctypes.c_bool
    lib.ggml_backend_buffer_is_host.argtypes = [ctypes.c_void_p]
    lib.ggml_backend_tensor_get.restype = None
    lib.ggml_backend_tensor_get.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_size_t,
    ]
    return lib


def check_layout() -> None:
    """Refuse to run when this build's `struct ggml_tensor` is not the one mirrored here."""
    expected = _lib().ggml_tensor_overhead() - GGML_OBJECT_SIZE
    if ctypes.sizeof(GgmlTensor) != expected:
        raise ConvertError(
            f"this llama-cpp-python build's ggml tensor layout ({expected} bytes) is not the one "
            f"qwq-chat reads ({ctypes.sizeof(GgmlTensor)} bytes); install llama-cpp-python "
            "0.3.36 or use llama.cpp's own llama-imatrix"
        )


@cache
def op_name(op: int) -> str:
    """`MUL_MAT`, `MUL_MAT_ID`, ... for a ggml op value of this build."""
    name = _lib().ggml_op_name(op)
    return name.decode() if name else f"OP_{op}"


def tensor_at(address: int) -> GgmlTensor:
    return GgmlTensor.from_address(address)


def weight_name(raw: bytes) -> str:
    """The weight's GGUF name from a graph tensor name (`CUDA0#blk.0.attn_k.weight#0` ->
    `blk.0.attn_k.weight`), as llama-imatrix filters it."""
    name = raw.decode("utf-8", errors="replace")
    if "#" in name:
        name = name.split("#", 2)[1]
    return name


def read_f32(address: int) -> np.ndarray:
    """An F32 tensor's values as an array of shape (ne3, ne2, ne1, ne0) honouring its strides;
    copied from device memory when the tensor is not in host memory."""
    t = tensor_at(address)
    if t.type != GGML_TYPE_F32:
        raise ValueError(f"tensor {weight_name(t.name)} is not F32")
    lib = _lib()
    nbytes = lib.ggml_nbytes(address)
    if t.buffer and not lib.ggml_backend_buffer_is_host(t.buffer):
        raw = np.empty(nbytes, dtype=np.uint8)
        lib.ggml_backend_tensor_get(address, raw.ctypes.data, 0, nbytes)
    else:
        raw = np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(t.data))
    shape = tuple(int(t.ne[i]) for i in reversed(range(GGML_MAX_DIMS)))
    strides = tuple(int(t.nb[i]) for i in reversed(range(GGML_MAX_DIMS)))
    return np.ndarray(shape, dtype=np.float32, buffer=raw, strides=strides)
