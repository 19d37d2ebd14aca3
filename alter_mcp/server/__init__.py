"""The MCP server: tools and resources over the vault, per-request identity, two transports.

``build_server(vault)`` for stdio and in-memory clients, ``build_http_app(vault)`` for
streamable HTTP; ``serve_stdio`` / ``serve_http`` run them.
"""

from __future__ import annotations

from alter_mcp.server.app import build_http_app, build_server
from alter_mcp.server.run import serve_http, serve_stdio

__all__ = ["build_http_app", "build_server", "serve_http", "serve_stdio"]
