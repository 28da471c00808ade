"""Errors for bad conversion input: each says what is wrong and what to do (see qwq_chat.app.errors)."""

from __future__ import annotations

from qwq_chat.app.errors import UserError


class ConvertError(UserError):
    """The checkpoint, GGUF file or options given to convert/quantize/verify cannot be used."""


class CheckpointError(ConvertError):
    """The Hugging Face checkpoint directory is incomplete or damaged."""


class UnsupportedModelError(ConvertError):
    """The checkpoint is a model family this converter does not handle."""


class OutputPathError(ConvertError):
    """The output file cannot be written where asked."""


class QuantTypeError(ConvertError):
    """The requested quantization type is not one llama.cpp offers."""


class VerificationFailed(ConvertError):
    """`qwq-chat verify` found a parity check outside its threshold."""

    exit_code = 1
