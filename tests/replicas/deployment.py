"""A scale-out deployment for the tests: N ``alter-mcp serve --transport http`` processes on
127.0.0.1 sharing one PostgreSQL database, master key and request-state key behind one public
URL, and the load balancer in front of them, played by an httpx2 transport.

The balancer is what an L7 load balancer does: a request for the public origin goes to one
replica (round robin unless a route picks one), keeping the public ``Host`` header; a replica
that refuses connections is taken out and the request goes to the next one (nothing reached
it, so the retry is safe); requests for any other origin (the OAuth provider) pass through.
Cookies belong to a host name, not to a backend, so a browser's cookie set through replica A
comes back with a request that the balancer sends to replica B: exactly as behind a real
balancer, where every replica answers under the one public host name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import tomli_w
from fastmcp import Client
from fastmcp.client.transports import StreamableHttpTransport

from tests.peers.process import PeerProcess

__all__ = ["ALTER_MCP", "Balancer", "Deployment", "Hop", "Replica"]

ALTER_MCP = shutil.which("alter-mcp", path=str(Path(sys.executable).parent)) or "alter-mcp"
_LISTENING = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")

#: Picks the replica for a request (its index), or None for round robin.
Route = Callable[[httpx2.Request], "int | None"]


@dataclass(frozen=True)
class Hop:
    """One request the balancer forwarded: to which replica, and what it was."""

    replica: int
    path: str
    rpc: str | None = None  # the JSON-RPC method of an MCP request
    tool: str | None = None  # the tool of a tools/call


def _describe(request: httpx2.Request) -> tuple[str | None, str | None]:
    """Return the JSON-RPC method and tool name of an MCP POST, if it is one."""
    if request.method != "POST":
        return None, None
    try:
        body = json.loads(request.content)
    except (ValueError, httpx2.RequestNotRead):
        return None, None
    if not isinstance(body, dict):
        return None, None
    params = body.get("params")
    tool = None
    if body.get("method") == "tools/call" and isinstance(params, dict):
        tool = params.get("name")
    return body.get("method"), tool


class Balancer(httpx2.AsyncBaseTransport):
    """An L7 load balancer in front of the replicas, as a client transport."""

    def __init__(self, public_url: str, backends: Sequence[str]) -> None:
        self.public = urlsplit(public_url).netloc
        self.backends = list(backends)
        self.route: Route | None = None
        self.down: set[int] = set()
        self.hops: list[Hop] = []
        self._next = 0
        self._calls = 0
        self._inner = httpx2.AsyncHTTPTransport(
            limits=httpx2.Limits(max_connections=400, max_keepalive_connections=100))

    def _pick(self, request: httpx2.Request) -> int:
        chosen = self.route(request) if self.route is not None else None
        if chosen is not None and chosen not in self.down:
            return chosen
        live = [i for i in range(len(self.backends)) if i not in self.down]
        if not live:
            raise httpx2.ConnectError("no replica is up", request=request)
        self._next += 1
        return live[self._next % len(live)]

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Forward a request for the public origin to a replica; pass any other through."""
        if request.url.netloc.decode() != self.public:
            return await self._inner.handle_async_request(request)
        rpc, tool = _describe(request)
        while True:
            index = self._pick(request)
            backend = urlsplit(self.backends[index])
            url = request.url.copy_with(host=backend.hostname, port=backend.port)
            # The public Host header stays (it was set from the public URL): as a balancer does.
            forwarded = httpx2.Request(request.method, url, headers=request.headers,
                                       stream=request.stream, extensions=request.extensions)
            try:
                response = await self._inner.handle_async_request(forwarded)
            except httpx2.ConnectError:
                self.down.add(index)  # refused: nothing was sent, another replica may take it
                continue
            self.hops.append(Hop(index, request.url.path, rpc, tool))
            return response

    async def health_check(self) -> dict[int, bool]:
        """GET ``/health`` on every replica; take out those that fail, put back those that pass."""
        seen: dict[int, bool] = {}
        async with httpx2.AsyncClient(timeout=2, trust_env=False) as client:
            for index, base in enumerate(self.backends):
                try:
                    ok = (await client.get(base + "/health")).status_code == 200
                except httpx2.HTTPError:
                    ok = False
                seen[index] = ok
                (self.down.discard if ok else self.down.add)(index)
        return seen

    def alternating(self, request: httpx2.Request) -> int | None:
        """Route tools/call requests to replica 0, 1, 0, 1, …, anything else round robin."""
        if _describe(request)[0] != "tools/call":
            return None
        self._calls += 1  # counted when routed, so concurrent calls alternate too
        return (self._calls - 1) % len(self.backends)

    def alternate(self) -> None:
        """Make every tools/call go to the next replica in turn, whatever comes between."""
        self.route = self.alternating

    def served(self, tool: str | None = None) -> list[int]:
        """Return the replica of every tools/call forwarded (of ``tool`` only, if given)."""
        return [h.replica for h in self.hops
                if h.rpc == "tools/call" and (tool is None or h.tool == tool)]

    async def aclose(self) -> None:
        """Keep the pool open: many clients share this balancer (see ``close``)."""

    async def close(self) -> None:
        """Close the connection pool."""
        await self._inner.aclose()

    def http_client(self, **kwargs: Any) -> httpx2.AsyncClient:
        """Return an httpx2 client whose requests go through this balancer."""
        kwargs.setdefault("timeout", httpx2.Timeout(30.0, read=300.0))
        kwargs.setdefault("trust_env", False)
        return httpx2.AsyncClient(transport=self, **kwargs)


