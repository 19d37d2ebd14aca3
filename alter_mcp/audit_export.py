"""Audit export as JSON Lines or CSV, with the same filters as the store.

Events are written in sequence order, page by page, so an export of any size streams in
constant memory. A JSONL export of the whole log keeps every field and still verifies.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Literal, TextIO

from alter_mcp.audit import AuditLog
from alter_mcp.models import AuditEvent
from alter_mcp.store.base import AuditFilter

__all__ = ["CSV_COLUMNS", "export_events", "iter_events", "parse_csv_row"]

CSV_COLUMNS = tuple(AuditEvent.model_fields)


async def iter_events(log: AuditLog, flt: AuditFilter, *, page: int = 1000
                      ) -> AsyncIterator[AuditEvent]:
    """Yield every event matching ``flt`` in sequence order, a page at a time."""
    current = replace(flt, limit=page)
    while True:
        events = await log.events(current)
        for event in events:
            yield event
        if len(events) < page:
            return
        current = replace(current, after_seq=events[-1].seq)


async def export_events(log: AuditLog, out: TextIO, *, fmt: Literal["jsonl", "csv"],
                        flt: AuditFilter | None = None) -> int:
    """Write matching events to ``out`` as JSONL or CSV; return how many were written."""
    flt = flt or AuditFilter()
    count = 0
    writer = None
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="raise")
        writer.writeheader()
    elif fmt != "jsonl":
        raise ValueError("fmt must be 'jsonl' or 'csv'")
    async for event in iter_events(log, flt):
        data = event.model_dump(mode="json")
        if writer is not None:
            data["detail"] = json.dumps(data["detail"], sort_keys=True, separators=(",", ":"))
            writer.writerow({k: "" if v is None else v for k, v in data.items()})
        else:
            out.write(json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n")
        count += 1
    return count


def parse_csv_row(row: dict[str, str]) -> AuditEvent:
    """Rebuild an event from one exported CSV row (empty cells are nulls)."""
    data: dict[str, object] = {k: (v if v != "" else None) for k, v in row.items()}
    data["detail"] = json.loads(row["detail"]) if row.get("detail") else {}
    data["prev_hash"] = row.get("prev_hash", "")
    return AuditEvent.model_validate(data)
