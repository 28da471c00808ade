"""`qwq-chat tools list` and `qwq-chat mcp serve` (registered by app/cli.py; nothing heavy here)."""

from __future__ import annotations

import typer
from qwq_chat.app.cli_options import ENGINE_OPTIONS, settings_from_options

tools_app = typer.Typer(
    help="The tools the model may call (built-in and MCP).", no_args_is_help=True
)
mcp_app = typer.Typer(help="qwq-chat's tools as an MCP server.", no_args_is_help=True)


@tools_app.command("list")
def tools_list(
    ctx: typer.Context,
    json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    config: str | None = ENGINE_OPTIONS["config"][1],
    mcp_config: str | None = ENGINE_OPTIONS["mcp_config"][1],
) -> None:
    """Every tool with its server and status (MCP servers are started to ask them)."""
    import json

    from qwq_chat.app.logs import setup_logging
    from qwq_chat.app.tools.toolbox import build_toolbox

    setup_logging()  # server failures are shown in the table, not logged onto the terminal
    settings = settings_from_options(ctx, config=config, mcp_config=mcp_config)
    toolbox = build_toolbox(settings)
    try:
        if toolbox.mcp is not None:
            toolbox.mcp.wait_ready()
        rows = toolbox.status()
    finally:
        toolbox.close()
    if json_output:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        name = row["name"] or "-"
        detail = row["description"].splitlines()[0][:70] if row["description"] else ""
        typer.echo(f"{name:24} {row['server']:16} {row['status']:9} {detail}")


@mcp_app.command("serve")
def mcp_serve(
    transport: str = typer.Option("stdio", "--transport", help="stdio | http (Streamable HTTP)."),
    host: str = typer.Option("127.0.0.1", "--host", help="HTTP: a loopback address."),
    port: int = typer.Option(8765, "--port", help="HTTP: the port."),
) -> None:
    """Serve the calculator and the sandboxed python tool to MCP clients."""
    from qwq_chat.app.mcp.server import serve

    serve(transport, host, port)


def register(cli: typer.Typer) -> None:
    cli.add_typer(tools_app, name="tools")
    cli.add_typer(mcp_app, name="mcp")
