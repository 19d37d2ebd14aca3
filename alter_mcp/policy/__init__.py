"""Policy: rules that restrict requests (pure evaluation) and the file they come from."""

from alter_mcp.policy.loader import PolicyFile, load_rules
from alter_mcp.policy.rules import (
    Decision,
    ParamCheck,
    PolicyRequest,
    RateLimit,
    Rule,
    RuleSet,
    TimeWindow,
    UsageKey,
    evaluate,
    usage_keys,
)

__all__ = [
    "Decision",
    "ParamCheck",
    "PolicyFile",
    "PolicyRequest",
    "RateLimit",
    "Rule",
    "RuleSet",
    "TimeWindow",
    "UsageKey",
    "evaluate",
    "load_rules",
    "usage_keys",
]
