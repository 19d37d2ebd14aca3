"""The provider catalogue: shipped TOML data, extra files and overrides, validated into one map.

Sources are applied in order, and every entry is validated once, after all of them:

1. the TOML files shipped in ``alter_mcp/providers/data/`` (read with ``importlib.resources``);
2. ``extra_files``: more TOML files of the same shape; their entries default to ``kind = "custom"``;
3. ``overrides``: a mapping of provider id to a table. A table naming an existing provider is
   deep-merged over it (nested tables merge, arrays and scalars replace, ``None`` resets an
   optional field); a table naming a new id is a whole new entry with ``kind = "custom"``.

A provider id defined twice across files is an error (change a shipped provider with an
override, not a second definition). Every problem raises :class:`ConfigurationError` whose
``setting`` is ``catalog.<id>`` (or ``catalog`` for a file-level problem) and whose message names
the provider, where it came from and the offending field(s).

Nothing is read at import time and nothing is cached: the caller holds the :class:`Catalog`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, NoReturn

from pydantic import ValidationError

from alter_mcp.errors import ConfigurationError, ProviderNotFoundError
from alter_mcp.providers.schema import AuthKind, Provider

__all__ = ["Catalog", "load_catalog"]

_DATA_DIR = "data"


class Catalog:
    """An immutable mapping of provider id to :class:`Provider`, iterated in id order."""

    __slots__ = ("_providers",)

    _providers: Mapping[str, Provider]

    def __init__(self, providers: Iterable[Provider] = ()) -> None:
        by_id: dict[str, Provider] = {}
        for provider in providers:
            if provider.id in by_id:
                raise ConfigurationError(
                    f"Provider id {provider.id!r} appears twice in the catalogue.",
                    setting=f"catalog.{provider.id}",
                    hint="Give each provider a unique id.",
                )
            by_id[provider.id] = provider
        object.__setattr__(self, "_providers", MappingProxyType(dict(sorted(by_id.items()))))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def get(self, provider_id: str) -> Provider:
        """Return the provider with this id, or raise :class:`ProviderNotFoundError`."""
        try:
            return self._providers[provider_id]
        except KeyError:
            raise ProviderNotFoundError(provider_id) from None

    def __contains__(self, provider_id: object) -> bool:
        return isinstance(provider_id, str) and provider_id in self._providers

    def __iter__(self) -> Iterator[str]:
        return iter(self._providers)

    def __len__(self) -> int:
        return len(self._providers)

    def __repr__(self) -> str:
        return f"Catalog({len(self._providers)} providers)"

    def ids(self) -> tuple[str, ...]:
        """Return every provider id, sorted."""
        return tuple(self._providers)

    def providers(self) -> tuple[Provider, ...]:
        """Return every provider, sorted by id."""
        return tuple(self._providers.values())

    def oauth_providers(self) -> tuple[Provider, ...]:
        """Return the providers whose grants come from an OAuth flow, sorted by id."""
        return tuple(p for p in self._providers.values() if p.auth_kind is AuthKind.OAUTH2)

    def secret_providers(self) -> tuple[Provider, ...]:
        """Return the managed-secret providers (API key, basic, AWS SigV4), sorted by id."""
        return tuple(p for p in self._providers.values() if p.auth_kind is not AuthKind.OAUTH2)


@dataclass(frozen=True, slots=True)
class _Entry:
    """One provider table not yet validated, with where it came from (for messages)."""

    data: Mapping[str, Any]
    origin: str


def load_catalog(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    extra_files: Sequence[Path] = (),
) -> Catalog:
    """Load the shipped catalogue, add ``extra_files``, apply ``overrides`` and validate it."""
    entries: dict[str, _Entry] = {}
    for name, text in _shipped_files():
        origin = f"shipped catalogue file {name}"
        _add_file(entries, _parse(text, origin=origin), origin=origin, default_kind=None)
    for index, path in enumerate(extra_files):
        origin = f"catalogue file {path}"
        text = _read(path, setting=f"catalog.extra_files[{index}]")
        _add_file(entries, _parse(text, origin=origin), origin=origin, default_kind="custom")
    for provider_id, override in (overrides or {}).items():
        _apply_override(entries, provider_id, override)
    return Catalog(_validate(provider_id, entry) for provider_id, entry in entries.items())


def _shipped_files() -> list[tuple[str, str]]:
    """Return (name, text) of every shipped ``*.toml`` data file, in name order."""
    data = resources.files(__package__ or "alter_mcp.providers").joinpath(_DATA_DIR)
    files = sorted(
        (item for item in data.iterdir() if item.name.endswith(".toml") and item.is_file()),
        key=lambda item: item.name,
    )
    return [(item.name, item.read_text(encoding="utf-8")) for item in files]


def _read(path: Path, *, setting: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(
            f"Cannot read catalogue file {path}: {exc.__class__.__name__}: {exc}.",
            setting=setting,
            hint="Check the path and that the file is readable UTF-8 TOML.",
        ) from exc


def _parse(text: str, *, origin: str) -> Mapping[str, Mapping[str, Any]]:
    """Parse a catalogue file and return its ``providers`` table."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(
            f"The {origin} is not valid TOML: {exc}.",
            setting="catalog",
            hint="Fix the TOML syntax at the position given.",
        ) from exc
    unknown = sorted(set(document) - {"providers"})
    if unknown:
        raise ConfigurationError(
            f"The {origin} has unexpected top-level key(s) {unknown}.",
            setting="catalog",
            hint="Put every provider under a [providers.<id>] table.",
        )
    providers = document.get("providers", {})
    if not isinstance(providers, Mapping):
        _not_a_table("providers", origin=origin, setting="catalog")
    return providers


