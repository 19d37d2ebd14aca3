"""The vault's data: principals, grants, managed secrets, connect sessions and audit events.

Every model is frozen and validated at construction. None of them holds a credential value:
credentials live only as ciphertext in the store and as plaintext inside one outbound request.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

__all__ = [
    "AgentPrincipal",
    "ApiKeyRecord",
    "AuditEvent",
    "CallerType",
    "ConnectSession",
    "ConnectSessionStatus",
    "Grant",
    "GrantKind",
    "GrantPage",
    "GrantStatus",
    "GroupPrincipal",
    "HttpMethod",
    "Identity",
    "ManagedSecret",
    "Outcome",
    "Principal",
    "RevokeResult",
    "SystemPrincipal",
    "UserPrincipal",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
# A principal may be built from a user's JWT: its errors must never echo their input.
_FROZEN_QUIET = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class HttpMethod(StrEnum):
    """HTTP methods an authenticated request may use."""

    GET = "GET"
    HEAD = "HEAD"
    OPTIONS = "OPTIONS"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"

    @property
    def idempotent(self) -> bool:
        """Return True for methods RFC 9110 defines as idempotent."""
        return self not in (HttpMethod.POST, HttpMethod.PATCH)


class CallerType(StrEnum):
    """What kind of software is calling the vault, for the audit log."""

    AGENT = "agent"
    SERVICE = "service"
    MCP_CLIENT = "mcp_client"
    CLI = "cli"


class UserPrincipal(BaseModel):
    """An end user, identified by their identity provider's issuer and ``sub``.

    ``UserPrincipal(user_token=jwt, label=…)``, the Alter SDK's form, names the user by their
    JWT instead: the vault verifies it when the grant is made and keeps only issuer and ``sub``.
    """

    model_config = _FROZEN_QUIET
    type: Literal["user"] = "user"
    issuer: str = ""
    subject: str = ""
    label: str | None = None
    #: Never stored or shown: the vault verifies it and replaces it by issuer and subject.
    user_token: SecretStr | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _named_once(self) -> Self:
        if self.user_token is None and not (self.issuer and self.subject):
            raise ValueError("a user principal needs issuer and subject (or user_token)")
        if self.user_token is not None and (self.issuer or self.subject):
            raise ValueError("give either user_token or issuer and subject, not both")
        return self

    @property
    def resolved(self) -> bool:
        """Return True when the user is named by issuer and subject, not by a token."""
        return self.user_token is None

    @property
    def key(self) -> str:
        """Return the stable owner key stored with grants."""
        if not self.resolved:
            raise ValueError("an unverified user principal has no owner key yet")
        return f"user:{self.issuer}#{self.subject}"


class GroupPrincipal(BaseModel):
    """A group of the identity provider; every member may use the group's grants.

    The Alter SDK's form ``GroupPrincipal(idp_id=…, external_group_id=…, label=…)`` is
    accepted: ``external_group_id`` is the group, and the vault maps ``idp_id`` (the configured
    issuer URL, or ``ALTER_MCP_IDP_ID``) to the issuer when the grant is made.
    """

    model_config = _FROZEN_QUIET
    type: Literal["group"] = "group"
    issuer: str = ""
    group: str = ""
    label: str | None = None
    #: The SDK's names: never stored, mapped to ``issuer`` and ``group``.
    idp_id: str | None = Field(default=None, exclude=True)
    external_group_id: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _sdk_group(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("external_group_id") is not None:
            if data.get("group"):
                raise ValueError("give either group or external_group_id, not both")
            data = {**data, "group": data["external_group_id"]}
        return data

    @model_validator(mode="after")
    def _named_once(self) -> Self:
        if not self.group:
            raise ValueError("a group principal needs group (or external_group_id)")
        if (self.idp_id is None) == (not self.issuer):
            raise ValueError("give exactly one of issuer and idp_id")
        return self

    @property
    def resolved(self) -> bool:
        """Return True when the group is named by issuer, not by an identity provider id."""
        return self.idp_id is None

    @property
    def key(self) -> str:
        """Return the stable owner key stored with grants."""
        if not self.resolved:
            raise ValueError("a group principal named by idp_id has no owner key yet")
        return f"group:{self.issuer}#{self.group}"


class SystemPrincipal(BaseModel):
    """The application itself: headless jobs with no end user."""

    model_config = _FROZEN
    type: Literal["system"] = "system"
    label: str | None = None

    @property
    def key(self) -> str:
        """Return the stable owner key stored with grants."""
        return "system"


class AgentPrincipal(BaseModel):
    """A service authenticated by an agent API key."""

    model_config = _FROZEN
    type: Literal["agent"] = "agent"
    key_id: str = Field(min_length=1)
    name: str | None = None
    label: str | None = None

    @property
    def key(self) -> str:
        """Return the stable owner key stored with grants."""
        return f"agent:{self.key_id}"


Principal = Annotated[
    UserPrincipal | GroupPrincipal | SystemPrincipal | AgentPrincipal,
    Field(discriminator="type"),
]


def _stored_form(principal: Any) -> Any:
    # A token or an IdP id names a principal only until the vault resolves it; nothing that is
    # kept (a grant, a session, an identity) may hold the unresolved form.
    if isinstance(principal, UserPrincipal | GroupPrincipal) and not principal.resolved:
        raise ValueError(f"the {principal.type} principal must be resolved by the vault first")
    return principal


class Identity(BaseModel):
    """Who is calling, established per request: a principal and the groups it belongs to."""

    model_config = _FROZEN
    principal: UserPrincipal | SystemPrincipal | AgentPrincipal
    groups: frozenset[str] = frozenset()
    caller: str | None = None
    caller_type: CallerType = CallerType.AGENT
    mcp_client: str | None = None
    #: The MCP tool and request this call serves (set per request by the server; audited).
    tool: str | None = None
    request_id: str | None = None

    @field_validator("principal")
    @classmethod
    def _resolved_principal(cls, value: Any) -> Any:
        return _stored_form(value)

    @classmethod
    def system(cls, *, caller: str | None = None, caller_type: CallerType = CallerType.AGENT,
               ) -> Identity:
        """Return the identity of the application itself."""
        return cls(principal=SystemPrincipal(), caller=caller, caller_type=caller_type)

    def owner_keys(self) -> tuple[str, ...]:
        """Return the owner keys whose grants this identity may see and use."""
        keys = [self.principal.key]
        if isinstance(self.principal, UserPrincipal):
            issuer = self.principal.issuer
            keys.extend(GroupPrincipal(issuer=issuer, group=g).key for g in sorted(self.groups))
        return tuple(keys)


class GrantKind(StrEnum):
    """Where a grant's credential came from."""

    OAUTH = "oauth"
    MANAGED_SECRET = "managed_secret"


