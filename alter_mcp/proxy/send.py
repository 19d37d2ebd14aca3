"""Sending: one shared HTTP client, slots per origin, same-origin redirects only, a deadline
and a size cap.

The :class:`Sender` injects the credential into every hop itself, so the HTTP client never
follows a redirect on its own: a redirect to the same origin (scheme, host, port) is followed
at most ``max_redirects`` times with the credential put in again, and any other redirect is
handed back to the caller with its (scrubbed) ``Location``. Transport failures become one
:class:`ProviderAPIError` whose ``details["reason"]`` says which (``timeout``,
``connect_error``, ``network_error``, ``decoding_error``, ``invalid_request``,
``pool_timeout``, and ``unreadable_answer`` when the answer arrived but could not be made
safe); nothing is retried here.

Every request first takes a slot of its origin (see :mod:`alter_mcp.proxy.slots`), or runs
in one its caller took with :meth:`Sender.slot`; a request that gets none in time is not sent.
"""

from __future__ import annotations

import contextvars
import http.cookiejar
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import anyio
import httpx2

from alter_mcp.errors import (
    AlterError,
    BlockedDestinationError,
    InvalidInputError,
    ProviderAPIError,
    format_seconds,
)
from alter_mcp.models import HttpMethod
from alter_mcp.providers.schema import Provider
from alter_mcp.proxy.destination import (
    check_text,
    normalize_path,
    parse_authority,
    parse_query,
    split_url,
)
from alter_mcp.proxy.guard import PreparedRequest, reserved_names
from alter_mcp.proxy.inject import USER_AGENT, inject
from alter_mcp.proxy.result import ProxyResult, RedirectReason, build_result, content_type_of
from alter_mcp.proxy.scrub import answer_forms
from alter_mcp.proxy.slots import OriginSlots, Slot
from alter_mcp.proxy.transport import use_fast_probe
from alter_mcp.redaction import REDACTED, Secret, redact_text

__all__ = ["REDIRECT_STATUSES", "Sender", "new_client"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

_log = logging.getLogger(__name__)

# The credential forms of the request in flight, for the log filter below (task-local).
_IN_FLIGHT: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "alter_mcp_proxy_in_flight", default=())


