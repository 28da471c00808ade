"""qwq-chat's own tools as an MCP server (`qwq-chat mcp serve`); see server.py."""
