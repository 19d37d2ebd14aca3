"""One redaction helper for logs, audit rows and error messages, and the masked ``Secret`` type.

Redaction works two ways at once: by *shape* (query parameters and headers whose names mean a
secret, ``Bearer …`` and ``Basic …`` values, userinfo in URLs) and by *value* (the exact
credential strings the caller knows are in play, e.g. the token just injected).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = [
    "REDACTED",
    "SENSITIVE_HEADERS",
    "SENSITIVE_PARAMS",
    "KnownSecrets",
    "Secret",
    "known_secrets",
    "redact",
    "redact_headers",
    "redact_text",
    "redact_url",
]

REDACTED = "[redacted]"

#: Query parameter names whose values are secrets (compared case-insensitively).
SENSITIVE_PARAMS = frozenset(
    {
        "access_token", "api_key", "apikey", "api-key", "appid", "auth", "client_secret",
        "code", "code_verifier", "id_token", "key", "password", "refresh_token", "secret",
        "sig", "signature", "state", "token", "x-amz-credential", "x-amz-security-token",
        "x-amz-signature", "session_token", "assertion", "private_token",
    }
)

#: Header names whose values are secrets (lowercase).
SENSITIVE_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
        "api-key", "x-amz-security-token", "x-auth-token", "private-token",
        "x-postmark-server-token", "dd-api-key", "dd-application-key", "xi-api-key",
        "x-shopify-access-token", "x-algolia-api-key",
    }
)

_MIN_SECRET_LEN = 4
_SCHEME_VALUE = re.compile(r"(?i)\b(bearer|basic|token|digest)\s+[A-Za-z0-9._~+/=\-]{4,}")
_SCHEME_WORDS = ("bearer", "basic", "token", "digest")
_JSON_FIELD = re.compile(
    r'(?i)("(?:access_token|refresh_token|id_token|client_secret|api_key|password|secret)"'
    r'\s*:\s*")[^"]*(")'
)
_QUERY_FIELD = re.compile(
    r"(?i)(?<![A-Za-z0-9_-])((?:access_token|refresh_token|client_secret|api_key|code_verifier"
    r"|password|token)=)[^&\s\"']+"
)


class Secret:
    """A secret string whose repr and str never show it; ``reveal()`` returns it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value itself: call only where it is sent or encrypted."""
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('**********')"

    def __str__(self) -> str:
        return "**********"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> Any:
        raise TypeError("Secret values cannot be pickled")


class KnownSecrets(tuple[str, ...]):
    """Secret values ready to redact: plaintext, unique, 4+ characters, longest first.

    Build it once with :func:`known_secrets` when one set of secrets redacts many strings (a
    response body, every header): each ``redact_*`` call then skips normalising it again.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} values)"

    def __reduce__(self) -> Any:
        raise TypeError("KnownSecrets holds secret values and cannot be pickled")


def known_secrets(secrets: Iterable[str | Secret]) -> KnownSecrets:
    """Return ``secrets`` as :class:`KnownSecrets` (unchanged if it already is one)."""
    if isinstance(secrets, KnownSecrets):
        return secrets
    out = set()
    for item in secrets:
        value = item.reveal() if isinstance(item, Secret) else item
        if value and len(value) >= _MIN_SECRET_LEN:
            out.add(value)
    # Longest first, so a secret containing another is replaced whole.
    return KnownSecrets(sorted(out, key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str | Secret] = ()) -> str:
    """Return ``text`` with known secret values and secret-shaped fragments replaced."""
    for value in known_secrets(secrets):
        if value in text:
            text = text.replace(value, REDACTED)
    # ASCII text without what a shape needs ("=", a quote, a scheme word) cannot match it.
    # Other text always goes through every pattern: (?i) also folds some non-ASCII letters.
    plain = text.isascii()
    lowered = text.lower() if plain else ""
    if not plain or any(word in lowered for word in _SCHEME_WORDS):
        text = _SCHEME_VALUE.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    if not plain or '"' in text:
        text = _JSON_FIELD.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(2)}", text)
    if not plain or "=" in text:
        text = _QUERY_FIELD.sub(lambda m: f"{m.group(1)}{REDACTED}", text)
    return text


def redact_url(
    url: str, secrets: Iterable[str | Secret] = (), *, params: Iterable[str] = ()
) -> str:
    """Return ``url`` without userinfo and with secret query values replaced."""
    if "?" not in url and "@" not in url:
        return redact_text(url, secrets)  # no userinfo, no query: nothing to take apart
    names = SENSITIVE_PARAMS | {p.lower() for p in params} if params else SENSITIVE_PARAMS
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url, secrets)
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode(
            [(k, REDACTED if k.lower() in names else v) for k, v in pairs], safe="[]"
        )
    rebuilt = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return redact_text(rebuilt, secrets)


def redact_headers(
    headers: Mapping[str, str], secrets: Iterable[str | Secret] = ()
) -> dict[str, str]:
    """Return a copy of ``headers`` with secret header values replaced."""
    known = known_secrets(secrets)
    return {
        name: REDACTED if name.lower() in SENSITIVE_HEADERS else redact_text(value, known)
        for name, value in headers.items()
    }


def redact(value: Any, secrets: Iterable[str | Secret] = ()) -> Any:
    """Return ``value`` (str, mapping, sequence or scalar) with every secret redacted."""
    known = known_secrets(secrets)
    if isinstance(value, str):
        return redact_text(value, known)
    if isinstance(value, Secret):
        return REDACTED
    if isinstance(value, Mapping):
        return {
            k: REDACTED if str(k).lower() in SENSITIVE_PARAMS | SENSITIVE_HEADERS
            and isinstance(v, str) and v
            else redact(v, known)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v, known) for v in value]
    return value
