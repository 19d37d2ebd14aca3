"""The destination guard: a caller's request checked and normalised before any credential is read.

``prepare`` is pure. It fills ``{name}`` placeholders, parses the URL strictly
(:mod:`alter_mcp.proxy.destination`), merges query parameters, vets headers and encodes the
body. Whatever it returns may receive the provider's credential; whatever would send it
elsewhere raises :class:`BlockedDestinationError`, and malformed input raises
:class:`InvalidInputError`, each naming the field to fix.
"""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from alter_mcp.errors import BlockedDestinationError, InvalidInputError
from alter_mcp.models import HttpMethod
from alter_mcp.providers.schema import Provider
from alter_mcp.proxy.destination import (
    DEFAULT_PORTS,
    encode_query,
    field_label,
    normalize_path,
    parse_authority,
    parse_query,
    split_url,
)

__all__ = [
    "CALLER_FORBIDDEN",
    "HOP_BY_HOP",
    "PreparedRequest",
    "QueryValue",
    "prepare",
    "reserved_names",
]

QueryValue = str | int | float | Sequence[str | int | float]

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_BAD_VALUE_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_MAX_HEADERS = 100
_MAX_HEADER_VALUE = 8192

#: Set by the HTTP client from the message itself; a caller's copy would desynchronise it.
HOP_BY_HOP = frozenset({
    "connection", "content-length", "keep-alive", "proxy-connection", "te", "trailer",
    "transfer-encoding", "upgrade",
})
#: Never taken from the caller: the vault authenticates, and the URL names the host.
CALLER_FORBIDDEN = frozenset({"authorization", "cookie", "host", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class PreparedRequest:
    """A request that passed the guard for one provider; it holds no credential."""

    provider_id: str
    method: HttpMethod
    scheme: str
    host: str
    port: int
    path: str
    query: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    content: bytes | None = field(default=None, repr=False)
    #: The grant's connection values: which of the provider's templated hosts are its own.
    connection: tuple[tuple[str, str], ...] = ()

    @property
    def authority(self) -> str:
        """Return ``host`` or ``host:port`` when the port is not the scheme's default."""
        if self.port == DEFAULT_PORTS[self.scheme]:
            return self.host
        return f"{self.host}:{self.port}"

    @property
    def origin(self) -> tuple[str, str, int]:
        """Return (scheme, host, port): two requests with equal origins share a credential."""
        return self.scheme, self.host, self.port

    @property
    def url(self) -> str:
        """Return the URL as sent, before injection (so it never contains the credential)."""
        query = encode_query(self.query)
        return f"{self.scheme}://{self.authority}{self.path}" + (f"?{query}" if query else "")

    def header(self, name: str) -> str | None:
        """Return the caller's value of header ``name`` (case-insensitive), if any."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)


def reserved_names(provider: Provider) -> tuple[frozenset[str], frozenset[str]]:
    """Return the lowercase header and query names the provider's injection sets."""
    return provider.reserved_names()


def _method(method: HttpMethod | str) -> HttpMethod:
    try:
        return HttpMethod(str(method).upper())
    except ValueError:
        allowed = ", ".join(m.value for m in HttpMethod)
        raise InvalidInputError(
            f"HTTP method {field_label(str(method))!r} is not supported.", field="method",
            hint=f"Use one of: {allowed}.",
        ) from None


def _fill_path(template: str, path_params: Mapping[str, Any]) -> str:
    used: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in path_params:
            raise InvalidInputError(
                f"The URL placeholder {{{name}}} has no value.", field=f"path_params.{name}",
                hint=f"Pass path_params={{'{name}': ...}} or remove the placeholder.",
            )
        used.add(name)
        return _path_value(name, path_params[name])

    filled = _PLACEHOLDER.sub(fill, template)
    leftover = _PLACEHOLDER.sub("", template)
    if "{" in leftover or "}" in leftover:
        raise InvalidInputError(
            "The URL path has a '{' or '}' that is not a {name} placeholder.", field="url",
            hint="Placeholders are {letters_digits_underscores}; encode literal braces as %7B/%7D.",
        )
    unused = sorted(set(path_params) - used)
    if unused:
        raise InvalidInputError(
            f"path_params has {field_label(unused[0])!r}, which no URL placeholder uses.",
            field=f"path_params.{field_label(unused[0])}",
            hint="Remove it, or add the {name} placeholder to the URL path.",
        )
    return filled


def _path_value(name: str, value: Any) -> str:
    where = f"path_params.{name}"
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidInputError("A path parameter must be a string or an integer.", field=where)
    text = str(value)
    if not text:
        raise InvalidInputError("A path parameter cannot be empty.", field=where)
    if _BAD_VALUE_CHARS.search(text) or "\t" in text:
        raise InvalidInputError("A path parameter contains a control character.", field=where)
    if text in (".", "..") or any(c in text for c in "/\\?#") or _ESCAPE.search(text):
        raise BlockedDestinationError(
            "A path parameter fills exactly one path segment: it may not be '.' or '..', "
            "nor contain '/', '\\', '?', '#' or a %XX escape.",
            field=where, hint="Put multi-segment paths in the URL itself; pass values unencoded.",
        )
    return quote(text, safe="")


def _query_values(name: str, value: QueryValue) -> list[str]:
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    out = []
    for item in items:
        if isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, str | int | float):
            out.append(str(item))
        else:
            raise InvalidInputError(
                "A query parameter value must be a string, a number or a list of them.",
                field=f"query_params.{field_label(name)}",
            )
    return out


def _merge_query(
    url_pairs: tuple[tuple[str, str], ...], query_params: Mapping[str, QueryValue] | None,
    reserved: frozenset[str],
) -> tuple[tuple[str, str], ...]:
    pairs = [("url", name, value) for name, value in url_pairs]
    for name, value in (query_params or {}).items():
        if not isinstance(name, str) or not name:
            raise InvalidInputError("Query parameter names must be non-empty strings.",
                                    field="query_params")
        pairs.extend((f"query_params.{field_label(name)}", name, v)
                     for v in _query_values(name, value))
    for where, name, value in pairs:
        if _BAD_VALUE_CHARS.search(name) or _BAD_VALUE_CHARS.search(value):
            raise InvalidInputError(
                "A query parameter contains a control character (CR, LF, NUL, ...).",
                field=where, hint="Remove line breaks and control characters.",
            )
        if name.lower() in reserved:
            raise BlockedDestinationError(
                f"Query parameter {field_label(name)!r} is set by the vault's credential "
                "injection for this provider.",
                field=where, hint="Remove it; the vault adds the credential itself.",
            )
    return tuple((name, value) for _, name, value in pairs)


def _check_headers(
    headers: Mapping[str, str] | None, reserved: frozenset[str],
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    items = list((headers or {}).items())
    if len(items) > _MAX_HEADERS:
        raise InvalidInputError(f"More than {_MAX_HEADERS} headers.", field="headers")
    for name, value in items:
        where = f"headers.{field_label(str(name))}"
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidInputError(
                "A header name must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~).",
                field=where, hint="Remove spaces, colons and line breaks from the name.",
            )
        if not isinstance(value, str):
            raise InvalidInputError("A header value must be a string.", field=where)
        if _BAD_VALUE_CHARS.search(value):
            raise InvalidInputError(
                "A header value contains CR, LF, NUL or another control character.",
                field=where, hint="Remove line breaks; one header is one line.",
            )
        if not value.isascii() or len(value) > _MAX_HEADER_VALUE:
            raise InvalidInputError(
                f"A header value must be ASCII and at most {_MAX_HEADER_VALUE} characters.",
                field=where, hint="Percent-encode or base64-encode non-ASCII data.",
            )
        lowered = name.lower()
        if lowered in seen:
            raise InvalidInputError("The same header is given twice (names ignore case).",
                                    field=where, hint="Give each header once.")
        seen.add(lowered)
        if lowered in CALLER_FORBIDDEN or lowered in reserved:
            raise BlockedDestinationError(
                f"Header {name!r} may not be set by the caller: the vault authenticates "
                "the request and the URL names the host.",
                field=where, hint="Remove it; the vault injects the credential itself.",
            )
        if lowered in HOP_BY_HOP:
            raise BlockedDestinationError(
                f"Header {name!r} is managed by the HTTP client.", field=where,
                hint="Remove it.",
            )
        # Surrounding whitespace is not part of a field value (RFC 9110 section 5.5), and
        # the HTTP/1.1 writer refuses to send it.
        out.append((name, value.strip(" \t")))
    return out


def _encode_body(
    json: Any, body: bytes | str | Mapping[str, str] | None, headers: list[tuple[str, str]],
) -> bytes | None:
    has_type = any(k.lower() == "content-type" for k, _ in headers)
    if json is not None and body is not None:
        raise InvalidInputError("Give `json` or `body`, not both.", field="body")
    if json is not None:
        try:
            content = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"`json` is not JSON-serialisable: {exc}.",
                                    field="json") from None
        if not has_type:
            headers.append(("Content-Type", "application/json"))
        return content
    if body is None:
        return None
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, Mapping):
        if not has_type:
            headers.append(("Content-Type", "application/x-www-form-urlencoded"))
        return urlencode(list(body.items())).encode("ascii")
    raise InvalidInputError("`body` must be bytes, a string or a form mapping.", field="body")


