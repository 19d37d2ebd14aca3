"""Probes for load balancers: ``/health`` (liveness) and ``/ready`` (readiness).

``/health`` answers 200 while the process serves requests and checks nothing else, so a
database outage never gets a healthy process restarted. ``/ready`` answers 200 only when this
replica can serve: the database answers, the encryption keys are loaded and the schema is at
the version this code writes; otherwise 503 with ``Retry-After`` and the first failing check.
Neither needs a credential, and neither names a URL, a key id or a path.
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from fastmcp import FastMCP
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alter_mcp.crypto import RecordBinding
from alter_mcp.errors import AlterError, DecryptionError, StoreError
from alter_mcp.server.auth import RETRY_AFTER
from alter_mcp.vault import AlterVault

__all__ = ["Readiness", "readiness", "register_health_routes"]

#: The longest the database may take to answer a readiness probe.
_PROBE_LIMIT = 5.0
_NO_STORE = {"Cache-Control": "no-store"}
_PROBE = b"ready"
_PROBE_BINDING = RecordBinding(table="readiness", record_id="probe", field="probe")


@dataclass(frozen=True, slots=True)
class Readiness:
    """The outcome of the readiness checks: the passed ones, or the first failure and why."""

    passed: tuple[str, ...]
    failed: str | None = None
    detail: str | None = None

    @property
    def ready(self) -> bool:
        """Return True when every check passed."""
        return self.failed is None


async def readiness(vault: AlterVault) -> Readiness:
    """Check, in order, that the database answers, the keys are loaded and the schema is current."""
    store = vault.store
    try:
        with anyio.fail_after(_PROBE_LIMIT):
            applied = await store.schema_version()
    except StoreError as exc:
        return Readiness((), "database", exc.message)
    except TimeoutError:
        return Readiness((), "database", f"no answer within {_PROBE_LIMIT:g} seconds")
    try:
        # A round trip through the active key: proves the keys in memory seal and open.
        envelope = vault.envelope
        if envelope.open(envelope.seal(_PROBE, aad=_PROBE_BINDING), aad=_PROBE_BINDING) != _PROBE:
            raise DecryptionError("The readiness probe did not round-trip.")
    except AlterError:
        return Readiness(("database",), "keys", "the encryption keys cannot seal and open data")
    expected = store.expected_schema_version
    if applied != expected:
        return Readiness(("database", "keys"), "migrations",
                         f"the database schema is v{applied}, this server writes v{expected}")
    return Readiness(("database", "keys", "migrations"))


def register_health_routes(server: FastMCP, vault: AlterVault) -> None:
    """Serve ``/health`` and ``/ready`` on ``server``'s HTTP app."""

    @server.custom_route("/health", methods=["GET"])
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"}, headers=_NO_STORE)

    @server.custom_route("/ready", methods=["GET"])
    async def ready(_: Request) -> Response:
        result = await readiness(vault)
        checks = {name: "ok" for name in result.passed}
        if result.ready:
            return JSONResponse({"status": "ready", "checks": checks}, headers=_NO_STORE)
        assert result.failed is not None
        checks[result.failed] = result.detail or "failed"
        return JSONResponse({"status": "unavailable", "failed": result.failed,
                             "checks": checks}, status_code=503,
                            headers={**_NO_STORE, "Retry-After": str(RETRY_AFTER)})
