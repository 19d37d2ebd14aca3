"""Configuration: environment variables (``ALTER_MCP_*``) over an optional TOML file.

The TOML file is named by ``ALTER_MCP_CONFIG``; without it, the file ``alter-mcp init`` writes
in the platform's user config directory (:func:`default_config_path`) is read if it exists.
Its top-level keys are the settings below in
lowercase; ``[providers.<id>]`` tables hold each provider's OAuth client, and ``[catalog.<id>]``
tables add providers to the catalogue or override fields of shipped ones::

    database_url = "sqlite:////var/lib/alter-mcp/vault.db"

    [providers.github]
    client_id = "Iv1.0123"
    client_secret_env = "GITHUB_CLIENT_SECRET"   # or client_secret = "…"
    scopes = ["read:user", "repo"]

Invalid configuration raises :class:`ConfigurationError` naming the setting and the fix.
"""

from __future__ import annotations

import ipaddress
import json
import os
import sys
import tomllib
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alter_mcp.errors import ConfigurationError

__all__ = [
    "AuthMode",
    "ProviderConfig",
    "Settings",
    "cleartext_allowed",
    "default_config_path",
    "load_settings",
]

ENV_PREFIX = "ALTER_MCP_"


class ProviderConfig(BaseModel):
    """This deployment's OAuth client for one provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_env: str | None = None
    scopes: tuple[str, ...] | None = None
    redirect_uri: str | None = None

    @model_validator(mode="after")
    def _one_secret_source(self) -> ProviderConfig:
        if self.client_secret is not None and self.client_secret_env is not None:
            raise ValueError("give client_secret or client_secret_env, not both")
        return self

    def secret(self, environ: Mapping[str, str]) -> SecretStr | None:
        """Return the client secret, reading the named environment variable if configured."""
        if self.client_secret_env is None:
            return self.client_secret
        value = environ.get(self.client_secret_env)
        return SecretStr(value) if value else None


class AuthMode(StrEnum):
    """How HTTP callers are authenticated."""

    #: Bearer JWTs from the identity provider, verified per request against its keys.
    JWT = "jwt"
    #: alter-mcp is the authorization server of its own ``/mcp``, delegating login upstream.
    BRIDGE = "bridge"


class Settings(BaseSettings):
    """Every setting of alter-mcp, read from ``ALTER_MCP_*`` variables and the config file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False
    )

    config: Path | None = None
    data_dir: Path = Field(default_factory=lambda: Path(platformdirs.user_data_dir("alter-mcp")))
    # repr=False: a PostgreSQL URL may carry a password.
    database_url: str | None = Field(default=None, repr=False)
    master_key: SecretStr | None = None
    previous_keys: SecretStr | None = None
    key_file: Path | None = None
    public_url: str | None = None
    idp_issuer: str | None = None
    idp_jwks_uri: str | None = None
    idp_audience: str | None = None
    idp_groups_claim: str = "groups"
    #: A short name for the identity provider, accepted as ``GroupPrincipal(idp_id=…)``.
    idp_id: str | None = None
    # Server identity (issue 5): JWT checks, the browser login's client, the HTTP front door.
    idp_algorithms: tuple[str, ...] = (
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
    )
    idp_leeway: float = Field(default=30.0, ge=0, le=300)
    idp_client_id: str | None = None
    # The browser login's OpenID scopes; what MCP clients ask for is resource_scopes.
    idp_scopes: tuple[str, ...] = ("openid", "profile", "email", "offline_access")
    # Opaque access tokens (issue 17): verified by RFC 7662 introspection when a client id is set.
    idp_introspection_url: str | None = None
    idp_introspection_client_id: str | None = None
    idp_introspection_client_secret: SecretStr | None = None
    idp_introspection_cache_ttl: float = Field(default=60.0, ge=0, le=3600)
    # The scopes of this resource (RFC 9728 scopes_supported, the 401's scope=), and the
    # scopes each tool requires on top ({"list_grants": ["vault:read"], ...}).
    resource_scopes: tuple[str, ...] = ()
    tool_scopes: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    mcp_path: str = "/mcp"
    # The authorization bridge (issue 17): MCP hosts register with alter-mcp (DCR or CIMD) and
    # log in at the upstream identity provider, where alter-mcp is one confidential client.
    auth_mode: AuthMode = AuthMode.JWT
    bridge_upstream_issuer: str | None = None
    bridge_client_id: str | None = None
    bridge_client_secret: SecretStr | None = None
    bridge_upstream_scopes: tuple[str, ...] = ("openid", "email", "profile")
    # Host names of hosted MCP clients whose https redirect URIs are accepted (loopback always).
    bridge_redirect_hosts: tuple[str, ...] = ()
    bridge_access_token_ttl: int = Field(default=900, ge=60, le=86400)
    bridge_refresh_token_ttl: int = Field(default=30 * 86400, ge=300, le=365 * 86400)
    # Signs the bridge's access tokens; every replica needs the same one.
    bridge_signing_key: SecretStr | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    request_state_key: SecretStr | None = None
    # Keep no MCP session in memory (2025-11-25 era), so any replica answers any request;
    # the 2026-07-28 era is sessionless anyway.
    stateless_http: bool = False
    tool_body_max_chars: int = Field(default=100_000, ge=1000, le=10_000_000)
    user_token: SecretStr | None = None
    allow_insecure_http: bool = False
    connect_port: int = Field(default=8765, ge=0, le=65535)
    connect_session_ttl: float = Field(default=600.0, gt=0, le=86400)
    refresh_leeway: float = Field(default=60.0, ge=0, le=3600)
    refresh_wait: float = Field(default=10.0, gt=0, le=300)
    request_timeout: float = Field(default=30.0, gt=0, le=600)
    response_max_bytes: int = Field(default=1_000_000, ge=1024, le=100_000_000)
    # Outbound connections: the pool's global cap, and each origin's share of it, so that a
    # slow provider holds at most its share and the others keep connecting (issue 12).
    max_connections: int = Field(default=100, ge=1, le=10_000)
    provider_max_connections: int = Field(default=20, ge=1, le=10_000)
    provider_pool_timeout: float = Field(default=5.0, gt=0, le=600)
    log_level: str = "INFO"
    policy_file: Path | None = None
    # Days of audit events kept; older ones are pruned behind a signed checkpoint. None: all.
    audit_retention_days: int | None = Field(default=None, ge=1, le=36_500)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    catalog: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Rank explicit values first, then ``ALTER_MCP_*`` environment variables."""
        return (init_settings, env_settings)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                "must start with sqlite:/// (a file path follows) or postgresql://"
            )
        return value

    @field_validator("public_url", "idp_issuer", "idp_jwks_uri", "idp_introspection_url",
                     "bridge_upstream_issuer")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must be an absolute http(s) URL")
        return value

    @field_validator("public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        # The issuer keeps its exact form (it is compared with `iss`); a base URL does not.
        return value.rstrip("/") if value else value

    @field_validator("idp_algorithms", "idp_scopes", "resource_scopes", "allowed_hosts",
                     "allowed_origins", "bridge_upstream_scopes", "bridge_redirect_hosts",
                     mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        # Environment variables carry lists as "a,b,c".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("tool_scopes", mode="before")
    @classmethod
    def _tool_scopes_json(cls, value: Any) -> Any:
        # The environment variable carries the table as JSON: {"list_grants": ["vault:read"]}.
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise ValueError('must be a JSON object such as {"list_grants": '
                                 '["vault:read"]}') from None
        return value

    @field_validator("resource_scopes")
    @classmethod
    def _resource_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _scope_tokens(value)

    @field_validator("tool_scopes")
    @classmethod
    def _tool_scopes(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        return {tool: _scope_tokens(scopes) for tool, scopes in value.items()}

    @field_validator("bridge_redirect_hosts")
    @classmethod
    def _redirect_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        # Host names only: a pattern with a wildcard or a path would widen what is accepted.
        bad = [h for h in value if not h or any(c in h for c in "*/:?#@ ")]
        if bad:
            raise ValueError(f"must be host names such as claude.ai, not {bad}")
        return tuple(h.lower() for h in value)

    @field_validator("idp_algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                   "ES512", "EdDSA"}
        bad = [alg for alg in value if alg not in allowed]
        if bad or not value:
            raise ValueError(
                f"unsupported JWT algorithm(s) {bad}: use asymmetric ones only "
                f"({', '.join(sorted(allowed))}); never none or HS*"
            )
        return value

    @field_validator("mcp_path")
    @classmethod
    def _mcp_path(cls, value: str) -> str:
        if not value.startswith("/") or value == "/" or any(c in value for c in "?# "):
            raise ValueError("must be a path such as /mcp")
        return value.rstrip("/")

    @field_validator("provider_max_connections")
    @classmethod
    def _provider_share(cls, value: int, info: ValidationInfo) -> int:
        total = info.data.get("max_connections")
        if total is not None and value > total:
            raise ValueError(
                f"must not exceed ALTER_MCP_MAX_CONNECTIONS ({total}): lower it, or raise that")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return upper

    @property
    def introspects_tokens(self) -> bool:
        """Return True when access tokens are checked by introspection rather than as JWTs."""
        return self.idp_introspection_client_id is not None

    @property
    def resolved_database_url(self) -> str:
        """Return the database URL, defaulting to a SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'vault.db'}"

    @property
    def default_redirect_uri(self) -> str:
        """Return the OAuth callback URL to register at providers (unless a client overrides it).

        HTTP deployments use the public URL; stdio mode the loopback listener's port (with
        ``connect_port = 0`` the port is chosen at start, so no fixed URI can be registered).
        """
        base = self.public_url or f"http://127.0.0.1:{self.connect_port or '<port>'}"
        return base + "/oauth/callback"

    @property
    def resolved_key_file(self) -> Path:
        """Return the key file path, defaulting to ``master.key`` in the data directory."""
        return self.key_file or self.data_dir / "master.key"


