"""httpbin under gunicorn: a provider-API stand-in (``/headers``, ``/bearer``, ``/redirect-to``).

httpbin runs from its own virtual environment (``scripts/install-peers`` makes it at
``tests/peers/httpbin/.venv``): it pins greenlet<3 on Python 3.11, which the test suite's
Playwright cannot share. It is a peer server, not a dependency of ours.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from types import TracebackType

from tests.peers.process import PeerProcess

__all__ = ["HttpbinPeer"]

# gunicorn logs the bound address, so "-b HOST:0" needs no free-port guess.
_LISTENING = re.compile(r"Listening at: http://[^\s:]+:(\d+)")


HTTPBIN_PYTHON = Path(__file__).parent / "httpbin" / ".venv" / "bin" / "python"


def _gunicorn_extra_args() -> list[str]:
    """gunicorn >= 24 opens a control socket at ~/.gunicorn/gunicorn.ctl, shared by all
    instances of a user: turn it off when this gunicorn knows the setting."""
    probe = subprocess.run(
        [str(HTTPBIN_PYTHON), "-c", "import gunicorn.config as c;"
         "print('control_socket_disable' in {s.name for s in c.KNOWN_SETTINGS})"],
        capture_output=True, text=True, timeout=30, check=False)
    return ["--no-control-socket"] if probe.stdout.strip() == "True" else []


class HttpbinPeer:
    """``python -m gunicorn -b HOST:0 -w 1 httpbin:app`` from httpbin's own environment."""

    def __init__(self, host: str = "127.0.0.1", *, startup_timeout: float = 20.0) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.process: PeerProcess | None = None
        self._port: int | None = None

    def start(self) -> HttpbinPeer:
        if self.process is not None:
            raise RuntimeError("already started")
        if not HTTPBIN_PYTHON.exists():
            raise RuntimeError(f"{HTTPBIN_PYTHON} is missing: run scripts/install-peers")
        argv = [
            str(HTTPBIN_PYTHON), "-m", "gunicorn", "-b", f"{self.host}:0", "-w", "1",
            "--graceful-timeout", "2", "--timeout", "30", *_gunicorn_extra_args(), "httpbin:app",
        ]
        self.process = PeerProcess(argv, name="httpbin")
        try:
            match = self.process.start(ready_pattern=_LISTENING, ready_stream="stderr",
                                       timeout=self.startup_timeout)
            assert match is not None
            self._port = int(match.group(1))
        except BaseException:
            self.process = None
            raise
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def __enter__(self) -> HttpbinPeer:
        return self.start() if self.process is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
