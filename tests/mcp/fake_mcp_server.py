"""A real MCP server written with the `mcp` SDK, for the client tests (run as a script).

`python fake_mcp_server.py MODE [--http PORT] [--log FILE]`. Every tool call is appended to the log
file as one JSON line, so a test can tell which server ran what. Modes:
- ok: `lookup(key)` answers from a small table, `shout(text)`, `picture()` returns an image.
- exit: exits before speaking MCP (a server that dies at start).
- hang: `lookup` sleeps for an hour (a server that hangs past the timeout).
- crash: `lookup` kills the process mid-call.
- big: `lookup` returns 10 MB of text.
- garbage: `lookup` writes non-JSON onto the protocol's stdout and never answers.
- calc: a `calculator` tool (what the tiny tool-trained model calls) that answers "144" for 12*12.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time

from mcp.server import MCPServer
from mcp.types import ImageContent

MODE_EXIT_CODE = 3
TABLE = {"alpha": "first letter", "omega": "last letter"}
PNG_1PX = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("--http", type=int, default=0)
    parser.add_argument("--log", default=os.environ.get("FAKE_MCP_LOG", ""))
    args = parser.parse_args()
    if args.mode == "exit":
        print("fake server: refusing to start", file=sys.stderr)
        sys.exit(MODE_EXIT_CODE)

    server = MCPServer(f"fake-{args.mode}")

    def record(tool: str, arguments: dict) -> None:
        if args.log:
            with open(args.log, "a", encoding="utf-8") as f:
                f.write(
                    json.dumps({"server": args.mode, "tool": tool, "arguments": arguments}) + "\n"
                )

    if args.mode == "calc":
        from qwq_chat.app.tools.calculator import calculator_tool

        builtin = calculator_tool()  # offered with the built-in's description and schema

        def calculator(expression: str) -> str:
            record("calculator", {"expression": expression})
            return "144" if expression.replace(" ", "") == "12*12" else "unknown"

        server.add_tool(calculator, description=builtin.description, structured_output=False)
        [tool] = [t for t in server._tool_manager.list_tools() if t.name == "calculator"]
        tool.parameters = builtin.parameters

    else:

        @server.tool(description="Look a key up in the table.", structured_output=False)
        def lookup(key: str) -> str:
            record("lookup", {"key": key})
            if args.mode == "hang":
                time.sleep(3600)
            if args.mode == "crash":
                os._exit(9)
            if args.mode == "big":
                return "x" * 10_000_000
            if args.mode == "garbage":  # not JSON-RPC on the protocol's stdout, then no answer
                os.write(1, b'this is not json\n{"half": \n')
                time.sleep(3600)
            return TABLE.get(key, f"no entry for {key}")

        @server.tool(description="Upper-case the text.")
        def shout(text: str) -> str:
            record("shout", {"text": text})
            return text.upper()

        @server.tool(description="A one-pixel picture.")
        def picture() -> ImageContent:
            record("picture", {})
            return ImageContent(
                type="image", data=base64.b64encode(PNG_1PX).decode(), mime_type="image/png"
            )

    if args.http:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    else:
        server.run()


if __name__ == "__main__":
    main()
