"""The shipped catalogue data: every entry valid, complete, https-only and narrowly scoped."""

from __future__ import annotations

import tomllib
from collections import defaultdict
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from alter_mcp.providers import AuthKind, OAuthQuirk, Provider, load_catalog


def _shipped_entries() -> dict[str, dict[str, Any]]:
    """Read the raw provider tables of every shipped data file, keyed by id."""
    entries: dict[str, dict[str, Any]] = {}
    data = resources.files("alter_mcp.providers").joinpath("data")
    for item in sorted(data.iterdir(), key=lambda i: i.name):
        if item.name.endswith(".toml"):
            for provider_id, table in tomllib.loads(item.read_text("utf-8"))["providers"].items():
                entries[provider_id] = {**table, "id": provider_id}
    return entries


ENTRIES = _shipped_entries()
PROVIDERS = {pid: Provider.model_validate(entry) for pid, entry in ENTRIES.items()}
OAUTH_IDS = sorted(pid for pid, p in PROVIDERS.items() if p.auth_kind is AuthKind.OAUTH2)
SECRET_IDS = sorted(pid for pid, p in PROVIDERS.items() if p.auth_kind is not AuthKind.OAUTH2)

REQUIRED_OAUTH_IDS = (
    "acuity-scheduling", "adobe", "aircall", "airtable", "apollo", "asana", "atlassian",
    "attio", "autodesk", "basecamp", "bitbucket", "bitly", "box", "brex", "calendly", "cal-com",
    "canva", "clickup", "close", "constant-contact", "contentful", "deel", "dialpad",
    "digitalocean", "discord", "docusign", "dropbox", "ebay", "eventbrite", "facebook", "figma",
    "github", "gitlab", "google", "hubspot", "instagram", "klaviyo", "linear", "linkedin",
    "mailchimp", "mercury", "microsoft", "miro", "monday", "notion", "outreach", "pagerduty",
    "paypal", "pinterest", "pipedrive", "quickbooks", "ramp", "reddit", "ringcentral",
    "rippling", "salesforce", "sentry", "slack", "snapchat", "spotify", "square", "squarespace",
    "stripe", "tiktok", "todoist", "twitter", "typeform", "webex", "webflow", "xero", "zoom",
)

#: Groups of providers that deliberately send their credentials to the same exact hosts:
#: an OAuth grant and a managed secret (API key, PAT, bot token) for the same API.
SHARED_HOST_GROUPS = frozenset({
    frozenset({"airtable", "airtable-pat"}),
    frozenset({"asana", "asana-pat"}),
    frozenset({"clickup", "clickup-api-token"}),
    frozenset({"digitalocean", "digitalocean-token"}),
    frozenset({"discord", "discord-bot"}),
    frozenset({"figma", "figma-pat"}),
    frozenset({"github", "github-pat"}),
    frozenset({"gitlab", "gitlab-pat"}),
    frozenset({"hubspot", "hubspot-private-app"}),
    frozenset({"linear", "linear-api-key"}),
    frozenset({"mailchimp", "mailchimp-api-key"}),
    frozenset({"monday", "monday-api-token"}),
    frozenset({"notion", "notion-integration-token"}),
    frozenset({"pagerduty", "pagerduty-api-key"}),
    frozenset({"sentry", "sentry-auth-token"}),
    frozenset({"slack", "slack-bot-token"}),
    frozenset({"stripe", "stripe-api-key"}),
    frozenset({"todoist", "todoist-api-token"}),
})

#: Second-level public suffixes and shared hosting domains: a wildcard over any of these
#: would cover names that other people register.
PUBLIC_SUFFIXES = frozenset({
    "co.uk", "org.uk", "com.au", "net.au", "co.jp", "com.br", "co.nz", "co.in", "com.cn",
    "amazonaws.com", "cloudfront.net", "azurewebsites.net", "herokuapp.com", "appspot.com",
    "github.io", "gitlab.io", "vercel.app", "netlify.app", "pages.dev", "workers.dev",
    "web.app", "firebaseapp.com", "blogspot.com", "googleusercontent.com", "ngrok.io",
    "ngrok-free.app", "onrender.com", "fly.dev", "azurestaticapps.net", "cloudapp.net",
})

