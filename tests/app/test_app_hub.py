"""Model downloads against a local HTTP server standing in for the Hugging Face Hub."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from qwq_chat.app import hub
from qwq_chat.app.cli import cli
from qwq_chat.app.errors import UserError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from typer.testing import CliRunner

REPO = "Qwen/QwQ-32B-GGUF"
COMMIT = "a" * 40
GGUF_BYTES = os.urandom(1024 * 1024 + 77)  # content is opaque to the downloader
OTHER_BYTES = b"GGUF" + os.urandom(5000)


class FakeHub:
    def __init__(self) -> None:
        self.files = {"qwq-32b-q4_k_m.gguf": GGUF_BYTES, "qwq-32b-q8_0.gguf": OTHER_BYTES}
        self.sha = {name: hashlib.sha256(data).hexdigest() for name, data in self.files.items()}
        self.ranges: list[str | None] = []
        self.cut_after: int | None = None  # drop the connection after this many bytes
        self.outage = False  # answer 503 to file downloads
        self.bytes_served = 0

    async def info(self, request: Request) -> Response:
        siblings = [{"rfilename": "README.md", "size": 10}] + [
            {
                "rfilename": n,
                "size": len(d),
                "lfs": {"sha256": self.sha[n], "size": len(d), "pointerSize": 134},
            }
            for n, d in self.files.items()
        ]
        return JSONResponse(
            {"id": REPO, "modelId": REPO, "sha": COMMIT, "siblings": siblings, "private": False}
        )

    async def resolve(self, request: Request) -> Response:
        name = request.path_params["filename"]
        data = self.files[name]
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{self.sha[name]}"', "X-Linked-Etag": f'"{self.sha[name]}"',
                   "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes"}  # fmt: skip
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(len(data))})
        self.ranges.append(request.headers.get("range"))
        if self.outage:
            return Response("maintenance", status_code=503)
        start = 0
        status = 200
        if request.headers.get("range"):
            start = int(request.headers["range"].split("=")[1].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        cut = self.cut_after

        async def stream() -> Iterator[bytes]:
            sent = 0
            for i in range(0, len(body), 64 * 1024):
                piece = body[i : i + 64 * 1024]
                if cut is not None and sent + len(piece) > cut:
                    self.cut_after = None if not self.outage_after_cut else self.cut_after
                    if self.outage_after_cut:
                        self.outage = True
                    raise ConnectionResetError("simulated network failure")
                sent += len(piece)
                self.bytes_served += len(piece)
                yield piece

        return StreamingResponse(
            stream(), status_code=status, headers={**headers, "Content-Length": str(len(body))}
        )

    outage_after_cut = False


@pytest.fixture()
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import huggingface_hub.constants as hf_constants

    fake = FakeHub()
    app = Starlette(routes=[
        Route("/api/models/{owner}/{name}", fake.info),
        Route("/api/models/{owner}/{name}/revision/{rev}", fake.info),
        Route("/{owner}/{name}/resolve/{rev}/{filename}", fake.resolve, methods=["GET", "HEAD"]),
    ])  # fmt: skip
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # conftest sets offline mode; this hub is local
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    # huggingface_hub writes in 10 MB chunks; our test files are ~1 MB, so write in 64 KiB ones.
    monkeypatch.setattr(hf_constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    yield fake
    server.should_exit = True
    thread.join(10)


def test_pull_verifies_and_is_found_again(fake_hub: FakeHub) -> None:
    path = hub.pull(REPO, "Q4_K_M", progress=False)
    assert path.read_bytes() == GGUF_BYTES
    assert path.parent == hub.repo_dir(REPO)
    assert fake_hub.ranges == [None]
    # REPO:QUANT resolves to the local file without touching the network again
    assert hub.resolve_model(f"{REPO}:q4_k_m", progress=False) == path
    assert fake_hub.ranges == [None]
    [model] = hub.list_local()
    assert model.verified and model.repo == REPO and model.size_bytes == len(GGUF_BYTES)


def test_dropped_connection_is_resumed_within_the_call(fake_hub: FakeHub) -> None:
    fake_hub.cut_after = 300 * 1024
    path = hub.pull(REPO, "Q4_K_M", progress=False)
    assert path.read_bytes() == GGUF_BYTES
    assert fake_hub.ranges[0] is None
    assert fake_hub.ranges[1] is not None and fake_hub.ranges[1].startswith("bytes=")
    assert int(fake_hub.ranges[1].split("=")[1].rstrip("-")) > 0


def test_interrupted_download_resumes_on_the_next_run(fake_hub: FakeHub) -> None:
    fake_hub.cut_after = 512 * 1024
    fake_hub.outage_after_cut = True
    with pytest.raises(UserError, match="run the same command again to resume") as info:
        hub.pull(REPO, "Q4_K_M", progress=False)
    assert "are kept in" in str(info.value)
    part = hub.repo_dir(REPO) / "qwq-32b-q4_k_m.gguf.part"
    kept = part.stat().st_size
    assert 0 < kept < len(GGUF_BYTES)
    assert not (
        hub.repo_dir(REPO) / "qwq-32b-q4_k_m.gguf"
    ).exists()  # nothing half-written in place

    fake_hub.outage = False
    fake_hub.outage_after_cut = False
    fake_hub.cut_after = None
    fake_hub.ranges.clear()
    served_before = fake_hub.bytes_served
    path = hub.pull(REPO, "Q4_K_M", progress=False)
    assert path.read_bytes() == GGUF_BYTES
    assert fake_hub.ranges == [f"bytes={kept}-"]
    assert fake_hub.bytes_served - served_before == len(GGUF_BYTES) - kept
    assert not part.exists()


def test_checksum_mismatch_is_moved_aside(fake_hub: FakeHub) -> None:
    fake_hub.sha["qwq-32b-q8_0.gguf"] = "0" * 64
    with pytest.raises(UserError, match="does not match the Hub's checksum"):
        hub.pull(REPO, "Q8_0", progress=False)
    folder = hub.repo_dir(REPO)
    assert (folder / "qwq-32b-q8_0.gguf.part.corrupt").exists()
    assert not (folder / "qwq-32b-q8_0.gguf").exists()
    assert hub.find_local(REPO, "Q8_0") is None


def test_unknown_quant_lists_the_available_ones(fake_hub: FakeHub) -> None:
    with pytest.raises(UserError, match="available: Q4_K_M, Q8_0"):
        hub.pull(REPO, "Q2_K", progress=False)


def test_models_commands(fake_hub: FakeHub) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "pull", f"{REPO}:Q8_0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().endswith("qwq-32b-q8_0.gguf")
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).stdout)
    assert [(m["repo"], m["verified"]) for m in listed] == [(REPO, True)]


def test_offline_and_bad_refs_are_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline mode is read when pulling, not from huggingface_hub's import-time constant.
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(UserError, match="offline mode"):
        hub.pull(REPO, "Q4_K_M", progress=False)
    with pytest.raises(UserError, match="neither an existing file nor a Hub repo"):
        hub.resolve_model("not a model")


def test_quant_recommendation() -> None:
    assert hub.recommend_quant(int(80e9)) == "Q8_0"
    assert hub.recommend_quant(int(30e9)) == "Q5_K_M"
    assert hub.recommend_quant(int(26e9)) == "Q4_K_M"
    assert hub.recommend_quant(int(16e9)) is None
    assert "Q4_K_M" in hub.no_model_message(int(26e9))
    assert "too small" in hub.no_model_message(int(8e9))


def test_first_run_offers_the_quant_that_fits(
    fake_hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer

    questions: list[str] = []
    monkeypatch.setattr(hub, "usable_memory_bytes", lambda: int(26e9))
    monkeypatch.setattr(typer, "confirm", lambda text, **kw: questions.append(text) or True)
    chosen = hub.pick_default_model(interactive=True)
    assert "Q4_K_M" in questions[0] and "19.85 GB" in questions[0]
    assert chosen.endswith("qwq-32b-q4_k_m.gguf")
    # the next run uses the downloaded model without asking
    assert hub.pick_default_model(interactive=True) == chosen and len(questions) == 1


def test_split_model_is_pulled_listed_and_resolved_as_one(
    fake_hub: FakeHub, tmp_path: Path
) -> None:
    """A split quant (llama.cpp's NAME-0000i-of-0000n.gguf): every piece is pulled, `models list`
    shows one model (its first piece, summed size), `--model` gets the first piece; a missing
    piece is named in the list and refused with a clear message."""
    pieces = {
        "qwq-32b-q3_k_m-00001-of-00002.gguf": b"GGUF" + os.urandom(3000),
        "qwq-32b-q3_k_m-00002-of-00002.gguf": b"GGUF" + os.urandom(2000),
    }
    fake_hub.files.update(pieces)
    fake_hub.sha.update({n: hashlib.sha256(d).hexdigest() for n, d in pieces.items()})
    runner = CliRunner()
    result = runner.invoke(cli, ["models", "pull", REPO, "--quant", "Q3_K_M"])
    assert result.exit_code == 0, result.output
    first = Path(result.stdout.strip().splitlines()[0])
    assert first.name == "qwq-32b-q3_k_m-00001-of-00002.gguf"
    assert "--draft-model Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q8_0" in result.stderr  # the QwQ draft
    assert hub.resolve_model(f"{REPO}:Q3_K_M", progress=False) == first
    assert hub.resolve_model(str(first.parent), progress=False) == first  # folder of one model
    listed = json.loads(runner.invoke(cli, ["models", "list", "--json"]).stdout)
    assert [(m["path"], m["pieces"], m["verified"]) for m in listed] == [(str(first), 2, True)]
    assert [m.size_bytes for m in hub.list_local()] == [sum(map(len, pieces.values()))]
    second = first.with_name("qwq-32b-q3_k_m-00002-of-00002.gguf")
    with pytest.raises(UserError, match="pass its first piece"):
        hub.resolve_model(str(second))
    second.unlink()
    text = runner.invoke(cli, ["models", "list"]).stdout
    assert "(2 pieces)" in text and f"INCOMPLETE: {second.name} missing" in text
    with pytest.raises(UserError, match=f"{second.name} is missing"):
        hub.resolve_model(str(first))
    first.rename(tmp_path / first.name)
    second.write_bytes(pieces[second.name])
    assert [(m.path, m.missing) for m in hub.list_local()] == [(first, (first.name,))]
    (tmp_path / first.name).rename(first)
    second.unlink()
    served = fake_hub.bytes_served
    assert hub.resolve_model(f"{REPO}:Q3_K_M", progress=False) == first  # pulls the piece again
    assert second.read_bytes() == pieces[second.name]
    assert fake_hub.bytes_served - served == len(pieces[second.name])  # only the missing piece
