"""Setup checks for ``alter-mcp doctor``: each check is ok, or says what to fix."""

from __future__ import annotations

import os
from dataclasses import dataclass

from alter_mcp.config import Settings, load_settings
from alter_mcp.crypto import load_keyring
from alter_mcp.errors import AlterError
from alter_mcp.providers import load_catalog
from alter_mcp.store import open_store

__all__ = ["Check", "run_checks"]


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def _failed(name: str, exc: AlterError) -> Check:
    return Check(name, False, exc.message, exc.hint)


async def run_checks() -> list[Check]:
    """Run every check in order; later checks are skipped when configuration is invalid."""
    try:
        settings: Settings = load_settings()
    except AlterError as exc:
        return [_failed("configuration", exc)]
    checks = [Check("configuration", True,
                    f"file {settings.config}" if settings.config else "environment only")]
    try:
        keyring = load_keyring(
            master_key=settings.master_key.get_secret_value() if settings.master_key else None,
            previous_keys=[k for k in (settings.previous_keys.get_secret_value()
                                       if settings.previous_keys else "").split(",") if k],
            key_file=settings.resolved_key_file,
        )
        source = "ALTER_MCP_MASTER_KEY" if settings.master_key else str(
            settings.resolved_key_file)
        checks.append(Check("encryption key", True,
                            f"active {keyring.active.id} from {source}, "
                            f"{len(keyring.previous)} previous"))
    except AlterError as exc:
        checks.append(_failed("encryption key", exc))
    store = None
    try:
        store = open_store(settings.resolved_database_url)
        await store.open()
        checks.append(Check("database", True,
                            f"{settings.resolved_database_url.split('://')[0]} schema "
                            f"v{await store.schema_version()}"))
    except AlterError as exc:
        checks.append(_failed("database", exc))
    finally:
        if store is not None:
            await store.close()
    try:
        catalog = load_catalog(settings.catalog)
        checks.append(Check("provider catalogue", True,
                            f"{len(catalog)} providers "
                            f"({len(list(catalog.oauth_providers()))} OAuth)"))
    except AlterError as exc:
        checks.append(_failed("provider catalogue", exc))
        return checks
    for provider_id, config in sorted(settings.providers.items()):
        name = f"provider {provider_id}"
        if provider_id not in catalog:
            checks.append(Check(name, False, "not in the catalogue",
                                "Fix the id, or add it under [catalog." + provider_id + "]."))
        elif config.secret(os.environ) is None and catalog.get(provider_id).is_oauth:
            checks.append(Check(name, True, f"client {config.client_id} (public client)"))
        else:
            checks.append(Check(name, True, f"client {config.client_id}"))
    return checks
