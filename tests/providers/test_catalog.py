"""The catalogue loader and the Catalog mapping: overrides, extra files, errors, no import I/O."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import alter_mcp.providers as providers_package
from alter_mcp.errors import ConfigurationError, ProviderNotFoundError
from alter_mcp.providers import AuthKind, Catalog, Provider, load_catalog

CUSTOM_PROVIDER: dict[str, Any] = {
    "name": "Acme Internal API",
    "auth_kind": "api_key",
    "api_hosts": ["api.acme.example"],
    "injection": [{"kind": "header", "name": "X-Acme-Key", "format": "{api_key}"}],
    "secret_fields": [{"name": "api_key", "label": "API key"}],
}


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    """Return the shipped catalogue without overrides."""
    return load_catalog()


def test_catalog_get_returns_provider(catalog: Catalog) -> None:
    """get returns the validated Provider for a known id."""
    github = catalog.get("github")
    assert isinstance(github, Provider)
    assert github.auth_kind is AuthKind.OAUTH2
    assert github.host_allowed("api.github.com")


def test_catalog_get_unknown_raises_provider_not_found(catalog: Catalog) -> None:
    """get raises ProviderNotFoundError naming the unknown id."""
    with pytest.raises(ProviderNotFoundError) as caught:
        catalog.get("no-such-provider")
    assert caught.value.provider_id == "no-such-provider"


def test_catalog_mapping_protocol_uses_ids(catalog: Catalog) -> None:
    """Membership, iteration and length work on provider ids, iterated in sorted order."""
    assert "google" in catalog
    assert "no-such-provider" not in catalog
    assert 42 not in catalog
    assert ["github"] not in catalog
    ids = list(catalog)
    assert ids == sorted(ids) == list(catalog.ids())
    assert len(catalog) == len(ids) == len(catalog.providers())


def test_catalog_splits_oauth_and_secret_providers(catalog: Catalog) -> None:
    """oauth_providers and secret_providers partition the catalogue by auth kind."""
    oauth = catalog.oauth_providers()
    secrets = catalog.secret_providers()
    assert all(p.auth_kind is AuthKind.OAUTH2 for p in oauth)
    assert all(p.auth_kind is not AuthKind.OAUTH2 for p in secrets)
    assert sorted(p.id for p in oauth + secrets) == list(catalog)


def test_catalog_is_immutable(catalog: Catalog) -> None:
    """A Catalog refuses attribute assignment and its contents cannot be replaced."""
    with pytest.raises(AttributeError):
        catalog._providers = {}
    with pytest.raises(AttributeError):
        catalog.extra = 1
    with pytest.raises(TypeError):
        catalog._providers["github"] = catalog.get("google")  # type: ignore[index]


def test_catalog_rejects_duplicate_providers() -> None:
    """Building a Catalog from two providers with one id raises ConfigurationError."""
    provider = Provider.model_validate({"id": "acme", **CUSTOM_PROVIDER})
    with pytest.raises(ConfigurationError) as caught:
        Catalog([provider, provider])
    assert caught.value.setting == "catalog.acme"


def test_load_catalog_returns_a_new_catalog_each_call() -> None:
    """Nothing is cached globally: each call builds its own Catalog."""
    first = load_catalog()
    second = load_catalog({"github": {"name": "GitHub Enterprise"}})
    assert first is not second
    assert first.get("github").name == "GitHub"
    assert second.get("github").name == "GitHub Enterprise"


def test_load_catalog_override_replaces_scopes_and_keeps_the_rest(catalog: Catalog) -> None:
    """An override of one nested field replaces that field and keeps every other one."""
    overridden = load_catalog({"google": {"oauth": {"default_scopes": ["openid", "email"]}}})
    before, after = catalog.get("google"), overridden.get("google")
    assert before.oauth is not None and after.oauth is not None
    assert after.oauth.default_scopes == ("openid", "email")
    assert after.oauth.model_dump(exclude={"default_scopes"}) == before.oauth.model_dump(
        exclude={"default_scopes"}
    )
    assert after.model_dump(exclude={"oauth"}) == before.model_dump(exclude={"oauth"})
    assert after.kind == "catalog"


def test_load_catalog_override_merges_nested_tables() -> None:
    """A nested table in an override merges key by key into the shipped table."""
    extra = {"extra_authorize_params": {"hd": "acme.test"}}
    overridden = load_catalog({"google": {"oauth": extra}})
    oauth = overridden.get("google").oauth
    assert oauth is not None
    assert oauth.extra_authorize_params == {
        "access_type": "offline",
        "prompt": "consent",
        "hd": "acme.test",
    }


def test_load_catalog_override_arrays_replace() -> None:
    """An array in an override replaces the shipped array instead of extending it."""
    overridden = load_catalog({"gitlab": {"api_hosts": ["gitlab.acme.test"]}})
    assert overridden.get("gitlab").api_hosts == ("gitlab.acme.test",)


def test_load_catalog_override_none_resets_optional_field() -> None:
    """None in an override clears an optional field such as the revocation URL."""
    overridden = load_catalog({"google": {"oauth": {"revocation_url": None}}})
    oauth = overridden.get("google").oauth
    assert oauth is not None and oauth.revocation_url is None


def test_load_catalog_override_does_not_mutate_its_input() -> None:
    """load_catalog leaves the caller's override mapping unchanged."""
    overrides = {"google": {"oauth": {"default_scopes": ["openid"]}}, "acme": CUSTOM_PROVIDER}
    snapshot = copy.deepcopy(overrides)
    load_catalog(overrides)
    assert overrides == snapshot


