"""Invariants 1 and 3: secrets exist at rest only as ciphertext and never in logs or reprs."""

from __future__ import annotations

import base64
import logging
import secrets
from pathlib import Path
from urllib.parse import quote

import pytest

from alter_mcp.config import Settings
from alter_mcp.errors import AlterError
from alter_mcp.models import SystemPrincipal
from alter_mcp.vault import AlterVault


def forms(value: str) -> list[bytes]:
    """Return the encodings in which a leaked value could show up."""
    raw = value.encode()
    return [raw, quote(value).encode(), base64.b64encode(raw), raw.hex().encode(),
            value.encode("utf-16-le")]


def assert_absent(haystack: bytes, values: list[str], where: str) -> None:
    """Fail if any form of any value occurs in haystack."""
    for value in values:
        for form in forms(value):
            assert form not in haystack, f"secret found in {where}"


async def test_leaks_secrets_never_in_files_logs_or_reprs(
    vault: AlterVault, settings: Settings, master_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Random secret values are absent from the database, its WAL, logs and every repr."""
    caplog.set_level(logging.DEBUG)
    values = [f"sk-{secrets.token_urlsafe(24)}" for _ in range(6)]
    made = []
    for i, value in enumerate(values[:3]):
        secret = await vault.create_managed_secret("openai", {"api_key": value}, label=f"s{i}")
        made.append(secret)
        made.append(await vault.create_managed_secret_grant(secret.secret_id,
                                                            principal=SystemPrincipal()))
    secret = await vault.create_managed_secret(
        "twilio", {"account_sid": "AC" + values[3][3:], "auth_token": values[4]}, label="tw")
    made.append(secret)
    try:  # a failing call whose input carries a secret must not echo it
        await vault.create_managed_secret("openai", {"api_key": values[5], "bogus": "x"},
                                          label="bad")
    except AlterError as exc:
        made.append(exc)
        assert_absent(f"{exc} {exc!r} {exc.to_dict()}".encode(), values, "an error")
    made.append(await vault.list_grants())
    made.append(vault)
    made.append(settings)
    data_dir = settings.data_dir
    files = {p.name: p.read_bytes() for p in Path(data_dir).iterdir() if p.is_file()}
    assert "vault.db" in files
    secret_values = [*values, master_key]
    for name, content in files.items():
        assert_absent(content, secret_values, name)
    text = caplog.text + "".join(repr(x) + str(x) for x in made)
    assert_absent(text.encode(), secret_values, "logs or reprs")
    # the values are really there, encrypted: reading them back works
    stored = await vault._secret_values(made[0].secret_id)  # type: ignore[union-attr]
    assert stored["api_key"].reveal() == values[0]
    assert values[0] not in repr(stored)


async def test_leaks_no_key_no_start(tmp_path: Path) -> None:
    """Without a master key and with an unusable key-file location the vault refuses to start."""
    from alter_mcp.config import load_settings
    from alter_mcp.errors import KeyUnavailableError

    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path / "d"),
                              "ALTER_MCP_KEY_FILE": str(blocker / "master.key")})
    vault = AlterVault(settings)
    with pytest.raises(KeyUnavailableError):
        # The store is looked at first (a key is made only for an empty one); then refused.
        await vault.open()
    assert not (blocker / "master.key").exists()
    with pytest.raises(AlterError):
        await vault.create_managed_secret("openai", {"api_key": "sk-never-sealed"}, label="k")


async def test_leaks_key_file_created_private(tmp_path: Path) -> None:
    """With no master key, the vault creates a 0600 key file and can reopen its data."""
    from alter_mcp.config import load_settings

    settings = load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path / "d")})
    async with AlterVault(settings) as vault:
        secret = await vault.create_managed_secret("openai", {"api_key": "sk-keyfile-1"},
                                                   label="k")
    key_file = settings.resolved_key_file
    assert key_file.stat().st_mode & 0o777 == 0o600
    async with AlterVault(settings) as vault:
        assert (await vault._secret_values(secret.secret_id))["api_key"].reveal() == \
            "sk-keyfile-1"
