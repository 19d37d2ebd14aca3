"""Bad input for every command: a clear error naming the fix, the right exit code, no echo."""

from __future__ import annotations

import asyncio
import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import click

from alter_mcp.cli import cli
from alter_mcp.config import load_settings
from alter_mcp.vault import AlterVault
from tests.cli.conftest import run

LEAK = "hunter2-sk-leak-0123456789"


class Case(NamedTuple):
    """One bad invocation and what it must print (on stderr) and exit with."""

    command: str
    args: list[str]
    code: int
    says: str
    env: dict[str, str] = {}
    stdin: str | None = None


CASES = [
    Case("demo", ["demo", "--timeout", "0"], 2, "--timeout"),
    Case("init", ["init", "--config", "{tmp}"], 2, "is a directory"),
    Case("init", ["init", "--config", "{tmp}/bad.toml"], 2, "not valid TOML"),
    Case("doctor", ["doctor"], 1, "ALTER_MCP_CONNECT_PORT",
         env={"ALTER_MCP_CONNECT_PORT": "many"}),
    Case("serve", ["serve", "--transport", "http", "--host", "0.0.0.0"], 2,
         "ALTER_MCP_PUBLIC_URL"),
    Case("serve", ["serve", "--transport", "carrier-pigeon"], 2, "--transport"),
    Case("providers list", ["providers", "list", "--kind", "carrier-pigeon"], 2, "--kind"),
    Case("providers show", ["providers", "show", "no-such"], 2, "alter-mcp providers list"),
    Case("providers configure", ["providers", "configure", "github", "--client-id", "x",
                                 "--client-secret", LEAK], 2, "--client-secret is refused"),
    Case("providers configure", ["providers", "configure", "github", "--client-id", "x"], 2,
         "No terminal"),
    Case("providers configure", ["providers", "configure", "github", "--client-id", "x",
                                 "--client-secret-env", "ALTER_TEST_UNSET_VAR"], 2,
         "ALTER_TEST_UNSET_VAR is not set"),
    Case("providers configure", ["providers", "configure", "openai", "--client-id", "x",
                                 "--public"], 2, "does not use OAuth"),
    Case("providers configure", ["providers", "configure", "github", "--client-id", "x",
                                 "--client-secret-stdin", "--public"], 2, "one of"),
    Case("connect", ["connect", "no-such", "--no-browser"], 2, "Unknown provider"),
    Case("connect", ["connect", "github", "--no-browser"], 2, "no OAuth client"),
    Case("grants list", ["grants", "list", "--cursor", "not-a-cursor!"], 2, "cursor"),
    Case("grants list", ["grants", "list", "--user", "no-hash-here"], 2, "ISSUER#ID"),
    Case("grants revoke", ["grants", "revoke", "no-such-grant"], 2, "No grant"),
    Case("secrets add", ["secrets", "add", "openai", "--label", "x"], 2, "no terminal"),
    Case("secrets add", ["secrets", "add", "openai", "--label", "x", "--field",
                         f"api_key={LEAK}"], 2, "--field is refused"),
    Case("secrets add", ["secrets", "add", "github", "--label", "x"], 2, "uses OAuth"),
    Case("secrets add", ["secrets", "add", "openai", "--label", "x", "--field-env",
                         "nope=HOME"], 2, "has no field 'nope'"),
    Case("secrets add", ["secrets", "add", "openai", "--label", "x", "--field-stdin",
                         "api_key"], 2, "Nothing was read from stdin"),
    Case("secrets list", ["secrets", "list", "--bogus"], 2, "No such option"),
    Case("secrets grant", ["secrets", "grant", "x", "--system", "--group", "i#g"], 2,
         "exactly one"),
    Case("secrets grant", ["secrets", "grant", "no-such", "--system"], 2, "No managed secret"),
    Case("secrets grant", ["secrets", "grant", "x", "--user", "https://idp#"], 2, "ISSUER#ID"),
    Case("keys create", ["keys", "create", "bad\nname"], 2, "name"),
    Case("keys list", ["keys", "list", "extra"], 2, "unexpected extra argument"),
    Case("keys revoke", ["keys", "revoke", "no-such-key"], 2, "No active API key"),
    Case("keys rotate", ["keys", "rotate", "--batch", "0"], 2, "--batch"),
    Case("keys rotate", ["keys", "rotate", "--resume", "--key-only"], 2, "exclude"),
    Case("audit tail", ["audit", "tail", "-n", "-1"], 2, "--lines"),
    Case("audit export", ["audit", "export", "--since", "yesterday-ish"], 2, "not a time"),
    Case("audit export", ["audit", "export", "--format", "xml"], 2, "--format"),
    Case("audit export", ["audit", "export", "--since", "1d", "--until", "2d"], 2,
         "before --until"),
    Case("audit verify", ["audit", "verify"], 2, "ALTER_MCP_MASTER_KEY",
         env={"ALTER_MCP_MASTER_KEY": LEAK}),
    Case("keys list", ["--config", "{tmp}/missing.toml", "keys", "list"], 2, "does not exist"),
    Case("audit prune", ["audit", "prune", "--older-than-days", "0"], 2, "--older-than-days"),
    Case("audit prune", ["audit", "prune"], 2, "ALTER_MCP_AUDIT_RETENTION_DAYS"),
]