#: Authorize URLs that carry a placeholder the deployment must fill in with an override.
TEMPLATED_AUTHORIZE_URLS = frozenset({"rippling"})


def _too_broad(host: str) -> bool:
    """Return True when a wildcard host covers more than one registrable domain's names."""
    if "*" not in host:
        return False
    if not host.startswith("*.") or host.count("*") != 1:
        return True
    base = host.removeprefix("*.")
    return base.count(".") < 1 or base in PUBLIC_SUFFIXES


@pytest.mark.parametrize(
    ("host", "broad"),
    [
        ("*.com", True),
        ("*.co.uk", True),
        ("*.amazonaws.com", True),
        ("*.herokuapp.com", True),
        ("api.*.example.com", True),
        ("*.example.com", False),
        ("*.example.co.uk", False),
        ("*.s3.amazonaws.com", False),
        ("api.example.com", False),
    ],
)
def test_wildcard_rule_rejects_public_suffixes(host: str, broad: bool) -> None:
    """The host rule the data is held to flags wildcards over public or shared suffixes."""
    assert _too_broad(host) is broad


def test_data_defines_every_required_oauth_provider() -> None:
    """Every one of the 71 required OAuth provider ids is shipped as an oauth2 entry."""
    assert len(REQUIRED_OAUTH_IDS) == 71
    missing = sorted(set(REQUIRED_OAUTH_IDS) - set(OAUTH_IDS))
    assert missing == []


def test_data_defines_at_least_25_secret_providers() -> None:
    """At least 25 API-key, basic or AWS providers are shipped for managed secrets."""
    assert len(SECRET_IDS) >= 25


def test_data_ids_are_unique_across_files() -> None:
    """No provider id is defined in two shipped files."""
    seen: dict[str, str] = {}
    data = resources.files("alter_mcp.providers").joinpath("data")
    for item in data.iterdir():
        if item.name.endswith(".toml"):
            for provider_id in tomllib.loads(item.read_text("utf-8"))["providers"]:
                assert provider_id not in seen, (provider_id, seen.get(provider_id), item.name)
                seen[provider_id] = item.name


@pytest.mark.parametrize("provider_id", sorted(ENTRIES))
def test_entry_validates_against_schema(provider_id: str) -> None:
    """The shipped entry validates as a Provider and keeps its table name as id."""
    provider = Provider.model_validate(ENTRIES[provider_id])
    assert provider.id == provider_id
    assert provider.kind == "catalog"


@pytest.mark.parametrize("provider_id", sorted(ENTRIES))
def test_entry_has_name_category_and_https_docs(provider_id: str) -> None:
    """The entry names itself, has a category and links https documentation."""
    provider = PROVIDERS[provider_id]
    assert provider.name.strip()
    assert provider.category and provider.category == provider.category.lower()
    assert provider.docs_url and provider.docs_url.startswith("https://")


@pytest.mark.parametrize("provider_id", OAUTH_IDS)
def test_oauth_entry_urls_are_https(provider_id: str) -> None:
    """Every OAuth endpoint of the entry is an https URL (no loopback in shipped data)."""
    oauth = PROVIDERS[provider_id].oauth
    assert oauth is not None
    urls = [oauth.authorization_url, oauth.token_url, oauth.revocation_url, oauth.userinfo_url,
            oauth.refresh_url, oauth.exchange_url]
    for url in filter(None, urls):
        assert url.startswith("https://"), url
        host = url.removeprefix("https://").split("/", 1)[0]
        assert host and host == host.lower(), url


@pytest.mark.parametrize("provider_id", OAUTH_IDS)
def test_oauth_entry_names_where_its_oauth_app_is_created(provider_id: str) -> None:
    """Every OAuth entry links the developer console where an operator creates its app."""
    oauth = PROVIDERS[provider_id].oauth
    assert oauth is not None and oauth.console_url is not None
    assert oauth.console_url.startswith("https://") and " " not in oauth.console_url


