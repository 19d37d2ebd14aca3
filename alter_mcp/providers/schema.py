"""The schema of a catalogue entry: how to authorize with a provider, where its credential may go.

A provider is data, not code. Its differences from plain RFC 6749 are expressed as fields here,
plus a few named quirks (``OAuthQuirk``) that the OAuth client implements as small hooks.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from enum import StrEnum
from typing import Literal, assert_never
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alter_mcp.providers.tenancy import (
    ConnectionValue,
    ValueSource,
    check_host_template,
    placeholders,
    render,
    render_host,
)

__all__ = [
    "AccountSource",
    "AuthKind",
    "ConnectionValue",
    "Injection",
    "InjectionKind",
    "OAuthQuirk",
    "OAuthSpec",
    "Provider",
    "SecretField",
    "TokenEndpointAuth",
    "ValueSource",
]

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_PORT_SUFFIX = re.compile(r":[0-9]{1,5}$")
_HEADER_VALUE = re.compile(r"^[\x20-\x7e]{1,1024}$")
#: Headers no catalogue default may set: the vault authenticates, the client frames.
_NO_DEFAULT = frozenset({
    "authorization", "cookie", "host", "proxy-authorization", "connection", "content-length",
    "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
})
_SIGV4_HEADERS = frozenset({"authorization", "x-amz-content-sha256", "x-amz-date",
                            "x-amz-security-token"})
_SIGV4_QUERY = frozenset({"x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-expires",
                          "x-amz-security-token", "x-amz-signature", "x-amz-signedheaders"})


class AuthKind(StrEnum):
    """How a provider's credential is obtained."""

    OAUTH2 = "oauth2"
    API_KEY = "api_key"
    BASIC = "basic"
    AWS_SIGV4 = "aws_sigv4"


class InjectionKind(StrEnum):
    """Where the credential goes in an outbound request."""

    BEARER = "bearer"
    HEADER = "header"
    QUERY = "query"
    BASIC = "basic"
    AWS_SIGV4 = "aws_sigv4"


class TokenEndpointAuth(StrEnum):
    """How the OAuth client authenticates at the token endpoint."""

    CLIENT_SECRET_BASIC = "client_secret_basic"
    CLIENT_SECRET_POST = "client_secret_post"
    NONE = "none"


class AccountSource(StrEnum):
    """Where the account identifier of a new grant is read from."""

    USERINFO = "userinfo"
    TOKEN_RESPONSE = "token_response"
    ID_TOKEN = "id_token"


class OAuthQuirk(StrEnum):
    """Named deviations from RFC 6749 that the OAuth client handles as small hooks."""

    #: The user token is nested in ``authed_user`` (Slack v2 user scopes).
    SLACK_AUTHED_USER = "slack_authed_user"
    #: The token endpoint wants a JSON body instead of a form (Notion).
    JSON_TOKEN_REQUEST = "json_token_request"
    #: Access tokens do not expire and no refresh token is issued.
    NO_EXPIRY = "no_expiry"
    #: Scopes are sent as ``user_scope`` instead of ``scope`` (Slack user tokens).
    USER_SCOPE_PARAM = "user_scope_param"
    #: The token response reports errors with HTTP 200 and ``ok: false`` (Slack).
    OK_FALSE_ERRORS = "ok_false_errors"
    #: The userinfo endpoint wants the token in a query parameter or POST body.
    USERINFO_POST = "userinfo_post"
    #: The client id is called ``client_key`` in the authorize and token requests (TikTok).
    CLIENT_KEY = "client_key"
    #: The account is read with a GraphQL query built from ``account_field`` (Linear, monday).
    GRAPHQL_IDENTITY = "graphql_identity"
    #: The 1-hour token is exchanged for a 60-day one and extended at ``refresh_url``.
    INSTAGRAM_LONG_LIVED = "instagram_long_lived"
    #: The short-lived user token is exchanged for a 60-day one (``fb_exchange_token``).
    FACEBOOK_LONG_LIVED = "facebook_long_lived"
    #: Requests carry ``type=web_server`` (authorize, code) or ``type=refresh`` (Basecamp).
    LAUNCHPAD_TYPE = "launchpad_type"
    #: Revocation is ``DELETE`` of the app's grant with Basic auth and a JSON body (GitHub).
    GITHUB_GRANT_REVOCATION = "github_grant_revocation"


