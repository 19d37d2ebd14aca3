"""Connection slots per origin: a slow provider holds its share, never the whole pool."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import anyio
import httpx2
import pytest
from anyio import wait_all_tasks_blocked
from anyio.abc import TaskGroup

from alter_mcp.errors import ProviderAPIError, ProviderBusyError
from alter_mcp.providers.schema import Provider
from alter_mcp.proxy.guard import PreparedRequest, prepare
from alter_mcp.proxy.result import ProxyResult
from alter_mcp.proxy.send import Sender, new_client
from alter_mcp.proxy.slots import OriginSlots
from tests.peers.recorder import RequestRecorder
from tests.peers.stuck import StuckServer, stuck_server
from tests.proxy.conftest import API_KEY, bearer, credential, make_provider


@pytest.fixture
async def slow() -> AsyncIterator[StuckServer]:
    """A provider on 127.0.0.1 that answers nothing until the test releases it."""
    async with stuck_server() as server:
        yield server


@pytest.fixture
def healthy() -> Iterator[RequestRecorder]:
    """A provider on another loopback address (127.0.0.2) that answers at once."""
    with RequestRecorder(host="127.0.0.2") as recorder:
        yield recorder


def _slow_request(server: StuckServer) -> tuple[Provider, PreparedRequest]:
    provider = make_provider(bearer(), port=server.port, hosts=("127.0.0.1",),
                             provider_id="slowapi")
    return provider, prepare(provider, "GET", f"http://127.0.0.1:{server.port}/v1/slow",
                             allow_insecure_http=True)


def _healthy_request(recorder: RequestRecorder) -> tuple[Provider, PreparedRequest]:
    provider = make_provider(bearer(), port=recorder.port, hosts=("127.0.0.2",),
                             provider_id="healthyapi")
    return provider, prepare(provider, "GET", recorder.url("/v1/ok"), allow_insecure_http=True)


def _start(group: TaskGroup, sender: Sender, provider: Provider, prepared: PreparedRequest,
           results: list[ProxyResult], count: int) -> None:
    async def one() -> None:
        results.append(await sender.send(prepared, provider, credential(api_key=API_KEY)))

    for _ in range(count):
        group.start_soon(one)


@contextlib.asynccontextmanager
async def _jammed(sender: Sender, slow: StuckServer, count: int,
                  arrived: int) -> AsyncIterator[list[ProxyResult]]:
    """Keep ``count`` calls on the slow server for the block, once ``arrived`` reached it.

    Yields the list their results fill once the block has released the server.
    """
    provider, request = _slow_request(slow)
    stuck: list[ProxyResult] = []
    async with anyio.create_task_group() as group:
        _start(group, sender, provider, request, stuck, count)
        try:
            await slow.wait_received(arrived)
            yield stuck
        finally:
            slow.release()


async def test_slots_slow_provider_does_not_starve_a_healthy_one(
    client: httpx2.AsyncClient, slow: StuckServer, healthy: RequestRecorder,
) -> None:
    """With 110 calls stuck on a slow provider, a call to a healthy one completes meanwhile.

    The shared client keeps httpx2's global limit of 100 connections; only the default share
    of 20 per origin reaches the slow server, the other 90 wait for a slot without being sent.
    """
    sender = Sender(client, timeout=60.0, allow_insecure_http=True,
                    slots=OriginSlots(limit=20, wait=60.0))
    _, slow_request = _slow_request(slow)
    provider, request = _healthy_request(healthy)
    async with _jammed(sender, slow, 110, arrived=20) as stuck:
        assert sender.slots.usage(slow_request.origin) == (20, 90)
        # A hang guard only: on a starved pool the call would wait for the slow provider.
        with anyio.fail_after(30):
            answer = await sender.send(request, provider, credential(api_key=API_KEY))
        assert answer.status == 200 and answer.body == {"ok": True}
        assert not slow.released and stuck == []
        assert len(slow.received) == 20
        assert healthy.requests[0].header("authorization") == f"Bearer {API_KEY}"
    assert [r.status for r in stuck] == [200] * 110
    assert len(slow.received) == 110
    assert sender.slots.origins() == 0


async def _one_too_many(
    client: httpx2.AsyncClient, slow: StuckServer, *, limit: int, wait: float,
    timeout: float | None = None,  # noqa: ASYNC109
) -> ProviderBusyError:
    """Hold ``limit`` calls on the slow server, return the next call's error, then release."""
    sender = Sender(client, timeout=60.0, allow_insecure_http=True,
                    slots=OriginSlots(limit=limit, wait=wait))
    provider, request = _slow_request(slow)
    async with _jammed(sender, slow, limit, arrived=limit) as stuck:
        # A hang guard only: the bounded wait is what must end the call.
        with anyio.fail_after(30), pytest.raises(ProviderBusyError) as busy:
            await sender.send(request, provider, credential(api_key=API_KEY), timeout=timeout)
        assert len(slow.received) == limit and stuck == []
    assert [r.status for r in stuck] == [200] * limit
    assert len(slow.received) == limit
    return busy.value


