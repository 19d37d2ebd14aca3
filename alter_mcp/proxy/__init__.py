"""The outbound half of ``authenticated_request``: guard, inject, send, and a safe result.

The orchestrator (``AlterVault.request``) calls, in order::

    prepared = prepare(provider, method, url, ...)      # before any credential is read
    async with sender.slot(prepared, provider) as slot:  # before the credential is read
        result = await sender.send(prepared, provider, credential, slot=slot)
    answer = classify(result)                           # ok / unauthorized / rate_limited / ...

Public names are imported lazily, so ``import alter_mcp.proxy`` builds nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alter_mcp.proxy.answer import (
        AnswerKind,
        AuthChallenge,
        ProviderAnswer,
        classify,
        parse_challenges,
        parse_retry_after,
    )
    from alter_mcp.proxy.guard import PreparedRequest, prepare
    from alter_mcp.proxy.inject import OutboundRequest, inject
    from alter_mcp.proxy.result import ProxyResult, UnfollowedRedirect
    from alter_mcp.proxy.send import Sender, new_client
    from alter_mcp.proxy.sigv4 import sign_v4
    from alter_mcp.proxy.slots import OriginSlots, Slot

__all__ = [
    "AnswerKind",
    "AuthChallenge",
    "OriginSlots",
    "OutboundRequest",
    "PreparedRequest",
    "ProviderAnswer",
    "ProxyResult",
    "Sender",
    "Slot",
    "UnfollowedRedirect",
    "classify",
    "inject",
    "new_client",
    "parse_challenges",
    "parse_retry_after",
    "prepare",
    "sign_v4",
]

_HOMES = {
    "AnswerKind": "answer",
    "AuthChallenge": "answer",
    "OriginSlots": "slots",
    "OutboundRequest": "inject",
    "PreparedRequest": "guard",
    "ProviderAnswer": "answer",
    "ProxyResult": "result",
    "Sender": "send",
    "Slot": "slots",
    "UnfollowedRedirect": "result",
    "classify": "answer",
    "inject": "inject",
    "new_client": "send",
    "parse_challenges": "answer",
    "parse_retry_after": "answer",
    "prepare": "guard",
    "sign_v4": "sigv4",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"alter_mcp.proxy.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'alter_mcp.proxy' has no attribute {name!r}")
