"""Answers that leak nothing: echoed credentials across the cap, under misleading charsets.

Two echoing providers: the real httpbin (``/anything`` echoes headers, query and form), and a
small loopback server of our own that labels its echo with whatever charset it is asked for
(UTF-7, EBCDIC, base64, zlib, ...) and sends it as UTF-8 or truly so encoded. httpbin cannot:
its ``/response-headers`` adds a second Content-Type after its own ``application/json``.
"""

from __future__ import annotations

import base64
import codecs
import contextlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from alter_mcp.errors import ProviderAPIError
from alter_mcp.providers.schema import Injection, InjectionKind, Provider
from alter_mcp.proxy import send as send_module
from alter_mcp.proxy.guard import prepare
from alter_mcp.proxy.inject import secret_forms
from alter_mcp.proxy.result import ProxyResult
from alter_mcp.proxy.scrub import MIN_PARTIAL
from alter_mcp.proxy.send import Sender
from alter_mcp.redaction import REDACTED
from tests.peers.echo import EchoServer, lowercase_hex
from tests.peers.httpbin import HttpbinPeer
from tests.proxy.conftest import base, credential, make_provider

pytestmark = pytest.mark.peers

#: A base64-style secret with "/", "+" and "=", 40 characters.
KEY = "q8/Jd+Zx0W3nK=pL7/vR+tY2mB9sH4cF6gA1eU5i"
HEADER = Injection(kind=InjectionKind.HEADER, name="X-Api-Key", format="{api_key}")
QUERY = Injection(kind=InjectionKind.QUERY, name="key", format="{api_key}")
LABELS = ("utf-16-le", "utf-16", "utf-32", "cp500", "cp037", "utf-7", "base64", "rot13", "hex",
          "zlib", "x-no-such-charset")


def pieces(text: str, size: int = MIN_PARTIAL) -> list[str]:
    """Return the pieces of KEY of ``size`` characters found in ``text``."""
    return [KEY[i:i + size] for i in range(len(KEY) - size + 1) if KEY[i:i + size] in text]


def shown(result: ProxyResult) -> str:
    """Return everything the caller sees, as text."""
    return json.dumps(result.to_dict(), ensure_ascii=False)


def read_back(text: str, label: str) -> str:
    """Return what a caller gets by undoing ``label`` on the shown text, both ways round.

    Text decoded with the label is turned back into its bytes and read as UTF-8; text read
    as UTF-8 has the label's decoding applied to its bytes.
    """
    if label == "rot13":
        return codecs.decode(text, "rot13")
    found: list[str] = []
    with contextlib.suppress(LookupError, ValueError, TypeError):
        found.append(text.encode(label, "replace").decode("utf-8", "replace"))
    try:
        back: Any = codecs.decode(text.encode("utf-8"), label)
        found.append(back.decode("utf-8", "replace") if isinstance(back, bytes) else str(back))
    except (LookupError, ValueError, TypeError):
        pass
    return "\n".join(found)


@pytest.fixture
def echo() -> Iterator[int]:
    """Start the echo server on 127.0.0.1 and return its port."""
    with EchoServer() as server:
        yield server.port


async def _get(sender: Sender, provider: Provider, url: str, *, max_bytes: int | None = None,
               **kwargs: Any) -> ProxyResult:
    prepared = prepare(provider, "GET", url, allow_insecure_http=True, **kwargs)
    return await sender.send(prepared, provider, credential(api_key=KEY), max_bytes=max_bytes)


@pytest.mark.parametrize("rule", [HEADER, QUERY], ids=["header", "query"])
async def test_send_cap_at_every_offset_shows_no_piece_of_the_key(
    httpbin: HttpbinPeer, sender: Sender, rule: Injection,
) -> None:
    """Capping httpbin's echo at every offset, no call shows 4+ characters of the key."""
    provider = make_provider(rule, port=httpbin.port)
    url = f"{base(httpbin)}/anything"
    whole = await _get(sender, provider, url)
    assert not whole.truncated and REDACTED in shown(whole)
    seen: list[str] = []
    for cap in range(1, whole.size + len(KEY)):
        result = await _get(sender, provider, url, max_bytes=cap)
        text = shown(result)
        assert pieces(text) == [], cap
        seen.append(text)
    # The calls together cover every cut through the key: none of them puts a piece back.
    assert pieces("\n".join(seen)) == []
    assert sum(REDACTED in text for text in seen) > len(seen) // 4


BASIC = Injection(kind=InjectionKind.BASIC, username="{username}", password="{api_key}")


#: httpbin endpoints and what of the request each echoes (headers, query, or both).
ECHOES = [(path, rule) for path, rules in (
    ("/anything", (HEADER, QUERY, BASIC)), ("/get", (HEADER, QUERY, BASIC)),
    ("/stream/3", (HEADER, QUERY, BASIC)), ("/headers", (HEADER, BASIC)),
    ("/gzip", (HEADER, BASIC)), ("/deflate", (HEADER, BASIC)), ("/response-headers", (QUERY,)),
) for rule in rules]


@pytest.mark.parametrize(("path", "rule"), ECHOES,
                         ids=[f"{p}-{r.kind.value}" for p, r in ECHOES])
