"""The provider side of OAuth: token exchange, refresh, RFC 7009 revocation, account identity.

Provider differences are catalogue data (client authentication, scope separator, account
source) plus the named quirks of :class:`OAuthQuirk`, each handled by one small hook below.
HTTP and protocol failures are translated here, once, into :class:`TokenEndpointError`
(RFC 6749 §5.2 error code in ``error``) or :class:`ProviderAPIError`; no message carries a
token, code, verifier or client secret.
"""

from __future__ import annotations

import base64
import json as jsonlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, assert_never
from urllib.parse import parse_qsl, quote, quote_plus

import httpx2
import jwt

from alter_mcp.errors import ConfigurationError, ProviderAPIError
from alter_mcp.oauth.clients import OAuthClientConfig
from alter_mcp.oauth.quirks import Exchange, Identity, TokenCall, hooks_for
from alter_mcp.oauth.tokens import TokenSet, split_scopes
from alter_mcp.providers.schema import (
    AccountSource,
    OAuthSpec,
    Provider,
    TokenEndpointAuth,
    ValueSource,
)
from alter_mcp.providers.tenancy import dotted
from alter_mcp.redaction import Secret, redact_text

__all__ = ["InvalidGrantError", "OAuthHttp", "TokenEndpointError", "TokenResponse"]

_MAX_DESCRIPTION = 200
_SECRET_KEYS = frozenset({"access_token", "refresh_token", "id_token"})


class TokenEndpointError(ProviderAPIError):
    """The provider's token or revocation endpoint answered with an OAuth error."""

    code = "token_endpoint_error"
    error: ClassVar[str] = "server_error"

    def __init__(self, message: str, *, provider_id: str, error: str,
                 status: int | None = None) -> None:
        super().__init__(message, status=status, provider_id=provider_id, oauth_error=error)
        self.oauth_error = error


class InvalidGrantError(TokenEndpointError):
    """The refresh token or code is invalid, expired, revoked or reused (RFC 6749 §5.2)."""

    code = "invalid_grant"
    error = "invalid_grant"


class TokenResponse:
    """A parsed token response: the token set, the account it names and connection values."""

    __slots__ = ("account", "connection", "tokens")

    def __init__(self, tokens: TokenSet, account: str | None,
                 connection: Mapping[str, str] | None = None) -> None:
        self.tokens = tokens
        self.account = account
        self.connection: dict[str, str] = dict(connection or {})

    def __repr__(self) -> str:
        return f"TokenResponse(account={self.account!r}, expires_at={self.tokens.expires_at})"


def _spec(provider: Provider) -> OAuthSpec:
    if provider.oauth is None:
        raise ConfigurationError(f"Provider {provider.id!r} has no OAuth endpoints.",
                                 setting=f"catalog.{provider.id}.oauth")
    return provider.oauth


