"""The grant tools and the request tool: thin adapters, one vault call each.

``list_grants`` and ``revoke_grant`` show and end the caller's grants; ``authenticated_request``
sends one HTTP request with a grant's credential injected by the vault and returns the
provider's answer (status, headers, body capped). No tool result ever holds a credential.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import mcp_types
from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field, WithJsonSchema

from alter_mcp.models import GrantStatus
from alter_mcp.server.caller import CallerBinder
from alter_mcp.server.elicit import Answer, ask_confirmation
from alter_mcp.server.errors import tool_errors

__all__ = ["JSON_VALUE_SCHEMA", "register_grant_tools", "response_view"]

Method = Literal["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]
#: Any JSON value, as a union every branch of which has a ``type``: strict schema converters
#: in some hosts reject or drop a property with no type (what ``Any`` alone produces).
JSON_VALUE_SCHEMA: dict[str, Any] = {"anyOf": [
    {"type": "object", "additionalProperties": True}, {"type": "array"}, {"type": "string"},
    {"type": "number"}, {"type": "boolean"}, {"type": "null"}]}
GrantId = Annotated[str, Field(min_length=1, max_length=200, description=(
    "A grant_id from list_grants or connect."))]


def response_view(response: Any, max_chars: int) -> dict[str, Any]:
    """Return the vault's scrubbed result as tool data, its body cut to ``max_chars``.

    The vault already removed credentials and sized the body for memory; this cap is for the
    model's context: a longer body comes back as text, cut, with ``truncated`` set.
    """
    view: dict[str, Any] = response.to_dict()
    body = view.get("body")
    text = body if isinstance(body, str) else json.dumps(body, default=str)
    if body is not None and len(text) > max_chars:
        view.update(body=text[:max_chars], truncated=True,
                    body_note=f"cut to {max_chars} characters; narrow the request for more")
    return view


class _AskFirst(Exception):
    """Carries a 2026-07-28 approval question out of the vault's request pipeline."""

    def __init__(self, question: mcp_types.InputRequiredResult) -> None:
        super().__init__("approval needed")
        self.question = question


def _approver(ctx: Context) -> Callable[[Any], Awaitable[bool]]:
    """Return the vault's approver: a policy rule's approval becomes a user confirmation."""
    async def approve(ask: Any) -> bool:
        state = json.dumps({"op": "approve", "method": ask.method, "url": ask.url,
                            "grant_id": ask.grant_id, "rules": list(ask.rules)})
        answer = await ask_confirmation(ctx, key="approve_request", message=ask.message(),
                                        state=state)
        if isinstance(answer, mcp_types.InputRequiredResult):
            raise _AskFirst(answer)
        return answer is Answer.ACCEPTED

    return approve