def _scope_tokens(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``scopes`` if each is an RFC 6749 scope token (they go into quoted headers)."""
    for scope in scopes:
        if not scope or any(c in '"\\ ' or not 0x21 <= ord(c) <= 0x7E for c in scope):
            raise ValueError(f"{scope!r} is not a scope token: use printable ASCII with no "
                             "space, quote or backslash")
    return tuple(dict.fromkeys(scopes))


def _setting_name(loc: tuple[int | str, ...]) -> str:
    head = str(loc[0]) if loc else "config"
    if head in ("providers", "catalog") and len(loc) > 1:
        return ".".join(str(part) for part in loc)
    return ENV_PREFIX + head.upper()


def _read_toml(path: Path) -> dict[str, Any]:
    setting = ENV_PREFIX + "CONFIG"
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigurationError(
            f"The configuration file {path} does not exist.",
            setting=setting,
            hint="Create it (alter-mcp init) or unset ALTER_MCP_CONFIG.",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"The configuration file {path} is not valid TOML: {exc}.",
            setting=setting,
            hint="Fix the syntax at the position given.",
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"The configuration file {path} cannot be read ({exc.strerror}).",
            setting=setting,
            hint="Check its permissions.",
        ) from None


def default_config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """Return the user config file ``alter-mcp init`` writes (it may not exist).

    With an explicit ``environ`` (tests, embedding code) only its own ``XDG_CONFIG_HOME`` or
    ``HOME`` count, so a developer's real file never leaks into a hermetic configuration.
    """
    if environ is None:
        return Path(platformdirs.user_config_dir("alter-mcp")) / "config.toml"
    if sys.platform.startswith(("linux", "freebsd", "openbsd")):
        base = environ.get("XDG_CONFIG_HOME", "").strip()
        if base:
            return Path(base) / "alter-mcp" / "config.toml"
        home = environ.get("HOME", "").strip()
        return Path(home) / ".config" / "alter-mcp" / "config.toml" if home else None
    return None


class _ExplicitSettings(Settings):
    """Settings built only from the values ``load_settings`` gathers (env merged over file)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Read nothing but the explicit values."""
        return (init_settings,)


def _env_values(env: Mapping[str, str]) -> dict[str, str]:
    by_upper = {key.upper(): value for key, value in env.items()}
    values = {}
    for name in Settings.model_fields:
        if name in ("providers", "catalog"):
            continue
        value = by_upper.get(ENV_PREFIX + name.upper())
        if value is not None and value != "":
            values[name] = value
    return values


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment and the TOML file it names; explain any error."""
    env = dict(os.environ if environ is None else environ)
    env_values = _env_values(env)
    values: dict[str, Any] = {}
    config_path = overrides.get("config") or env_values.get("config")
    if not config_path and "config" not in overrides:
        default = default_config_path(environ)
        if default is not None and default.is_file():
            config_path = overrides["config"] = default
    if config_path:
        values = _read_toml(Path(str(config_path)).expanduser())
        unknown = set(values) - set(Settings.model_fields)
        if unknown:
            name = sorted(unknown)[0]
            raise ConfigurationError(
                f"Unknown key {name!r} in the configuration file {config_path}.",
                setting=name,
                hint="Remove it, or check its spelling against the README's settings table.",
            )
    values.update(env_values)
    values.update(overrides)
    try:
        settings: Settings = _ExplicitSettings(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        setting = _setting_name(tuple(first["loc"]))
        others = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
        raise ConfigurationError(
            f"Invalid setting {setting}: {first['msg']}{others}.",
            setting=setting,
            hint="Fix it in the environment or in the file named by ALTER_MCP_CONFIG.",
        ) from None
    for provider_id, provider in settings.providers.items():
        if provider.client_secret_env and not env.get(provider.client_secret_env):
            raise ConfigurationError(
                f"providers.{provider_id}.client_secret_env names "
                f"{provider.client_secret_env!r}, which is not set.",
                setting=f"providers.{provider_id}.client_secret_env",
                hint=f"Export {provider.client_secret_env} or give client_secret instead.",
            )
    _check_introspection(settings)
    return settings


def cleartext_allowed(url: str) -> bool:
    """Return True when ``url`` is https, or plain http to this machine (loopback)."""
    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_introspection(settings: Settings) -> None:
    """Refuse an introspection setup that could only fail at the first request."""
    if settings.idp_introspection_url and not settings.idp_introspection_client_id:
        raise ConfigurationError(
            "ALTER_MCP_IDP_INTROSPECTION_URL is set but no client to call it as.",
            setting="ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID",
            hint="Set ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID and _CLIENT_SECRET to the "
                 "client this server authenticates as at the introspection endpoint.")
    url = settings.idp_introspection_url
    if url and not (settings.allow_insecure_http or cleartext_allowed(url)):
        raise ConfigurationError(
            "ALTER_MCP_IDP_INTROSPECTION_URL is plain http to another machine: tokens and this "
            "server's secret would cross the network in the clear.",
            setting="ALTER_MCP_IDP_INTROSPECTION_URL",
            hint="Use https, or set ALTER_MCP_ALLOW_INSECURE_HTTP=true on a trusted network.")
    if settings.introspects_tokens and settings.idp_introspection_client_secret is None:
        raise ConfigurationError(
            "Token introspection needs this server's client secret.",
            setting="ALTER_MCP_IDP_INTROSPECTION_CLIENT_SECRET",
            hint="Set it to the secret of ALTER_MCP_IDP_INTROSPECTION_CLIENT_ID.")
