"""Request-level policy: rules that only ever restrict, evaluated purely (no I/O).

A rule *targets* requests (by provider, grant, principal, group, caller) and *limits* the ones
it targets: HTTP methods, host and path globs, JSON-body parameters, time windows, rate limits,
and whether a human must approve. Every targeting rule must pass; the first that fails denies
with its name and reason. Any error while evaluating denies (fail closed).

Rate limits need counts of earlier requests. :func:`usage_keys` says which counts a request
needs; the caller fetches them (e.g. from the audit log) and passes them to :func:`evaluate`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "Decision",
    "ParamCheck",
    "PolicyRequest",
    "RateLimit",
    "Rule",
    "RuleSet",
    "Targeted",
    "TimeWindow",
    "UsageKey",
    "evaluate",
    "usage_keys",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class ParamOp(StrEnum):
    """How a JSON-body parameter is compared."""

    EQ = "eq"
    NE = "ne"
    IN = "in"
    NOT_IN = "not_in"
    GLOB = "glob"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    ABSENT = "absent"


class ParamCheck(BaseModel):
    """A condition on one JSON-body parameter, addressed by a dotted path."""

    model_config = _FROZEN
    path: str = Field(min_length=1)
    op: ParamOp
    value: Any = None
    #: When the parameter is missing: pass (the default) or fail.
    required: bool = False

    @model_validator(mode="after")
    def _check(self) -> ParamCheck:
        if self.op in (ParamOp.IN, ParamOp.NOT_IN) and not isinstance(self.value, list):
            raise ValueError(f"op {self.op.value!r} needs a list value")
        if self.op in (ParamOp.LT, ParamOp.LTE, ParamOp.GT, ParamOp.GTE) and (
            isinstance(self.value, bool) or not isinstance(self.value, int | float)
        ):
            raise ValueError(f"op {self.op.value!r} needs a number value")
        if self.op is ParamOp.GLOB and not isinstance(self.value, str):
            raise ValueError("op 'glob' needs a string pattern")
        return self


class TimeWindow(BaseModel):
    """When requests are allowed: days of the week and a local time range."""

    model_config = _FROZEN
    days: tuple[str, ...] = _DAYS
    start: str = "00:00"
    end: str = "23:59"
    timezone: str = "UTC"

    @field_validator("days")
    @classmethod
    def _days(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in value if d not in _DAYS]
        if bad or not value:
            raise ValueError(f"days must be among {', '.join(_DAYS)}")
        return value

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("times are HH:MM, 24-hour")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    def contains(self, moment: datetime) -> bool:
        """Return True when ``moment`` falls inside the window."""
        local = moment.astimezone(ZoneInfo(self.timezone))
        if _DAYS[local.weekday()] not in self.days:
            return False
        start, end = time.fromisoformat(self.start), time.fromisoformat(self.end)
        now = local.time().replace(second=0, microsecond=0)
        if start <= end:
            return start <= now <= end
        return now >= start or now <= end  # a window across midnight


class RateLimit(BaseModel):
    """At most ``limit`` requests per ``window_seconds``, counted per grant or per caller."""

    model_config = _FROZEN
    limit: int = Field(ge=0)
    window_seconds: int = Field(gt=0, le=366 * 86400)
    per: Literal["grant", "caller"] = "grant"


class Rule(BaseModel):
    """One policy rule: whom it targets and what it limits."""

    model_config = _FROZEN
    name: str = Field(min_length=1, max_length=100)
    description: str | None = None
    # -- targets (all given must match; none given targets every request) --
    providers: tuple[str, ...] = ()
    grants: tuple[str, ...] = ()
    principals: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    callers: tuple[str, ...] = ()
    # -- limits --
    methods: tuple[str, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    allow_paths: tuple[str, ...] = ()
    deny_paths: tuple[str, ...] = ()
    params: tuple[ParamCheck, ...] = ()
    time_window: TimeWindow | None = None
    rate_limit: RateLimit | None = None
    require_approval: bool = False
    @field_validator("methods")
    @classmethod
    def _methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        known = {"GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"}
        upper = tuple(m.upper() for m in value)
        bad = [m for m in upper if m not in known]
        if bad:
            raise ValueError(f"unknown HTTP method(s) {bad}")
        return upper

    @cached_property
    def globs(self) -> _Globs:
        """Return the host and path globs compiled once, held by the rule itself."""
        return _Globs(_pattern(self.deny_hosts), _pattern(self.allow_hosts),
                      _pattern(self.deny_paths), _pattern(self.allow_paths))

    def targets(self, request: PolicyRequest) -> bool:
        """Return True when this rule applies to ``request``."""
        checks: list[bool] = []
        if self.providers:
            checks.append(request.provider_id in self.providers)
        if self.grants:
            checks.append(request.grant_id in self.grants)
        if self.principals:
            checks.append(request.principal in self.principals)
        if self.groups:
            checks.append(bool(set(self.groups) & set(request.groups)))
        if self.callers:
            checks.append(any(c in self.callers for c in request.callers() if c))
        return all(checks)


class RuleSet(BaseModel):
    """A validated policy file: ``[[rule]]`` tables."""

    model_config = _FROZEN
    rule: tuple[Rule, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        names = [r.name for r in self.rule]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique: {dupes}")
        return self


@dataclass(frozen=True, slots=True)
class PolicyRequest:
    """The facts of one outbound request that rules are evaluated against."""

    method: str
    host: str
    path: str
    provider_id: str
    grant_id: str
    principal: str
    groups: frozenset[str] = frozenset()
    caller: str | None = None
    mcp_client: str | None = None
    body: Any = None

    def callers(self) -> tuple[str | None, ...]:
        """Return the names this request's caller may be targeted by."""
        return (self.caller, self.mcp_client)


