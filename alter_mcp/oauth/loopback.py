"""A loopback listener for the connect pages, started on demand (stdio mode has no HTTP app).

It binds ``127.0.0.1`` only, on ``settings.connect_port`` (0 picks a free port, for tests),
runs uvicorn inside the caller's event loop without touching signal handlers or logging
configuration, and writes no access log (the callback URL carries the code and the state).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from alter_mcp.errors import ConfigurationError

__all__ = ["LoopbackServer", "PortInUseError"]

_HOST = "127.0.0.1"
_STARTUP_TIMEOUT = 10.0


class PortInUseError(ConfigurationError):
    """The loopback port is held by another process (which may be this vault's own)."""


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the host process's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Capture nothing: the process that embeds the vault owns its signals."""
        yield


class LoopbackServer:
    """Serve an ASGI app on 127.0.0.1 from a task of the current event loop."""

    def __init__(self, app: ASGIApp, *, port: int) -> None:
        self._app = app
        self._requested_port = port
        self._port: int | None = None
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"LoopbackServer(port={self._port or self._requested_port})"

    @property
    def port(self) -> int:
        """Return the bound port."""
        if self._port is None:
            raise RuntimeError("the loopback server is not running")
        return self._port

    @property
    def url(self) -> str:
        """Return the server's base URL."""
        return f"http://{_HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Return True while the server task runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Bind the port and start serving; raise ``ConfigurationError`` if it is taken."""
        if self.running:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((_HOST, self._requested_port))
        except OSError as exc:
            sock.close()
            kind = PortInUseError if exc.errno == errno.EADDRINUSE else ConfigurationError
            raise kind(
                f"Cannot listen on {_HOST}:{self._requested_port} for the connect pages"
                f"{' (the port is in use)' if kind is PortInUseError else ''}.",
                setting="ALTER_MCP_CONNECT_PORT",
                hint="Set ALTER_MCP_CONNECT_PORT to a free port (and register "
                     f"http://{_HOST}:PORT/oauth/callback at your providers), or stop the "
                     "program that holds it.",
            ) from None
        sock.listen(64)
        sock.setblocking(False)
        self._port = int(sock.getsockname()[1])
        config = uvicorn.Config(self._app, log_config=None, access_log=False, lifespan="off",
                                server_header=False, log_level="warning")
        self._server = _EmbeddedServer(config)
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[sock]), name="alter-mcp connect loopback")
        # The socket is owned by uvicorn from here; it closes it on shutdown.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _STARTUP_TIMEOUT
        while not self._server.started:
            if self._task.done() or loop.time() > deadline:
                await self.stop()
                raise ConfigurationError(
                    "The connect pages' loopback server did not start.",
                    setting="ALTER_MCP_CONNECT_PORT", hint="Check the port and retry.")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop serving and wait for the server task to end."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is None or task is None:
            return
        server.should_exit = True
        # On timeout wait_for cancels the task; the server's own failure is moot at shutdown.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, timeout=5.0)
