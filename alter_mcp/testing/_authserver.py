"""The sandbox's OAuth 2 authorization server: authorize, token (PKCE, refresh), userinfo, revoke.

Small but strict where a client can get OAuth wrong: the client must authenticate, PKCE S256 is
required and checked, codes are single-use and bound to their client and redirect URI, refresh
tokens rotate (reusing an old one kills the whole family), and revoked tokens stop working at
once. Everything lives in memory; nothing leaves the loopback interface.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote_plus, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

__all__ = ["SCOPES", "Dialect", "SandboxAuthServer", "SandboxToken"]

#: The scopes the sandbox knows; ``items:read`` guards the list API.
SCOPES = ("profile", "items:read", "items:write")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                 "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                            "form-action 'self'; frame-ancestors 'none'"}


def _page_headers(form_target: str | None = None) -> dict[str, str]:
    """Return the page headers; ``form_target``'s origin joins ``form-action``.

    Browsers apply ``form-action`` to the redirects that follow a form post too, so the
    consent form must also allow the client's (registered) redirect URI's origin, which is
    the vault's callback on another loopback port; otherwise clicking Allow does nothing.
    """
    parts = urlsplit(form_target or "")
    try:
        port = parts.port
    except ValueError:
        return _PAGE_HEADERS
    # Rebuilt from checked parts, so nothing from the request can add a CSP directive.
    if parts.scheme != "http" or parts.hostname not in _LOOPBACK:
        return _PAGE_HEADERS
    host = "[::1]" if parts.hostname == "::1" else parts.hostname
    origin = f"http://{host}" + (f":{port}" if port else "")
    return {**_PAGE_HEADERS, "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; "
        f"form-action 'self' {origin}; frame-ancestors 'none'")}


@dataclass
class SandboxToken:
    """An issued access or refresh token and what it grants."""

    kind: str
    client_id: str
    scopes: tuple[str, ...]
    family: str
    expires_at: float | None
    revoked: bool = False
    long_lived: bool = False


@dataclass(frozen=True)
class Dialect:
    """How the sandbox deviates from RFC 6749, the way a real provider's documentation says.

    ``client_param``: the name of the client id (TikTok: ``client_key``; the other name is
    refused). ``json_token_requests``: the token endpoint takes JSON only (Notion).
    ``refresh_path``: refresh only there, never at ``/token`` (Figma). ``long_lived``: the code
    buys a short-lived token and no refresh token; ``"instagram"`` trades it at
    ``/access_token`` and extends long ones at ``/refresh_access_token``, ``"facebook"`` trades
    it with ``GET /token?grant_type=fb_exchange_token``. ``graphql``: ``POST /graphql`` answers
    ``{ viewer { email } }`` and ``{ me { email } }`` (Linear, monday).
    """

    client_param: str = "client_id"
    json_token_requests: bool = False
    refresh_path: str | None = None
    long_lived: Literal["instagram", "facebook"] | None = None
    long_lived_ttl: float = 60 * 86400.0
    graphql: bool = False
    #: Token requests must say ``type=web_server`` or ``type=refresh`` (Basecamp Launchpad).
    launchpad_type: bool = False
    #: Revocation is ``DELETE /applications/{client_id}/grant``, Basic auth, JSON (GitHub).
    github_revocation: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scopes: tuple[str, ...]
    expires_at: float
    family: str
    used: bool = False


@dataclass
class _Stats:
    authorize: int = 0
    approved: int = 0
    denied: int = 0
    token: dict[str, int] = field(default_factory=dict)
    refreshed: int = 0
    revoked: int = 0
    api_calls: int = 0


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="sandbox"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers=headers)


class SandboxAuthServer:
    """The authorization server's state and its Starlette endpoints."""

    def __init__(
        self, *, issuer: Callable[[], str], client_id: str, client_secret: str, account: str,
        subject: str, access_token_ttl: float, auto_approve: bool,
        clock: Callable[[], float] = time.time, token_fields: Mapping[str, Any] | None = None,
        dialect: Dialect | None = None,
    ) -> None:
        self._issuer = issuer
        self.client_id = client_id
        self._client_secret = client_secret
        self.account = account
        self.subject = subject
        self.access_token_ttl = access_token_ttl
        self.auto_approve = auto_approve
        self._clock = clock
        self.dialect = dialect or Dialect()
        #: Extra, non-secret fields of every token response (Salesforce's ``instance_url``).
        self.token_fields = dict(token_fields or {})
        self._codes: dict[str, _Code] = {}
        self._pending: dict[str, dict[str, str]] = {}
        self.tokens: dict[str, SandboxToken] = {}
        self.stats = _Stats()

    # -- helpers ---------------------------------------------------------------------------
    def token_info(self, value: str, *, kind: str = "access") -> SandboxToken | None:
        """Return a live token of ``kind`` by value, or None if unknown, expired or revoked."""
        token = self.tokens.get(value)
        if token is None or token.kind != kind or token.revoked:
            return None
        if token.expires_at is not None and self._clock() >= token.expires_at:
            return None
        return token

    def _revoke_family(self, family: str) -> None:
        for token in self.tokens.values():
            if token.family == family:
                token.revoked = True

    def _issue(self, client_id: str, scopes: tuple[str, ...], family: str) -> dict[str, Any]:
        access, refresh = "sbx_at_" + secrets.token_urlsafe(24), "sbx_rt_" + \
            secrets.token_urlsafe(24)
        now = self._clock()
        self.tokens[access] = SandboxToken("access", client_id, scopes, family,
                                           now + self.access_token_ttl)
        if self.dialect.long_lived is not None:
            # A short-lived token only: the provider's own exchange makes it last.
            return {**self.token_fields, "access_token": access, "token_type": "Bearer",
                    "expires_in": int(self.access_token_ttl), "scope": " ".join(scopes)}
        self.tokens[refresh] = SandboxToken("refresh", client_id, scopes, family, None)
        return {**self.token_fields, "access_token": access, "token_type": "Bearer",
                "expires_in": int(self.access_token_ttl), "refresh_token": refresh,
                "scope": " ".join(scopes)}

    def issue_long_lived(self, short: SandboxToken) -> dict[str, Any]:
        """Issue a long-lived access token for the holder of ``short``."""
        value = "sbx_ll_" + secrets.token_urlsafe(24)
        self.tokens[value] = SandboxToken("access", short.client_id, short.scopes, short.family,
                                          self._clock() + self.dialect.long_lived_ttl,
                                          long_lived=True)
        return {"access_token": value, "token_type": "bearer",
                "expires_in": int(self.dialect.long_lived_ttl)}

    def revoke_value(self, value: str) -> bool:
        """Revoke a token and its family by value; return False when it is unknown."""
        token = self.tokens.get(value)
        if token is None:
            return False
        if not token.revoked:
            self.stats.revoked += 1
        self._revoke_family(token.family)
        return True

    def client_from(self, request: Request) -> str | None:
        """Return the client authenticated by the request's Basic header, or None."""
        return self._client_from(request, {})

    def client_secret_ok(self, secret: str) -> bool:
        """Return True when ``secret`` is this client's secret."""
        return hmac.compare_digest(secret.encode(), self._client_secret.encode())

    def _client_from(self, request: Request, form: dict[str, str]) -> str | None:
        """Return the authenticated client id (basic or post), or None."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                raw = base64.b64decode(header[6:]).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                return None
            # RFC 6749 §2.3.1: both parts are form-encoded before they are joined.
            client_id, _, secret = (unquote_plus(p) for p in raw.partition(":"))
        else:
            name = self.dialect.client_param
            if name != "client_id" and "client_id" in form:
                return None  # the provider does not know `client_id`
            client_id, secret = form.get(name, ""), form.get("client_secret", "")
        if client_id == self.client_id and hmac.compare_digest(secret.encode(),
                                                               self._client_secret.encode()):
            return client_id
        return None

    @staticmethod
    def _redirect_ok(uri: str) -> bool:
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in _LOOPBACK and not parts.fragment

    def _back(self, redirect_uri: str, params: dict[str, str]) -> RedirectResponse:
        query = urlencode({**params, "iss": self._issuer()})
        separator = "&" if urlsplit(redirect_uri).query else "?"
        return RedirectResponse(redirect_uri + separator + query, status_code=302,
                                headers=_NO_STORE)

    # -- endpoints -------------------------------------------------------------------------
    async def metadata(self, request: Request) -> Response:
        """Serve the RFC 8414 authorization server metadata."""
        base = self._issuer()
        return JSONResponse({
            "issuer": base, "authorization_endpoint": base + "/authorize",
            "token_endpoint": base + "/token", "revocation_endpoint": base + "/revoke",
            "userinfo_endpoint": base + "/userinfo", "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"], "code_challenge_methods_supported": ["S256"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "authorization_response_iss_parameter_supported": True})

    async def authorize(self, request: Request) -> Response:
        """Check an authorization request, then ask for consent (or approve at once)."""
        self.stats.authorize += 1
        params = dict(request.query_params)
        redirect_uri = params.get("redirect_uri", "")
        name = self.dialect.client_param
        if params.get(name) != self.client_id or (name != "client_id" and "client_id" in params):
            return self._plain_page("Unknown client", "This client is not registered with the "
                                    "sandbox.", 400)
        if not self._redirect_ok(redirect_uri):
            return self._plain_page("Invalid redirect URI", "The sandbox redirects only to "
                                    "http:// loopback addresses.", 400)
        state = {"state": params["state"]} if "state" in params else {}
        if params.get("response_type") != "code":
            return self._back(redirect_uri, {"error": "unsupported_response_type", **state})
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return self._back(redirect_uri, {"error": "invalid_request", **state,
                                             "error_description": "PKCE S256 is required"})
        scopes = tuple(dict.fromkeys(params.get("scope", "").split()))
        if any(s not in SCOPES for s in scopes):
            return self._back(redirect_uri, {"error": "invalid_scope", **state})
        request_id = secrets.token_urlsafe(16)
        self._pending[request_id] = params
        if self.auto_approve:
            return self._decide(request_id, approve=True)
        return self._consent_page(request_id, scopes)

    async def decide(self, request: Request) -> Response:
        """Finish a pending authorization with the user's choice from the consent page."""
        form = {k: str(v) for k, v in (await request.form()).items()}
        request_id = form.get("request", "")
        if request_id not in self._pending:
            return self._plain_page("Request expired", "Start again from the app.", 400)
        return self._decide(request_id, approve=form.get("decision") == "approve")

    def _decide(self, request_id: str, *, approve: bool) -> Response:
        params = self._pending.pop(request_id)
        state = {"state": params["state"]} if "state" in params else {}
        if not approve:
            self.stats.denied += 1
            return self._back(params["redirect_uri"], {"error": "access_denied", **state})
        self.stats.approved += 1
        code = "sbx_code_" + secrets.token_urlsafe(24)
        self._codes[code] = _Code(
            client_id=params[self.dialect.client_param], redirect_uri=params["redirect_uri"],
            challenge=params["code_challenge"],
            scopes=tuple(dict.fromkeys(params.get("scope", "").split())),
            expires_at=self._clock() + 60, family=secrets.token_hex(8))
        return self._back(params["redirect_uri"], {"code": code, **state})

    async def token(self, request: Request) -> Response:
        """Exchange a code (with its PKCE verifier) or a refresh token for new tokens."""
        form = await self._token_form(request)
        if form is None:
            return _oauth_error("invalid_request", "the token endpoint takes a JSON body")
        grant_type = form.get("grant_type", "")
        self.stats.token[grant_type] = self.stats.token.get(grant_type, 0) + 1
        client_id = self._client_from(request, form)
        if client_id is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        if self.dialect.launchpad_type and form.get("type") != {
                "authorization_code": "web_server", "refresh_token": "refresh"}.get(grant_type):
            return _oauth_error("invalid_request", "type must be web_server or refresh")
        if grant_type == "authorization_code":
            return self._exchange(form, client_id)
        if grant_type == "refresh_token" and self.dialect.refresh_path is None:
            return self._refresh(form, client_id)
        return _oauth_error("unsupported_grant_type", "use authorization_code or refresh_token")

    async def refresh(self, request: Request) -> Response:
        """Redeem a refresh token at the dialect's own refresh endpoint (Figma)."""
        form = await self._token_form(request)
        if form is None or form.get("grant_type") != "refresh_token":
            return _oauth_error("unsupported_grant_type", "this endpoint only refreshes")
        self.stats.token["refresh_token"] = self.stats.token.get("refresh_token", 0) + 1
        client_id = self._client_from(request, form)
        if client_id is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        return self._refresh(form, client_id)

    async def _token_form(self, request: Request) -> dict[str, str] | None:
        if not self.dialect.json_token_requests:
            return {k: str(v) for k, v in (await request.form()).items()}
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return None
        try:
            body = await request.json()
        except ValueError:
            return None
        return {str(k): str(v) for k, v in body.items()} if isinstance(body, dict) else None

    def _exchange(self, form: dict[str, str], client_id: str) -> Response:
        code = self._codes.get(form.get("code", ""))
        if code is None or code.client_id != client_id or self._clock() >= code.expires_at:
            return _oauth_error("invalid_grant", "unknown or expired code")
        if code.used:
            # RFC 6749 §4.1.2: a reused code revokes what it issued.
            self._revoke_family(code.family)
            return _oauth_error("invalid_grant", "code already used")
        code.used = True
        if form.get("redirect_uri") != code.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri does not match")
        verifier = form.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(_s256(verifier), code.challenge):
            return _oauth_error("invalid_grant", "PKCE verification failed")
        return JSONResponse(self._issue(client_id, code.scopes, code.family), headers=_NO_STORE)

    def _refresh(self, form: dict[str, str], client_id: str) -> Response:
        value = form.get("refresh_token", "")
        token = self.tokens.get(value)
        if token is None or token.kind != "refresh" or token.client_id != client_id:
            return _oauth_error("invalid_grant", "unknown refresh token")
        if token.revoked:
            self._revoke_family(token.family)  # reuse of a rotated token: kill the family
            return _oauth_error("invalid_grant", "refresh token revoked or reused")
        token.revoked = True
        self.stats.refreshed += 1
        return JSONResponse(self._issue(client_id, token.scopes, token.family),
                            headers=_NO_STORE)

    async def userinfo(self, request: Request) -> Response:
        """Return the signed-in account for a valid access token."""
        token = self.bearer(request)
        if token is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401,
                                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return JSONResponse({"sub": self.subject, "email": self.account,
                             "name": "Sandbox User"})

    async def revoke(self, request: Request) -> Response:
        """Revoke a token (RFC 7009): its family stops working; unknown tokens are fine."""
        form = {k: str(v) for k, v in (await request.form()).items()}
        if self._client_from(request, form) is None:
            return _oauth_error("invalid_client", "client authentication failed", 401)
        token = self.tokens.get(form.get("token", ""))
        if token is not None and not token.revoked:
            self.stats.revoked += 1
            if token.kind == "refresh":
                self._revoke_family(token.family)
            token.revoked = True
        return Response(status_code=200, headers=_NO_STORE)

    def bearer(self, request: Request, *, scheme: str = "Bearer") -> SandboxToken | None:
        """Return the live access token of a request's ``Authorization: <scheme>``, if any."""
        prefix = scheme.lower() + " "
        header = request.headers.get("authorization", "")
        if not header.lower().startswith(prefix):
            return None
        return self.token_info(header[len(prefix):].strip())

    # -- pages -----------------------------------------------------------------------------
    def _consent_page(self, request_id: str, scopes: tuple[str, ...]) -> HTMLResponse:
        items = "".join(f"<li>{html.escape(s)}</li>" for s in scopes) or "<li>(no scopes)</li>"
        body = (
            f"<p>The app <b>{html.escape(self.client_id)}</b> asks to use your sandbox account "
            f"<b>{html.escape(self.account)}</b> with these permissions:</p><ul>{items}</ul>"
            "<form method=post action=authorize>"
            f"<input type=hidden name=request value='{html.escape(request_id, quote=True)}'>"
            "<button name=decision value=approve autofocus>Allow</button> "
            "<button name=decision value=deny>Deny</button></form>"
            "<p class=note>This is the alter-mcp sandbox: no real account is involved.</p>")
        return self._plain_page("Sandbox: allow access?", body, 200, raw=True,
                                form_target=self._pending[request_id]["redirect_uri"])

    @staticmethod
    def _plain_page(title: str, body: str, status: int, *, raw: bool = False,
                    form_target: str | None = None) -> HTMLResponse:
        content = body if raw else f"<p>{html.escape(body)}</p>"
        return HTMLResponse(
            "<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title><style>body{{font:16px/1.5 system-ui,"
            "sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#1b1b1b}"
            "button{font:inherit;padding:.5rem 1.2rem;margin-right:.5rem}.note{color:#555}"
            f"</style></head><body><main><h1>{html.escape(title)}</h1>{content}</main>"
            "</body></html>", status_code=status, headers=_page_headers(form_target))
