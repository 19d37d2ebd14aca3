"""Scrubbing answers in bytes: charsets, byte forms, cut edges, lone surrogates."""

from __future__ import annotations

import pickle

import pytest

from alter_mcp.proxy.inject import secret_forms
from alter_mcp.proxy.result import build_result
from alter_mcp.proxy.scrub import (
    MIN_PARTIAL,
    answer_forms,
    charset_of,
    clean_text,
    decode_text,
    scrub_bytes,
    trim_cut,
)
from alter_mcp.redaction import REDACTED

KEY = "q8/Jd+Zx0W3nK=pL7/vR+tY2mB9sH4cF6gA1eU5i"


@pytest.mark.parametrize(("label", "codec"), [
    ("utf-8", "utf-8"), ("UTF8", "utf-8"), ("latin1", "iso8859-1"), ("utf-16le", "utf-16-le"),
    ("windows-1252", "cp1252"), ("Shift_JIS", "shift_jis"), ("utf-32", "utf-32"),
])
def test_charset_of_honours_allow_listed_labels(label: str, codec: str) -> None:
    """An allow-listed label (or its alias) decodes with its own codec."""
    charset = charset_of(f"text/plain; charset={label}")
    assert (charset.codec, charset.is_text, charset.disguise) == (codec, True, None)


@pytest.mark.parametrize(("label", "disguise"), [
    ("cp500", "cp500"), ("ibm037", "cp037"), ("utf-7", "utf-7"), ("iso-2022-jp", "iso2022_jp"),
    ("unicode_escape", "unicode-escape"), ("idna", "idna"), ("undefined", "undefined"),
])
def test_charset_of_reads_other_text_encodings_as_utf8(label: str, disguise: str) -> None:
    """A text encoding off the allow-list is read as UTF-8 and named as a disguise."""
    charset = charset_of(f'text/plain; charset="{label}"')
    assert (charset.codec, charset.is_text, charset.disguise) == ("utf-8", True, disguise)


@pytest.mark.parametrize("label", ["base64", "rot13", "hex", "zlib", "bz2", "quopri", "uu"])
def test_charset_of_marks_transform_labels_as_not_text(label: str) -> None:
    """A bytes-to-bytes (or str-to-str) codec label makes the body not text."""
    assert charset_of(f"application/json; charset={label}").is_text is False


def test_charset_of_reads_unknown_or_missing_labels_as_utf8() -> None:
    """An unknown label or none decodes as UTF-8, with no disguise."""
    for content_type in ("text/plain; charset=x-no-such", "text/plain", None):
        charset = charset_of(content_type)
        assert (charset.codec, charset.is_text, charset.disguise) == ("utf-8", True, None)


def test_scrub_bytes_replaces_wide_forms_in_their_own_width() -> None:
    """UTF-16 and UTF-32 forms, at any alignment, become [redacted] in the same encoding."""
    forms = answer_forms(secret_forms([KEY]), "text/plain; charset=utf-16-le")
    for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        body = b"x" + f"<{KEY}>".encode(codec)
        scrubbed = scrub_bytes(body, forms)
        assert KEY.encode(codec) not in scrubbed
        assert f"<{REDACTED}>".encode(codec) in scrubbed


def test_scrub_bytes_replaces_forms_in_a_disguise_encoding() -> None:
    """A body labelled cp500 loses the cp500 bytes of the key, replaced by ASCII."""
    forms = answer_forms(secret_forms([KEY]), "text/plain; charset=cp500")
    scrubbed = scrub_bytes(b"a" + KEY.encode("cp500") + b"b", forms)
    assert scrubbed == f"a{REDACTED}b".encode()


def test_answer_forms_repr_and_pickle_hide_the_forms() -> None:
    """Neither repr nor pickle exposes a form."""
    forms = answer_forms(secret_forms([KEY]), None)
    assert KEY not in repr(forms) and KEY[:8] not in repr(forms)
    with pytest.raises(TypeError):
        pickle.dumps(forms)


@pytest.mark.parametrize("size", range(MIN_PARTIAL, len(KEY)))
def test_trim_cut_removes_a_form_started_at_the_end(size: int) -> None:
    """Text cut after 4+ characters of a form loses them (and nothing before)."""
    forms = answer_forms(secret_forms([KEY]), None)
    assert trim_cut("head " + KEY[:size], forms.text, end=True, start=False) == "head "


@pytest.mark.parametrize("size", range(MIN_PARTIAL, len(KEY)))
def test_trim_cut_removes_a_form_ended_at_the_start(size: int) -> None:
    """Text starting with the last 4+ characters of a form loses them."""
    forms = answer_forms(secret_forms([KEY]), None)
    assert trim_cut(KEY[-size:] + " tail", forms.text, end=False, start=True) == " tail"


def test_trim_cut_keeps_ordinary_text_and_pieces_under_the_minimum() -> None:
    """Text not ending in 4+ characters of a form is kept whole."""
    forms = answer_forms(secret_forms([KEY]), None)
    for text in ("plain text", "ends with " + KEY[:MIN_PARTIAL - 1], KEY[1:9]):
        assert trim_cut(text, forms.text, end=True, start=True) == text


def test_trim_cut_in_bytes_counts_characters_not_bytes() -> None:
    """A UTF-16 cut showing more than three characters' worth is trimmed; three are kept."""
    forms = answer_forms(secret_forms([KEY]), "text/plain; charset=utf-16-le")
    wide = KEY.encode("utf-16-le")
    kept = b"h\x00" + wide[:6]
    assert trim_cut(kept, forms.edges_in(kept), end=True, start=False) == kept
    cut = b"h\x00" + wide[:7]
    # Read big-endian from one byte earlier the same bytes are a UTF-16-BE piece: also cut.
    assert trim_cut(cut, forms.edges_in(cut), end=True, start=False) in (b"h\x00", b"h")