@pytest.mark.parametrize("provider_id", OAUTH_IDS)
def test_oauth_entry_urls_have_no_placeholders(provider_id: str) -> None:
    """OAuth URLs are literal, except authorize URLs needing an override and {client_id}."""
    oauth = PROVIDERS[provider_id].oauth
    assert oauth is not None
    revocation = (oauth.revocation_url or "").replace("{client_id}", "")
    urls = [oauth.token_url, revocation, oauth.userinfo_url, oauth.refresh_url,
            oauth.exchange_url]
    for url in filter(None, urls):
        assert "{" not in url, url
    templated = "{" in oauth.authorization_url
    assert templated == (provider_id in TEMPLATED_AUTHORIZE_URLS)
    if templated:
        assert "override" in (PROVIDERS[provider_id].notes or "")


@pytest.mark.parametrize("provider_id", OAUTH_IDS)
def test_oauth_entry_scopes_are_single_tokens(provider_id: str) -> None:
    """Default scopes are distinct and none contains whitespace or the scope separator."""
    oauth = PROVIDERS[provider_id].oauth
    assert oauth is not None
    assert len(set(oauth.default_scopes)) == len(oauth.default_scopes)
    for scope in oauth.default_scopes:
        assert scope and not any(c.isspace() for c in scope), scope
        assert oauth.scope_separator not in scope, scope


@pytest.mark.parametrize("provider_id", OAUTH_IDS)
def test_oauth_entry_quirks_are_consistent(provider_id: str) -> None:
    """Token-response quirks only appear with the account source that needs them."""
    oauth = PROVIDERS[provider_id].oauth
    assert oauth is not None
    assert len(set(oauth.quirks)) == len(oauth.quirks)
    if OAuthQuirk.SLACK_AUTHED_USER in oauth.quirks:
        assert oauth.account_field.startswith("authed_user.")


@pytest.mark.parametrize("provider_id", sorted(ENTRIES))
def test_entry_api_hosts_are_lowercase_and_narrow(provider_id: str) -> None:
    """API hosts are lowercase DNS names whose wildcards stay inside one registrable domain."""
    hosts = PROVIDERS[provider_id].api_hosts
    assert len(set(hosts)) == len(hosts)
    for host in hosts:
        assert host == host.lower() and "/" not in host and ":" not in host, host
        assert not _too_broad(host), host


def test_data_api_hosts_shared_only_deliberately() -> None:
    """Two providers share an exact API host only within an allow-listed group."""
    owners: dict[str, set[str]] = defaultdict(set)
    for provider_id, provider in PROVIDERS.items():
        for host in provider.api_hosts:
            owners[host].add(provider_id)
    shared = {host: frozenset(ids) for host, ids in owners.items() if len(ids) > 1}
    unexpected = {host: sorted(ids) for host, ids in shared.items()
                  if ids not in SHARED_HOST_GROUPS}
    assert unexpected == {}


def test_data_shared_host_groups_are_all_used() -> None:
    """Every allow-listed group really shares a host, so the allow-list does not go stale."""
    owners: dict[str, set[str]] = defaultdict(set)
    for provider_id, provider in PROVIDERS.items():
        for host in provider.api_hosts:
            owners[host].add(provider_id)
    used = {frozenset(ids) for ids in owners.values() if len(ids) > 1}
    assert SHARED_HOST_GROUPS - used == frozenset()


@pytest.mark.parametrize("provider_id", SECRET_IDS)
def test_secret_entry_marks_identifiers_not_secret(provider_id: str) -> None:
    """Managed-secret fields are snake_case, and regions and ids are marked not secret."""
    provider = PROVIDERS[provider_id]
    for field in provider.secret_fields:
        if field.name in {"region", "application_id", "account_sid", "email", "access_key_id"}:
            assert field.secret is False, field.name
        elif field.name != "session_token":
            assert field.secret is True, field.name
    assert any(field.secret for field in provider.secret_fields)


