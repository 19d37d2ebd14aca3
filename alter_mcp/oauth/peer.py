"""Share one loopback connect port between the processes of one vault.

Claude Desktop and an IDE each start their own ``alter-mcp serve``, and the CLI's ``connect``
runs beside them: all of them need the connect pages on the one port whose callback URL is
registered at the providers. Whichever process binds the port first serves the pages for
all of them. That works because a connect session lives in the shared database, not in the
process: any process of the same vault can show its link and finish its callback, and the
process that created the session sees it complete by polling the store.

Before sending a user to a port it does not hold, a process proves the holder is the same
vault: it sends a fresh nonce and expects an HMAC of it under a key derived from the
key-encryption key, bound to the database URL. A stranger holding the port (another program,
or another vault) cannot answer, and the connect link (a bearer token) never goes to it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import httpx2
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alter_mcp.crypto import KeyEncryptionKey, Keyring, derive_subkey

__all__ = ["PEER_PATH", "peer_proof", "peer_route", "same_vault_at"]

#: Where a loopback holder answers the same-vault challenge.
PEER_PATH = "/.well-known/alter-mcp-vault"

_SUBKEY_INFO = b"alter-mcp loopback peer v1"
_PROBE_TIMEOUT = 2.0


def peer_proof(kek: KeyEncryptionKey, database_url: str, nonce: str) -> str:
    """Return the proof that this process holds ``kek`` for the vault at ``database_url``."""
    key = derive_subkey(kek, _SUBKEY_INFO)
    message = f"{database_url}\n{nonce}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def peer_route(keyring: Keyring, database_url: str) -> Route:
    """Return the route that answers a same-vault challenge (loopback listener only)."""

    async def answer(request: Request) -> Response:
        nonce = request.query_params.get("nonce", "")
        if not 16 <= len(nonce) <= 128 or not nonce.isalnum():
            return JSONResponse({"error": "nonce must be 16 to 128 letters or digits"},
                                status_code=400, headers={"Cache-Control": "no-store"})
        return JSONResponse({"proof": peer_proof(keyring.active, database_url, nonce)},
                            headers={"Cache-Control": "no-store"})

    return Route(PEER_PATH, answer, methods=["GET"])


async def same_vault_at(base_url: str, keyring: Keyring, database_url: str) -> bool:
    """Return True when the server at ``base_url`` proves it serves this very vault."""
    nonce = secrets.token_hex(16)
    try:
        async with httpx2.AsyncClient(timeout=_PROBE_TIMEOUT, trust_env=False,
                                      follow_redirects=False) as http:
            answer = await http.get(base_url + PEER_PATH, params={"nonce": nonce})
        proof = answer.json().get("proof") if answer.status_code == 200 else None
    except (httpx2.HTTPError, ValueError, AttributeError):
        return False
    if not isinstance(proof, str):
        return False
    # The holder may have rotated to a key this process still knows as a previous one.
    return any(hmac.compare_digest(proof, peer_proof(kek, database_url, nonce))
               for kek in keyring)
