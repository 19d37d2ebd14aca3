"""The connect pages: ``/connect/{token}`` and ``/oauth/callback`` as a small Starlette app.

The app is built from a :class:`ConnectHandler` (the vault's connect flow satisfies it), so
this module knows nothing of the vault; the HTML comes from :mod:`alter_mcp.oauth.pages`.
Every response is sent with ``no-store``, ``no-referrer`` and a Content-Security-Policy that
allows nothing but the pages' own stylesheet and forbids framing, so the callback URL (which
carries the code) never leaves the browser through a Referer.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from alter_mcp.errors import AlterError, ConnectFlowError, ProviderAPIError
from alter_mcp.oauth import pages
from alter_mcp.oauth.flow import CallbackOutcome, ConnectStart, SecretForm
from alter_mcp.oauth.sessions import cookie_name

__all__ = ["ConnectHandler", "build_connect_app", "connect_routes"]

log = logging.getLogger(__name__)

_HEADERS = pages.HEADERS
_MAX_FORM = 64 * 1024
_MAX_FIELDS = 32
_STATUS = {
    "unknown_link": 404, "expired": 410, "used": 409, "unknown_state": 400, "replayed": 409,
    "foreign_state": 403, "issuer_mismatch": 400, "issuer_missing": 400,
    "access_denied": 403, "provider_error": 502,
    "provider_not_allowed": 400, "missing_code": 400, "account_mismatch": 409,
    "grant_unavailable": 410, "exchange_failed": 502,
}


class ConnectHandler(Protocol):
    """What the connect pages need from the vault."""

    async def start(self, token: str, provider_id: str | None) -> ConnectStart:
        """Open a connect link: offer its providers, or redirect to the chosen one."""

    async def callback(self, params: Mapping[str, str], cookies: Mapping[str, str]
                       ) -> CallbackOutcome:
        """Handle the provider's redirect back."""

    async def submit(self, token: str, provider_id: str | None, values: Mapping[str, str]
                     ) -> CallbackOutcome | SecretForm:
        """Take a key-based provider's pasted fields."""


def _send(page: pages.Page) -> HTMLResponse:
    return HTMLResponse(pages.render(page), status_code=page.status, headers=_HEADERS)


def _send_form(form: SecretForm) -> HTMLResponse:
    page = pages.key_form(form)
    return HTMLResponse(pages.render(page), status_code=page.status,
                        headers=pages.FORM_HEADERS)


def _refusal(exc: AlterError, provider_error: str | None = None) -> HTMLResponse:
    """Render a typed error (its message never holds a secret) as the failure page."""
    if isinstance(exc, ConnectFlowError):
        status = _STATUS.get(exc.reason, 400)
    else:
        status = 502 if isinstance(exc, ProviderAPIError) else 400
    return _send(pages.refused(exc, status=status, provider_error=provider_error))


def _unexpected() -> HTMLResponse:
    return _send(pages.unexpected())


def build_connect_app(handler: ConnectHandler, *, secure_cookies: bool | None = None
                      ) -> Starlette:
    """Return the Starlette app serving the connect link and the OAuth callback."""
    return Starlette(routes=connect_routes(handler, secure_cookies=secure_cookies))


def connect_routes(handler: ConnectHandler, *, secure_cookies: bool | None = None
                   ) -> list[Route]:
    """Return the connect routes, for mounting into another Starlette app.

    ``secure_cookies`` marks the browser-binding cookie ``Secure``; None follows the request's
    scheme (pass True behind a proxy that terminates TLS).
    """

    def _secure(request: Request) -> bool:
        return secure_cookies if secure_cookies is not None else request.url.scheme == "https"

    def _cookie_path(request: Request) -> str:
        # Sent to the callback only, not to every route of the server that mounts us.
        return str(request.scope.get("root_path", "")).rstrip("/") + "/oauth/callback"

    async def connect(request: Request) -> Response:
        """Show the picker, or redirect to the provider with the browser-binding cookie."""
        token = str(request.path_params.get("token", ""))
        provider = request.query_params.get("provider")
        try:
            started = await handler.start(token, provider)
        except AlterError as exc:
            return _refusal(exc)
        except Exception:
            log.exception("connect page failed")
            return _unexpected()
        if started.form is not None:
            return _send_form(started.form)
        if started.redirect_url is None:
            return _send(pages.picker(started.choices))
        response = RedirectResponse(started.redirect_url, status_code=303, headers=_HEADERS)
        if started.cookie_value is not None:
            # Binds this browser to the session: a callback from any other browser is refused.
            response.set_cookie(
                cookie_name(started.session_id), started.cookie_value.reveal(),
                max_age=started.cookie_max_age, path=_cookie_path(request), httponly=True,
                samesite="lax", secure=_secure(request))
        return response

    async def callback(request: Request) -> Response:
        """Finish the connect and show the outcome (or go to the session's return URL)."""
        params = {k: v for k, v in request.query_params.items()}
        try:
            outcome = await handler.callback(params, dict(request.cookies))
        except AlterError as exc:
            # Only an authentic callback (state, browser and issuer checked) gets this far
            # with the provider's error code; the page explains it in plain words.
            return _refusal(exc, params.get("error"))
        except Exception:
            # Logged without the request: its URL carries the code and the state.
            log.exception("OAuth callback failed")
            return _unexpected()
        if outcome.return_url:
            response: Response = RedirectResponse(outcome.return_url, status_code=303,
                                                  headers=_HEADERS)
        else:
            response = _send(pages.connected(outcome.provider_name,
                                             outcome.account_identifier,
                                             repaired=outcome.repaired))
        response.delete_cookie(cookie_name(outcome.session_id), path=_cookie_path(request),
                               httponly=True, samesite="lax", secure=_secure(request))
        return response

    async def submit(request: Request) -> Response:
        """Store the pasted key of a key-based provider as the session owner's grant."""
        token = str(request.path_params.get("token", ""))
        try:
            size = int(request.headers.get("content-length") or 0)
        except ValueError:
            size = _MAX_FORM + 1
        if size > _MAX_FORM:
            return _send(pages.Page("Too much data", "<p>The form was too large.</p>",
                                    status=413, tone="bad"))
        try:
            form = await request.form(max_files=0, max_fields=_MAX_FIELDS)
            values = {k: v for k, v in form.items() if isinstance(v, str)}
        except Exception:  # a malformed body: never echo it
            return _send(pages.Page("Form not readable", "<p>Post the form again.</p>",
                                    status=400, tone="bad"))
        provider = values.pop("provider", None)
        try:
            outcome = await handler.submit(token, provider, values)
        except AlterError as exc:
            return _refusal(exc)
        except Exception:
            # Logged without the request: its body carries the secret.
            log.exception("key form failed")
            return _unexpected()
        if isinstance(outcome, SecretForm):
            return _send_form(outcome)
        return _send(pages.connected(outcome.provider_name, outcome.account_identifier,
                                     repaired=False))

    return [
        Route("/connect/{token}", submit, methods=["POST"]),
        Route("/connect/{token}", connect, methods=["GET"]),
        Route("/oauth/callback", callback, methods=["GET"]),
    ]
