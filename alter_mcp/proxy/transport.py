"""The shared client's transport: httpx2's own, with a cheaper idle-connection check.

Every time a request enters or leaves httpcore2's pool, the pool asks each idle keep-alive
connection whether its socket is readable (a server that closed an idle connection leaves
it readable at EOF), so that a dead connection is dropped before it is reused. The check
itself is one ``poll()`` with a zero timeout, but httpcore2 reaches the socket through
anyio's typed attributes, which rebuild a mapping of every attribute, ``getpeername()``
included, on each call: about 13 µs per idle connection per pool event. With 32 keep-alive
connections that is most of a millisecond per request, and it grows with concurrency.

This backend wraps httpcore2's anyio backend and answers that one question from the socket's
file descriptor, looked up once per connection. Everything else (reads, writes, TLS, timeouts,
every other extra-info key) goes to httpcore2 unchanged, and the check gives the same answer:
``poll(POLLIN)`` on the same descriptor.
"""

from __future__ import annotations

import select
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2

__all__ = ["FastProbeBackend", "use_fast_probe"]


class _ProbeStream(httpcore2.AsyncNetworkStream):
    """A network stream whose ``is_readable`` check polls a cached descriptor."""

    __slots__ = ("_inner", "_poller")

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        sock = inner.get_extra_info("socket")
        fd = sock.fileno() if sock is not None else -1
        # One poll object per connection, registered once: each check is then one poll(0).
        self._poller: select.poll | None = None
        if fd >= 0:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore2.AsyncNetworkStream:
        return _ProbeStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":
            if self._poller is None:
                return True  # as httpcore2 does: no socket reads as EOF
            # POLLIN at EOF, or POLLNVAL/POLLHUP on a dead descriptor: all mean "drop it".
            return bool(self._poller.poll(0))
        return self._inner.get_extra_info(info)


class FastProbeBackend(httpcore2.AsyncNetworkBackend):
    """httpcore2's anyio backend, with streams that check idle sockets cheaply."""

    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return _ProbeStream(await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore2.SOCKET_OPTION] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        return _ProbeStream(await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def use_fast_probe(transport: httpx2.AsyncBaseTransport) -> bool:
    """Give an httpx2 transport's connection pool the fast-probe backend; say if it took.

    httpx2 builds its pools without a backend argument, so the backend is set on the pool it
    built. If a future httpx2 renames the attribute, the default backend stays (slower, still
    right) and this returns False.
    """
    pool = getattr(transport, "_pool", None)
    if isinstance(pool, httpcore2.AsyncConnectionPool) and hasattr(pool, "_network_backend"):
        pool._network_backend = FastProbeBackend()
        return True
    return False