@pytest.mark.parametrize(
    "provider_id", [pid for pid in SECRET_IDS if PROVIDERS[pid].auth_kind is AuthKind.AWS_SIGV4]
)
def test_aws_entry_signs_for_its_service_only(provider_id: str) -> None:
    """An AWS entry names its service, its hosts are that service's, and the token is optional."""
    provider = PROVIDERS[provider_id]
    assert provider.aws_service
    for host in provider.api_hosts:
        assert host.endswith(".amazonaws.com") and host != "*.amazonaws.com", host
        labels = host.removeprefix("*.").split(".")
        assert labels[0] == provider.aws_service, host
    token = {f.name: f for f in provider.secret_fields}["session_token"]
    assert token.required is False


def test_catalogue_loads_the_shipped_data() -> None:
    """load_catalog returns exactly the shipped entries, split into OAuth and secrets."""
    catalog = load_catalog()
    assert list(catalog) == sorted(ENTRIES)
    assert [p.id for p in catalog.oauth_providers()] == OAUTH_IDS
    assert [p.id for p in catalog.secret_providers()] == SECRET_IDS


PSL = Path("/usr/share/publicsuffix/public_suffix_list.dat")

#: Wildcards left over a public suffix on purpose, and why each is safe.
PSL_EXEMPT = {
    # A bucket is named per request, not per account, and SigV4 never sends the secret key:
    # the signature covers this host, path and time only, and the bucket's owner does not
    # see it (S3 logs carry no Authorization header).
    "s3.amazonaws.com": "sigv4",
    **{f"s3.{region}.amazonaws.com": "sigv4" for region in (
        "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1",
        "ap-east-2", "ap-south-1", "ap-south-2", "ap-southeast-1", "ap-southeast-2",
        "ap-southeast-3", "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7",
        "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ca-central-1", "ca-west-1",
        "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1",
        "eu-south-2", "eu-north-1", "il-central-1", "me-south-1", "me-central-1",
        "mx-central-1", "sa-east-1", "us-gov-east-1", "us-gov-west-1")},
}


def _public_suffixes() -> frozenset[str]:
    """Return every rule of the Public Suffix List, without its '*.' or '!' prefix."""
    rules = set()
    for line in PSL.read_text("utf-8").splitlines():
        rule = line.strip().split(" ")[0]
        if rule and not rule.startswith("//"):
            rules.add(rule.removeprefix("*.").removeprefix("!").encode("idna").decode())
    return frozenset(rules)


@pytest.mark.skipif(not PSL.exists(), reason="Debian's publicsuffix package is not installed")
def test_data_wildcards_never_cover_a_public_suffix() -> None:
    """No wildcard host spans a Public Suffix List name, except the listed SigV4 S3 hosts."""
    suffixes = _public_suffixes()
    assert "myshopify.com" in suffixes and "googleapis.com" in suffixes  # the list is real
    covering = {}
    for provider_id, provider in PROVIDERS.items():
        for host in provider.api_hosts:
            if not host.startswith("*."):
                continue
            base = host.removeprefix("*.")
            hit = sorted(s for s in suffixes if s == base or s.endswith("." + base)
                         or (base.endswith("." + s) and "." in s))
            if hit and not (base in PSL_EXEMPT and provider.auth_kind is AuthKind.AWS_SIGV4):
                covering[f"{provider_id}: {host}"] = hit[:3]
    assert covering == {}


@pytest.mark.parametrize("provider_id", OAUTH_IDS)
def test_oauth_entry_identity_hosts_are_its_api_hosts(provider_id: str) -> None:
    """Every host the vault calls with a grant's token (userinfo, metadata) is an API host."""
    provider = PROVIDERS[provider_id]
    assert provider.oauth is not None
    urls = [provider.oauth.userinfo_url, *(v.url for v in provider.connection)]
    for url in filter(None, urls):
        host = urlsplit(url).hostname or ""
        assert provider.host_allowed(host), (url, provider.api_hosts)
