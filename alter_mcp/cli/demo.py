"""``alter-mcp demo``: the whole loop against a sandbox provider on loopback, no account needed.

connect → authenticated request → list → revoke → audit, in a throwaway data directory,
printing each step. The sandbox (:class:`alter_mcp.testing.SandboxProvider`) is a real OAuth
authorization server and API on ``127.0.0.1``; by default the demo plays the user's browser
itself with an HTTP client, so it runs headless; ``--browser`` hands the link to you.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
import webbrowser
from pathlib import Path
from typing import Any

import anyio.to_thread
import click

from alter_mcp.cli._common import FAILED, emit, err, id_table, json_option, out, run

__all__ = ["demo"]

_TITLE = re.compile(r"<h1[^>]*>([^<]*)</h1>")


class _Narrator:
    """Print the steps for people (or stay quiet for --json) and keep them for the summary."""

    def __init__(self, *, show: bool) -> None:
        self.show = show
        self.steps: list[dict[str, Any]] = []

    def step(self, title: str, what: str) -> None:
        """Start a numbered step."""
        self.steps.append({"step": title, "ok": False, "notes": []})
        if self.show:
            out.print(f"\n[bold]{len(self.steps)}. {title}[/] — {what}")

    def note(self, text: str) -> None:
        """Say what happens within the current step."""
        self.steps[-1]["notes"].append(text)
        if self.show:
            out.print(f"   {text}", markup=False, soft_wrap=True)

    def ok(self, text: str, **facts: Any) -> None:
        """Mark the current step done, with its result."""
        self.steps[-1].update(ok=True, result=text, **facts)
        if self.show:
            out.print("   [green]✓[/] ", end="")
            out.print(text, markup=False, soft_wrap=True)


async def _walk(data_dir: Path, *, browser: bool, wait: float, say: _Narrator
                ) -> dict[str, Any]:
    from alter_mcp.config import load_settings
    from alter_mcp.errors import GrantNotFoundError
    from alter_mcp.models import CallerType
    from alter_mcp.testing import SandboxProvider
    from alter_mcp.vault import AlterVault

    async with SandboxProvider() as sandbox:
        # No ALTER_MCP_* variable applies: the demo never touches your real vault.
        settings = load_settings({}, data_dir=data_dir, connect_port=0,
                                 **sandbox.settings_overrides())
        if say.show:
            out.print(f"sandbox provider: {sandbox.issuer} (OAuth server + API, this machine "
                      "only)", markup=False)
            out.print(f"vault data:       {data_dir}", markup=False)
        async with AlterVault(settings, caller="alter-mcp-demo",
                              caller_type=CallerType.CLI) as vault:
            say.step("Connect", "a single-use connect link, authorized at the provider")

            async def authorize(url: str) -> None:
                if browser:
                    opened = await anyio.to_thread.run_sync(webbrowser.open, url)
                    say.note(("Opened" if opened else "Open") + f" {url} and click Allow.")
                    return
                say.note(f"link: {url.split('/connect/')[0]}/connect/…")
                say.note("no browser: the demo plays it with an HTTP client (use --browser "
                         "to click through yourself): link → sandbox consent → Allow → "
                         "callback")
                page = await sandbox.approve(url)
                found = _TITLE.search(page.text)
                say.note(f"callback page: HTTP {page.status_code} "
                         f"“{found.group(1) if found else '?'}”")

            [result] = await vault.connect([sandbox.provider_id], open_browser=authorize,
                                           timeout=wait)
            say.ok(f"connected {result.account_identifier} — grant {result.grant_id}",
                   grant_id=result.grant_id)

            say.step("Authenticated request", "the vault injects the token into the call")
            url = sandbox.api_url + "/items"
            answer = await vault.request("GET", url, grant_id=result.grant_id,
                                         reason="demo")
            items = answer.body.get("items", []) if isinstance(answer.body, dict) else []
            names = ", ".join(str(i.get("name")) for i in items if isinstance(i, dict))
            say.note(f"GET {url} → HTTP {answer.status}: {len(items)} items ({names})")
            seen = json.dumps(answer.to_dict(), default=str)
            leaked = [t for t in sandbox.auth.tokens if t in seen]
            if answer.status != 200 or leaked:
                raise RuntimeError("the sandbox API call did not go as expected")
            say.ok("the API answered; no token appears anywhere in what this program got",
                   status=answer.status)

            say.step("List grants", "metadata only, never a credential")
            page = await vault.list_grants()
            if say.show:
                table = id_table("grant id", "provider", "account", "scopes", "status")
                for grant in page.grants:
                    table.add_row(grant.grant_id, grant.provider_id,
                                  grant.account_identifier or "", " ".join(grant.scopes),
                                  grant.status.value)
                out.print(table)
            say.ok(f"{len(page.grants)} grant(s)", grants=len(page.grants))

            say.step("Revoke", "at the provider (RFC 7009) and in the vault")
            revoked = await vault.revoke_grant(result.grant_id, reason="demo")
            say.note(f"provider revocation: {revoked.provider_revocation}")
            try:
                await vault.request("GET", url, grant_id=result.grant_id)
            except GrantNotFoundError as exc:
                say.note(f"the next request is refused: {exc.message}")
            else:
                raise RuntimeError("a revoked grant was still usable")
            say.ok("revoked", provider_revocation=revoked.provider_revocation)

            say.step("Audit", "every step above, hash-chained")
            report = await vault.verify_audit()
            if not report.ok:
                raise RuntimeError(f"the audit chain is broken: {report.problem}")
            say.ok(f"{report.checked} events, chain intact (alter-mcp audit tail shows them)",
                   events=report.checked)
    return {"ok": True, "steps": say.steps, "sandbox": sandbox.stats}


@click.command(short_help="Walk connect → request → list → revoke offline (sandbox).")
@click.option("--browser", is_flag=True,
              help="Open the connect link in your browser and click Allow yourself.")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Keep the demo vault here [default: a temporary directory, removed after].")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=300.0, show_default=True,
              help="Seconds to wait for the authorization.")
@json_option
def demo(browser: bool, data_dir: Path | None, timeout: float, as_json: bool) -> None:
    """See the whole loop offline: connect, authenticated request, list, revoke, audit.

    A sandbox OAuth provider and API run on 127.0.0.1 (alter_mcp.testing.SandboxProvider);
    the vault lives in a temporary directory; nothing touches your real vault or the network.
    """
    say = _Narrator(show=not as_json)
    if say.show:
        out.print("[bold]alter-mcp demo[/]: connect → authenticated request → list → revoke, "
                  "against a sandbox provider on this machine (no account needed).")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="alter-mcp-demo-") as scratch:
        where = data_dir.expanduser().resolve() if data_dir else Path(scratch) / "vault"

        async def inner() -> dict[str, Any]:
            try:
                return await _walk(where, browser=browser, wait=timeout, say=say)
            except RuntimeError as exc:
                return {"ok": False, "error": str(exc), "steps": say.steps}

        summary = run(inner)
    summary["seconds"] = round(time.perf_counter() - started, 3)

    def render() -> None:
        if summary["ok"]:
            out.print(f"\n[green]Done[/] in {summary['seconds']:.1f} s. Next: `alter-mcp init`, "
                      "then `alter-mcp providers configure` and `alter-mcp connect` for a "
                      "real provider.")
        else:
            err.print(f"[red]demo failed:[/] {summary['error']}")

    emit(summary, as_json, render)
    if not summary["ok"]:
        raise SystemExit(FAILED)
