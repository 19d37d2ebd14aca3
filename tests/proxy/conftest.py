"""Fixtures for the proxy tests: providers pointed at httpbin, a shared client, a sender."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from unittest import mock

import httpx2
import pytest

from alter_mcp.providers.schema import AuthKind, Injection, InjectionKind, Provider, SecretField
from alter_mcp.proxy.send import Sender, new_client
from alter_mcp.redaction import Secret
from tests.peers.httpbin import HttpbinPeer
from tests.peers.recorder import RequestRecorder

TOKEN = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
API_KEY = "sk_live_51H8xQ2eZvKYlo2C0aBcDeFgHiJkLmN"
USER, PASSWORD = "svc-user", "pa55:w+rd=&secret!"


def make_provider(
    *rules: Injection,
    port: int | None = None,
    hosts: Sequence[str] = ("localhost",),
    fields: Sequence[str] = ("api_key",),
    public: Sequence[str] = (),
    aws_service: str | None = None,
    provider_id: str = "testapi",
) -> Provider:
    """Return an api_key-style provider with ``rules`` on ``hosts`` (and ``port``)."""
    kind = AuthKind.AWS_SIGV4 if aws_service else AuthKind.API_KEY
    return Provider(
        id=provider_id, name="Test API", auth_kind=kind, api_hosts=tuple(hosts),
        api_ports=(port,) if port else (), injection=rules, aws_service=aws_service,
        secret_fields=tuple(
            SecretField(name=f, label=f, secret=f not in public) for f in fields),
    )


def bearer() -> Injection:
    return Injection(kind=InjectionKind.BEARER, format="{api_key}")


def credential(**values: str) -> dict[str, Secret]:
    return {name: Secret(value) for name, value in values.items()}


@pytest.fixture
async def client() -> AsyncIterator[httpx2.AsyncClient]:
    """The shared client as production builds it (no env proxies in tests)."""
    async with new_client(trust_env=False) as shared:
        yield shared


@pytest.fixture
def sender(client: httpx2.AsyncClient) -> Sender:
    """A sender allowed to use plain http to loopback, as in test mode."""
    return Sender(client, timeout=10.0, allow_insecure_http=True)


@pytest.fixture
def httpbin(httpbin_peer: HttpbinPeer) -> HttpbinPeer:
    """The session's httpbin, reached as http://localhost:PORT."""
    return httpbin_peer


def base(peer: HttpbinPeer) -> str:
    return f"http://localhost:{peer.port}"


class _Scripted(BaseHTTPRequestHandler):
    server: ScriptedServer
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        status, headers, body = self.server.routes.get(self.path.split("?")[0],
                                                       (404, {}, b""))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class ScriptedServer(ThreadingHTTPServer):
    """A loopback server answering fixed (status, headers, body) per path.

    httpbin cannot send a 429 with Retry-After or a 403 with a challenge; this is the
    fault injection for those answers, over a real socket.
    """

    daemon_threads = True

    def __init__(self, routes: Mapping[str, tuple[int, dict[str, str], bytes]]) -> None:
        self.routes = dict(routes)
        super().__init__(("127.0.0.1", 0), _Scripted)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        port: int = self.server_address[1]
        return port


@pytest.fixture
def scripted() -> Iterator[Callable[[Mapping[str, tuple[int, dict[str, str], bytes]]],
                                    ScriptedServer]]:
    """``scripted({path: (status, headers, body)})`` starts a server, stopped after the test."""
    servers: list[ScriptedServer] = []

    def start(routes: Mapping[str, tuple[int, dict[str, str], bytes]]) -> ScriptedServer:
        server = ScriptedServer(routes)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class ToRecorder(httpx2.AsyncBaseTransport):
    """Deliver every request to a recorder whatever host its URL names (there is no DNS).

    Loopback names go to ``loopback`` (127.0.0.1), every other host to ``elsewhere``
    (127.0.0.2). Used by the exfiltration battery: if the guard ever let a request through,
    it would arrive at a recorder with its headers intact, so "nothing arrived" means
    something.
    """

    def __init__(self, loopback: RequestRecorder, elsewhere: RequestRecorder) -> None:
        self._inner = httpx2.AsyncHTTPTransport()
        self._loopback = loopback
        self._elsewhere = elsewhere

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        local = request.url.host in ("localhost", "127.0.0.1")
        target = self._loopback if local else self._elsewhere
        request.url = request.url.copy_with(scheme="http", host=target.host, port=target.port)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


#: The aws-sig-v4-test-suite's fixed time and signing inputs.
SUITE_TIME = datetime(2015, 8, 30, 12, 36, tzinfo=UTC)
SUITE: dict[str, str] = {
    "host": "example.amazonaws.com", "access_key_id": "AKIDEXAMPLE",
    "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "region": "us-east-1",
    "service": "service",
}


def botocore_authorization(
    method: str, url: str, headers: dict[str, str], body: bytes, service: str,
    token: str | None, *, access_key: str = SUITE["access_key_id"],
    secret_key: str = SUITE["secret_access_key"], region: str = "eu-west-1",
) -> str:
    """Return the Authorization header botocore computes for the same request (fixed time)."""
    from botocore.auth import S3SigV4Auth, SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
    from botocore.credentials import Credentials  # type: ignore[import-untyped]

    creds = Credentials(access_key, secret_key, token)
    signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(creds, service, region)
    request = AWSRequest(method=method, url=url, headers=headers, data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=SUITE_TIME):
        signer.add_auth(request)
    return str(request.headers["Authorization"])


def json_body(data: Any) -> bytes:
    return json.dumps(data).encode()
