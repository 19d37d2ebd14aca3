"""Grants and managed secrets: ``grants list|revoke``, ``secrets add|list|grant``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from alter_mcp.cli._common import (
    emit,
    err,
    fail,
    id_table,
    json_option,
    open_vault,
    out,
    parse_owner,
    read_secret,
    run,
    shown_time,
)

if TYPE_CHECKING:
    from alter_mcp.models import Identity, Principal

__all__ = ["grants", "secrets"]

_user_option = click.option(
    "--user", "user", metavar="ISSUER#SUB",
    help="Act as this end user (their grants) instead of the system principal.")


def _as_user(user: str | None) -> Identity | None:
    from alter_mcp.models import CallerType, Identity, UserPrincipal

    if user is None:
        return None
    issuer, subject = parse_owner(user, option="--user")
    return Identity(principal=UserPrincipal(issuer=issuer, subject=subject),
                    caller="alter-mcp-cli", caller_type=CallerType.CLI)


@click.group(short_help="List and revoke grants (connected accounts, secrets).")
def grants() -> None:
    """List and revoke grants (connected accounts and managed-secret grants).

    The CLI acts as the system principal; --user ISSUER#SUB acts as one end user.
    """


@grants.command("list")
@click.option("--provider", "provider_id", help="Only grants of this provider.")
@click.option("--status", type=click.Choice(["active", "needs_reauth", "revoked"]),
              help="Only grants in this state.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True,
              help="Grants per page.")
@click.option("--cursor", help="Continue after the page that printed this cursor.")
@_user_option
@json_option
def grants_list(provider_id: str | None, status: str | None, limit: int, cursor: str | None,
                user: str | None, as_json: bool) -> None:
    """List grants: id, provider, account, owner, scopes, status (never a credential)."""
    identity = _as_user(user)

    async def inner() -> Any:
        async with open_vault(identity=identity) as vault:
            return await vault.list_grants(provider_id=provider_id, status=status, limit=limit,
                                           cursor=cursor)

    page = run(inner)
    data = {"grants": [g.public_view() for g in page.grants], "next_cursor": page.next_cursor}

    def render() -> None:
        table = id_table("grant id", "provider", "account", "owner", "status", "created")
        for grant in page.grants:
            table.add_row(grant.grant_id, grant.provider_id, grant.account_identifier or "",
                          grant.owner.key, grant.status.value, shown_time(grant.created_at))
        out.print(table)
        if page.next_cursor:
            err.print(f"More: alter-mcp grants list --cursor {page.next_cursor}", markup=False)

    emit(data, as_json, render)


@grants.command("revoke")
@click.argument("grant_id")
@click.option("--reason", help="Why (written to the audit log).")
@_user_option
@json_option
def grants_revoke(grant_id: str, reason: str | None, user: str | None, as_json: bool) -> None:
    """Revoke GRANT_ID: revoke its token at the provider, delete it here, audit it."""
    identity = _as_user(user)

    async def inner() -> Any:
        async with open_vault(identity=identity) as vault:
            return await vault.revoke_grant(grant_id, reason=reason)

    result = run(inner)
    data = result.model_dump(mode="json")

    def render() -> None:
        at_provider = {"revoked": "and at the provider",
                       "failed": f"(the provider's revocation failed: {result.provider_detail})",
                       "not_supported": "(the provider has no revocation endpoint)",
                       "not_applicable": ""}[result.provider_revocation]
        err.print(f"Revoked grant {result.grant_id} {at_provider}".rstrip() + ".",
                  markup=False)

    emit(data, as_json, render)


@click.group(short_help="Store API keys and other managed secrets; share them.")
def secrets() -> None:
    """Store developer-owned credentials (API keys, basic pairs, AWS keys) and share them.

    \b
    alter-mcp secrets add openai --label prod           # asks for api_key, hidden
    alter-mcp secrets add openai --label ci --field-env api_key=OPENAI_API_KEY
    alter-mcp secrets grant SECRET_ID --group https://login.example.com#eng --label eng
    """


@secrets.command("add")
@click.argument("provider_id")
@click.option("--label", required=True, help="A name for this secret, e.g. prod.")
@click.option("--field-stdin", "field_stdin", metavar="NAME",
              help="Read the field NAME from stdin.")
@click.option("--field-env", "field_env", multiple=True, metavar="NAME=ENV",
              help="Read the field NAME from the environment variable ENV (repeatable).")
@click.option("--field", "field_argv", multiple=True, hidden=True,
              help="Refused: secrets on the command line leak into history and ps.")
@json_option
def secrets_add(provider_id: str, label: str, field_stdin: str | None,
                field_env: tuple[str, ...], field_argv: tuple[str, ...], as_json: bool) -> None:
    """Store a managed secret for PROVIDER_ID, encrypted; print its id (never its value).

    Each field the provider needs comes from --field-env NAME=ENV, --field-stdin NAME, or a
    prompt (hidden for secret fields). `alter-mcp providers show ID` lists the fields.
    """
    from alter_mcp.config import load_settings
    from alter_mcp.providers import SecretField, load_catalog

    if field_argv:
        fail("--field is refused: a secret on the command line ends up in shell history and "
             "the process list.", hint="Use a prompt, --field-stdin NAME or --field-env "
                                       "NAME=ENV.")
    env_fields: dict[str, str] = {}
    for item in field_env:
        name, sep, var = item.partition("=")
        if not sep or not name or not var:
            fail(f"--field-env {item!r} must be NAME=ENV, e.g. api_key=OPENAI_API_KEY.")
        env_fields[name] = var

    def provider() -> Any:
        async def inner() -> Any:
            return load_catalog(load_settings().catalog).get(provider_id)
        return run(inner)

    spec = provider()
    # Connection values (a shop, a subdomain) are asked like fields but stored unsealed.
    known = {f.name: f for f in (*spec.secret_fields, *(
        SecretField(name=v.name, label=v.label, secret=False) for v in spec.connection))}
    if not known:
        fail(f"Provider {provider_id!r} uses OAuth; its grants come from `alter-mcp connect`.",
             hint="Pick an API-key, basic or AWS provider (alter-mcp providers list).")
    for name in [*env_fields, *([field_stdin] if field_stdin else [])]:
        if name not in known:
            fail(f"Provider {provider_id!r} has no field {name!r}.",
                 hint="Its fields: " + ", ".join(known) + ".")
    values: dict[str, str] = {}
    for name, field in known.items():
        if name in env_fields:
            values[name] = read_secret(field.label, option="--field", env=env_fields[name])
        elif name == field_stdin:
            values[name] = read_secret(field.label, option="--field", from_stdin=True)
        elif sys.stdin.isatty():
            label = field.label + ("" if field.required else " (optional, Enter to skip)")
            value = str(click.prompt(label, hide_input=field.secret, default="",
                                     show_default=False, err=True))
            if value:
                values[name] = value
        elif field.required:
            fail(f"No value for the field {name!r} ({field.label}) and no terminal to ask.",
                 hint=f"Pass --field-env {name}=ENV or --field-stdin {name}.")

    async def inner() -> Any:
        async with open_vault() as vault:
            return await vault.create_managed_secret(provider_id, values, label=label)

    secret = run(inner)
    data = secret.model_dump(mode="json")

    def render() -> None:
        err.print(f"Stored secret {secret.label!r} for {secret.provider_id} "
                  f"({', '.join(secret.field_names)}), encrypted.", markup=False)
        err.print(f"Let someone use it: alter-mcp secrets grant {secret.secret_id} "
                  "--system | --user ISSUER#SUB | --group ISSUER#GROUP", markup=False)
        click.echo(secret.secret_id)

    emit(data, as_json, render)


@secrets.command("list")
@json_option
def secrets_list(as_json: bool) -> None:
    """List managed secrets: id, provider, label, field names (never a value)."""
    async def inner() -> Any:
        async with open_vault() as vault:
            return await vault.list_managed_secrets()

    found = run(inner)
    data = [s.model_dump(mode="json") for s in found]

    def render() -> None:
        table = id_table("secret id", "provider", "label", "fields", "created")
        for s in found:
            table.add_row(s.secret_id, s.provider_id, s.label, ", ".join(s.field_names),
                          shown_time(s.created_at))
        out.print(table)

    emit(data, as_json, render)


@secrets.command("grant")
@click.argument("secret_id")
@click.option("--user", metavar="ISSUER#SUB", help="One end user of the identity provider.")
@click.option("--group", metavar="ISSUER#GROUP", help="Every member of an identity group.")
@click.option("--system", is_flag=True, help="The application itself (scripts, jobs).")
@click.option("--label", help="What the grant is called (required for users and groups).")
@json_option
def secrets_grant(secret_id: str, user: str | None, group: str | None, system: bool,
                  label: str | None, as_json: bool) -> None:
    """Let one principal use the managed secret SECRET_ID; print the new grant."""
    from alter_mcp.models import GroupPrincipal, SystemPrincipal, UserPrincipal

    if sum((user is not None, group is not None, system)) != 1:
        fail("Give exactly one of --user ISSUER#SUB, --group ISSUER#GROUP and --system.")
    principal: Principal
    if user is not None:
        issuer, subject = parse_owner(user, option="--user")
        principal = UserPrincipal(issuer=issuer, subject=subject)
    elif group is not None:
        issuer, name = parse_owner(group, option="--group")
        principal = GroupPrincipal(issuer=issuer, group=name)
    else:
        principal = SystemPrincipal()

    async def inner() -> Any:
        async with open_vault() as vault:
            return await vault.create_managed_secret_grant(secret_id, principal=principal,
                                                           label=label)

    grant = run(inner)
    data = grant.public_view() | {"owner": grant.owner.key}

    def render() -> None:
        err.print(f"Granted {grant.owner.key} the secret as grant:", markup=False)
        click.echo(grant.grant_id)

    emit(data, as_json, render)

