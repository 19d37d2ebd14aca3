"""A private, throwaway PostgreSQL cluster: ``initdb`` into a temporary directory, ``pg_ctl``
on 127.0.0.1 with its own socket directory, one database per test, removed at the end.

Run as root (CI), every server binary runs as the ``postgres`` user through ``runuser``, and
the directories it writes are chowned to that user; run as anyone else, they run as you.
``pg_ctl start -w`` daemonises the postmaster, so the cluster is stopped with ``pg_ctl stop``
and, should that fail, by the postmaster's own PID from ``postmaster.pid``.

Fixtures: ``postgres_cluster`` (session: the running cluster) and ``postgres_url`` (a fresh
database per test, dropped after it). Import both into a ``conftest.py`` to use them.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.process import PeerStartError, free_port

__all__ = [
    "PostgresCluster",
    "find_bindir",
    "postgres_cluster",
    "postgres_url",
    "temporary_cluster",
]

_LIVE: weakref.WeakSet[PostgresCluster] = weakref.WeakSet()
_SERVER_USER = "postgres"


def find_bindir() -> Path | None:
    """Return the newest ``/usr/lib/postgresql/*/bin`` holding ``initdb``, or None."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    if not found:
        return None
    newest = max(found, key=lambda p: int(Path(p).parent.parent.name.split(".")[0]))
    return Path(newest).parent


class PostgresCluster:
    """One temporary cluster; ``start()`` it, ``create_database()`` per test, ``stop()``."""

    def __init__(self, bindir: Path, *, host: str = "127.0.0.1") -> None:
        self.bindir = bindir
        self.host = host
        self.root: Path | None = None
        self._port: int | None = None
        self._as_server_user = os.geteuid() == 0

    # -- paths and running commands -------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the cluster is not started")
        return self._port

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def _run(self, tool: str, *args: str, timeout: float = 60.0) -> str:
        argv = [str(self.bindir / tool), *args]
        if self._as_server_user:
            argv = ["runuser", "-u", _SERVER_USER, "--", *argv]
        proc = subprocess.run(
            argv, cwd=self.root, capture_output=True, text=True, timeout=timeout, check=False,
            env={**os.environ, "LC_ALL": "C.UTF-8", "PGTZ": "UTC"},
        )
        if proc.returncode != 0:
            raise PeerStartError(
                f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
                f"{self._log_tail()}"
            )
        return proc.stdout

    def _log_tail(self) -> str:
        if self.root is None or not self.log_file.exists():
            return ""
        return "\n--- server.log ---\n" + self.log_file.read_text(errors="replace")[-3000:]

    def psql(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL as the superuser over TCP and return psql's unaligned output."""
        return self._run(
            "psql", "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", database,
            "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql,
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, *, attempts: int = 3) -> PostgresCluster:
        """Create the cluster and start it on a free port (retried if the port was taken)."""
        if self.root is not None:
            raise RuntimeError("already started")
        # Not under pytest's tmp_path: its parents are mode 0700 to root, which the server
        # user could not traverse.
        self.root = Path(tempfile.mkdtemp(prefix="alter-mcp-pg-"))
        _LIVE.add(self)
        try:
            self.socket_dir.mkdir()
            if self._as_server_user:
                user = pwd.getpwnam(_SERVER_USER)
                for path in (self.root, self.socket_dir):
                    os.chown(path, user.pw_uid, user.pw_gid)
            self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                      "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")
            for attempt in range(attempts):
                self._port = free_port(self.host)
                try:
                    self._pg_ctl_start()
                    break
                except PeerStartError:
                    if attempt == attempts - 1:
                        raise
        except BaseException:
            self.stop()
            raise
        return self

    def _pg_ctl_start(self) -> None:
        options = (
            f"-p {self._port} -k {self.socket_dir} -c listen_addresses={self.host} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200 -c timezone=UTC"
        )
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                  "-t", "30", "-o", options, "start")

    def postmaster_pid(self) -> int | None:
        """Return the running postmaster's PID, read from its pid file."""
        if self.root is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop``, else SIGQUIT to its PID) and remove its files."""
        if self.root is None:
            return
        pid = self.postmaster_pid()
        if pid is not None:
            try:
                self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w",
                          "-t", "10", "stop", timeout=20)
            except (PeerStartError, subprocess.TimeoutExpired):
                _kill_and_wait(pid)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
        self._port = None
        _LIVE.discard(self)

    # -- databases ---------------------------------------------------------------------------
    def url(self, database: str = "postgres", *, user: str = "postgres",
            query: str = "") -> str:
        """Return a ``postgresql://`` URL for a database of this cluster."""
        suffix = f"?{query}" if query else ""
        return f"postgresql://{user}@{self.host}:{self.port}/{database}{suffix}"

    def create_database(self, name: str) -> str:
        """Create an empty database and return its URL."""
        self.psql(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected."""
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def database(self, name: str) -> Iterator[str]:
        """Yield the URL of a fresh database that is dropped afterwards."""
        url = self.create_database(name)
        try:
            yield url
        finally:
            self.drop_database(name)

    def __enter__(self) -> PostgresCluster:
        return self.start() if self.root is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _kill_and_wait(pid: int, grace: float = 5.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGQUIT)  # the postmaster's immediate shutdown
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def temporary_cluster(bindir: Path | None = None) -> Iterator[PostgresCluster]:
    """Start a throwaway cluster for the duration of the block."""
    found = bindir or find_bindir()
    if found is None:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb")
    with PostgresCluster(found) as cluster:
        yield cluster


@atexit.register
def _stop_leftovers() -> None:  # pragma: no cover - safety net for aborted sessions
    for cluster in list(_LIVE):
        cluster.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """Yield a throwaway cluster for the session; skip only if the server is not installed."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed: no /usr/lib/postgresql/*/bin/initdb "
                    "(scripts/install-system installs it)")
    with PostgresCluster(bindir) as cluster:
        yield cluster


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """Yield the URL of a fresh, empty database, dropped after the test."""
    with postgres_cluster.database(f"t_{uuid.uuid4().hex[:16]}") as url:
        yield url
