"""Validation of managed secrets and of the principals they are granted to."""

from __future__ import annotations

import re
from collections.abc import Mapping

from alter_mcp.crypto import RecordBinding
from alter_mcp.errors import InvalidInputError
from alter_mcp.models import GroupPrincipal, Principal, UserPrincipal
from alter_mcp.providers import Provider

__all__ = ["check_grant_principal", "secret_binding", "split_connection", "validate_secret_fields"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_VALUE = 16_384


def secret_binding(secret_id: str) -> RecordBinding:
    """Return the encryption binding of a managed secret's fields."""
    return RecordBinding("managed_secrets", secret_id, "fields")


def split_connection(
    provider: Provider, fields: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """Return (secret fields, connection values): the tenant values are stored unsealed."""
    if not isinstance(fields, Mapping):
        raise InvalidInputError("fields must be a mapping of field name to value.",
                                field="fields")
    if provider.is_oauth:
        return dict(fields), {}
    names = {value.name for value in provider.connection}
    connection: dict[str, str] = {}
    for value in provider.connection:
        raw = fields.get(value.name)
        if raw is None or raw == "":
            raise InvalidInputError(
                f"Field {value.name!r} ({value.label}) is required for provider "
                f"{provider.id!r}: it names the account's own API host.",
                field=f"fields.{value.name}", hint=f"Give a value for {value.name}.")
        connection[value.name] = value.accept(raw, provider_id=provider.id)
    return {k: v for k, v in fields.items() if k not in names}, connection


def validate_secret_fields(provider: Provider, fields: Mapping[str, str]) -> dict[str, str]:
    """Return the fields of a managed secret for ``provider``, or say which one is wrong."""
    if provider.is_oauth:
        raise InvalidInputError(
            f"Provider {provider.id!r} uses OAuth; its grants come from `connect`.",
            field="provider_id",
            hint="Pick an API-key, basic or AWS provider from providers://catalog.",
        )
    if not isinstance(fields, Mapping):
        raise InvalidInputError("fields must be a mapping of field name to value.",
                                field="fields")
    known = {f.name: f for f in provider.secret_fields}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        expected = sorted({*known, *(value.name for value in provider.connection)})
        raise InvalidInputError(
            f"Unknown field {unknown[0]!r} for provider {provider.id!r}.",
            field=f"fields.{unknown[0]}",
            hint="Expected fields: " + ", ".join(expected) + ".",
        )
    values: dict[str, str] = {}
    for name, spec in known.items():
        value = fields.get(name)
        if value is None or value == "":
            if spec.required:
                raise InvalidInputError(
                    f"Field {name!r} ({spec.label}) is required for provider {provider.id!r}.",
                    field=f"fields.{name}",
                    hint=f"Give a value for {name}.",
                )
            continue
        if not isinstance(value, str):
            raise InvalidInputError(f"Field {name!r} must be a string.", field=f"fields.{name}")
        if _CONTROL.search(value):
            raise InvalidInputError(
                f"Field {name!r} contains a control character (e.g. a newline).",
                field=f"fields.{name}",
                hint="Paste the value without line breaks or surrounding whitespace.",
            )
        if len(value) > _MAX_VALUE:
            raise InvalidInputError(f"Field {name!r} is longer than {_MAX_VALUE} characters.",
                                    field=f"fields.{name}")
        values[name] = value
    return values


def check_grant_principal(principal: Principal, label: str | None) -> None:
    """Check a managed-secret grant's principal: users and groups need a label."""
    if isinstance(principal, UserPrincipal | GroupPrincipal) and not (label or principal.label):
        raise InvalidInputError(
            f"A {principal.type} grant needs a label.",
            field="label",
            hint="Give label='…' so the owner can tell this grant apart.",
        )
    if label is not None and (not label.strip() or _CONTROL.search(label)):
        raise InvalidInputError("label must be a non-empty single line.", field="label")
