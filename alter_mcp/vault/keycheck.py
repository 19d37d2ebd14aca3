"""No silent key change: before the vault runs, its keyring must open what the database holds.

The database records a check value per key id that sealed its records (``key_checks``; a
subkey-derived value, never the key). At open the keyring is settled against the store:

* a vault that holds nothing yet (no sealed blob, no key check, no audit checkpoint) may get a
  new key file, and only then;
* otherwise every key id that wraps a stored blob must be in the keyring, every keyring key
  with a recorded check must match it, and at least one recorded key must be present; if not,
  :class:`~alter_mcp.errors.KeyMismatchError` names the key ids and where keys come from;
* once the keyring passes, check values are recorded for its keys that have none.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from alter_mcp.config import Settings
from alter_mcp.crypto import (
    MASTER_KEY_ENV,
    PREVIOUS_KEYS_ENV,
    Keyring,
    key_check_value,
    load_keyring_for,
)
from alter_mcp.errors import KeyMismatchError
from alter_mcp.store import Store

__all__ = ["check_keyring", "existing_keyring", "keyring_loader", "settle_keyring"]

_SHOWN = 5


def keyring_loader(settings: Settings) -> Callable[[], Keyring]:
    """Return a function that re-reads the settings' key source, never creating a key file."""
    return lambda: load_keyring_for(settings, create=False)


def _master_key_set(settings: Settings) -> bool:
    # As load_keyring reads it: a blank value means the key file.
    return bool(settings.master_key and settings.master_key.get_secret_value().strip())


def existing_keyring(settings: Settings) -> Keyring | None:
    """Return the keyring the settings name, or None if their key file does not exist yet."""
    if not _master_key_set(settings) and not settings.resolved_key_file.exists():
        return None
    return load_keyring_for(settings, create=False)


def _names(ids: Collection[str]) -> str:
    ordered = sorted(ids)
    shown = ", ".join(ordered[:_SHOWN])
    return shown + (f" and {len(ordered) - _SHOWN} more" if len(ordered) > _SHOWN else "")


def _sources(settings: Settings) -> str:
    key_file = settings.resolved_key_file
    if _master_key_set(settings):
        active = f"{MASTER_KEY_ENV} (set)"
    else:
        state = "present" if key_file.exists() else "missing"
        active = f"{MASTER_KEY_ENV} (not set), else the key file {key_file} ({state})"
    previous = "set" if settings.previous_keys is not None else "not set"
    return f"keys come from {active}, plus {PREVIOUS_KEYS_ENV} ({previous})"


def _refuse(settings: Settings, why: str, key_ids: Collection[str]) -> KeyMismatchError:
    which = f"the key with id {sorted(key_ids)[0]}" if key_ids else "its key"
    return KeyMismatchError(
        f"{why}; {_sources(settings)}. alter-mcp refuses to start rather than seal new "
        "records under another key.",
        key_ids=sorted(key_ids),
        hint=(f"Restore the key file {settings.resolved_key_file} from a backup, or set "
              f"{MASTER_KEY_ENV} to {which} (older keys go in {PREVIOUS_KEYS_ENV}, "
              "comma-separated). Do not delete the database: what it holds can only be read "
              "with those keys."),
    )


def check_keyring(settings: Settings, keyring: Keyring, *, checks: Mapping[str, str],
                  sealed: Collection[str]) -> None:
    """Raise KeyMismatchError unless ``keyring`` opens every sealed blob and matches the checks."""
    missing = set(sealed) - set(keyring.ids)
    if missing:
        raise _refuse(settings, f"The database holds records sealed with key {_names(missing)}, "
                                "which the keyring lacks", missing)
    wrong = {key.id for key in keyring if key.id in checks
             and checks[key.id] != key_check_value(key)}
    if wrong:
        raise _refuse(settings, f"The keyring's key {_names(wrong)} is not the key that sealed "
                                "this database's records under that id (its check value "
                                "differs)", wrong)
    if checks and not any(kid in checks for kid in keyring.ids):
        raise _refuse(settings, "The keyring holds none of the keys this database's records "
                                f"were sealed with ({_names(checks)})", checks)


async def settle_keyring(store: Store, settings: Settings, keyring: Keyring | None) -> Keyring:
    """Return the keyring checked against the open ``store``; make a key only for an empty vault.

    ``keyring`` is the one given or already loaded; None means the settings name a key file
    that does not exist yet.
    """
    checks = await store.key_checks()
    sealed = await store.sealed_key_ids()
    in_use = bool(checks or sealed or await store.latest_checkpoint() is not None)
    if keyring is None:
        if in_use:
            needed = set(sealed) or set(checks)
            why = (f"The database holds records sealed with key {_names(needed)}" if needed
                   else "The database holds audit checkpoints signed with its key")
            raise _refuse(settings, why + ", but no key is configured", needed)
        keyring = load_keyring_for(settings, create=True)
    check_keyring(settings, keyring, checks=checks, sealed=sealed)
    # Recorded only once the vault holds something: a key made for an empty vault (by doctor,
    # say) must not lock out the key the operator then configures.
    fresh = {key.id: key_check_value(key) for key in keyring if key.id not in checks}
    if in_use and fresh:
        await store.add_key_checks(fresh)
    return keyring
