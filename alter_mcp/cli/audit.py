"""The audit log: ``audit tail``, ``audit export``, ``audit verify``, ``audit prune``."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import anyio
import click

from alter_mcp.cli._common import FAILED, emit, fail, json_option, open_vault, out, run

if TYPE_CHECKING:
    from alter_mcp.audit import AuditLog
    from alter_mcp.models import AuditEvent

__all__ = ["audit"]

_RELATIVE = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _when(value: str | None, option: str) -> datetime | None:
    """Parse an ISO 8601 time or date (UTC unless it says otherwise), or an age like 7d."""
    if value is None:
        return None
    relative = _RELATIVE.match(value.strip())
    if relative:
        amount, unit = int(relative.group(1)), _UNITS[relative.group(2)]
        return datetime.now(UTC) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        fail(f"{option} {value!r} is not a time.",
             hint="Use ISO 8601 (2026-05-01, 2026-05-01T12:00:00Z) or an age such as 90m, "
                  "24h, 7d.")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@click.group(short_help="Tail, export and verify the tamper-evident audit log.")
def audit() -> None:
    """Read, export and verify the tamper-evident audit log.

    \b
    alter-mcp audit tail -n 50 --follow
    alter-mcp audit export --format csv --since 7d --outcome denied -o denied.csv
    alter-mcp audit verify
    """


async def _last_seq(log: AuditLog) -> int:
    """Return the highest sequence number (0 if empty) with O(log n) point reads."""
    from alter_mcp.store import AuditFilter

    async def beyond(seq: int) -> bool:
        return bool(await log.events(AuditFilter(after_seq=seq, limit=1)))

    if not await beyond(0):
        return 0
    low, high = 0, 1
    while await beyond(high):
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if await beyond(middle):
            low = middle
        else:
            high = middle
    return high


def _line(event: AuditEvent, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event.model_dump(mode="json"), sort_keys=True))
        return
    color = {"allowed": "green", "denied": "yellow", "error": "red"}[event.outcome.value]
    what = " ".join(part for part in (
        event.provider_id, event.grant_id, event.method, event.url,
        str(event.status) if event.status is not None else None,
        event.error, event.reason) if part)
    out.print(f"{event.seq:>6} {event.time.strftime('%Y-%m-%d %H:%M:%S')} "
              f"[{color}]{event.outcome.value:<7}[/] {event.action:<18} ", end="")
    out.print(f"{event.principal or '-'} {what}", markup=False, soft_wrap=True)


@audit.command("tail")
@click.option("-n", "--lines", "count", type=click.IntRange(0, 10_000), default=20,
              show_default=True, help="How many of the latest events to show.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events (Ctrl-C stops).")
@click.option("--interval", type=click.FloatRange(0.05, 60), default=1.0, show_default=True,
              help="Seconds between checks for new events with --follow.")
@json_option
def audit_tail(count: int, follow: bool, interval: float, as_json: bool) -> None:
    """Show the latest events, oldest first; --json prints one JSON object per line."""
    from alter_mcp.store import AuditFilter

    async def inner() -> None:
        async with open_vault() as vault:
            log = vault.audit_log
            after = await _last_seq(log)
            if not as_json:
                out.print(f"{'seq':>6} {'time (UTC)':<19} {'outcome':<7} {'action':<18} "
                          "principal  provider grant method url status error reason",
                          style="bold", markup=False)
            if count:
                for event in await log.events(AuditFilter(after_seq=max(0, after - count),
                                                           limit=count)):
                    _line(event, as_json)
                    after = max(after, event.seq)
            while follow:
                await anyio.sleep(interval)
                for event in await log.events(AuditFilter(after_seq=after, limit=1000)):
                    _line(event, as_json)
                    after = event.seq

    try:
        run(inner)
    except KeyboardInterrupt:
        return


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl",
              show_default=True, help="JSON Lines (keeps every field; verifiable) or CSV.")
@click.option("--since", help="Only events at or after this time (ISO 8601, or an age: 7d).")
@click.option("--until", help="Only events before this time (ISO 8601, or an age).")
@click.option("--principal", help="Only this principal, e.g. system or user:ISSUER#SUB.")
@click.option("--grant", "grant_id", help="Only events about this grant.")
@click.option("--provider", "provider_id", help="Only events about this provider.")
@click.option("--outcome", type=click.Choice(["allowed", "denied", "error"]),
              help="Only events with this outcome.")
@click.option("--action", help="Only this action, e.g. request or grant.revoke.")
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False),
              help="Write to this file instead of stdout.")
def audit_export(fmt: str, since: str | None, until: str | None, principal: str | None,
                 grant_id: str | None, provider_id: str | None, outcome: str | None,
                 action: str | None, output: Path | None) -> None:
    """Export matching events in sequence order, streamed page by page."""
    from alter_mcp.audit_export import export_events
    from alter_mcp.store import AuditFilter

    start, end = _when(since, "--since"), _when(until, "--until")
    if start and end and start >= end:
        fail("--since must be before --until.")
    flt = AuditFilter(since=start, until=end, principal=principal, grant_id=grant_id,
                      provider_id=provider_id, outcome=outcome, action=action)

    async def inner() -> int:
        async with open_vault() as vault:
            if output is None:
                return await export_events(vault.audit_log, sys.stdout, fmt=_fmt(fmt), flt=flt)
            handle: TextIO
            try:
                handle = output.open("w", encoding="utf-8", newline="")
            except OSError as exc:
                fail(f"Cannot write {output} ({exc.strerror}).", hint="Choose another path.")
            with handle:
                return await export_events(vault.audit_log, handle, fmt=_fmt(fmt), flt=flt)

    written = run(inner)
    where = f" to {output}" if output else ""
    click.echo(f"Exported {written} events{where}.", err=True)
    for event in run(_unfinished):
        click.echo(f"sent, outcome unknown: {_unfinished_line(event)}", err=True)


async def _unfinished() -> list[AuditEvent]:
    async with open_vault() as vault:
        return await vault.audit_log.unfinished()


def _unfinished_line(event: AuditEvent) -> str:
    """Return one line naming a credential use whose outcome was never recorded."""
    what = " ".join(part for part in (event.action, event.provider_id, event.grant_id,
                                      event.method, event.url) if part)
    return f"intent event {event.seq} at {event.time.isoformat()} {what}"


def _unfinished_view(event: AuditEvent) -> dict[str, Any]:
    return {"seq": event.seq, "time": event.time.isoformat(), "action": event.action,
            "principal": event.principal, "grant_id": event.grant_id,
            "provider_id": event.provider_id, "method": event.method, "url": event.url}


def _fmt(value: str) -> Any:
    return "csv" if value == "csv" else "jsonl"


@audit.command("verify")
@json_option
def audit_verify(as_json: bool) -> None:
    """Walk the audit chain to its signed head; name the first bad event (exit 1 if any).

    Also lists credential uses whose intent was recorded but whose outcome never was (sent,
    outcome unknown: the audit store failed after sending, or the process died).
    """
    async def inner() -> Any:
        async with open_vault() as vault:
            return await vault.verify_audit(), await vault.audit_log.unfinished()

    report, unfinished = run(inner)
    data = {"ok": report.ok, "checked": report.checked, "first_bad_seq": report.first_bad_seq,
            "problem": report.problem, "checkpoint_seq": report.checkpoint_seq,
            "sent_outcome_unknown": [_unfinished_view(e) for e in unfinished]}

    def render() -> None:
        since = (f" after the checkpoint at seq {report.checkpoint_seq}"
                 if report.checkpoint_seq else "")
        if report.ok:
            out.print(f"[green]ok[/] {report.checked} events{since}, chain intact up to its "
                      "signed head")
        else:
            out.print(f"[red]BROKEN[/] at event {report.first_bad_seq}: ", end="")
            out.print(report.problem or "", markup=False)
        for event in unfinished:
            out.print("[yellow]sent, outcome unknown[/] ", end="")
            out.print(_unfinished_line(event), markup=False, soft_wrap=True)

    emit(data, as_json, render)
    if not report.ok:
        raise SystemExit(FAILED)


@audit.command("prune")
@click.option("--older-than-days", type=click.IntRange(1, 36_500),
              help="Delete events older than this (default: ALTER_MCP_AUDIT_RETENTION_DAYS).")
@json_option
def audit_prune(older_than_days: int | None, as_json: bool) -> None:
    """Delete old audit events behind a signed checkpoint; verification still works."""
    async def inner() -> Any:
        async with open_vault() as vault:
            return await vault.prune_audit(
                timedelta(days=older_than_days) if older_than_days else None)

    result = run(inner)
    seq = result.checkpoint.seq if result.checkpoint else None
    data = {"deleted": result.deleted, "checkpoint_seq": seq}

    def render() -> None:
        if result.deleted:
            out.print(f"[green]ok[/] deleted {result.deleted} events; the chain now starts after "
                      f"the signed checkpoint at seq {seq}")
        else:
            out.print("[green]ok[/] nothing old enough to delete")

    emit(data, as_json, render)
