"""Agent API keys: ``amk_<random>`` strings that authenticate services as agent principals.

A key is shown once, when it is created. The store keeps only its SHA-256 and a short prefix
(enough for a person to recognise it in a list); a key of 256 random bits needs no slow hash.
Lookup is by hash, so comparing a presented key never walks the table.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from datetime import datetime

from alter_mcp.errors import AuthenticationError, InvalidInputError
from alter_mcp.models import AgentPrincipal, ApiKeyRecord, CallerType, Identity
from alter_mcp.redaction import Secret

__all__ = [
    "KEY_PREFIX",
    "agent_identity",
    "check_shape",
    "hash_key",
    "looks_like_key",
    "new_key",
    "validate_name",
]

#: Every agent key starts with this, so a person, a log scanner and the server recognise it.
KEY_PREFIX = "amk_"
_SHOWN_PREFIX = len(KEY_PREFIX) + 6
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,63}$")
_KEY = re.compile(r"^amk_[A-Za-z0-9_-]{43}$")


def hash_key(key: str) -> str:
    """Return the stored hash of a key."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_key(value: str) -> bool:
    """Return True when ``value`` has the shape of an agent key (not that it is valid)."""
    return value.startswith(KEY_PREFIX)


def validate_name(name: object) -> str:
    """Return a key's name, or say what a valid one looks like."""
    if not isinstance(name, str) or not _NAME.match(name.strip()):
        raise InvalidInputError(
            "The key name must be 1-64 letters, digits, spaces or . _ @ -, starting with a "
            "letter or digit.",
            field="name",
            hint="Name it after the service that will use it, e.g. 'billing-agent'.",
        )
    return name.strip()


def new_key(name: str, *, now: datetime) -> tuple[ApiKeyRecord, Secret]:
    """Return a fresh key's record (hash and prefix only) and the key itself, masked."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKeyRecord(
        key_id=str(uuid.uuid4()),
        name=validate_name(name),
        prefix=key[:_SHOWN_PREFIX],
        key_hash=hash_key(key),
        created_at=now,
    )
    return record, Secret(key)


def check_shape(key: object) -> str:
    """Return ``key`` if it is shaped like an agent key, else raise ``AuthenticationError``."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise AuthenticationError("The agent API key is not valid.",
                                  hint="Use the amk_… key exactly as it was shown once at "
                                       "creation, or create a new one (alter-mcp keys create).",
                                  reason="invalid_api_key")
    return key


def agent_identity(record: ApiKeyRecord) -> Identity:
    """Return the identity of the service holding this key (the key's name is the caller)."""
    return Identity(
        principal=AgentPrincipal(key_id=record.key_id, name=record.name, label=record.name),
        caller=record.name,
        caller_type=CallerType.AGENT,
    )
