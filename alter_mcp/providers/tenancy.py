"""Per-grant connection values: the tenant part of a provider's API hosts and base URL.

Many APIs live on a per-account host (a Shopify shop, a Salesforce instance, a Mailchimp data
centre). A catalogue entry declares each such value once (:class:`ConnectionValue`): its name,
where it comes from, and the pattern it must match. API hosts and the base URL may then be
templates over those names (``{shop}.myshopify.com``); a grant stores its own values, and the
destination guard allows exactly the hosts rendered from them, so a grant for tenant A never
reaches tenant B.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alter_mcp.errors import InvalidInputError

__all__ = [
    "ConnectionValue",
    "ValueSource",
    "check_host_template",
    "dotted",
    "placeholders",
    "render",
    "render_host",
]

_HOST = re.compile(r"^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
_MAX_VALUE = 200
_LOOPBACK_TENANT = re.compile(r"127\.0\.0\.\{[a-z][a-z0-9_]*\}")


class ValueSource(StrEnum):
    """Where a connection value comes from."""

    #: Asked of the person connecting (or of the operator storing a managed secret).
    USER = "user"
    #: A field of the OAuth token response (Salesforce ``instance_url``).
    TOKEN_RESPONSE = "token_response"
    #: A field of a metadata endpoint read with the new token after the exchange.
    METADATA = "metadata"


def placeholders(template: str) -> set[str]:
    """Return the ``{name}`` placeholders of ``template``."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def render(template: str, values: Mapping[str, str]) -> str | None:
    """Return ``template`` filled from ``values``, or None when a value is missing."""
    parts: list[str] = []
    for literal, name, _, _ in string.Formatter().parse(template):
        parts.append(literal)
        if name:
            if name not in values:
                return None
            parts.append(values[name])
    return "".join(parts)


def dotted(data: Any, path: str) -> str | None:
    """Return the scalar at a dotted path (digits index lists), or None."""
    value: Any = data
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
        return str(value)
    return None


class ConnectionValue(BaseModel):
    """One per-grant, non-secret value: its name, where it comes from and what it may be."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$")
    label: str
    source: ValueSource
    #: The whole value must match this regular expression (after ``host_of_url``).
    pattern: str
    #: Dotted path of the value in the token response or metadata body (``0.id``).
    field: str | None = None
    #: The metadata endpoint (source ``metadata``); read with ``Authorization: Bearer``.
    url: str | None = None
    #: The scheme of the metadata request's Authorization header (Mailchimp: ``OAuth``).
    auth_scheme: str = Field(default="Bearer", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,20}$")
    #: The provider gives a URL (``https://na1.my.salesforce.com``); keep only its host.
    host_of_url: bool = False

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"pattern {value!r} is not a regular expression: {exc}") from None
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        host = parts.hostname or ""
        if parts.scheme == "https" or (parts.scheme == "http" and host in _LOOPBACK):
            return value
        raise ValueError(f"metadata url {value!r} must be https:// (http only for loopback)")

    @model_validator(mode="after")
    def _check(self) -> ConnectionValue:
        match self.source:
            case ValueSource.USER:
                if self.field or self.url:
                    raise ValueError(f"connection value {self.name!r} from the user takes "
                                     "neither `field` nor `url`")
            case ValueSource.TOKEN_RESPONSE:
                if not self.field or self.url:
                    raise ValueError(f"connection value {self.name!r} from the token response "
                                     "needs `field` and no `url`")
            case ValueSource.METADATA:
                if not self.field or not self.url:
                    raise ValueError(f"connection value {self.name!r} from a metadata endpoint "
                                     "needs `field` and `url`")
        return self

    def accept(self, raw: object, *, provider_id: str) -> str:
        """Return ``raw`` as this value, or raise :class:`InvalidInputError` naming the fix."""
        where = f"connection.{self.name}"
        if not isinstance(raw, str) or not raw or len(raw) > _MAX_VALUE:
            raise InvalidInputError(
                f"{self.label} ({self.name}) for {provider_id!r} must be a non-empty string of "
                f"at most {_MAX_VALUE} characters.", field=where)
        value = raw.strip()
        if self.host_of_url:
            parts = urlsplit(value)
            host = (parts.hostname or "").lower()
            secure = parts.scheme == "https" or (
                parts.scheme == "http" and (host in _LOOPBACK or host.startswith("127.")))
            if not host or not secure or parts.username is not None:
                raise InvalidInputError(
                    f"{self.label} ({self.name}) for {provider_id!r} must be an https:// URL.",
                    field=where)
            value = host
        if not re.fullmatch(self.pattern, value):
            # The value is not secret; quoting it tells the user what was wrong.
            raise InvalidInputError(
                f"{self.label} ({self.name}) {value[:80]!r} is not valid for {provider_id!r}.",
                field=where, hint=f"It must match {self.pattern}.")
        return value


def check_host_template(template: str, names: set[str]) -> None:
    """Raise ValueError unless ``template`` is a host whose one placeholder is declared."""
    used = placeholders(template)
    unknown = used - names
    if unknown:
        raise ValueError(f"api host {template!r} uses undeclared connection value(s) "
                         f"{sorted(unknown)}; declare them under `connection`")
    if len(used) > 1:
        raise ValueError(f"api host template {template!r} may use one connection value")
    if not used or template == "{" + next(iter(used)) + "}":
        # A whole-host value: its pattern alone says which hosts it may be.
        return
    if _LOOPBACK_TENANT.fullmatch(template):
        # Local stand-ins and development setups address tenants as 127.0.0.<n>.
        return
    domain = template.partition(".")[2]
    sample = template.replace("{" + next(iter(used)) + "}", "x")
    fields = sum(1 for _, name, _, _ in string.Formatter().parse(template) if name)
    if (fields != 1 or "{" in domain or not _HOST.match(sample) or sample.count(".") < 2):
        raise ValueError(f"api host template {template!r} must put the value once, in the first "
                         "label of a fixed domain of at least two labels (e.g. "
                         "{shop}.myshopify.com)")


def render_host(template: str, values: Mapping[str, str]) -> str | None:
    """Return the host ``template`` names for ``values``, or None if it cannot be one."""
    # On the request path: templates are checked to hold at most one placeholder, so a
    # plain find is enough (string.Formatter costs several times more).
    start = template.find("{")
    if start < 0:
        return template
    end = template.find("}", start)
    value = values.get(template[start + 1:end])
    if end < 0 or value is None:
        return None
    whole = start == 0 and end == len(template) - 1
    if not whole and "." in value:
        # A value fills exactly one label; a dot would move the name into another domain.
        return None
    host = template[:start] + value + template[end + 1:]
    return host if _HOST.match(host) else None
