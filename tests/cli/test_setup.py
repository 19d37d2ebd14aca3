"""``alter-mcp init``, ``doctor`` and ``--help``, through the real entry point."""

from __future__ import annotations

import json
import stat
import tomllib
from pathlib import Path

import pytest

from tests.cli.conftest import as_json, run
from tests.peers.oidc import OidcProviderPeer


def test_setup_init_writes_config_and_key_then_keeps_them(env: dict[str, str],
                                                          tmp_path: Path) -> None:
    """init writes a 0600 config and a key file, prints the snippet, and keeps both on rerun."""
    config = tmp_path / "conf" / "config.toml"
    first = run(["init", "--config", str(config), "--data-dir", str(tmp_path / "data")], env)
    assert first.returncode == 0, first.stderr
    snippet = json.loads(first.stdout)["mcpServers"]["alter-mcp"]
    assert snippet["args"] == ["serve"] and snippet["env"] == {"ALTER_MCP_CONFIG": str(config)}
    assert Path(snippet["command"]).name == "alter-mcp"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert tomllib.loads(config.read_text())["data_dir"] == str(tmp_path / "data")
    key_file = tmp_path / "data" / "master.key"
    assert "Created the key" in first.stderr and key_file.exists()
    key_before = key_file.read_text()
    again = as_json(run(["init", "--config", str(config), "--json"], env))
    assert again["created_config"] is False and again["key"]["created"] is False
    assert key_file.read_text() == key_before


def test_setup_doctor_fresh_setup_ok(env: dict[str, str]) -> None:
    """doctor on a fresh data directory creates the key and database and reports ok."""
    out = run(["doctor", "--json"], env)
    assert out.returncode == 0, out.stderr
    checks = {c["name"]: c for c in json.loads(out.stdout)}
    assert all(c["ok"] for c in checks.values())
    assert {"configuration", "encryption key", "database", "key rotation",
            "provider catalogue"} <= set(checks)


@pytest.mark.peers
def test_setup_doctor_fetches_identity_provider_discovery_and_jwks(
        env: dict[str, str], oidc_peer: OidcProviderPeer) -> None:
    """With ALTER_MCP_IDP_ISSUER set, doctor fetches discovery and JWKS; a wrong one says why."""
    good = run(["doctor", "--json"], {**env, "ALTER_MCP_IDP_ISSUER": oidc_peer.issuer})
    checks = {c["name"]: c for c in as_json(good)}
    assert checks["identity provider"]["ok"] and oidc_peer.issuer in \
        checks["identity provider"]["detail"]
    assert checks["identity provider keys"]["ok"]
    assert "signing keys" in checks["identity provider keys"]["detail"]

    wrong = run(["doctor"], {**env, "ALTER_MCP_IDP_ISSUER": oidc_peer.issuer + "/"})
    assert wrong.returncode == 1
    assert "FAIL  identity provider" in wrong.stdout
    assert f"ALTER_MCP_IDP_ISSUER={oidc_peer.issuer}" in wrong.stdout

    down = run(["doctor"], {**env, "ALTER_MCP_IDP_ISSUER": "http://127.0.0.1:9"})
    assert down.returncode == 1 and "unreachable" in down.stdout and "fix:" in down.stdout


def test_setup_doctor_names_a_bad_setting_and_its_fix(env: dict[str, str]) -> None:
    """doctor names an invalid setting and its fix, and exits 1 without a traceback."""
    out = run(["doctor"], {**env, "ALTER_MCP_CONNECT_PORT": "many"})
    assert out.returncode == 1
    assert "ALTER_MCP_CONNECT_PORT" in out.stdout and "fix:" in out.stdout
    assert "Traceback" not in out.stdout + out.stderr


def test_setup_help_teaches_first_steps_and_exit_codes(env: dict[str, str]) -> None:
    """The top-level help lists the first commands to run, --json and the exit codes."""
    out = run(["--help"], env)
    assert out.returncode == 0
    for phrase in ("alter-mcp demo", "alter-mcp init", "--json", "2 bad configuration"):
        assert phrase in out.stdout
    rotate = run(["keys", "rotate", "--help"], env).stdout
    assert "--max-batches" in rotate and "Interrupted?" in rotate


def test_serve_in_a_terminal_says_what_it_waits_for(env: dict[str, str]) -> None:
    """serve with a terminal on stdin prints one stderr hint; stdout stays empty."""
    import os
    import pty
    import select
    import subprocess

    from tests.cli.conftest import EXE, cli_env

    assert EXE
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([EXE, "serve"], stdin=secondary, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cli_env(env))
    os.close(secondary)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        seen = b""
        while b"waiting for an MCP client" not in seen:
            ready, _, _ = select.select([proc.stderr], [], [], 30)
            assert ready, f"no hint on stderr: {seen!r}"
            chunk = os.read(proc.stderr.fileno(), 4096)
            assert chunk, f"serve exited: {seen!r}"
            seen += chunk
        assert b"README" in seen
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        os.close(primary)
    assert out == b""
