"""Configuration: environment over TOML, and errors that name the setting and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from alter_mcp.config import load_settings
from alter_mcp.errors import ConfigurationError


def test_config_defaults_put_database_in_data_dir(tmp_path: Path) -> None:
    """With only a data dir, the database and key file default to files inside it."""
    s = load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path)})
    assert s.resolved_database_url == f"sqlite:///{tmp_path / 'vault.db'}"
    assert s.resolved_key_file == tmp_path / "master.key"


def test_config_environment_overrides_file(tmp_path: Path) -> None:
    """An environment variable wins over the same key in the TOML file."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('connect_port = 1111\nlog_level = "debug"\n')
    s = load_settings({"ALTER_MCP_CONFIG": str(cfg), "ALTER_MCP_CONNECT_PORT": "2222"})
    assert s.connect_port == 2222 and s.log_level == "DEBUG"


def test_config_provider_secret_from_env(tmp_path: Path) -> None:
    """A provider's client secret may be named by an environment variable."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[providers.github]\nclient_id = "cid"\nclient_secret_env = "GH_SECRET"\n')
    s = load_settings({"ALTER_MCP_CONFIG": str(cfg), "GH_SECRET": "shh-123"})
    secret = s.providers["github"].secret({"GH_SECRET": "shh-123"})
    assert secret is not None and secret.get_secret_value() == "shh-123"
    assert "shh-123" not in repr(s)


@pytest.mark.parametrize(
    ("env", "toml", "setting"),
    [
        ({"ALTER_MCP_CONNECT_PORT": "abc"}, None, "ALTER_MCP_CONNECT_PORT"),
        ({"ALTER_MCP_CONNECT_PORT": "70000"}, None, "ALTER_MCP_CONNECT_PORT"),
        ({"ALTER_MCP_DATABASE_URL": "mysql://x"}, None, "ALTER_MCP_DATABASE_URL"),
        ({"ALTER_MCP_LOG_LEVEL": "loud"}, None, "ALTER_MCP_LOG_LEVEL"),
        ({"ALTER_MCP_PUBLIC_URL": "ftp://x"}, None, "ALTER_MCP_PUBLIC_URL"),
        ({}, "connect_port = [", "ALTER_MCP_CONFIG"),
        ({}, 'colour = "blue"', "colour"),
        ({}, '[providers.github]\nclient_secret = "x"', "providers.github.client_id"),
        ({}, '[providers.github]\nclient_id = "c"\nclient_secret_env = "NOPE_UNSET"',
         "providers.github.client_secret_env"),
        ({}, '[providers.github]\nclient_id = "c"\nclient_secret = "a"\nclient_secret_env = "B"',
         "providers.github"),
    ],
)
def test_config_invalid_setting_named(tmp_path: Path, env: dict[str, str], toml: str | None,
                                      setting: str) -> None:
    """Each invalid setting raises ConfigurationError naming that setting, with a fix."""
    env = dict(env)
    if toml is not None:
        cfg = tmp_path / "c.toml"
        cfg.write_text(toml)
        env["ALTER_MCP_CONFIG"] = str(cfg)
    with pytest.raises(ConfigurationError) as exc:
        load_settings(env)
    assert exc.value.setting.startswith(setting)
    assert exc.value.hint


@pytest.mark.parametrize(
    ("env", "setting", "words"),
    [
        ({"ALTER_MCP_PROVIDER_MAX_CONNECTIONS": "0"}, "ALTER_MCP_PROVIDER_MAX_CONNECTIONS",
         "greater than or equal to 1"),
        ({"ALTER_MCP_PROVIDER_MAX_CONNECTIONS": "150"}, "ALTER_MCP_PROVIDER_MAX_CONNECTIONS",
         "must not exceed ALTER_MCP_MAX_CONNECTIONS (100)"),
        ({"ALTER_MCP_MAX_CONNECTIONS": "10", "ALTER_MCP_PROVIDER_MAX_CONNECTIONS": "11"},
         "ALTER_MCP_PROVIDER_MAX_CONNECTIONS", "must not exceed ALTER_MCP_MAX_CONNECTIONS (10)"),
        ({"ALTER_MCP_PROVIDER_POOL_TIMEOUT": "0"}, "ALTER_MCP_PROVIDER_POOL_TIMEOUT",
         "greater than 0"),
        ({"ALTER_MCP_PROVIDER_POOL_TIMEOUT": "soon"}, "ALTER_MCP_PROVIDER_POOL_TIMEOUT",
         "valid number"),
        ({"ALTER_MCP_MAX_CONNECTIONS": "0"}, "ALTER_MCP_MAX_CONNECTIONS",
         "greater than or equal to 1"),
    ],
)
def test_config_connection_limits_invalid_named(env: dict[str, str], setting: str,
                                                words: str) -> None:
    """A bad connection limit or pool wait is refused naming its setting and what is wrong."""
    with pytest.raises(ConfigurationError) as exc:
        load_settings(env)
    assert exc.value.setting == setting
    assert words in exc.value.message


def test_config_connection_limits_defaults_and_overrides() -> None:
    """Each origin gets 20 of the pool's 100 connections and waits 5 s, unless configured."""
    s = load_settings({})
    assert (s.max_connections, s.provider_max_connections, s.provider_pool_timeout) == (
        100, 20, 5.0)
    s = load_settings({"ALTER_MCP_MAX_CONNECTIONS": "400",
                       "ALTER_MCP_PROVIDER_MAX_CONNECTIONS": "50",
                       "ALTER_MCP_PROVIDER_POOL_TIMEOUT": "1.5"})
    assert (s.max_connections, s.provider_max_connections, s.provider_pool_timeout) == (
        400, 50, 1.5)


