"""Policy evaluation, table-driven: rules only restrict, the first failing rule denies."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from alter_mcp.errors import ConfigurationError
from alter_mcp.policy import (
    PolicyFile,
    PolicyRequest,
    Rule,
    evaluate,
    load_rules,
    usage_keys,
)

# A Wednesday, 14:30 UTC (15:30 in Berlin, 09:30 in New York).
NOW = datetime(2026, 11, 18, 14, 30, tzinfo=UTC)
BASE = PolicyRequest(
    method="GET", host="api.github.com", path="/repos/acme/app/issues", provider_id="github",
    grant_id="g1", principal="user:https://idp.test#alice", groups=frozenset({"eng"}),
    caller="claude-desktop", mcp_client="Claude Desktop",
    body={"amount": 50, "currency": "usd", "meta": {"env": "prod"}, "items": [{"sku": "a1"}]},
)


def rule(**kw: Any) -> Rule:
    """Return a validated rule named r."""
    return Rule.model_validate({"name": "r", **kw})


# (case id, rules, request changes, usage, expected allowed, expected rule, reason fragment)
CASES: list[tuple[str, list[dict[str, Any]], dict[str, Any], dict[str, int], bool, str | None,
                  str]] = [
    ("no rules allow", [], {}, {}, True, None, ""),
    ("untargeted provider ignored", [{"providers": ["slack"], "methods": ["POST"]}], {}, {},
     True, None, ""),
    ("method allowed", [{"methods": ["GET", "HEAD"]}], {}, {}, True, None, ""),
    ("method denied", [{"methods": ["GET"]}], {"method": "DELETE"}, {}, False, "r", "method"),
    ("method lowercase in request", [{"methods": ["GET"]}], {"method": "get"}, {}, True, None,
     ""),
    ("host allowed glob", [{"allow_hosts": ["*.github.com"]}], {}, {}, True, None, ""),
    ("host not in allow", [{"allow_hosts": ["uploads.github.com"]}], {}, {}, False, "r", "host"),
    ("host denied", [{"deny_hosts": ["api.github.com"]}], {}, {}, False, "r", "denied"),
    ("path allowed", [{"allow_paths": ["/repos/*"]}], {}, {}, True, None, ""),
    ("path not allowed", [{"allow_paths": ["/user"]}], {}, {}, False, "r", "path"),
    ("path denied", [{"deny_paths": ["/repos/*/issues"]}], {}, {}, False, "r", "denied"),
    ("deny path wins over allow", [{"allow_paths": ["/repos/*"], "deny_paths": ["*/issues"]}],
     {}, {}, False, "r", "denied"),
    ("param eq ok", [{"params": [{"path": "currency", "op": "eq", "value": "usd"}]}], {}, {},
     True, None, ""),
    ("param eq fails", [{"params": [{"path": "currency", "op": "eq", "value": "eur"}]}], {}, {},
     False, "r", "currency"),
    ("param ne", [{"params": [{"path": "currency", "op": "ne", "value": "usd"}]}], {}, {},
     False, "r", "currency"),
    ("param in ok", [{"params": [{"path": "currency", "op": "in", "value": ["usd", "eur"]}]}],
     {}, {}, True, None, ""),
    ("param in fails", [{"params": [{"path": "currency", "op": "in", "value": ["gbp"]}]}], {},
     {}, False, "r", "currency"),
    ("param not_in fails", [{"params": [{"path": "currency", "op": "not_in",
                                         "value": ["usd"]}]}], {}, {}, False, "r", "currency"),
    ("param glob nested ok", [{"params": [{"path": "meta.env", "op": "glob",
                                           "value": "pro*"}]}], {}, {}, True, None, ""),
    ("param glob nested fails", [{"params": [{"path": "meta.env", "op": "glob",
                                              "value": "dev*"}]}], {}, {}, False, "r", "meta.env"),
    ("param list index", [{"params": [{"path": "items.0.sku", "op": "eq", "value": "a1"}]}],
     {}, {}, True, None, ""),
    ("param lte ok", [{"params": [{"path": "amount", "op": "lte", "value": 50}]}], {}, {}, True,
     None, ""),
    ("param lt fails", [{"params": [{"path": "amount", "op": "lt", "value": 50}]}], {}, {},
     False, "r", "amount"),
    ("param gt ok", [{"params": [{"path": "amount", "op": "gt", "value": 10}]}], {}, {}, True,
     None, ""),
    ("param gte fails", [{"params": [{"path": "amount", "op": "gte", "value": 51}]}], {}, {},
     False, "r", "amount"),
    ("param numeric on string fails closed", [{"params": [{"path": "currency", "op": "lt",
                                                           "value": 5}]}], {}, {}, False, "r",
     "not a number"),
    ("param missing optional passes", [{"params": [{"path": "nope", "op": "eq",
                                                    "value": 1}]}], {}, {}, True, None, ""),
    ("param missing required fails", [{"params": [{"path": "nope", "op": "eq", "value": 1,
                                                   "required": True}]}], {}, {}, False, "r",
     "missing"),
    ("param absent fails when present", [{"params": [{"path": "amount", "op": "absent"}]}], {},
     {}, False, "r", "must not"),
    ("param on non-json body", [{"params": [{"path": "amount", "op": "lte", "value": 9,
                                             "required": True}]}], {"body": "raw text"}, {},
     False, "r", "missing"),
    ("time window inside", [{"time_window": {"days": ["wed"], "start": "09:00",
                                             "end": "17:00", "timezone": "Europe/Berlin"}}],
     {}, {}, True, None, ""),
    ("time window outside hours", [{"time_window": {"start": "09:00", "end": "10:00",
                                                    "timezone": "Europe/Berlin"}}], {}, {},
     False, "r", "time window"),
    ("time window wrong day", [{"time_window": {"days": ["sat", "sun"]}}], {}, {}, False, "r",
     "time window"),
    ("time window other zone", [{"time_window": {"start": "09:00", "end": "10:00",
                                                 "timezone": "America/New_York"}}], {}, {},
     True, None, ""),
    ("time window across midnight", [{"time_window": {"start": "22:00", "end": "06:00"}}], {},
     {}, False, "r", "time window"),
    ("rate limit under", [{"rate_limit": {"limit": 10, "window_seconds": 60}}], {}, {"r": 9},
     True, None, ""),
    ("rate limit reached", [{"rate_limit": {"limit": 10, "window_seconds": 60}}], {},
     {"r": 10}, False, "r", "rate limit"),
    ("rate limit unknown usage fails closed", [{"rate_limit": {"limit": 10,
                                                               "window_seconds": 60}}], {}, {},
     False, "r", "unknown"),
    ("quota zero blocks", [{"rate_limit": {"limit": 0, "window_seconds": 86400}}], {},
     {"r": 0}, False, "r", "rate limit"),
    ("target by group", [{"groups": ["eng"], "methods": ["POST"]}], {}, {}, False, "r",
     "method"),
    ("target by other group ignored", [{"groups": ["sales"], "methods": ["POST"]}], {}, {},
     True, None, ""),
    ("target by principal", [{"principals": ["user:https://idp.test#alice"],
                              "methods": ["POST"]}], {}, {}, False, "r", "method"),
    ("target by caller", [{"callers": ["claude-desktop"], "methods": ["POST"]}], {}, {}, False,
     "r", "method"),
    ("target by mcp client", [{"callers": ["Claude Desktop"], "methods": ["POST"]}], {}, {},
     False, "r", "method"),
    ("target by grant", [{"grants": ["g2"], "methods": ["POST"]}], {}, {}, True, None, ""),
    ("all targets must match", [{"providers": ["github"], "groups": ["sales"],
                                 "methods": ["POST"]}], {}, {}, True, None, ""),
    ("approval required", [{"require_approval": True}], {}, {}, True, None, ""),
    ("malformed request fails closed", [{"allow_hosts": ["*"]}], {"host": None}, {}, False,
     "policy", "evaluation failed"),
    ("malformed body fails closed", [{"params": [{"path": "amount", "op": "gt", "value": 1}]}],
     {"body": {"amount": float("nan")}}, {}, False, "r", "amount"),
]


@pytest.mark.parametrize(("case", "rules", "change", "usage", "allowed", "rule_name", "why"),
                         CASES, ids=[c[0] for c in CASES])
def test_policy_table(case: str, rules: list[dict[str, Any]], change: dict[str, Any],
                      usage: dict[str, int], allowed: bool, rule_name: str | None,
                      why: str) -> None:
    """Each case's rules allow or deny the request, naming the rule and the reason."""
    parsed = [Rule.model_validate({"name": "r", **r}) for r in rules]
    decision = evaluate(replace(BASE, **change), parsed, now=NOW, usage=usage)
    assert decision.allowed is allowed, decision
    assert decision.rule == rule_name
    assert why in (decision.reason or "")


