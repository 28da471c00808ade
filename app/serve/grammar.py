"""`response_format` -> a llama.cpp grammar for the answer (the reasoning stays free).

llama-cpp-python ships llama.cpp's JSON grammar and its JSON-schema-to-GBNF converter; the session
applies the grammar only after `</think>` (qwq_chat.app.session). The converter would fetch remote
`$ref`s over the network, so only references inside the schema (`#/...`) are accepted: nothing a
client sends makes this server read a file or open a connection.
"""

from __future__ import annotations

import json
from typing import Any

from qwq_chat.app.serve.protocol import ApiError, ResponseFormat

MAX_SCHEMA_CHARS = 64_000


def _check_refs(node: Any, where: str = "schema") -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if ref is not None and (not isinstance(ref, str) or not ref.startswith("#")):
            raise ApiError(
                400, f"{where}: only local $ref (#/...) are allowed in a schema",
                param="response_format",
            )  # fmt: skip
        for key, value in node.items():
            _check_refs(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_refs(value, f"{where}.{i}")


def grammar_for(response_format: ResponseFormat | None, engine_name: str) -> Any:
    """The grammar that constrains the answer, or None for plain text."""
    if response_format is None or response_format.type == "text":
        return None
    if engine_name != "llama":
        raise ApiError(
            400, f"response_format needs the llama backend (this server runs {engine_name})",
            param="response_format",
        )  # fmt: skip
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar, json_schema_to_gbnf

    if response_format.type == "json_object":
        return LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    spec = response_format.json_schema
    if spec is None or not spec.schema_:
        raise ApiError(
            400, "response_format.json_schema.schema is required for type json_schema",
            param="response_format",
        )  # fmt: skip
    text = json.dumps(spec.schema_)
    if len(text) > MAX_SCHEMA_CHARS:
        raise ApiError(400, "the JSON schema is too large", param="response_format")
    try:
        _check_refs(spec.schema_)
    except RecursionError:
        raise ApiError(
            400, "the JSON schema is nested too deeply", param="response_format"
        ) from None
    try:
        gbnf = json_schema_to_gbnf(text)
    except Exception as exc:  # the converter raises plain exceptions on what it cannot express
        raise ApiError(
            400, f"this JSON schema cannot be turned into a grammar: {exc}",
            param="response_format",
        ) from None  # fmt: skip
    return LlamaGrammar.from_string(gbnf, verbose=False)
