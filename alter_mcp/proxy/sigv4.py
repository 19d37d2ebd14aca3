"""AWS Signature Version 4 (header form), with the standard library's hashlib and hmac.

Follows the AWS "Create a signed AWS API request" procedure and matches botocore's
``SigV4Auth``: every header except a fixed list of hop-by-hop and tracing headers is signed,
the canonical URI is the sent path with dot segments and empty segments removed and then
URI-encoded again (once more than on the wire), except for S3, which signs the path as sent
and needs ``X-Amz-Content-SHA256``. Checked against the published ``aws-sig-v4-test-suite``
vectors and, when botocore is installed, against botocore itself (``tests/proxy``).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import quote

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "canonical_request",
    "canonical_uri",
    "sign_v4",
    "signing_key",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: Headers never signed (botocore's list plus ``authorization``): proxies and tracers may
#: add or rewrite them in flight.
UNSIGNED_HEADERS = frozenset({
    "authorization", "baggage", "connection", "expect", "keep-alive", "proxy-authenticate",
    "proxy-authorization", "te", "traceparent", "tracestate", "trailer", "transfer-encoding",
    "upgrade", "user-agent", "x-amzn-trace-id",
})


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret_access_key: str, date: str, region: str, service: str) -> bytes:
    """Derive the SigV4 signing key for ``date`` (YYYYMMDD), ``region`` and ``service``."""
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def _collapse_segments(path: str) -> str:
    # AWS's normalisation: RFC 3986 dot segments removed, and empty segments too.
    output: list[str] = []
    for segment in path.split("/"):
        if segment == "..":
            if output:
                output.pop()
        elif segment and segment != ".":
            output.append(segment)
    trailing = "/" if path.endswith("/") and output else ""
    return "/" + "/".join(output) + trailing


def canonical_uri(path: str, *, service: str) -> str:
    """Return the canonical URI of ``path`` (as sent, percent-encoded) for ``service``."""
    if service == "s3":
        return path or "/"
    return quote(_collapse_segments(path or "/"), safe="/~")


def _canonical_query(query: Sequence[tuple[str, str]]) -> str:
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in query)
    return "&".join(f"{k}={v}" for k, v in encoded)


def canonical_request(
    method: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    payload_hash: str,
    *,
    service: str,
) -> tuple[str, str]:
    """Return the canonical request text and the signed-headers list for ``headers``."""
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        lowered = name.lower().strip()
        if lowered not in UNSIGNED_HEADERS:
            grouped.setdefault(lowered, []).append(" ".join(value.split()))
    names = sorted(grouped)
    canonical_headers = "".join(f"{n}:{','.join(grouped[n])}\n" for n in names)
    signed = ";".join(names)
    text = "\n".join([
        method.upper(), canonical_uri(path, service=service), _canonical_query(query),
        canonical_headers, signed, payload_hash,
    ])
    return text, signed


def sign_v4(
    *,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, str]],
    headers: Sequence[tuple[str, str]],
    payload: bytes,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    now: datetime,
    session_token: str | None = None,
) -> tuple[tuple[str, str], ...]:
    """Return the headers to add (X-Amz-Date, token, Authorization) to sign a request."""
    moment = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    stamp = moment.strftime("%Y%m%dT%H%M%SZ")
    date = stamp[:8]
    payload_hash = hashlib.sha256(payload).hexdigest()
    added: list[tuple[str, str]] = [("X-Amz-Date", stamp)]
    if session_token:
        added.append(("X-Amz-Security-Token", session_token))
    if service == "s3":
        added.append(("X-Amz-Content-SHA256", payload_hash))
    signed_input = [*headers, *added]
    if not any(name.lower() == "host" for name, _ in signed_input):
        signed_input.append(("Host", host))
    text, signed = canonical_request(method, path, query, signed_input, payload_hash,
                                     service=service)
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join([
        ALGORITHM, stamp, scope, hashlib.sha256(text.encode("utf-8")).hexdigest(),
    ])
    key = signing_key(secret_access_key, date, region, service)
    signature = hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    authorization = (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return (*added, ("Authorization", authorization))