def test_load_catalog_override_adds_custom_provider() -> None:
    """An override under a new id adds a whole provider marked kind = custom."""
    catalog = load_catalog({"acme": CUSTOM_PROVIDER})
    acme = catalog.get("acme")
    assert acme.kind == "custom"
    assert acme.auth_kind is AuthKind.API_KEY
    assert acme in catalog.secret_providers()


def test_load_catalog_override_new_provider_is_always_custom() -> None:
    """A new provider cannot pass itself off as a shipped one by saying kind = catalog."""
    catalog = load_catalog({"acme": {**CUSTOM_PROVIDER, "kind": "catalog"}})
    assert catalog.get("acme").kind == "custom"


@pytest.mark.parametrize(
    ("overrides", "provider_id", "field"),
    [
        ({"github": {"oauth": {"token_url": "http://evil.example/token"}}}, "github",
         "oauth.token_url"),
        ({"github": {"colour": "red"}}, "github", "colour"),
        ({"github": {"api_hosts": ["API.GitHub.com"]}}, "github", "api_hosts"),
        ({"slack": {"oauth": {"scope_separator": ";"}}}, "slack", "oauth"),
        ({"openai": {"injection": [{"kind": "header", "format": "{api_key}"}]}}, "openai",
         "injection.0"),
        ({"acme": {**CUSTOM_PROVIDER, "api_hosts": None}}, "acme", "api_hosts"),
        ({"acme": {"name": "Acme"}}, "acme", "auth_kind"),
    ],
)
def test_load_catalog_invalid_override_names_provider_and_field(
    overrides: dict[str, Any], provider_id: str, field: str
) -> None:
    """An invalid override raises ConfigurationError naming the provider and the field."""
    with pytest.raises(ConfigurationError) as caught:
        load_catalog(overrides)
    error = caught.value
    assert error.setting == f"catalog.{provider_id}"
    assert repr(provider_id) in error.message
    assert field in error.message
    assert error.hint and f"[catalog.{provider_id}]" in error.hint


def test_load_catalog_error_does_not_echo_input_values() -> None:
    """A validation error names the bad field without repeating the value given."""
    secret = "sk-live-DO-NOT-ECHO-1234567890"
    with pytest.raises(ConfigurationError) as caught:
        load_catalog({"github": {"client_secret": secret}})
    assert "client_secret" in str(caught.value)
    assert secret not in str(caught.value)
    assert secret not in repr(caught.value.to_dict())
    assert caught.value.__suppress_context__


def test_load_catalog_override_must_be_a_table() -> None:
    """An override that is not a table raises ConfigurationError naming the provider."""
    with pytest.raises(ConfigurationError) as caught:
        load_catalog({"github": "disabled"})  # type: ignore[dict-item]
    assert caught.value.setting == "catalog.github"


def test_load_catalog_override_with_mismatched_id_is_rejected() -> None:
    """An override whose id differs from its key raises ConfigurationError."""
    with pytest.raises(ConfigurationError) as caught:
        load_catalog({"github": {"id": "gitlab"}})
    assert caught.value.setting == "catalog.github"
    assert "gitlab" in caught.value.message


def test_load_catalog_extra_file_adds_custom_providers(tmp_path: Path) -> None:
    """Providers from an extra file join the catalogue as kind = custom."""
    path = _write(tmp_path / "acme.toml", """
        [providers.acme]
        name = "Acme Internal API"
        auth_kind = "basic"
        api_hosts = ["api.acme.example"]
        injection = [{ kind = "basic", username = "{user}", password = "{password}" }]
        secret_fields = [
            { name = "user", label = "User", secret = false },
            { name = "password", label = "Password" },
        ]
    """)
    catalog = load_catalog(extra_files=[path])
    assert catalog.get("acme").kind == "custom"
    assert "github" in catalog


