"""The second OS process of the cross-process refresh test (run with ``sys.executable``).

It opens a vault on the same SQLite file with the same master key (``ALTER_MCP_MASTER_KEY``,
loaded into an explicit ``Keyring``), prints ``READY``, waits for ``GO`` on stdin, then makes
``uses`` concurrent uses of one grant and prints one JSON line: the SHA-256 of each access
token it got (never a token itself) and the names of any errors.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from alter_mcp.config import load_settings
from alter_mcp.crypto import load_keyring_from_env
from alter_mcp.vault import AlterVault


async def main() -> None:
    """Run the uses and report."""
    job: dict[str, Any] = json.loads(os.environ["OAUTH_WORKER_JOB"])
    offset = timedelta(seconds=float(job["clock_offset"]))
    settings = load_settings({"ALTER_MCP_DATA_DIR": job["data_dir"]}, **job["settings"])
    keyring = load_keyring_from_env(os.environ, key_file=None, create=False)

    def clock() -> datetime:
        return datetime.now(UTC) + offset

    async with AlterVault(settings, keyring=keyring, clock=clock, caller="worker") as vault:
        grant = await vault.store.get_grant(job["grant_id"])
        assert grant is not None
        print("READY", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        results = await asyncio.gather(
            *(vault._credential_for(grant) for _ in range(int(job["uses"]))),
            return_exceptions=True)
    report = {
        "tokens": [hashlib.sha256(r["access_token"].reveal().encode()).hexdigest()
                   for r in results if isinstance(r, dict)],
        "errors": [type(r).__name__ for r in results if isinstance(r, BaseException)],
    }
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
