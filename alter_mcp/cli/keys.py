"""Keys: agent API keys (``keys create|list|revoke``) and key rotation (``keys rotate``)."""

from __future__ import annotations

from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from alter_mcp.cli._common import (
    FAILED,
    emit,
    err,
    fail,
    id_table,
    json_option,
    open_vault,
    out,
    run,
)

__all__ = ["keys"]


@click.group(short_help="Agent API keys, and encryption key rotation.")
def keys() -> None:
    """Agent API keys (services authenticate over HTTP as agent principals) and key rotation.

    \b
    alter-mcp keys create billing-agent     # prints the key once
    alter-mcp keys rotate                   # new encryption key; re-wraps every record
    """


@keys.command("create")
@click.argument("name")
@json_option
def keys_create(name: str, as_json: bool) -> None:
    """Create a key for the service NAME; the key is printed once and never again."""
    async def inner() -> Any:
        async with open_vault() as vault:
            return await vault.create_api_key(name)

    record, key = run(inner)
    data = {"key_id": record.key_id, "name": record.name, "prefix": record.prefix,
            "key": key.reveal()}

    def render() -> None:
        err.print(f"Created key {record.key_id} for {record.name!r}. Store it now: it is "
                  "shown only once.", markup=False)
        click.echo(key.reveal())

    emit(data, as_json, render)


@keys.command("list")
@json_option
def keys_list(as_json: bool) -> None:
    """List agent keys (id, name, prefix, dates), never the keys themselves."""
    async def inner() -> Any:
        async with open_vault() as vault:
            return await vault.list_api_keys()

    records = run(inner)
    data = [{"key_id": r.key_id, "name": r.name, "prefix": r.prefix,
             "created_at": r.created_at.isoformat(),
             "revoked_at": r.revoked_at.isoformat() if r.revoked_at else None} for r in records]

    def render() -> None:
        table = id_table("key id", "name", "prefix", "created", "revoked")
        for row in data:
            table.add_row(row["key_id"], row["name"], row["prefix"] + "…", row["created_at"],
                          row["revoked_at"] or "")
        out.print(table)

    emit(data, as_json, render)


@keys.command("revoke")
@click.argument("key_id")
@json_option
def keys_revoke(key_id: str, as_json: bool) -> None:
    """Revoke the key KEY_ID at once: its next request is refused."""
    async def inner() -> None:
        async with open_vault() as vault:
            await vault.revoke_api_key(key_id)

    run(inner)
    emit({"key_id": key_id, "revoked": True}, as_json,
         lambda: err.print(f"Revoked key {key_id}.", markup=False))


_ENV_ROLLOUT = """\
alter-mcp reads its key from ALTER_MCP_MASTER_KEY, so roll the new one out yourself, finishing
each step on every alter-mcp process before the next (a process that does not hold the new key
cannot open what another one sealed with it):
  1. Add the new key (printed below) to ALTER_MCP_PREVIOUS_KEYS everywhere, keeping the current
     ALTER_MCP_MASTER_KEY, and restart every process.
  2. Set ALTER_MCP_MASTER_KEY to the new key and put the old one in ALTER_MCP_PREVIOUS_KEYS
     (plus any older keys, comma-separated), and restart every process again.
  3. Run `alter-mcp keys rotate --resume` once with that environment: it re-wraps every record.
  4. Keep the old key in ALTER_MCP_PREVIOUS_KEYS: audit checkpoints are signed with it."""


@keys.command("rotate")
@click.option("--batch", type=click.IntRange(1, 10_000), default=500, show_default=True,
              help="Records re-wrapped per batch.")
@click.option("--max-batches", type=click.IntRange(min=1),
              help="Stop after this many batches (run again to continue).")
@click.option("--resume", is_flag=True,
              help="Only re-wrap what an earlier rotation left; never make a new key.")
@click.option("--key-only", is_flag=True,
              help="Only add the new key; re-wrap later with --resume (restart servers first).")