class _CredentialLogFilter(logging.Filter):
    """Redact httpx2's and httpcore2's own log lines (they log URLs and raw headers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = _IN_FLIGHT.get()
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(
                _without_query_values(arg) if isinstance(arg, httpx2.URL) else arg
                for arg in record.args
            )
        if secrets or record.name.startswith("httpcore2"):
            record.msg, record.args = redact_text(record.getMessage(), secrets), ()
        return True


def _without_query_values(url: httpx2.URL) -> str:
    if not url.query:
        return str(url)
    names = "&".join(f"{name}={REDACTED}" for name, _ in url.params.multi_items())
    return f"{url.copy_with(query=None)}?{names}"


#: Filters apply only to the logger a record is logged on, not to its parents: list each.
_HTTP_LOGGERS = ("httpx2", "httpcore2.connection", "httpcore2.http11", "httpcore2.http2",
                 "httpcore2.proxy", "httpcore2.socks")


def _install_log_filter() -> None:
    for name in _HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _CredentialLogFilter) for f in logger.filters):
            logger.addFilter(_CredentialLogFilter())


def new_client(
    *, timeout: float = 30.0, max_connections: int = 100, trust_env: bool = True,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> httpx2.AsyncClient:
    """Build the shared client a Sender expects: pooled, no redirects, a jar that keeps nothing."""
    # One client serves every grant: a cookie kept from one user's answer must never ride
    # along on another's request, so the jar refuses every cookie.
    jar = http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    client = httpx2.AsyncClient(
        follow_redirects=False, cookies=jar, timeout=timeout, trust_env=trust_env,
        limits=httpx2.Limits(max_connections=max_connections,
                             max_keepalive_connections=max_connections),
        transport=transport,
    )
    if transport is None:
        # Built by httpx2 itself, so that proxies from the environment still get their mounts
        # (httpx2 ignores them when given a transport); then every pool gets the cheap check.
        for mounted in (client._transport, *client._mounts.values()):
            if mounted is not None:
                use_fast_probe(mounted)
    return client


def _redirect_request(
    current: PreparedRequest, status: int, location: str, provider: Provider,
    allow_insecure_http: bool,
) -> PreparedRequest | RedirectReason:
    """Return the next hop of a same-origin redirect, or why the redirect is not followed."""
    try:
        check_text(location, field="location", what="The Location header")
        target = urljoin(current.url, location.split("#", 1)[0])
        scheme, authority, raw_path, raw_query = split_url(target, field="location")
    except AlterError:
        return "invalid_location"
    try:
        host, port = parse_authority(provider, scheme, authority, field="location",
                                     allow_insecure_http=allow_insecure_http,
                                     connection=dict(current.connection))
    except AlterError:
        return "cross_origin"
    if (scheme, host, port) != current.origin:
        return "cross_origin"
    try:
        path = normalize_path(raw_path, field="location")
        pairs = parse_query(raw_query, field="location")
    except AlterError:
        return "invalid_location"
    # A provider may echo the credential in its Location: drop it, the next hop re-injects.
    _, injected = reserved_names(provider)
    query = tuple((k, v) for k, v in pairs if k.lower() not in injected)
    method, content, headers = current.method, current.content, current.headers
    if (status == 303 and method is not HttpMethod.HEAD) or (
            status in (301, 302) and method is HttpMethod.POST):
        method, content = HttpMethod.GET, None
        headers = tuple((k, v) for k, v in headers if not k.lower().startswith("content-"))
    return replace(current, method=method, path=path, query=query, headers=headers,
                   content=content)


async def _read_capped(response: httpx2.Response, max_bytes: int) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        if size + len(chunk) > max_bytes:
            chunks.append(chunk[: max_bytes - size])
            return b"".join(chunks), True
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks), False


class Sender:
    """Send prepared requests with the credential injected, and return safe results."""

    def __init__(
        self,
        client: httpx2.AsyncClient,
        *,
        timeout: float = 30.0,
        max_bytes: int = 1_000_000,
        max_redirects: int = 3,
        allow_insecure_http: bool = False,
        clock: Callable[[], datetime] | None = None,
        user_agent: str = USER_AGENT,
        slots: OriginSlots | None = None,
    ) -> None:
        if client.follow_redirects:
            raise ValueError("the shared client must have follow_redirects=False")
        if timeout <= 0 or max_bytes < 1 or not 0 <= max_redirects <= 10:
            raise ValueError("timeout > 0, max_bytes >= 1 and 0 <= max_redirects <= 10")
        self._client = client
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._allow_insecure_http = allow_insecure_http
        self._clock = clock or (lambda: datetime.now(UTC))
        self._user_agent = user_agent
        self._slots = slots or OriginSlots()
        self._transport_for = _client_dispatch(client)
        _install_log_filter()

    async def _dispatch(self, request: httpx2.Request) -> httpx2.Response:
        """Send one request on the transport the shared client would use; stream the body."""
        if self._client.is_closed:
            raise httpx2.TransportError("The shared HTTP client is closed.")
        if self._transport_for is None:
            return await self._client.send(request, stream=True, auth=None,
                                           follow_redirects=False)
        transport = self._transport_for(request.url)
        response = await transport.handle_async_request(request)
        response.request = request
        return response

    @property
    def slots(self) -> OriginSlots:
        """Return the per-origin slots this sender's requests take."""
        return self._slots

    def slot(self, prepared: PreparedRequest, provider: Provider, *,
             timeout: float | None = None) -> Slot:
        """Return a slot of the request's origin to hold (``async with``) across its sends.

        Take it before reading the credential, so that a request queued behind a busy
        provider holds no plaintext; the wait is bounded by ``timeout`` too.
        """
        limit = timeout if timeout is not None and timeout > 0 else self._timeout
        return self._slots.slot(prepared.origin, provider_id=provider.id, wait=limit)

    async def send(
        self,
        prepared: PreparedRequest,
        provider: Provider,
        credential: Mapping[str, Secret],
        *,
        # A parameter rather than the caller's own fail_after: it also sets httpx2's
        # connect/read/write timeouts, and is the per-request override of the tool.
        timeout: float | None = None,  # noqa: ASYNC109
        max_bytes: int | None = None,
        slot: Slot | None = None,
    ) -> ProxyResult:
        """Send ``prepared`` with ``credential`` injected and return the provider's safe answer.

        Without ``slot``, wait for one of the origin's slots first (ProviderBusyError if
        none frees in time: nothing is sent); with it, it must be held for the same origin.
        """
        if prepared.scheme == "http" and not self._allow_insecure_http:
            raise BlockedDestinationError("Plain http:// is not allowed here.", field="url",
                                          hint="Use https://.")
        limit = timeout if timeout is not None else self._timeout
        cap = max_bytes if max_bytes is not None else self._max_bytes
        if limit <= 0 or limit > 600:
            raise InvalidInputError("timeout must be between 0 and 600 seconds.",
                                    field="timeout")
        if cap < 1:
            raise InvalidInputError("max_bytes must be at least 1.", field="max_bytes")
        if slot is None:
            async with self.slot(prepared, provider, timeout=limit):
                return await self._send_within(prepared, provider, credential, limit, cap)
        if slot.origin != prepared.origin or not slot.belongs_to(self._slots):
            raise ValueError("the slot must be held, from this sender, for the request's origin")
        return await self._send_within(prepared, provider, credential, limit, cap)

    async def _send_within(
        self, prepared: PreparedRequest, provider: Provider, credential: Mapping[str, Secret],
        limit: float, cap: int,
    ) -> ProxyResult:
        failure: str | None = None
        try:
            with anyio.fail_after(limit):
                return await self._exchange(prepared, provider, credential, limit, cap)
        except httpx2.PoolTimeout:
            failure = "pool_timeout"
        except (TimeoutError, httpx2.TimeoutException):
            failure = "timeout"
        except httpx2.ConnectError:
            failure = "connect_error"
        except httpx2.DecodingError:
            failure = "decoding_error"
        except httpx2.LocalProtocolError:
            failure = "invalid_request"
        except (httpx2.TransportError, httpx2.InvalidURL):
            failure = "network_error"
        # Raised outside the except blocks, so the error does not chain the transport
        # exception (whose request object holds the credential).
        raise _transport_error(failure, provider, prepared, limit)

    async def _exchange(
        self, prepared: PreparedRequest, provider: Provider, credential: Mapping[str, Secret],
        limit: float, max_bytes: int,
    ) -> ProxyResult:
        started = time.perf_counter()
        current = prepared
        hops: list[str] = []
        _, query_names = reserved_names(provider)
        while True:
            outbound = inject(current, provider, credential, now=self._clock(),
                              user_agent=self._user_agent)
            token = _IN_FLIGHT.set(outbound.secrets)
            try:
                request = httpx2.Request(
                    outbound.method, outbound.url, headers=list(outbound.headers),
                    content=outbound.content,
                    # Every origin's slots together can still fill the whole pool: wait
                    # for one of its connections no longer than for a slot, then say so.
                    extensions={"timeout": httpx2.Timeout(
                        limit, pool=min(limit, self._slots.wait)).as_dict()},
                )
                response = await self._dispatch(request)
                try:
                    unfollowed: tuple[str, RedirectReason] | None = None
                    location = response.headers.get("location")
                    if response.status_code in REDIRECT_STATUSES and location is not None:
                        nxt = _redirect_request(current, response.status_code, location,
                                                provider, self._allow_insecure_http)
                        if isinstance(nxt, PreparedRequest) and len(hops) < self._max_redirects:
                            hops.append(current.url)
                            current = nxt
                            continue
                        reason: RedirectReason = (
                            "too_many_redirects" if isinstance(nxt, PreparedRequest) else nxt)
                        unfollowed = (urljoin(current.url, location), reason)
                    raw_headers = response.headers.multi_items()
                    # The Content-Type the body is read by; a second one must not change it.
                    forms = answer_forms(outbound.secrets, content_type_of(raw_headers))
                    # Read past the cap by the longest form: one across the cut is then
                    # scrubbed whole before build_result cuts the scrubbed bytes.
                    data, truncated = (b"", False) if current.method is HttpMethod.HEAD else (
                        await _read_capped(response, max_bytes + forms.margin))
                    return _answer(
                        provider, status=response.status_code,
                        method=current.method.value, url=current.url,
                        raw_headers=raw_headers, data=data,
                        truncated=truncated, max_bytes=max_bytes, forms=forms,
                        secrets=outbound.secrets, query_names=query_names, redirects=hops,
                        unfollowed=unfollowed, elapsed_ms=(time.perf_counter() - started) * 1000,
                    )
                finally:
                    await response.aclose()
            finally:
                _IN_FLIGHT.reset(token)


