"""Credential headers on HTTP: one credential per request, of the right kind, or 401 saying why.

Requests go over a raw socket to uvicorn on 127.0.0.1, so repeated headers reach the server
exactly as written (a client library may merge or reorder them).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from alter_mcp.vault import AlterVault
from tests.peers.mockidp import MockIdpPeer
from tests.server.conftest import audience, http_server

INIT = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {},
    "clientInfo": {"name": "raw-test", "version": "0"}}})


@dataclass(frozen=True)
class RawResponse:
    """What came back on the wire: status, headers (lower-cased, repeated kept), body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        """Return the one value of header ``name``."""
        values = [v for k, v in self.headers if k == name]
        assert len(values) == 1, (name, self.headers)
        return values[0]

    @property
    def text(self) -> str:
        """Return everything received, for leak searches."""
        return "\n".join(f"{k}: {v}" for k, v in self.headers) + "\n" + self.body.decode()


async def raw_request(url: str, headers: list[tuple[str, str]], *, path: str = "/mcp",
                      method: str = "POST") -> RawResponse:
    """Send one HTTP/1.1 request with exactly these extra headers, in this order."""
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    body = INIT.encode() if method == "POST" else b""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {parts.netloc}",
             "Accept: application/json, text/event-stream", "Content-Type: application/json",
             f"Content-Length: {len(body)}", "Connection: close",
             *(f"{name}: {value}" for name, value in headers)]
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 15)
    finally:
        writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    pairs = [(k.strip().lower(), v.strip()) for k, _, v in
             (line.partition(":") for line in header_lines)]
    return RawResponse(int(status_line.split()[1]), pairs, rest)


@dataclass(frozen=True)
class Creds:
    """A valid user JWT and two valid agent keys of the vault under test."""

    jwt: str
    key: str
    other_key: str


@pytest.fixture
async def creds(http_vault: AlterVault, mockidp: MockIdpPeer) -> Creds:
    """Valid credentials: each one alone is accepted (checked in a test below)."""
    _, key = await http_vault.create_api_key("agent-one")
    _, other = await http_vault.create_api_key("agent-two")
    jwt = mockidp.token(sub="alice", aud=audience(http_vault))
    return Creds(jwt=jwt, key=key.reveal(), other_key=other.reveal())


def _cases(c: Creds) -> dict[str, tuple[list[tuple[str, str]], str]]:
    """Return each refused combination of headers and the words its description must hold."""
    auth, agent = "Authorization", "X-Alter-Agent-Key"
    return {
        "two_authorization_jwt_then_key": ([(auth, f"Bearer {c.jwt}"), (auth, f"Bearer {c.key}")],
                                           "2 Authorization headers"),
        "two_authorization_key_then_jwt": ([(auth, f"Bearer {c.key}"), (auth, f"Bearer {c.jwt}")],
                                           "2 Authorization headers"),
        "two_authorization_same_jwt": ([(auth, f"Bearer {c.jwt}"), (auth, f"Bearer {c.jwt}")],
                                       "2 Authorization headers"),
        "two_authorization_two_keys": ([(auth, f"Bearer {c.key}"),
                                        (auth, f"Bearer {c.other_key}")],
                                       "2 Authorization headers"),
        "two_agent_key_headers": ([(agent, c.key), (agent, c.other_key)],
                                  "2 X-Alter-Agent-Key headers"),
        "two_agent_key_headers_same": ([(agent, c.key), (agent, c.key)],
                                       "2 X-Alter-Agent-Key headers"),
        "jwt_and_agent_key": ([(auth, f"Bearer {c.jwt}"), (agent, c.key)], "not both"),
        "agent_key_and_jwt": ([(agent, c.key), (auth, f"Bearer {c.jwt}")], "not both"),
        "bearer_key_and_agent_key": ([(auth, f"Bearer {c.key}"), (agent, c.other_key)],
                                     "not both"),
        "comma_joined_authorization": ([(auth, f"Bearer {c.jwt}, Bearer {c.key}")],
                                       "more than one credential"),
        "comma_joined_bearer_values": ([(auth, f"Bearer {c.key},{c.jwt}")],
                                       "more than one credential"),
        "space_separated_bearer_values": ([(auth, f"Bearer {c.key} {c.jwt}")],
                                          "more than one credential"),
        "comma_joined_agent_keys": ([(agent, f"{c.key}, {c.other_key}")],
                                    "more than one value"),
        "jwt_as_agent_key": ([(agent, c.jwt)], "carries a JWT"),
        "garbage_as_agent_key": ([(agent, "sk-live-not-an-agent-key")],
                                 "does not hold an agent API key"),
        "basic_scheme": ([(auth, "Basic " + base64.b64encode(b"alice:pw").decode())],
                         "must use the Bearer scheme"),
        "bare_key_without_scheme": ([(auth, c.key)], "must use the Bearer scheme"),
        "empty_bearer": ([(auth, "Bearer ")], "carries no token"),
        "malformed_agent_key": ([(auth, "Bearer amk_short")], "is not valid"),
    }


CASE_NAMES = sorted(_cases(Creds("j", "k", "o")))


@pytest.mark.parametrize("case", CASE_NAMES)
async def test_credentials_refused_combination_gets_401_with_reason(
        http_vault: AlterVault, creds: Creds, case: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """Each duplicate, mixed or wrong-kind credential header gets 401 whose body and
    challenge say why, and quotes no credential in the answer or the logs."""
    headers, reason = _cases(creds)[case]
    caplog.set_level(logging.DEBUG)
    async with http_server(http_vault) as url:
        resp = await raw_request(url, headers)
    assert resp.status == 401, (case, resp.text)
    body = json.loads(resp.body)
    assert body["error"] == "invalid_token"
    assert reason in body["error_description"], (case, body)
    challenge = resp.header("www-authenticate")
    assert 'error="invalid_token"' in challenge and reason in challenge
    for secret in (creds.jwt, creds.key, creds.other_key, "alice:pw", "sk-live-not"):
        assert secret not in resp.text and secret not in caplog.text


async def test_credentials_each_valid_credential_alone_is_accepted(
        http_vault: AlterVault, creds: Creds) -> None:
    """The same credentials, one per request, in either header, are accepted (200)."""
    async with http_server(http_vault) as url:
        statuses = [(await raw_request(url, h)).status for h in (
            [("Authorization", f"Bearer {creds.jwt}")],
            [("Authorization", f"Bearer {creds.key}")],
            [("X-Alter-Agent-Key", creds.key)],
            [("x-alter-agent-key", creds.other_key)],
            [("authorization", f"bearer {creds.other_key}")],
        )]
    assert statuses == [200, 200, 200, 200, 200]


async def test_credentials_jwt_as_agent_key_never_acts_as_the_user(
        http_vault: AlterVault, creds: Creds) -> None:
    """A user JWT sent as X-Alter-Agent-Key is refused before any session opens as the user."""
    async with http_server(http_vault) as url:
        resp = await raw_request(url, [("X-Alter-Agent-Key", creds.jwt)])
    assert resp.status == 401
    assert not [v for k, v in resp.headers if k == "mcp-session-id"]


async def test_credentials_checked_only_on_the_mcp_endpoint(
        http_vault: AlterVault, creds: Creds) -> None:
    """Probes and pages need no identity: /health answers 200 even beside two credentials."""
    async with http_server(http_vault) as url:
        resp = await raw_request(url, [("Authorization", f"Bearer {creds.jwt}"),
                                       ("Authorization", "Basic eA==")],
                                 path="/health", method="GET")
    assert resp.status == 200 and json.loads(resp.body) == {"status": "ok"}