def test_trim_cut_short_secret_keeps_at_most_one_character() -> None:
    """For a 4-character secret a 2-character piece at the edge is already trimmed."""
    forms = answer_forms(secret_forms(["ab/+"]), None)
    assert trim_cut("x ab", forms.text, end=True, start=False) == "x "


def test_clean_text_replaces_lone_surrogates() -> None:
    """Lone surrogates become U+FFFD; the result encodes as UTF-8."""
    cleaned = clean_text("a\ud800b\udfffc")
    assert cleaned == "a\ufffdb\ufffdc"
    cleaned.encode("utf-8")


def test_decode_text_never_yields_surrogates() -> None:
    """A UTF-16 body with a lone surrogate decodes to replacement characters."""
    data = "x".encode("utf-16-le") + b"\x00\xd8" + "y".encode("utf-16-le")
    text = decode_text(data, charset_of("text/plain; charset=utf-16-le"), truncated=False)
    text.encode("utf-8")
    assert text.startswith("x") and text.endswith("y")


def test_build_result_scrubs_before_capping() -> None:
    """A key straddling max_bytes is redacted whole; the cut shows no piece of it."""
    forms = secret_forms([KEY])
    body = ("a" * 50 + KEY + "b" * 50).encode()
    for cap in range(45, 95):
        result = build_result(status=200, method="GET", url="https://a.test/", truncated=False,
                              raw_headers=[("Content-Type", "text/plain")], data=body,
                              secrets=forms, max_bytes=cap)
        assert result.truncated
        assert all(KEY[i:i + MIN_PARTIAL] not in result.body
                   for i in range(len(KEY) - MIN_PARTIAL + 1)), cap


def test_build_result_trims_both_edges_of_a_ranged_answer() -> None:
    """A 206 answer starting inside a form and cut inside another shows neither piece."""
    body = (KEY[20:] + " middle " + KEY[:20]).encode()
    result = build_result(status=206, method="GET", url="https://a.test/", truncated=True,
                          raw_headers=[("Content-Type", "text/plain")], data=body,
                          secrets=secret_forms([KEY]))
    assert result.body == " middle "


def test_build_result_scrubs_escaped_slash_and_lowercase_percent_forms() -> None:
    """The JSON \\/ form and lowercase %2b/%2f/%3d forms are redacted in text and JSON."""
    import re
    from urllib.parse import quote

    def lowercase_hex(value: str) -> str:
        return re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), value)

    slashed = KEY.replace("/", "\\/")
    lower = lowercase_hex(quote(KEY, safe=""))
    assert "%2b" in lower and "%2f" in lower and "%3d" in lower
    text = f'{{"a": "{slashed}", "b": "{lower}", "c": "{lowercase_hex(quote(KEY))}"}}'
    for content_type in ("text/plain", "application/json"):
        result = build_result(status=200, method="GET", url="https://a.test/",
                              truncated=False, raw_headers=[("Content-Type", content_type)],
                              data=text.encode(), secrets=secret_forms([KEY]))
        shown = str(result.body)
        assert slashed not in shown and lower not in shown and KEY not in shown
        assert shown.count(REDACTED) == 3


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_decode_text_reads_utf16_and_utf32_without_bom_as_big_endian(codec: str) -> None:
    """A utf-16/utf-32 label without a byte order mark is read big-endian, never raising."""
    charset = charset_of(f"text/plain; charset={codec}")
    assert decode_text("héllo".encode(f"{codec}-be"), charset, truncated=False) == "héllo"
    assert decode_text("héllo".encode(codec), charset, truncated=False) == "héllo"
    decode_text(b'{"a": 1}', charset, truncated=False)


TILDE_KEY = "~" + KEY  # "~" is not direct in UTF-7: its encoding merges with a neighbour's


@pytest.mark.parametrize("before", ["~", "\u00e9", "x"])
def test_build_result_utf7_echo_never_shows_the_key_read_back(before: str) -> None:
    """A UTF-7 echo whose key merges with its neighbour is withheld, whole or cut anywhere."""
    import codecs

    data = f"key: {before}{TILDE_KEY} end".encode("utf-7")
    forms = secret_forms([TILDE_KEY])
    for cap in (None, *range(4, len(data))):
        result = build_result(status=200, method="GET", url="https://a.test/",
                              truncated=False, raw_headers=[
                                  ("Content-Type", "text/plain; charset=utf-7")],
                              data=data, secrets=forms, max_bytes=cap)
        text = result.body if isinstance(result.body, str) else ""
        back = codecs.decode(text.encode(), "utf-7", "replace")
        for shown in (str(result.to_dict()), back):
            assert not any(TILDE_KEY[i:i + MIN_PARTIAL] in shown
                           for i in range(len(TILDE_KEY) - MIN_PARTIAL + 1)), (cap, shown)


def test_build_result_binary_summary_hashes_the_scrubbed_bytes() -> None:
    """A binary body's SHA-256 and size are of the scrubbed bytes, so no hash of the key shows."""
    import hashlib

    raw = b"\x89PNG\x00" + KEY.encode() + b"\x00tail"
    result = build_result(status=200, method="GET", url="https://a.test/", truncated=False,
                          raw_headers=[("Content-Type", "image/png")], data=raw,
                          secrets=secret_forms([KEY]))
    scrubbed = b"\x89PNG\x00" + REDACTED.encode() + b"\x00tail"
    assert result.body_kind == "binary"
    assert result.body["sha256"] == hashlib.sha256(scrubbed).hexdigest()
    assert result.body["size"] == result.size == len(scrubbed)
