"""Models from the Hugging Face Hub: `--model REPO[:QUANT]`, `qwq-chat models pull` and `models list`.

Downloads go through huggingface_hub (`hf_hub_url` + its `http_get`, with its progress bar and its
in-call retries that resume with HTTP Range requests) into `qwq_chat.app.paths.models_dir()`. The partial
file is ours (`<name>.part`), so an interrupted download (Ctrl-C, network, kill) resumes on the
next run too; `hf_hub_download` itself now deletes partial files on failure. Each finished file is
checked against the Hub's sha256 (the LFS object id) before it is renamed into place; a mismatch
moves it aside and says so. The endpoint is taken from `HF_ENDPOINT` at call
time, so a mirror (or a test server) can stand in for the Hub.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwq_chat.app import paths
from qwq_chat.app.errors import UserError
from qwq_chat.app.gguf_files import is_later_piece, piece_files, split_pieces, unsplit_name

DEFAULT_REPO = "Qwen/QwQ-32B-GGUF"
DEFAULT_QUANT = "Q4_K_M"
VERIFIED_SUFFIX = ".sha256-ok"
GIB = 1024**3

# QwQ-32B GGUF sizes (docs/models-and-gpus.md), best quality first.
QUANT_SIZES_GB: dict[str, float] = {
    "Q8_0": 34.8,
    "Q6_K": 26.9,
    "Q5_K_M": 23.3,
    "Q4_K_M": 19.85,
}
RUNTIME_OVERHEAD_GB = 4.0 + 1.5  # 16k-token f16 KV cache + compute buffers and the OS
# QwQ-32B's draft model for speculative decoding (docs/models-and-gpus.md, "Faster decoding"):
# the same tokenizer, ~65x fewer parameters. Q8_0 file 0.68 GB; its f16 KV cache 12 KiB a token
# (24 layers x 2 KV heads x 64 x K,V x 2 bytes), 0.2 GB at the default 16k context.
DRAFT_REPO = "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
DRAFT_QUANT = "Q8_0"
DRAFT_SIZE_GB = 0.68
DRAFT_KV_BYTES_PER_TOKEN = 24 * 2 * 64 * 2 * 2

_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(?::[\w.-]+)?$")


@dataclass(frozen=True)
class LocalModel:
    """One model in the models dir: a single file, or a split model listed by its first piece."""

    path: Path
    repo: str | None
    size_bytes: int  # all pieces present
    verified: bool  # every piece downloaded in full and its sha256 checked
    pieces: int = 1
    missing: tuple[str, ...] = ()  # pieces of a split model that are not there


def endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


def is_repo_ref(ref: str) -> bool:
    """`owner/name` or `owner/name:QUANT` that is not an existing local path."""
    return not Path(ref).expanduser().exists() and bool(_REPO_RE.match(ref))


def parse_repo_ref(ref: str) -> tuple[str, str | None]:
    repo, _, quant = ref.partition(":")
    return repo, (quant or None)


def repo_dir(repo: str) -> Path:
    return paths.models_dir() / repo.replace("/", "--")


def resolve_model(ref: str, progress: bool = True) -> Path:
    """A local GGUF path for `ref`: the file itself, or the REPO[:QUANT] download (pulled if needed)."""
    path = Path(ref).expanduser()
    if path.exists():
        if path.is_dir():
            ggufs = sorted(p for p in path.glob("*.gguf") if not is_later_piece(p))
            if len(ggufs) != 1:
                raise UserError(f"{path} is a directory; pass the .gguf file itself")
            path = ggufs[0]
        split_pieces(path)  # a split model loads from its first piece, with every piece there
        return path
    if not is_repo_ref(ref):
        raise UserError(
            f"model {ref!r} is neither an existing file nor a Hub repo like "
            f"{DEFAULT_REPO}:{DEFAULT_QUANT}"
        )
    repo, quant = parse_repo_ref(ref)
    local = find_local(repo, quant)
    if local is not None:
        return local
    return pull(repo, quant, progress=progress)


def _quant_matches(filename: str, quant: str) -> bool:
    stem = Path(filename).name.lower()
    return re.search(rf"(^|[-_.]){re.escape(quant.lower())}([-_.]|$)", stem) is not None


def find_local(repo: str, quant: str | None) -> Path | None:
    """An already downloaded and verified model for repo (and quant): its file, or the first
    piece of a split model whose pieces are all there and verified."""
    folder = repo_dir(repo)
    if not folder.is_dir():
        return None
    for path in sorted(folder.rglob("*.gguf")):
        if is_later_piece(path) or (quant and not _quant_matches(path.name, quant)):
            continue
        if all(_verified(p) for p in piece_files(path)):
            return path
    return None


def _offline() -> bool:
    """HF_HUB_OFFLINE read now: huggingface_hub itself reads it once, at import time."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _file_entries(repo: str) -> list[tuple[str, int | None, str | None]]:
    """(filename, size, sha256) for every file in the repo, from the Hub's API."""
    if _offline():
        raise UserError(_offline_message(repo))
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        info = HfApi(endpoint=endpoint()).model_info(repo, files_metadata=True)
    except RepositoryNotFoundError:
        raise UserError(
            f"repo {repo!r} was not found on the Hub (private repos need HF_TOKEN)"
        ) from None
    except HfHubHTTPError as exc:
        raise UserError(f"the Hub answered an error for {repo!r}: {exc}") from None
    except Exception as exc:  # network down, offline mode...
        raise UserError(_network_message(repo, exc)) from None
    entries = []
    for sibling in info.siblings or []:
        lfs = getattr(sibling, "lfs", None)
        sha = getattr(lfs, "sha256", None) if lfs is not None else None
        size = getattr(lfs, "size", None) if lfs is not None else sibling.size
        entries.append((sibling.rfilename, size, sha))
    return entries


