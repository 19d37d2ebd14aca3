"""A loopback provider that holds every request until the test releases it (a slow provider).

It runs on the test's own event loop (asyncio streams on 127.0.0.1), counts the requests whose
head it has read, and answers them all with 200 only once ``release()`` is called: a stand-in
for a provider that answers after minutes, with no timing in the test. It is fault injection
(no real provider can be told to hang on cue), over a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["StuckServer", "stuck_server"]

_ANSWER = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
           b"Connection: close\r\n\r\n{\"ok\":true}")


class StuckServer:
    """Read each request's head, count it, and answer only after ``release()``."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self._released = asyncio.Event()
        self._arrived = asyncio.Condition()
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """Return the listening port."""
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def released(self) -> bool:
        """Return True once the held requests have been let go."""
        return self._released.is_set()

    async def start(self) -> StuckServer:
        """Listen on 127.0.0.1, on a free port."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            head = await reader.readuntil(b"\r\n\r\n")
            async with self._arrived:
                self.received.append(head)
                self._arrived.notify_all()
            await self._released.wait()
            writer.write(_ANSWER)
            await writer.drain()
        writer.close()

    async def wait_received(self, count: int) -> None:
        """Return once ``count`` requests have arrived (a signal, not a sleep)."""
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.received) >= count)

    def saw(self, needle: bytes) -> bool:
        """Return True if any request head carried ``needle``."""
        return any(needle in head for head in self.received)

    def release(self) -> None:
        """Answer every held request, and every later one at once."""
        self._released.set()

    async def stop(self) -> None:
        """Release whatever is held and stop listening."""
        self.release()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@contextlib.asynccontextmanager
async def stuck_server() -> AsyncIterator[StuckServer]:
    """Run a StuckServer for the block; release and stop it on the way out."""
    server = await StuckServer().start()
    try:
        yield server
    finally:
        await server.stop()
