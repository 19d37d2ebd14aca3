"""The command line through its real entry point, in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run alter-mcp with only the given ALTER_MCP_* environment."""
    exe = shutil.which("alter-mcp", path=str(Path(sys.executable).parent))
    assert exe, "the alter-mcp console script is installed beside the interpreter"
    base = {k: v for k, v in os.environ.items() if not k.startswith("ALTER_MCP_")}
    return subprocess.run([exe, *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=60, check=False)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Return an environment whose data directory is private to the test."""
    return {"ALTER_MCP_DATA_DIR": str(tmp_path / "data")}


def test_cli_doctor_fresh_setup_ok(env: dict[str, str]) -> None:
    """doctor on a fresh data directory creates the key and database and reports ok."""
    out = run(["doctor", "--json"], env)
    assert out.returncode == 0, out.stderr
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert all(c["ok"] for c in checks.values())
    assert {"configuration", "encryption key", "database", "provider catalogue"} <= set(checks)


def test_cli_doctor_bad_setting_named(env: dict[str, str]) -> None:
    """doctor names an invalid setting and its fix, and exits non-zero without a traceback."""
    out = run(["doctor"], {**env, "ALTER_MCP_CONNECT_PORT": "many"})
    assert out.returncode == 1
    assert "ALTER_MCP_CONNECT_PORT" in out.stdout and "fix:" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_cli_providers_list_json(env: dict[str, str]) -> None:
    """providers list --json prints every catalogue entry."""
    out = run(["providers", "list", "--json"], env)
    assert out.returncode == 0, out.stderr
    ids = {p["id"] for p in json.loads(out.stdout)}
    assert {"github", "google", "slack", "openai", "aws-s3"} <= ids and len(ids) >= 96


def test_cli_providers_show_unknown(env: dict[str, str]) -> None:
    """providers show with an unknown id says so and how to find ids."""
    out = run(["providers", "show", "no-such"], env)
    assert out.returncode == 1 and "Unknown provider" in out.stderr
    ok = run(["providers", "show", "github"], env)
    assert ok.returncode == 0 and json.loads(ok.stdout)["id"] == "github"


def test_cli_audit_verify_fresh(env: dict[str, str]) -> None:
    """audit verify on a fresh vault reports an intact, empty chain."""
    out = run(["audit", "verify", "--json"], env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["ok"] is True


def test_cli_bad_master_key_exit_code(env: dict[str, str]) -> None:
    """A malformed master key is a configuration error (exit 2) and is not echoed."""
    out = run(["audit", "verify"], {**env, "ALTER_MCP_MASTER_KEY": "hunter2-not-a-key"})
    assert out.returncode == 2
    assert "ALTER_MCP_MASTER_KEY" in out.stderr and "hunter2" not in out.stderr + out.stdout
