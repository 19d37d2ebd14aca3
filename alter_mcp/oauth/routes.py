"""The connect pages: ``/connect/{token}`` and ``/oauth/callback`` as a small Starlette app.

The app is built from a :class:`ConnectHandler` (the vault's connect flow satisfies it), so
this module knows nothing of the vault. Pages are plain HTML with no external assets, sent
with ``no-store``, ``no-referrer`` and a CSP that allows nothing but their inline style, so
the callback URL (which carries the code) never leaves the browser through a Referer.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from typing import Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from alter_mcp.errors import AlterError, ConnectFlowError, ProviderAPIError
from alter_mcp.oauth.flow import CallbackOutcome, ConnectStart
from alter_mcp.oauth.sessions import cookie_name

__all__ = ["ConnectHandler", "build_connect_app", "connect_routes"]

log = logging.getLogger(__name__)

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "form-action 'none'; frame-ancestors 'none'",
}
_STATUS = {
    "unknown_link": 404, "expired": 410, "used": 409, "unknown_state": 400, "replayed": 409,
    "foreign_state": 403, "issuer_mismatch": 400, "issuer_missing": 400,
    "access_denied": 403, "provider_error": 502,
    "provider_not_allowed": 400, "missing_code": 400, "account_mismatch": 409,
    "grant_unavailable": 410, "exchange_failed": 502,
}
_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;"
          "padding:0 1rem;color:#222}h1{font-size:1.4rem}a.p{display:block;padding:.6rem 1rem;"
          "margin:.5rem 0;border:1px solid #ccc;border-radius:.4rem;text-decoration:none;"
          "color:#114}.muted{color:#666}")


class ConnectHandler(Protocol):
    """What the connect pages need from the vault."""

    async def start(self, token: str, provider_id: str | None) -> ConnectStart:
        """Open a connect link: offer its providers, or redirect to the chosen one."""

    async def callback(self, params: Mapping[str, str], cookies: Mapping[str, str]
                       ) -> CallbackOutcome:
        """Handle the provider's redirect back."""


def _page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(document, status_code=status, headers=_HEADERS)


def _refusal(exc: AlterError) -> HTMLResponse:
    """Render a typed error (its message never holds a secret) as the failure page."""
    hint = f"<p class=muted>{html.escape(exc.hint)}</p>" if exc.hint else ""
    if isinstance(exc, ConnectFlowError):
        status = _STATUS.get(exc.reason, 400)
    else:
        status = 502 if isinstance(exc, ProviderAPIError) else 400
    return _page("Connection not completed", f"<p>{html.escape(exc.message)}</p>{hint}",
                 status=status)


def _unexpected() -> HTMLResponse:
    return _page("Connection not completed",
                 "<p>Something went wrong on this server; nothing was connected.</p>"
                 "<p class=muted>Ask for a new connect link and try again.</p>", status=500)


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
        if started.redirect_url is None:
            links = "".join(
                f"<a class=p href='?provider={html.escape(c.provider_id, quote=True)}'>"
                f"{html.escape(c.name)}</a>" for c in started.choices)
            return _page("Choose an account to connect", links)
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
            return _refusal(exc)
        except Exception:
            # Logged without the request: its URL carries the code and the state.
            log.exception("OAuth callback failed")
            return _unexpected()
        if outcome.return_url:
            response: Response = RedirectResponse(outcome.return_url, status_code=303,
                                                  headers=_HEADERS)
        else:
            account = (f" as <b>{html.escape(outcome.account_identifier)}</b>"
                       if outcome.account_identifier else "")
            verb = "re-authorized" if outcome.repaired else "connected"
            response = _page(
                f"{outcome.provider_name} {verb}",
                f"<p>Your {html.escape(outcome.provider_name)} account is {verb}{account}.</p>"
                "<p class=muted>You can close this window.</p>")
        response.delete_cookie(cookie_name(outcome.session_id), path=_cookie_path(request),
                               httponly=True, samesite="lax", secure=_secure(request))
        return response

    return [
        Route("/connect/{token}", connect, methods=["GET"]),
        Route("/oauth/callback", callback, methods=["GET"]),
    ]
