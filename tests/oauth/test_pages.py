"""The connect pages' HTML: contrast, the CSP's style hash, and provider errors in plain words."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from alter_mcp.errors import ConnectFlowError, ProviderAPIError
from alter_mcp.oauth import pages
from alter_mcp.oauth.flow import ProviderChoice
from alter_mcp.oauth.sessions import refuse


def luminance(color: str) -> float:
    """Return the WCAG relative luminance of a #rrggbb colour."""
    channels = [int(color[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """Return the WCAG contrast ratio of two colours."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("palette", [pages.LIGHT, pages.DARK], ids=["light", "dark"])
def test_pages_colours_meet_wcag_aa(palette: dict[str, str]) -> None:
    """Text is at least 4.5:1 on the page and on hover; borders and icons at least 3:1."""
    for role in ("fg", "muted", "accent", "ok", "bad"):
        assert contrast(palette[role], palette["bg"]) >= 4.5, role
    assert contrast(palette["fg"], palette["hover"]) >= 4.5
    assert contrast(palette["line"], palette["bg"]) >= 3.0
    assert contrast(palette["accent"], palette["hover"]) >= 3.0  # the focus ring on hover


def test_pages_csp_allows_exactly_the_stylesheet_and_no_framing() -> None:
    """The CSP's style hash is the hash of the one stylesheet; nothing else may load."""
    digest = base64.b64encode(hashlib.sha256(pages.STYLE.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in pages.CSP
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "form-action 'none'",
                      "base-uri 'none'", "img-src 'none'"):
        assert directive in pages.CSP
    assert "unsafe" not in pages.CSP and "script" not in pages.CSP
    document = pages.render(pages.picker([ProviderChoice("github", "GitHub")]))
    assert f"<style>{pages.STYLE}</style>" in document and "style=" not in document


@pytest.mark.parametrize(("code", "title", "status"), [
    ("access_denied", "You declined", 403),
    ("invalid_scope", "Permissions not accepted", 502),
    ("temporarily_unavailable", "The provider is busy", 502),
    ("login_required", "Sign-in needed", 502),
    ("made_up_error", "The provider refused the connection", 502),
])
def test_pages_provider_errors_are_explained_in_plain_words(code: str, title: str,
                                                             status: int) -> None:
    """Each provider error code gets a title and a next step; the code is shown, escaped."""
    reason = "access_denied" if code == "access_denied" else "provider_error"
    page = pages.refused(ConnectFlowError("x", reason=reason), status=status,
                         provider_error=code)
    assert page.title == title and page.status == status
    assert f"<code>{code}</code>" in page.body


def test_pages_hostile_error_parameters_are_neutralised() -> None:
    """Markup in an error code is stripped; nothing from the callback becomes HTML."""
    page = pages.refused(ConnectFlowError("x", reason="provider_error"), status=502,
                         provider_error="<script>alert(1)</script>")
    document = pages.render(page)
    assert "<script" not in document and "scriptalert1script" in document


def test_pages_link_problems_and_other_errors_say_what_to_do() -> None:
    """Expired, used and unknown links each say so; other errors show their safe message."""
    for reason, title in (("expired", "This link has expired"),
                          ("used", "This link was already used"),
                          ("unknown_link", "This link is not valid")):
        page = pages.refused(refuse(reason), status=410)
        assert page.title == title and "new connect link" in page.body
    failed = pages.refused(ProviderAPIError("GitHub refused the code (invalid_client).",
                                            hint="Check the client secret."), status=502)
    assert failed.title == "Connection not completed"
    assert "invalid_client" in failed.body and "client secret" in failed.body


def test_pages_documents_are_small_and_self_contained() -> None:
    """Every page is one small document: a language, one h1, one main, no script or link."""
    for page in (pages.picker([ProviderChoice("a", "A"), ProviderChoice("b", "B <&>")]),
                 pages.connected("GitHub", "a@b.example", repaired=False),
                 pages.unexpected()):
        document = pages.render(page)
        assert len(document.encode()) < 6000
        assert document.startswith("<!doctype html><html lang=en>")
        assert document.count("<h1") == 1 and document.count("<main") == 1
        assert not re.search(r"<script|<link|<img|<iframe|http", document)
    assert "B &lt;&amp;&gt;" in pages.render(pages.picker([ProviderChoice("b", "B <&>")]))
