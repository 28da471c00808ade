"""`qwq-chat serve`: the local model as an OpenAI-compatible server (docs/serve.md).

Safe by default: it listens on 127.0.0.1; another address is refused unless an API key is set
(`--api-key` or the QWQ_CHAT_API_KEY environment variable), because anyone who can reach the port
could otherwise use the model. Served conversations stay out of the chat history unless `--save`.
Registered into the one CLI by app/cli.py; nothing heavy is imported at import time.
"""

from __future__ import annotations

import ipaddress
import socket
import sys
from pathlib import Path
from typing import Any

import typer
from qwq_chat.app.cli_options import engine_options, settings_from_options
from qwq_chat.app.errors import UserError

API_KEY_ENV = "QWQ_CHAT_API_KEY"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, port: int, api_key: str | None) -> None:
    """Refuse a non-local address without an API key, and a port that is taken, with a message."""
    if not is_loopback(host) and not api_key:
        raise UserError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could use "
            f"the model. Pass --api-key KEY (or set {API_KEY_ENV}), or keep the default 127.0.0.1"
        )
    if not 0 < port < 65536:
        raise UserError(f"--port {port} is not a port number (1-65535)")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is another server running "
                "there? Choose another --port"
            ) from None


def model_id(settings: Any, given: str | None) -> str:
    """The name clients see in /v1/models: --served-model-name, or the model's file name."""
    if given:
        return given
    model = str(settings.model or "model")
    path = Path(model)
    return path.stem if path.suffix == ".gguf" else model


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    api_key: str | None = typer.Option(
        None, "--api-key", envvar=API_KEY_ENV, help=f"Require this key (or ${API_KEY_ENV})."
    ),
    save: bool = typer.Option(False, "--save", help="Keep served conversations in the history."),
    max_queue: int = typer.Option(
        16, "--max-queue", min=0, help="Requests that may wait for the model (then 429)."
    ),
    served_model_name: str | None = typer.Option(
        None, "--served-model-name", help="Model name in /v1/models (default: the file name)."
    ),
    engine: dict[str, Any] | None = None,
) -> None:
    """Serve the model over an OpenAI-compatible API (/v1/chat/completions, /v1/models...)."""
    from qwq_chat.app.commands import ensure_model

    settings = ensure_model(settings_from_options(ctx, **(engine or {})))
    check_bind(host, port, api_key)
    run_server(settings, host, port, api_key, save, max_queue, served_model_name)


def run_server(
    settings: Any,
    host: str,
    port: int,
    api_key: str | None,
    save: bool,
    max_queue: int,
    served_model_name: str | None,
) -> None:
    import uvicorn
    from qwq_chat.app.engines import create_engine
    from qwq_chat.app.serve.server import ServeOptions, Server
    from qwq_chat.app.store import open_store

    engine = create_engine(settings, progress=sys.stderr.isatty())
    store = open_store() if save else None
    options = ServeOptions(
        model_id=model_id(settings, served_model_name),
        api_key=api_key,
        max_waiting=max_queue,
        save=save,
    )
    server = Server(engine, settings, options, store)
    where = f"http://{host if ':' not in host else f'[{host}]'}:{port}/v1"
    sys.stderr.write(f"--- {engine.description}\n--- serving {options.model_id} at {where}\n")
    sys.stderr.flush()
    try:
        uvicorn.run(server.app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        engine.close()
        if store is not None:
            store.close()


def register(cli: typer.Typer) -> None:
    cli.command("serve")(engine_options(serve))
