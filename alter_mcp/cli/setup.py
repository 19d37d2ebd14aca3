"""Getting started and running: ``init``, ``doctor`` and ``serve``."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import click

from alter_mcp.cli._common import FAILED, emit, err, fail, json_option, out, run
from alter_mcp.errors import ConfigurationError

__all__ = ["doctor", "init", "serve"]

_TEMPLATE = """\
# alter-mcp configuration, written by `alter-mcp init`.
# Every key can also be set as an ALTER_MCP_<KEY> environment variable, which wins over
# this file. `alter-mcp doctor` checks it; the README lists every setting.

data_dir = {data_dir}
# database_url = "postgresql://alter@db.example/alter"   # default: SQLite in data_dir
# public_url = "https://mcp.example.com"                  # for `serve --transport http`
# idp_issuer = "https://login.example.com"                # users' identity provider

# One OAuth client per provider (or store one with `alter-mcp providers configure`):
# [providers.github]
# client_id = "Iv1.0123456789"
# client_secret_env = "GITHUB_CLIENT_SECRET"
"""


def _default_config() -> Path:
    from alter_mcp.config import default_config_path

    env = os.environ.get("ALTER_MCP_CONFIG")
    if env:
        return Path(env)
    default = default_config_path()
    assert default is not None  # always a path for the process's own environment
    return default


def _executable() -> str:
    found = shutil.which("alter-mcp")
    return found or str(Path(sys.argv[0]).resolve())


@click.command(short_help="Write a config and a key file; print the Claude snippet.")
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="Where to write the TOML file [default: $ALTER_MCP_CONFIG, else the user "
                   "config directory].")
@click.option("--data-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Where the database and key file live [default: $ALTER_MCP_DATA_DIR, else "
                   "the user data directory].")
@json_option
def init(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Write a config file and a key file if missing; print the Claude Desktop snippet.

    Safe to run again: an existing configuration or key file is never replaced (it is checked).
    A key file is made only while the database holds nothing.
    """
    import platformdirs

    path = (config_path or _default_config()).expanduser().resolve()
    if path.is_dir():
        fail(f"{path} is a directory, not a configuration file.",
             hint="Pass --config with a file name, e.g. --config ~/alter-mcp/config.toml.")
    default_data = os.environ.get("ALTER_MCP_DATA_DIR") or platformdirs.user_data_dir("alter-mcp")
    data = (data_dir or Path(default_data)).expanduser().resolve()
    wrote = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: a file that exists (or appears meanwhile) is kept. 0600: it may later hold
        # a client secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    except OSError as exc:
        fail(f"Cannot write {path} ({exc.strerror}).",
             hint="Choose a writable place with --config.")
    else:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_TEMPLATE.format(data_dir=json.dumps(str(data))))
        wrote = True

    async def check() -> dict[str, Any]:
        from alter_mcp.config import load_settings
        from alter_mcp.store import open_store
        from alter_mcp.vault.keycheck import existing_keyring, settle_keyring

        settings = load_settings(config=path)
        key_file = settings.resolved_key_file
        existed = settings.master_key is not None or key_file.exists()
        store = open_store(settings.resolved_database_url)
        await store.open()
        try:
            # The store first: a key file is made only for a database that holds nothing.
            ring = await settle_keyring(store, settings, existing_keyring(settings))
        finally:
            await store.close()
        source = "ALTER_MCP_MASTER_KEY" if settings.master_key is not None else str(key_file)
        key = {"source": source, "created": not existed, "key_id": ring.active.id}
        return {"data_dir": str(settings.data_dir), "key": key}

    try:
        found = run(check)
    except SystemExit as exc:
        if wrote:
            err.print(f"The configuration file {path} was written; fix it and run init again.")
        raise exc
    snippet = {"mcpServers": {"alter-mcp": {"command": _executable(), "args": ["serve"],
                                            "env": {"ALTER_MCP_CONFIG": str(path)}}}}
    data_out = {"config": str(path), "created_config": wrote, **found,
                "claude_desktop": snippet}

    def render() -> None:
        err.print(f"{'Wrote' if wrote else 'Kept'} {path}")
        key = found["key"]
        err.print(("Created" if key["created"] else "Using") + f" the key {key['source']}"
                  + (" (back it up: without it nothing stored can be read)"
                     if key["created"] else ""))
        err.print(f"Data directory {found['data_dir']}\n")
        err.print("Add this to Claude Desktop's claude_desktop_config.json (mcpServers):")
        click.echo(json.dumps(snippet, indent=2))
        err.print("\nNext: `alter-mcp doctor`, then `alter-mcp providers configure …` or try "
                  "everything offline with `alter-mcp demo`.")

    emit(data_out, as_json, render)


