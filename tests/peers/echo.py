"""A loopback server that echoes a request's headers under any charset label, for hostile answers.

``GET /echo?label=L&encoding=raw|truthful&style=json|php|dotnet|surrogate|surrogate-text``
answers the request's headers as JSON (``json``), with every slash escaped as PHP writes it
(``php``), as ``key=<X-Api-Key percent-encoded in lowercase hex>`` as .NET writes it
(``dotnet``), or with lone surrogates (``surrogate``, ``surrogate-text``), labelled
``charset=L``: sent as UTF-8 (``raw``: a misleading label) or really encoded with ``L``
(``truthful``, the default; a bytes-to-bytes codec or rot13 is applied to the UTF-8 bytes).
httpbin cannot do this: its ``/response-headers`` adds a second Content-Type after its own.
"""

from __future__ import annotations

import codecs
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

__all__ = ["EchoServer", "lowercase_hex"]


def lowercase_hex(value: str) -> str:
    """Return ``value`` with its percent-escapes in lowercase hex, as .NET writes them."""
    return re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), value)


class _Echo(BaseHTTPRequestHandler):
    """Echo the request's headers under the asked-for label (see the module docstring)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        label = query.get("label", ["utf-8"])[0]
        style = query.get("style", ["json"])[0]
        key = self.headers.get("X-Api-Key", "")
        text = json.dumps({"headers": dict(self.headers.items()), "path": self.path})
        media = "application/json"
        if style == "php":  # PHP's json_encode escapes every slash
            text = text.replace("/", "\\/")
        elif style == "dotnet":  # .NET's UrlEncode writes lowercase hex
            text, media = f"key={lowercase_hex(quote(key, safe=''))}", "text/plain"
        elif style == "surrogate":  # JSON escapes: "\\ud800"
            text = json.dumps({"lone": "\ud800", "key": key, "pair": "\ud83d\ude00"})
        elif style == "surrogate-text":  # the surrogate itself, encoded with surrogatepass
            text, media = f"lone \ud800 key {key}", "text/plain"
        # "raw": a UTF-8 echo under a misleading label; "truthful": encoded as labelled.
        truthful = query.get("encoding", ["truthful"])[0] == "truthful"
        body = self._encode(text, label) if truthful else text.encode("utf-8", "surrogatepass")
        self.send_response(200)
        self.send_header("Content-Type", f"{media}; charset={label}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    @staticmethod
    def _encode(text: str, label: str) -> bytes:
        if label == "rot13":
            return codecs.encode(text, "rot13").encode()
        try:
            info = codecs.lookup(label)
        except LookupError:
            return text.encode()
        if getattr(info, "_is_text_encoding", True):
            return text.encode(label, "surrogatepass" if label.startswith("utf") else "strict")
        transform: Any = codecs.getencoder(label)  # a bytes-to-bytes codec: typeshed says str
        encoded: bytes = transform(text.encode("utf-8", "surrogatepass"))[0]
        return encoded

    def log_message(self, format: str, *args: object) -> None:
        pass


class EchoServer:
    """The echo server on 127.0.0.1 (a port of its own), as a context manager."""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def __enter__(self) -> EchoServer:
        self._thread.start()  # the socket listens from construction: nothing to wait for
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
