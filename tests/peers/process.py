"""Run a real peer binary as a child process: start, wait until ready, stop by its own PID.

The child is always the real program (``node server.mjs``, ``python -m gunicorn``), never a
shell or ``npx`` wrapper, so that ``terminate()``/``kill()`` reach the process that owns the
listening socket.
"""

from __future__ import annotations

import atexit
import os
import re
import socket
import subprocess
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Literal

__all__ = [
    "PeerProcess",
    "PeerStartError",
    "free_port",
    "port_accepts",
    "wait_for_port",
]

_LIVE: weakref.WeakSet[PeerProcess] = weakref.WeakSet()


class PeerStartError(RuntimeError):
    """The peer died or did not become ready in time; the message carries its output."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (prefer port 0 + a readiness line)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int, timeout: float = 0.2) -> bool:
    """True if a TCP connection to ``host:port`` succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until ``host:port`` accepts TCP connections, or raise ``TimeoutError``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_accepts(host, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} did not accept connections within {timeout:.1f}s")


class PeerProcess:
    """A child process whose stdout/stderr are drained by threads and kept for diagnostics."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str | None = None,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.name = name or Path(self.argv[0]).name
        self.cwd = cwd
        self.env = env
        self._proc: subprocess.Popen[str] | None = None
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []

    # -- introspection -------------------------------------------------------------------
    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stdout(self) -> str:
        with self._cond:
            return "".join(self._lines["stdout"])

    @property
    def stderr(self) -> str:
        with self._cond:
            return "".join(self._lines["stderr"])

    def describe(self, tail: int = 4000) -> str:
        """Exit status plus the tail of stdout/stderr, for error messages."""
        return (
            f"{self.name} (argv={self.argv!r}, pid={self._proc.pid if self._proc else None}, "
            f"returncode={self.returncode})\n--- stdout ---\n{self.stdout[-tail:]}"
            f"\n--- stderr ---\n{self.stderr[-tail:]}"
        )

    # -- lifecycle -----------------------------------------------------------------------
    def start(
        self,
        *,
        ready_pattern: str | re.Pattern[str] | None = None,
        ready_stream: Literal["stdout", "stderr"] = "stdout",
        port: int | None = None,
        host: str = "127.0.0.1",
        timeout: float = 20.0,
    ) -> re.Match[str] | None:
        """Start the process and wait until ready.

        Readiness is a line matching ``ready_pattern`` on ``ready_stream`` (the match is
        returned, so a ``READY (\\d+)`` group can carry the port), and/or ``host:port``
        accepting TCP connections. Raises ``PeerStartError`` (with the output) if the
        process exits first or the timeout expires; the process is stopped in that case.
        """
        if self._proc is not None:
            raise RuntimeError(f"{self.name} already started")
        env = dict(os.environ if self.env is None else self.env)
        self._proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C in pytest must not kill it before teardown runs
        )
        _LIVE.add(self)
        assert self._proc.stdout is not None
        assert self._proc.stderr is not None
        for stream_name, stream in (("stdout", self._proc.stdout), ("stderr", self._proc.stderr)):
            thread = threading.Thread(
                target=self._drain, args=(stream_name, stream), daemon=True,
                name=f"{self.name}-{stream_name}",
            )
            thread.start()
            self._threads.append(thread)
        try:
            return self._wait_ready(ready_pattern, ready_stream, host, port, timeout)
        except BaseException:
            self.stop()
            raise

    def _drain(self, stream_name: str, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self._lines[stream_name].append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def _wait_ready(
        self,
        ready_pattern: str | re.Pattern[str] | None,
        ready_stream: str,
        host: str,
        port: int | None,
        timeout: float,
    ) -> re.Match[str] | None:
        pattern = re.compile(ready_pattern) if isinstance(ready_pattern, str) else ready_pattern
        deadline = time.monotonic() + timeout
        match: re.Match[str] | None = None
        seen = 0
        while pattern is not None and match is None:
            with self._cond:
                lines = self._lines[ready_stream]
                for line in lines[seen:]:
                    match = pattern.search(line)
                    if match:
                        break
                seen = len(lines)
                if match is None:
                    self._cond.wait(timeout=0.05)
            if match is None:
                self._check_alive_and_time(deadline, timeout)
        while port is not None and not port_accepts(host, port):
            self._check_alive_and_time(deadline, timeout)
            time.sleep(0.05)
        return match

    def _check_alive_and_time(self, deadline: float, timeout: float) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            for thread in self._threads:  # collect the last output before reporting
                thread.join(timeout=1.0)
            raise PeerStartError(f"peer exited before it was ready: {self.describe()}")
        if time.monotonic() > deadline:
            raise PeerStartError(f"peer not ready within {timeout:.1f}s: {self.describe()}")

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the process by its PID, SIGKILL it after ``grace`` seconds; idempotent."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=grace)
        for thread in self._threads:
            thread.join(timeout=1.0)
        _LIVE.discard(self)
        return proc.returncode

    def __enter__(self) -> PeerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@atexit.register
def _stop_leftovers() -> None:  # pragma: no cover - safety net for aborted sessions
    for peer in list(_LIVE):
        peer.stop(grace=1.0)
