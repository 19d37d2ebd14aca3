"""The ``alter-mcp`` command line: check the setup, list providers, verify the audit log.

Output is for people by default (rich) and for scripts with ``--json``. Errors print what to
fix and exit non-zero: 2 for bad configuration or input, 1 for everything else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.table import Table

from alter_mcp.errors import AlterError, ConfigurationError, InvalidInputError

__all__ = ["main"]

T = TypeVar("T")
_err = Console(stderr=True)


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(coro())  # type: ignore[arg-type]
    except AlterError as exc:
        _err.print(f"[bold red]error:[/] {exc.message}")
        if exc.hint:
            _err.print(f"[yellow]fix:[/] {exc.hint}")
        code = 2 if isinstance(exc, ConfigurationError | InvalidInputError) else 1
        raise SystemExit(code) from None


def _emit(data: Any, as_json: bool, render: Callable[[Console], None]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render(Console())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="alter-mcp")
def cli() -> None:
    """Run and administer alter-mcp: an MCP server whose vault holds your API credentials.

    Configuration comes from ALTER_MCP_* environment variables and the TOML file named by
    ALTER_MCP_CONFIG. Start with `alter-mcp doctor` to see what is set up.
    """


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def doctor(as_json: bool) -> None:
    """Check configuration, key, database and providers; say what to fix."""
    from alter_mcp.doctor import run_checks

    checks = _run(run_checks)

    def render(console: Console) -> None:
        for check in checks:
            mark = "[green]ok[/]" if check.ok else "[red]FAIL[/]"
            console.print(f"{mark:>12}  {check.name}: {check.detail}")
            if not check.ok and check.fix:
                console.print(f"{'':>6}fix: {check.fix}")

    _emit([dataclasses.asdict(c) for c in checks], as_json, render)
    if not all(c.ok for c in checks):
        raise SystemExit(1)


@cli.group()
def providers() -> None:
    """Browse the provider catalogue."""


@providers.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--kind", type=click.Choice(["oauth2", "api_key", "basic", "aws_sigv4"]),
              help="Only providers of this auth kind.")
def providers_list(as_json: bool, kind: str | None) -> None:
    """List every provider in the catalogue."""
    from alter_mcp.config import load_settings
    from alter_mcp.providers import load_catalog

    def load() -> Any:
        async def inner() -> Any:
            settings = load_settings()
            return settings, load_catalog(settings.catalog)

        return inner()

    settings, catalog = _run(load)
    rows = [p for p in catalog.providers() if kind is None or p.auth_kind.value == kind]
    data = [{"id": p.id, "name": p.name, "auth_kind": p.auth_kind.value,
             "configured": p.id in settings.providers, "api_hosts": list(p.api_hosts)}
            for p in rows]

    def render(console: Console) -> None:
        table = Table("id", "name", "auth", "api hosts", "configured")
        for row in data:
            hosts = row["api_hosts"]
            shown = ", ".join(hosts[:2]) + (f" (+{len(hosts) - 2} more)" if len(hosts) > 2 else "")
            table.add_row(row["id"], row["name"], row["auth_kind"], shown,
                          "yes" if row["configured"] else "")
        console.print(table)

    _emit(data, as_json, render)


@providers.command("show")
@click.argument("provider_id")
def providers_show(provider_id: str) -> None:
    """Show one provider's catalogue entry as JSON."""
    from alter_mcp.config import load_settings
    from alter_mcp.providers import load_catalog

    async def inner() -> Any:
        return load_catalog(load_settings().catalog).get(provider_id)

    provider = _run(lambda: inner())
    click.echo(provider.model_dump_json(indent=2, exclude_none=True))


