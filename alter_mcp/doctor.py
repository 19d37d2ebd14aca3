"""Setup checks for ``alter-mcp doctor``: each check is ok, or says what to fix.

In order: configuration, encryption key, disk space (the data directory and the SQLite file's
directory), database (reachable within a time limit, schema), database integrity (SQLite's
``PRAGMA quick_check``), key rotation, identity provider (when ``ALTER_MCP_IDP_ISSUER`` is set:
its discovery document and JWKS are fetched), provider catalogue, and every configured OAuth
client (from the settings and from the store; a stored client secret must open with the
current keys).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2

from alter_mcp.config import Settings, load_settings
from alter_mcp.crypto import Envelope, Keyring, load_keyring_for
from alter_mcp.errors import AlterError
from alter_mcp.oauth.clients import provider_secret_binding
from alter_mcp.providers import Catalog, load_catalog
from alter_mcp.store import Store, open_store
from alter_mcp.store.sqlite_base import quick_check
from alter_mcp.vault.keycheck import existing_keyring, settle_keyring

__all__ = ["MIN_FREE_BYTES", "Check", "run_checks"]

#: Below this much free space the disk is about to fill: SQLite and the audit log then fail.
MIN_FREE_BYTES = 100 * 2**20
_SAMPLE = 1000
_TIMEOUT = 5.0
_DB_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Check:
    """One line of the doctor's report."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None


def _failed(name: str, exc: AlterError) -> Check:
    return Check(name, False, exc.message, exc.hint)


async def run_checks(
    *, http: httpx2.AsyncClient | None = None,
    statvfs: Callable[[str], os.statvfs_result] = os.statvfs,
) -> list[Check]:
    """Run every check in order; later checks are skipped when configuration is invalid."""
    try:
        settings: Settings = load_settings()
    except AlterError as exc:
        return [_failed("configuration", exc)]
    checks = [Check("configuration", True,
                    f"file {settings.config}" if settings.config else "environment only")]
    checks.append(_disk_space(settings, statvfs))
    store: Store | None = None
    unopened: Check | None = None
    try:
        store = open_store(settings.resolved_database_url)
        with anyio.fail_after(_DB_TIMEOUT):
            await store.open()
    except AlterError as exc:
        store, unopened = None, _failed("database", exc)
    except TimeoutError:
        store, unopened = None, Check(
            "database", False, f"the database did not answer within {_DB_TIMEOUT:g} seconds",
            "Check ALTER_MCP_DATABASE_URL and that the server is up and reachable from this "
            "machine (firewall, host, port).")
    # The store first: a key file may be created only for a database that holds nothing.
    keyring = await _keyring(settings, store, checks)
    if unopened is not None:
        checks.append(unopened)
    elif store is not None:
        try:
            version = await store.schema_version()
            checks.append(Check("database", True,
                                f"{settings.resolved_database_url.split('://')[0]} schema "
                                f"v{version}"))
        except AlterError as exc:
            checks.append(_failed("database", exc))
            await store.close()
            store = None
    integrity = await _integrity(settings.resolved_database_url)
    if integrity is not None:
        checks.append(integrity)
    if store is not None and keyring is not None:
        try:
            checks.append(await _rotation(store, keyring))
        except AlterError as exc:
            checks.append(_failed("key rotation", exc))
    try:
        if settings.idp_issuer:
            async with _HttpClient(http) as client:
                checks.extend(await _identity_provider(settings, client))
        try:
            catalog = load_catalog(settings.catalog)
        except AlterError as exc:
            checks.append(_failed("provider catalogue", exc))
            return checks
        checks.append(Check("provider catalogue", True,
                            f"{len(catalog)} providers "
                            f"({len(list(catalog.oauth_providers()))} OAuth)"))
        checks.extend(_configured(settings, catalog))
        if store is not None:
            checks.extend(await _stored(settings, store, catalog, keyring))
    finally:
        if store is not None:
            await store.close()
    return checks


def _size(count: int) -> str:
    return f"{count / 2**20:,.1f} MiB"