def prepare(
    provider: Provider,
    method: HttpMethod | str,
    url: str,
    *,
    path_params: Mapping[str, str | int] | None = None,
    query_params: Mapping[str, QueryValue] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    body: bytes | str | Mapping[str, str] | None = None,
    allow_insecure_http: bool = False,
    connection: Mapping[str, str] | None = None,
) -> PreparedRequest:
    """Check a caller's request against ``provider`` and return it ready for injection.

    ``connection`` is the grant's connection values; only the hosts they render are allowed.
    """
    verb = _method(method)
    scheme, authority, raw_path, raw_query = split_url(url)
    host, port = parse_authority(provider, scheme, authority,
                                 allow_insecure_http=allow_insecure_http, connection=connection)
    path = normalize_path(_fill_path(raw_path, path_params or {}))
    header_names, query_names = reserved_names(provider)
    if _PLACEHOLDER.search(raw_query) or "{" in raw_query:
        raise InvalidInputError("URL placeholders are only allowed in the path.", field="url",
                                hint="Pass query values in query_params.")
    query = _merge_query(parse_query(raw_query), query_params, query_names)
    vetted = _check_headers(headers, header_names)
    content = _encode_body(json, body, vetted)
    return PreparedRequest(
        provider_id=provider.id, method=verb, scheme=scheme, host=host, port=port, path=path,
        query=query, headers=tuple(vetted), content=content,
        connection=tuple(sorted((connection or {}).items())),
    )
