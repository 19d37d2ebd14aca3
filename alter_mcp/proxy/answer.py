"""What a provider's answer means for the orchestrator: challenges, Retry-After, a verdict.

``classify`` turns a :class:`~alter_mcp.proxy.result.ProxyResult` into a
:class:`ProviderAnswer` whose ``kind`` drives what ``AlterVault.request`` does next:

======================  =====================================================================
``ok``                  2xx: return the result
``redirect``            3xx not followed (cross-origin, too many, invalid Location): return it
``unauthorized``        401: refresh the token once and retry once (idempotent methods)
``insufficient_scope``  403 (or 401) whose Bearer challenge says ``insufficient_scope``
``rate_limited``        429: raise ``RateLimitedError`` with ``retry_after``, never retry blindly
``client_error``        other 4xx
``server_error``        5xx (``retry_after`` set when the provider sent one, e.g. on 503)
======================  =====================================================================
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alter_mcp.proxy.result import ProxyResult

__all__ = [
    "AnswerKind",
    "AuthChallenge",
    "ProviderAnswer",
    "classify",
    "parse_challenges",
    "parse_retry_after",
]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_PARAM = re.compile(
    r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)[ \t]*=[ \t]*"
    r"(?:\"((?:[^\"\\]|\\.)*)\"|([!#$%&'*+.^_`|~0-9A-Za-z-]*))"
)
_SEPARATORS = re.compile(r"[ \t,]*")
_SPACES = re.compile(r"[ \t]+")
_QUOTED_PAIR = re.compile(r"\\(.)")
_DELAY_SECONDS = re.compile(r"[0-9]{1,10}")


class AnswerKind(StrEnum):
    """How the orchestrator should treat a provider's answer."""

    OK = "ok"
    REDIRECT = "redirect"
    UNAUTHORIZED = "unauthorized"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    RATE_LIMITED = "rate_limited"
    CLIENT_ERROR = "client_error"
    SERVER_ERROR = "server_error"


@dataclass(frozen=True, slots=True)
class AuthChallenge:
    """One parsed ``WWW-Authenticate`` challenge: a scheme and its parameters."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str | None = None

    @property
    def scopes(self) -> tuple[str, ...]:
        """Return the space-separated ``scope`` parameter as a tuple."""
        return tuple(self.params.get("scope", "").split())

    def to_dict(self) -> dict[str, object]:
        """Return the challenge as JSON-ready data."""
        data: dict[str, object] = {"scheme": self.scheme, "params": dict(self.params)}
        if self.token68 is not None:
            data["token68"] = self.token68
        return data


@dataclass(frozen=True, slots=True)
class ProviderAnswer:
    """The verdict on one provider answer, with the details the orchestrator needs."""

    kind: AnswerKind
    status: int
    retry_after: float | None = None
    scopes: tuple[str, ...] = ()
    error: str | None = None
    error_description: str | None = None


def _challenges_of(text: str) -> list[AuthChallenge]:
    found: list[tuple[str, dict[str, str], str | None]] = []
    pos = 0
    while pos < len(text):
        gap = _SEPARATORS.match(text, pos)
        pos = gap.end() if gap else pos
        if pos >= len(text):
            break
        param = _PARAM.match(text, pos)
        if param is not None and found:
            quoted, bare = param.group(2), param.group(3)
            value = _QUOTED_PAIR.sub(r"\1", quoted) if quoted is not None else bare or ""
            found[-1][1].setdefault(param.group(1).lower(), value)
            pos = param.end()
            continue
        scheme = _TOKEN.match(text, pos)
        if scheme is None:
            break  # malformed: keep what was understood
        found.append((scheme.group(0).lower(), {}, None))
        pos = scheme.end()
        space = _SPACES.match(text, pos)
        if space is not None:
            token68 = _TOKEN68.match(text, space.end())
            if token68 is not None and (token68.end() == len(text)
                                        or text[token68.end()] in ", \t"):
                found[-1] = (found[-1][0], {}, token68.group(0))
                pos = token68.end()
    return [AuthChallenge(scheme=s, params=p, token68=t) for s, p, t in found]


def parse_challenges(values: Iterable[str]) -> tuple[AuthChallenge, ...]:
    """Parse ``WWW-Authenticate`` header values (RFC 9110 section 11.6.1) into challenges."""
    return tuple(c for value in values for c in _challenges_of(value))


def parse_retry_after(value: str | None, *, now: datetime) -> float | None:
    """Return a ``Retry-After`` value (delay-seconds or HTTP-date) as seconds from ``now``."""
    if value is None:
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify(result: ProxyResult, *, now: datetime | None = None) -> ProviderAnswer:
    """Return what the provider's answer in ``result`` means for the orchestrator."""
    status = result.status
    retry_after = parse_retry_after(result.headers.get("retry-after"),
                                    now=now or datetime.now(UTC))
    flagged = next((c for c in result.challenges if "error" in c.params), None)
    error = flagged.params["error"] if flagged else None
    description = flagged.params.get("error_description") if flagged else None
    scopes = flagged.scopes if flagged else ()
    if status in (401, 403) and error == "insufficient_scope":
        # A refresh cannot add scopes, so even a 401 saying so goes straight to re-consent.
        kind = AnswerKind.INSUFFICIENT_SCOPE
    elif status == 401:
        kind = AnswerKind.UNAUTHORIZED
    elif status == 429:
        kind = AnswerKind.RATE_LIMITED
    elif status >= 500:
        kind = AnswerKind.SERVER_ERROR
    elif status >= 400:
        kind = AnswerKind.CLIENT_ERROR
    elif status >= 300:
        kind = AnswerKind.REDIRECT
    else:
        kind = AnswerKind.OK
    return ProviderAnswer(kind=kind, status=status, retry_after=retry_after, scopes=scopes,
                          error=error, error_description=description)
