"""Hugging Face Qwen2-family checkpoint -> GGUF file that llama.cpp loads.

Handles `Qwen2ForCausalLM` checkpoints (QwQ-32B, Qwen2.5, DeepSeek-R1-Distill-Qwen). The flow:

1. `load_checkpoint` checks everything up front (config, tokenizer files, every shard's header and
   size), so bad input fails before an output file exists.
2. `plan_tensors` maps HF names to GGUF names (gguf-py's TensorNameMap for the qwen2 architecture)
   and picks each tensor's output type: 1-D tensors (norms, biases) are always F32.
3. `convert_checkpoint` writes metadata and tensor infos with gguf-py's GGUFWriter, then streams
   tensor data row block by row block from the shards into a temporary file beside the output, and
   renames it at the end. Memory use is one reusable read buffer plus its converted copy, whatever
   the model size.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qwq_chat.convert.errors import (
    CheckpointError,
    ConvertError,
    OutputPathError,
    UnsupportedModelError,
)
from qwq_chat.convert.safetensors_io import DTYPES, TensorEntry, read_header, read_rows

SUPPORTED_ARCHITECTURES = ("Qwen2ForCausalLM",)
SUPPORTED_MODELS = "Qwen2ForCausalLM (QwQ-32B, Qwen2.5, DeepSeek-R1-Distill-Qwen)"
OUTTYPES = ("auto", "bf16", "f16", "f32", "q8_0")
# Files the tokenizer metadata is read from; tokenizer.json holds the vocabulary and merges.
REQUIRED_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
# HF tensors that carry no weights llama.cpp needs (precomputed RoPE tables in old checkpoints).
IGNORED_TENSOR_SUFFIXES = (".rotary_emb.inv_freq",)
# Size of the reusable read buffer: large enough for fast sequential reads, small next to a model.
CHUNK_BYTES = 64 * 1024 * 1024
# Source bytes per block when values are converted (bf16 -> f16, q8_0, ...).
CONVERT_BLOCK_BYTES = 4 * 1024 * 1024


@dataclass
class Checkpoint:
    """A validated HF checkpoint directory: its config and the location of every tensor."""

    path: Path
    config: dict
    tensors: list[TensorEntry]

    @property
    def num_layers(self) -> int:
        return int(self.config["num_hidden_layers"])


@dataclass(frozen=True)
class PlannedTensor:
    """One output tensor: where its data comes from and what type it is written as."""

    source: TensorEntry
    name: str
    qtype: object  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        import gguf

        block, type_size = gguf.GGML_QUANT_SIZES[self.qtype]
        return self.source.n_elements // block * type_size


def load_checkpoint(src_dir: Path) -> Checkpoint:
    """Read and check a checkpoint directory; raise a CheckpointError saying what to fix."""
    src = Path(src_dir)
    if not src.is_dir():
        raise CheckpointError(f"{src} is not a directory: pass a Hugging Face checkpoint folder")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise CheckpointError(
            f"{src} has no config.json: pass the folder of a Hugging Face checkpoint "
            "(the one with config.json, tokenizer.json and *.safetensors)"
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config_path} is not valid JSON ({exc})") from exc
    archs = config.get("architectures") or []
    if not any(a in SUPPORTED_ARCHITECTURES for a in archs):
        raise UnsupportedModelError(
            f"{src} is a {', '.join(archs) or config.get('model_type', 'unknown')} model; "
            f"this converter supports {SUPPORTED_MODELS}. For other models use llama.cpp's "
            "convert_hf_to_gguf.py"
        )
    missing = [name for name in REQUIRED_TOKENIZER_FILES if not (src / name).is_file()]
    if missing:
        raise CheckpointError(
            f"{src} lacks the tokenizer file(s) {', '.join(missing)}: copy them from the model's "
            "repository (e.g. `huggingface-cli download REPO tokenizer.json tokenizer_config.json`)"
        )
    return Checkpoint(src, config, _locate_tensors(src))


def _locate_tensors(src: Path) -> list[TensorEntry]:
    index_path = src / "model.safetensors.index.json"
    if index_path.is_file():
        weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        shard_names = sorted(set(weight_map.values()))
    else:
        weight_map = None
        shard_names = sorted(p.name for p in src.glob("*.safetensors"))
    if not shard_names:
        raise CheckpointError(f"{src} has no *.safetensors weights (PyTorch .bin is not supported)")
    entries: dict[str, TensorEntry] = {}
    for shard in shard_names:
        path = src / shard
        if not path.is_file():
            raise CheckpointError(
                f"shard {shard} listed in {index_path.name} is missing from {src}: download it"
            )
        for entry in read_header(path):
            entries[entry.name] = entry
    if weight_map is not None:
        lost = sorted(set(weight_map) - set(entries))
        if lost:
            raise CheckpointError(
                f"{len(lost)} tensor(s) listed in {index_path.name} are not in their shards "
                f"(first: {lost[0]}): the checkpoint is incomplete, download it again"
            )
    return list(entries.values())


def resolve_outtype(ckpt: Checkpoint, outtype: str) -> str:
    """`auto` keeps a 16-bit checkpoint's type; f32 checkpoints become f16, as llama.cpp does."""
    outtype = outtype.lower()
    if outtype not in OUTTYPES:
        raise ConvertError(f"unknown --outtype {outtype!r}; choose one of {', '.join(OUTTYPES)}")
    if outtype != "auto":
        return outtype
    dtypes = {t.dtype for t in ckpt.tensors if len(t.shape) > 1}
    if "BF16" in dtypes:
        return "bf16"
    return "f16"


