"""Every entry point refuses a vault whose keys are missing or wrong, and makes no key for it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from alter_mcp.config import load_settings
from tests.cli.conftest import run
from tests.test_vault_keycheck import SECRET, key_id, new_key, seed, snapshot


@dataclass(frozen=True)
class Scene:
    """A vault with records, and the environment that no longer holds its key."""

    data: Path
    env: dict[str, str]
    needed: str | None  # the key id the refusal must name (None: a malformed setting)
    before: tuple[list[str], dict[str, int]] = ([], {})

    def untouched(self) -> bool:
        """Return True if no file appeared or went and no table gained or lost a row."""
        return snapshot(self.data) == self.before and not (self.data / "master.key").exists()


async def _make(tmp_path: Path, kind: str) -> Scene:
    made = await _vault(tmp_path, kind)
    return dataclasses.replace(made, before=snapshot(made.data))


async def _vault(tmp_path: Path, kind: str) -> Scene:
    data = tmp_path / "data"
    base = {"ALTER_MCP_DATA_DIR": str(data)}
    right, newer = new_key(), new_key()
    if kind == "key file deleted":
        await seed(load_settings(base))
        needed = json.loads((data / "master.key").read_text())["active"]
        (data / "master.key").unlink()
        return Scene(data, base, needed)
    await seed(load_settings({**base, "ALTER_MCP_MASTER_KEY": right}))
    if kind == "wrong master key":
        return Scene(data, {**base, "ALTER_MCP_MASTER_KEY": new_key()}, key_id(right))
    if kind == "truncated master key":
        return Scene(data, {**base, "ALTER_MCP_MASTER_KEY": right[:-8]}, None)
    assert kind == "wrong previous keys"
    await seed(load_settings({**base, "ALTER_MCP_MASTER_KEY": newer,
                              "ALTER_MCP_PREVIOUS_KEYS": right}))
    return Scene(data, {**base, "ALTER_MCP_MASTER_KEY": newer,
                        "ALTER_MCP_PREVIOUS_KEYS": new_key()}, key_id(right))


KINDS = ["key file deleted", "wrong master key", "truncated master key", "wrong previous keys"]
COMMANDS = [["secrets", "list"], ["grants", "list"], ["keys", "list"], ["audit", "verify"]]


@pytest.fixture(params=KINDS)
async def scene(request: pytest.FixtureRequest, tmp_path: Path) -> Scene:
    """Return a vault with records whose environment has lost its key, in each way."""
    return await _make(tmp_path, str(request.param))


async def test_keycheck_serve_and_commands_refuse_and_make_no_key(scene: Scene) -> None:
    """serve (stdio) and other commands exit 2 naming the key; nothing is created or sealed."""
    served = run(["serve"], scene.env)
    assert served.returncode == 2 and served.stdout == "", served.stderr
    for result in [served, *(run(args, scene.env) for args in COMMANDS)]:
        assert result.returncode == 2, (result.args, result.stderr)
        assert "ALTER_MCP_MASTER_KEY" in result.stderr and "fix:" in result.stderr
        if scene.needed is not None:
            assert scene.needed in result.stderr and "refuses to start" in result.stderr
        assert "Traceback" not in result.stderr and SECRET not in result.stderr
        assert scene.env.get("ALTER_MCP_MASTER_KEY", "@") not in result.stderr
    assert scene.untouched()


async def test_keycheck_doctor_fails_the_key_check_with_its_fix(scene: Scene) -> None:
    """doctor prints a FAIL line for the key with the fix, exits 1, and creates no key."""
    result = run(["doctor"], scene.env)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    line = next(x for x in result.stdout.splitlines() if "encryption key" in x)
    assert line.startswith("FAIL") and "ALTER_MCP_MASTER_KEY" in line
    if scene.needed is not None:
        assert scene.needed in line
    assert "fix:" in result.stdout
    assert scene.untouched()


async def test_keycheck_init_refuses_a_vault_whose_key_file_is_gone(tmp_path: Path) -> None:
    """init on a data directory whose key file was deleted refuses instead of making a key."""
    gone = await _make(tmp_path, "key file deleted")
    result = run(["init", "--config", str(tmp_path / "config.toml")], gone.env)
    assert result.returncode == 2 and gone.needed is not None
    assert gone.needed in result.stderr and "fix:" in result.stderr
    assert gone.untouched()


def test_keycheck_init_never_overwrites_config_or_key(env: dict[str, str],
                                                      tmp_path: Path) -> None:
    """A second init keeps a hand-edited config and the key file byte for byte."""
    config = tmp_path / "config.toml"
    assert run(["init", "--config", str(config)], env).returncode == 0
    config.write_text(config.read_text() + "# edited by hand\n")
    edited = config.read_text()
    key_file = Path(env["ALTER_MCP_DATA_DIR"]) / "master.key"
    key = key_file.read_bytes()
    again = run(["init", "--config", str(config), "--json"], env)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["created_config"] is False
    assert config.read_text() == edited and key_file.read_bytes() == key
    forced = run(["init", "--config", str(config), "--force"], env)
    assert forced.returncode == 2 and config.read_text() == edited


@pytest.mark.peers
async def test_keycheck_postgres_serve_and_doctor_refuse_a_wrong_key(tmp_path: Path,
                                                                     postgres_url: str) -> None:
    """On PostgreSQL, serve exits 2 and doctor fails the key check, naming the sealing key."""
    right = new_key()
    shared = {"ALTER_MCP_DATABASE_URL": postgres_url}
    await seed(load_settings({**shared, "ALTER_MCP_DATA_DIR": str(tmp_path / "first"),
                              "ALTER_MCP_MASTER_KEY": right}))
    for env in ({**shared, "ALTER_MCP_DATA_DIR": str(tmp_path / "wrong"),
                 "ALTER_MCP_MASTER_KEY": new_key()},
                {**shared, "ALTER_MCP_DATA_DIR": str(tmp_path / "none")}):
        served = run(["serve"], env)
        assert served.returncode == 2 and served.stdout == ""
        assert key_id(right) in served.stderr and "fix:" in served.stderr
        doctor = run(["doctor"], env)
        assert doctor.returncode == 1 and "FAIL  encryption key: " in doctor.stdout
        assert key_id(right) in doctor.stdout
    assert not (tmp_path / "none" / "master.key").exists()


def test_keycheck_doctor_makes_no_key_while_the_database_is_unreachable(
        env: dict[str, str], tmp_path: Path) -> None:
    """doctor cannot tell whether an unreachable database is empty, so it makes no key file."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run(["doctor"], {**env, "ALTER_MCP_DATABASE_URL": f"sqlite:///{blocker}/vault.db"})
    assert result.returncode == 1
    failed = [x.split(":")[0] for x in result.stdout.splitlines() if x.startswith("FAIL")]
    assert failed == ["FAIL  encryption key", "FAIL  database"]
    assert not (Path(env["ALTER_MCP_DATA_DIR"]) / "master.key").exists()