def _network_message(repo: str, exc: Exception) -> str:
    if "offline" in type(exc).__name__.lower() or "offline" in str(exc).lower():
        return _offline_message(repo)
    return f"cannot reach the Hub for {repo} ({type(exc).__name__}: {exc}); check the network"


def _offline_message(repo: str) -> str:
    return (
        f"cannot download {repo}: offline mode is on (HF_HUB_OFFLINE=1). Unset it, or pass a "
        "local GGUF path with --model"
    )


def choose_files(
    entries: list[tuple[str, int | None, str | None]], quant: str
) -> list[tuple[str, int | None, str | None]]:
    """The .gguf file(s) of `quant` (all parts of a split file, in order)."""
    chosen = [e for e in entries if e[0].lower().endswith(".gguf") and _quant_matches(e[0], quant)]
    if not chosen:
        available = sorted({_quant_of(e[0]) for e in entries if e[0].lower().endswith(".gguf")})
        raise UserError(
            f"no {quant} GGUF in this repo; available: {', '.join(available) or 'none'}"
        )
    return sorted(chosen)


def _quant_of(filename: str) -> str:
    name = unsplit_name(Path(filename).name)
    m = re.search(r"((?:I?Q\d[\w]*)|BF16|F16|F32)\.gguf$", name, re.IGNORECASE)
    return m.group(1).upper() if m else name


def sha256_file(path: Path, chunk: int = 8 * 1024 * 1024) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def pull(repo: str, quant: str | None = None, progress: bool = True) -> Path:
    """Download (or resume) repo's `quant` GGUF, verify sha256; returns the (first) file's path."""
    quant = quant or DEFAULT_QUANT
    files = choose_files(_file_entries(repo), quant)
    target = repo_dir(repo)
    paths_out = [
        download_file(repo, name, size, sha, target, progress) for name, size, sha in files
    ]
    return paths_out[0]


def download_file(
    repo: str, filename: str, size: int | None, sha256: str | None, target: Path, progress: bool
) -> Path:
    """One file: appended to `<name>.part` (kept when interrupted, resumed with an HTTP Range
    request next time), checked against the sha256, then renamed into place."""
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers, disable_progress_bars, enable_progress_bars

    final = target / filename
    marker = Path(str(final) + VERIFIED_SUFFIX)
    if final.is_file() and marker.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    if size is not None and part.is_file() and part.stat().st_size > size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
    (enable_progress_bars if progress else disable_progress_bars)()
    url = hf_hub_url(repo, filename, endpoint=endpoint())
    try:
        with part.open("ab") as fh:
            http_get(
                url,
                fh,
                resume_size=fh.tell(),
                headers=build_hf_headers(),
                expected_size=size,
                displayed_filename=filename,
            )
    except KeyboardInterrupt:
        raise UserError(
            f"download of {filename} interrupted; {_kept(part)} run the same command to resume"
        ) from None
    except Exception as exc:
        raise UserError(
            f"download of {repo}/{filename} failed ({type(exc).__name__}: {exc}); {_kept(part)} "
            "run the same command again to resume where it stopped"
        ) from None
    verify(part, sha256)
    part.replace(final)
    Path(str(part) + VERIFIED_SUFFIX).replace(marker)
    return final


def _kept(part: Path) -> str:
    if part.is_file():
        return f"{part.stat().st_size / 1e9:.2f} GB are kept in {part};"
    return ""


def verify(path: Path, sha256: str | None) -> None:
    """Check `path` against the Hub's sha256; marks it verified, or moves it aside on mismatch."""
    marker = Path(str(path) + VERIFIED_SUFFIX)
    if sha256 is None:
        marker.write_text("unverified: the Hub gave no sha256\n")
        return
    actual = sha256_file(path)
    if actual != sha256:
        bad = path.with_name(path.name + ".corrupt")
        path.replace(bad)
        raise UserError(
            f"{path.name} does not match the Hub's checksum (expected {sha256[:12]}..., got "
            f"{actual[:12]}...); it was moved to {bad}. Run the pull again to download it afresh"
        )
    marker.write_text(actual + "\n")


