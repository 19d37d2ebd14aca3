"""Find the one credential of an HTTP request in its raw headers, or say why there is none.

A request carries at most one credential: ``Authorization: Bearer <JWT or amk_ key>`` or
``X-Alter-Agent-Key: amk_…``. Anything that could make two parts of the stack disagree about
who is calling is refused rather than resolved: a repeated header (Starlette's ``Headers``
would silently pick the first), a comma-joined value, both headers at once, a JWT in the agent
key header, or a scheme other than Bearer. The raw ASGI header list is read because that is
the only place a duplicate is still visible. No refusal quotes the header's value.
"""

from __future__ import annotations

from collections.abc import Iterable

from alter_mcp.apikeys import KEY_PREFIX
from alter_mcp.errors import AuthenticationError

__all__ = ["AGENT_KEY_HEADER", "presented_credential"]

#: The header an agent may use for its key instead of ``Authorization: Bearer``.
AGENT_KEY_HEADER = "x-alter-agent-key"
_AUTHORIZATION = b"authorization"
_AGENT_KEY = AGENT_KEY_HEADER.encode()
_ONE = "Send exactly one credential."


def _refused(message: str, reason: str, hint: str = _ONE) -> AuthenticationError:
    return AuthenticationError(message, hint=hint, reason=reason)


def _single(value: str) -> bool:
    """Return True when ``value`` is one token: no list separator, no inner whitespace."""
    return "," not in value and len(value.split()) == 1


def _bearer(raw: bytes) -> str:
    scheme, _, rest = raw.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        # The scheme is not echoed: a bare secret sent without "Bearer " would be the scheme.
        raise _refused("The Authorization header must use the Bearer scheme.", "wrong_scheme",
                       "Send Authorization: Bearer <token> (Basic and other schemes are not "
                       "accepted).")
    token = rest.strip()
    if not token:
        raise _refused("The Authorization header carries no token.", "malformed",
                       "Send Authorization: Bearer <token>.")
    if not _single(token):
        raise _refused("The Authorization header carries more than one credential "
                       "(comma-joined or space-separated).", "several_credentials")
    return token


def _agent_key(raw: bytes) -> str:
    key = raw.decode("latin-1").strip()
    if not _single(key):
        raise _refused("The X-Alter-Agent-Key header carries more than one value "
                       "(comma-joined or space-separated).", "several_credentials")
    if key.count(".") == 2 or key.startswith("eyJ"):
        raise _refused("The X-Alter-Agent-Key header carries a JWT; it accepts agent API "
                       "keys only.", "jwt_as_agent_key",
                       "Send a user token as Authorization: Bearer <token>, never as an "
                       "agent key.")
    if not key.startswith(KEY_PREFIX):
        raise _refused("The X-Alter-Agent-Key header does not hold an agent API key "
                       f"({KEY_PREFIX}…).", "not_an_agent_key",
                       "Send the amk_… key exactly as it was shown at creation.")
    return key


def presented_credential(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """Return the request's one credential (None if it has none), or raise why it is refused."""
    auth: list[bytes] = []
    keys: list[bytes] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered == _AUTHORIZATION:
            auth.append(value)
        elif lowered == _AGENT_KEY:
            keys.append(value)
    if len(auth) > 1:
        raise _refused(f"The request carries {len(auth)} Authorization headers.",
                       "several_credentials")
    if len(keys) > 1:
        raise _refused(f"The request carries {len(keys)} X-Alter-Agent-Key headers.",
                       "several_credentials")
    if auth and keys:
        raise _refused("Send either a user token or an agent API key, not both: an agent key "
                       "cannot act for a user.", "both_credentials",
                       "Send Authorization or X-Alter-Agent-Key, not both.")
    if keys:
        return _agent_key(keys[0])
    return _bearer(auth[0]) if auth else None
