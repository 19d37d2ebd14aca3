"""The policy index: the same rules, in the same order, as checking every rule in turn."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any
from unittest import mock

import pytest

from alter_mcp.policy import PolicyIndex, PolicyRequest, Rule, evaluate, select, usage_keys
from tests.policy.test_rules import BASE, NOW

TARGETS: dict[str, list[Any]] = {
    "providers": ["github", "slack", "stripe"],
    "grants": ["g1", "g2", "g3"],
    "principals": ["user:https://idp.test#alice", "user:https://idp.test#bob", "system"],
    "groups": ["eng", "ops", "sales"],
    "callers": ["claude-desktop", "Claude Desktop", "cursor", "billing-agent"],
}


def random_rules(seed: int, count: int) -> list[Rule]:
    """Return ``count`` rules, each naming zero to three random kinds of target."""
    rng = random.Random(seed)
    rules = []
    for n in range(count):
        kinds = rng.sample(sorted(TARGETS), rng.randint(0, 3))
        targets = {kind: rng.sample(TARGETS[kind], rng.randint(1, 2)) for kind in kinds}
        limits = rng.choice([{}, {"methods": ["GET"]}, {"deny_paths": ["/admin/*"]},
                             {"require_approval": True},
                             {"rate_limit": {"limit": 5, "window_seconds": 60}}])
        rules.append(Rule.model_validate({"name": f"r{n}", **targets, **limits}))
    return rules


def random_requests(seed: int, count: int) -> list[PolicyRequest]:
    """Return requests with random targets (some matching none of the rules' values)."""
    rng = random.Random(seed)
    return [replace(
        BASE, provider_id=rng.choice([*TARGETS["providers"], "gitlab"]),
        grant_id=rng.choice([*TARGETS["grants"], "g9"]),
        principal=rng.choice([*TARGETS["principals"], "agent:x"]),
        groups=frozenset(rng.sample([*TARGETS["groups"], "hr"], rng.randint(0, 2))),
        caller=rng.choice([*TARGETS["callers"], None]),
        mcp_client=rng.choice([*TARGETS["callers"], None]),
        method=rng.choice(["GET", "POST"]), path=rng.choice(["/x", "/admin/y"]),
    ) for _ in range(count)]


@pytest.mark.parametrize("seed", range(5))
def test_policy_index_selects_exactly_the_targeting_rules_in_order(seed: int) -> None:
    """For random rules and requests the index returns what a linear scan returns, in order."""
    rules = random_rules(seed, 200)
    index = PolicyIndex(rules)
    for request in random_requests(seed + 100, 300):
        expected = tuple(r for r in rules if r.targets(request))
        assert index.select(request).rules == expected
        assert select(request, rules).rules == expected
        usage = {r.name: 0 for r in rules}
        assert evaluate(request, index.select(request), now=NOW, usage=usage) == \
            evaluate(request, rules, now=NOW, usage=usage)
        assert usage_keys(request, index.select(request)) == usage_keys(request, rules)


def test_policy_index_checks_only_candidate_rules_once() -> None:
    """Rules for other grants are never looked at; each candidate's targets() runs once."""
    rules = [Rule(name=f"grant-{n}", grants=(f"g{n}",), methods=("GET",))
             for n in range(10_000)]
    rules.append(Rule(name="everyone", deny_paths=("/admin/*",)))
    index = PolicyIndex(rules)
    with mock.patch.object(Rule, "targets", autospec=True, side_effect=Rule.targets) as spy:
        chosen = index.select(replace(BASE, grant_id="g42"))
        decision = evaluate(BASE, chosen, now=NOW)
    assert [r.name for r in chosen.rules] == ["grant-42", "everyone"]
    assert decision.allowed
    assert spy.call_count == 2


def test_policy_index_is_a_sequence_of_its_rules() -> None:
    """The index reads as the ordered rules it was built from (length, items, iteration)."""
    rules = random_rules(7, 10)
    index = PolicyIndex(rules)
    assert len(index) == 10 and list(index) == rules and index[3] is rules[3]
    assert not PolicyIndex() and "10 rules" in repr(index)


def test_policy_rule_compiles_its_globs_once() -> None:
    """A rule's host and path globs are compiled on first use and kept by the rule."""
    rule = Rule(name="paths", allow_paths=("/repos/*",), deny_hosts=("*.evil.test",))
    assert rule.globs is rule.globs
    assert rule.globs.allow_paths is not None
    assert rule.globs.allow_paths.fullmatch("/repos/a")
