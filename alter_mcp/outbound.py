"""The authenticated request, end to end: resolve, guard, decide, intent, inject, send, outcome.

The order never changes: identify the caller, resolve the grant it may use, check the
destination (before any credential is read), evaluate policy (and ask a human if a rule says
so), commit the intent event (write-ahead: if it cannot be written nothing is sent), wait for a
connection slot of the destination, read the credential (refreshing if due), send, interpret
the provider's answer, and record the outcome, linked to its intent, before the caller sees
anything. A request refused before its intent (not found, guard, policy) is one denied event.
If the outcome cannot be written the caller is told the request was sent, with its status,
and never to send it again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, assert_never

import httpx2

from alter_mcp import identity as _identity
from alter_mcp.audit import INTENT, AuditEntry, AuditLog, nothing_sent
from alter_mcp.errors import (
    AlterError,
    AmbiguousGrantError,
    AuditWriteError,
    GrantNotFoundError,
    InvalidInputError,
    PolicyViolationError,
    ProviderAPIError,
    RateLimitedError,
    RequestSentUnauditedError,
    ScopeReauthRequiredError,
    SentRequestFailedError,
    StoreError,
)
from alter_mcp.models import Grant, GrantKind, GrantStatus, HttpMethod, Identity, Outcome
from alter_mcp.policy import PolicyRequest, Rule, Targeted, evaluate, select, usage_keys
from alter_mcp.providers import Catalog, Provider
from alter_mcp.proxy import AnswerKind, PreparedRequest, ProxyResult, Sender, classify, prepare
from alter_mcp.proxy.slots import Slot
from alter_mcp.redaction import Secret
from alter_mcp.store.base import AuditFilter, Store

__all__ = ["INTENT_ACTION", "RESERVE", "ApprovalRequest", "Outbound", "RequestResult"]

#: The audit action that takes one slot of every rate limit a request is subject to; it is
#: also the request's intent event, so a limited request still costs two audit writes.
RESERVE = "request.reserve"
#: The intent event of a request no rate limit applies to.
INTENT_ACTION = "request.intent"
_WHAT = "request"

#: Returns the grant's credential fields; ``force_refresh`` asks for a new OAuth token.
CredentialGetter = Callable[..., Awaitable[dict[str, Secret]]]
#: Returns a connect URL that re-authorizes ``grant`` with these scopes.
RepairLink = Callable[[Grant, Sequence[str]], Awaitable[str]]


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """What a human is asked to approve: the request, its grant, and why a rule asks."""

    method: str
    url: str
    provider_id: str
    account: str | None
    grant_id: str
    reason: str | None
    body_summary: str | None
    rules: tuple[str, ...]

    def message(self) -> str:
        """Return the text shown to the human."""
        lines = [f"Allow this request? {self.method} {self.url}",
                 f"Provider: {self.provider_id}  Account: {self.account or '?'}",
                 f"Required by policy rule(s): {', '.join(self.rules)}"]
        if self.reason:
            lines.append(f"Agent's reason: {self.reason}")
        if self.body_summary:
            lines.append(f"Body: {self.body_summary}")
        return "\n".join(lines)


#: Asks a human; returns True only on an explicit accept.
Approver = Callable[[ApprovalRequest], Awaitable[bool]]


@dataclass(frozen=True, slots=True)
class RequestResult:
    """The provider's answer as the caller may see it, and which grant made the call."""

    result: ProxyResult
    grant_id: str
    provider_id: str
    retried: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def status(self) -> int:
        """Return the HTTP status."""
        return self.result.status

    @property
    def status_code(self) -> int:
        """Return the HTTP status (the name httpx and the Alter SDK use)."""
        return self.result.status

    @property
    def is_success(self) -> bool:
        """Return True for a 2xx status."""
        return self.result.ok

    @property
    def text(self) -> str:
        """Return the body as text: JSON re-serialized, a binary body's summary as JSON."""
        import json as _json

        kind = self.result.body_kind
        match kind:
            case "text":
                return str(self.result.body)
            case "json" | "binary":
                # The raw bytes are not kept (the body is scrubbed of credentials once parsed).
                return _json.dumps(self.result.body, ensure_ascii=False)
            case "empty":
                return ""
            case _:
                assert_never(kind)

    def raise_for_status(self) -> RequestResult:
        """Return this result if the status is 2xx, else raise ``ProviderAPIError``."""
        if self.result.ok:
            return self
        raise ProviderAPIError(
            f"Provider {self.provider_id!r} answered HTTP {self.result.status} to "
            f"{self.result.method} {self.result.url}.",
            status=self.result.status, provider_id=self.provider_id, grant_id=self.grant_id,
            hint="Read the result's body for the provider's reason.",
        )

    @property
    def headers(self) -> httpx2.Headers:
        """Return the safe response headers, case-insensitive as httpx's (a fresh copy)."""
        return httpx2.Headers(dict(self.result.headers))

    @property
    def body(self) -> Any:
        """Return the body: parsed JSON, text, or a binary summary."""
        return self.result.body

    def json(self) -> Any:
        """Return the JSON body, or raise ValueError when the body is not JSON."""
        if self.result.body_kind != "json":
            raise ValueError(f"the response body is {self.result.body_kind}, not JSON")
        return self.result.body

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready view of the result."""
        data = self.result.to_dict()
        data.update(grant_id=self.grant_id, provider_id=self.provider_id, retried=self.retried)
        if self.notes:
            data["notes"] = list(self.notes)
        return data


def _summary(json_body: Any, body: Any) -> str | None:
    if json_body is not None:
        import json as _json

        text = _json.dumps(json_body, default=str)
    elif body is not None:
        text = body if isinstance(body, str) else f"<{type(body).__name__} body>"
    else:
        return None
    return text if len(text) <= 300 else text[:300] + f"… ({len(text)} chars)"


@dataclass(slots=True)
class _Sent:
    """Whether a request may have reached the provider, and the status it answered."""

    sent: bool = False
    status: int | None = None


class Outbound:
    """Runs authenticated requests for a vault: the hot path and its audit."""

    def __init__(
        self, *, store: Store, catalog: Catalog, audit: AuditLog, sender: Sender,
        clock: Callable[[], datetime], allow_insecure_http: bool,
        rules: Callable[[], Sequence[Rule]] = tuple,
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._audit = audit
        self._sender = sender
        self._clock = clock
        self._insecure = allow_insecure_http
        self._rules = rules

    async def resolve(self, ident: Identity, *, grant_id: str | None, provider: str | None,
                      account: str | None) -> Grant:
        """Return the one grant the caller means, or raise a typed error."""
        if (grant_id is None) == (provider is None):
            raise InvalidInputError(
                "Give exactly one of grant_id or provider.", field="grant_id",
                hint="Pass grant_id from list_grants, or provider (and account if several).")
        if grant_id is not None:
            grant = await self._store.get_grant(grant_id)
            if grant is None or not _identity.can_use(ident, grant) \
                    or grant.status is GrantStatus.REVOKED:
                raise GrantNotFoundError(f"No grant {grant_id!r} is available to this caller.",
                                         grant_id=grant_id,
                                         hint="Call list_grants to see the grants you can use.")
            return grant
        assert provider is not None
        self._catalog.get(provider)
        grants = await self._store.find_grants(
            ident.owner_keys(), provider,
            statuses=(GrantStatus.ACTIVE, GrantStatus.NEEDS_REAUTH),
            account_identifier=account)
        grants = [g for g in grants if _identity.can_use(ident, g)]
        if not grants:
            which = f" for account {account!r}" if account else ""
            raise GrantNotFoundError(
                f"No {provider} grant{which} is connected for this caller.",
                provider_id=provider,
                hint=f"Call connect with providers=[{provider!r}] to connect an account.")
        if len(grants) > 1:
            raise AmbiguousGrantError(provider, [
                {"grant_id": g.grant_id, "account_identifier": g.account_identifier,
                 "label": g.label} for g in grants])
        return grants[0]

    def _limits(self, ident: Identity, request: PolicyRequest,
                rules: Targeted) -> list[tuple[str, AuditFilter, int]]:
        """Return, per rate-limited rule targeting the request, what to count and its limit."""
        now = self._clock()
        out = []
        limits = {r.name: r.rate_limit.limit for r in rules.rules if r.rate_limit is not None}
        for key in usage_keys(request, rules):
            limit = limits[key.rule]
            scope: dict[str, Any] = {"grant_id": request.grant_id}
            if key.per == "caller":
                scope = ({"caller": ident.caller} if ident.caller
                         else {"principal": ident.principal.key})
            flt = AuditFilter(since=now - timedelta(seconds=key.window_seconds),
                              action=RESERVE, outcome=Outcome.ALLOWED.value, limit=limit + 1,
                              **scope)
            out.append((key.rule, flt, limit))
        return out

    async def _usage(self, limits: Sequence[tuple[str, AuditFilter, int]]) -> dict[str, int]:
        # Counted in SQL over an index, capped just past the limit: never events built.
        return {rule: await self._store.count_audit(flt) for rule, flt, _ in limits}

    async def _reserve(self, ident: Identity, grant: Grant, prepared: PreparedRequest,
                       limits: Sequence[tuple[str, AuditFilter, int]], reason: str | None,
                       ) -> int:
        """Take one slot of every rate limit (the intent event), or deny naming the full one."""
        entry = AuditEntry(RESERVE, Outcome.ALLOWED, identity=ident, grant_id=grant.grant_id,
                           provider_id=grant.provider_id, method=prepared.method.value,
                           url=prepared.url, reason=reason,
                           detail={"rules": [rule for rule, _, _ in limits], INTENT: True})
        try:
            taken = await self._store.append_audit_within(
                self._audit.sealer(entry), [(flt, limit) for _, flt, limit in limits])
        except StoreError as exc:
            raise nothing_sent(_WHAT) from exc
        if taken.event is None:
            rule, _, limit = limits[taken.exceeded or 0]
            raise PolicyViolationError(
                f"Policy rule {rule!r} denied this request: its rate limit of {limit} "
                "requests per window is reached.", rule=rule, reason="rate limit reached")
        return taken.event.seq

    async def _decide(self, ident: Identity, grant: Grant, prepared: PreparedRequest,
                      json_body: Any, approver: Approver | None, reason: str | None,
                      body: Any) -> tuple[tuple[str, ...], int | None]:
        """Return the approving rules and the seq of the rate-limit reservation, if any."""
        rules = self._rules()
        if not rules:
            return (), None
        request = PolicyRequest(
            method=prepared.method.value, host=prepared.host, path=prepared.path,
            provider_id=grant.provider_id, grant_id=grant.grant_id,
            principal=ident.principal.key, groups=ident.groups, caller=ident.caller,
            mcp_client=ident.mcp_client, body=json_body)
        # Only the rules that target this request, each targets() checked once.
        targeted = select(request, rules)
        limits = self._limits(ident, request, targeted)
        decision = evaluate(request, targeted, now=self._clock(),
                            usage=await self._usage(limits))
        if not decision.allowed:
            raise PolicyViolationError(
                f"Policy rule {decision.rule!r} denied this request: {decision.reason}.",
                rule=decision.rule or "policy", reason=decision.reason)
        if not decision.needs_approval:
            if limits:
                return (), await self._reserve(ident, grant, prepared, limits, reason)
            return (), None
        rule = decision.approval_rules[0]
        if approver is None:
            raise PolicyViolationError(
                f"Policy rule {rule!r} requires human approval for this request, and this "
                "client cannot ask one (no elicitation support).",
                rule=rule, reason="approval required")
        ask = ApprovalRequest(
            method=prepared.method.value, url=prepared.url, provider_id=grant.provider_id,
            account=grant.account_identifier, grant_id=grant.grant_id, reason=reason,
            body_summary=_summary(json_body, body), rules=decision.approval_rules)
        if not await approver(ask):
            raise PolicyViolationError("The human did not approve this request (approval "
                                       "denied).", rule=rule, reason="approval denied")
        if limits:
            return decision.approval_rules, await self._reserve(ident, grant, prepared, limits,
                                                                reason)
        return decision.approval_rules, None

    async def request(
        self, ident: Identity, method: HttpMethod | str, url: str, *,
        credential: CredentialGetter, repair_link: RepairLink,
        grant_id: str | None = None, provider: str | None = None, account: str | None = None,
        json: Any = None, body: Any = None, extra_headers: Mapping[str, str] | None = None,
        query_params: Mapping[str, str] | None = None,
        path_params: Mapping[str, str] | None = None, reason: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - the HTTP timeout, passed on
        approver: Approver | None = None,
    ) -> RequestResult:
        """Send one authenticated request for ``ident`` and audit it, whatever happens."""
        # In flight, so that requests finishing alongside share one audit commit.
        with self._audit.in_flight():
            started = time.perf_counter()
            facts: dict[str, Any] = {"method": str(getattr(method, "value", method))[:16],
                                     "url": url if isinstance(url, str) else None,
                                     "reason": reason, "provider_id": provider,
                                     "grant_id": grant_id}
            approved: tuple[str, ...] = ()
            try:
                grant = await self.resolve(ident, grant_id=grant_id, provider=provider,
                                           account=account)
                facts.update(grant_id=grant.grant_id, provider_id=grant.provider_id)
                spec = self._catalog.get(grant.provider_id)
                prepared = prepare(spec, method, url, path_params=path_params,
                                   query_params=query_params, headers=extra_headers, json=json,
                                   body=body, allow_insecure_http=self._insecure,
                                   connection=grant.connection)
                facts.update(method=prepared.method.value, url=prepared.url)
                approved, intent = await self._decide(ident, grant, prepared, json, approver,
                                                      reason, body)
            except AlterError as exc:
                # Refused before its intent: one event, and nothing was sent.
                try:
                    await self._audit.record(AuditEntry.failed(
                        "request", exc, identity=ident,
                        latency_ms=(time.perf_counter() - started) * 1e3,
                        detail={"approved_by": list(approved)} if approved else {}, **facts))
                except AuditWriteError as audit_exc:
                    raise nothing_sent(_WHAT) from audit_exc
                raise
            if intent is None:
                intent = await self._audit.intent(AuditEntry(
                    INTENT_ACTION, Outcome.ALLOWED, identity=ident, **facts), what=_WHAT)
            sent = _Sent()
            secrets: list[Secret] = []
            try:
                # The slot first: a request queued behind a busy provider holds no plaintext.
                async with self._sender.slot(prepared, spec, timeout=timeout) as slot:
                    fields = await credential(grant)
                    secrets.extend(fields.values())
                    outcome = await self._send(grant, spec, prepared, fields, credential,
                                               repair_link, timeout, secrets, sent, slot)
            except Exception as exc:
                await self._failed_outcome(exc, ident, facts, approved, started, intent, sent,
                                           secrets)
                if isinstance(exc, AlterError):
                    raise
                raise SentRequestFailedError(what=_WHAT, sent=sent.sent, status=sent.status,
                                             intent_seq=intent) from exc
            await self._audit.outcome(AuditEntry(
                "request", Outcome.ALLOWED, identity=ident, status=outcome.status,
                latency_ms=(time.perf_counter() - started) * 1e3,
                detail={k: v for k, v in (("approved_by", list(approved)),
                                           ("retried", outcome.retried),
                                           ("truncated", outcome.result.truncated)) if v},
                **facts), secrets, intent_seq=intent, sent=True, status=outcome.status,
                what=_WHAT)
            return outcome

    async def _failed_outcome(self, exc: Exception, ident: Identity, facts: dict[str, Any],
                              approved: tuple[str, ...], started: float, intent: int,
                              sent: _Sent, secrets: list[Secret]) -> None:
        """Record the outcome of a request that failed after its intent was committed."""
        detail: dict[str, Any] = {"approved_by": list(approved)} if approved else {}
        detail["sent"] = sent.sent
        entry = AuditEntry.failed("request", exc, identity=ident, status=sent.status,
                                  latency_ms=(time.perf_counter() - started) * 1e3,
                                  detail=detail, **facts)
        try:
            await self._audit.outcome(entry, secrets, intent_seq=intent, sent=sent.sent,
                                      status=sent.status, what=_WHAT)
        except AuditWriteError:
            # Nothing of this request left the process; an earlier audit failure (a token
            # refresh that was sent) says more than this one.
            if isinstance(exc, RequestSentUnauditedError | AuditWriteError):
                raise exc from None
            raise

    async def _send(self, grant: Grant, spec: Provider, prepared: PreparedRequest,
                    fields: dict[str, Secret], credential: CredentialGetter,
                    repair_link: RepairLink, timeout: float | None,  # noqa: ASYNC109
                    secrets: list[Secret], sent: _Sent, slot: Slot) -> RequestResult:
        sent.sent = True  # from here the provider may have received it
        result = await self._sender.send(prepared, spec, fields, timeout=timeout, slot=slot)
        sent.status = result.status
        answer = classify(result)
        notes: list[str] = []
        retried = False
        if answer.kind is AnswerKind.UNAUTHORIZED and grant.kind is GrantKind.OAUTH:
            if prepared.method.idempotent:
                fresh = await credential(grant, force_refresh=True)
                secrets.extend(fresh.values())
                result = await self._sender.send(prepared, spec, fresh, timeout=timeout,
                                                 slot=slot)
                sent.status = result.status
                answer = classify(result)
                retried = True
            else:
                notes.append(f"The provider answered 401; the token was not refreshed and the "
                             f"{prepared.method.value} request was not retried because it is "
                             "not idempotent. Retry it yourself if that is safe.")
        if answer.kind is AnswerKind.INSUFFICIENT_SCOPE:
            scopes = answer.scopes or ()
            raise ScopeReauthRequiredError(
                f"Grant {grant.grant_id} lacks the scopes this request needs"
                + (f": {' '.join(scopes)}." if scopes else "."),
                grant_id=grant.grant_id, provider_id=grant.provider_id, missing_scopes=scopes,
                connect_url=await repair_link(grant, scopes) if grant.kind is GrantKind.OAUTH
                else None)
        if answer.kind is AnswerKind.RATE_LIMITED:
            raise RateLimitedError(provider_id=grant.provider_id, retry_after=answer.retry_after)
        return RequestResult(result=result, grant_id=grant.grant_id,
                             provider_id=grant.provider_id, retried=retried, notes=tuple(notes))