def register_grant_tools(server: FastMCP, binder: CallerBinder) -> None:
    """Add ``list_grants``, ``revoke_grant`` and ``authenticated_request`` to ``server``."""
    max_chars = binder.vault.settings.tool_body_max_chars

    @server.tool(annotations=ToolAnnotations(
        title="List connected accounts", readOnlyHint=True, destructiveHint=False,
        idempotentHint=True, openWorldHint=False))
    async def list_grants(
        ctx: Context,
        provider: Annotated[str | None, Field(max_length=64, description=(
            "Only grants of this provider id (see providers://catalog)."))] = None,
        status: Annotated[Literal["active", "needs_reauth", "revoked"] | None, Field(
            description="Only grants in this state.")] = None,
        limit: Annotated[int, Field(ge=1, le=200, description="Page size.")] = 50,
        cursor: Annotated[str | None, Field(max_length=500, description=(
            "next_cursor from the previous page."))] = None,
    ) -> dict[str, Any]:
        """List the accounts (grants) you may use: id, provider, account, scopes, status.

        Each grant also says where to call: `api_base_url` and `api_hosts` are that account's
        own (a Shopify grant names its shop's host); other hosts are refused.

        Call this first to find a `grant_id` for `authenticated_request`, or to see whether
        the user still needs to `connect` a provider. Only metadata is returned, never a
        credential. If `next_cursor` is set, call again with it for the next page.
        """
        with tool_errors():
            vault = await binder.vault_for(ctx, "list_grants")
            page = await vault.list_grants(
                provider_id=provider, status=GrantStatus(status) if status else None,
                limit=limit, cursor=cursor)
            return {"grants": [vault.grant_view(g) for g in page.grants],
                    "next_cursor": page.next_cursor}

    @server.tool(annotations=ToolAnnotations(
        title="Revoke a connected account", readOnlyHint=False, destructiveHint=True,
        idempotentHint=True, openWorldHint=True))
    async def revoke_grant(
        grant_id: GrantId,
        ctx: Context,
        reason: Annotated[str | None, Field(max_length=500, description=(
            "Why, for the audit log."))] = None,
    ) -> dict[str, Any] | mcp_types.InputRequiredResult:
        """Permanently revoke one of your grants: its credential is deleted for good.

        Only call this when the user explicitly asks to disconnect an account. The user is
        asked to confirm where the client supports it. Returns `revoked: true` with the time,
        or `revoked: false` if the user did not confirm. Afterwards the account must be
        connected again with `connect` before it can be used.
        """
        with tool_errors():
            vault = await binder.vault_for(ctx, "revoke_grant")
            grant = await vault.get_grant(grant_id)
            who = grant.account_identifier or grant.label or grant.grant_id
            answer = await ask_confirmation(
                ctx, key="confirm_revoke",
                message=f"Revoke access to {grant.provider_id} account {who}? The assistant "
                        "will no longer be able to use it.",
                state=json.dumps({"op": "revoke", "grant_id": grant.grant_id}))
            if isinstance(answer, mcp_types.InputRequiredResult):
                return answer
            if answer in (Answer.DECLINED, Answer.CANCELLED):
                return {"grant_id": grant.grant_id, "revoked": False,
                        "reason": f"The user {answer.value} the revocation; nothing changed."}
            result = await vault.revoke_grant(grant.grant_id, reason=reason)
            return {"grant_id": result.grant_id, "revoked": True,
                    "revoked_at": result.revoked_at.isoformat(),
                    "provider_revocation": result.provider_revocation,
                    "confirmed_by_user": answer is Answer.ACCEPTED}

    @server.tool(annotations=ToolAnnotations(
        title="Call a provider API", readOnlyHint=False, destructiveHint=True,
        idempotentHint=False, openWorldHint=True))
    async def authenticated_request(
        method: Annotated[Method, Field(description="The HTTP method.")],
        url: Annotated[str, Field(min_length=8, max_length=8000, description=(
            "Absolute https URL on the provider's API host, e.g. "
            "https://api.github.com/user/repos."))],
        ctx: Context,
        grant_id: Annotated[str | None, Field(max_length=200, description=(
            "Which grant to use (from list_grants)."))] = None,
        provider: Annotated[str | None, Field(max_length=64, description=(
            "Or: the provider id, to use your only grant of it."))] = None,
        account: Annotated[str | None, Field(max_length=200, description=(
            "With provider: which account, when you have several."))] = None,
        query_params: Annotated[dict[str, str] | None, Field(description=(
            "Query string parameters."))] = None,
        path_params: Annotated[dict[str, str] | None, Field(description=(
            "Values for {placeholders} in the URL path."))] = None,
        headers: Annotated[dict[str, str] | None, Field(description=(
            "Extra request headers (never Authorization: the vault adds the credential)."))
        ] = None,
        json: Annotated[Any, WithJsonSchema({**JSON_VALUE_SCHEMA, "description": (
            "A JSON request body: any JSON value (object, array, string, number, boolean).")
        })] = None,
        body: Annotated[str | None, Field(description=(
            "A raw text request body (instead of json)."))] = None,
        reason: Annotated[str | None, Field(max_length=500, description=(
            "Why you make this call, for the audit log."))] = None,
    ) -> dict[str, Any] | mcp_types.InputRequiredResult:
        """Call a third-party API as the user, with the credential injected by the vault.

        Give either `grant_id`, or `provider` (plus `account` if you have several grants of
        it). The URL must be on the provider's API hosts. Returns the provider's `status`,
        `headers` and `body` (parsed JSON when possible, capped; `truncated` says so). If a
        policy rule requires approval the user is asked first. An error names the next
        step: `connect` when no grant exists, a link when the user must re-authorize, the
        candidates when several grants match, the rule when policy denies. An error saying
        the request was sent (`audit_outcome_failed`, `sent_request_failed`) means it reached
        the provider: never send it again.
        """
        with tool_errors():
            vault = await binder.vault_for(ctx, "authenticated_request")
            try:
                response = await vault.request(
                    method, url, grant_id=grant_id, provider=provider, account=account,
                    json=json, body=body, extra_headers=headers, query_params=query_params,
                    path_params=path_params, reason=reason, approver=_approver(ctx))
            except _AskFirst as ask:  # 2026-07-28: the user answers, the client calls again
                return ask.question
            return response_view(response, max_chars)