def _existing(path: Path) -> Path:
    """Return ``path`` or its nearest existing parent (a directory not created yet)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _disk_space(settings: Settings, statvfs: Callable[[str], os.statvfs_result]) -> Check:
    """Return the verdict on the emptiest filesystem holding the data dir or the SQLite file."""
    sqlite = _sqlite_path(settings.resolved_database_url)
    places = [settings.data_dir, *([sqlite.parent] if sqlite is not None else [])]
    fix = ("Free space there, or move ALTER_MCP_DATA_DIR (and the database) to a larger "
           "filesystem: when it fills, the database and the audit log cannot be written and "
           "every action fails.")
    emptiest: tuple[Path, int] | None = None
    for place in dict.fromkeys(_existing(p) for p in places):
        try:
            stats = statvfs(str(place))
        except OSError as exc:
            return Check("disk space", False, f"cannot read the free space of {place} "
                                              f"({exc.strerror})", fix)
        free = stats.f_bavail * stats.f_frsize
        if emptiest is None or free < emptiest[1]:
            emptiest = (place, free)
    assert emptiest is not None
    place, free = emptiest
    if free < MIN_FREE_BYTES:
        return Check("disk space", False, f"only {_size(free)} free on the filesystem of "
                                          f"{place} (under {_size(MIN_FREE_BYTES)})", fix)
    return Check("disk space", True, f"{_size(free)} free at {place}")


async def _integrity(url: str) -> Check | None:
    """Return the verdict of SQLite's ``PRAGMA quick_check`` (None for other databases)."""
    path = _sqlite_path(url)
    if path is None or not path.exists():
        return None
    try:
        problems = await anyio.to_thread.run_sync(quick_check, path)
    except AlterError as exc:
        return _failed("database integrity", exc)
    if not problems:
        return Check("database integrity", True, "PRAGMA quick_check: ok")
    return Check("database integrity", False,
                 f"PRAGMA quick_check found {len(problems)} problem(s) in {path}: "
                 f"{' '.join(problems[0].split())[:200]}",
                 "Stop alter-mcp and restore the file from a backup (or salvage it with "
                 "`sqlite3 vault.db .recover | sqlite3 new.db`), then run doctor again; do "
                 "not keep writing to a damaged file.")


async def _keyring(settings: Settings, store: Store | None, checks: list[Check]
                   ) -> Keyring | None:
    try:
        if store is None:
            keyring = load_keyring_for(settings, create=False)
        else:
            keyring = await settle_keyring(store, settings, existing_keyring(settings))
    except AlterError as exc:
        checks.append(_failed("encryption key", exc))
        return None
    source = "ALTER_MCP_MASTER_KEY" if settings.master_key else str(settings.resolved_key_file)
    checks.append(Check("encryption key", True, f"active {keyring.active.id} from {source}, "
                                                f"{len(keyring.previous)} previous"))
    return keyring


async def _rotation(store: Store, keyring: Keyring) -> Check:
    older = await store.blobs_not_under(keyring.active.id, limit=_SAMPLE)
    if not older:
        return Check("key rotation", True, f"every record is under {keyring.active.id}")
    missing = sorted({ref.key_id for ref in older} - set(keyring.ids))
    if missing:
        return Check("key rotation", False,
                     f"records are sealed with {', '.join(missing)}, which the keyring lacks",
                     "Add those keys back (ALTER_MCP_PREVIOUS_KEYS or the key file) "
                     "from a backup; without them the records cannot be read.")
    count = f"{len(older)}+" if len(older) == _SAMPLE else str(len(older))
    return Check("key rotation", True,
                 f"{count} records still under older keys (readable); finish with "
                 "`alter-mcp keys rotate --resume`")


class _HttpClient:
    """The injected HTTP client, or a short-lived one of our own."""

    def __init__(self, http: httpx2.AsyncClient | None) -> None:
        self._given = http
        self._own: httpx2.AsyncClient | None = None

    async def __aenter__(self) -> httpx2.AsyncClient:
        if self._given is not None:
            return self._given
        self._own = httpx2.AsyncClient(timeout=_TIMEOUT, follow_redirects=False)
        return self._own

    async def __aexit__(self, *exc: object) -> None:
        if self._own is not None:
            await self._own.aclose()


