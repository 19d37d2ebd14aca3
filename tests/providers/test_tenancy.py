"""Connection values, templated hosts and default headers in the schema and the guard."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from alter_mcp.errors import BlockedDestinationError, InvalidInputError
from alter_mcp.providers import Provider, load_catalog
from alter_mcp.providers.tenancy import dotted, render_host
from alter_mcp.proxy.guard import prepare
from alter_mcp.proxy.inject import inject
from alter_mcp.redaction import Secret

SHIPPED = load_catalog()
TOKEN = "shpat_0123456789abcdef"


def entry(**fields: Any) -> dict[str, Any]:
    """Return a valid managed-secret entry with one user-valued ``shop``, plus ``fields``."""
    return {
        "id": "shop", "name": "Shop", "auth_kind": "api_key",
        "api_hosts": ["{shop}.myshopify.com"],
        "connection": [{"name": "shop", "label": "Shop", "source": "user",
                        "pattern": "[a-z0-9-]{1,60}"}],
        "injection": [{"kind": "header", "name": "X-Shopify-Access-Token",
                       "format": "{access_token}"}],
        "secret_fields": [{"name": "access_token", "label": "Token"}],
    } | fields


@pytest.mark.parametrize(("hosts", "problem"), [
    (["{store}.myshopify.com"], "undeclared"),
    (["{shop}.com"], "fixed domain"),
    (["{shop}{shop}.myshopify.com"], "once"),
    (["{shop}-x.{shop}.example.com"], "once"),
    (["api.{shop}.example.com"], "first"),
])
def test_tenancy_schema_refuses_loose_host_templates(hosts: list[str], problem: str) -> None:
    """A template must use a declared value inside one label of a fixed two-label domain."""
    with pytest.raises(ValidationError, match=problem):
        Provider.model_validate(entry(api_hosts=hosts))


def test_tenancy_schema_refuses_provider_sourced_values_for_managed_secrets() -> None:
    """A managed secret has no token response, so its values must come from the user."""
    value = {"name": "shop", "label": "Shop", "source": "token_response", "field": "shop",
             "pattern": "[a-z]+"}
    with pytest.raises(ValidationError, match="come from the user"):
        Provider.model_validate(entry(connection=[value]))


def test_tenancy_render_host_keeps_a_value_inside_its_label() -> None:
    """A value with a dot cannot move a label template into another domain."""
    assert render_host("{shop}.myshopify.com", {"shop": "acme"}) == "acme.myshopify.com"
    assert render_host("{shop}.myshopify.com", {"shop": "evil.com#"}) is None
    assert render_host("{shop}.myshopify.com", {"shop": "evil.example.com"}) is None
    assert render_host("{shop}.myshopify.com", {}) is None
    assert render_host("{instance}", {"instance": "na1.my.salesforce.com"}) \
        == "na1.my.salesforce.com"


def test_tenancy_dotted_reads_list_indexes() -> None:
    """Dotted paths index lists by digits (DocuSign accounts.0.base_uri, Atlassian 0.id)."""
    assert dotted({"accounts": [{"base_uri": "https://na3.docusign.net"}]},
                  "accounts.0.base_uri") == "https://na3.docusign.net"
    assert dotted([{"id": "c1"}], "0.id") == "c1"
    assert dotted([], "0.id") is None and dotted({"a": True}, "a") is None


@pytest.mark.parametrize(("provider_id", "values", "own", "others"), [
    ("shopify-admin", {"shop": "acme"}, "acme.myshopify.com",
     ["attacker.myshopify.com", "myshopify.com", "acme.myshopify.com.evil.example"]),
    ("zendesk", {"subdomain": "acme"}, "acme.zendesk.com", ["other.zendesk.com"]),
    ("freshdesk", {"domain": "acme"}, "acme.freshdesk.com", ["other.freshdesk.com"]),
    ("jira-api-token", {"site": "acme"}, "acme.atlassian.net", ["other.atlassian.net"]),
    ("mailchimp-api-key", {"dc": "us21"}, "us21.api.mailchimp.com", ["us6.api.mailchimp.com"]),
    ("mailchimp", {"dc": "us21"}, "us21.api.mailchimp.com", ["us6.api.mailchimp.com"]),
    ("salesforce", {"instance": "acme.my.salesforce.com"}, "acme.my.salesforce.com",
     ["other.my.salesforce.com"]),
    ("docusign", {"base_host": "na3.docusign.net"}, "na3.docusign.net", ["na2.docusign.net"]),
    ("pipedrive", {"company_host": "acme.pipedrive.com"}, "acme.pipedrive.com",
     ["other.pipedrive.com"]),
])
def test_tenancy_shipped_template_allows_exactly_the_grants_host(
    provider_id: str, values: dict[str, str], own: str, others: list[str],
) -> None:
    """A shipped tenant entry admits its grant's own host and refuses every other tenant's."""
    provider = SHIPPED.get(provider_id)
    assert own in provider.hosts_for(values)
    prepared = prepare(provider, "GET", f"https://{own}/x", connection=values)
    assert prepared.host == own
    for host in others:
        with pytest.raises(BlockedDestinationError):
            prepare(provider, "GET", f"https://{host}/x", connection=values)
        # With no values at all (a grant from before the change), no tenant host is allowed.
    with pytest.raises(BlockedDestinationError):
        prepare(provider, "GET", f"https://{own}/x")


def test_tenancy_inject_rechecks_a_hand_built_request_for_another_tenant() -> None:
    """A prepared request whose host is swapped to another shop gets no credential."""
    provider = SHIPPED.get("shopify-admin")
    prepared = prepare(provider, "GET", "https://acme.myshopify.com/admin/api/shop.json",
                       connection={"shop": "acme"})
    forged = replace(prepared, host="attacker.myshopify.com")
    with pytest.raises(BlockedDestinationError):
        inject(forged, provider, {"access_token": Secret(TOKEN)})
    sent = inject(prepared, provider, {"access_token": Secret(TOKEN)})
    assert dict(sent.headers)["X-Shopify-Access-Token"] == TOKEN


def test_tenancy_user_value_must_match_the_shipped_pattern() -> None:
    """A shop name that is a whole domain is refused, naming the field."""
    [value] = SHIPPED.get("shopify-admin").connection
    assert value.accept("acme-store", provider_id="shopify-admin") == "acme-store"
    for bad in ("evil.example.com", "ACME store", "-x", "a" * 300, 7):
        with pytest.raises(InvalidInputError) as caught:
            value.accept(bad, provider_id="shopify-admin")
        assert caught.value.field == "connection.shop"


@pytest.mark.parametrize("name", ["Authorization", "X-Shopify-Access-Token", "Host", "Cookie",
                                  "Transfer-Encoding"])
def test_tenancy_default_headers_never_shadow_injection_or_framing(name: str) -> None:
    """A default header may not name an injected, forbidden or hop-by-hop header."""
    with pytest.raises(ValidationError, match="default header"):
        Provider.model_validate(entry(default_headers={name: "x"}))


def test_tenancy_default_header_is_sent_and_the_caller_may_override_it() -> None:
    """anthropic-version goes out by default, and a caller's own value replaces it."""
    provider = SHIPPED.get("anthropic")
    credential = {"api_key": Secret("sk-ant-0123456789")}
    url = "https://api.anthropic.com/v1/messages"
    default = inject(prepare(provider, "POST", url, json={}), provider, credential)
    assert dict(default.headers)["anthropic-version"] == "2023-06-01"
    mine = inject(prepare(provider, "POST", url, json={},
                          headers={"Anthropic-Version": "2099-01-01"}), provider, credential)
    versions = [v for k, v in mine.headers if k.lower() == "anthropic-version"]
    assert versions == ["2099-01-01"]


