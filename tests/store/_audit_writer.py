"""A replica stand-in for the multi-process audit test: open the store, wait, append N events.

``python -m tests.store._audit_writer URL LABEL N KEY_HEX`` prints ``ready`` once the store is open,
waits for a line on stdin, appends N events labelled LABEL (several at a time), then prints
``done``. Every append signs the chain's head with the key KEY_HEX.
"""

from __future__ import annotations

import asyncio
import sys

from alter_mcp.audit import AuditEntry, AuditLog
from alter_mcp.crypto import KeyEncryptionKey, Keyring
from alter_mcp.models import Outcome
from alter_mcp.store.postgres import PostgresStore


async def main(url: str, label: str, count: int, key: bytes) -> None:
    """Append ``count`` audit events through a store of this process's own."""
    store = PostgresStore(url)
    await store.open()
    try:
        log = AuditLog(store, keyring=Keyring(KeyEncryptionKey(key)))
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await asyncio.gather(*(log.record(AuditEntry(f"{label}.{n}", Outcome.ALLOWED))
                               for n in range(count)))
        print("done", flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4])))