def test_config_missing_file_named(tmp_path: Path) -> None:
    """A config path that does not exist is reported with the variable that named it."""
    with pytest.raises(ConfigurationError) as exc:
        load_settings({"ALTER_MCP_CONFIG": str(tmp_path / "absent.toml")})
    assert exc.value.setting == "ALTER_MCP_CONFIG"


def test_config_bad_master_key_not_echoed(tmp_path: Path) -> None:
    """A malformed master key is refused without echoing its value."""
    from alter_mcp.vault import AlterVault

    bad = "not-base64-at-all-but-secret-ish"
    s = load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path), "ALTER_MCP_MASTER_KEY": bad})
    with pytest.raises(ConfigurationError) as exc:
        AlterVault(s)
    assert bad not in str(exc.value) and exc.value.setting == "ALTER_MCP_MASTER_KEY"


def test_config_default_file_is_read_without_alter_mcp_config(tmp_path: Path) -> None:
    """The file `init` writes in the user config dir is read when ALTER_MCP_CONFIG is unset."""
    cfg = tmp_path / "home" / ".config" / "alter-mcp" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text('connect_port = 1111\n[providers.github]\nclient_id = "cid"\n')
    s = load_settings({"HOME": str(tmp_path / "home")})
    assert s.config == cfg and s.connect_port == 1111
    assert s.providers["github"].client_id == "cid"


