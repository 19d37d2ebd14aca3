"""Verify end users' access tokens from the configured identity provider into identities.

Two verifiers, one chosen by the settings (:func:`verifier_from_settings`): JWTs checked
locally (:class:`JwtVerifier`, the default), or any token, opaque included, asked about at the
provider's RFC 7662 introspection endpoint (:class:`IntrospectionVerifier`).

One verifier serves every transport: the bearer token of an HTTP request, the user token
configured for stdio, and the token installed by ``AlterVault.authenticate()``. Checks, in order:
the header's ``alg`` is on the allow-list (asymmetric only: never ``none`` or ``HS*``), the
``kid`` names a key of the issuer's JWKS (fetched once, cached, re-fetched when an unknown
``kid`` appears), the key's type fits the algorithm, the signature, then ``iss``, ``aud``,
``exp``, ``nbf`` and ``iat`` against an injected clock with a small leeway.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import anyio
import httpx2
import jwt
from jwt.exceptions import InvalidTokenError, PyJWKError
from pydantic import SecretStr

from alter_mcp.config import Settings, cleartext_allowed
from alter_mcp.errors import (
    AuthenticationError,
    ConfigurationError,
    IdentityProviderUnavailableError,
)
from alter_mcp.models import CallerType, Identity, UserPrincipal

__all__ = [
    "DEFAULT_ALGORITHMS",
    "IntrospectionVerifier",
    "JwtVerifier",
    "TokenVerifier",
    "VerifiedToken",
    "identity_from_claims",
    "token_fingerprint",
    "verifier_from_settings",
]

DEFAULT_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                      "ES256", "ES384", "ES512", "EdDSA")
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
_MAX_TOKEN = 16_384


def token_fingerprint(token: str) -> str:
    """Return a non-secret handle for a token (its SHA-256), safe to keep in memory and logs."""
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()[:32]


def _issuer_and_audience(settings: Settings) -> tuple[str, str]:
    """Return the issuer and audience user tokens must have, or say which setting is missing."""
    if not settings.idp_issuer:
        raise ConfigurationError(
            "No identity provider is configured, so user tokens cannot be verified.",
            setting="ALTER_MCP_IDP_ISSUER",
            hint="Set ALTER_MCP_IDP_ISSUER (and ALTER_MCP_PUBLIC_URL or "
                 "ALTER_MCP_IDP_AUDIENCE).",
        )
    audience = settings.idp_audience or (
        settings.public_url + settings.mcp_path if settings.public_url else None)
    if not audience:
        raise ConfigurationError(
            "The token audience is unknown.", setting="ALTER_MCP_IDP_AUDIENCE",
            hint="Set ALTER_MCP_PUBLIC_URL (the audience is then PUBLIC_URL + /mcp) or "
                 "ALTER_MCP_IDP_AUDIENCE.",
        )
    return settings.idp_issuer, audience


def _fail(message: str, reason: str) -> AuthenticationError:
    return AuthenticationError(message, hint="Sign in again to get a fresh token.",
                               reason=reason)


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    """A JWT that passed every check: its identity, expiry and (non-secret) claims."""

    identity: Identity
    claims: Mapping[str, Any] = field(repr=False)
    expires_at: int
    client_id: str
    fingerprint: str


class JwtVerifier:
    """Verifies RS/PS/ES/EdDSA JWTs of one issuer for one audience, caching its JWKS."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_uri: str | None = None,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        leeway: float = 30.0,
        groups_claim: str = "groups",
        http: httpx2.AsyncClient | None = None,
        jwks_ttl: float = 3600.0,
        refresh_interval: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        bad = [a for a in algorithms if a not in DEFAULT_ALGORITHMS]
        if bad or not algorithms:
            raise ConfigurationError(f"JWT algorithms {bad} are not allowed.",
                                     setting="ALTER_MCP_IDP_ALGORITHMS",
                                     hint="Use asymmetric algorithms only (RS256, ES256, …).")
        self.issuer = issuer
        self.audience = audience
        self.algorithms = tuple(algorithms)
        self.leeway = leeway
        self.groups_claim = groups_claim
        self._jwks_uri = jwks_uri
        self._http = http
        self._jwks_ttl = jwks_ttl
        self._refresh_interval = refresh_interval
        self._clock = clock
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._lock = anyio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, *, http: httpx2.AsyncClient | None = None
                      ) -> JwtVerifier:
        """Return the verifier the settings describe, or say which setting is missing."""
        issuer, audience = _issuer_and_audience(settings)
        return cls(issuer=issuer, audience=audience,
                   jwks_uri=settings.idp_jwks_uri, algorithms=settings.idp_algorithms,
                   leeway=settings.idp_leeway, groups_claim=settings.idp_groups_claim, http=http)

    # -- keys ---------------------------------------------------------------------------------
    async def _fetch(self, url: str) -> httpx2.Response:
        headers = {"accept": "application/json"}
        if self._http is not None:
            return await self._http.get(url, headers=headers)
        # Key fetches are rare (cached for jwks_ttl), so a short-lived client owns no lifecycle.
        async with httpx2.AsyncClient(timeout=10.0) as client:
            return await client.get(url, headers=headers)

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = await self._fetch(url)
            response.raise_for_status()
            data = response.json()
        except (httpx2.HTTPError, ValueError) as exc:
            # The token was not checked, so it must not be called bad: the caller retries.
            raise IdentityProviderUnavailableError(
                f"The identity provider's keys could not be fetched ({type(exc).__name__}).",
                hint="Retry shortly; if it persists, check ALTER_MCP_IDP_ISSUER / "
                     "ALTER_MCP_IDP_JWKS_URI and that this server can reach the provider.",
                url=url,
            ) from exc
        if not isinstance(data, dict):
            raise _fail("The identity provider answered with unexpected JSON.", "jwks_invalid")
        return data

    async def _resolve_jwks_uri(self) -> str:
        if self._jwks_uri is None:
            meta = await self._get_json(self.issuer.rstrip("/")
                                        + "/.well-known/openid-configuration")
            if meta.get("issuer") != self.issuer or not isinstance(meta.get("jwks_uri"), str):
                raise _fail("The identity provider's discovery document does not match the "
                            "configured issuer.", "discovery_mismatch")
            self._jwks_uri = str(meta["jwks_uri"])
        return self._jwks_uri

    async def _refresh(self) -> None:
        data = await self._get_json(await self._resolve_jwks_uri())
        keys = data.get("keys")
        self._keys = {
            raw.get("kid"): raw for raw in (keys if isinstance(keys, list) else [])
            if isinstance(raw, dict) and raw.get("use", "sig") == "sig"
        }
        self._fetched_at = self._clock()

    async def _key(self, kid: str | None, alg: str) -> Any:
        async with self._lock:
            now = self._clock()
            stale = self._fetched_at is None or now - self._fetched_at > self._jwks_ttl
            may_refetch = self._fetched_at is None or now - self._fetched_at >= \
                self._refresh_interval
            if stale or (kid not in self._keys and may_refetch):
                await self._refresh()
            raw = self._keys.get(kid)
            if raw is None and kid is None and len(self._keys) == 1:
                raw = next(iter(self._keys.values()))
        if raw is None:
            raise _fail("The token was signed with a key the identity provider does not "
                        "publish.", "unknown_kid")
        # The key decides the algorithm family: an RSA key never verifies an HMAC or EC token.
        if raw.get("kty") != _KEY_TYPES.get(alg[:2]) or raw.get("alg", alg) != alg:
            raise _fail("The token's algorithm does not match its key.", "algorithm_mismatch")
        try:
            return jwt.PyJWK(raw, algorithm=alg).key
        except PyJWKError:
            raise _fail("The identity provider's key cannot be used.", "jwks_invalid") from None

    # -- verification -------------------------------------------------------------------------
    async def verify(self, token: str) -> VerifiedToken:
        """Return the verified token, or raise ``AuthenticationError`` saying what failed.

        Raises ``IdentityProviderUnavailableError`` when the keys needed could not be fetched.
        """
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN:
            raise _fail("The bearer token is missing or too long.", "malformed")
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            raise _fail("The bearer token is not a well-formed JWT.", "malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise _fail(f"The token's signing algorithm {str(alg)[:20]!r} is not accepted.",
                        "algorithm_not_allowed")
        kid = header.get("kid")
        key = await self._key(kid if isinstance(kid, str) else None, alg)
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key=key, algorithms=[alg], audience=self.audience,
                issuer=self.issuer,
                options={"require": ["iss", "sub", "aud", "exp", "iat"], "verify_exp": False,
                         "verify_nbf": False, "verify_iat": False},
            )
        except jwt.InvalidAudienceError:
            raise _fail("The token was issued for another audience.", "wrong_audience") from None
        except jwt.InvalidIssuerError:
            raise _fail("The token was issued by another issuer.", "wrong_issuer") from None
        except jwt.InvalidSignatureError:
            raise _fail("The token's signature is invalid.", "bad_signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise _fail(f"The token lacks the {exc.claim!r} claim.", "missing_claim") from None
        except InvalidTokenError:
            raise _fail("The token could not be verified.", "invalid") from None
        self._check_times(claims)
        return self._verified(token, claims)

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now, leeway = self._clock(), self.leeway
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, int | float)
                                      or isinstance(value, bool)):
                raise _fail(f"The token's {name!r} claim is not a number.", "malformed")
        if claims["exp"] <= now - leeway:
            raise _fail("The token has expired.", "expired")
        if claims["iat"] > now + leeway:
            raise _fail("The token was issued in the future.", "issued_in_future")
        nbf = claims.get("nbf")
        if nbf is not None and nbf > now + leeway:
            raise _fail("The token is not valid yet (nbf).", "not_yet_valid")

    def _verified(self, token: str, claims: dict[str, Any]) -> VerifiedToken:
        return verified_token(token, claims, issuer=self.issuer, groups_claim=self.groups_claim,
                              expires_at=int(claims["exp"]))


