"""The proxy package's public surface."""

from __future__ import annotations

import pytest

import alter_mcp.proxy as proxy


def test_package_all_is_sorted_and_importable() -> None:
    """The package's __all__ is sorted and every name in it resolves."""
    assert list(proxy.__all__) == sorted(proxy.__all__)
    for name in proxy.__all__:
        assert getattr(proxy, name) is not None


def test_package_unknown_name_raises_attribute_error() -> None:
    """Asking the package for a name it does not export fails like any module."""
    with pytest.raises(AttributeError):
        proxy.send_with_credential  # noqa: B018
