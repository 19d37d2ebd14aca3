"""Connection slots per origin, so that a slow provider cannot take every connection.

The shared client has one httpcore2 pool with a global connection limit and no per-host one:
110 requests stuck on a provider that answers after 15 s held every connection of the pool,
and a request to a healthy provider queued behind them. Here each origin (scheme, host, port)
gets at most ``limit`` requests in flight. The next one waits up to ``wait`` seconds for a
slot, then fails with :class:`ProviderBusyError` without being sent. The client does not speak
HTTP/2, so a request in flight is a connection in use: a slot is a connection.

A slot is taken before the credential is injected (the Sender) and, on the vault's path,
before it is even decrypted (Outbound), so a queued request holds no plaintext. Leaving the
``async with`` block, normally, on an error or on cancellation, gives the slot back; an
origin's gate is dropped when nobody holds or awaits it, so the map stays as small as the
set of origins in use.
"""

from __future__ import annotations

from types import TracebackType

import anyio

from alter_mcp.errors import ProviderBusyError

__all__ = ["LIMIT_SETTING", "WAIT_SETTING", "Origin", "OriginSlots", "Slot"]

#: (scheme, host, port), as ``PreparedRequest.origin`` gives it.
Origin = tuple[str, str, int]

LIMIT_SETTING = "ALTER_MCP_PROVIDER_MAX_CONNECTIONS"
WAIT_SETTING = "ALTER_MCP_PROVIDER_POOL_TIMEOUT"


class _Gate:
    """One origin's semaphore, and how many tasks hold or await it."""

    __slots__ = ("semaphore", "users")

    def __init__(self, limit: int) -> None:
        self.semaphore = anyio.Semaphore(limit)
        self.users = 0


class Slot:
    """A slot for one request to one origin: taken on ``async with``, given back on exit."""

    __slots__ = ("_gate", "_owner", "_provider_id", "_wait", "held", "origin")

    def __init__(self, owner: OriginSlots, origin: Origin, provider_id: str,
                 wait: float) -> None:
        self._owner = owner
        self._provider_id = provider_id
        self._wait = wait
        self._gate: _Gate | None = None
        self.origin = origin
        self.held = False

    def belongs_to(self, owner: OriginSlots) -> bool:
        """Return True if this slot is held and was taken from ``owner``."""
        return self.held and self._owner is owner

    async def __aenter__(self) -> Slot:
        if self._gate is not None:
            raise RuntimeError("a Slot is entered once")
        gates = self._owner._gates
        gate = gates.get(self.origin)
        if gate is None:
            gate = gates[self.origin] = _Gate(self._owner.limit)
        gate.users += 1
        self._gate = gate
        try:
            try:
                # The common case costs no checkpoint and no cancel scope.
                gate.semaphore.acquire_nowait()
            except anyio.WouldBlock:
                await self._await_turn(gate)
        except BaseException:
            self._leave(gate)
            raise
        self.held = True
        return self

    async def _await_turn(self, gate: _Gate) -> None:
        acquired = False
        with anyio.move_on_after(self._wait):
            await gate.semaphore.acquire()
            acquired = True
        if not acquired:
            scheme, host, port = self.origin
            raise ProviderBusyError(
                provider_id=self._provider_id, origin=f"{scheme}://{host}:{port}",
                limit=self._owner.limit, waited=self._wait, limit_setting=LIMIT_SETTING,
                wait_setting=WAIT_SETTING)

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        gate = self._gate
        assert gate is not None
        self.held = False
        gate.semaphore.release()
        self._leave(gate)

    def _leave(self, gate: _Gate) -> None:
        gate.users -= 1
        if gate.users == 0:
            del self._owner._gates[self.origin]


class OriginSlots:
    """At most ``limit`` requests in flight per origin; wait up to ``wait`` s for a slot."""

    def __init__(self, *, limit: int = 20, wait: float = 5.0) -> None:
        if limit < 1 or not 0 < wait <= 600:
            raise ValueError("limit >= 1 and 0 < wait <= 600 seconds")
        self.limit = limit
        self.wait = wait
        self._gates: dict[Origin, _Gate] = {}

    def slot(self, origin: Origin, *, provider_id: str, wait: float | None = None) -> Slot:
        """Return a slot for ``origin`` to take with ``async with`` (waiting at most ``wait``)."""
        return Slot(self, origin, provider_id, self.wait if wait is None else min(wait,
                                                                                  self.wait))

    def usage(self, origin: Origin) -> tuple[int, int]:
        """Return how many slots of ``origin`` are held and how many tasks await one."""
        gate = self._gates.get(origin)
        if gate is None:
            return 0, 0
        return self.limit - gate.semaphore.value, gate.semaphore.statistics().tasks_waiting

    def origins(self) -> int:
        """Return how many origins have a slot held or awaited."""
        return len(self._gates)
