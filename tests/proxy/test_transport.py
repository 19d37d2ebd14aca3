"""The shared client's transport: idle connections a server closed are still never reused."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx2
import pytest

from alter_mcp.proxy.send import new_client
from alter_mcp.proxy.transport import FastProbeBackend

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
            b"Connection: keep-alive\r\n\r\n{\"ok\":true}")


@pytest.fixture
async def closing_server() -> AsyncIterator[tuple[int, list[int]]]:
    """Answer keep-alive requests, closing a connection once it has been idle for 50 ms.

    Yields the port and a list that counts accepted connections.
    """
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        with contextlib.suppress(ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            while True:
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 0.05)
                writer.write(RESPONSE)
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, accepted
    finally:
        server.close()
        await server.wait_closed()


def test_new_client_uses_the_fast_probe_backend() -> None:
    """The shared client's pool has our backend (an httpx2 change that drops it shows here)."""
    client = new_client(trust_env=False)
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool._network_backend, FastProbeBackend)


async def test_connection_closed_by_server_is_not_reused(
    closing_server: tuple[int, list[int]],
) -> None:
    """After the server closes an idle keep-alive connection, the next request opens a new one.

    The pool asks the idle connection whether its socket is readable (EOF is); if that check
    answered wrongly, the second request would go out on the dead connection and fail.
    """
    port, accepted = closing_server
    async with new_client(trust_env=False) as client:
        for attempt in range(3):
            response = await client.get(f"http://127.0.0.1:{port}/")
            assert response.json() == {"ok": True}, attempt
            await asyncio.sleep(0.2)
    assert len(accepted) == 3


async def test_kept_alive_connection_is_reused(closing_server: tuple[int, list[int]]) -> None:
    """Requests in quick succession share one connection (the check does not drop live ones)."""
    port, accepted = closing_server
    async with new_client(trust_env=False) as client:
        for _ in range(5):
            response = await client.get(f"http://127.0.0.1:{port}/")
            assert response.status_code == 200
    assert len(accepted) == 1


async def test_idle_check_matches_httpcore_on_a_live_socket() -> None:
    """On a connected, quiet socket our check and httpcore2's agree (not readable)."""
    import httpcore2

    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        ours = await FastProbeBackend().connect_tcp("127.0.0.1", port)
        theirs = await httpcore2.AnyIOBackend().connect_tcp("127.0.0.1", port)
        assert ours.get_extra_info("is_readable") is False
        assert theirs.get_extra_info("is_readable") is False
        assert ours.get_extra_info("server_addr") == ("127.0.0.1", port)
        await ours.aclose()
        await theirs.aclose()
    finally:
        server.close()
        await server.wait_closed()


def test_httpx2_limits_are_kept() -> None:
    """Every connection is kept alive: max_keepalive equals max_connections."""
    client = new_client(trust_env=False, max_connections=7)
    pool = client._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 7 and pool._max_keepalive_connections == 7
    assert isinstance(client, httpx2.AsyncClient)


async def test_sender_honours_a_proxy_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With HTTP_PROXY set, the Sender's request goes to the proxy in absolute form.

    The Sender dispatches on the transport the shared client picks for the URL, so the
    client's proxy mounts (built from the environment) still apply. A recorder stands in for
    the proxy: it receives the request line a proxy would.
    """
    from alter_mcp.providers.schema import (
        AuthKind,
        Injection,
        InjectionKind,
        Provider,
        SecretField,
    )
    from alter_mcp.proxy import prepare
    from alter_mcp.proxy.send import Sender
    from alter_mcp.redaction import Secret
    from tests.peers.recorder import RequestRecorder

    proxy = RequestRecorder().start()
    try:
        for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY",
                     "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        provider = Provider(
            id="testapi", name="Test API", auth_kind=AuthKind.API_KEY,
            api_hosts=("localhost",), api_ports=(9,),
            injection=(Injection(kind=InjectionKind.BEARER, format="{api_key}"),),
            secret_fields=(SecretField(name="api_key", label="Key"),))
        # Port 9 (discard) has no listener: only the proxy can answer.
        prepared = prepare(provider, "GET", "http://localhost:9/v1/x", allow_insecure_http=True)
        async with new_client(trust_env=True) as client:
            sender = Sender(client, allow_insecure_http=True)
            result = await sender.send(prepared, provider, {"api_key": Secret("k-123456")})
        assert result.status == 200
        (seen,) = proxy.requests
        assert seen.path == "http://localhost:9/v1/x"
        assert seen.header("authorization") == "Bearer k-123456"
    finally:
        proxy.stop()


def test_sender_dispatches_on_the_clients_transport() -> None:
    """The Sender found httpx2's transport lookup (a rename would silently fall back)."""
    from alter_mcp.proxy.send import Sender

    client = new_client(trust_env=False)
    sender = Sender(client)
    assert sender._transport_for is not None
    assert sender._transport_for(httpx2.URL("https://api.example.com/")) is client._transport