def plan_tensors(ckpt: Checkpoint, outtype: str) -> list[PlannedTensor]:
    """GGUF name and output type for every tensor; unknown names are an error, not a silent drop."""
    import gguf

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, ckpt.num_layers)
    matrix_type = {
        "bf16": gguf.GGMLQuantizationType.BF16,
        "f16": gguf.GGMLQuantizationType.F16,
        "f32": gguf.GGMLQuantizationType.F32,
        "q8_0": gguf.GGMLQuantizationType.Q8_0,
    }[outtype]
    planned = []
    for entry in ckpt.tensors:
        if entry.name.endswith(IGNORED_TENSOR_SUFFIXES):
            continue
        name = name_map.get_name(entry.name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedModelError(
                f"tensor {entry.name} ({entry.path.name}) has no qwen2 GGUF name: this checkpoint "
                f"is not a plain {SUPPORTED_MODELS}. Merge adapters first, or use llama.cpp's "
                "convert_hf_to_gguf.py"
            )
        qtype = matrix_type if len(entry.shape) >= 2 else gguf.GGMLQuantizationType.F32
        if qtype == gguf.GGMLQuantizationType.Q8_0 and entry.shape[-1] % 32:
            qtype = (
                gguf.GGMLQuantizationType.F16
            )  # Q8_0 blocks are 32 wide; llama.cpp does the same
        planned.append(PlannedTensor(entry, name, qtype, entry.shape))
    names = {p.name for p in planned}
    for required in ("token_embd.weight", "output_norm.weight", "blk.0.attn_q.weight"):
        if required not in names:
            raise CheckpointError(f"{ckpt.path} has no tensor for {required}: it is incomplete")
    planned.sort(key=_tensor_order)
    return planned


def _tensor_order(p: PlannedTensor) -> tuple[int, str]:
    if p.name.startswith("blk."):
        return (1 + int(p.name.split(".")[1]), p.name)
    return (0 if p.name.startswith("token_embd") else 1_000_000, p.name)


def _file_type(outtype: str):
    import gguf

    return {
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "f32": gguf.LlamaFileType.ALL_F32,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[outtype]


def rope_settings(config: dict) -> dict:
    """RoPE parameters from either config style: transformers 5 `rope_parameters` or legacy keys."""
    params = dict(config.get("rope_scaling") or {})
    params.update(config.get("rope_parameters") or {})
    params.setdefault("rope_theta", config.get("rope_theta", 10000.0))
    params["rope_type"] = params.get("rope_type") or params.get("type") or "default"
    return params


def write_metadata(writer, ckpt: Checkpoint, outtype: str) -> None:
    """Architecture, RoPE, tokenizer and chat-template keys, as llama.cpp's loader reads them."""
    import gguf

    cfg = ckpt.config
    writer.add_type("model")
    _write_general(writer, ckpt)
    writer.add_block_count(ckpt.num_layers)
    writer.add_context_length(int(cfg.get("max_position_embeddings", 32768)))
    writer.add_embedding_length(int(cfg["hidden_size"]))
    writer.add_feed_forward_length(int(cfg["intermediate_size"]))
    writer.add_head_count(int(cfg["num_attention_heads"]))
    writer.add_head_count_kv(int(cfg.get("num_key_value_heads", cfg["num_attention_heads"])))
    writer.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    rope = rope_settings(cfg)
    writer.add_rope_freq_base(float(rope["rope_theta"]))
    if rope["rope_type"] == "yarn":
        writer.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        writer.add_rope_scaling_factor(float(rope["factor"]))
        writer.add_rope_scaling_orig_ctx_len(int(rope["original_max_position_embeddings"]))
    elif rope["rope_type"] == "linear":
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(rope["factor"]))
    elif rope["rope_type"] != "default":
        raise UnsupportedModelError(
            f"RoPE scaling type {rope['rope_type']!r} is not supported for qwen2 "
            "(supported: none, linear, yarn)"
        )
    writer.add_file_type(_file_type(outtype))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _write_vocab(writer, ckpt)


def _write_general(writer, ckpt: Checkpoint) -> None:
    """general.* keys as llama.cpp's convert_hf_to_gguf.py writes them, through the same gguf-py
    `Metadata` it uses: name, basename, finetune, version and size label from the folder name
    and parameter count, license/tags/languages/base models from the model card (README.md), and
    the recommended sampling (general.sampling.*) from generation_config.json.
    """
    import gguf

    total = sum(t.n_elements for t in ckpt.tensors if not t.name.endswith(IGNORED_TENSOR_SUFFIXES))
    try:
        meta = gguf.Metadata.load(None, ckpt.path, None, total)
    except Exception as exc:  # noqa: BLE001 - a malformed model card or generation config
        raise CheckpointError(
            f"{ckpt.path}: cannot read the model card or generation_config.json ({exc}); fix or "
            "remove the broken file"
        ) from exc
    gen_path = ckpt.path / "generation_config.json"
    if meta.sampling_penalty_repeat is None and gen_path.is_file():
        # Older gguf-py releases read only `penalty_repeat`; llama.cpp's converter also takes
        # transformers' name for it.
        gen = json.loads(gen_path.read_text(encoding="utf-8"))
        if isinstance(gen.get("repetition_penalty"), int | float):
            meta.sampling_penalty_repeat = float(gen["repetition_penalty"])
    if meta.name is None:
        meta.name = ckpt.path.name
    if meta.size_label is None and total > 0:
        meta.size_label = gguf.size_label(total, total, 0, 0)
    meta.set_gguf_meta_model(writer)


def _write_vocab(writer, ckpt: Checkpoint) -> None:
    """gpt2-style BPE vocabulary, merges, special ids and chat template, from one parse of each file.

    (gguf-py's SpecialVocab does the same but parses the 11 MB tokenizer.json a second time.)
    """
    import gguf

    tok = json.loads((ckpt.path / "tokenizer.json").read_text(encoding="utf-8"))
    model = tok.get("model") or {}
    if model.get("type") != "BPE" or not isinstance(model.get("vocab"), dict):
        raise UnsupportedModelError(
            f"{ckpt.path / 'tokenizer.json'} is not a byte-level BPE tokenizer; "
            f"supported: {SUPPORTED_MODELS}"
        )
    vocab_size = int(ckpt.config.get("vocab_size", 0))
    by_id: dict[int, tuple[str, int]] = {}
    for text, idx in model["vocab"].items():
        by_id[int(idx)] = (text, gguf.TokenType.NORMAL)
    for added in tok.get("added_tokens", []):
        content = added["content"]
        looks_control = content.startswith("<|") and content.endswith("|>")
        kind = (
            gguf.TokenType.CONTROL
            if added.get("special") or looks_control
            else gguf.TokenType.USER_DEFINED
        )
        by_id[int(added["id"])] = (content, kind)
    vocab_size = max(vocab_size, max(by_id) + 1)
    tokens, types = [], []
    for i in range(vocab_size):
        text, kind = by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED))
        tokens.append(text)
        types.append(kind)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    if not merges:
        raise CheckpointError(f"{ckpt.path / 'tokenizer.json'} has no BPE merges: it is damaged")
    writer.add_token_merges(merges)
    tc = json.loads((ckpt.path / "tokenizer_config.json").read_text(encoding="utf-8"))
    ids = {text: i for i, (text, _) in by_id.items()}
    for kind, fallback_key in (
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("pad", "pad_token_id"),
    ):
        token_id = _special_token_id(tc.get(f"{kind}_token"), ids)
        if token_id is None:
            token_id = _config_token_id(ckpt.config.get(fallback_key))
        if token_id is not None and 0 <= token_id < vocab_size:
            getattr(writer, f"add_{kind}_token_id")(token_id)
    flags = _add_special_flags(tok, tc)
    # Qwen models must not get a BOS; llama.cpp would guess from the vocabulary type if unset.
    writer.add_add_bos_token(flags.pop("bos", False))
    for kind, value in flags.items():
        getattr(writer, f"add_add_{kind}_token")(value)
    template = _chat_template(ckpt.path, tc)
    if template is None:
        raise CheckpointError(
            f"{ckpt.path} has no chat template (tokenizer_config.json `chat_template` or "
            "chat_template.jinja): copy it from the model's repository"
        )
    writer.add_chat_template(template)