def test_tenancy_injected_header_stays_unoverridable_beside_defaults() -> None:
    """Defaults do not loosen injection: the caller still cannot set x-api-key."""
    provider = SHIPPED.get("anthropic")
    with pytest.raises(BlockedDestinationError):
        prepare(provider, "GET", "https://api.anthropic.com/v1/models",
                headers={"x-api-key": "mine"})


def test_tenancy_schema_refuses_a_base_url_off_the_api_hosts() -> None:
    """api_base_url names one of the entry's own (templated) hosts, nothing else."""
    Provider.model_validate(entry(api_base_url="https://{shop}.myshopify.com/admin/api"))
    for url in ("https://evil.example/x", "https://{shop}.evil.example/x", "ftp://{shop}.x/"):
        with pytest.raises(ValidationError, match="api_base_url"):
            Provider.model_validate(entry(api_base_url=url))


def test_tenancy_schema_refuses_user_values_for_oauth_until_the_page_asks() -> None:
    """An OAuth entry cannot declare a user-given value: no page asks for it yet."""
    oauth = {"authorization_url": "https://a.example/auth", "token_url": "https://a.example/t",
             "account_source": "token_response"}
    with pytest.raises(ValidationError, match="token response or a metadata endpoint"):
        Provider.model_validate(entry(auth_kind="oauth2", secret_fields=[], oauth=oauth,
                                      injection=[{"kind": "bearer"}]))


def test_tenancy_default_user_agent_replaces_ours() -> None:
    """A catalogue User-Agent default (Basecamp wants a contact) is the only one sent."""
    provider = Provider.model_validate(entry(default_headers={"User-Agent": "App (me@x.test)"}))
    prepared = prepare(provider, "GET", "https://acme.myshopify.com/x",
                       connection={"shop": "acme"})
    sent = inject(prepared, provider, {"access_token": Secret(TOKEN)})
    assert [v for k, v in sent.headers if k.lower() == "user-agent"] == ["App (me@x.test)"]


def test_tenancy_stored_value_outside_the_pattern_reaches_no_host() -> None:
    """A value stored before an override tightened the pattern renders no host at all."""
    provider = Provider.model_validate(entry())
    assert provider.hosts_for({"shop": "acme"}) == ("acme.myshopify.com",)
    assert provider.hosts_for({"shop": "ACME"}) == ()
    assert provider.hosts_for({"shop": "acme", "other": "x"}) == ("acme.myshopify.com",)