def list_local() -> list[LocalModel]:
    """Models under the models dir (downloads) with their verification state; a split model is
    one entry (its first piece, the one to load), sized and verified over all its pieces."""
    models = []
    root = paths.models_dir()
    firsts = {piece_files(path)[0] for path in root.rglob("*.gguf")}  # even if piece 1 is missing
    for path in sorted(firsts):
        rel = path.relative_to(root)
        repo = rel.parts[0].replace("--", "/") if len(rel.parts) > 1 else None
        files = piece_files(path)
        present = [f for f in files if f.is_file()]
        models.append(
            LocalModel(
                path,
                repo,
                sum(f.stat().st_size for f in present),
                all(_verified(f) for f in files),
                pieces=len(files),
                missing=tuple(f.name for f in files if f not in present),
            )
        )
    return models


def _verified(path: Path) -> bool:
    """Downloaded in full and checked against the Hub's sha256 (and still there)."""
    return path.is_file() and Path(str(path) + VERIFIED_SUFFIX).is_file()


def recommend_quant(memory_bytes: int | None) -> str | None:
    """The best QwQ-32B quant whose weights plus runtime overhead fit in `memory_bytes`."""
    if not memory_bytes:
        return None
    for quant, size_gb in QUANT_SIZES_GB.items():
        if (size_gb + RUNTIME_OVERHEAD_GB) * 1e9 <= memory_bytes:
            return quant
    return None


def usable_memory_bytes() -> int | None:
    """Free VRAM of a usable GPU, else total system RAM (what the model will live in)."""
    from qwq_chat.app.system.gpu import detect_gpu
    from qwq_chat.app.system.llama_build import offload_supported
    from qwq_chat.app.system.memory import memory_bytes

    if offload_supported():
        gpu = detect_gpu()
        if gpu is not None and gpu.free_bytes is not None:
            return gpu.free_bytes
    return memory_bytes()[0]


def draft_hint(model: str | None, n_ctx: int = 16384) -> str | None:
    """The matching draft model and what it costs, for a QwQ model reference or path; else None."""
    if not model or "qwq" not in model.lower():
        return None
    memory_gb = DRAFT_SIZE_GB + n_ctx * DRAFT_KV_BYTES_PER_TOKEN / 1e9
    return (
        f"faster decoding: --draft-model {DRAFT_REPO}:{DRAFT_QUANT} (Qwen2.5-0.5B-Instruct, same "
        f"tokenizer; ~{memory_gb:.1f} GB more memory at a {n_ctx}-token context) or "
        "--draft-model ngram (no extra memory)"
    )


def no_model_message(memory_bytes: int | None = None) -> str:
    memory = memory_bytes if memory_bytes is not None else usable_memory_bytes()
    quant = recommend_quant(memory)
    have = f"{memory / GIB:.0f} GiB" if memory else "unknown memory"
    if quant:
        hint = (
            f"for this machine ({have}) {DEFAULT_REPO}:{quant} fits: "
            f"`qwq-chat models pull {DEFAULT_REPO} --quant {quant}`, then "
            f"`--model {DEFAULT_REPO}:{quant}`"
        )
    else:
        hint = (
            f"this machine ({have}) is too small for QwQ-32B's smallest listed quant "
            f"({DEFAULT_QUANT}, {QUANT_SIZES_GB[DEFAULT_QUANT]} GB); use a remote server with "
            "--backend openai --base-url URL"
        )
    return f"no model given: pass --model PATH.gguf or --model REPO[:QUANT]; {hint}"


def pick_default_model(interactive: bool) -> str:
    """First run without --model: use a downloaded model, or offer the quant that fits this machine.

    Returns a model reference for the settings; raises UserError when nothing can be chosen.
    """
    import sys

    local = [m for m in list_local() if m.verified]
    if local:
        chosen = max(local, key=lambda m: m.path.stat().st_mtime)
        print(f"using {chosen.path} (pass --model to choose another)", file=sys.stderr)
        return str(chosen.path)
    memory = usable_memory_bytes()
    quant = recommend_quant(memory)
    if not interactive or quant is None:
        raise UserError(no_model_message(memory))
    import typer

    size = QUANT_SIZES_GB[quant]
    question = (
        f"No model yet. Download {DEFAULT_REPO}:{quant} ({size} GB, fits the "
        f"{(memory or 0) / GIB:.0f} GiB here) now?"
    )
    if not typer.confirm(question, default=True, err=True):
        raise UserError(no_model_message(memory))
    return str(pull(DEFAULT_REPO, quant, progress=True))


def describe(models: list[LocalModel]) -> list[dict[str, Any]]:
    return [
        {
            "path": str(m.path),
            "repo": m.repo,
            "size_gb": round(m.size_bytes / 1e9, 2),
            "verified": m.verified,
            "pieces": m.pieces,
            "missing": list(m.missing),
        }
        for m in models
    ]