def _add_special_flags(tok: dict, tc: dict) -> dict[str, bool]:
    """Whether the tokenizer adds BOS/EOS/SEP itself, by the rules of gguf-py's SpecialVocab
    (what llama.cpp's converter writes as tokenizer.ggml.add_*_token): the tokenizer.json
    post-processor first (ByteLevel: neither; a TemplateProcessing that starts with the BOS or
    ends with a special token: that one), then tokenizer_config's `add_bos_token`/`add_eos_token`."""
    flags: dict[str, bool] = {}
    post = tok.get("post_processor") or {}
    content = {k: _token_content(tc.get(f"{k}_token")) for k in ("bos", "eos", "cls")}
    for proc in post.get("processors", [post]):
        kind = proc.get("type")
        if kind == "ByteLevel":
            flags.setdefault("bos", False)
            flags.setdefault("eos", False)
        elif kind == "RobertaProcessing":
            flags.update(bos=True, eos=True, sep=True)
        elif kind == "TemplateProcessing" and len(proc.get("single", [])) > 1:
            first = proc["single"][0].get("SpecialToken", {}).get("id")
            last = proc["single"][-1].get("SpecialToken", {}).get("id")
            if first:  # SpecialVocab adopts it as BOS (or CLS) when one of them is unset
                flags["bos"] = first in (content["bos"], content["cls"]) or None in (
                    content["bos"],
                    content["cls"],
                )
            if last:  # ... and always adopts a trailing special token as the EOS
                flags["eos"] = True
    for kind in ("bos", "eos", "sep"):
        value = tc.get(f"add_{kind}_token")
        if isinstance(value, bool):
            flags.setdefault(kind, value)
    return flags


