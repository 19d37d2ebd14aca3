"""Persistence: the ``Store`` protocol and its backends (the only package that speaks SQL)."""

from __future__ import annotations

from alter_mcp.errors import ConfigurationError
from alter_mcp.store.base import (
    AuditFilter,
    Checkpoint,
    CredentialRecord,
    EncryptedField,
    EncryptedRef,
    ProviderConfigRecord,
    PruneResult,
    SessionRecord,
    Store,
)

__all__ = [
    "AuditFilter",
    "Checkpoint",
    "CredentialRecord",
    "EncryptedField",
    "EncryptedRef",
    "ProviderConfigRecord",
    "PruneResult",
    "SessionRecord",
    "Store",
    "open_store",
]


def open_store(url: str) -> Store:
    """Return an unopened store for a ``sqlite:///`` or ``postgresql://`` URL."""
    if url.startswith("sqlite:///"):
        from alter_mcp.store.sqlite import SQLiteStore

        return SQLiteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from alter_mcp.store.postgres import PostgresStore

        return PostgresStore.from_url(url)
    raise ConfigurationError(
        f"Unsupported database URL scheme in {url.split(':', 1)[0]!r}.",
        setting="ALTER_MCP_DATABASE_URL",
        hint="Use sqlite:///PATH or postgresql://USER@HOST/DB.",
    )
