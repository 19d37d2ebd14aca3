"""What the bridge tells clients about itself, and the settings it refuses to start without."""

from __future__ import annotations

from pathlib import Path

import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import AlterError, ConfigurationError, IdentityProviderUnavailableError
from alter_mcp.server import build_server
from alter_mcp.vault import AlterVault
from tests.peers.oidc import pkce_pair
from tests.server.bridge.conftest import CLIENT_REDIRECT, Bridge, RawHost
from tests.server.conftest import http_server

pytestmark = pytest.mark.peers


async def test_bridge_metadata_names_itself_as_the_authorization_server(
    bridge: Bridge, raw_host: RawHost,
) -> None:
    """The resource metadata points at alter-mcp, whose RFC 8414 document offers DCR, CIMD, PKCE."""
    async with http_server(bridge.vault) as url:
        resource = (await raw_host.http.get(url + "/.well-known/oauth-protected-resource/mcp")
                    ).json()
        meta = await raw_host.discover()
    assert resource["resource"] == url + "/mcp"
    assert [s.rstrip("/") for s in resource["authorization_servers"]] == [url]
    assert meta["issuer"].rstrip("/") == url
    assert meta["registration_endpoint"] == url + "/register"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["client_id_metadata_document_supported"] is True
    assert meta["revocation_endpoint"] == url + "/revoke"


@pytest.mark.parametrize("client_id", [
    "http://127.0.0.1:9/client.json",   # not https
    "https://127.0.0.1:9/client.json",  # a loopback address: the server would fetch itself
])
async def test_bridge_refuses_a_cimd_client_id_it_must_not_fetch(
    bridge: Bridge, raw_host: RawHost, client_id: str,
) -> None:
    """A client ID metadata document on plain http or a private address is never accepted."""
    async with http_server(bridge.vault):
        _, challenge = pkce_pair()
        url = await raw_host.authorize_url(client_id, challenge)
        response = await raw_host.http.get(url)
    assert response.status_code == 400
    assert not response.headers.get("location", "").startswith(CLIENT_REDIRECT)


async def _start_failure(tmp_path: Path, master_key: str, **values: str) -> AlterError:
    """Build the HTTP server in bridge mode with ``values``; return the error it stops with."""
    settings = load_settings(
        {"ALTER_MCP_DATA_DIR": str(tmp_path), "ALTER_MCP_MASTER_KEY": master_key},
        public_url="http://127.0.0.1:9", auth_mode="bridge", **values)
    vault = AlterVault(settings, caller="tests")
    await vault.open()
    try:
        with pytest.raises(AlterError) as caught:
            build_server(vault, http=True)
    finally:
        await vault.close()
    return caught.value


@pytest.mark.parametrize("missing", ["bridge_upstream_issuer", "bridge_client_id",
                                     "bridge_client_secret"])
async def test_bridge_without_its_upstream_settings_names_the_missing_one(
    tmp_path: Path, master_key: str, missing: str,
) -> None:
    """Bridge mode without the upstream issuer, client id or secret names that setting."""
    values = {"bridge_upstream_issuer": "http://127.0.0.1:9", "bridge_client_id": "c",
              "bridge_client_secret": "s"}
    del values[missing]
    caught = await _start_failure(tmp_path, master_key, **values)
    assert isinstance(caught, ConfigurationError)
    assert caught.setting == "ALTER_MCP_" + missing.upper()


@pytest.mark.parametrize("host", ["*.example.com", "https://claude.ai", "claude.ai/cb"])
def test_bridge_redirect_hosts_must_be_plain_host_names(tmp_path: Path, host: str) -> None:
    """A wildcard, scheme or path in the redirect hosts is refused, naming the setting."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path),
                       "ALTER_MCP_BRIDGE_REDIRECT_HOSTS": f"claude.ai,{host}"})
    assert caught.value.setting == "ALTER_MCP_BRIDGE_REDIRECT_HOSTS"


async def test_bridge_with_its_identity_provider_unreachable_says_so_at_start(
    tmp_path: Path, master_key: str, closed_port: int,
) -> None:
    """An upstream issuer that does not answer stops the start with a typed error naming it."""
    issuer = f"http://127.0.0.1:{closed_port}"
    caught = await _start_failure(tmp_path, master_key, bridge_upstream_issuer=issuer,
                                  bridge_client_id="c", bridge_client_secret="s")
    assert isinstance(caught, IdentityProviderUnavailableError)
    assert caught.url == issuer + "/.well-known/openid-configuration"
    assert "ALTER_MCP_BRIDGE_UPSTREAM_ISSUER" in (caught.hint or "")