def _token_content(entry: object) -> str | None:
    if isinstance(entry, dict):
        entry = entry.get("content")
    return entry if isinstance(entry, str) else None


def _special_token_id(entry: object, ids: dict[str, int]) -> int | None:
    """tokenizer_config's `eos_token` etc. (a string or {"content": ...}) -> token id."""
    text = _token_content(entry)
    return ids.get(text) if text is not None else None


def _config_token_id(value: object) -> int | None:
    """config.json's `bos_token_id` etc., which may be a list (the first one counts)."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, int) else None


def _chat_template(src: Path, tc: dict) -> str | list | None:
    """The chat template, byte for byte: chat_template.jinja (newer HF layout) or tokenizer_config."""
    jinja = src / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    return tc.get("chat_template")


def _same_bytes(rows: np.ndarray) -> np.ndarray:
    """Source and output types match: the bytes are written unchanged."""
    return rows


def _copy_in_kernel(entry: TensorEntry, fout) -> bool:
    """Copy a tensor's bytes file-to-file with copy_file_range (no trip through user space).

    Returns False where the OS or filesystem pair cannot do it; the caller then reads and writes.
    """
    if not hasattr(os, "copy_file_range"):
        return False
    fout.flush()
    dst = fout.fileno()
    with open(entry.path, "rb", buffering=0) as f:
        offset, left = entry.start, entry.nbytes
        try:
            while left:
                n = os.copy_file_range(f.fileno(), dst, left, offset)
                if n == 0:
                    raise CheckpointError(f"{entry.path} ended early while reading {entry.name}")
                offset += n
                left -= n
        except OSError:
            if left != entry.nbytes:
                raise  # part of the tensor was written: cannot fall back cleanly
            return False
    # copy_file_range wrote through the descriptor; keep the Python file object's position in step.
    fout.seek(0, os.SEEK_END)
    return True


def _converter(src_dtype: str, qtype) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a block of source rows (raw numpy view) to the bytes to write for them."""
    import gguf

    Q = gguf.GGMLQuantizationType
    if (src_dtype, qtype) in (("BF16", Q.BF16), ("F16", Q.F16), ("F32", Q.F32)):
        return _same_bytes

    def to_f32(rows: np.ndarray) -> np.ndarray:
        if src_dtype == "BF16":
            return (rows.astype(np.uint32) << 16).view(np.float32)
        return rows.astype(np.float32)

    if qtype == Q.F32:
        return to_f32
    if qtype == Q.F16:
        return lambda rows: to_f32(rows).astype(np.float16)
    return lambda rows: gguf.quants.quantize(to_f32(rows), qtype)


