"""``AlterVault.authenticate()``: sign the user in with the identity provider, in a browser.

An OIDC authorization-code flow as a public client (RFC 8252): PKCE S256, ``state`` and
``nonce``, a loopback redirect on ``127.0.0.1`` with an ephemeral port, ``iss`` checked when
the provider sends it (RFC 9207). The ID token is verified like any user token (JWKS, issuer,
audience = the client id, time claims) and becomes the vault's identity source; it is cached
sealed with the vault's key (``login.sealed`` in the data directory) and refreshed with the
refresh token when it is due.
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
import secrets
import sys
import time
import webbrowser
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import anyio.to_thread
import httpx2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from alter_mcp.config import Settings
from alter_mcp.crypto import Envelope, RecordBinding
from alter_mcp.errors import (
    AuthenticationError,
    ConfigurationError,
    DecryptionError,
    format_seconds,
)
from alter_mcp.models import Identity
from alter_mcp.tokens import JwtVerifier, VerifiedToken

__all__ = ["AuthResult", "BrowserLogin", "present"]

_PROFILE = ("sub", "email", "email_verified", "name", "preferred_username", "given_name",
            "family_name", "picture")
_PAGE = ("<!doctype html><title>Signed in</title><p>You are signed in to alter-mcp. "
         "You can close this window.</p>")


@dataclass(frozen=True, slots=True)
class AuthResult:
    """What ``authenticate()`` returns: the user's profile and identity (no token)."""

    user_info: dict[str, Any]
    identity: Identity
    expires_at: int = field(default=0)


