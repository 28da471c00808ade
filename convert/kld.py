"""How far a quantized model's next-token distribution moves from the reference's, over a corpus.

The statistics of llama.cpp's `llama-perplexity --kl-divergence`, computed the same way: the text
is tokenized with the reference model and cut into chunks of `n_ctx` tokens, each run from an
empty KV cache (first token BOS when the model adds one); the second half of each chunk is scored
(positions n_ctx/2 ... n_ctx-2, each predicting the next token), so every scored token has at least
n_ctx/2 tokens of context. Per position: KL(P_ref || P_quant) summed over the vocabulary where the
reference's log-probability exceeds -16 (llama.cpp's cut-off), whether both models' top token
agree, and each model's negative log-likelihood of the actual next token (perplexity).

The reference runs once; its log-probabilities for the scored positions (n_vocab floats each) are
kept in a temporary file, so each quant is then compared without loading the reference again:
several quants are judged in one pass, and a 32B reference never shares memory with its quants.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from qwq_chat.convert.errors import ConvertError

DEFAULT_N_CTX = 512
LOG_PROB_FLOOR = -16.0  # llama-perplexity ignores reference probabilities below e^-16


@dataclass(frozen=True)
class KldResult:
    """One quant against the reference."""

    path: Path
    file_type: str
    size_bytes: int
    positions: int
    mean_kld: float
    kld_uncertainty: float
    kld_p99: float
    kld_p999: float
    kld_max: float
    top1_agreement: float
    ppl: float
    ppl_ref: float


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float32, the max subtracted first and the sum taken in float64."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    norm = np.log(np.exp(shifted).sum(axis=-1, keepdims=True, dtype=np.float64))
    return (shifted - norm).astype(np.float32)


def position_kld(ref_lp: np.ndarray, lp: np.ndarray) -> np.ndarray:
    """KL(P_ref || P) per row, over the vocabulary entries where log P_ref > -16."""
    mask = ref_lp > LOG_PROB_FLOOR
    p_ref = np.where(mask, np.exp(ref_lp), 0.0)
    return (p_ref * np.where(mask, ref_lp - lp, 0.0)).sum(axis=-1, dtype=np.float64)


def mean_and_uncertainty(values: np.ndarray) -> tuple[float, float]:
    """The mean and its standard error, as llama-perplexity prints them (`mean ± err`)."""
    n = len(values)
    if n < 1:
        return 0.0, 0.0
    mean = float(values.mean())
    var = float((values.astype(np.float64) ** 2).mean() - mean * mean)
    return mean, (var / (n - 1)) ** 0.5 if var > 0 and n > 10 else 0.0


@dataclass
class _Reference:
    """The reference's scored log-probabilities (in a temp file), tokens and NLL."""

    tokens: np.ndarray
    n_ctx: int
    n_chunks: int
    n_vocab: int
    log_probs: np.ndarray  # memmap (positions, n_vocab) float32
    nll: np.ndarray  # (positions,)
    top1: np.ndarray  # (positions,)

    @property
    def first(self) -> int:
        return self.n_ctx // 2

    def chunk_rows(self, i: int) -> slice:
        per = self.n_ctx - 1 - self.first
        return slice(i * per, (i + 1) * per)

    def next_tokens(self, i: int) -> np.ndarray:
        start = i * self.n_ctx
        return self.tokens[start + self.first + 1 : start + self.n_ctx]


