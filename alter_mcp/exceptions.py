"""The exception tree under the Alter Vault SDK's module path (``alter_sdk.exceptions``).

The same classes as :mod:`alter_mcp.errors` (one tree, rooted in ``AlterError``), so code
written against the SDK's ``alter_sdk.exceptions`` runs with only the package name changed.
"""

from __future__ import annotations

from alter_mcp.errors import (
    AlterError,
    AmbiguousGrantError,
    AuditWriteError,
    AuthenticationError,
    BlockedDestinationError,
    ConcurrentUpdateError,
    ConfigurationError,
    ConnectFlowError,
    CryptoError,
    DecryptionError,
    GrantNotFoundError,
    InvalidInputError,
    KeyUnavailableError,
    PolicyViolationError,
    ProviderAPIError,
    ProviderNotConfiguredError,
    ProviderNotFoundError,
    RateLimitedError,
    ReAuthRequiredError,
    ScopeReauthRequiredError,
    SecretNotFoundError,
    StoreError,
    TokenRefreshInProgressError,
    VaultClosedError,
)

__all__ = [
    "AlterError",
    "AmbiguousGrantError",
    "AuditWriteError",
    "AuthenticationError",
    "BlockedDestinationError",
    "ConcurrentUpdateError",
    "ConfigurationError",
    "ConnectFlowError",
    "CryptoError",
    "DecryptionError",
    "GrantNotFoundError",
    "InvalidInputError",
    "KeyUnavailableError",
    "PolicyViolationError",
    "ProviderAPIError",
    "ProviderNotConfiguredError",
    "ProviderNotFoundError",
    "RateLimitedError",
    "ReAuthRequiredError",
    "ScopeReauthRequiredError",
    "SecretNotFoundError",
    "StoreError",
    "TokenRefreshInProgressError",
    "VaultClosedError",
]