class Injection(BaseModel):
    """One way the credential is put into a request.

    ``format``/``username``/``password`` are templates over the credential's field names,
    e.g. ``"Bearer {access_token}"`` or ``"{api_key}"``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: InjectionKind
    name: str | None = Field(default=None, description="Header or query parameter name.")
    format: str = Field(default="{access_token}", description="Template of the injected value.")
    username: str | None = None
    password: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Injection:
        if self.kind in (InjectionKind.HEADER, InjectionKind.QUERY) and not self.name:
            raise ValueError(f"injection kind {self.kind.value!r} needs `name`")
        if self.kind is InjectionKind.HEADER and not _HEADER_NAME.match(self.name or ""):
            raise ValueError(f"injection header name {self.name!r} is not a valid HTTP token")
        if self.kind is InjectionKind.BASIC and self.username is None:
            raise ValueError("injection kind 'basic' needs `username` (a template)")
        return self

    def placeholders(self) -> set[str]:
        """Return the credential field names this injection's templates use."""
        names: set[str] = set()
        # Only the templates a kind actually renders count: `format` defaults to
        # "{access_token}", which a `basic` rule over managed-secret fields never uses.
        templates: list[str]
        match self.kind:
            case InjectionKind.AWS_SIGV4:
                templates = []
            case InjectionKind.BASIC:
                templates = [self.username or "", self.password or ""]
            case InjectionKind.BEARER | InjectionKind.HEADER | InjectionKind.QUERY:
                templates = [self.format]
            case _:
                assert_never(self.kind)
        for template in templates:
            for _, field_name, _, _ in string.Formatter().parse(template):
                if field_name:
                    names.add(field_name)
        return names

    def reserved(self) -> tuple[frozenset[str], frozenset[str]]:
        """Return the lowercase header and query names this rule sets."""
        match self.kind:
            case InjectionKind.QUERY:
                return frozenset(), frozenset({(self.name or "").lower()})
            case InjectionKind.HEADER:
                return frozenset({(self.name or "").lower()}), frozenset()
            case InjectionKind.BEARER:
                return frozenset({(self.name or "Authorization").lower()}), frozenset()
            case InjectionKind.BASIC:
                return frozenset({"authorization"}), frozenset()
            case InjectionKind.AWS_SIGV4:
                return _SIGV4_HEADERS, _SIGV4_QUERY
            case _:
                assert_never(self.kind)