async def _fetch_json(client: httpx2.AsyncClient, url: str) -> tuple[Any, str | None]:
    """Return the JSON at ``url``, or None and what went wrong."""
    try:
        response = await client.get(url, headers={"Accept": "application/json"})
    except httpx2.HTTPError as exc:
        return None, f"{url} is unreachable ({type(exc).__name__})"
    if response.status_code != 200:
        return None, f"{url} answered HTTP {response.status_code}"
    try:
        return response.json(), None
    except ValueError:
        return None, f"{url} did not answer JSON"


async def _identity_provider(settings: Settings, client: httpx2.AsyncClient) -> list[Check]:
    issuer = str(settings.idp_issuer)
    fix = ("Check ALTER_MCP_IDP_ISSUER (the issuer exactly as the provider publishes it) "
           "and that this machine can reach it.")
    doc: Any = None
    problem: str | None = None
    for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        doc, problem = await _fetch_json(client, issuer.rstrip("/") + suffix)
        if isinstance(doc, dict):
            break
    if not isinstance(doc, dict):
        return [Check("identity provider", False, problem or "no discovery document", fix)]
    if doc.get("issuer") != issuer:
        return [Check("identity provider", False,
                      f"its discovery document names issuer {doc.get('issuer')!r}, not "
                      f"{issuer!r}", f"Set ALTER_MCP_IDP_ISSUER={doc.get('issuer')} exactly.")]
    checks = [Check("identity provider", True, f"{issuer} (discovery document)")]
    jwks_uri = settings.idp_jwks_uri or doc.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        return [*checks, Check("identity provider keys", False, "no jwks_uri is published",
                               "Set ALTER_MCP_IDP_JWKS_URI to the provider's JWKS URL.")]
    jwks, problem = await _fetch_json(client, jwks_uri)
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or not keys:
        return [*checks, Check("identity provider keys", False,
                               problem or f"{jwks_uri} holds no keys",
                               "Check ALTER_MCP_IDP_JWKS_URI, or the provider's signing keys.")]
    algs = sorted({str(k.get("alg") or k.get("kty")) for k in keys if isinstance(k, dict)})
    return [*checks, Check("identity provider keys", True,
                           f"{len(keys)} signing keys ({', '.join(algs)}) at {jwks_uri}")]


def _configured(settings: Settings, catalog: Catalog) -> list[Check]:
    checks = []
    for provider_id, config in sorted(settings.providers.items()):
        name = f"provider {provider_id}"
        if provider_id not in catalog:
            checks.append(Check(name, False, "not in the catalogue",
                                "Fix the id, or add it under [catalog." + provider_id + "]."))
        elif not catalog.get(provider_id).is_oauth:
            checks.append(Check(name, False, "is not an OAuth provider, so it needs no client",
                                f"Remove [providers.{provider_id}]; store its key with "
                                f"`alter-mcp secrets add {provider_id}`."))
        else:
            kind = " (public client)" if config.secret(os.environ) is None else ""
            redirect = config.redirect_uri or settings.default_redirect_uri
            checks.append(Check(name, True, f"client {config.client_id}{kind}, redirect URI "
                                            f"{redirect}"))
    return checks


async def _stored(settings: Settings, store: Store, catalog: Catalog,
                  keyring: Keyring | None) -> Sequence[Check]:
    checks = []
    envelope = Envelope(keyring) if keyring is not None else None
    for record in await store.list_provider_configs():
        name = f"provider {record.provider_id}"
        where = f"client {record.client_id} (stored)"
        if record.provider_id in settings.providers:
            checks.append(Check(name + " (stored)", True,
                                f"{where}, unused: the configuration's "
                                f"[providers.{record.provider_id}] wins"))
            continue
        if record.provider_id not in catalog:
            checks.append(Check(name, False, f"{where}, but the provider is not in the catalogue",
                                "Add it back under [catalog." + record.provider_id + "]."))
            continue
        if record.secret_blob is not None and envelope is not None:
            try:
                envelope.open(record.secret_blob,
                              aad=provider_secret_binding(record.provider_id))
            except AlterError as exc:
                checks.append(Check(name, False, f"{where}: {exc.message}", exc.hint))
                continue
        secret = "with secret" if record.secret_blob is not None else "public client"
        redirect = record.redirect_uri or settings.default_redirect_uri
        checks.append(Check(name, True, f"{where}, {secret}, redirect URI {redirect}"))
    return checks