def _answer(provider: Provider, *, status: int, **parts: Any) -> ProxyResult:
    """Return build_result(**parts); any failure in it becomes a typed, credential-free error."""
    try:
        return build_result(status=status, **parts)
    except Exception as exc:
        # Not chained and not quoted: a codec error carries the body, which may hold the
        # credential. The request was sent; only its answer could not be read.
        failure = type(exc).__name__
    _log.warning("Building the answer of %s failed with %s", provider.id, failure)
    raise ProviderAPIError(
        f"{provider.name} answered (HTTP {status}) but the answer could not be made safe to "
        "show.", status=status, provider_id=provider.id, reason="unreadable_answer",
        hint="The request was sent and may have taken effect; do not repeat it blindly.")


def _client_dispatch(
    client: httpx2.AsyncClient,
) -> Callable[[httpx2.URL], httpx2.AsyncBaseTransport] | None:
    # httpx2 picks a request's transport (a proxy mount from the environment, or the pool)
    # with this method; the Sender uses it and skips the rest of Client.send (~65 µs: the
    # cookie jar, logging, event hooks), none of which it needs. Missing in some future
    # httpx2, the Sender falls back to Client.send.
    found: Callable[[httpx2.URL], httpx2.AsyncBaseTransport] | None = getattr(
        client, "_transport_for_url", None)
    return found