def _add_file(
    entries: dict[str, _Entry],
    providers: Mapping[str, Any],
    *,
    origin: str,
    default_kind: str | None,
) -> None:
    for provider_id, table in providers.items():
        setting = f"catalog.{provider_id}"
        if not isinstance(table, Mapping):
            _not_a_table(f"providers.{provider_id}", origin=origin, setting=setting)
        if provider_id in entries:
            raise ConfigurationError(
                f"Provider id {provider_id!r} is defined twice: in the "
                f"{entries[provider_id].origin} and in the {origin}.",
                setting=setting,
                hint="Rename one of them. To change a shipped provider, override its fields "
                f"under [catalog.{provider_id}] instead of defining it again.",
            )
        data = _with_id(provider_id, table, origin=origin)
        if default_kind is not None:
            data.setdefault("kind", default_kind)
        entries[provider_id] = _Entry(data, origin)


def _apply_override(entries: dict[str, _Entry], provider_id: str, override: Any) -> None:
    setting = f"catalog.{provider_id}"
    if not isinstance(override, Mapping):
        _not_a_table(f"catalog.{provider_id}", origin="configuration", setting=setting)
    current = entries.get(provider_id)
    if current is None:
        data = _with_id(provider_id, override, origin="configuration")
        # A provider the catalogue does not ship is the deployment's own, whatever it says.
        data["kind"] = "custom"
        entries[provider_id] = _Entry(data, "configuration")
        return
    merged = _deep_merge(current.data, _with_id(provider_id, override, origin="configuration"))
    entries[provider_id] = _Entry(merged, f"{current.origin} with its configuration override")


def _with_id(provider_id: str, table: Mapping[str, Any], *, origin: str) -> dict[str, Any]:
    """Return a copy of ``table`` whose ``id`` is the key it was defined under."""
    data = dict(table)
    stated = data.get("id", provider_id)
    if stated != provider_id:
        raise ConfigurationError(
            f"Provider {provider_id!r} in the {origin} says id = {stated!r}.",
            setting=f"catalog.{provider_id}",
            hint="Remove `id`: the table name is the provider id.",
        )
    data["id"] = provider_id
    return data


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``override`` over ``base``: tables merge recursively, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def _validate(provider_id: str, entry: _Entry) -> Provider:
    try:
        return Provider.model_validate(entry.data)
    except ValidationError as exc:
        problems = _problems(exc)
        fields = ", ".join(sorted({loc for loc, _ in problems}))
        listed = "; ".join(f"{loc}: {message}" for loc, message in problems)
        # `from None`: pydantic's own message repeats the input values, and an override may
        # hold something secret by mistake; the fields and reasons above are enough.
        raise ConfigurationError(
            f"Provider {provider_id!r} ({entry.origin}) is invalid: {listed}.",
            setting=f"catalog.{provider_id}",
            hint=f"Correct {fields} in [catalog.{provider_id}] or in the file that defines it; "
            "unknown keys must be removed. The accepted fields are those of "
            "alter_mcp.providers.schema.Provider.",
        ) from None


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    """Return (dotted field location, reason) for each validation error, without inputs."""
    problems = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        location = ".".join(str(part) for part in error["loc"]) or "(entry)"
        message = error["msg"].removeprefix("Value error, ")
        problems.append((location, message))
    return problems


def _not_a_table(key: str, *, origin: str, setting: str) -> NoReturn:
    raise ConfigurationError(
        f"{key} in the {origin} must be a table.",
        setting=setting,
        hint=f"Write it as [{key}] with key = value lines.",
    )
