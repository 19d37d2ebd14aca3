"""A provider API stand-in for the replica tests and bench: a tiny uvicorn ASGI app.

Every request is answered with the SHA-256 of its ``Authorization`` and ``X-Api-Key`` headers
(never the values), so a test can tell which credential was sent without the vault's scrubber
having anything to remove. Run: ``python tests/replicas/echo_api.py``; it binds an ephemeral
port on 127.0.0.1 and logs ``Uvicorn running on http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import uvicorn

READY = r"Uvicorn running on http://127\.0\.0\.1:(\d+)"


def digest(value: str) -> str:
    """Return the hex SHA-256 of a header value, as the API reports it."""
    return hashlib.sha256(value.encode()).hexdigest()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer any HTTP request with the digests of its credential headers."""
    if scope["type"] != "http":
        return
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    answer = {name: digest(headers[name]) if name in headers else None
              for name in ("authorization", "x-api-key")}
    body = json.dumps({"path": scope["path"], **answer}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=0, log_level="info", access_log=False)
