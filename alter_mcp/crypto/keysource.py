"""Where key-encryption keys come from: the environment, or a 0600 key file beside the store.

``ALTER_MCP_MASTER_KEY`` (base64 of 32 bytes) wins when set; otherwise the key file is read,
or created with a fresh random key when ``create`` allows it (the vault allows it only for a
database that holds nothing: :mod:`alter_mcp.vault.keycheck`). There is never a plaintext
fallback: without a key the vault refuses to start.

Key file (JSON, mode 0600, parent directory 0700 when we create it)::

    {"version": 1, "active": "<kid>", "keys": {"<kid>": "<base64 material>", ...}}
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from alter_mcp.crypto.keyring import KEY_SIZE, KeyEncryptionKey, Keyring
from alter_mcp.errors import ConfigurationError, KeyUnavailableError

if TYPE_CHECKING:
    from alter_mcp.config import Settings

__all__ = [
    "MASTER_KEY_ENV",
    "PREVIOUS_KEYS_ENV",
    "add_key_to_file",
    "encode_key",
    "generate_key",
    "load_keyring",
    "load_keyring_for",
    "load_keyring_from_env",
    "parse_key",
]

MASTER_KEY_ENV = "ALTER_MCP_MASTER_KEY"
PREVIOUS_KEYS_ENV = "ALTER_MCP_PREVIOUS_KEYS"
_KEY_FILE_VERSION = 1
_KID = re.compile(r"kek_[0-9a-f]{16}")
_MAKE_KEY = 'python -c "import base64,os;print(base64.b64encode(os.urandom(32)).decode())"'


def generate_key() -> KeyEncryptionKey:
    """Return a new random key-encryption key."""
    return KeyEncryptionKey(os.urandom(KEY_SIZE))


def encode_key(key: KeyEncryptionKey) -> str:
    """Return the key's material as standard base64 (this reveals the key: handle with care)."""
    return base64.b64encode(key.material).decode("ascii")


def parse_key(text: str, *, setting: str = MASTER_KEY_ENV) -> KeyEncryptionKey:
    """Decode a standard or urlsafe base64 key of exactly 32 bytes; the error never echoes it."""
    compact = "".join(str(text).split()).translate(str.maketrans("-_", "+/"))
    compact += "=" * (-len(compact) % 4)
    try:
        material = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        material = None
    if material is None or len(material) != KEY_SIZE:
        what = "is not valid base64" if material is None else f"decodes to {len(material)} bytes"
        raise ConfigurationError(
            f"{setting} {what}; it must be the base64 encoding of exactly {KEY_SIZE} bytes.",
            setting=setting,
            hint=f"Generate one with: {_MAKE_KEY}",
        )
    return KeyEncryptionKey(material)


def load_keyring(
    *,
    master_key: str | None,
    previous_keys: Sequence[str] = (),
    key_file: Path | None,
    create: bool = True,
) -> Keyring:
    """Build the keyring from the master key if set, else from the key file (made if absent)."""
    if isinstance(previous_keys, str):
        raise TypeError("previous_keys must be a sequence of keys; split the env value on ','.")
    previous = []
    for number, text in enumerate((k for k in previous_keys if k.strip()), start=1):
        try:
            previous.append(parse_key(text, setting=PREVIOUS_KEYS_ENV))
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"Entry {number} of {exc.message}", setting=PREVIOUS_KEYS_ENV, hint=exc.hint
            ) from None
    if master_key is not None and master_key.strip():
        return Keyring(parse_key(master_key, setting=MASTER_KEY_ENV), previous)
    if key_file is None:
        raise KeyUnavailableError(
            "No key-encryption key is configured, so the vault cannot encrypt anything.",
            hint=f"Set {MASTER_KEY_ENV} (generate one with: {_MAKE_KEY}) or configure a key file.",
        )
    key_file = Path(key_file)
    ring = _read_key_file(key_file) if key_file.exists() else None
    if ring is None:
        if not create:
            raise KeyUnavailableError(
                f"The key file {key_file} does not exist.",
                hint=f"Restore it from a backup, or set {MASTER_KEY_ENV}.",
                path=str(key_file),
            )
        ring = _create_key_file(key_file)
    return Keyring(ring.active, [*ring.previous, *previous])


def load_keyring_from_env(
    environ: Mapping[str, str], *, key_file: Path | None, create: bool = True
) -> Keyring:
    """Build the keyring from ALTER_MCP_MASTER_KEY / ALTER_MCP_PREVIOUS_KEYS in `environ`."""
    previous = environ.get(PREVIOUS_KEYS_ENV, "")
    return load_keyring(
        master_key=environ.get(MASTER_KEY_ENV),
        previous_keys=[k for k in previous.split(",") if k.strip()],
        key_file=key_file,
        create=create,
    )