def leaf_commands(group: click.Group, prefix: str = "") -> set[str]:
    """Return the full names of every runnable command under ``group``."""
    names = set()
    for name, command in group.commands.items():
        full = f"{prefix} {name}".strip()
        if isinstance(command, click.Group):
            names |= leaf_commands(command, full)
        else:
            names.add(full)
    return names


def test_bad_input_cases_cover_every_command() -> None:
    """The table below names at least one bad invocation of every command the CLI has."""
    assert leaf_commands(cli) - {case.command for case in CASES} == set()


async def test_bad_input_every_command_exits_with_a_fix_and_echoes_no_secret(
        tmp_path: Path) -> None:
    """Each bad invocation exits 2 (or doctor's 1), says what is wrong, and echoes no secret."""
    (tmp_path / "bad.toml").write_text("data_dir = [unclosed\n")
    template = tmp_path / "template"
    # A vault (key file, schema) made once and copied: cases neither pay for it nor contend.
    async with AlterVault(load_settings({"ALTER_MCP_DATA_DIR": str(template)})):
        pass

    def attempt(index: int, case: Case) -> str | None:
        args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
        data = shutil.copytree(template, tmp_path / f"data{index}")
        env = {"ALTER_MCP_DATA_DIR": str(data), **case.env}
        result = run(args, env, stdin=case.stdin)
        text = result.stdout + result.stderr
        problems = []
        if result.returncode != case.code:
            problems.append(f"exit {result.returncode}, expected {case.code}")
        if case.says.lower() not in text.lower():
            problems.append(f"does not say {case.says!r}")
        if LEAK in text or "Traceback" in text:
            problems.append("echoed the secret or a traceback")
        return f"{' '.join(case.args)}: {'; '.join(problems)}\n{text}" if problems else None

    with ThreadPoolExecutor(max_workers=4) as pool:
        done = await asyncio.to_thread(lambda: list(pool.map(attempt, range(len(CASES)), CASES)))
    failures = [f for f in done if f]
    assert failures == []


def test_bad_input_json_mode_reports_the_error_as_json(env: dict[str, str]) -> None:
    """With --json a typed error is one JSON object on stderr with the code, message and fix."""
    result = run(["providers", "show", "no-such", "--json"], env)
    assert result.returncode == 2 and result.stdout == ""
    error = json.loads(result.stderr)
    assert error["error"] == "provider_not_found" and "no-such" in error["message"]
    assert "providers list" in error["hint"]


def test_bad_input_a_damaged_database_file_says_restore_a_backup(
        env: dict[str, str], tmp_path: Path) -> None:
    """A vault.db that is not a database gets a restore-from-backup fix, once, everywhere."""
    assert run(["grants", "list"], env).returncode == 0
    db = tmp_path / "data" / "vault.db"
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)
    db.write_bytes(b"this is not a SQLite database " * 200)
    listed = run(["grants", "list"], env)
    assert listed.returncode == 1
    assert "damaged" in listed.stderr and "restore vault.db from a backup" in listed.stderr
    assert "disk space" not in listed.stderr
    doctor = run(["doctor"], env)
    lines = [line for line in doctor.stdout.splitlines() if "database:" in line]
    assert doctor.returncode == 1 and len(lines) == 1 and lines[0].startswith("FAIL")
    assert "restore vault.db from a backup" in doctor.stdout