def test_load_catalog_override_applies_over_extra_file(tmp_path: Path) -> None:
    """Overrides are applied after extra files, so they can adjust a file's provider."""
    path = _write(tmp_path / "acme.toml", """
        [providers.acme]
        name = "Acme"
        auth_kind = "api_key"
        api_hosts = ["api.acme.example"]
        injection = [{ kind = "bearer", format = "{api_key}" }]
        secret_fields = [{ name = "api_key", label = "API key" }]
    """)
    catalog = load_catalog({"acme": {"api_hosts": ["eu.api.acme.example"]}}, extra_files=[path])
    assert catalog.get("acme").api_hosts == ("eu.api.acme.example",)


def test_load_catalog_duplicate_id_across_files_is_an_error(tmp_path: Path) -> None:
    """A file redefining a shipped provider id raises ConfigurationError naming both files."""
    path = _write(tmp_path / "mine.toml", """
        [providers.github]
        name = "My GitHub"
    """)
    with pytest.raises(ConfigurationError) as caught:
        load_catalog(extra_files=[path])
    assert caught.value.setting == "catalog.github"
    assert "oauth.toml" in caught.value.message
    assert str(path) in caught.value.message


def test_load_catalog_duplicate_id_between_extra_files_is_an_error(tmp_path: Path) -> None:
    """Two extra files defining one id raise ConfigurationError."""
    text = """
        [providers.acme]
        name = "Acme"
    """
    first, second = _write(tmp_path / "a.toml", text), _write(tmp_path / "b.toml", text)
    with pytest.raises(ConfigurationError) as caught:
        load_catalog(extra_files=[first, second])
    assert caught.value.setting == "catalog.acme"


def test_load_catalog_invalid_extra_file_entry_names_file_and_field(tmp_path: Path) -> None:
    """An invalid entry in an extra file is reported with its file and field."""
    path = _write(tmp_path / "acme.toml", """
        [providers.acme]
        name = "Acme"
        auth_kind = "api_key"
        api_hosts = ["*.com"]
        injection = [{ kind = "bearer", format = "{api_key}" }]
        secret_fields = [{ name = "api_key", label = "API key" }]
    """)
    with pytest.raises(ConfigurationError) as caught:
        load_catalog(extra_files=[path])
    assert caught.value.setting == "catalog.acme"
    assert "api_hosts" in caught.value.message
    assert str(path) in caught.value.message


@pytest.mark.parametrize(
    "text",
    [
        "[providers.acme\nname = 1\n",
        "title = 'not a catalogue'\n",
        "providers = 3\n",
        "[providers]\nacme = 'not a table'\n",
    ],
)
def test_load_catalog_malformed_file_raises_configuration_error(tmp_path: Path, text: str) -> None:
    """A file that is not a catalogue raises ConfigurationError naming the file."""
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        load_catalog(extra_files=[path])
    assert str(path) in caught.value.message


def test_load_catalog_missing_file_names_the_setting(tmp_path: Path) -> None:
    """A missing extra file raises ConfigurationError naming its position and path."""
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigurationError) as caught:
        load_catalog(extra_files=[path])
    assert caught.value.setting == "catalog.extra_files[0]"
    assert str(path) in caught.value.message


def test_import_reads_no_catalogue_data() -> None:
    """Importing the providers package opens no catalogue file; loading does."""
    probe = textwrap.dedent("""
        import sys

        opened = []

        def audit(event, args):
            if event == "open" and str(args[0]).endswith(".toml"):
                opened.append(str(args[0]))

        sys.addaudithook(audit)
        import alter_mcp.providers
        import alter_mcp.providers.catalog
        print(len(opened))
        alter_mcp.providers.load_catalog()
        print(len(opened))
    """)
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    at_import, after_load = (int(line) for line in result.stdout.split())
    assert at_import == 0
    assert after_load >= 2


def test_package_all_is_sorted_and_complete() -> None:
    """The package __all__ is sorted and every name in it resolves."""
    names = providers_package.__all__
    assert list(names) == sorted(names)
    assert {"Catalog", "load_catalog", "Provider", "OAuthSpec", "Injection"} <= set(names)
    for name in names:
        assert getattr(providers_package, name) is not None
