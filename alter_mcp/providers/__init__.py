"""The provider catalogue: what each third-party API needs and where its credential may go.

``load_catalog()`` reads the shipped data (and the deployment's additions and overrides) into a
:class:`Catalog`; the schema of an entry is :class:`Provider`.
"""

from alter_mcp.providers.catalog import Catalog, load_catalog
from alter_mcp.providers.schema import (
    AccountSource,
    AuthKind,
    Injection,
    InjectionKind,
    OAuthQuirk,
    OAuthSpec,
    Provider,
    SecretField,
    TokenEndpointAuth,
)

__all__ = [
    "AccountSource",
    "AuthKind",
    "Catalog",
    "Injection",
    "InjectionKind",
    "OAuthQuirk",
    "OAuthSpec",
    "Provider",
    "SecretField",
    "TokenEndpointAuth",
    "load_catalog",
]
