"""A user's browser for the MCP Inspector's OAuth (run as its ``BROWSER``): open the URL, approve
alter-mcp's consent page, log in at the upstream IdP as ``BRIDGE_LOGIN_HINT``, and land on the
Inspector's loopback callback. Loopback URLs only."""

from __future__ import annotations

import os
import re
import sys
from urllib.parse import urlencode, urljoin, urlsplit

import httpx2

_HIDDEN = re.compile(r'name="(txn_id|csrf_token)" value="([^"]*)"')


def _loopback(url: str) -> str:
    if urlsplit(url).hostname not in ("127.0.0.1", "localhost"):
        raise SystemExit(f"refusing non-loopback URL {url!r}")
    return url


def main(url: str) -> int:
    """Play the user from ``url`` to the end of the redirect chain; 0 on a 2xx page."""
    hint = os.environ.get("BRIDGE_LOGIN_HINT", "alice")
    with httpx2.Client(trust_env=False, follow_redirects=False, timeout=30) as http:
        for _ in range(30):
            response = http.get(_loopback(url))
            if response.is_redirect:
                url = urljoin(url, response.headers["location"])
                continue
            if response.status_code == 200 and "consentForm" in response.text:
                form = dict(_HIDDEN.findall(response.text))
                posted = http.post(url, data={**form, "action": "approve", "submit": "true"})
                url = urljoin(url, posted.headers["location"])
                url += "&" + urlencode({"login_hint": hint})
                continue
            return 0 if response.is_success else 1
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