def test_policy_table_has_forty_cases() -> None:
    """The table covers at least forty cases."""
    assert len(CASES) >= 40


def test_policy_first_failing_rule_named() -> None:
    """With several rules, the first one that fails is the one named."""
    rules = [Rule(name="ok", methods=("GET",)), Rule(name="hosts", allow_hosts=("x.test",)),
             Rule(name="paths", allow_paths=("/nope",))]
    assert evaluate(BASE, rules, now=NOW).rule == "hosts"


def test_policy_approval_collected_from_every_rule() -> None:
    """Every targeting rule that requires approval is reported."""
    rules = [Rule(name="a", require_approval=True), Rule(name="b", methods=("GET",)),
             Rule(name="c", require_approval=True, providers=("github",))]
    decision = evaluate(BASE, rules, now=NOW)
    assert decision.needs_approval and decision.approval_rules == ("a", "c")


def test_policy_usage_keys_per_grant_and_caller() -> None:
    """Rate-limited rules that target the request ask for their counts."""
    rules = [Rule(name="g", rate_limit={"limit": 1, "window_seconds": 60}),
             Rule(name="c", rate_limit={"limit": 1, "window_seconds": 30, "per": "caller"}),
             Rule(name="other", providers=("slack",), rate_limit={"limit": 1,
                                                                  "window_seconds": 5})]
    keys = usage_keys(BASE, rules)
    assert [(k.rule, k.per, k.subject, k.window_seconds) for k in keys] == [
        ("g", "grant", "g1", 60), ("c", "caller", "claude-desktop", 30)]


