"""A stand-in for the user's web browser, run by ``webbrowser.open`` through ``BROWSER``.

``python tests/seeds/browser.py URL`` follows the connect link's redirects on loopback with a
cookie jar (the sandbox runs with ``auto_approve``, so no page needs a click) and exits 0 when
the last page is a 200, as a person would close the tab on the "connected" page.
"""

from __future__ import annotations

import sys
from urllib.parse import urljoin, urlsplit

import httpx2

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def main(url: str) -> int:
    """Follow ``url`` to its last page; return 0 when that page is a 200."""
    with httpx2.Client(follow_redirects=False, trust_env=False, timeout=10.0) as browser:
        for _ in range(10):
            if urlsplit(url).hostname not in _LOOPBACK:
                print(f"browser: refusing to leave loopback for {url}", file=sys.stderr)
                return 2
            response = browser.get(url)
            location = response.headers.get("location")
            if not response.is_redirect or location is None:
                return 0 if response.status_code == 200 else 1
            url = urljoin(url, location)
    return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
