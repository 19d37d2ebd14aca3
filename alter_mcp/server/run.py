"""Run the server: stdio (stdout carries only MCP messages) or streamable HTTP (uvicorn)."""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import sys

import uvicorn

from alter_mcp.config import Settings
from alter_mcp.server.app import build_http_app, build_server
from alter_mcp.vault import AlterVault

__all__ = ["GC_THRESHOLDS", "LAZY_IMPORTS", "configure_logging", "preload_lazy_imports",
           "replica_warnings", "serve_http", "serve_stdio", "tune_gc_for_serving"]

log = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    """Send every log record to stderr: in stdio mode stdout is the protocol channel."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


async def serve_stdio(vault: AlterVault) -> None:
    """Serve MCP over stdin/stdout until the client closes the pipe."""
    server = build_server(vault)
    preload_lazy_imports()
    tune_gc_for_serving()
    await server.run_async(transport="stdio", show_banner=False)


async def serve_http(vault: AlterVault, *, host: str, port: int) -> None:
    """Serve MCP over streamable HTTP on ``host:port`` until interrupted."""
    for warning in replica_warnings(vault.settings):
        log.warning("%s", warning)
    if vault.settings.stateless_http:
        # The SDK logs "Terminating session: None" at INFO after every stateless request.
        logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    app = build_http_app(vault)
    preload_lazy_imports()
    tune_gc_for_serving()
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="on", server_header=False,
                            log_level=vault.settings.log_level.lower())
    await uvicorn.Server(config).serve()


#: What FastMCP imports during the first call of an identified client (its per-client state
#: store, read for visibility rules on every call): ~0.2-0.3 s added to that first call.
LAZY_IMPORTS = ("key_value.aio.adapters.pydantic", "key_value.aio.stores.memory")


def preload_lazy_imports() -> None:
    """Import now, at startup, what FastMCP would import during the first tool call."""
    for name in LAZY_IMPORTS:
        with contextlib.suppress(ImportError):  # a later FastMCP may do without it
            importlib.import_module(name)


#: Allocations between young collections (CPython's default is 700), then how many young
#: (resp. middle) collections between middle (resp. full) ones (default 10 each).
GC_THRESHOLDS = (10_000, 20, 20)


def tune_gc_for_serving() -> None:
    """Freeze the objects built at startup out of the collector's scans; collect less often.

    Modules, schemas and the app live as long as the server, yet every full collection walked
    them again; and one tool call allocates thousands of short-lived objects, so the default
    thresholds ran a young collection several times per call. Together that was about a
    quarter of a call's CPU (bench/mcp.py). Cyclic garbage made later is still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def replica_warnings(settings: Settings) -> list[str]:
    """Return what would break if this server is one of several replicas (shared PostgreSQL)."""
    if not settings.resolved_database_url.startswith(("postgresql://", "postgres://")):
        return []
    warnings = []
    if not settings.stateless_http:
        warnings.append("ALTER_MCP_STATELESS_HTTP is off: 2025-11-25 MCP sessions live in this "
                        "process only, so behind a load balancer that is not sticky on "
                        "Mcp-Session-Id another replica answers 404. Set it to true.")
    if settings.request_state_key is None:
        warnings.append("ALTER_MCP_REQUEST_STATE_KEY is not set: a 2026-07-28 retry "
                        "(input_required) that lands on another replica is refused. Give "
                        "every replica the same key.")
    return warnings