@json_option
def keys_rotate(batch: int, max_batches: int | None, resume: bool, key_only: bool,
                as_json: bool) -> None:
    """Rotate the key-encryption key: add a new active key, then re-wrap every record.

    Each record's data key is re-wrapped under the new key in batches (the data itself is not
    re-encrypted); old keys stay in the key file, so nothing becomes unreadable. Interrupted?
    Run it again: while records remain under older keys it finishes the rotation instead of
    starting another. With ALTER_MCP_MASTER_KEY it prints the new key and how to roll it out.
    Running servers that use the key file pick the new key up when they first meet a record
    sealed with it; what they sealed under the old key until then, --resume moves.
    """
    from alter_mcp.config import load_settings
    from alter_mcp.crypto import add_key_to_file, encode_key, generate_key

    if resume and key_only:
        fail("--resume and --key-only exclude each other.")

    async def prepare() -> dict[str, Any]:
        settings = load_settings()
        async with open_vault(settings) as vault:
            left = await vault.pending_rewrap()
            if resume or left != 0:
                return {"new_key_id": None, "left": left}
            new = generate_key()
            if settings.master_key is not None:
                await vault.record_new_key(new.id, source="environment")
                return {"new_key_id": new.id, "env_key": encode_key(new)}
            add_key_to_file(settings.resolved_key_file, new)
        async with open_vault(settings) as vault:
            await vault.record_new_key(new.id, source="key_file")
        return {"new_key_id": new.id, "left": None}

    began = run(prepare)
    if "env_key" in began:
        data = {"mode": "environment", "new_key_id": began["new_key_id"],
                "new_key": began["env_key"], "rewrapped": 0}

        def render_env() -> None:
            err.print(_ENV_ROLLOUT, markup=False)
            err.print(f"New key {began['new_key_id']}, shown once:", markup=False)
            click.echo(began["env_key"])

        emit(data, as_json, render_env)
        return
    if began["new_key_id"] and not as_json:
        err.print(f"Added the new active key {began['new_key_id']} to the key file.",
                  markup=False)
    elif began["left"] and not as_json:
        err.print("Resuming: records wrapped by older keys remain.", markup=False)
    if key_only:
        emit({"new_key_id": began["new_key_id"], "rewrapped": 0}, as_json, lambda: err.print(
            "Restart running servers, then run `alter-mcp keys rotate --resume`.",
            markup=False))
        return
    report = _rewrap(batch, max_batches, show=not as_json)
    data = {**report.to_dict(), "new_key_id": began["new_key_id"]}

    def render() -> None:
        left = "unknown" if report.left is None else str(report.left)
        records = "record" if report.rewrapped == 1 else "records"
        out.print(f"Re-wrapped {report.rewrapped} {records} under {report.key_id} in "
                  f"{report.seconds:.2f} s ({report.batches} batches); {left} left.",
                  markup=False)
        for failure in report.failures[:10]:
            err.print(f"[red]could not re-wrap[/] {failure.location} {failure.record_id}: ",
                      end="", soft_wrap=True)
            err.print(failure.message, markup=False, soft_wrap=True)
        if len(report.failures) > 10:
            err.print(f"… and {len(report.failures) - 10} more (--json lists them all).",
                      markup=False)
        if report.failures:
            err.print("fix: put the missing keys back (key file or ALTER_MCP_PREVIOUS_KEYS) "
                      "and run `alter-mcp keys rotate --resume`.", markup=False, soft_wrap=True)
        elif report.left:
            err.print("Run `alter-mcp keys rotate` again to continue.", markup=False)
        if report.rewrapped:
            err.print("Running servers reload the key file when they meet the new key; run "
                      "`alter-mcp keys rotate --resume` later for what they sealed meanwhile.",
                      markup=False)

    emit(data, as_json, render)
    if report.failures:
        raise SystemExit(FAILED)


def _rewrap(batch: int, max_batches: int | None, *, show: bool) -> Any:
    progress = Progress(TextColumn("re-wrapping"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), TimeRemainingColumn(), console=err,
                        disable=not show, transient=False)
    task = progress.add_task("re-wrap", total=None)

    def advance(done: int, total: int | None) -> None:
        progress.update(task, completed=done, total=total)

    async def inner() -> Any:
        async with open_vault() as vault:
            with progress:
                return await vault.rotate_keys(batch=batch, max_batches=max_batches,
                                               progress=advance)

    return run(inner)
