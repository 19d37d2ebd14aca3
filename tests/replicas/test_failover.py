"""One replica killed with SIGKILL under load: the balancer's next request finds it gone, the
other replica keeps answering, every grant survives, and the audit hash chain on the shared
database still verifies (the killed process's open transactions were rolled back whole)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from alter_mcp.store import AuditFilter
from tests.peers.oidc import BrowserlessAgent
from tests.replicas.conftest import Scene, SceneFactory, connect_grant, secret_grant
from tests.replicas.deployment import Balancer

pytestmark = [pytest.mark.peers, pytest.mark.slow]

WORKERS = 16
BEFORE_KILL = 150
AFTER_KILL = 300
SETTLE = 0.5  # seconds after the kill within which calls already under way may fail


@dataclass(frozen=True)
class Call:
    """One ``authenticated_request`` a load worker made."""

    started: float
    ok: bool


async def _snapshot(built: Scene) -> dict[str, tuple[str, int]]:
    """Return every grant the agent owns: its status and credential version, from the store."""
    grants = await built.admin.store.list_grants([built.agent.key], limit=1000)
    versions = {}
    for grant in grants:
        record = await built.admin.store.get_credential(grant.grant_id)
        versions[grant.grant_id] = (grant.status.value, record.version if record else 0)
    return versions


async def test_replica_killed_under_load_leaves_the_other_serving(
        scene: SceneFactory, browser: Callable[[Balancer], BrowserlessAgent]) -> None:
    """After SIGKILL of one replica the other answers every call; no grant or audit link lost."""
    built = await scene()
    grants = [await connect_grant(built, browser(built.balancer))]
    grants += [await secret_grant(built, f"echo-secret-{i}-0123456789abcdef", f"key-{i}")
               for i in range(3)]
    before = await _snapshot(built)
    calls: list[Call] = []
    stop = asyncio.Event()
    progress = asyncio.Condition()

    async def record(call: Call) -> None:
        calls.append(call)
        async with progress:
            progress.notify_all()

    async def worker(n: int) -> None:
        while not stop.is_set():
            # A call cut off by the kill may take its client down: start a fresh one.
            with contextlib.suppress(Exception):
                async with built.deployment.client(key=built.key, era="modern") as client:
                    while not stop.is_set():
                        n += 1
                        started = time.monotonic()
                        try:
                            result = await client.call_tool("authenticated_request", {
                                "method": "POST", "url": built.api.url(f"/load/{n}"),
                                "grant_id": grants[n % len(grants)]}, raise_on_error=False)
                        except Exception:
                            await record(Call(started, False))
                            raise
                        await record(Call(started, not result.is_error))

    async def successes_after(moment: float, count: int) -> None:
        async with progress:
            await progress.wait_for(
                lambda: sum(c.ok and c.started > moment for c in calls) >= count)

    load = [asyncio.create_task(worker(i * 1000)) for i in range(WORKERS)]
    try:
        await asyncio.wait_for(successes_after(0, BEFORE_KILL), 60)
        assert set(built.balancer.served()) == {0, 1}
        victim = built.deployment.replicas[0]
        victim.kill()
        killed = time.monotonic()
        await asyncio.wait_for(successes_after(killed + SETTLE, AFTER_KILL), 60)
    finally:
        stop.set()
        await asyncio.gather(*load, return_exceptions=True)
    assert victim.process.returncode == -9
    late = [c for c in calls if c.started > killed + SETTLE]
    assert late and all(c.ok for c in late)
    assert sum(not c.ok for c in calls) <= WORKERS  # only calls under way at the kill
    assert {h.replica for h in built.balancer.hops[-AFTER_KILL:]} == {1}
    assert await built.balancer.health_check() == {0: False, 1: True}

    assert await _snapshot(built) == before
    async with built.deployment.client(key=built.key, era="legacy") as client:
        listed = (await client.call_tool("list_grants", {})).structured_content
        for grant_id in grants:
            result = await client.call_tool("authenticated_request", {
                "method": "GET", "url": built.api.url("/after"), "grant_id": grant_id})
            assert result.structured_content["status"] == 200
    assert sorted(g["grant_id"] for g in listed["grants"]) == sorted(grants)
    answered = await built.admin.store.list_audit(AuditFilter(
        action="request", outcome="allowed", limit=100_000))
    assert len(answered) >= sum(c.ok for c in calls) + len(grants)
    report = await built.admin.verify_audit()
    assert report.ok, report
