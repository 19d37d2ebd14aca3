"""A loopback HTTP listener that records every request and answers 200.

Used to prove that a credential never reaches another origin: point a redirect (or a
misconfigured provider URL) at it, then assert ``not recorder.saw("secret")``.
Bind it to 127.0.0.2 (any 127/8 address is loopback on Linux) to get a second origin.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

__all__ = ["RecordedRequest", "RequestRecorder"]


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # raw request target, query string included
    headers: tuple[tuple[str, str], ...]  # in arrival order, original case
    body: bytes
    client: tuple[str, int]
    received_at: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        """First value of a header (case-insensitive), or None."""
        lowered = name.lower()
        return next((v for k, v in self.headers if k.lower() == lowered), None)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    def contains(self, needle: str | bytes) -> bool:
        """True if ``needle`` occurs in the path, any header name/value or the body."""
        raw = needle.encode() if isinstance(needle, str) else needle
        text = raw.decode("latin-1")
        if text in self.path or raw in self.body:
            return True
        return any(text in k or text in v for k, v in self.headers)


class _Handler(BaseHTTPRequestHandler):
    server: _RecorderServer
    protocol_version = "HTTP/1.1"

    def _record_and_answer(self) -> None:
        body = self._read_body()
        self.server.recorder._add(RecordedRequest(
            method=self.command, path=self.path, headers=tuple(self.headers.items()),
            body=body, client=(self.client_address[0], self.client_address[1]),
        ))
        rec = self.server.recorder
        payload = b"" if self.command == "HEAD" else rec.response_body
        self.send_response(rec.status)
        self.send_header("Content-Type", rec.content_type)
        self.send_header("Content-Length", str(len(rec.response_body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
        self.close_connection = True

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _record_and_answer

    def log_message(self, format: str, *args: object) -> None:
        pass


class _RecorderServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], recorder: RequestRecorder) -> None:
        self.recorder = recorder
        super().__init__(address, _Handler)


class RequestRecorder:
    """Threaded ``http.server`` on ``host`` (default 127.0.0.1), ephemeral port by default."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, status: int = 200,
        body: bytes = b'{"ok": true}', content_type: str = "application/json",
    ) -> None:
        self.host = host
        self.requested_port = port
        self.status = status
        self.response_body = body
        self.content_type = content_type
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: _RecorderServer | None = None
        self._thread: threading.Thread | None = None

    def _add(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def start(self) -> RequestRecorder:
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = _RecorderServer((self.host, self.requested_port), self)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name=f"recorder-{self.host}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + "/" + path.lstrip("/")

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of what was received so far."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def saw(self, needle: str | bytes) -> bool:
        """True if any recorded request carried ``needle`` (path, headers or body)."""
        return any(r.contains(needle) for r in self.requests)

    def wait_for(self, count: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least ``count`` requests arrived (sync tests only)."""
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.requests)} of {count} requests in {timeout}s")
            time.sleep(0.02)
        return self.requests

    async def await_requests(self, count: int = 1, within: float = 5.0) -> list[RecordedRequest]:
        """``wait_for`` for async tests (waits in a worker thread, not on the event loop)."""
        return await asyncio.to_thread(self.wait_for, count, within)

    def __enter__(self) -> RequestRecorder:
        return self.start() if self._server is None else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
