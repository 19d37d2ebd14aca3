"""Run the server: stdio (stdout carries only MCP messages) or streamable HTTP (uvicorn)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from alter_mcp.server.app import build_http_app, build_server
from alter_mcp.vault import AlterVault

__all__ = ["configure_logging", "serve_http", "serve_stdio"]


def configure_logging(level: str) -> None:
    """Send every log record to stderr: in stdio mode stdout is the protocol channel."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def serve_stdio(vault: AlterVault) -> None:
    """Serve MCP over stdin/stdout until the client closes the pipe."""
    await build_server(vault).run_async(transport="stdio", show_banner=False)


async def serve_http(vault: AlterVault, *, host: str, port: int) -> None:
    """Serve MCP over streamable HTTP on ``host:port`` until interrupted."""
    app = build_http_app(vault)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="on", server_header=False,
                            log_level=vault.settings.log_level.lower())
    await uvicorn.Server(config).serve()