class GrantStatus(StrEnum):
    """Lifecycle of a grant."""

    ACTIVE = "active"
    NEEDS_REAUTH = "needs_reauth"
    REVOKED = "revoked"


class Grant(BaseModel):
    """The right of a principal to use one provider account (or one managed secret)."""

    model_config = _FROZEN
    grant_id: str
    kind: GrantKind
    provider_id: str
    owner: Principal
    account_identifier: str | None = None
    label: str | None = None
    scopes: tuple[str, ...] = ()
    status: GrantStatus = GrantStatus.ACTIVE
    secret_id: str | None = None
    created_at: datetime
    updated_at: datetime
    revoked_at: datetime | None = None
    #: Non-secret per-account values (a shop, an instance host) its API hosts are built from.
    connection: dict[str, str] = Field(default_factory=dict)

    @field_validator("owner")
    @classmethod
    def _resolved_owner(cls, value: Any) -> Any:
        return _stored_form(value)

    @property
    def principal_type(self) -> str:
        """Return the owner's principal type (user, group, system or agent)."""
        return self.owner.type

    def public_view(self) -> dict[str, Any]:
        """Return the JSON-ready view shown to callers: metadata only, never a secret."""
        return {
            "grant_id": self.grant_id,
            "kind": self.kind.value,
            "provider_id": self.provider_id,
            "principal_type": self.principal_type,
            "account_identifier": self.account_identifier,
            "label": self.label,
            "scopes": list(self.scopes),
            "status": self.status.value,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
            "connection": dict(self.connection),
        }


class GrantPage(BaseModel):
    """One page of grants and the cursor of the next page, if any."""

    model_config = _FROZEN
    grants: tuple[Grant, ...]
    next_cursor: str | None = None


class RevokeResult(BaseModel):
    """What revoking a grant did, locally and at the provider."""

    model_config = _FROZEN
    grant_id: str
    revoked_at: datetime
    provider_revocation: Literal["revoked", "failed", "not_supported", "not_applicable"]
    provider_detail: str | None = None


class ManagedSecret(BaseModel):
    """A developer-owned credential (API key, basic pair, AWS keys), stored encrypted."""

    model_config = _FROZEN
    secret_id: str
    provider_id: str
    label: str
    field_names: tuple[str, ...]
    created_at: datetime
    #: Non-secret per-account values, copied to every grant of this secret.
    connection: dict[str, str] = Field(default_factory=dict)


class ConnectSessionStatus(StrEnum):
    """Lifecycle of a connect session."""

    PENDING = "pending"
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"


class ConnectSession(BaseModel):
    """A single-use, short-lived invitation for a user to authorize providers."""

    model_config = _FROZEN
    session_id: str
    owner: Principal
    allowed_providers: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    account_hint: str | None = None
    repair_grant_id: str | None = None
    return_url: str | None = None
    status: ConnectSessionStatus = ConnectSessionStatus.PENDING
    grant_ids: tuple[str, ...] = ()
    error: str | None = None
    created_at: datetime
    expires_at: datetime

    @field_validator("owner")
    @classmethod
    def _resolved_owner(cls, value: Any) -> Any:
        return _stored_form(value)


class Outcome(StrEnum):
    """How an audited action ended."""

    ALLOWED = "allowed"
    DENIED = "denied"
    ERROR = "error"


class AuditEvent(BaseModel):
    """One tamper-evident row of the audit log (secrets redacted before it is built)."""

    model_config = _FROZEN
    seq: int
    time: datetime
    action: str
    outcome: Outcome
    caller: str | None = None
    caller_type: str | None = None
    mcp_client: str | None = None
    tool: str | None = None
    request_id: str | None = None
    principal: str | None = None
    grant_id: str | None = None
    provider_id: str | None = None
    method: str | None = None
    url: str | None = None
    status: int | None = None
    latency_ms: float | None = None
    policy_rule: str | None = None
    reason: str | None = None
    error: str | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    prev_hash: str
    hash: str
    # Never hashed nor dumped: set by the store when a row's columns disagree with its data.
    _mismatch: str | None = PrivateAttr(default=None)

    @property
    def mismatch(self) -> str | None:
        """Return how the stored row disagreed with its hashed data on read (None: it agreed)."""
        return self._mismatch


class ApiKeyRecord(BaseModel):
    """An agent API key as stored: its prefix and hash, never the key itself."""

    model_config = _FROZEN
    key_id: str
    name: str
    prefix: str
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None = None
