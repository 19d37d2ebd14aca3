"""Fixtures shared by the crypto tests: real random keys and a record binding."""

from __future__ import annotations

import pytest

from alter_mcp.crypto import Envelope, KeyEncryptionKey, Keyring, RecordBinding, generate_key


@pytest.fixture
def key_a() -> KeyEncryptionKey:
    return generate_key()


@pytest.fixture
def key_b() -> KeyEncryptionKey:
    return generate_key()


@pytest.fixture
def envelope(key_a: KeyEncryptionKey) -> Envelope:
    return Envelope(Keyring(key_a))


@pytest.fixture
def binding() -> RecordBinding:
    return RecordBinding(table="credentials", record_id="grant_123", field="secret")