@pytest.mark.parametrize(("bad", "fragment"), [
    ({"methods": ["FETCH"]}, "methods"),
    ({"time_window": {"timezone": "Mars/Olympus"}}, "time_window"),
    ({"time_window": {"start": "25:00"}}, "time_window"),
    ({"params": [{"path": "a", "op": "lt", "value": "x"}]}, "params"),
    ({"params": [{"path": "a", "op": "in", "value": "x"}]}, "params"),
    ({"rate_limit": {"limit": -1, "window_seconds": 5}}, "rate_limit"),
    ({"colour": "red"}, "colour"),
])
def test_policy_file_invalid_rule_named(tmp_path: Path, bad: dict[str, Any],
                                        fragment: str) -> None:
    """An invalid rule is refused at load, naming the rule number and the field."""
    import tomli_w

    path = tmp_path / "policy.toml"
    path.write_text(tomli_w.dumps({"rule": [{"name": "fine"}, {"name": "broken", **bad}]}))
    with pytest.raises(ConfigurationError) as exc:
        load_rules(path)
    assert "rule #2" in exc.value.message and fragment in exc.value.message


def test_policy_file_reload_keeps_last_good(tmp_path: Path) -> None:
    """A changed file is reloaded; a broken change keeps the last good rules."""
    import os

    path = tmp_path / "policy.toml"
    path.write_text('[[rule]]\nname = "one"\nmethods = ["GET"]\n')
    policy = PolicyFile(path)
    assert [r.name for r in policy.rules()] == ["one"]
    path.write_text('[[rule]]\nname = "two"\n')
    os.utime(path, ns=(1, 2_000_000_000))
    assert [r.name for r in policy.rules()] == ["two"]
    path.write_text('[[rule]]\nname = "three"\nmethods = ["NOPE"]\n')
    os.utime(path, ns=(1, 3_000_000_000))
    assert [r.name for r in policy.rules()] == ["two"]
    assert policy.last_error and "rule #1" in policy.last_error
