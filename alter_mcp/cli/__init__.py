"""The ``alter-mcp`` command line: set up, run, connect accounts, rotate keys, read the audit.

Output is for people by default (rich) and for scripts with ``--json``. Exit codes: 0 done,
1 failed, 2 bad configuration or input. Each command group lives in its own module here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from alter_mcp.cli._common import err
from alter_mcp.cli.audit import audit
from alter_mcp.cli.demo import demo
from alter_mcp.cli.grants import grants, secrets
from alter_mcp.cli.keys import keys
from alter_mcp.cli.providers import connect, providers
from alter_mcp.cli.setup import doctor, init, serve

__all__ = ["cli", "main"]


class _Ordered(click.Group):
    """List commands in the order a new user needs them, not alphabetically."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Return the command names in the order they were added."""
        return list(self.commands)


@click.group(cls=_Ordered, context_settings={"help_option_names": ["-h", "--help"],
                                             "max_content_width": 100})
@click.version_option(package_name="alter-mcp")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="The TOML configuration file [default: $ALTER_MCP_CONFIG].")
def cli(config_file: Path | None) -> None:
    """Run and administer alter-mcp: an MCP server whose vault holds your API credentials.

    \b
    First steps:
      alter-mcp demo                  see connect → request → list → revoke, offline
      alter-mcp init                  write a config and a key; print the Claude Desktop snippet
      alter-mcp doctor                check everything; each line is ok or says what to fix
      alter-mcp providers configure   store an OAuth client (secret from a prompt, stdin, env)
      alter-mcp connect github        connect an account in the browser

    Settings come from ALTER_MCP_* environment variables over the TOML file named by
    --config or ALTER_MCP_CONFIG. Every command takes --json for scripts.

    \b
    Exit codes: 0 done, 1 failed, 2 bad configuration or input.
    """
    if config_file is not None:
        # Subcommands read settings from the environment: this makes --config one of them.
        os.environ["ALTER_MCP_CONFIG"] = str(config_file)


for command in (demo, init, doctor, serve, providers, connect, grants, secrets, keys, audit):
    cli.add_command(command)


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
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}")
        err.print("[yellow]fix:[/] rerun with ALTER_MCP_DEBUG=1 and report the traceback.")
        sys.exit(1)