def verified_token(token: str, claims: Mapping[str, Any], *, issuer: str, groups_claim: str,
                   expires_at: int) -> VerifiedToken:
    """Return the identity of checked ``claims``: the user ``sub`` at ``issuer``, their groups."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise _fail("The token's 'sub' claim is missing or empty.", "missing_claim")
    identity = identity_from_claims(issuer, subject, claims, groups_claim=groups_claim)
    client_id = next((str(claims[c]) for c in ("azp", "client_id")
                      if isinstance(claims.get(c), str) and claims[c]), subject)
    return VerifiedToken(identity=identity, claims=dict(claims), expires_at=expires_at,
                         client_id=client_id, fingerprint=token_fingerprint(token))


class TokenVerifier(Protocol):
    """Turns a presented access token into a verified identity."""

    async def verify(self, token: str) -> VerifiedToken:
        """Return the verified token, or raise ``AuthenticationError`` saying what failed."""
        ...


def verifier_from_settings(settings: Settings, *, http: httpx2.AsyncClient | None = None
                           ) -> TokenVerifier:
    """Return the verifier the settings choose: introspection if configured, else JWT."""
    if settings.introspects_tokens:
        return IntrospectionVerifier.from_settings(settings, http=http)
    return JwtVerifier.from_settings(settings, http=http)


#: Token types RFC 7662 answers may name for a plain bearer access token.
_BEARER_TYPES = {"bearer", "access_token", "urn:ietf:params:oauth:token-type:access_token"}


class IntrospectionVerifier:
    """Verifies any access token (opaque included) by RFC 7662 introspection, with a cache.

    A positive answer is cached until the token's ``exp`` and at most ``cache_ttl`` seconds (a
    revocation at the provider is seen within that time); a refusal for ``negative_ttl``
    seconds. Concurrent requests with the same uncached token wait for one introspection. The
    cache is keyed by the token's fingerprint, never the token, and holds at most
    ``max_entries``. An endpoint that cannot be reached, refuses this server's client or
    answers nonsense raises ``IdentityProviderUnavailableError`` (HTTP 503): the token was not
    checked, so it is not called bad. The token goes only into the introspection request body.
    """

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        client_id: str,
        client_secret: SecretStr,
        introspection_url: str | None = None,
        leeway: float = 30.0,
        groups_claim: str = "groups",
        http: httpx2.AsyncClient | None = None,
        cache_ttl: float = 60.0,
        negative_ttl: float = 10.0,
        allow_insecure_http: bool = False,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.groups_claim = groups_claim
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self._client_id = client_id
        self._client_secret = client_secret
        self._url = introspection_url
        self._insecure = allow_insecure_http
        self._http = http
        self._max_entries = max_entries
        self._clock = clock
        self._cache: dict[str, tuple[float, VerifiedToken | AuthenticationError]] = {}
        self._pending: dict[str, anyio.Event] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, http: httpx2.AsyncClient | None = None
                      ) -> IntrospectionVerifier:
        """Return the verifier the settings describe, or say which setting is missing."""
        issuer, audience = _issuer_and_audience(settings)
        secret = settings.idp_introspection_client_secret
        if settings.idp_introspection_client_id is None or secret is None:
            raise ConfigurationError(
                "Token introspection needs this server's client id and secret.",
                setting="ALTER_MCP_IDP_INTROSPECTION_CLIENT_SECRET",
                hint="Set ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID and _CLIENT_SECRET.")
        return cls(issuer=issuer, audience=audience,
                   client_id=settings.idp_introspection_client_id, client_secret=secret,
                   introspection_url=settings.idp_introspection_url, leeway=settings.idp_leeway,
                   groups_claim=settings.idp_groups_claim, http=http,
                   cache_ttl=settings.idp_introspection_cache_ttl,
                   allow_insecure_http=settings.allow_insecure_http)

    def clear(self) -> None:
        """Forget every cached answer."""
        self._cache.clear()

    async def verify(self, token: str) -> VerifiedToken:
        """Return the verified token, or raise ``AuthenticationError`` saying what failed.

        Raises ``IdentityProviderUnavailableError`` when the provider could not answer.
        """
        if (not isinstance(token, str) or not token or len(token) > _MAX_TOKEN
                or not token.isascii() or not token.isprintable() or " " in token):
            raise _fail("The bearer token is missing, too long or malformed.", "malformed")
        key = token_fingerprint(token)
        while True:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > self._clock():
                if isinstance(cached[1], AuthenticationError):
                    # A fresh error each time: re-raising one instance grows its traceback.
                    raise _fail(cached[1].message, str(cached[1].details.get("reason")))
                return cached[1]
            pending = self._pending.get(key)
            if pending is None:
                break
            # One question per token at a time: a client opening a session sends several
            # requests at once with a new token. After an outage (nothing cached) a waiter asks.
            await pending.wait()
        done = self._pending[key] = anyio.Event()
        try:
            now = self._clock()
            try:
                verified = self._check(token, await self._introspect(token))
            except AuthenticationError as refusal:
                self._remember(key, now + self.negative_ttl, refusal)
                raise
            self._remember(key, min(now + self.cache_ttl, verified.expires_at), verified)
            return verified
        finally:
            del self._pending[key]
            done.set()

    def _remember(self, key: str, until: float,
                  answer: VerifiedToken | AuthenticationError) -> None:
        if until <= self._clock():
            return
        if len(self._cache) >= self._max_entries:
            now = self._clock()
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            while len(self._cache) >= self._max_entries:  # still full: drop the oldest
                del self._cache[next(iter(self._cache))]
        self._cache.pop(key, None)
        self._cache[key] = (until, answer)

    # -- the provider ---------------------------------------------------------------------
    def _unavailable(self, what: str, hint: str) -> IdentityProviderUnavailableError:
        return IdentityProviderUnavailableError(
            f"The identity provider's introspection endpoint {what}.", hint=hint,
            url=self._url or self.issuer)

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx2.Response:
        if self._http is not None:
            return await self._http.request(method, url, **kwargs)
        async with httpx2.AsyncClient(timeout=10.0) as client:
            return await client.request(method, url, **kwargs)

    async def _endpoint(self) -> str:
        if self._url is None:
            try:
                response = await self._send(
                    "GET", self.issuer.rstrip("/") + "/.well-known/openid-configuration",
                    headers={"accept": "application/json"})
                response.raise_for_status()
                meta = response.json()
            except (httpx2.HTTPError, ValueError) as exc:
                raise self._unavailable(f"could not be discovered ({type(exc).__name__})",
                                        "Retry shortly, or set ALTER_MCP_IDP_INTROSPECTION_URL."
                                        ) from None
            if not isinstance(meta, dict):
                meta = {}
            url = meta.get("introspection_endpoint")
            if meta.get("issuer") != self.issuer or not isinstance(url, str):
                raise self._unavailable(
                    "is not in the provider's discovery document",
                    "Set ALTER_MCP_IDP_INTROSPECTION_URL, and check ALTER_MCP_IDP_ISSUER.")
            if not (self._insecure or cleartext_allowed(url)):
                raise self._unavailable(
                    f"{url} is plain http to another machine, which would expose tokens and "
                    "this server's secret", "Use an https issuer, or set "
                    "ALTER_MCP_ALLOW_INSECURE_HTTP=true on a trusted network.")
            self._url = url
        return self._url

    async def _introspect(self, token: str) -> dict[str, Any]:
        url = await self._endpoint()
        # RFC 6749 2.3.1: the client id and secret are form-encoded before Basic encoding.
        auth = httpx2.BasicAuth(quote(self._client_id, safe=""),
                                quote(self._client_secret.get_secret_value(), safe=""))
        try:
            response = await self._send(
                "POST", url, data={"token": token, "token_type_hint": "access_token"},
                auth=auth, headers={"accept": "application/json"})
        except httpx2.HTTPError as exc:
            raise self._unavailable(f"could not be reached ({type(exc).__name__})",
                                    "Retry shortly; if it persists, check that this server "
                                    "can reach the provider.") from None
        if response.status_code in (400, 401, 403):
            raise self._unavailable(
                f"refused this server's client (HTTP {response.status_code})",
                "Check ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID and _CLIENT_SECRET.")
        try:
            response.raise_for_status()
            data = response.json()
        except (httpx2.HTTPError, ValueError):
            raise self._unavailable(f"answered HTTP {response.status_code} without JSON",
                                    "Retry shortly.") from None
        if not isinstance(data, dict):
            raise self._unavailable("answered with unexpected JSON", "Retry shortly.")
        return data

    # -- the answer -----------------------------------------------------------------------
    def _check(self, token: str, claims: dict[str, Any]) -> VerifiedToken:
        if claims.get("active") is not True:
            raise _fail("The token is not active (expired, revoked or unknown).", "inactive")
        token_type = claims.get("token_type")
        if token_type is not None and str(token_type).lower() not in _BEARER_TYPES:
            raise _fail("The token is not a bearer access token.", "wrong_token_type")
        if claims.get("cnf") is not None:
            # Proof of possession (DPoP, mTLS) cannot be checked here; refuse, never downgrade.
            raise _fail("Sender-constrained tokens are not accepted.", "sender_constrained")
        if "iss" in claims and claims["iss"] != self.issuer:
            raise _fail("The token was issued by another issuer.", "wrong_issuer")
        audiences = claims.get("aud")
        if isinstance(audiences, str):
            audiences = [audiences]
        if not isinstance(audiences, list) or self.audience not in audiences:
            raise _fail("The token was issued for another audience.", "wrong_audience")
        now = self._clock()
        for name in ("exp", "nbf"):
            value = claims.get(name)
            if value is not None and (not isinstance(value, int | float)
                                      or isinstance(value, bool)):
                raise _fail(f"The token's {name!r} claim is not a number.", "malformed")
        exp = claims.get("exp")
        if exp is not None and exp <= now - self.leeway:
            raise _fail("The token has expired.", "expired")
        nbf = claims.get("nbf")
        if nbf is not None and nbf > now + self.leeway:
            raise _fail("The token is not valid yet (nbf).", "not_yet_valid")
        expires_at = int(exp) if exp is not None else int(now + self.cache_ttl)
        return verified_token(token, claims, issuer=self.issuer,
                              groups_claim=self.groups_claim, expires_at=expires_at)


def identity_from_claims(issuer: str, subject: str, claims: Mapping[str, Any], *,
                         groups_claim: str) -> Identity:
    """Return the user a verified token names: issuer + subject, a label, and their groups."""
    label = next((str(claims[c]) for c in ("email", "preferred_username", "name", "username")
                  if isinstance(claims.get(c), str) and claims[c]), None)
    return Identity(principal=UserPrincipal(issuer=issuer, subject=subject, label=label),
                    groups=frozenset(_groups(claims.get(groups_claim))),
                    caller_type=CallerType.MCP_CLIENT)


def _groups(value: Any) -> list[str]:
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    if isinstance(value, list | tuple):
        return [str(item) for item in value if isinstance(item, str | int) and str(item)]
    return []

