"""``alter-mcp providers``, ``connect`` and ``grants``, against the sandbox provider."""

from __future__ import annotations

import asyncio
import json

import pytest

from alter_mcp.testing import SandboxProvider
from tests.cli.conftest import EXE, arun, as_json, cli_env, run

SECRET = "gh-client-secret-0123456789abcdef"


def test_providers_list_and_show_the_catalogue(env: dict[str, str]) -> None:
    """providers list prints every entry; show prints one with its (absent) client."""
    listed = as_json(run(["providers", "list", "--json"], env))
    ids = {p["id"] for p in listed}
    assert {"github", "google", "slack", "openai", "aws-s3"} <= ids and len(ids) >= 96
    # "configured" means usable here, as in the MCP catalogue: key-based ones need no client.
    usable = {p["id"] for p in as_json(run(["providers", "list", "--configured", "--json"], env))}
    assert usable == {p["id"] for p in listed if p["auth_kind"] != "oauth2"}
    assert "openai" in usable and "github" not in usable
    shown = as_json(run(["providers", "show", "github", "--json"], env))
    assert shown["id"] == "github" and shown["client"] is None
    assert shown["redirect_uri"].endswith("/oauth/callback")
    human = run(["providers", "show", "github"], env)
    assert "providers configure github" in human.stdout
    assert "redirect uri" in human.stdout and shown["redirect_uri"] in human.stdout
    assert shown["oauth"]["console_url"] == "https://github.com/settings/developers"
    assert "https://github.com/settings/developers" in human.stdout


def test_providers_configure_reads_the_secret_from_stdin_or_env_never_prints_it(
        env: dict[str, str]) -> None:
    """configure stores the client with its secret sealed; show and doctor never print it."""
    stored = as_json(run(["providers", "configure", "github", "--client-id", "Iv1.abc",
                          "--client-secret-stdin", "--scope", "repo", "--json"], env,
                         stdin=SECRET + "\n"))
    # The redirect URI shown is the one to register: the loopback callback in stdio mode.
    redirect = stored.pop("redirect_uri")
    assert redirect.startswith("http://127.0.0.1:") and redirect.endswith("/oauth/callback")
    assert stored == {"provider_id": "github", "client_id": "Iv1.abc",
                      "has_client_secret": True, "scopes": ["repo"], "source": "store"}
    by_env = run(["providers", "configure", "gitlab", "--client-id", "gl-1",
                  "--client-secret-env", "GL_SECRET"], {**env, "GL_SECRET": SECRET})
    assert by_env.returncode == 0 and "encrypted" in by_env.stderr
    shown = run(["providers", "show", "github", "--json"], env)
    assert json.loads(shown.stdout)["client"]["has_client_secret"] is True
    doctor = run(["doctor"], env)
    assert "provider github: client Iv1.abc (stored), with secret" in doctor.stdout
    assert "provider gitlab: client gl-1 (stored), with secret" in doctor.stdout
    everything = "".join(r.stdout + r.stderr for r in (by_env, shown, doctor))
    assert SECRET not in everything


@pytest.mark.peers
async def test_providers_connect_then_grants_list_and_revoke(
        sandbox: SandboxProvider, sandbox_env: dict[str, str]) -> None:
    """connect prints the link to stderr, waits for the browser, and prints the new grant."""
    proc = await asyncio.create_subprocess_exec(
        str(EXE), "connect", sandbox.provider_id, "--no-browser", "--json",
        env=cli_env(sandbox_env), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    url = None
    while url is None:
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode().strip()
        assert line, "connect ended without printing a link"
        url = line if line.startswith("http://127.0.0.1:") and "/connect/" in line else None
    page = await sandbox.approve(url)
    assert page.status_code == 200 and "Sandbox connected" in page.text
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0
    result = json.loads(out)
    assert result["account_identifier"] == sandbox.account
    assert result["scopes"] == ["profile", "items:read"]

    listed = as_json(await arun(["grants", "list", "--json"], sandbox_env))
    assert [g["grant_id"] for g in listed["grants"]] == [result["grant_id"]]
    revoked = as_json(await arun(["grants", "revoke", result["grant_id"], "--reason",
                                  "test", "--json"], sandbox_env))
    assert revoked["provider_revocation"] == "revoked" and sandbox.stats["revoked"] >= 1
    gone = as_json(await arun(["grants", "list", "--status", "revoked", "--json"],
                              sandbox_env))
    assert gone["grants"][0]["status"] == "revoked"
    tokens = list(sandbox.auth.tokens)
    assert tokens and not any(t in out.decode() + json.dumps(listed) for t in tokens)


async def test_providers_connect_times_out_with_a_clear_error(
        sandbox: SandboxProvider, sandbox_env: dict[str, str]) -> None:
    """A link nobody opens ends the wait after --timeout with exit 1 and what to do."""
    done = await arun(["connect", sandbox.provider_id, "--no-browser", "--timeout", "1"],
                      sandbox_env)
    assert done.returncode == 1
    assert "No authorization arrived within" in done.stderr and "fix:" in done.stderr