def _check_output_path(out_path: Path) -> None:
    if out_path.is_dir():
        raise OutputPathError(f"{out_path} is a directory: give a file name ending in .gguf")
    if not out_path.parent.is_dir():
        raise OutputPathError(
            f"cannot write {out_path}: the directory {out_path.parent} does not exist "
            "(create it first)"
        )
    if not os.access(out_path.parent, os.W_OK):
        raise OutputPathError(f"cannot write {out_path}: {out_path.parent} is not writable")


def temp_path_for(out_path: Path) -> Path:
    """Where a file is built before the final rename: same directory, so the rename is atomic."""
    return out_path.with_name(f".{out_path.name}.{os.getpid()}.partial")


@contextmanager
def atomic_output(out_path: Path) -> Iterator[Path]:
    """Yield a temp path to write; renamed onto `out_path` on success, removed on any failure.

    So an interrupted or failed conversion never leaves a half-written file behind.
    """
    tmp = temp_path_for(out_path)
    try:
        yield tmp
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def convert_checkpoint(
    src_dir: Path | str,
    out_path: Path | str,
    outtype: str = "auto",
    progress: bool = False,
    split_max_size: int | None = None,
) -> Path:
    """Convert a Qwen2-family HF checkpoint to GGUF at `out_path`; returns the path written (the
    first piece, `NAME-00001-of-0000N.gguf`, when `split_max_size` bytes of tensor data per file
    make it split: see convert/gguf_split.py)."""
    import gguf
    from qwq_chat.convert.gguf_split import atomic_pieces

    out_path = Path(out_path)
    _check_output_path(out_path)
    ckpt = load_checkpoint(Path(src_dir))
    outtype = resolve_outtype(ckpt, outtype)
    planned = plan_tensors(ckpt, outtype)

    data_bytes = sum(p.nbytes for p in planned)
    with atomic_pieces(out_path) as out:
        writer = gguf.GGUFWriter(
            out.tmp,
            arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2],
            # A model that fits in one piece stays one plain file (no split keys).
            split_max_size=split_max_size if split_max_size and data_bytes > split_max_size else 0,
        )
        try:
            write_metadata(writer, ckpt, outtype)
            for p in planned:
                raw_dtype = None if p.qtype in (gguf.GGMLQuantizationType.F32,) else p.qtype
                dtype = np.float32 if raw_dtype is None else np.uint16
                writer.add_tensor_info(
                    p.name, p.shape, np.dtype(dtype), p.nbytes, raw_dtype=raw_dtype
                )
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            _stream_tensors(writer, planned, progress)
        finally:
            writer.close()
    return out.files[0]