@dataclass
class Replica:
    """One ``alter-mcp serve`` process and the address it listens on."""

    index: int
    process: PeerProcess
    url: str = ""

    @property
    def pid(self) -> int:
        """Return the server process's own PID."""
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the process by its PID (no shutdown of any kind) and reap it."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.stop(grace=5.0)


@dataclass
class Deployment:
    """Replicas sharing one database and keys behind one public URL."""

    workdir: Path
    public_url: str
    env: dict[str, str]
    replicas: list[Replica] = field(default_factory=list)
    balancer: Balancer | None = None

    @classmethod
    def configure(
        cls, workdir: Path, *, public_url: str, database_url: str, master_key: str,
        request_state_key: str, config: Mapping[str, Any], stateless: bool = True,
        extra: Mapping[str, str] | None = None,
    ) -> Deployment:
        """Return a deployment whose replicas share everything that has to be shared."""
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "alter-mcp.toml"
        config_path.write_text(tomli_w.dumps(dict(config)))
        env = {
            "PATH": os.environ.get("PATH", ""), "HOME": str(workdir),
            "ALTER_MCP_CONFIG": str(config_path),
            "ALTER_MCP_DATABASE_URL": database_url,
            "ALTER_MCP_MASTER_KEY": master_key,
            "ALTER_MCP_REQUEST_STATE_KEY": request_state_key,
            "ALTER_MCP_PUBLIC_URL": public_url,
            "ALTER_MCP_STATELESS_HTTP": "true" if stateless else "false",
            "ALTER_MCP_ALLOW_INSECURE_HTTP": "true",
            "ALTER_MCP_LOG_LEVEL": "INFO",
            **(extra or {}),
        }
        return cls(workdir=workdir, public_url=public_url, env=env)

    def start(self, count: int, *, overrides: Sequence[Mapping[str, str]] | None = None,
              timeout: float = 30.0) -> Balancer:
        """Start ``count`` replicas side by side and return the balancer in front of them.

        ``overrides[i]`` replaces environment variables of the i-th new replica (to show what
        breaks when a replica does not share what it must).
        """
        first = len(self.replicas)
        new = [self._process(first + i, (overrides or [])[i] if i < len(overrides or []) else {})
               for i in range(count)]
        with ThreadPoolExecutor(count) as pool:
            matches = list(pool.map(lambda r: r.process.start(
                ready_pattern=_LISTENING, ready_stream="stderr", timeout=timeout), new))
        for replica, match in zip(new, matches, strict=True):
            assert match is not None
            replica.url = f"http://127.0.0.1:{match.group(1)}"
        self.replicas.extend(new)
        self.balancer = Balancer(self.public_url, [r.url for r in self.replicas])
        return self.balancer

    def _process(self, index: int, override: Mapping[str, str]) -> Replica:
        data = self.workdir / f"replica-{index}"
        data.mkdir(exist_ok=True)
        env = {**self.env, "ALTER_MCP_DATA_DIR": str(data), **override}
        argv = [ALTER_MCP, "serve", "--transport", "http", "--host", "127.0.0.1",
                "--port", "0"]
        return Replica(index, PeerProcess(argv, name=f"alter-mcp-replica-{index}", env=env))

    def client(self, *, key: str, era: str, **kwargs: Any) -> Client[Any]:
        """Return an MCP client of ``era`` authenticating with agent ``key``, via the balancer."""
        balancer = self.balancer
        assert balancer is not None, "start the replicas first"

        def factory(headers: dict[str, str] | None = None, timeout: httpx2.Timeout | None = None,
                    auth: httpx2.Auth | None = None, **options: Any) -> httpx2.AsyncClient:
            if timeout is not None:
                options["timeout"] = timeout
            return balancer.http_client(headers=headers, auth=auth, **options)

        transport = StreamableHttpTransport(self.public_url + "/mcp",
                                            headers={"X-Alter-Agent-Key": key},
                                            httpx_client_factory=factory)
        return Client(transport, mode="legacy" if era == "legacy" else "auto", **kwargs)

    def stop(self) -> Iterator[str]:
        """Stop every replica by its PID (SIGTERM, then SIGKILL); yield each one's stderr."""
        for replica in self.replicas:
            replica.process.stop()
            yield replica.process.stderr
