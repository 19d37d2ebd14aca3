"""The caller's view of a provider answer: status, safe headers, and a decoded, scrubbed body.

Only allow-listed response headers are kept (never ``Set-Cookie``; ``WWW-Authenticate`` only in
parsed form). The body's raw bytes are scrubbed and only then cut to the cap, with no piece of
a form left at the cut (:mod:`alter_mcp.proxy.scrub`); it then becomes JSON when it is JSON,
text when it is text (decoded with its charset if that is honoured), and otherwise a summary
(content type, size, SHA-256 of the scrubbed bytes). Every string that reaches the caller
passes :func:`alter_mcp.redaction.redact_text` with every known form of the credential and
has no lone surrogate, so a provider echoing the token (``/headers`` does) shows
``[redacted]`` instead and a tool result always encodes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from alter_mcp.proxy.answer import AuthChallenge, parse_challenges
from alter_mcp.proxy.scrub import (
    AnswerForms,
    Charset,
    answer_forms,
    charset_of,
    clean_text,
    decode_text,
    reveals,
    scrub_bytes,
    trim_cut,
)
from alter_mcp.redaction import REDACTED, redact_text, redact_url

__all__ = [
    "SAFE_HEADERS",
    "BodyKind",
    "ProxyResult",
    "RedirectReason",
    "UnfollowedRedirect",
    "build_result",
    "content_type_of",
    "decode_body",
    "scrub",
]

BodyKind = Literal["json", "text", "binary", "empty"]
RedirectReason = Literal["cross_origin", "invalid_location", "too_many_redirects"]

#: Response headers a caller may see (lowercase); anything else is dropped.
SAFE_HEADERS = frozenset({
    "accept-ranges", "age", "cache-control", "content-disposition", "content-language",
    "content-length", "content-range", "content-type", "date", "deprecation", "etag",
    "expires", "last-modified", "link", "location", "request-id", "retry-after", "sunset",
    "vary", "x-accepted-oauth-scopes", "x-amz-request-id", "x-amzn-requestid",
    "x-github-request-id", "x-oauth-scopes", "x-request-id", "x-total-count",
})
_SAFE_PREFIXES = ("x-ratelimit-", "x-rate-limit-", "ratelimit")
# The same keys redact_text's JSON rule covers, applied to parsed JSON.
_SECRET_JSON_KEYS = frozenset({
    "access_token", "api_key", "client_secret", "id_token", "password", "refresh_token",
    "secret",
})
_TEXT_TYPES = frozenset({
    "application/ecmascript", "application/graphql", "application/javascript",
    "application/x-ndjson", "application/x-www-form-urlencoded", "application/x-yaml",
    "application/xml", "application/yaml",
})


@dataclass(frozen=True, slots=True)
class UnfollowedRedirect:
    """A redirect returned to the caller instead of being followed with the credential."""

    location: str
    reason: RedirectReason


@dataclass(frozen=True, slots=True)
class ProxyResult:
    """A provider's answer as the caller may see it: nothing in it carries the credential."""

    status: int
    method: str
    url: str
    headers: Mapping[str, str]
    body: Any
    body_kind: BodyKind
    truncated: bool
    size: int
    redirects: tuple[str, ...] = ()
    unfollowed_redirect: UnfollowedRedirect | None = None
    challenges: tuple[AuthChallenge, ...] = ()
    elapsed_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """Return True for a 2xx status."""
        return 200 <= self.status < 300

    def to_dict(self) -> dict[str, Any]:
        """Return the result as JSON-ready data for a tool result."""
        unfollowed = self.unfollowed_redirect
        return {
            "status": self.status,
            "ok": self.ok,
            "method": self.method,
            "url": self.url,
            "headers": dict(self.headers),
            "body_kind": self.body_kind,
            "body": self.body,
            "truncated": self.truncated,
            "size": self.size,
            "redirects": list(self.redirects),
            "redirect_not_followed": (
                {"location": unfollowed.location, "reason": unfollowed.reason}
                if unfollowed else None
            ),
            "auth_challenges": [c.to_dict() for c in self.challenges],
            "elapsed_ms": round(self.elapsed_ms, 1),
        }


def scrub(value: Any, secrets: Sequence[str]) -> Any:
    """Return a parsed JSON value with every credential form and secret-named field redacted.

    Lone surrogates (JSON may escape them, ``"\\ud800"``) become U+FFFD: no tool result
    could carry them.
    """
    if isinstance(value, str):
        return clean_text(redact_text(value, secrets))
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            name = clean_text(redact_text(key, secrets)) if isinstance(key, str) else key
            secret_key = isinstance(key, str) and key.lower() in _SECRET_JSON_KEYS
            out[name] = REDACTED if secret_key and isinstance(item, str) and item else scrub(
                item, secrets)
        return out
    if isinstance(value, list):
        return [scrub(item, secrets) for item in value]
    return value


