"""Where a request may go: strict parsing of a URL into an origin its provider allows.

The parser is deliberately narrower than any URL standard. Whatever two parsers could read
differently (backslashes, whitespace, userinfo, fragments, numeric hosts, trailing dots,
Unicode look-alikes) is refused instead of interpreted, so that the host this module
approves is the host the HTTP client connects to.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from urllib.parse import quote, unquote_to_bytes

import idna

from alter_mcp.errors import BlockedDestinationError, InvalidInputError
from alter_mcp.providers.schema import Provider

__all__ = [
    "DEFAULT_PORTS",
    "check_text",
    "encode_query",
    "field_label",
    "is_loopback",
    "normalize_path",
    "parse_authority",
    "parse_query",
    "split_url",
]

DEFAULT_PORTS = {"https": 443, "http": 80}
MAX_URL_LENGTH = 8192

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9A-Fa-f]*")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_DOTTED_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
# RFC 3986 pchar without "%": unreserved, sub-delims, ":" and "@" ("/" separates segments).
_PATH_SAFE = "-._~!$&'()*+,;=:@/%"
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zs", "Zl", "Zp"})


def field_label(name: str) -> str:
    """Return ``name`` shortened and with unprintable characters escaped, for error fields."""
    shown = "".join(c if c.isprintable() and c != "\\" else f"\\x{ord(c):02x}" for c in name)
    return shown if len(shown) <= 64 else shown[:61] + "..."


#: Printable ASCII but space and backslash: text made only of these passes check_text at once.
_PLAIN_ASCII = re.compile(r"[!-\[\]-~]*")


def check_text(value: str, *, field: str, what: str = "The URL") -> None:
    """Refuse whitespace, control, format and backslash characters anywhere in ``value``."""
    if _PLAIN_ASCII.fullmatch(value):
        return
    for index, char in enumerate(value):
        if char == "\\":
            raise BlockedDestinationError(
                f"{what} contains a backslash (position {index}); parsers disagree on it.",
                field=field,
                hint="Remove the backslash; percent-encode it as %5C if it is data.",
            )
        if char.isspace() or unicodedata.category(char) in _UNSAFE_CATEGORIES:
            raise InvalidInputError(
                f"{what} contains whitespace or a control character "
                f"(U+{ord(char):04X} at position {index}).",
                field=field,
                hint="Percent-encode spaces as %20 and remove control characters.",
            )


def split_url(url: str, *, field: str = "url") -> tuple[str, str, str, str]:
    """Split an absolute URL into scheme, authority, path and query, or raise a typed error."""
    if not isinstance(url, str) or not url:
        raise InvalidInputError("The URL must be a non-empty string.", field=field)
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInputError(
            f"The URL is longer than {MAX_URL_LENGTH} characters.", field=field,
            hint="Move data into query_params or the request body.",
        )
    check_text(url, field=field)
    if "#" in url:
        raise BlockedDestinationError(
            "The URL contains a fragment ('#'); fragments are never sent and can hide "
            "where a URL really points.",
            field=field, hint="Remove everything from '#' on, or percent-encode it as %23.",
        )
    match = _SCHEME.match(url)
    if match is None:
        raise BlockedDestinationError(
            "The URL is not absolute (no scheme); scheme-relative URLs such as '//host' "
            "are refused.",
            field=field, hint="Give a full https:// URL on one of the provider's API hosts.",
        )
    scheme = match.group(1).lower()
    rest = url[match.end():]
    if scheme not in DEFAULT_PORTS:
        raise BlockedDestinationError(
            f"The URL scheme {scheme!r} is not allowed; only https is.",
            field=field, hint="Use an https:// URL on one of the provider's API hosts.",
        )
    if not rest.startswith("//"):
        raise BlockedDestinationError(
            "The URL has no '//' authority after its scheme.",
            field=field, hint="Write it as https://host/path.",
        )
    rest = rest[2:]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, remainder = rest[:end], rest[end:]
    path, _, query = remainder.partition("?")
    return scheme, authority, path, query


def is_loopback(host: str) -> bool:
    """Return True for ``localhost`` and for 127.0.0.0/8 and ::1 literals."""
    if host in ("localhost", "::1"):
        return True
    return _DOTTED_QUAD.fullmatch(host) is not None and host.split(".")[0] == "127"


def _blocked(message: str, field: str, hint: str | None = None) -> BlockedDestinationError:
    return BlockedDestinationError(message, field=field, hint=hint)


def _ascii_host(raw: str, field: str) -> str:
    host = raw.lower()
    if not host:
        raise _blocked("The URL has no host.", field)
    if host.endswith("."):
        raise _blocked(
            f"The host {field_label(host)!r} ends with a dot.", field,
            "Remove the trailing dot; API hosts are matched exactly.",
        )
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=False).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise _blocked(
                f"The host {field_label(raw)!r} is not a valid internationalised domain name.",
                field, "Use the host's ASCII (xn--) form.",
            ) from None
    return host


def _check_labels(host: str, field: str) -> None:
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _blocked(
            f"The host {field_label(host)!r} is not a valid DNS name.", field,
            "Use a plain host name such as api.example.com.",
        )
    for label in labels:
        if label.startswith("xn--"):
            try:
                canonical = idna.encode(idna.decode(label), uts46=False).decode("ascii")
            except (idna.IDNAError, UnicodeError):
                canonical = ""
            if canonical != label:
                raise _blocked(
                    f"The host {host!r} has an invalid punycode label {label!r}.", field,
                )


def parse_authority(
    provider: Provider, scheme: str, authority: str, *, allow_insecure_http: bool,
    field: str = "url", connection: Mapping[str, str] | None = None,
) -> tuple[str, int]:
    """Return the (host, port) of ``authority`` if a grant of ``provider`` may receive it.

    ``connection`` holds the grant's connection values: templated hosts match only as
    rendered from them, so a grant reaches its own tenant's host and no other.
    """

    def allowed_hosts() -> str:
        # Only an error message needs the list: the hot path does not build it.
        return ", ".join(provider.hosts_for(connection or {})) or "(none for this grant)"

    if "@" in authority:
        raise _blocked(
            "The URL contains userinfo ('user@host'); it is refused because it hides "
            "the real host.",
            field, "Remove everything up to and including '@'.",
        )
    if "{" in authority or "}" in authority:
        raise InvalidInputError(
            "URL placeholders are only allowed in the path.", field=field,
            hint="Put the host in the URL literally.",
        )
    insecure = scheme == "http"
    if insecure and not allow_insecure_http:
        raise _blocked(
            "Plain http:// would send the credential unencrypted.", field,
            "Use https://.",
        )
    if authority.startswith("["):
        literal, bracket, after = authority[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise _blocked("The URL has a malformed IPv6 literal.", field)
        host, port_text = literal.lower(), after[1:] if after else None
        if not (insecure and host == "::1"):
            raise _blocked(
                "IP address literals are refused: the credential goes only to the "
                "provider's named API hosts.",
                field, f"Use one of: {allowed_hosts()}.",
            )
    else:
        raw_host, colon, port_part = authority.rpartition(":")
        if not colon:
            raw_host, port_part = authority, ""
        host, port_text = _ascii_host(raw_host, field), port_part if colon else None
        if _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
            # WHATWG reads any host ending in a number as IPv4 (2130706433, 0x7f.1, 127.1).
            if not (insecure and _DOTTED_QUAD.fullmatch(host) and is_loopback(host)):
                raise _blocked(
                    f"The host {host!r} is an IP address literal; it is refused.", field,
                    f"Use one of: {allowed_hosts()}.",
                )
        else:
            _check_labels(host, field)
    if not provider.host_allowed(host, connection):
        raise _blocked(
            f"The host {host!r} is not one of this {provider.id!r} grant's API hosts.", field,
            f"The credential may only go to: {allowed_hosts()}.",
        )
    if insecure and not is_loopback(host):
        raise _blocked("Plain http:// is allowed only to loopback hosts.", field, "Use https://.")
    default = DEFAULT_PORTS[scheme]
    if port_text is None:
        return host, default
    if not _PORT.fullmatch(port_text) or not 0 < int(port_text) < 65536:
        raise _blocked(f"The port {field_label(port_text)!r} is not valid.", field)
    port = int(port_text)
    if port != default and port not in provider.api_ports:
        allowed = ", ".join(str(p) for p in (default, *provider.api_ports))
        raise _blocked(
            f"Port {port} is not an API port of provider {provider.id!r}.", field,
            f"Allowed ports: {allowed}.",
        )
    return host, port


def _remove_dot_segments(path: str) -> str:
    # RFC 3986 section 5.2.4, so the path we validate and sign is the path that is sent.
    output: list[str] = []
    segments = path.split("/")
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if len(output) > 1:
                output.pop()
            if last:
                output.append("")
        elif segment == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    joined = "/".join(output)
    return joined if joined.startswith("/") else "/" + joined


def normalize_path(path: str, *, field: str = "url") -> str:
    """Return ``path`` percent-encoded where needed, with dot segments removed."""
    if _BAD_PERCENT.search(path):
        raise InvalidInputError(
            "The URL path has a '%' that does not start a %XX escape.", field=field,
            hint="Write a literal percent sign as %25.",
        )
    encoded = quote(path, safe=_PATH_SAFE) if path else "/"
    if not encoded.startswith("/"):
        encoded = "/" + encoded
    return _remove_dot_segments(encoded)


def _decode_component(text: str, field: str) -> str:
    try:
        return unquote_to_bytes(text.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInputError(
            "The URL query has a %XX escape that is not UTF-8.", field=field,
        ) from None


def parse_query(query: str, *, field: str = "url") -> tuple[tuple[str, str], ...]:
    """Return the decoded (name, value) pairs of a raw query string (``+`` means space)."""
    if _BAD_PERCENT.search(query):
        raise InvalidInputError(
            "The URL query has a '%' that does not start a %XX escape.", field=field,
            hint="Write a literal percent sign as %25.",
        )
    pairs = []
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        pairs.append((_decode_component(name, field), _decode_component(value, field)))
    return tuple(pairs)


def encode_query(pairs: tuple[tuple[str, str], ...]) -> str:
    """Return ``pairs`` as a query string in the strict RFC 3986 (and SigV4) encoding."""
    return "&".join(
        f"{quote(name, safe='-_.~')}={quote(value, safe='-_.~')}" for name, value in pairs
    )