def _score_chunk(model, ref: _Reference, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log-probs, NLL of the next tokens, top-1 ids) for the scored positions of chunk i."""
    start = i * ref.n_ctx
    logits = model.eval_chunk(ref.tokens[start : start + ref.n_ctx], ref.first)
    lp = log_softmax(logits[:-1])  # the last position predicts past the chunk
    nxt = ref.next_tokens(i)
    nll = -lp[np.arange(len(nxt)), nxt].astype(np.float64)
    return lp, nll, lp.argmax(axis=-1)


def compare(
    reference: Path | str,
    quants: Sequence[Path | str],
    *,
    text: Path | str | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    max_chunks: int | None = None,
    threads: int | None = None,
    n_gpu_layers: int | None = None,
    progress: bool = False,
) -> list[KldResult]:
    """KL divergence and top-1 agreement of each quant against `reference` over `text` (default:
    the shipped held-out set, never used for calibration)."""
    from qwq_chat.app.gguf_files import split_pieces
    from qwq_chat.app.paths import cache_dir
    from qwq_chat.convert.calibration import HELDOUT_ASSET, corpus_chunks, load_corpus
    from qwq_chat.convert.llama_runtime import ChunkModel

    if n_ctx < 8:
        raise ConvertError(f"--n-ctx must be at least 8 tokens, not {n_ctx}")
    ref_path = split_pieces(reference)[0]
    quant_paths = [split_pieces(q)[0] for q in quants]
    if not quant_paths:
        raise ConvertError("give at least one quantized GGUF file to compare with the reference")
    corpus = load_corpus(text, HELDOUT_ASSET)
    with contextlib.ExitStack() as stack:
        # On disk, not in /tmp (often RAM): 600 KB per scored position with QwQ's vocabulary.
        cache_dir().mkdir(parents=True, exist_ok=True)
        tmpdir = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="kld-", dir=cache_dir()))
        )
        with ChunkModel(ref_path, n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers) as m:
            tokens = corpus_chunks(m, corpus, n_ctx, max_chunks)
            n_chunks = len(tokens) // n_ctx
            per = n_ctx - 1 - n_ctx // 2
            ref = _Reference(
                tokens=tokens,
                n_ctx=n_ctx,
                n_chunks=n_chunks,
                n_vocab=m.n_vocab,
                log_probs=np.lib.format.open_memmap(
                    tmpdir / "ref.npy",
                    mode="w+",
                    dtype=np.float32,
                    shape=(n_chunks * per, m.n_vocab),
                ),
                nll=np.zeros(n_chunks * per),
                top1=np.zeros(n_chunks * per, dtype=np.int64),
            )
            with _progress(progress, f"reference {ref_path.name}", n_chunks) as advance:
                for i in range(n_chunks):
                    lp, nll, top1 = _score_chunk(m, ref, i)
                    rows = ref.chunk_rows(i)
                    ref.log_probs[rows], ref.nll[rows], ref.top1[rows] = lp, nll, top1
                    advance()
        return [_compare_one(q, ref, threads, n_gpu_layers, progress) for q in quant_paths]


def _compare_one(
    path: Path, ref: _Reference, threads: int | None, n_gpu_layers: int | None, progress: bool
) -> KldResult:
    from qwq_chat.app.gguf_files import model_size
    from qwq_chat.convert.llama_runtime import ChunkModel

    klds, nlls, same = [], [], []
    with ChunkModel(path, n_ctx=ref.n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers) as m:
        if m.n_vocab != ref.n_vocab:
            raise ConvertError(
                f"{path.name} has a vocabulary of {m.n_vocab} tokens, the reference {ref.n_vocab}: "
                "compare quants of the same model"
            )
        file_type = _file_type_name(m.meta("general.file_type"))
        with _progress(progress, path.name, ref.n_chunks) as advance:
            for i in range(ref.n_chunks):
                lp, nll, top1 = _score_chunk(m, ref, i)
                rows = ref.chunk_rows(i)
                klds.append(position_kld(np.asarray(ref.log_probs[rows]), lp))
                nlls.append(nll)
                same.append(top1 == ref.top1[rows])
                advance()
    kld = np.concatenate(klds)
    mean, err = mean_and_uncertainty(kld)
    return KldResult(
        path=path,
        file_type=file_type,
        size_bytes=model_size(path),
        positions=len(kld),
        mean_kld=mean,
        kld_uncertainty=err,
        kld_p99=float(np.percentile(kld, 99.0)),
        kld_p999=float(np.percentile(kld, 99.9)),
        kld_max=float(kld.max()),
        top1_agreement=float(np.concatenate(same).mean()),
        ppl=float(np.exp(np.concatenate(nlls).mean())),
        ppl_ref=float(np.exp(ref.nll.mean())),
    )


def _file_type_name(value: str | None) -> str:
    import gguf

    try:
        return (
            gguf.LlamaFileType(int(value or -1)).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        )
    except ValueError:
        return f"type {value}"


def print_table(results: Sequence[KldResult], reference: Path, max_kld: float | None) -> None:
    """One row per quant: size, mean KLD ± its error, 99th/99.9th percentile, top-1, perplexity."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if not results:
        return
    first = results[0]
    table = Table(
        title=f"KL divergence from {reference.name} over {first.positions} positions "
        f"(reference perplexity {first.ppl_ref:.3f})",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("model", no_wrap=True)
    table.add_column("type", no_wrap=True)
    for col in ("MiB", "mean KLD", "±", "p99 KLD", "p99.9", "top-1", "PPL"):
        table.add_column(col, justify="right", no_wrap=True)
    if max_kld is not None:
        table.add_column(f"≤ {max_kld:g}")
    for r in results:
        row = [
            r.path.name,
            r.file_type,
            f"{r.size_bytes / 2**20:.1f}",
            f"{r.mean_kld:.4f}",
            f"{r.kld_uncertainty:.4f}",
            f"{r.kld_p99:.4f}",
            f"{r.kld_p999:.4f}",
            f"{r.top1_agreement:.2%}",
            f"{r.ppl:.4g}",
        ]
        if max_kld is not None:
            row.append("[green]PASS[/]" if r.mean_kld <= max_kld else "[bold red]FAIL[/]")
        table.add_row(*row)
    console = Console()
    needed = console.measure(table, options=console.options.update(max_width=1000)).maximum
    if needed > console.width:  # a whole row per line beats a table cut off at the right
        console = Console(width=needed)
    console.print(table)


@contextlib.contextmanager
def _progress(enabled: bool, label: str, total: int) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn(f"[bold]scoring[/] {label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("kld", total=total)
        yield lambda: bar.update(task, advance=1)
