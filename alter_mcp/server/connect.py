"""The ``connect`` and ``connect_status`` tools: let the human authorize a provider.

The connect link carries a single-use session token, so it goes to the human, not the model,
whenever the client can show it (URL-mode elicitation); otherwise it is in the tool result for
the model to pass on. Optionally the tool then waits (bounded, with progress notifications)
until the human has finished and returns the new grants.
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import anyio
import mcp_types
from fastmcp import Context, FastMCP
from mcp_types import ToolAnnotations
from pydantic import Field

from alter_mcp.errors import ConnectFlowError
from alter_mcp.models import ConnectSessionStatus
from alter_mcp.server.caller import CallerBinder
from alter_mcp.server.elicit import Answer, answered, offer_url, prior_state
from alter_mcp.server.errors import tool_errors
from alter_mcp.vault import AlterVault

__all__ = ["register_connect_tools"]

_KEY = "connect_link"
_POLL = 0.5
MAX_WAIT = 300
_DONE = {ConnectSessionStatus.COMPLETED, ConnectSessionStatus.FAILED,
         ConnectSessionStatus.EXPIRED}

Providers = Annotated[list[str], Field(min_length=1, max_length=10, description=(
    "Provider ids from providers://catalog, e.g. ['github']."))]
Wait = Annotated[int, Field(ge=0, le=MAX_WAIT, description=(
    "Seconds to wait for the user to finish (0 = return at once)."))]


async def _grants(vault: AlterVault, grant_ids: tuple[str, ...]) -> list[dict[str, Any]]:
    return [vault.grant_view(await vault.get_grant(gid)) for gid in grant_ids]


async def _status(vault: AlterVault, session_id: str) -> Any:
    return await vault.connect_status(session_id)


async def _wait(ctx: Context, vault: AlterVault, session_id: str, seconds: int) -> Any:
    """Poll the session until it is done or ``seconds`` pass, reporting progress."""
    session = await _status(vault, session_id)
    start = time.monotonic()
    while session.status not in _DONE and (elapsed := time.monotonic() - start) < seconds:
        await ctx.report_progress(elapsed, seconds, "Waiting for the user to authorize")
        await anyio.sleep(_POLL)
        session = await _status(vault, session_id)
    return session


async def _outcome(vault: AlterVault, session: Any, **extra: Any) -> dict[str, Any]:
    status = ConnectSessionStatus(session.status)
    result: dict[str, Any] = {"session_id": session.session_id, "status": status.value}
    if status is ConnectSessionStatus.COMPLETED:
        result["grants"] = await _grants(vault, tuple(session.grant_ids))
        result["next_step"] = "Use the grant_id with authenticated_request."
    elif status is ConnectSessionStatus.PENDING:
        result["expires_at"] = session.expires_at.isoformat()
        result["next_step"] = ("The user has not finished yet: call connect_status with this "
                               "session_id to check again.")
    else:
        result["error"] = session.error or status.value
        result["next_step"] = "Call connect again to start over."
    result.update({k: v for k, v in extra.items() if v is not None})
    return result


def register_connect_tools(server: FastMCP, binder: CallerBinder) -> None:
    """Add ``connect`` and ``connect_status`` to ``server``."""

    @server.tool(annotations=ToolAnnotations(
        title="Connect an account", readOnlyHint=False, destructiveHint=False,
        idempotentHint=False, openWorldHint=True))
    async def connect(
        providers: Providers,
        ctx: Context,
        scopes: Annotated[list[str] | None, Field(description=(
            "Extra OAuth scopes beyond the provider's defaults."))] = None,
        account_hint: Annotated[str | None, Field(max_length=200, description=(
            "The account the user should sign in with (e-mail or login), if known."))] = None,
        wait_seconds: Wait = 60,
    ) -> dict[str, Any] | mcp_types.InputRequiredResult:
        """Let the user connect a provider account so you can call its API.

        Works for every provider in providers://catalog: OAuth ones (the user signs in at the
        provider) and API-key, basic or AWS ones (the user pastes the key on the vault's own
        page; you never see it). Call this when `list_grants` shows no active grant for the
        provider you need, or when a tool error tells you to. The user is sent a link (shown
        by the client where it can; otherwise `connect_url` is in the result: give it to the
        user verbatim and ask them to open it). Returns `status` "completed" with the new
        `grants` if the user finished within `wait_seconds`, else "pending" with a
        `session_id` to pass to `connect_status` later. Never ask the user for passwords or
        tokens yourself.
        """
        with tool_errors():
            vault = await binder.vault_for(ctx, "connect")
            state = prior_state(ctx)
            if state is not None:
                return await _resume(ctx, vault, state, providers, wait_seconds)
            link = await vault.create_connect_session(
                allowed_providers=providers, scopes=scopes, account_hint=account_hint)
            names = ", ".join(providers)
            answer = await offer_url(
                ctx, key=_KEY, url=link.connect_url,
                message=f"Open this link to connect your {names} account to this assistant "
                        "(sign in, or paste its key on the vault's page).",
                state=json.dumps({"session_id": link.session_id, "providers": providers,
                                  "url": link.connect_url}))
            if isinstance(answer, mcp_types.InputRequiredResult):
                return answer
            return await _after_offer(ctx, vault, link.session_id, link.connect_url, answer,
                                      wait_seconds)

    @server.tool(annotations=ToolAnnotations(
        title="Check a pending connect", readOnlyHint=True, destructiveHint=False,
        idempotentHint=True, openWorldHint=False))
    async def connect_status(
        session_id: Annotated[str, Field(min_length=1, max_length=200, description=(
            "The session_id returned by connect."))],
        ctx: Context,
        wait_seconds: Annotated[int, Field(ge=0, le=MAX_WAIT, description=(
            "Seconds to wait for the user to finish (0 = check once)."))] = 0,
    ) -> dict[str, Any]:
        """Check whether the user finished a `connect` started earlier.

        Returns `status`: "completed" (with the new `grants`), "pending" (not yet: check
        again later), "failed" or "expired" (call `connect` again). Optionally waits up to
        `wait_seconds` for completion.
        """
        with tool_errors():
            vault = await binder.vault_for(ctx, "connect_status")
            session = await _wait(ctx, vault, session_id, wait_seconds)
            return await _outcome(vault, session)


async def _after_offer(ctx: Context, vault: AlterVault, session_id: str, url: str,
                       answer: Answer, wait_seconds: int) -> dict[str, Any]:
    if answer is Answer.ACCEPTED:
        session = await _wait(ctx, vault, session_id, wait_seconds)
        return await _outcome(vault, session, link_delivery="shown_to_user")
    if answer in (Answer.DECLINED, Answer.CANCELLED):
        session = await _status(vault, session_id)
        return await _outcome(
            vault, session, link_delivery=f"user_{answer.value}",
            next_step="The user did not open the link. Do not retry unless they ask; "
                      "connect_url still works until it expires.",
            connect_url=url)
    # The client cannot show links: the model passes it on, so waiting now would only delay.
    session = await _status(vault, session_id)
    return await _outcome(
        vault, session, link_delivery="in_result", connect_url=url,
        next_step="Give connect_url to the user verbatim and ask them to open it, then call "
                  "connect_status with session_id.")


async def _resume(ctx: Context, vault: AlterVault, state: str, providers: list[str],
                  wait_seconds: int) -> dict[str, Any]:
    """Finish a 2026-07-28 connect after the client showed the link and answered.

    The state was minted by this server and comes back sealed (AES-GCM) and bound to the same
    caller, so its session id and link are ours; the vault still checks the session's owner.
    """
    try:
        data = json.loads(state)
        session_id, url = str(data["session_id"]), str(data["url"])
        same = data["providers"] == providers
    except (ValueError, KeyError, TypeError):
        same = False
    if not same:
        raise ConnectFlowError("The connect retry does not match the link that was shown.",
                               reason="state_mismatch", hint="Call connect again.")
    answer = answered(ctx, _KEY) or Answer.CANCELLED
    return await _after_offer(ctx, vault, session_id, url, answer, wait_seconds)