@click.command(short_help="Check the setup; each line is ok or says what to fix.")
@json_option
def doctor(as_json: bool) -> None:
    """Check configuration, key, database, identity provider and providers; say what to fix.

    Exits 1 when any check fails.
    """
    from alter_mcp.doctor import run_checks

    checks = run(run_checks)

    def render() -> None:
        for check in checks:
            mark = "[green]  ok[/]" if check.ok else "[red]FAIL[/]"
            out.print(f"{mark}  {check.name}: ", end="", soft_wrap=True)
            out.print(check.detail, markup=False, soft_wrap=True)
            if not check.ok and check.fix:
                out.print("      fix: ", end="", soft_wrap=True)
                out.print(check.fix, markup=False, soft_wrap=True)

    emit([dataclasses.asdict(c) for c in checks], as_json, render)
    if not all(c.ok for c in checks):
        raise SystemExit(FAILED)


@click.command(short_help="Run the MCP server (stdio, or streamable HTTP).")
@click.option("--transport", type=click.Choice(["stdio", "http"]), default="stdio",
              show_default=True, help="stdio for desktop clients; http for a shared server.")
@click.option("--host", default="127.0.0.1", show_default=True, help="HTTP bind address.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="HTTP port.")
def serve(transport: str, host: str, port: int) -> None:
    """Run the MCP server (stdio: stdout carries only MCP messages, logs go to stderr).

    \b
    Claude Desktop:  {"command": "alter-mcp", "args": ["serve"]}
    Team server:     ALTER_MCP_PUBLIC_URL=https://mcp.example.com \\
                       alter-mcp serve --transport http --host 0.0.0.0
    """
    from alter_mcp.config import Settings, load_settings

    async def settle() -> Settings:
        # Checked before the server (and fastmcp) is even imported: bad input fails fast.
        settings = load_settings()
        if transport == "http" and not settings.public_url:
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise ConfigurationError(
                    f"Serving on {host} needs the URL clients use to reach this server.",
                    setting="ALTER_MCP_PUBLIC_URL",
                    hint="Set ALTER_MCP_PUBLIC_URL, e.g. https://mcp.example.com.")
            shown = f"[{host}]" if ":" in host else host
            settings = load_settings(public_url=f"http://{shown}:{port}")
        return settings

    settings = run(settle)
    from alter_mcp.server.run import configure_logging, serve_http, serve_stdio
    from alter_mcp.vault import AlterVault

    if transport == "stdio" and sys.stdin.isatty():
        # Started by hand in a terminal, a stdio server looks hung: say what it waits for.
        err.print("alter-mcp: waiting for an MCP client on stdio (this is not an interactive "
                  "prompt; Ctrl-C stops). To use it, add it to Claude Desktop or your IDE — "
                  "see the README.", markup=False)

    async def inner() -> None:
        configure_logging(settings.log_level)
        async with AlterVault(settings, caller="alter-mcp") as vault:
            if transport == "stdio":
                await serve_stdio(vault)
            else:
                await serve_http(vault, host=host, port=port)

    run(inner)

