"""`qwq-chat sandbox serve`: the code execution server (see app/sandbox/server.py)."""

from __future__ import annotations

import typer


def register(cli: typer.Typer) -> None:
    sandbox = typer.Typer(
        help="The sandboxed code execution server used for code rewards.", no_args_is_help=True
    )

    @sandbox.command("serve")
    def serve(
        host: str = typer.Option("127.0.0.1", help="Address to listen on (keep it local)."),
        port: int = typer.Option(8080, help="Port to listen on."),
        concurrency: int = typer.Option(0, help="Sandboxed runs at once (0 = number of cores)."),
        max_queue: int = typer.Option(256, help="Runs admitted before answering 429 Retry-After."),
        unsafe_no_isolation: bool = typer.Option(
            False,
            "--unsafe-no-isolation",
            help="Run code WITHOUT bubblewrap (only rlimits). Submitted code can touch your files.",
        ),
    ) -> None:
        """Serve POST /run_code (SandboxFusion's shape), POST /evaluate and GET /health."""
        import logging

        from qwq_chat.app.errors import UserError
        from qwq_chat.app.sandbox.runner import SandboxUnavailable
        from qwq_chat.app.sandbox.server import ServerConfig
        from qwq_chat.app.sandbox.server import serve as run_server

        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
        config = ServerConfig(max_queue=max_queue, unsafe_no_isolation=unsafe_no_isolation)
        if concurrency > 0:
            config.concurrency = concurrency
        if not 0 < port < 65536:
            raise UserError(f"--port {port} is not a TCP port: give a number from 1 to 65535")
        try:
            typer.echo(f"sandbox server on http://{host}:{port} (Ctrl-C to stop)", err=True)
            run_server(host, port, config)
        except SandboxUnavailable as exc:
            raise UserError(
                f"{exc}. The server refuses to run code without isolation; pass "
                "--unsafe-no-isolation only on a throw-away machine."
            ) from None

    cli.add_typer(sandbox, name="sandbox")
