"""The provider catalogue and OAuth clients: ``providers list|show|configure``, ``connect``."""

from __future__ import annotations

import webbrowser
from typing import Any

import anyio.to_thread
import click
from rich.table import Table

from alter_mcp.cli._common import emit, err, fail, json_option, open_vault, out, read_secret, run

__all__ = ["connect", "providers"]


@click.group(short_help="Browse the catalogue; configure OAuth clients.")
def providers() -> None:
    """Browse the provider catalogue and configure OAuth clients.

    \b
    alter-mcp providers list --kind oauth2
    alter-mcp providers show github
    alter-mcp providers configure github --client-id Iv1.0123 --client-secret-env GH_SECRET
    """


@providers.command("list")
@click.option("--kind", type=click.Choice(["oauth2", "api_key", "basic", "aws_sigv4"]),
              help="Only providers of this auth kind.")
@click.option("--configured", "only_configured", is_flag=True,
              help="Only providers usable on this deployment (OAuth ones need a client).")
@json_option
def providers_list(kind: str | None, only_configured: bool, as_json: bool) -> None:
    """List the catalogue: id, name, auth kind, API hosts, and whether a client is set up."""
    from alter_mcp.server.resources import provider_summary

    async def inner() -> tuple[Any, frozenset[str]]:
        async with open_vault() as vault:
            return vault.catalog, await vault.configured_providers()

    catalog, configured = run(inner)
    # One meaning of "configured" everywhere (MCP catalogue too): usable on this deployment.
    summaries = [provider_summary(p, configured) for p in catalog.providers()
                 if kind is None or p.auth_kind.value == kind]
    data = [{k: s[k] for k in ("id", "name", "auth_kind", "configured", "api_hosts")}
            for s in summaries if not only_configured or s["configured"]]

    def render() -> None:
        table = Table("id", "name", "auth", "api hosts", "client")
        for row in data:
            hosts = row["api_hosts"]
            shown = ", ".join(hosts[:2]) + (f" (+{len(hosts) - 2} more)" if len(hosts) > 2 else "")
            table.add_row(row["id"], row["name"], row["auth_kind"], shown,
                          "yes" if row["configured"] else "")
        out.print(table)
        err.print(f"{len(data)} providers. Details: alter-mcp providers show ID")

    emit(data, as_json, render)


@providers.command("show")
@click.argument("provider_id")
@json_option
def providers_show(provider_id: str, as_json: bool) -> None:
    """Show one provider's catalogue entry and this deployment's client (never its secret)."""
    from alter_mcp.errors import ProviderNotConfiguredError
    from alter_mcp.oauth.clients import resolve_client

    async def inner() -> tuple[Any, Any, str]:
        async with open_vault() as vault:
            provider = vault.catalog.get(provider_id)
            client = None
            if provider.is_oauth:
                try:
                    client = (await resolve_client(
                        provider, settings=vault.settings, store=vault.store,
                        envelope=vault.envelope)).info()
                except ProviderNotConfiguredError:
                    client = None
            return provider, client, vault.settings.default_redirect_uri

    provider, client, default_redirect = run(inner)
    data = provider.model_dump(mode="json", exclude_none=True)
    data["client"] = client.model_dump(mode="json") if client else None
    redirect = (client.redirect_uri if client and client.redirect_uri else default_redirect)
    if provider.is_oauth:
        data["redirect_uri"] = redirect

    def render() -> None:
        table = Table(show_header=False, box=None)
        table.add_row("id", provider.id)
        table.add_row("name", provider.name)
        table.add_row("auth", provider.auth_kind.value)
        table.add_row("api hosts", ", ".join(provider.api_hosts))
        if provider.oauth is not None:
            table.add_row("authorize", provider.oauth.authorization_url)
            table.add_row("scopes", " ".join(provider.oauth.default_scopes) or "(none)")
        for field in provider.secret_fields:
            table.add_row("field", f"{field.name} ({field.label})")
        if provider.is_oauth:
            table.add_row("client", f"{client.client_id} from {client.source}"
                          + (", secret set" if client.has_client_secret else ", public")
                          if client else "not configured: alter-mcp providers configure "
                          + provider.id)
            table.add_row("redirect uri", f"{redirect}  (register it with the provider's "
                          "OAuth app)")
            if provider.oauth is not None and provider.oauth.console_url:
                table.add_row("oauth apps", provider.oauth.console_url)
        if provider.docs_url:
            table.add_row("docs", provider.docs_url)
        out.print(table)
        if provider.notes:
            out.print(provider.notes, markup=False)

    emit(data, as_json, render)


@providers.command("configure")
@click.argument("provider_id")
@click.option("--client-id", required=True, help="The OAuth client id the provider gave you.")
@click.option("--client-secret-stdin", "secret_stdin", is_flag=True,
              help="Read the client secret from stdin.")