def _transport_error(
    failure: str | None, provider: Provider, prepared: PreparedRequest, limit: float,
) -> ProviderAPIError:
    reason = failure or "network_error"
    if reason == "pool_timeout":
        message = (f"Every outbound connection stayed in use, so the request to "
                   f"{prepared.host} was not sent.")
        hint = ("Retry shortly; if this persists, an operator can raise "
                "ALTER_MCP_MAX_CONNECTIONS or lower ALTER_MCP_PROVIDER_MAX_CONNECTIONS.")
    elif reason == "timeout":
        message = f"{provider.name} did not answer within {format_seconds(limit)} seconds."
        hint = ("The request was not retried and may or may not have taken effect; "
                "check before repeating a non-idempotent call, or pass a longer timeout.")
    elif reason == "connect_error":
        message = f"Could not connect to {prepared.host}."
        hint = "Check the host name and the network; the request was not sent."
    elif reason == "invalid_request":
        message = "The HTTP client refused to send the request as malformed."
        hint = "Check header names and values; the request was not sent."
    elif reason == "decoding_error":
        message = f"{provider.name} sent a response body that could not be decoded."
        hint = None
    else:
        message = f"The connection to {prepared.host} failed before a complete answer."
        hint = "The request was not retried; it may or may not have taken effect."
    return ProviderAPIError(message, provider_id=provider.id, hint=hint, reason=reason)