async def test_send_httpbin_echo_endpoints_show_no_form(
    httpbin: HttpbinPeer, sender: Sender, path: str, rule: Injection,
) -> None:
    """Every httpbin endpoint that echoes the request shows no form, whole or cut anywhere."""
    provider = make_provider(rule, port=httpbin.port, fields=("username", "api_key"),
                             public=("username",))
    prepared = prepare(provider, "GET", f"{base(httpbin)}{path}", allow_insecure_http=True,
                       query_params={"q": "1"})
    values = credential(username="svc-user", api_key=KEY)
    forms = secret_forms([KEY, f"svc-user:{KEY}",
                          base64.b64encode(f"svc-user:{KEY}".encode()).decode()])
    whole = await sender.send(prepared, provider, values)
    assert whole.status == 200 and REDACTED in shown(whole)
    for cap in (None, *range(7, whole.size, max(1, whole.size // 23))):
        text = shown(await sender.send(prepared, provider, values, max_bytes=cap))
        assert not any(form in text for form in forms) and pieces(text) == [], cap


async def test_send_cap_through_a_utf16_echo_shows_no_piece_of_the_key(
    echo: int, sender: Sender,
) -> None:
    """A UTF-16 echo capped at every offset through the key shows no 4+ character piece."""
    provider = make_provider(HEADER, port=echo)
    url = f"http://localhost:{echo}/echo?label=utf-16-le"
    whole = await _get(sender, provider, url)
    assert whole.body_kind == "json" and whole.body["headers"]["X-Api-Key"] == REDACTED
    for cap in range(1, whole.size + 4 * len(KEY), 3):
        result = await _get(sender, provider, url, max_bytes=cap)
        assert pieces(shown(result)) == [], cap


@pytest.mark.parametrize("encoding", ["raw", "truthful"])
@pytest.mark.parametrize("label", LABELS)
async def test_send_misleading_charset_echo_shows_no_form(
    echo: int, sender: Sender, label: str, encoding: str,
) -> None:
    """An echo sent as UTF-8 or really encoded, under any label, shows no form even read back."""
    provider = make_provider(HEADER, port=echo)
    result = await _get(sender, provider,
                        f"http://localhost:{echo}/echo?label={label}&encoding={encoding}")
    assert result.status == 200
    text = shown(result)
    back = read_back(result.body, label) if isinstance(result.body, str) else ""
    for form in secret_forms([KEY]):
        assert form not in text and form not in back
    assert pieces(text, 8) == [] and pieces(back, 8) == []
    if label in ("base64", "rot13", "hex", "zlib"):
        assert result.body_kind == "binary" and "not a text encoding" in result.body["note"]


@pytest.mark.parametrize("label", ["utf-7", "cp500"])
async def test_send_truncated_disguised_echo_shows_no_piece(
    echo: int, sender: Sender, label: str,
) -> None:
    """A UTF-7 or EBCDIC echo cut anywhere shows no piece of the key, even read back."""
    provider = make_provider(HEADER, port=echo)
    url = f"http://localhost:{echo}/echo?label={label}"
    whole = await _get(sender, provider, url)
    for cap in range(1, whole.size + len(KEY), 2):
        result = await _get(sender, provider, url, max_bytes=cap)
        body = result.body if isinstance(result.body, str) else ""
        assert pieces(shown(result)) == [] and pieces(read_back(body, label)) == [], cap


@pytest.mark.parametrize(("style", "form"), [
    ("php", KEY.replace("/", "\\/")), ("dotnet", lowercase_hex(quote(KEY, safe=""))),
])
async def test_send_escaped_slash_and_lowercase_percent_echoes_are_scrubbed(
    echo: int, sender: Sender, style: str, form: str,
) -> None:
    """An echo with JSON's \\/ escapes or lowercase %2b/%2f/%3d shows [redacted] instead."""
    provider = make_provider(HEADER, port=echo)
    url = f"http://localhost:{echo}/echo?style={style}"
    whole = await _get(sender, provider, url)
    assert REDACTED in shown(whole)
    for cap in (10, 20, 30, 40, whole.size - 5):
        text = shown(await _get(sender, provider, url, max_bytes=cap))
        assert form not in text and pieces(text) == [], cap


async def test_send_lone_surrogates_become_replacement_characters(
    echo: int, sender: Sender,
) -> None:
    """A JSON "\\ud800" escape comes back as U+FFFD; a real pair stays; all encodes as UTF-8."""
    provider = make_provider(HEADER, port=echo)
    result = await _get(sender, provider, f"http://localhost:{echo}/echo?style=surrogate")
    assert result.body == {"lone": "\ufffd", "key": REDACTED, "pair": "\U0001f600"}
    json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")


async def test_send_failure_building_the_answer_is_typed_and_quotes_nothing(
    httpbin: HttpbinPeer, sender: Sender, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A codec error carrying the body becomes ProviderAPIError(unreadable_answer), unchained."""
    def broken(**parts: Any) -> ProxyResult:
        raise UnicodeDecodeError("utf-8", parts["data"], 0, 1, "fault injected")

    monkeypatch.setattr(send_module, "build_result", broken)
    provider = make_provider(HEADER, port=httpbin.port)
    with pytest.raises(ProviderAPIError) as caught:
        await _get(sender, provider, f"{base(httpbin)}/anything")
    error = caught.value
    assert error.details["reason"] == "unreadable_answer" and error.status == 200
    assert error.__cause__ is None and error.__context__ is None
    assert pieces(f"{error} {error!r} {error.details}") == []


@pytest.mark.parametrize("label", ["cp500", "utf-16-le", "base64"])
async def test_send_httpbin_second_content_type_is_not_the_one_read(
    httpbin: HttpbinPeer, sender: Sender, label: str,
) -> None:
    """httpbin's /response-headers adds a second Content-Type; the first one reads the body."""
    provider = make_provider(QUERY, port=httpbin.port)
    result = await _get(sender, provider, f"{base(httpbin)}/response-headers",
                        query_params={"Content-Type": f"text/plain; charset={label}"})
    assert result.headers["content-type"] == (
        f"application/json, text/plain; charset={label}")
    assert result.body_kind == "json" and result.body["key"] == REDACTED
    assert pieces(shown(result)) == []