@click.option("--client-secret-env", "secret_env", metavar="NAME",
              help="Read the client secret from the environment variable NAME.")
@click.option("--public", is_flag=True, help="A public client: there is no client secret.")
@click.option("--scope", "scopes", multiple=True,
              help="A scope to ask for instead of the catalogue's defaults (repeatable).")
@click.option("--redirect-uri", help="The callback URL registered at the provider "
                                     "[default: <public URL or loopback>/oauth/callback].")
@click.option("--client-secret", "secret_argv", hidden=True, expose_value=True,
              help="Refused: a secret on the command line leaks into history and ps.")
@json_option
def providers_configure(
    provider_id: str, client_id: str, secret_stdin: bool, secret_env: str | None, public: bool,
    scopes: tuple[str, ...], redirect_uri: str | None, secret_argv: str | None, as_json: bool,
) -> None:
    """Store this deployment's OAuth client for PROVIDER_ID, its secret encrypted.

    The secret comes from a hidden prompt, --client-secret-stdin or --client-secret-env NAME;
    never from the command line. A [providers.ID] table in the configuration file wins over
    a client stored here.
    """
    if secret_argv is not None:
        fail("--client-secret is refused: a secret on the command line ends up in shell "
             "history and the process list.",
             hint="Use the hidden prompt, --client-secret-stdin or --client-secret-env NAME.")
    if sum((secret_stdin, secret_env is not None, public)) > 1:
        fail("Give one of --client-secret-stdin, --client-secret-env and --public.")
    secret = None if public else read_secret("client secret", option="--client-secret",
                                             from_stdin=secret_stdin, env=secret_env)

    async def inner() -> tuple[Any, str]:
        async with open_vault() as vault:
            return await vault.configure_provider(
                provider_id, client_id=client_id, client_secret=secret,
                scopes=list(scopes) if scopes else None, redirect_uri=redirect_uri
            ), vault.settings.default_redirect_uri

    info, default_redirect = run(inner)
    data = info.model_dump(mode="json")
    data["redirect_uri"] = info.redirect_uri or default_redirect

    def render() -> None:
        err.print(f"Stored the OAuth client {info.client_id} for {info.provider_id}"
                  + (" with its secret encrypted." if info.has_client_secret else
                     " (public client)."), markup=False)
        err.print(f"Redirect URI to register with the provider: {data['redirect_uri']}",
                  markup=False)
        err.print(f"Connect an account: alter-mcp connect {info.provider_id}", markup=False)

    emit(data, as_json, render)


@click.command(short_help="Connect an account of PROVIDER_ID in the browser.")
@click.argument("provider_id")
@click.option("--scope", "scopes", multiple=True,
              help="A scope to ask for besides the configured ones (repeatable).")
@click.option("--account-hint", help="The account to sign in with (e-mail or login).")
@click.option("--timeout", type=click.FloatRange(1, 3600), default=300.0, show_default=True,
              help="Seconds to wait for you to finish in the browser.")
@click.option("--no-browser", is_flag=True,
              help="Do not open a browser; print the link to stderr to open anywhere.")
@json_option
def connect(provider_id: str, scopes: tuple[str, ...], account_hint: str | None, timeout: float,
            no_browser: bool, as_json: bool) -> None:
    """Connect an account of PROVIDER_ID as the system principal, through a browser.

    Opens the single-use connect link, waits (with a spinner) until you have signed in and
    allowed access, and prints the new grant. The token stays in the vault.
    """
    async def show(url: str) -> None:
        opened = False if no_browser else await anyio.to_thread.run_sync(webbrowser.open, url)
        verb = "Opened" if opened else "Open"
        err.print(f"{verb} this single-use link to authorize:", markup=False)
        # One unbroken line to copy, printed above the spinner.
        err.print(url, markup=False, soft_wrap=True, highlight=False)

    async def inner() -> Any:
        async with open_vault() as vault:
            provider = vault.catalog.get(provider_id)
            with err.status(f"Waiting for you to authorize {provider.name} in the browser "
                            "(Ctrl-C to stop)…"):
                return await vault.connect([provider_id], open_browser=show, timeout=timeout,
                                           scopes=list(scopes) or None,
                                           account_hint=account_hint)

    [result] = run(inner)
    data = result.model_dump(mode="json")

    def render() -> None:
        who = f" as {result.account_identifier}" if result.account_identifier else ""
        out.print(f"[green]Connected[/] {result.provider_id}{who}.")
        out.print(f"grant {result.grant_id}  scopes: {' '.join(result.scopes) or '(none)'}",
                  markup=False)

    emit(data, as_json, render)
