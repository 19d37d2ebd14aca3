"""The endpoints of a sandbox :class:`Dialect`: long-lived token trades and a GraphQL identity.

They answer as the real providers document: Instagram's ``/access_token`` and
``/refresh_access_token``, Facebook's ``fb_exchange_token`` on the token endpoint, and a GraphQL
endpoint that knows the signed-in account (Linear ``viewer``, monday ``me``).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alter_mcp.testing._authserver import SandboxAuthServer, SandboxToken

__all__ = ["dialect_routes"]

_QUERY = re.compile(r"^\{\s*(viewer|me)\s*\{\s*(email|id)\s*\}\s*\}$")
Endpoint = Callable[[Request], Awaitable[Response]]


def _error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={"Cache-Control": "no-store"})


def dialect_routes(auth: SandboxAuthServer) -> list[Route]:
    """Return the extra routes ``auth.dialect`` calls for."""
    dialect = auth.dialect
    routes = []
    if dialect.refresh_path is not None:
        routes.append(Route(dialect.refresh_path, auth.refresh, methods=["POST"]))
    if dialect.long_lived == "instagram":
        routes += [Route("/access_token", _instagram_exchange(auth), methods=["GET"]),
                   Route("/refresh_access_token", _instagram_refresh(auth), methods=["GET"])]
    if dialect.long_lived == "facebook":
        routes.append(Route("/token", _facebook_exchange(auth), methods=["GET"]))
    if dialect.graphql:
        routes.append(Route("/graphql", _graphql(auth), methods=["POST"]))
    if dialect.github_revocation:
        routes.append(Route("/applications/{client_id}/grant", _github_revoke(auth),
                            methods=["DELETE"]))
    return routes


def _trade(auth: SandboxAuthServer, value: str) -> Response:
    """Answer a live short-lived token with a long-lived one."""
    short: SandboxToken | None = auth.token_info(value)
    if short is None or short.long_lived:
        return _error("invalid_token", "the short-lived token is unknown or expired", 401)
    return JSONResponse(auth.issue_long_lived(short))


def _instagram_exchange(auth: SandboxAuthServer) -> Endpoint:
    async def exchange(request: Request) -> Response:
        query = request.query_params
        if query.get("grant_type") != "ig_exchange_token":
            return _error("unsupported_grant_type", "use ig_exchange_token")
        if not auth.client_secret_ok(query.get("client_secret", "")):
            return _error("invalid_client", "client_secret is wrong", 401)
        return _trade(auth, query.get("access_token", ""))
    return exchange


def _instagram_refresh(auth: SandboxAuthServer) -> Endpoint:
    async def refresh(request: Request) -> Response:
        query = request.query_params
        if query.get("grant_type") != "ig_refresh_token":
            return _error("unsupported_grant_type", "use ig_refresh_token")
        if "client_secret" in query:
            return _error("invalid_request", "refresh takes no client secret")
        token = auth.token_info(query.get("access_token", ""))
        if token is None or not token.long_lived:
            return _error("invalid_token", "only a live long-lived token can be refreshed", 401)
        auth.stats.refreshed += 1
        return JSONResponse(auth.issue_long_lived(token))
    return refresh


def _facebook_exchange(auth: SandboxAuthServer) -> Endpoint:
    async def exchange(request: Request) -> Response:
        query = request.query_params
        if query.get("grant_type") != "fb_exchange_token":
            return _error("unsupported_grant_type", "use fb_exchange_token")
        if query.get("client_id") != auth.client_id or not auth.client_secret_ok(
                query.get("client_secret", "")):
            return _error("invalid_client", "client authentication failed", 401)
        return _trade(auth, query.get("fb_exchange_token", ""))
    return exchange


def _github_revoke(auth: SandboxAuthServer) -> Endpoint:
    async def revoke(request: Request) -> Response:
        if auth.client_from(request) != request.path_params["client_id"]:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        try:
            body = await request.json()
        except ValueError:
            body = None
        value = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(value, str) or not auth.revoke_value(value):
            return JSONResponse({"message": "Validation Failed"}, status_code=422)
        return Response(status_code=204)
    return revoke


def _graphql(auth: SandboxAuthServer) -> Endpoint:
    async def graphql(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        value = header[7:] if header.lower().startswith("bearer ") else header
        token = auth.token_info(value.strip())
        if token is None:
            return JSONResponse({"errors": [{"message": "Authentication required"}]},
                                status_code=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        found = _QUERY.match(str(body.get("query", "")) if isinstance(body, dict) else "")
        if found is None:
            return JSONResponse({"errors": [{"message": "Unknown query"}]}, status_code=400)
        root, name = found.groups()
        value = auth.account if name == "email" else auth.subject
        return JSONResponse({"data": {root: {name: value}}})
    return graphql
