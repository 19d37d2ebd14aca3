"""Credential injection: a prepared request plus a credential, by the provider's rules.

Each :class:`~alter_mcp.providers.schema.Injection` rule puts the credential somewhere:
``bearer`` (``Authorization: Bearer <format>``), ``header`` (``<name>: <format>``), ``query``
(``?<name>=<format>``), ``basic`` (``Authorization: Basic base64(<username>:<password>)``) and
``aws_sigv4`` (signed last, so it covers what the other rules added). Templates name credential
fields, e.g. ``"{access_token}"`` or ``"token {api_key}"``; nothing else is interpolated.

The result, :class:`OutboundRequest`, is the only object that holds the credential in
plaintext. It also lists every form of the credential a provider could echo back (raw,
URL-encoded, base64, JSON-escaped), so the response can be scrubbed.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NoReturn, assert_never
from urllib.parse import quote, quote_plus

from alter_mcp.errors import BlockedDestinationError, ConfigurationError, InvalidInputError
from alter_mcp.providers.schema import Injection, InjectionKind, Provider
from alter_mcp.proxy.destination import DEFAULT_PORTS, encode_query, is_loopback
from alter_mcp.proxy.guard import CALLER_FORBIDDEN, HOP_BY_HOP, PreparedRequest, reserved_names
from alter_mcp.proxy.sigv4 import sign_v4
from alter_mcp.redaction import KnownSecrets, Secret

__all__ = ["USER_AGENT", "OutboundRequest", "inject", "secret_forms"]

USER_AGENT = "alter-mcp"

_MIN_FORM_LENGTH = 4
_PERCENT = re.compile(r"%[0-9A-F]{2}")


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """The request as sent, credential included: never log it, return it or keep it."""

    method: str
    url: str = field(repr=False)
    headers: tuple[tuple[str, str], ...] = field(repr=False)
    content: bytes | None = field(repr=False)
    #: Every plaintext form of the credential that a response must not show.
    secrets: KnownSecrets = field(repr=False)

    def __reduce__(self) -> NoReturn:
        raise TypeError("OutboundRequest holds a credential and cannot be pickled")


def secret_forms(values: Iterable[str]) -> KnownSecrets:
    """Return ``values`` with their URL-encoded, base64 and JSON-escaped forms, longest first.

    Percent-encoded forms come with upper- and lowercase hex, and every form holding ``/``
    also with ``\\/`` (JSON's optional escape).
    """
    return _forms(tuple(values))


# A grant's credential is the same on every request until it changes, so its forms are
# worked out once. The cache lives in memory only, beside the plaintext the vault already
# holds while it sends; it is bounded, and a rotated credential simply misses.
@functools.lru_cache(maxsize=512)
def _forms(values: tuple[str, ...]) -> KnownSecrets:
    forms: set[str] = set()
    for value in values:
        if len(value) < _MIN_FORM_LENGTH:
            continue
        raw = value.encode("utf-8")
        forms.update({
            value, quote(value, safe=""), quote(value), quote_plus(value),
            json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
        })
        for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
            text = encoded.decode("ascii")
            forms.update({text, text.rstrip("=")})
    # Variants providers write: "%2b" (lowercase hex, e.g. .NET's UrlEncode) and "\/" (JSON
    # with escaped slashes, e.g. PHP's json_encode), also in an escaped URL-encoded value.
    forms |= {_PERCENT.sub(lambda m: m.group(0).lower(), f) for f in forms if "%" in f}
    forms |= {f.replace("/", "\\/") for f in forms if "/" in f}
    return KnownSecrets(sorted((f for f in forms if len(f) >= _MIN_FORM_LENGTH),
                               key=lambda f: (-len(f), f)))


def _credential_field(provider: Provider, credential: Mapping[str, Secret], name: str) -> str:
    secret = credential.get(name)
    if secret is None:
        raise InvalidInputError(
            f"The credential for provider {provider.id!r} has no field {name!r}, which its "
            "injection rule needs.",
            field=f"credential.{name}",
            hint="Store the secret again with every field the provider lists.",
        )
    return secret.reveal() if isinstance(secret, Secret) else str(secret)


def _render(template: str, provider: Provider, credential: Mapping[str, Secret]) -> str:
    parts: list[str] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        parts.append(literal)
        if name is None:
            continue
        if spec or conversion or not name.isidentifier():
            raise ConfigurationError(
                f"Provider {provider.id!r} has an injection template with {{{name}}}; only "
                "plain {field_name} placeholders are allowed.",
                setting=f"catalog.{provider.id}.injection",
            )
        parts.append(_credential_field(provider, credential, name))
    return "".join(parts)


def _check_wire_value(value: str, provider: Provider, rule: Injection) -> None:
    if (any(c in value for c in "\r\n\x00") or not value.isascii()
            or value != value.strip(" \t")):
        # The value itself is never quoted here: it is the credential.
        raise InvalidInputError(
            f"The credential for provider {provider.id!r} contains a line break, NUL, "
            "non-ASCII character or surrounding space, so it cannot be sent by "
            f"{rule.kind.value!r} injection.",
            field="credential", hint="Store the secret again without line breaks or padding.",
        )


def _check_destination(prepared: PreparedRequest, provider: Provider) -> None:
    # Defence in depth: a PreparedRequest can be built by hand, so its origin is re-checked.
    port_ok = prepared.port in (DEFAULT_PORTS.get(prepared.scheme), *provider.api_ports)
    scheme_ok = prepared.scheme == "https" or (
        prepared.scheme == "http" and is_loopback(prepared.host))
    own_host = provider.host_allowed(prepared.host, dict(prepared.connection))
    if prepared.provider_id != provider.id or not own_host or not port_ok or not scheme_ok:
        raise BlockedDestinationError(
            f"The request was not prepared for provider {provider.id!r}'s API hosts.",
            field="url", hint="Build it with prepare() for this provider.",
        )
    header_names, query_names = reserved_names(provider)
    for name, _ in prepared.headers:
        lowered = name.lower()
        if lowered in header_names or lowered in CALLER_FORBIDDEN or lowered in HOP_BY_HOP:
            raise BlockedDestinationError(f"Header {name!r} may not be set by the caller.",
                                          field=f"headers.{name}")
    for name, _ in prepared.query:
        if name.lower() in query_names:
            raise BlockedDestinationError(
                f"Query parameter {name!r} is set by the credential injection.",
                field=f"query_params.{name}")


def _set_header(headers: list[tuple[str, str]], name: str, value: str, provider: Provider) -> None:
    if any(k.lower() == name.lower() for k, _ in headers):
        raise ConfigurationError(
            f"Provider {provider.id!r} has two injection rules for header {name!r}.",
            setting=f"catalog.{provider.id}.injection",
        )
    headers.append((name, value))


def inject(
    prepared: PreparedRequest,
    provider: Provider,
    credential: Mapping[str, Secret],
    *,
    now: datetime | None = None,
    user_agent: str = USER_AGENT,
) -> OutboundRequest:
    """Return ``prepared`` with ``credential`` put in by each of the provider's injection rules."""
    _check_destination(prepared, provider)
    headers = list(prepared.headers)
    if prepared.header("user-agent") is None and not any(
            name.lower() == "user-agent" for name in provider.default_headers):
        headers.append(("User-Agent", user_agent))
    # Defaults are the catalogue's suggestions: the caller's own value wins.
    headers.extend((name, value) for name, value in provider.default_headers.items()
                   if prepared.header(name) is None)
    query = list(prepared.query)
    injected: list[str] = []
    signer: Injection | None = None
    public_fields = {f.name for f in provider.secret_fields if not f.secret}
    for rule in provider.injection:
        # A value built only from public fields (an app id, a region) is not scrubbed.
        carries_secret = not rule.placeholders() <= public_fields
        match rule.kind:
            case InjectionKind.AWS_SIGV4:
                signer = rule
                continue
            case InjectionKind.BASIC:
                user = _render(rule.username or "", provider, credential)
                password = _render(rule.password or "", provider, credential)
                pair = f"{user}:{password}"
                token = base64.b64encode(pair.encode("utf-8")).decode("ascii")
                value, name = f"Basic {token}", "Authorization"
                injected.extend((password, pair, token) if carries_secret else ())
            case InjectionKind.BEARER:
                value = _render(rule.format, provider, credential)
                injected.extend((value,) if carries_secret else ())
                name = rule.name or "Authorization"
                # A catalogue may write the whole header value; do not double the scheme.
                value = value if value.lower().startswith("bearer ") else f"Bearer {value}"
            case InjectionKind.HEADER | InjectionKind.QUERY:
                value = _render(rule.format, provider, credential)
                injected.extend((value,) if carries_secret else ())
                name = rule.name or ""
            case _:
                assert_never(rule.kind)
        _check_wire_value(value, provider, rule)
        if rule.kind is InjectionKind.QUERY:
            query.append((name, value))
        else:
            _set_header(headers, name, value, provider)
    if signer is not None:
        headers.extend(_sigv4_headers(prepared, provider, credential, headers, query, now))
    values = [
        _credential_field(provider, credential, name)
        for name in credential if name not in public_fields
    ]
    encoded = encode_query(tuple(query))
    url = f"{prepared.scheme}://{prepared.authority}{prepared.path}"
    return OutboundRequest(
        method=prepared.method.value,
        url=url + (f"?{encoded}" if encoded else ""),
        headers=tuple(headers),
        content=prepared.content,
        secrets=secret_forms([*values, *injected]),
    )


def _sigv4_headers(
    prepared: PreparedRequest, provider: Provider, credential: Mapping[str, Secret],
    headers: list[tuple[str, str]], query: list[tuple[str, str]], now: datetime | None,
) -> tuple[tuple[str, str], ...]:
    def need(name: str) -> str:
        return _credential_field(provider, credential, name)

    if any(k.lower() == "authorization" for k, _ in headers):
        raise ConfigurationError(
            f"Provider {provider.id!r} combines aws_sigv4 with another Authorization rule.",
            setting=f"catalog.{provider.id}.injection",
        )
    token: Any = credential.get("session_token")
    added = sign_v4(
        method=prepared.method.value, host=prepared.authority, path=prepared.path,
        query=query, headers=headers, payload=prepared.content or b"",
        access_key_id=need("access_key_id"), secret_access_key=need("secret_access_key"),
        region=need("region"), service=provider.aws_service or "",
        now=now or datetime.now(UTC),
        session_token=need("session_token") if token else None,
    )
    rule = Injection(kind=InjectionKind.AWS_SIGV4)
    for _, value in added:
        _check_wire_value(value, provider, rule)
    return added
