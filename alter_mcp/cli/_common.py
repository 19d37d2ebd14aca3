"""What every command shares: output (rich or ``--json``), errors and exit codes, secret input.

Exit codes: 0 done, 1 failed, 2 bad configuration or input (click's own usage errors are 2
too). Errors go to stderr as ``error:`` and ``fix:`` lines, or as one JSON object with
``--json``; a traceback is never printed (its locals could hold secrets) unless
``ALTER_MCP_DEBUG`` is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from alter_mcp.errors import (
    AlterError,
    ConfigurationError,
    GrantNotFoundError,
    InvalidInputError,
    KeyUnavailableError,
    ProviderNotConfiguredError,
    ProviderNotFoundError,
    SecretNotFoundError,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from alter_mcp.config import Settings
    from alter_mcp.models import Identity
    from alter_mcp.vault import AlterVault

__all__ = [
    "BAD_INPUT",
    "FAILED",
    "emit",
    "err",
    "fail",
    "id_table",
    "json_option",
    "open_vault",
    "out",
    "parse_owner",
    "read_secret",
    "run",
    "shown_time",
]

T = TypeVar("T")
FAILED = 1
BAD_INPUT = 2
#: Errors caused by what the user typed or configured: exit 2, like click's usage errors.
_USER_ERRORS = (ConfigurationError, InvalidInputError, KeyUnavailableError,
                ProviderNotFoundError, ProviderNotConfiguredError, GrantNotFoundError,
                SecretNotFoundError)

#: Human output; rich resolves sys.stdout / sys.stderr when it writes, not now.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print machine-readable JSON on stdout (errors too, on stderr).")


def _json_mode() -> bool:
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.params.get("as_json"))


def fail(message: str, *, hint: str | None = None, code: int = BAD_INPUT,
         error: str = "invalid_input") -> NoReturn:
    """Print an error and what to do about it, then exit with ``code``."""
    if _json_mode():
        data = {"error": error, "message": message, **({"hint": hint} if hint else {})}
        click.echo(json.dumps(data), err=True)
    else:
        # Messages may quote user input: print it, never read it as rich markup.
        err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
        if hint:
            err.print(f"[yellow]fix:[/] {escape(hint)}", soft_wrap=True)
    raise SystemExit(code)


def exit_code(exc: AlterError) -> int:
    """Return the exit code for a typed error: 2 if the user can fix the input, else 1."""
    return BAD_INPUT if isinstance(exc, _USER_ERRORS) else FAILED


#: The vault's hints speak to an MCP client ("call list_grants"); at a shell, name a command.
_CLI_HINTS: tuple[tuple[type[AlterError], str], ...] = (
    (ProviderNotFoundError, "List the provider ids with `alter-mcp providers list`."),
    (GrantNotFoundError, "List the grant ids with `alter-mcp grants list` (ids are printed "
                         "in full; copy the whole id)."),
    (SecretNotFoundError, "List the managed secrets with `alter-mcp secrets list`."),
)


def cli_hint(exc: AlterError) -> str | None:
    """Return the error's fix in command-line words (no MCP tool names)."""
    for kind, hint in _CLI_HINTS:
        if isinstance(exc, kind):
            return hint
    return exc.hint


def run(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine; turn a typed error into its message, its fix and an exit code."""
    async def main() -> T:
        return await factory()

    try:
        return asyncio.run(main())
    except AlterError as exc:
        fail(exc.message, hint=cli_hint(exc), code=exit_code(exc), error=exc.code)


def id_table(*headers: str) -> Table:
    """Return a table whose ``… id`` columns are never cut: a cut id cannot be pasted back."""
    table = Table()
    for header in headers:
        if header.endswith(" id"):
            table.add_column(header, no_wrap=True, min_width=36, overflow="fold")
        else:
            table.add_column(header)
    return table


def emit(data: Any, as_json: bool, render: Callable[[], None]) -> None:
    """Print ``data`` as JSON for scripts, or call ``render`` for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        render()


@asynccontextmanager
async def open_vault(settings: Settings | None = None, *, identity: Identity | None = None
                     ) -> AsyncIterator[AlterVault]:
    """Open the vault as the CLI (the system principal unless ``identity`` is given)."""
    from alter_mcp.config import load_settings
    from alter_mcp.models import CallerType
    from alter_mcp.vault import AlterVault

    vault = AlterVault(settings or load_settings(), caller="alter-mcp-cli",
                       caller_type=CallerType.CLI, identity=identity)
    async with vault:
        yield vault


def read_secret(what: str, *, option: str, from_stdin: bool = False,
                env: str | None = None, hidden: bool = True) -> str:
    """Return a secret from an environment variable, stdin or a hidden prompt; never argv."""
    if env is not None:
        value = os.environ.get(env, "")
        if not value:
            fail(f"The environment variable {env} is not set or is empty.",
                 hint=f"Export {env} with the {what}, or use {option}-stdin.")
        return value
    if from_stdin:
        value = sys.stdin.read()
        # One trailing line break is the shell's (echo, heredoc), not part of the secret.
        value = value[:-1] if value.endswith("\n") else value
        value = value[:-1] if value.endswith("\r") else value
        if not value:
            fail(f"Nothing was read from stdin for the {what}.",
                 hint=f"Pipe it in, e.g. `printf %s \"$VALUE\" | alter-mcp … {option}-stdin`.")
        return value
    if not sys.stdin.isatty():
        fail(f"No terminal to ask for the {what}.",
             hint=f"Pass {option}-stdin (and pipe it in) or {option}-env NAME.")
    value = str(click.prompt(what[:1].upper() + what[1:], hide_input=hidden, err=True))
    if not value:
        fail(f"The {what} is empty.")
    return value


def parse_owner(value: str, *, option: str) -> tuple[str, str]:
    """Split ``ISSUER#ID`` (a user's or group's issuer and id) into its two parts."""
    issuer, sep, ident = value.rpartition("#")
    if not sep or not issuer.strip() or not ident.strip():
        fail(f"{option} must look like ISSUER#ID, e.g. https://login.example.com#alice.",
             hint="Use the identity provider's issuer URL, then '#', then the sub or group.")
    return issuer.strip(), ident.strip()


def shown_time(value: datetime | None) -> str:
    """Return a time for people: UTC, to the second."""
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else ""