def _parse_body(response: httpx2.Response) -> dict[str, Any]:
    """Parse JSON, or form-encoded when the provider says so (GitHub without Accept)."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    text = response.text
    if kind == "application/x-www-form-urlencoded" or (kind == "text/plain" and "=" in text
                                                      and not text.lstrip().startswith("{")):
        return dict(parse_qsl(text, keep_blank_values=True))
    try:
        data = jsonlib.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class OAuthHttp:
    """Speak to a provider's token, revocation and userinfo endpoints over an injected client."""

    def __init__(self, http: httpx2.AsyncClient, *, timeout: float) -> None:
        self._http = http
        self._timeout = timeout

    # -- requests ---------------------------------------------------------------------------
    def _auth(
        self, spec: OAuthSpec, client: OAuthClientConfig, body: dict[str, str],
        headers: dict[str, str], method: TokenEndpointAuth | None = None,
    ) -> None:
        """Add client authentication to the body or the Basic header, as the catalogue says."""
        method = method or spec.token_endpoint_auth
        secret = client.client_secret
        if method is not TokenEndpointAuth.NONE and secret is None:
            raise ConfigurationError(
                f"Provider {client.provider_id!r} needs a client secret "
                f"({method.value}) and none is configured.",
                setting=f"providers.{client.provider_id}.client_secret",
                hint="Set client_secret or client_secret_env for this provider.",
            )
        match method:
            case TokenEndpointAuth.NONE:
                body["client_id"] = client.client_id
            case TokenEndpointAuth.CLIENT_SECRET_BASIC:
                assert secret is not None
                pair = f"{quote_plus(client.client_id)}:{quote_plus(secret.reveal())}"
                headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
            case TokenEndpointAuth.CLIENT_SECRET_POST:
                assert secret is not None
                body["client_id"] = client.client_id
                body["client_secret"] = secret.reveal()
            case _:
                assert_never(method)

    async def _call(
        self, provider: Provider, client: OAuthClientConfig, call: TokenCall, *, what: str,
        secrets: Iterable[str | Secret],
    ) -> dict[str, Any]:
        """Send one token-endpoint call through the provider's hooks; return its body."""
        spec = _spec(provider)
        hooks = hooks_for(spec)
        call.headers = {"Accept": "application/json", **call.headers}
        if call.client_auth:
            self._auth(spec, client, call.body, call.headers, call.auth_method)
        for reshape in hooks.token_request:
            reshape(spec, call)
        try:
            if call.method == "GET":
                response = await self._http.get(call.url, params=call.body, headers=call.headers,
                                                timeout=self._timeout, follow_redirects=False)
            elif call.method == "DELETE":
                response = await self._http.request(
                    "DELETE", call.url, json=call.body, headers=call.headers,
                    timeout=self._timeout, follow_redirects=False)
            else:
                payload: dict[str, Any] = ({"json": call.body} if call.as_json
                                           else {"data": call.body})
                response = await self._http.post(call.url, headers=call.headers,
                                                 timeout=self._timeout, follow_redirects=False,
                                                 **payload)
        except httpx2.HTTPError as exc:
            raise ProviderAPIError(
                f"The {what} endpoint of {provider.id!r} could not be reached "
                f"({type(exc).__name__}).",
                provider_id=provider.id, hint="Check the network and retry.",
            ) from None
        data = _parse_body(response)
        for normalise in hooks.token_response:
            data = normalise(data)
        if response.status_code >= 400 or "error" in data:
            raise self._error(provider, response, data, what, secrets, client)
        return data

    @staticmethod
    def _error(
        provider: Provider, response: httpx2.Response, data: Mapping[str, Any], what: str,
        secrets: Iterable[str | Secret], client: OAuthClientConfig,
    ) -> TokenEndpointError:
        code = str(data.get("error") or f"http_{response.status_code}")[:64]
        known = [*secrets, *([client.client_secret] if client.client_secret else [])]
        description = redact_text(str(data.get("error_description") or ""), known)
        detail = f": {description[:_MAX_DESCRIPTION]}" if description else ""
        cls = InvalidGrantError if code == "invalid_grant" else TokenEndpointError
        return cls(
            f"The {what} endpoint of {provider.id!r} refused the request "
            f"(HTTP {response.status_code}, {redact_text(code, known)}){detail}.",
            provider_id=provider.id, error=code, status=response.status_code,
        )

    # -- token responses ----------------------------------------------------------------------
    def parse_tokens(
        self, provider: Provider, client: OAuthClientConfig, data: Mapping[str, Any], *,
        now: datetime, requested: tuple[str, ...],
    ) -> TokenResponse:
        """Build the token set from a token response (already normalised by the hooks)."""
        spec = _spec(provider)
        body: Mapping[str, Any] = data
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise TokenEndpointError(
                f"The token endpoint of {provider.id!r} answered without an access token.",
                provider_id=provider.id, error="invalid_response",
            )
        expires_at = None
        expires_in = body.get("expires_in")
        if expires_in not in (None, ""):
            try:
                expires_at = now + timedelta(seconds=max(0.0, float(str(expires_in))))
            except ValueError:
                expires_at = None
        granted = split_scopes(body.get("scope"), spec.scope_separator) or requested
        tokens = TokenSet(
            access_token=Secret(access), obtained_at=now,
            refresh_token=Secret(str(body["refresh_token"])) if body.get("refresh_token")
            else None,
            id_token=Secret(str(data["id_token"])) if data.get("id_token") else None,
            token_type=str(body.get("token_type") or "Bearer"), expires_at=expires_at,
            scopes=granted, requested_scopes=requested,
        )
        return TokenResponse(tokens, self._account_from_response(spec, client, data))

    @staticmethod
    def _account_from_response(
        spec: OAuthSpec, client: OAuthClientConfig, data: Mapping[str, Any]
    ) -> str | None:
        if spec.account_source is AccountSource.TOKEN_RESPONSE:
            public = {k: v for k, v in data.items() if k not in _SECRET_KEYS}
            return dotted(public, spec.account_field)
        if spec.account_source is AccountSource.ID_TOKEN and isinstance(data.get("id_token"), str):
            # Received straight from the token endpoint over TLS, so the signature check may
            # be skipped (OIDC Core 3.1.3.7); the audience must still be this client.
            try:
                claims = jwt.decode(str(data["id_token"]), options={"verify_signature": False})
            except jwt.PyJWTError:
                return None
            audience = claims.get("aud")
            audiences = audience if isinstance(audience, list) else [audience]
            if client.client_id not in audiences:
                return None
            return dotted(claims, spec.account_field)
        return None

    # -- grant types --------------------------------------------------------------------------
    async def exchange_code(
        self, provider: Provider, client: OAuthClientConfig, *, code: Secret,
        verifier: Secret | None, redirect_uri: str, requested: tuple[str, ...], now: datetime,
    ) -> TokenResponse:
        """Exchange an authorization code (and PKCE verifier) for tokens."""
        spec = _spec(provider)
        body = {"grant_type": "authorization_code", "code": code.reveal(),
                "redirect_uri": redirect_uri}
        if verifier is not None:
            body["code_verifier"] = verifier.reveal()
        known = [code, *([verifier] if verifier else [])]
        data = await self._call(provider, client, TokenCall(url=spec.token_url, body=body),
                                what="token", secrets=known)
        for trade in hooks_for(spec).after_exchange:
            data = await trade(Exchange(http=_Bound(self, provider, client), spec=spec,
                                        client_id=client.client_id,
                                        client_secret=client.client_secret, data=data))
        response = self.parse_tokens(provider, client, data, now=now, requested=requested)
        if spec.account_source is AccountSource.USERINFO:
            response.account = await self.userinfo_account(provider, response.tokens)
        response.connection = await self.connection_values(provider, data, response.tokens)
        return response

    async def connection_values(
        self, provider: Provider, data: Mapping[str, Any], tokens: TokenSet,
    ) -> dict[str, str]:
        """Return the grant's connection values from the token response and metadata."""
        values: dict[str, str] = {}
        public = {k: v for k, v in data.items() if k not in _SECRET_KEYS}
        for value in provider.connection:
            match value.source:
                case ValueSource.USER:
                    continue  # asked on the connect page, not of the provider
                case ValueSource.TOKEN_RESPONSE:
                    raw = dotted(public, value.field or "")
                case ValueSource.METADATA:
                    header = f"{value.auth_scheme} {tokens.access_token.reveal()}"
                    body = await self._read(provider, value.url or "", what="metadata",
                                            headers={"Authorization": header})
                    raw = dotted(body, value.field or "")
                case _:
                    assert_never(value.source)
            if raw is None:
                raise ProviderAPIError(
                    f"{provider.id!r} did not return {value.field!r} ({value.label}), which "
                    "this provider's grants need to know their API host.",
                    provider_id=provider.id, hint="Check the app's scopes and retry connect.")
            values[value.name] = value.accept(raw, provider_id=provider.id)
        return values

    async def refresh(
        self, provider: Provider, client: OAuthClientConfig, tokens: TokenSet, *,
        now: datetime,
    ) -> TokenSet:
        """Redeem the refresh token; return the new set completed by the old one."""
        spec = _spec(provider)
        call = TokenCall(url=spec.refresh_url or spec.token_url,
                         body={"grant_type": "refresh_token"})
        if tokens.refresh_token is not None:
            call.body["refresh_token"] = tokens.refresh_token.reveal()
        for reshape in hooks_for(spec).refresh_request:
            reshape(spec, call, tokens)
        if not {"refresh_token", "access_token"} & set(call.body):
            raise InvalidGrantError(
                f"The grant's token for {provider.id!r} expired and no refresh token was issued.",
                provider_id=provider.id, error="invalid_grant",
            )
        data = await self._call(provider, client, call, what="token", secrets=tokens.secrets())
        fresh = self.parse_tokens(provider, client, data, now=now,
                                  requested=tokens.requested_scopes)
        return tokens.after_refresh(fresh.tokens)

    async def revoke(
        self, provider: Provider, client: OAuthClientConfig, token: Secret, *, hint: str
    ) -> None:
        """Revoke one token at the provider's RFC 7009 endpoint."""
        url = _spec(provider).revocation_url
        if url is None:
            raise ConfigurationError(f"Provider {provider.id!r} has no revocation endpoint.",
                                     setting=f"catalog.{provider.id}.oauth.revocation_url")
        spec = _spec(provider)
        call = TokenCall(url=url.replace("{client_id}", quote(client.client_id, safe="")),
                         body={"token": token.reveal(), "token_type_hint": hint})
        for reshape in hooks_for(spec).revocation:
            reshape(spec, call)
        await self._call(provider, client, call, what="revocation", secrets=[token])

    async def userinfo_account(self, provider: Provider, tokens: TokenSet) -> str | None:
        """Return the account identifier read from the provider's userinfo endpoint."""
        spec = _spec(provider)
        if spec.userinfo_url is None:
            return None
        identity = hooks_for(spec).identity
        if identity is not None:
            body = await identity(Identity(http=_Bound(self, provider, None), spec=spec,
                                           injection=provider.injection,
                                           token=tokens.access_token))
        else:
            header = f"Bearer {tokens.access_token.reveal()}"
            body = await self._read(provider, spec.userinfo_url, what="userinfo",
                                    headers={"Authorization": header})
        return dotted(body, spec.account_field)

    async def _read(
        self, provider: Provider, url: str, *, what: str, headers: Mapping[str, str],
        json: Any = None, form: Mapping[str, str] | None = None,
    ) -> Any:
        """Read a JSON document about the new grant (userinfo, metadata, identity)."""
        sent = {"Accept": "application/json", **headers}
        try:
            if json is None and form is None:
                response = await self._http.get(url, timeout=self._timeout,
                                                follow_redirects=False, headers=sent)
            else:
                payload: dict[str, Any] = {"json": json} if form is None else {"data": form}
                response = await self._http.post(url, timeout=self._timeout, headers=sent,
                                                 follow_redirects=False, **payload)
        except httpx2.HTTPError as exc:
            raise ProviderAPIError(
                f"The {what} endpoint of {provider.id!r} could not be reached "
                f"({type(exc).__name__}).", provider_id=provider.id,
            ) from None
        if response.status_code >= 400:
            raise ProviderAPIError(
                f"The {what} endpoint of {provider.id!r} answered HTTP {response.status_code}.",
                status=response.status_code, provider_id=provider.id,
            )
        try:
            return jsonlib.loads(response.text) if response.text.strip() else {}
        except ValueError:
            return _parse_body(response)


class _Bound:
    """The OAuth client bound to one provider (and client), as the quirk hooks see it."""

    def __init__(self, http: OAuthHttp, provider: Provider,
                 client: OAuthClientConfig | None) -> None:
        self._http = http
        self._provider = provider
        self._client = client

    async def call(self, call: TokenCall, *, what: str,
                   secrets: Iterable[str | Secret]) -> dict[str, Any]:
        """Send a token-endpoint-like call for the provider."""
        if self._client is None:
            raise ConfigurationError("This hook point has no OAuth client to call with.",
                                     setting=f"catalog.{self._provider.id}.oauth.quirks")
        return await self._http._call(self._provider, self._client, call, what=what,
                                      secrets=secrets)

    async def read(self, url: str, *, headers: dict[str, str], what: str,
                   json: Any = None, form: dict[str, str] | None = None) -> Any:
        """Read a JSON document about the grant."""
        return await self._http._read(self._provider, url, what=what, headers=headers,
                                      json=json, form=form)