async def present(url: str, opener: bool | Callable[[str], Any]) -> None:
    """Show the sign-in URL: open a browser (True), print it to stderr (False), or call opener."""
    if opener is True and await anyio.to_thread.run_sync(webbrowser.open, url):
        return
    if isinstance(opener, bool):
        # stderr: in stdio mode stdout carries the MCP protocol.
        print(f"Open this URL to sign in: {url}", file=sys.stderr, flush=True)
        return
    result = opener(url)
    if inspect.isawaitable(result):
        await result


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class BrowserLogin:
    """One user's login with the configured identity provider, and its refresh."""

    def __init__(self, *, settings: Settings, envelope: Envelope,
                 http: httpx2.AsyncClient | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if not settings.idp_issuer or not settings.idp_client_id:
            raise ConfigurationError(
                "Signing in needs the identity provider and this app's public client id.",
                setting="ALTER_MCP_IDP_CLIENT_ID" if settings.idp_issuer
                else "ALTER_MCP_IDP_ISSUER",
                hint="Set ALTER_MCP_IDP_ISSUER and ALTER_MCP_IDP_CLIENT_ID (a public client "
                     "allowed the redirect http://127.0.0.1/oauth/callback on any port).")
        self.settings = settings
        self.issuer: str = settings.idp_issuer
        self.client_id: str = settings.idp_client_id
        self._envelope = envelope
        self._http = http
        self._clock = clock or time.time
        self._meta: dict[str, Any] | None = None
        self._verifier: JwtVerifier | None = None
        self._current: VerifiedToken | None = None
        self._id_token = ""
        self._refresh_token: str | None = None
        self._lock = anyio.Lock()

    # -- HTTP ---------------------------------------------------------------------------------
    async def _call(self, method: str, url: str, **kwargs: Any) -> dict[str, Any]:
        async def go(client: httpx2.AsyncClient) -> httpx2.Response:
            return await client.request(method, url, headers={"accept": "application/json"},
                                        **kwargs)
        try:
            if self._http is not None:
                response = await go(self._http)
            else:
                async with httpx2.AsyncClient(timeout=15.0) as client:
                    response = await go(client)
            data = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            raise AuthenticationError("The identity provider could not be reached.",
                                      hint="Check ALTER_MCP_IDP_ISSUER and retry.",
                                      reason="idp_unreachable") from exc
        if response.status_code >= 400 or not isinstance(data, dict):
            error = data.get("error") if isinstance(data, dict) else None
            raise AuthenticationError(f"The identity provider refused the sign-in ({error}).",
                                      hint="Sign in again.", reason=str(error or "refused"))
        return data

    async def _metadata(self) -> dict[str, Any]:
        if self._meta is None:
            meta = await self._call("GET", self.issuer.rstrip("/")
                                    + "/.well-known/openid-configuration")
            if meta.get("issuer") != self.issuer:
                raise AuthenticationError("The identity provider's discovery document names "
                                          "another issuer.", reason="discovery_mismatch")
            self._meta = meta
            self._verifier = JwtVerifier(
                issuer=self.issuer, audience=self.client_id, jwks_uri=meta.get("jwks_uri"),
                algorithms=self.settings.idp_algorithms, leeway=self.settings.idp_leeway,
                groups_claim=self.settings.idp_groups_claim, http=self._http, clock=self._clock)
        return self._meta

    # -- the browser round trip ---------------------------------------------------------------
    async def run(self, opener: bool | Callable[[str], Any], *, limit: float
                  ) -> AuthResult:
        """Send the user to the sign-in page, wait for the callback, verify, cache."""
        from alter_mcp.oauth.loopback import LoopbackServer

        meta = await self._metadata()
        verifier, challenge = _pkce()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        arrived: dict[str, str] = {}
        done = anyio.Event()

        async def callback(request: Request) -> HTMLResponse:
            if request.query_params.get("state") == state and not done.is_set():
                arrived.update(request.query_params)
                done.set()
            return HTMLResponse(_PAGE, headers={"Cache-Control": "no-store",
                                                "Referrer-Policy": "no-referrer"})

        server = LoopbackServer(Starlette(routes=[Route("/oauth/callback", callback)]), port=0)
        await server.start()
        try:
            redirect = server.url + "/oauth/callback"
            query = {"response_type": "code", "client_id": self.client_id,
                     "redirect_uri": redirect, "scope": " ".join(self.settings.idp_scopes),
                     "state": state, "nonce": nonce, "code_challenge": challenge,
                     "code_challenge_method": "S256", "prompt": "consent"}
            await present(f"{meta['authorization_endpoint']}?{urlencode(query)}", opener)
            with anyio.fail_after(limit):
                await done.wait()
        except TimeoutError:
            raise AuthenticationError(f"No sign-in arrived within {format_seconds(limit)} seconds.",
                                      hint="Run authenticate again.", reason="timeout") from None
        finally:
            await server.stop()
        if "error" in arrived:
            raise AuthenticationError(f"The sign-in was refused ({arrived['error'][:60]}).",
                                      hint="Sign in again.", reason="access_denied")
        if "iss" in arrived and arrived["iss"] != self.issuer:
            raise AuthenticationError("The sign-in answer came from another issuer.",
                                      reason="issuer_mismatch")
        tokens = await self._call("POST", meta["token_endpoint"], data={
            "grant_type": "authorization_code", "code": arrived.get("code", ""),
            "redirect_uri": redirect, "client_id": self.client_id, "code_verifier": verifier})
        verified = await self._accept(tokens)
        if verified.claims.get("nonce") != nonce:
            raise AuthenticationError("The ID token does not answer this sign-in (nonce).",
                                      reason="nonce_mismatch")
        return self._result(verified)

    async def _accept(self, tokens: Mapping[str, Any]) -> VerifiedToken:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise AuthenticationError("The identity provider returned no ID token.",
                                      hint="Include the openid scope.", reason="no_id_token")
        assert self._verifier is not None
        verified = await self._verifier.verify(id_token)
        self._current, self._id_token = verified, id_token
        refresh = tokens.get("refresh_token")
        self._refresh_token = refresh if isinstance(refresh, str) else self._refresh_token
        self._save()
        return verified

    def _result(self, verified: VerifiedToken) -> AuthResult:
        profile = {k: verified.claims[k] for k in _PROFILE if k in verified.claims}
        return AuthResult(user_info=profile, identity=verified.identity,
                          expires_at=verified.expires_at)

    # -- identity source and cache ------------------------------------------------------------
    async def identity(self) -> Identity:
        """Return the signed-in user's identity, refreshing the ID token when it is due."""
        async with self._lock:
            current = self._current
            now = self._clock()
            if current is None or current.expires_at - self.settings.idp_leeway <= now:
                await self._refresh()
                current = self._current
            assert current is not None
            return current.identity

    async def _refresh(self) -> None:
        if not self._refresh_token:
            raise AuthenticationError("The sign-in has expired.",
                                      hint="Run authenticate() again.", reason="expired")
        meta = await self._metadata()
        tokens = await self._call("POST", meta["token_endpoint"], data={
            "grant_type": "refresh_token", "refresh_token": self._refresh_token,
            "client_id": self.client_id})
        await self._accept(tokens)

    @property
    def _cache(self) -> Path:
        return self.settings.data_dir / "login.sealed"

    def _binding(self) -> RecordBinding:
        return RecordBinding("login", f"{self.issuer}#{self.client_id}", "tokens")

    def _save(self) -> None:
        blob = self._envelope.seal_json({"id_token": self._id_token,
                                         "refresh_token": self._refresh_token},
                                        aad=self._binding())
        self._cache.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._cache, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(blob)

    async def restore(self) -> AuthResult | None:
        """Return the cached login (refreshed if due), or None when there is none usable."""
        try:
            data = self._envelope.open_json(self._cache.read_bytes(), aad=self._binding())
        except (OSError, DecryptionError):
            return None
        await self._metadata()
        self._refresh_token = data.get("refresh_token")
        try:
            assert self._verifier is not None
            self._current = await self._verifier.verify(str(data.get("id_token")))
            self._id_token = str(data.get("id_token"))
        except AuthenticationError:
            self._current = None
        try:
            await self.identity()
        except AuthenticationError:
            return None
        assert self._current is not None
        return self._result(self._current)
