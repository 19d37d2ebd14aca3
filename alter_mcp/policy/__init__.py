"""Policy: rules that restrict requests (pure evaluation) and the file they come from."""

from alter_mcp.policy.index import PolicyIndex, select
from alter_mcp.policy.loader import PolicyFile, load_rules
from alter_mcp.policy.rules import (
    Decision,
    ParamCheck,
    PolicyRequest,
    RateLimit,
    Rule,
    RuleSet,
    Targeted,
    TimeWindow,
    UsageKey,
    evaluate,
    usage_keys,
)

__all__ = [
    "Decision",
    "ParamCheck",
    "PolicyFile",
    "PolicyIndex",
    "PolicyRequest",
    "RateLimit",
    "Rule",
    "RuleSet",
    "Targeted",
    "TimeWindow",
    "UsageKey",
    "evaluate",
    "load_rules",
    "select",
    "usage_keys",
]
