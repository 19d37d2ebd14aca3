"""Per-tool OAuth scopes: a ``tools/call`` whose token lacks a tool's scopes gets HTTP 403.

The check runs in ASGI, after the credential is verified and before the MCP handler sees the
body, so a refused call never reaches a tool (nor its audit trail) and the client gets the
scope challenge of the MCP 2025-11-25 authorization spec::

    HTTP/1.1 403 Forbidden
    WWW-Authenticate: Bearer error="insufficient_scope", scope="vault:read vault:use", …

``scope`` lists every scope the call needs: the resource scopes plus the tool's own, so a
client that re-authorizes with exactly that list keeps what it already could do.

Agent API keys carry no OAuth scopes and are not checked: an operator issued the key to one
agent principal, whose reach is already bounded by its own grants and the policy rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import pydantic_core
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from alter_mcp.errors import ConfigurationError
from alter_mcp.models import AgentPrincipal

__all__ = ["MAX_BODY", "ToolScopeMiddleware", "check_tool_scopes", "scopes_supported"]

#: The largest request body read for the check (the MCP SDK's own message limit).
MAX_BODY = 4 * 1024 * 1024


def scopes_supported(resource: Sequence[str], tools: Mapping[str, Sequence[str]]) -> list[str]:
    """Return every scope this resource knows: its own, then each tool's, without repeats."""
    return list(dict.fromkeys([*resource, *(s for scopes in tools.values() for s in scopes)]))


def check_tool_scopes(tools: Mapping[str, Sequence[str]], known: Iterable[str]) -> None:
    """Refuse tool scopes for a tool this server does not have (a typo would protect nothing)."""
    unknown = sorted(set(tools) - set(known))
    if unknown:
        raise ConfigurationError(
            f"ALTER_MCP_TOOL_SCOPES names {', '.join(map(repr, unknown))}, which is not a tool "
            "of this server.", setting="ALTER_MCP_TOOL_SCOPES",
            hint=f"Use the tool names: {', '.join(sorted(known))}.")


def _called_tools(body: bytes) -> list[str]:
    """Return the names of the tools a JSON-RPC message (or batch) calls; [] if unreadable.

    An unreadable body is left to the MCP handler, which refuses it without calling a tool.
    pydantic's parser is used because it is the one the handler parses with (duplicate keys
    resolve the same way in both).
    """
    try:
        message = pydantic_core.from_json(body)
    except ValueError:
        return []
    names = []
    for item in message if isinstance(message, list) else [message]:
        if isinstance(item, dict) and item.get("method") == "tools/call":
            params = item.get("params")
            name = params.get("name") if isinstance(params, dict) else None
            names.append(name if isinstance(name, str) else "")
    return names


class ToolScopeMiddleware:
    """Answer 403 ``insufficient_scope`` to a tool call whose token lacks the tool's scopes."""

    def __init__(self, app: ASGIApp, *, tool_scopes: Mapping[str, Sequence[str]],
                 resource_scopes: Sequence[str], guards: Callable[[str], bool],
                 metadata_url: Callable[[], str | None]) -> None:
        self.app = app
        self.tool_scopes = {tool: tuple(scopes) for tool, scopes in tool_scopes.items()
                            if scopes}
        self.resource_scopes = tuple(resource_scopes)
        self.guards = guards
        self.metadata_url = metadata_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if (scope["type"] != "http" or scope.get("method") != "POST" or not self.tool_scopes
                or not self.guards(scope.get("path", ""))
                or not isinstance(user, AuthenticatedUser)):
            await self.app(scope, receive, send)  # no verified token: RequireAuth answers 401
            return
        identity = getattr(user.access_token, "identity", None)
        if identity is not None and isinstance(identity.principal, AgentPrincipal):
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        if body is None:
            await _answer(send, 413, {"error": "invalid_request", "error_description":
                                      f"The request body exceeds {MAX_BODY} bytes."})
            return
        held = set(user.access_token.scopes)
        for tool in _called_tools(body):
            needed = self.tool_scopes.get(tool, ())
            if not set(needed) <= held:
                await self._refuse(send, tool, needed)
                return
        await self.app(scope, _replay(body, receive), send)

    async def _refuse(self, send: Send, tool: str, needed: Sequence[str]) -> None:
        every = list(dict.fromkeys([*self.resource_scopes, *needed]))
        tool = "".join(c for c in tool if c.isalnum() or c in "_-.")  # it goes into a header
        description = (f"The tool {tool} needs the scope(s) {' '.join(needed)}; "
                       "authorize again asking for them.")
        parts = ['error="insufficient_scope"', f'scope="{" ".join(every)}"',
                 f'error_description="{description}"']
        url = self.metadata_url()
        if url:
            parts.append(f'resource_metadata="{url}"')
        await _answer(send, 403, {"error": "insufficient_scope", "error_description":
                                  description, "scope": " ".join(every)},
                      challenge="Bearer " + ", ".join(parts))


async def _read_body(receive: Receive) -> bytes | None:
    """Return the whole request body, or None when it is longer than ``MAX_BODY``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the handler will see the same
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """Return a ``receive`` that yields ``body`` once, then defers to the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(send: Send, status: int, body: dict[str, Any],
                  challenge: str | None = None) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode()),
               (b"cache-control", b"no-store")]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
