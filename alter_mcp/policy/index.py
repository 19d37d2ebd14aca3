"""Rules indexed by what they target, so a request only meets the rules that may apply to it.

A deployment with thousands of rules (one per customer's grant, say) should not pay for each
of them on every request. :class:`PolicyIndex` files every rule under the most selective
target it names — a grant, else a provider, a principal, a group, a caller — and keeps rules
that name no target aside (they apply to every request). :meth:`PolicyIndex.select` gathers
the candidates of a request from those buckets, checks each one's full ``targets()`` once, and
returns them in policy order, which is what decides the rule a denial names.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from alter_mcp.policy.rules import PolicyRequest, Rule, Targeted

__all__ = ["PolicyIndex", "select"]

_Buckets = dict[str, list[int]]


class PolicyIndex(Sequence[Rule]):
    """The rules of a policy, in order, with an index from targets to the rules naming them."""

    __slots__ = ("_callers", "_everywhere", "_grants", "_groups", "_principals", "_providers",
                 "_rules")

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self._rules = tuple(rules)
        self._grants: _Buckets = {}
        self._providers: _Buckets = {}
        self._principals: _Buckets = {}
        self._groups: _Buckets = {}
        self._callers: _Buckets = {}
        self._everywhere: list[int] = []
        for position, rule in enumerate(self._rules):
            # One bucket per rule is enough: a candidate's full targets() is checked anyway.
            for names, buckets in ((rule.grants, self._grants),
                                   (rule.providers, self._providers),
                                   (rule.principals, self._principals),
                                   (rule.groups, self._groups),
                                   (rule.callers, self._callers)):
                if names:
                    for name in names:
                        buckets.setdefault(name, []).append(position)
                    break
            else:
                self._everywhere.append(position)

    def select(self, request: PolicyRequest) -> Targeted:
        """Return the rules that target ``request``, in policy order."""
        found: set[int] = set(self._everywhere)
        for buckets, keys in ((self._grants, (request.grant_id,)),
                              (self._providers, (request.provider_id,)),
                              (self._principals, (request.principal,)),
                              (self._groups, request.groups),
                              (self._callers, request.callers())):
            if buckets:
                for key in keys:
                    if key is not None:
                        found.update(buckets.get(key, ()))
        rules = self._rules
        return Targeted(tuple(rules[i] for i in sorted(found) if rules[i].targets(request)))

    def __len__(self) -> int:
        return len(self._rules)

    @overload
    def __getitem__(self, index: int) -> Rule: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Rule]: ...

    def __getitem__(self, index: int | slice) -> Rule | Sequence[Rule]:
        return self._rules[index]

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __repr__(self) -> str:
        return f"PolicyIndex({len(self._rules)} rules)"


def select(request: PolicyRequest, rules: Sequence[Rule]) -> Targeted:
    """Return the rules of ``rules`` (indexed or not) that target ``request``, in order."""
    if isinstance(rules, PolicyIndex):
        return rules.select(request)
    return Targeted(tuple(rule for rule in rules if rule.targets(request)))
