"""``alter-mcp audit``: tail (and follow), export with filters, verify."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from alter_mcp.audit import verify_chain
from alter_mcp.audit_export import parse_csv_row
from alter_mcp.config import load_settings
from alter_mcp.errors import InvalidInputError
from alter_mcp.models import AuditEvent
from alter_mcp.vault import AlterVault
from tests.cli.conftest import EXE, as_json, cli_env, run


async def make_events(data: Path) -> None:
    """Write four audit events in-process: two keys created, one revoked, one bad revoke."""
    async with open_vault(data) as vault:
        first, _ = await vault.create_api_key("one")
        await vault.create_api_key("two")
        await vault.revoke_api_key(first.key_id)
        with pytest.raises(InvalidInputError):
            await vault.revoke_api_key("no-such")


@asynccontextmanager
async def open_vault(data: Path) -> AsyncIterator[AlterVault]:
    """Open the vault the CLI would open for this data directory."""
    async with AlterVault(load_settings({"ALTER_MCP_DATA_DIR": str(data)}),
                          caller="tests") as vault:
        yield vault


async def test_audit_tail_shows_the_latest_events_and_follows_new_ones(
        env: dict[str, str], tmp_path: Path) -> None:
    """tail -n 2 prints the last two events in order; --follow prints one written later."""
    await make_events(tmp_path / "data")
    last_two = [json.loads(line) for line in
                as_json_lines(run(["audit", "tail", "-n", "2", "--json"], env))]
    assert [e["action"] for e in last_two] == ["apikey.revoke", "apikey.revoke"]
    assert [e["outcome"] for e in last_two] == ["allowed", "denied"]
    assert last_two[1]["seq"] == last_two[0]["seq"] + 1
    human = run(["audit", "tail", "-n", "1"], env).stdout
    assert "denied" in human and "apikey.revoke" in human

    follower = await asyncio.create_subprocess_exec(
        str(EXE), "audit", "tail", "-n", "1", "--follow", "--json", "--interval", "0.1",
        env=cli_env(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert follower.stdout is not None
        # The newest event, printed once tail knows where to follow from: the readiness signal.
        first = await asyncio.wait_for(follower.stdout.readline(), 20)
        assert json.loads(first)["seq"] == last_two[1]["seq"]
        async with open_vault(tmp_path / "data") as vault:
            await vault.create_api_key("three")
        line = await asyncio.wait_for(follower.stdout.readline(), 20)
    finally:
        follower.terminate()
        await follower.communicate()
    assert json.loads(line)["action"] == "apikey.create"


def as_json_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    """Return the non-empty stdout lines of a successful command."""
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.strip()]


async def test_audit_export_filters_and_formats(env: dict[str, str], tmp_path: Path) -> None:
    """export writes JSONL that still verifies, and CSV filtered by outcome to a file."""
    await make_events(tmp_path / "data")
    lines = as_json_lines(run(["audit", "export", "--since", "1h"], env))
    events = [AuditEvent.model_validate_json(line) for line in lines]
    assert len(events) == 4 and verify_chain(events, prev_hash="", expected_seq=1).ok
    out = tmp_path / "denied.csv"
    done = run(["audit", "export", "--format", "csv", "--outcome", "denied", "-o", str(out)],
               env)
    assert done.returncode == 0 and "Exported 1 events" in done.stderr
    with out.open(newline="") as handle:
        rows = [parse_csv_row(row) for row in csv.DictReader(handle)]
    assert [(r.action, r.outcome.value) for r in rows] == [("apikey.revoke", "denied")]
    future = run(["audit", "export", "--since", "2999-01-01"], env)
    assert future.returncode == 0 and future.stdout == ""


async def test_audit_verify_reports_an_edited_row(env: dict[str, str], tmp_path: Path) -> None:
    """verify says ok on an intact log, and exits 1 naming the row that was edited."""
    await make_events(tmp_path / "data")
    ok = as_json(run(["audit", "verify", "--json"], env))
    assert ok["ok"] and ok["checked"] == 4
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:
        conn.execute("UPDATE audit_events SET data=replace(data, 'apikey.create', "
                     "'apikey.list') WHERE seq=2")
    broken = run(["audit", "verify"], env)
    assert broken.returncode == 1 and "BROKEN at event 2" in broken.stdout


async def test_audit_verify_reports_deleted_newest_event(env: dict[str, str],
                                                        tmp_path: Path) -> None:
    """verify exits 1 naming seq 4 when the newest event is deleted, or seq 3 when a row's
    outcome column alone is edited."""
    await make_events(tmp_path / "data")
    intact = run(["audit", "verify"], env)
    assert intact.returncode == 0
    assert "ok 4 events, chain intact up to its signed head" in " ".join(intact.stdout.split())
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:
        conn.execute("DELETE FROM audit_events WHERE seq = 4")
    broken = run(["audit", "verify"], env)
    assert broken.returncode == 1
    assert "BROKEN at event 4: event 4 is missing: the newest events were deleted" in (
        " ".join(broken.stdout.split()))
    report = run(["audit", "verify", "--json"], env)
    assert report.returncode == 1
    assert (json.loads(report.stdout)["ok"], json.loads(report.stdout)["first_bad_seq"]) == (
        False, 4)
    with sqlite3.connect(tmp_path / "data" / "vault.db") as conn:
        conn.execute("UPDATE audit_events SET outcome = 'denied' WHERE seq = 3")
    result = run(["audit", "verify", "--json"], env)
    edited = json.loads(result.stdout)
    assert result.returncode == 1 and (edited["ok"], edited["first_bad_seq"]) == (False, 3)
    assert "its outcome column disagrees with its hashed data" in edited["problem"]


async def test_audit_verify_and_export_list_sent_outcome_unknown(env: dict[str, str],
                                                                 tmp_path: Path) -> None:
    """A credential use with an intent and no outcome shows as "sent, outcome unknown"."""
    from alter_mcp.audit import AuditEntry
    from alter_mcp.models import Outcome

    async with open_vault(tmp_path / "data") as vault:
        done = await vault.audit_log.intent(AuditEntry(
            "request.intent", Outcome.ALLOWED, method="GET", url="https://api.x.test/a"),
            what="request")
        await vault.audit_log.outcome(AuditEntry("request", Outcome.ALLOWED, status=200),
                                      intent_seq=done, sent=True, status=200, what="request")
        lost = await vault.audit_log.intent(AuditEntry(
            "request.intent", Outcome.ALLOWED, grant_id="g-1", method="POST",
            url="https://api.x.test/pay"), what="request")
    report = as_json(run(["audit", "verify", "--json"], env))
    assert report["ok"] and [e["seq"] for e in report["sent_outcome_unknown"]] == [lost]
    assert report["sent_outcome_unknown"][0]["url"] == "https://api.x.test/pay"
    human = run(["audit", "verify"], env)
    assert human.returncode == 0
    assert f"sent, outcome unknown intent event {lost} " in " ".join(human.stdout.split())
    exported = run(["audit", "export"], env)
    assert exported.returncode == 0 and f"sent, outcome unknown: intent event {lost} " \
        in exported.stderr and "POST https://api.x.test/pay" in exported.stderr


async def test_audit_prune_keeps_the_chain_verifiable(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """prune deletes old events behind a checkpoint; verify then says ok from there."""
    from datetime import UTC, datetime, timedelta

    data = tmp_path / "data"
    past = datetime.now(UTC) - timedelta(days=3)
    async with AlterVault(load_settings({"ALTER_MCP_DATA_DIR": str(data)}), caller="tests",
                          clock=lambda: past) as vault:
        for name in ("a", "b", "c"):
            await vault.create_api_key(name)
    unset = run(["audit", "prune"], env)
    assert unset.returncode == 2 and "ALTER_MCP_AUDIT_RETENTION_DAYS" in unset.stderr
    pruned = as_json(run(["audit", "prune", "--older-than-days", "1", "--json"], env))
    # the three old key creations; the refused prune above was audited just now
    assert pruned["deleted"] == 3 and pruned["checkpoint_seq"] == 3
    again = as_json(run(["audit", "prune", "--json"],
                        {**env, "ALTER_MCP_AUDIT_RETENTION_DAYS": "1"}))
    assert again["deleted"] == 0
    report = as_json(run(["audit", "verify", "--json"], env))
    assert report["ok"] and report["checkpoint_seq"] == 3