def test_config_default_file_follows_xdg_config_home(tmp_path: Path) -> None:
    """XDG_CONFIG_HOME, when set, is where the default file is looked for."""
    cfg = tmp_path / "xdg" / "alter-mcp" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("connect_port = 1212\n")
    s = load_settings({"HOME": str(tmp_path / "nowhere"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")})
    assert s.config == cfg and s.connect_port == 1212


def test_config_environment_overrides_the_default_file(tmp_path: Path) -> None:
    """Environment variables still win over the default file, and ALTER_MCP_CONFIG replaces it."""
    home = tmp_path / "home"
    cfg = home / ".config" / "alter-mcp" / "config.toml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("connect_port = 1111\n")
    other = tmp_path / "other.toml"
    other.write_text('log_level = "debug"\n')
    s = load_settings({"HOME": str(home), "ALTER_MCP_CONNECT_PORT": "2222"})
    assert s.connect_port == 2222 and s.config == cfg
    s = load_settings({"HOME": str(home), "ALTER_MCP_CONFIG": str(other)})
    assert s.config == other and s.connect_port == 8765 and s.log_level == "DEBUG"


def test_config_no_default_file_means_environment_only(tmp_path: Path) -> None:
    """Without the default file (or a HOME in an explicit environment), no file is read."""
    assert load_settings({"HOME": str(tmp_path)}).config is None
    assert load_settings({}).config is None


def test_config_scopes_from_env_json_and_toml_table(tmp_path: Path) -> None:
    """Resource scopes come as a comma list; tool scopes as JSON in the environment or a
    ``[tool_scopes]`` table in the file."""
    cfg = tmp_path / "c.toml"
    cfg.write_text('[tool_scopes]\nrevoke_grant = ["vault:admin"]\n')
    from_file = load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path), "ALTER_MCP_CONFIG": str(cfg),
                               "ALTER_MCP_RESOURCE_SCOPES": "mcp:tools, api://x/.default"})
    from_env = load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path),
                              "ALTER_MCP_TOOL_SCOPES": '{"list_grants": ["vault:read"]}'})
    assert from_file.resource_scopes == ("mcp:tools", "api://x/.default")
    assert from_file.tool_scopes == {"revoke_grant": ("vault:admin",)}
    assert from_env.tool_scopes == {"list_grants": ("vault:read",)}
    assert from_env.resource_scopes == () and "openid" in from_env.idp_scopes


@pytest.mark.parametrize(("env", "setting"), [
    ({"ALTER_MCP_TOOL_SCOPES": "list_grants=vault:read"}, "ALTER_MCP_TOOL_SCOPES"),
    ({"ALTER_MCP_TOOL_SCOPES": '{"list_grants": ["a\\" b"]}'}, "ALTER_MCP_TOOL_SCOPES"),
    ({"ALTER_MCP_RESOURCE_SCOPES": 'mcp"tools'}, "ALTER_MCP_RESOURCE_SCOPES"),
    ({"ALTER_MCP_IDP_INTROSPECTION_URL": "http://127.0.0.1:1/introspect"},
     "ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID"),
    ({"ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID": "rs"}, "ALTER_MCP_IDP_INTROSPECTION_CLIENT_SECRET"),
    ({"ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID": "rs",
      "ALTER_MCP_IDP_INTROSPECTION_CLIENT_SECRET": "s",
      "ALTER_MCP_IDP_INTROSPECTION_URL": "http://idp.internal/introspect"},
     "ALTER_MCP_IDP_INTROSPECTION_URL"),
])
def test_config_bad_scope_or_introspection_setting_named(tmp_path: Path, env: dict[str, str],
                                                         setting: str) -> None:
    """Malformed scopes (they go into quoted headers) and half-configured introspection are
    refused, naming the setting to fix."""
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"ALTER_MCP_DATA_DIR": str(tmp_path), **env})
    assert caught.value.setting == setting


def test_config_introspection_over_plain_http_only_on_loopback_or_when_allowed(tmp_path: Path
                                                                              ) -> None:
    """Plain-http introspection is accepted to loopback, or anywhere with
    ALTER_MCP_ALLOW_INSECURE_HTTP."""
    base = {"ALTER_MCP_DATA_DIR": str(tmp_path), "ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID": "rs",
            "ALTER_MCP_IDP_INTROSPECTION_CLIENT_SECRET": "introspection-secret-4711"}
    local = load_settings({**base, "ALTER_MCP_IDP_INTROSPECTION_URL": "http://127.0.0.2:9/i"})
    trusted = load_settings({**base, "ALTER_MCP_ALLOW_INSECURE_HTTP": "true",
                             "ALTER_MCP_IDP_INTROSPECTION_URL": "http://idp.internal/i"})
    assert local.introspects_tokens and trusted.idp_introspection_url == "http://idp.internal/i"
    assert "introspection-secret-4711" not in repr(local) + str(local)
