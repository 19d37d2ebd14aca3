"""A real identity provider for bearer-token tests: oauth2-mock-server minting RS256 JWTs.

``MockIdpPeer().start()`` runs ``node tests/peers/mockidp/server.mjs`` on 127.0.0.1 and stops
it by its own PID. ``token(sub=..., aud=..., **claims)`` fetches a validly signed JWT from the
peer's real token endpoint with those claims (``None`` removes a claim); ``rotate()`` adds a
signing key the server has not seen yet. ``forge_*`` build the hostile variants (``alg=none``,
HS256 keyed with the public key, a bad signature, an unknown key) from a real token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any, cast

import httpx2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.peers.oidc import node_binary
from tests.peers.process import PeerProcess

__all__ = ["MOCKIDP_DIR", "MockIdpPeer", "b64url", "mockidp_installed"]

MOCKIDP_DIR = Path(__file__).resolve().parent / "mockidp"


def mockidp_installed() -> bool:
    """True when ``scripts/install-peers`` has installed oauth2-mock-server."""
    return (MOCKIDP_DIR / "node_modules" / "oauth2-mock-server" / "package.json").is_file()


def b64url(data: bytes) -> str:
    """Base64url without padding (JOSE)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


class MockIdpPeer:
    """oauth2-mock-server 8.2.3 as a child process; use as a context manager or start/stop."""

    def __init__(self, *, node: str | None = None) -> None:
        self.node = node or node_binary()
        self.process: PeerProcess | None = None
        self.port = 0

    def start(self) -> MockIdpPeer:
        if self.node is None:
            raise RuntimeError("node is not installed")
        self.process = PeerProcess([self.node, str(MOCKIDP_DIR / "server.mjs")],
                                   name="oauth2-mock-server", cwd=MOCKIDP_DIR)
        match = self.process.start(ready_pattern=r"^READY (\d+)\s*$", timeout=20)
        assert match is not None
        self.port = int(match.group(1))
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> MockIdpPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_uri(self) -> str:
        return self.issuer + "/jwks"

    def token(self, **claims: Any) -> str:
        """Return a JWT from the token endpoint with ``claims`` merged into its payload."""
        with httpx2.Client(timeout=10, trust_env=False) as client:
            resp = client.post(self.issuer + "/token", data={
                "grant_type": "client_credentials", "claims": json.dumps(claims)})
            resp.raise_for_status()
            return cast(str, resp.json()["access_token"])

    def rotate(self) -> str:
        """Add a signing key and return its kid."""
        with httpx2.Client(timeout=10, trust_env=False) as client:
            resp = client.post(self.issuer + "/__rotate")
            resp.raise_for_status()
            return cast(str, resp.json()["kid"])

    def jwks(self) -> dict[str, Any]:
        with httpx2.Client(timeout=10, trust_env=False) as client:
            return cast(dict[str, Any], client.get(self.jwks_uri).json())

    # -- hostile variants of a real token --------------------------------------------------
    @staticmethod
    def parts(token: str) -> tuple[dict[str, Any], dict[str, Any], str]:
        head, body, sig = token.split(".")
        return json.loads(_b64decode(head)), json.loads(_b64decode(body)), sig

    @staticmethod
    def forge_none(token: str) -> str:
        """The same claims with ``alg: none`` and no signature."""
        header, payload, _ = MockIdpPeer.parts(token)
        header["alg"] = "none"
        return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}."

    def forge_hs256(self, token: str) -> str:
        """The same claims, HS256-signed with the issuer's public key (PEM) as the secret."""
        header, payload, _ = self.parts(token)
        jwk = next(k for k in self.jwks()["keys"] if k["kid"] == header["kid"])
        numbers = rsa.RSAPublicNumbers(int.from_bytes(_b64decode(jwk["e"]), "big"),
                                       int.from_bytes(_b64decode(jwk["n"]), "big"))
        pem = numbers.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
        header["alg"] = "HS256"
        signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        sig = hmac.new(pem, signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{b64url(sig)}"

    @staticmethod
    def forge_bad_signature(token: str) -> str:
        """The real token with one signature byte flipped."""
        head, body, sig = token.split(".")
        raw = bytearray(_b64decode(sig))
        raw[len(raw) // 2] ^= 0x01
        return f"{head}.{body}.{b64url(bytes(raw))}"

    @staticmethod
    def forge_unknown_key(token: str) -> str:
        """The same claims, RS256-signed by a key the issuer never published."""
        header, payload, _ = MockIdpPeer.parts(token)
        header["kid"] = "not-published-" + str(int(time.time()))
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        signing = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
        sig = key.sign(signing.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing}.{b64url(sig)}"
