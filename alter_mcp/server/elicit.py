"""Ask the human, in whichever protocol era the client speaks.

- 2025-11-25 (handshake era): the server sends ``elicitation/create`` on the session's
  back-channel (``ctx.elicit`` for a form, ``session.elicit_url`` for a link) and waits.
- 2026-07-28 (stateless): there is no back-channel. The tool *returns* an
  ``InputRequiredResult`` carrying the elicitation and an opaque ``request_state``; the client
  asks the human and calls the tool again with ``input_responses`` and the state echoed back
  (sealed and bound to the caller by the SDK, so it cannot be forged or replayed by another).

A client that declared no elicitation capability is never asked: the caller falls back (the
link goes into the tool result; the destructive action relies on the host's own confirmation).
"""

from __future__ import annotations

import logging
from enum import StrEnum

import mcp_types
from fastmcp import Context
from fastmcp.server.elicitation import AcceptedElicitation, get_elicitation_schema
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field

__all__ = ["Answer", "Confirmation", "answered", "ask_confirmation", "modern_era", "offer_url",
           "prior_state"]

log = logging.getLogger(__name__)


class Answer(StrEnum):
    """What the human did with a question."""

    ACCEPTED = "accepted"
    DECLINED = "declined"
    CANCELLED = "cancelled"
    #: The client cannot ask (no elicitation capability for this mode).
    UNSUPPORTED = "unsupported"


class Confirmation(BaseModel):
    """The form of a yes/no confirmation."""

    confirm: bool = Field(title="Confirm", description="Tick to go ahead.")


def modern_era(ctx: Context) -> bool:
    """Return True when this request speaks the stateless 2026-07-28 revision."""
    rc = ctx.request_context
    return rc is not None and rc.protocol_version in MODERN_PROTOCOL_VERSIONS


def _capability(ctx: Context) -> mcp_types.ElicitationCapability | None:
    try:
        caps = ctx.session.client_capabilities
    except RuntimeError:
        return None
    return caps.elicitation if caps is not None else None


def _can_form(ctx: Context) -> bool:
    cap = _capability(ctx)
    # An empty elicitation capability ({}) means form mode, for clients older than URL mode.
    return cap is not None and (cap.form is not None or cap.url is None)


def _can_url(ctx: Context) -> bool:
    cap = _capability(ctx)
    return cap is not None and cap.url is not None


def prior_state(ctx: Context) -> str | None:
    """Return the state echoed by a 2026-07-28 retry, or None on a first round."""
    return ctx.request_state if modern_era(ctx) else None


def _response(ctx: Context, key: str) -> mcp_types.ElicitResult | None:
    responses = ctx.input_responses or {}
    answer = responses.get(key)
    return answer if isinstance(answer, mcp_types.ElicitResult) else None


def _from_action(action: str, accepted: bool = True) -> Answer:
    if action == "accept":
        return Answer.ACCEPTED if accepted else Answer.DECLINED
    return Answer.DECLINED if action == "decline" else Answer.CANCELLED


async def ask_confirmation(
    ctx: Context, *, key: str, message: str, state: str
) -> Answer | mcp_types.InputRequiredResult:
    """Ask the human to confirm; in 2026-07-28 the first round returns the question itself.

    ``state`` identifies the action being confirmed; an answer given for any other state is
    treated as a cancel, so a confirmation can never be carried over to a different action.
    """
    if not _can_form(ctx):
        return Answer.UNSUPPORTED
    if modern_era(ctx):
        answer = _response(ctx, key)
        if answer is None or ctx.request_state is None:
            form = mcp_types.ElicitRequestFormParams(
                message=message, requested_schema=get_elicitation_schema(Confirmation))
            return mcp_types.InputRequiredResult(
                input_requests={key: mcp_types.ElicitRequest(params=form)}, request_state=state)
        if ctx.request_state != state:
            return Answer.CANCELLED
        content = answer.content or {}
        return _from_action(answer.action, content.get("confirm") is True)
    try:
        result = await ctx.elicit(message, Confirmation)
    except Exception as exc:  # a client that fails to ask has not said yes
        log.warning("confirmation elicitation failed: %s", type(exc).__name__)
        return Answer.CANCELLED
    if isinstance(result, AcceptedElicitation):
        return Answer.ACCEPTED if result.data.confirm else Answer.DECLINED
    return _from_action(result.action)


async def offer_url(
    ctx: Context, *, key: str, message: str, url: str, state: str
) -> Answer | mcp_types.InputRequiredResult:
    """Send the human to ``url`` by URL-mode elicitation, where the client supports it.

    On a 2026-07-28 retry the answer is read from ``input_responses`` (the caller checks the
    echoed state first, see :func:`prior_state`).
    """
    if not _can_url(ctx):
        return Answer.UNSUPPORTED
    if modern_era(ctx):
        answer = _response(ctx, key)
        if answer is None:
            params = mcp_types.ElicitRequestURLParams(message=message, url=url)
            return mcp_types.InputRequiredResult(
                input_requests={key: mcp_types.ElicitRequest(params=params)}, request_state=state)
        return _from_action(answer.action)
    try:
        result = await ctx.session.elicit_url(message, url, key,
                                              related_request_id=ctx.request_id)
    except Exception as exc:  # fall back to the link in the result
        log.warning("URL elicitation failed: %s", type(exc).__name__)
        return Answer.UNSUPPORTED
    return _from_action(result.action)


def answered(ctx: Context, key: str) -> Answer | None:
    """Return the human's answer to ``key`` carried by this 2026-07-28 retry, if any."""
    answer = _response(ctx, key) if modern_era(ctx) else None
    return _from_action(answer.action) if answer is not None else None