@dataclass(frozen=True, slots=True)
class Targeted:
    """The rules that target one request, in policy order, ``targets()`` already checked."""

    rules: tuple[Rule, ...]


def _targeting(request: PolicyRequest, rules: Sequence[Rule] | Targeted) -> tuple[Rule, ...]:
    if isinstance(rules, Targeted):
        return rules.rules
    return tuple(rule for rule in rules if rule.targets(request))


@dataclass(frozen=True, slots=True)
class UsageKey:
    """A count a rate limit needs: requests by one grant or caller within a window."""

    rule: str
    per: Literal["grant", "caller"]
    subject: str
    window_seconds: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of evaluating the rules for one request."""

    allowed: bool
    rule: str | None = None
    reason: str | None = None
    approval_rules: tuple[str, ...] = field(default=())

    @property
    def needs_approval(self) -> bool:
        """Return True when a human must approve before the request is sent."""
        return self.allowed and bool(self.approval_rules)


def usage_keys(request: PolicyRequest, rules: Sequence[Rule] | Targeted) -> list[UsageKey]:
    """Return the usage counts the rate-limited rules targeting ``request`` need."""
    keys = []
    for rule in _targeting(request, rules):
        if rule.rate_limit is not None:
            per = rule.rate_limit.per
            subject = request.grant_id if per == "grant" else (
                request.caller or request.mcp_client or request.principal)
            keys.append(UsageKey(rule.name, per, subject, rule.rate_limit.window_seconds))
    return keys


_MISSING = object()


def _lookup(body: Any, path: str) -> Any:
    node = body
    for part in path.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("not a number")
    return float(value)


def _param_ok(check: ParamCheck, body: Any) -> tuple[bool, str]:
    value = _lookup(body, check.path)
    if value is _MISSING:
        if check.op is ParamOp.ABSENT:
            return True, ""
        return (not check.required), f"body parameter {check.path!r} is missing"
    op = check.op
    describe = f"body parameter {check.path!r} must be {op.value} {check.value!r}"
    if op is ParamOp.ABSENT:
        return False, f"body parameter {check.path!r} must not be present"
    if op is ParamOp.EQ:
        return value == check.value, describe
    if op is ParamOp.NE:
        return value != check.value, describe
    if op is ParamOp.IN:
        return value in check.value, describe
    if op is ParamOp.NOT_IN:
        return value not in check.value, describe
    if op is ParamOp.GLOB:
        return isinstance(value, str) and fnmatch.fnmatchcase(value, check.value), describe
    try:
        number, limit = _number(value), float(check.value)
    except (TypeError, ValueError):
        return False, f"body parameter {check.path!r} is not a number"
    passed = {ParamOp.LT: number < limit, ParamOp.LTE: number <= limit,
              ParamOp.GT: number > limit, ParamOp.GTE: number >= limit}[op]
    return passed, describe


def _pattern(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


class _Globs(NamedTuple):
    deny_hosts: re.Pattern[str] | None
    allow_hosts: re.Pattern[str] | None
    deny_paths: re.Pattern[str] | None
    allow_paths: re.Pattern[str] | None


def _matches(pattern: re.Pattern[str] | None, value: str) -> bool | None:
    return None if pattern is None else pattern.fullmatch(value) is not None


def _check_rule(rule: Rule, request: PolicyRequest, now: datetime,
                usage: Mapping[str, int], method: str, host: str, path: str) -> str | None:
    """Return why ``rule`` denies the request, or None when it passes."""
    if rule.methods and method not in rule.methods:
        allowed = ", ".join(rule.methods)
        return f"method {method} is not allowed (allowed: {allowed})"
    globs = rule.globs
    if _matches(globs.deny_hosts, host):
        return f"host {host} is denied"
    if _matches(globs.allow_hosts, host) is False:
        return f"host {host} is not in the allowed hosts"
    if _matches(globs.deny_paths, path):
        return f"path {path} is denied"
    if _matches(globs.allow_paths, path) is False:
        return f"path {path} is not in the allowed paths"
    for check in rule.params:
        passed, why = _param_ok(check, request.body)
        if not passed:
            return why
    if rule.time_window is not None and not rule.time_window.contains(now):
        window = rule.time_window
        return (f"outside the allowed time window ({','.join(window.days)} "
                f"{window.start}-{window.end} {window.timezone})")
    if rule.rate_limit is not None:
        used = usage.get(rule.name)
        if used is None:
            return "rate limit usage is unknown"
        if used >= rule.rate_limit.limit:
            return (f"rate limit of {rule.rate_limit.limit} requests per "
                    f"{rule.rate_limit.window_seconds} s per {rule.rate_limit.per} reached")
    return None


def evaluate(request: PolicyRequest, rules: Sequence[Rule] | Targeted, *, now: datetime,
             usage: Mapping[str, int] | None = None) -> Decision:
    """Decide whether ``request`` may be sent; deny on any failing rule or evaluation error.

    ``rules`` is the whole policy, or the :class:`Targeted` selection of a
    :class:`~alter_mcp.policy.index.PolicyIndex` (then ``targets()`` is not run again).
    """
    counts = usage or {}
    approvals: list[str] = []
    current = "policy"
    try:
        method, host, path = request.method.upper(), request.host.lower(), request.path or "/"
        for rule in _targeting(request, rules):
            current = rule.name
            why = _check_rule(rule, request, now, counts, method, host, path)
            if why is not None:
                return Decision(False, rule.name, why)
            if rule.require_approval:
                approvals.append(rule.name)
    except Exception as exc:  # fail closed: a rule that cannot be evaluated denies
        return Decision(False, current, f"policy evaluation failed ({type(exc).__name__})")
    return Decision(True, approval_rules=tuple(approvals))