def content_type_of(raw_headers: Sequence[tuple[str, str]]) -> str | None:
    """Return the first Content-Type of an answer: the one its body is read by."""
    return next((v for k, v in raw_headers if k.lower() == "content-type"), None)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _summary(data: bytes, content_type: str | None, note: str | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {"content_type": content_type, "size": len(data),
                               "sha256": hashlib.sha256(data).hexdigest()}
    if note is not None:
        summary["note"] = note
    return summary


def decode_body(data: bytes, content_type: str | None, *, truncated: bool) -> tuple[BodyKind, Any]:
    """Return the body as ("json", value), ("text", str), ("binary", summary) or ("empty", None)."""
    if not data:
        return "empty", None
    media = _media_type(content_type)
    charset = charset_of(content_type)
    is_json = media in ("application/json", "text/json") or media.endswith("+json")
    textual = is_json or media.startswith("text/") or media in _TEXT_TYPES or media.endswith(
        "+xml")
    if not media:
        try:
            text = data.decode("utf-8") if not truncated else decode_text(
                data, Charset(label=None), truncated=True)
            textual = "\x00" not in text
            is_json = textual and text.lstrip()[:1] in ("{", "[")
        except UnicodeDecodeError:
            textual = False
    if not textual:
        return "binary", _summary(data, content_type)
    if not charset.is_text:
        return "binary", _summary(data, content_type, note=(
            f"charset {charset.label!r} is not a text encoding, so the body is not shown"))
    text = decode_text(data, charset, truncated=truncated)
    if is_json and not truncated:
        try:
            return "json", json.loads(text)
        except (ValueError, RecursionError):
            pass
    return "text", text


def _shown(text: str, secrets: Sequence[str]) -> str:
    return clean_text(redact_text(text, secrets))


def _safe_headers(
    raw: Sequence[tuple[str, str]], secrets: Sequence[str], query_names: frozenset[str],
) -> dict[str, str]:
    grouped: dict[str, list[str]] = {}
    for name, value in raw:
        lowered = name.lower()
        if lowered in SAFE_HEADERS or lowered.startswith(_SAFE_PREFIXES):
            grouped.setdefault(lowered, []).append(value)
    safe = {}
    for name, values in grouped.items():
        joined = ", ".join(values)
        if name == "location":
            joined = redact_url(joined, secrets, params=query_names)
        safe[name] = _shown(joined, secrets)
    return safe


def _safe_body(
    data: bytes, content_type: str | None, forms: AnswerForms, secrets: Sequence[str], *,
    truncated: bool, ranged: bool,
) -> tuple[BodyKind, Any]:
    """Return the decoded body with every form gone, also from the text's cut edges."""
    kind, body = decode_body(data, content_type, truncated=truncated)
    try:
        body = scrub(body, secrets) if kind != "binary" else body
    except RecursionError:
        kind, body = "text", _shown(decode_text(data, forms.charset, truncated=truncated),
                                    secrets)
    if kind == "text":
        body = trim_cut(body, forms.text, end=truncated, start=ranged)
    if forms.charset.disguise and kind in ("text", "json") and reveals(
            body if kind == "text" else json.dumps(body, ensure_ascii=False), forms,
            end=truncated, start=ranged):
        return "binary", _summary(data, content_type, note=(
            f"the body is not shown: read as its charset {forms.charset.label!r} it would "
            "show the credential"))
    return kind, body


def build_result(
    *,
    status: int,
    method: str,
    url: str,
    raw_headers: Sequence[tuple[str, str]],
    data: bytes,
    truncated: bool,
    secrets: Sequence[str],
    max_bytes: int | None = None,
    forms: AnswerForms | None = None,
    query_names: frozenset[str] = frozenset(),
    redirects: Sequence[str] = (),
    unfollowed: tuple[str, RedirectReason] | None = None,
    elapsed_ms: float = 0.0,
) -> ProxyResult:
    """Return the caller's view of a provider answer, with every credential form scrubbed.

    ``data`` is scrubbed in bytes first and only then cut to ``max_bytes`` (read
    ``forms.margin`` bytes past the cap, so a form across the cut is seen whole); a cut edge
    never shows a piece of a form. ``truncated`` says ``data`` is not the whole body.
    """
    content_type = content_type_of(raw_headers)
    forms = forms if forms is not None else answer_forms(secrets, content_type)
    data = scrub_bytes(data, forms)
    if max_bytes is not None and len(data) > max_bytes:
        data, truncated = data[:max_bytes], True
    # A 206 answer starts wherever the caller's Range header said: that edge is a cut too.
    ranged = status == 206
    if truncated or ranged:
        data = trim_cut(data, forms.edges_in(data), end=truncated, start=ranged)
    kind, body = _safe_body(data, content_type, forms, secrets, truncated=truncated,
                            ranged=ranged)
    challenges = tuple(
        AuthChallenge(
            scheme=c.scheme,
            params={k: _shown(v, secrets) for k, v in c.params.items()},
            token68=_shown(c.token68, secrets) if c.token68 is not None else None,
        )
        for c in parse_challenges(v for k, v in raw_headers if k.lower() == "www-authenticate")
    )
    redirect = None
    if unfollowed is not None:
        location = _shown(redact_url(unfollowed[0], secrets, params=query_names), secrets)
        redirect = UnfollowedRedirect(location=location, reason=unfollowed[1])
    return ProxyResult(
        status=status, method=method, url=_shown(url, secrets),
        headers=_safe_headers(raw_headers, secrets, query_names), body=body, body_kind=kind,
        truncated=truncated, size=len(data),
        redirects=tuple(_shown(u, secrets) for u in redirects),
        unfollowed_redirect=redirect, challenges=challenges, elapsed_ms=elapsed_ms,
    )