async def test_slots_exhausted_origin_raises_provider_busy_and_sends_nothing(
    client: httpx2.AsyncClient, slow: StuckServer,
) -> None:
    """With every slot of an origin held, the next call fails after the bounded wait, unsent."""
    error = await _one_too_many(client, slow, limit=2, wait=0.2)
    assert error.code == "provider_busy" and error.provider_id == "slowapi"
    assert error.details["origin"] == f"http://127.0.0.1:{slow.port}"
    assert error.details["limit"] == 2 and error.details["sent"] is False
    assert error.details["setting"] == "ALTER_MCP_PROVIDER_MAX_CONNECTIONS"
    assert error.retry_after >= 1
    assert "not sent" in error.message and "ALTER_MCP_PROVIDER_POOL_TIMEOUT" in str(error)
    assert API_KEY not in repr(error.to_dict()) + str(error) + repr(error)


async def test_slots_wait_is_bounded_by_the_request_timeout(
    client: httpx2.AsyncClient, slow: StuckServer,
) -> None:
    """A per-request timeout shorter than the pool wait bounds the wait for a slot too."""
    error = await _one_too_many(client, slow, limit=1, wait=600.0, timeout=0.2)
    assert "for 0.2 seconds" in error.message


async def test_slots_full_pool_refuses_another_origin_unsent(
    slow: StuckServer, healthy: RequestRecorder,
) -> None:
    """When slow origins fill the whole pool, another origin's call fails unsent, not hangs.

    The pool's wait for a connection is bounded like the wait for a slot, and its timeout is
    told apart from a provider that did not answer.
    """
    async with new_client(trust_env=False, max_connections=2) as small:
        sender = Sender(small, timeout=60.0, allow_insecure_http=True,
                        slots=OriginSlots(limit=2, wait=0.3))
        provider, request = _healthy_request(healthy)
        async with _jammed(sender, slow, 2, arrived=2) as stuck:
            with anyio.fail_after(30), pytest.raises(ProviderAPIError) as full:
                await sender.send(request, provider, credential(api_key=API_KEY))
    assert full.value.details["reason"] == "pool_timeout"
    assert "not sent" in full.value.message and "ALTER_MCP_MAX_CONNECTIONS" in str(full.value)
    assert healthy.requests == [] and [r.status for r in stuck] == [200, 200]


async def test_slots_cancellation_gives_the_slot_back(
    client: httpx2.AsyncClient, slow: StuckServer,
) -> None:
    """A cancelled call, whether sending or waiting for a slot, leaves no slot taken."""
    sender = Sender(client, timeout=60.0, allow_insecure_http=True,
                    slots=OriginSlots(limit=1, wait=60.0))
    provider, request = _slow_request(slow)
    results: list[ProxyResult] = []
    async with anyio.create_task_group() as group:
        _start(group, sender, provider, request, results, 2)
        await slow.wait_received(1)
        await wait_all_tasks_blocked()
        assert sender.slots.usage(request.origin) == (1, 1)
        group.cancel_scope.cancel()
    assert sender.slots.usage(request.origin) == (0, 0) and sender.slots.origins() == 0
    assert results == [] and len(slow.received) == 1
    slow.release()
    # The origin takes requests again: the cancelled holder's slot really came back.
    answer = await sender.send(request, provider, credential(api_key=API_KEY))
    assert answer.status == 200 and len(slow.received) == 2


async def test_slots_held_by_caller_is_used_for_the_send(
    client: httpx2.AsyncClient, healthy: RequestRecorder,
) -> None:
    """A send inside a slot its caller holds takes no second one (a limit of 1 still works)."""
    sender = Sender(client, allow_insecure_http=True, slots=OriginSlots(limit=1, wait=0.2))
    provider, request = _healthy_request(healthy)
    async with sender.slot(request, provider) as slot:
        assert sender.slots.usage(request.origin) == (1, 0)
        first = await sender.send(request, provider, credential(api_key=API_KEY), slot=slot)
        again = await sender.send(request, provider, credential(api_key=API_KEY), slot=slot)
    assert (first.status, again.status) == (200, 200)
    assert sender.slots.usage(request.origin) == (0, 0)


async def test_slots_send_refuses_a_slot_of_another_origin(
    client: httpx2.AsyncClient, healthy: RequestRecorder, slow: StuckServer,
) -> None:
    """A slot held for one origin cannot carry a request to another one."""
    sender = Sender(client, allow_insecure_http=True)
    provider, request = _healthy_request(healthy)
    other_provider, other = _slow_request(slow)
    async with sender.slot(other, other_provider) as slot:
        with pytest.raises(ValueError, match="slot"):
            await sender.send(request, provider, credential(api_key=API_KEY), slot=slot)
    assert healthy.requests == []


@pytest.mark.parametrize(("limit", "wait"), [(0, 5.0), (20, 0.0), (20, 601.0)])
def test_slots_refuse_out_of_range_settings(limit: int, wait: float) -> None:
    """A limit below 1 or a wait outside (0, 600] seconds is refused at construction."""
    with pytest.raises(ValueError, match="limit"):
        OriginSlots(limit=limit, wait=wait)