class OAuthSpec(BaseModel):
    """The OAuth 2 endpoints and behaviour of a provider."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    authorization_url: str
    token_url: str
    #: May name ``{client_id}`` (GitHub's ``/applications/{client_id}/grant``).
    revocation_url: str | None = None
    userinfo_url: str | None = None
    #: Where refresh requests go when not to ``token_url`` (Figma, Instagram).
    refresh_url: str | None = None
    #: Where a short-lived token is traded for a long-lived one (Instagram, Facebook).
    exchange_url: str | None = None
    #: The authorization server's exact issuer (RFC 8414). When set, every callback must carry
    #: ``iss`` equal to it (RFC 9207); when unset, an ``iss`` that is present is still checked
    #: against the authorization endpoint's origin.
    issuer: str | None = None
    account_source: AccountSource = AccountSource.USERINFO
    #: Dotted path of the account identifier in the userinfo / token response / id token.
    account_field: str = "email"
    default_scopes: tuple[str, ...] = ()
    scope_separator: str = " "
    pkce: bool = True
    token_endpoint_auth: TokenEndpointAuth = TokenEndpointAuth.CLIENT_SECRET_POST
    extra_authorize_params: dict[str, str] = Field(default_factory=dict)
    quirks: tuple[OAuthQuirk, ...] = ()
    #: Where an operator creates this provider's OAuth app (and registers the redirect URI).
    console_url: str | None = None

    @field_validator("authorization_url", "token_url", "revocation_url", "userinfo_url",
                     "issuer", "refresh_url", "exchange_url", "console_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urlsplit(value)
            host = parts.hostname
        except ValueError:
            raise ValueError(f"{value!r} is not a valid URL") from None
        if not host or parts.username is not None or parts.password is not None:
            raise ValueError(f"{value!r} must be an absolute URL with a host and no userinfo")
        if parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK):
            return value
        raise ValueError(f"{value!r} must be an https:// URL (http only for loopback)")

    @model_validator(mode="after")
    def _check(self) -> OAuthSpec:
        if self.account_source is AccountSource.USERINFO and not self.userinfo_url:
            raise ValueError("account_source 'userinfo' needs `userinfo_url`")
        if self.scope_separator not in (" ", ",", "+"):
            raise ValueError("scope_separator must be ' ', ',' or '+'")
        return self


class SecretField(BaseModel):
    """A field of a managed secret (API key, username, AWS key id, ...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    label: str
    secret: bool = True
    required: bool = True


class Provider(BaseModel):
    """A catalogue entry: identity, auth kind, endpoints, API hosts and injection rule."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    auth_kind: AuthKind
    #: The only hosts the credential may be sent to: exact names, ``*.example.com``, or
    #: templates over connection values (``{shop}.myshopify.com``) rendered per grant.
    api_hosts: tuple[str, ...]
    #: Per-grant, non-secret values the API hosts and base URL are templates over.
    connection: tuple[ConnectionValue, ...] = ()
    #: Where the agent calls; may be a template over connection values.
    api_base_url: str | None = None
    #: Non-secret headers sent unless the caller sets them (``anthropic-version``).
    default_headers: dict[str, str] = Field(default_factory=dict)
    #: Ports allowed besides the scheme default (443).
    api_ports: tuple[int, ...] = ()
    injection: tuple[Injection, ...]
    oauth: OAuthSpec | None = None
    secret_fields: tuple[SecretField, ...] = ()
    #: For ``aws_sigv4``: the signing service name (the region is a secret field).
    aws_service: str | None = None
    docs_url: str | None = None
    category: str | None = None
    notes: str | None = None
    kind: Literal["catalog", "custom"] = "catalog"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("provider id must be lowercase letters, digits and '-'")
        return value

    @field_validator("api_hosts")
    @classmethod
    def _hosts(cls, hosts: tuple[str, ...]) -> tuple[str, ...]:
        if not hosts:
            raise ValueError("api_hosts must list at least one host")
        for host in hosts:
            if "{" in host or "}" in host:
                continue  # a template: checked against the connection values below
            labels = host.split(".")
            if labels[0] == "*":
                labels = labels[1:]
                if len(labels) < 2:
                    raise ValueError(f"wildcard host {host!r} must cover a registrable domain")
            if host != host.lower() or not all(_HOST_LABEL.match(label) for label in labels):
                raise ValueError(
                    f"api host {host!r} must be a lowercase DNS name (no scheme, port or path)"
                )
        return hosts

    @model_validator(mode="after")
    def _check(self) -> Provider:
        if self.auth_kind is AuthKind.OAUTH2:
            if self.oauth is None:
                raise ValueError("auth_kind 'oauth2' needs an [oauth] table")
            fields = {"access_token"}
        else:
            if self.oauth is not None:
                raise ValueError(f"auth_kind {self.auth_kind.value!r} cannot have [oauth]")
            if not self.secret_fields:
                raise ValueError(f"auth_kind {self.auth_kind.value!r} needs secret_fields")
            fields = {f.name for f in self.secret_fields}
        if not self.injection:
            raise ValueError("injection must list at least one rule")
        for rule in self.injection:
            unknown = rule.placeholders() - fields
            if unknown:
                raise ValueError(
                    f"injection template uses unknown field(s) {sorted(unknown)}; "
                    f"known: {sorted(fields)}"
                )
        self._check_tenancy()
        self._check_default_headers()
        if self.auth_kind is AuthKind.AWS_SIGV4:
            if not self.aws_service:
                raise ValueError("auth_kind 'aws_sigv4' needs aws_service")
            needed = {"access_key_id", "secret_access_key", "region"}
            if not needed <= fields:
                raise ValueError(f"aws_sigv4 secret_fields must include {sorted(needed)}")
        return self

    def _check_tenancy(self) -> None:
        names = [value.name for value in self.connection]
        if len(set(names)) != len(names):
            raise ValueError("connection values must have distinct names")
        for host in self.api_hosts:
            check_host_template(host, set(names))
        if self.api_base_url is not None:
            unknown = placeholders(self.api_base_url) - set(names)
            if unknown:
                raise ValueError(f"api_base_url uses undeclared connection value(s) "
                                 f"{sorted(unknown)}")
            scheme, _, rest = self.api_base_url.partition("://")
            host = _PORT_SUFFIX.sub("", rest.split("/", 1)[0])
            if scheme not in ("https", "http") or host not in self.api_hosts:
                raise ValueError("api_base_url must be an http(s) URL on one of the api_hosts "
                                 "(written the same way)")
        if not self.is_oauth and any(v.source is not ValueSource.USER for v in self.connection):
            raise ValueError("a managed-secret provider's connection values come from the user")
        if self.is_oauth and any(v.source is ValueSource.USER for v in self.connection):
            # The connect page does not ask for values yet: such a grant could reach no host.
            raise ValueError("an OAuth provider's connection values must come from the token "
                             "response or a metadata endpoint")

    def _check_default_headers(self) -> None:
        injected = self.reserved_names()[0]
        for name, value in self.default_headers.items():
            if not _HEADER_NAME.match(name) or not _HEADER_VALUE.match(value):
                raise ValueError(f"default header {name!r} needs an HTTP token name and a "
                                 "printable ASCII value")
            if name.lower() in _NO_DEFAULT or name.lower() in injected:
                raise ValueError(f"default header {name!r} is set by the vault or the HTTP "
                                 "client (injection rules are never defaults)")

    def reserved_names(self) -> tuple[frozenset[str], frozenset[str]]:
        """Return the lowercase header and query names the injection rules set."""
        headers: set[str] = set()
        query: set[str] = set()
        for rule in self.injection:
            rule_headers, rule_query = rule.reserved()
            headers |= rule_headers
            query |= rule_query
        return frozenset(headers), frozenset(query)

    def connection_value(self, name: str) -> ConnectionValue | None:
        """Return the declared connection value called ``name``, if any."""
        return next((value for value in self.connection if value.name == name), None)

    def hosts_for(self, values: Mapping[str, str]) -> tuple[str, ...]:
        """Return the API hosts of a grant with these connection values.

        A stored value that no longer matches its declared pattern (an override tightened
        it) renders no host.
        """
        if not self.connection:
            return self.api_hosts
        valid = {value.name: values[value.name] for value in self.connection
                 if value.name in values and re.fullmatch(value.pattern, values[value.name])}
        hosts = (render_host(host, valid) for host in self.api_hosts)
        return tuple(host for host in hosts if host is not None)

    def base_url_for(self, values: Mapping[str, str]) -> str | None:
        """Return the API base URL of a grant with these connection values, if known."""
        return None if self.api_base_url is None else render(self.api_base_url, values)

    @property
    def is_oauth(self) -> bool:
        """Return True when grants of this provider come from an OAuth flow."""
        return self.auth_kind is AuthKind.OAUTH2

    def host_allowed(self, host: str, values: Mapping[str, str] | None = None) -> bool:
        """Return True when ``host`` (lowercase) is an API host of a grant with ``values``.

        Templated hosts match only as rendered from ``values``: with none, never.
        """
        for pattern in self.hosts_for(values or {}):
            if pattern.startswith("*."):
                suffix = pattern[1:]
                if host.endswith(suffix) and len(host) > len(suffix):
                    return True
            elif host == pattern:
                return True
        return False
