"""Key check benchmark: what checking the keyring against the database adds to opening a vault.

    python bench/keycheck.py [--records 20000] [--rounds 15]

Fills a SQLite vault with sealed records (half credentials, half managed secrets), then, in
interleaved rounds, times opening and closing the store alone (the baseline: what start did
before) and opening it, settling the keyring against it (``settle_keyring``: the sealed key ids,
the key checks, the audit checkpoint) and closing it. Prints the median and spread of each and
their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alter_mcp.config import load_settings
from alter_mcp.crypto import Envelope, RecordBinding, load_keyring_for
from alter_mcp.models import Grant, GrantKind, ManagedSecret, SystemPrincipal
from alter_mcp.store import CredentialRecord
from alter_mcp.store.sqlite import SQLiteStore
from alter_mcp.vault.keycheck import settle_keyring

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def fill(path: Path, envelope: Envelope, records: int) -> None:
    """Store ``records`` sealed blobs: credentials and managed secrets, half each."""
    store = SQLiteStore(path)
    await store.open()
    try:
        for n in range(records // 2):
            when = T0 + timedelta(seconds=n)
            grant = Grant(grant_id=f"g{n:07d}", kind=GrantKind.OAUTH, provider_id="github",
                          owner=SystemPrincipal(), account_identifier=f"a{n}", scopes=("r",),
                          created_at=when, updated_at=when)
            blob = envelope.seal(b"token-%07d" % n,
                                 aad=RecordBinding("credentials", grant.grant_id, "tokens"))
            await store.insert_grant(grant, CredentialRecord(
                grant_id=grant.grant_id, blob=blob, key_id=envelope.keyring.active.id,
                version=1, expires_at=None, updated_at=when))
            secret = ManagedSecret(secret_id=f"s{n:07d}", provider_id="openai", label="l",
                                   field_names=("api_key",), created_at=when)
            sealed = envelope.seal_json({"api_key": f"sk-{n:07d}"},
                                        aad=RecordBinding("managed_secrets", secret.secret_id,
                                                          "fields"))
            await store.insert_secret(secret, sealed, envelope.keyring.active.id)
    finally:
        await store.close()


async def main() -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        key = base64.b64encode(os.urandom(32)).decode()
        settings = load_settings({"ALTER_MCP_DATA_DIR": tmp, "ALTER_MCP_MASTER_KEY": key})
        keyring = load_keyring_for(settings)
        path = Path(tmp) / "vault.db"
        started = time.perf_counter()
        await fill(path, Envelope(keyring), args.records)
        print(f"{args.records} sealed records written in {time.perf_counter() - started:.1f} s")

        async def store_only() -> None:
            store = SQLiteStore(path)
            await store.open()
            await store.close()

        async def with_check() -> None:
            store = SQLiteStore(path)
            await store.open()
            await settle_keyring(store, settings, keyring)
            await store.close()

        timings: dict[str, list[float]] = {"open (baseline)": [], "open + key check": []}
        await with_check()  # warm the page cache; the first run also records the key check
        for _ in range(args.rounds):
            for name, fn in zip(timings, (store_only, with_check), strict=True):
                began = time.perf_counter()
                await fn()
                timings[name].append(time.perf_counter() - began)
    base = statistics.median(timings["open (baseline)"])
    print(f"{'':18} {'median ms':>10} {'min..max ms':>16} {'ratio':>6}")
    for name, samples in timings.items():
        median = statistics.median(samples)
        spread = f"{min(samples) * 1e3:.1f}..{max(samples) * 1e3:.1f}"
        print(f"{name:18} {median * 1e3:10.1f} {spread:>16} {median / base:6.2f}")


if __name__ == "__main__":
    asyncio.run(main())
