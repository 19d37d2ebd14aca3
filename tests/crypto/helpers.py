"""Helpers for the crypto tests."""

from __future__ import annotations

import base64


def secret_forms(material: bytes) -> list[str]:
    """Return the textual forms in which key material could leak: hex, base64 and bytes repr."""
    return [
        material.hex(),
        material.hex().upper(),
        base64.b64encode(material).decode(),
        base64.b64encode(material).decode().rstrip("="),
        base64.urlsafe_b64encode(material).decode().rstrip("="),
        repr(material),
    ]


def assert_no_leak(text: str, material: bytes) -> None:
    """Fail if `text` contains `material` in any of its textual forms."""
    for form in secret_forms(material):
        assert form not in text, "key material leaked"