def load_keyring_for(settings: Settings, *, create: bool = True) -> Keyring:
    """Build the keyring the settings name: the master key and previous keys, or the key file."""
    previous = settings.previous_keys.get_secret_value() if settings.previous_keys else ""
    return load_keyring(
        master_key=settings.master_key.get_secret_value() if settings.master_key else None,
        previous_keys=[k.strip() for k in previous.split(",") if k.strip()],
        key_file=settings.resolved_key_file,
        create=create,
    )


def add_key_to_file(key_file: Path, new_key: KeyEncryptionKey) -> Keyring:
    """Make `new_key` the active key of the key file, keeping the old keys; return the ring."""
    key_file = Path(key_file)
    if not key_file.exists():
        raise KeyUnavailableError(
            f"The key file {key_file} does not exist, so no key can be added to it.",
            hint="Start alter-mcp once to create it, or check the path.",
            path=str(key_file),
        )
    ring = _read_key_file(key_file).with_new_active(new_key)
    try:
        _write_atomically(key_file, _encode_key_file(ring), replace=True)
    except OSError as exc:
        raise KeyUnavailableError(
            f"Cannot rewrite the key file {key_file} ({exc.strerror or exc}); it is unchanged.",
            hint=f"Make {key_file.parent} writable and retry.",
            path=str(key_file),
        ) from None
    return ring


def _bad_file(path: Path, why: str) -> KeyUnavailableError:
    return KeyUnavailableError(
        f"The key file {path} is unusable: {why}.",
        hint=(
            "Restore it from a backup. Do not delete it: values sealed with its keys "
            "cannot be decrypted without them."
        ),
        path=str(path),
    )


def _read_key_file(path: Path) -> Keyring:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise _bad_file(path, f"cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        # fstat on the open descriptor: the checked file is the file we read.
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _bad_file(path, "it is not a regular file")
        if os.name == "posix" and info.st_mode & 0o077:
            raise KeyUnavailableError(
                f"The key file {path} is readable or writable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); refusing to use it.",
                hint=f"Run: chmod 600 {path}",
                path=str(path),
            )
        raw = handle.read()
    try:
        doc = json.loads(raw)
    except ValueError:
        # Raised outside this block: the JSON error object holds the file's text.
        doc = None
    if not isinstance(doc, dict):
        raise _bad_file(path, "it is not a JSON object")
    if doc.get("version") != _KEY_FILE_VERSION:
        raise _bad_file(path, f"unsupported version (expected {_KEY_FILE_VERSION})")
    entries, active_id = doc.get("keys"), doc.get("active")
    if not isinstance(entries, dict) or not entries:
        raise _bad_file(path, '"keys" must be a non-empty object')
    keys: dict[str, KeyEncryptionKey] = {}
    for kid, encoded in entries.items():
        # Name an entry only by a well-formed id: a hand-edited file may hold material there.
        name = repr(kid) if _KID.fullmatch(kid) else "(unnamed)"
        try:
            key = parse_key(encoded if isinstance(encoded, str) else "", setting=str(path))
        except ConfigurationError:
            raise _bad_file(path, f"key {name} is not base64 of {KEY_SIZE} bytes") from None
        if key.id != kid:
            raise _bad_file(path, f"key {name} does not match its material")
        keys[kid] = key
    if not isinstance(active_id, str) or active_id not in keys:
        raise _bad_file(path, '"active" does not name one of its keys')
    return Keyring(keys.pop(active_id), list(keys.values()))


def _encode_key_file(ring: Keyring) -> bytes:
    doc = {
        "version": _KEY_FILE_VERSION,
        "active": ring.active.id,
        "keys": {key.id: encode_key(key) for key in ring},
    }
    return (json.dumps(doc, indent=2) + "\n").encode("ascii")


def _create_key_file(path: Path) -> Keyring:
    ring = Keyring(generate_key())
    try:
        _make_private_dir(path.parent)
        created = _write_atomically(path, _encode_key_file(ring), replace=False)
    except OSError as exc:
        raise KeyUnavailableError(
            f"Cannot create the key file {path} ({exc.strerror or exc}).",
            hint=f"Set {MASTER_KEY_ENV} or make {path.parent} writable.",
            path=str(path),
        ) from None
    # Another process created the file first: use its key, never a second one.
    return ring if created else _read_key_file(path)


def _make_private_dir(directory: Path) -> None:
    if directory.is_dir():
        return
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)  # mkdir's mode is filtered by the umask


def _write_atomically(path: Path, data: bytes, *, replace: bool) -> bool:
    """Write `data` to `path` via a 0600 temp file; False if `path` appeared and not `replace`."""
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                # link() refuses to overwrite, unlike rename(): two processes starting at once
                # must not each install a different key.
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise
                if path.exists():
                    return False
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some platforms and filesystems cannot fsync a directory
    finally:
        os.close(fd)
