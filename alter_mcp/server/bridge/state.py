"""The bridge's OAuth state in the vault's store, sealed by the vault's envelope.

fastmcp's ``OAuthProxy`` keeps everything it must remember between the steps of a login
(client registrations, transactions, consents, codes, upstream tokens, refresh-token metadata)
in a ``key_value`` store it is given. :class:`SealedStateStore` is that store: each entry is one
``bridge_state`` row whose id is the collection plus a digest of the key (so no code, token or
client id is readable in the table) and whose value is an envelope blob bound to that id. Any
replica on the same database serves any step, a restart loses nothing, and key rotation
re-wraps these rows with the rest (``EncryptedField.BRIDGE_STATE``).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from fastmcp.server.auth import TokenVerificationError
from key_value.aio._utils.managed_entry import ManagedEntry
from key_value.aio._utils.serialization import BasicSerializationAdapter
from key_value.aio.stores.base import BaseStore
from typing_extensions import override

from alter_mcp.crypto import Envelope, key_id_of
from alter_mcp.errors import StoreError
from alter_mcp.store import Store
from alter_mcp.vault.keys import bridge_state_binding

__all__ = ["SealedStateStore", "StateUnavailableError", "state_id"]


class StateUnavailableError(StoreError, TokenVerificationError):
    """The bridge's state could not be read or written: the database is unavailable.

    A ``StoreError`` of our tree, and a fastmcp ``TokenVerificationError`` so fastmcp lets it
    through token checks (it turns other errors into "invalid token") and the bridge answers
    503, never a 401 that makes a client drop a good token.
    """


def state_id(collection: str, key: str) -> str:
    """Return the row id of ``key`` in ``collection``: the key itself is never stored."""
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"{collection}:{digest}"


class SealedStateStore(BaseStore):
    """Keep fastmcp's OAuth state as sealed rows of the vault's ``bridge_state`` table."""

    def __init__(self, *, store: Store, envelope: Envelope) -> None:
        self._store = store
        self._envelope = envelope
        self._format = BasicSerializationAdapter(date_format="isoformat")
        super().__init__(default_collection="alter-mcp-bridge", stable_api=True)

    @override
    async def _get_managed_entry(self, *, collection: str, key: str) -> ManagedEntry | None:
        row_id = state_id(collection, key)
        try:
            blob = await self._store.get_bridge_state(row_id, datetime.now(UTC))
        except StoreError as exc:
            raise StateUnavailableError(exc.message) from exc
        if blob is None:
            return None
        text = self._envelope.open_text(blob, aad=bridge_state_binding(row_id))
        return self._format.load_json(text)

    @override
    async def _put_managed_entry(self, *, collection: str, key: str,
                                 managed_entry: ManagedEntry) -> None:
        row_id = state_id(collection, key)
        text = self._format.dump_json(entry=managed_entry)
        blob = self._envelope.seal_text(text, aad=bridge_state_binding(row_id))
        try:
            await self._store.put_bridge_state(row_id, blob, key_id_of(blob),
                                               managed_entry.expires_at)
        except StoreError as exc:
            raise StateUnavailableError(exc.message) from exc

    @override
    async def _delete_managed_entry(self, *, key: str, collection: str) -> bool:
        try:
            return await self._store.delete_bridge_state(state_id(collection, key))
        except StoreError as exc:
            raise StateUnavailableError(exc.message) from exc
