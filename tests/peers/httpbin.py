"""httpbin under gunicorn: a provider-API stand-in (``/headers``, ``/bearer``, ``/redirect-to``)."""

from __future__ import annotations

import importlib
import re
import sys
from types import TracebackType

from tests.peers.process import PeerProcess

__all__ = ["HttpbinPeer"]

# gunicorn logs the bound address, so "-b HOST:0" needs no free-port guess.
_LISTENING = re.compile(r"Listening at: http://[^\s:]+:(\d+)")


def _gunicorn_extra_args() -> list[str]:
    """gunicorn >= 24 opens a control socket at ~/.gunicorn/gunicorn.ctl, shared by all
    instances of a user: turn it off when this gunicorn knows the setting."""
    try:
        config = importlib.import_module("gunicorn.config")  # untyped package
    except ImportError:  # pragma: no cover - reported by the process start instead
        return []
    names = {setting.name for setting in config.KNOWN_SETTINGS}
    return ["--no-control-socket"] if "control_socket_disable" in names else []


class HttpbinPeer:
    """``python -m gunicorn -b HOST:0 -w 1 httpbin:app`` with the running interpreter."""

    def __init__(self, host: str = "127.0.0.1", *, startup_timeout: float = 20.0) -> None:
        self.host = host
        self.startup_timeout = startup_timeout
        self.process: PeerProcess | None = None
        self._port: int | None = None

    def start(self) -> HttpbinPeer:
        if self.process is not None:
            raise RuntimeError("already started")
        argv = [
            sys.executable, "-m", "gunicorn", "-b", f"{self.host}:0", "-w", "1",
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