@cli.group()
def audit() -> None:
    """Read and verify the audit log."""


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def audit_verify(as_json: bool) -> None:
    """Walk the audit hash chain and report the first broken link."""
    from alter_mcp.vault import AlterVault

    async def inner() -> Any:
        async with AlterVault(caller="alter-mcp-cli") as vault:
            return await vault.verify_audit()

    report = _run(lambda: inner())
    data = {"ok": report.ok, "checked": report.checked, "first_bad_seq": report.first_bad_seq,
            "problem": report.problem}

    def render(console: Console) -> None:
        if report.ok:
            console.print(f"[green]ok[/] {report.checked} events, chain intact")
        else:
            console.print(f"[red]BROKEN[/] at event {report.first_bad_seq}: {report.problem}")

    _emit(data, as_json, render)
    if not report.ok:
        raise SystemExit(1)


@cli.command()
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio",
              show_default=True, help="stdio for desktop clients; http for a shared server.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="HTTP port.")
def serve(transport: str, host: str, port: int) -> None:
    """Run the MCP server (stdio: stdout carries only MCP messages, logs go to stderr)."""
    from alter_mcp.config import load_settings
    from alter_mcp.server.run import configure_logging, serve_http, serve_stdio
    from alter_mcp.vault import AlterVault

    async def inner() -> None:
        settings = load_settings()
        if transport == "http" and not settings.public_url:
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise ConfigurationError(
                    f"Serving on {host} needs the URL clients use to reach this server.",
                    setting="ALTER_MCP_PUBLIC_URL",
                    hint="Set ALTER_MCP_PUBLIC_URL, e.g. https://mcp.example.com.")
            shown = f"[{host}]" if ":" in host else host
            settings = load_settings(public_url=f"http://{shown}:{port}")
        configure_logging(settings.log_level)
        async with AlterVault(settings, caller="alter-mcp") as vault:
            if transport == "stdio":
                await serve_stdio(vault)
            else:
                await serve_http(vault, host=host, port=port)

    _run(lambda: inner())


@cli.group()
def keys() -> None:
    """Manage agent API keys: services authenticate over HTTP as agent principals."""


@keys.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def keys_create(name: str, as_json: bool) -> None:
    """Create a key for the service NAME; the key is printed once and never again."""
    from alter_mcp.vault import AlterVault

    async def inner() -> Any:
        async with AlterVault(caller="alter-mcp-cli") as vault:
            return await vault.create_api_key(name)

    record, key = _run(lambda: inner())
    data = {"key_id": record.key_id, "name": record.name, "prefix": record.prefix,
            "key": key.reveal()}

    def render(console: Console) -> None:
        _err.print(f"Created key {record.key_id} for {record.name!r}. Store it now: it is "
                   "shown only once.")
        click.echo(key.reveal())

    _emit(data, as_json, render)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def keys_list(as_json: bool) -> None:
    """List agent keys (id, name, prefix, dates), never the keys themselves."""
    from alter_mcp.vault import AlterVault

    async def inner() -> Any:
        async with AlterVault(caller="alter-mcp-cli") as vault:
            return await vault.list_api_keys()

    records = _run(lambda: inner())
    data = [{"key_id": r.key_id, "name": r.name, "prefix": r.prefix,
             "created_at": r.created_at.isoformat(),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in records]

    def render(console: Console) -> None:
        table = Table("key id", "name", "prefix", "created", "revoked")
        for row in data:
            table.add_row(row["key_id"], row["name"], row["prefix"] + "…", row["created_at"],
                          row["revoked_at"] or "")
        console.print(table)

    _emit(data, as_json, render)


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key KEY_ID at once: its next request is refused."""
    from alter_mcp.vault import AlterVault

    async def inner() -> None:
        async with AlterVault(caller="alter-mcp-cli") as vault:
            await vault.revoke_api_key(key_id)

    _run(lambda: inner())
    _err.print(f"Revoked key {key_id}.")


def main() -> None:
    """Run the command line."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:  # pragma: no cover - interactive only
        sys.exit(130)
    except Exception as exc:
        # A bug must not dump a traceback (locals could hold secrets) unless asked for.
        if os.environ.get("ALTER_MCP_DEBUG"):
            raise
        _err.print(f"[bold red]internal error:[/] {type(exc).__name__}")
        _err.print("[yellow]fix:[/] rerun with ALTER_MCP_DEBUG=1 and report the traceback.")
        sys.exit(1)