def _stream_tensors(writer, planned: list[PlannedTensor], progress: bool) -> None:
    """Write every tensor's data, aligned as GGUF requires, one bounded block at a time, into the
    writer's file (or the piece gguf-py assigned it to when splitting)."""
    piece_of = {name: i for i, infos in enumerate(writer.tensors) for name in infos}
    max_row = max(p.source.nbytes // max(p.shape[0], 1) for p in planned if len(p.shape) > 1)
    buf = bytearray(max(CHUNK_BYTES, max_row))
    total = sum(p.source.nbytes for p in planned)
    with _progress_bar(progress, total) as advance:
        for p in planned:
            fout = writer.fout[piece_of[p.name]]
            convert = _converter(p.source.dtype, p.qtype)
            writer.write_padding(fout, fout.tell())
            if convert is _same_bytes and _copy_in_kernel(p.source, fout):
                written = p.source.nbytes
                advance(written, p.name)
            else:
                written = 0
                # Numeric conversion makes a few temporaries per block: keep blocks cache-sized.
                row_bytes = p.source.nbytes // max(p.shape[0], 1) if len(p.shape) > 1 else 1
                block_rows = 1 << 30 if convert is _same_bytes else CONVERT_BLOCK_BYTES // row_bytes
                for rows in read_rows(p.source, buf, max_rows=max(1, block_rows)):
                    out = np.ascontiguousarray(convert(rows))
                    fout.write(memoryview(out).cast("B"))
                    written += out.nbytes
                    advance(rows.nbytes, p.name)
            if written != p.nbytes:
                raise ConvertError(f"internal error: wrote {written} bytes for {p.name}")
            writer.write_padding(fout, written)
        for fout in writer.fout:
            fout.flush()


class _progress_bar:
    """A rich progress bar over source bytes, or a no-op when progress is off."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled
        self.total = total
        self._progress = None

    def __enter__(self) -> Callable[[int, str], None]:
        if not self.enabled:
            return lambda n, name: None
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]converting[/] {task.fields[tensor]:<28}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._progress.start()
        task = self._progress.add_task("convert", total=self.total, tensor="")
        progress = self._progress

        def advance(n: int, name: str) -> None:
            progress.update(task, advance=n, tensor=name)

        return advance

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


__all__ = [
    "DTYPES",
    "OUTTYPES",
    "SUPPORTED_ARCHITECTURES",
    "convert_checkpoint",
    "load_checkpoint",
    "plan_tensors",
]
