"""Scrubbing a provider's answer in bytes, before it is capped, decoded or shown.

A provider that echoes the request (many do) sends the credential back; the answer's own
label decides how it would be read. So the raw bytes are scrubbed first, for every form of the
credential (:func:`alter_mcp.proxy.inject.secret_forms`) as UTF-8/Latin-1, as UTF-16 and
UTF-32 (both byte orders) and, when the charset label names a text encoding that is not
honoured (EBCDIC, UTF-7, ...), as that encoding too. Only then is the body capped, and a cut
never ends with the start of a form nor (for a ranged answer) begins with the end of one.

Only :data:`HONOURED_CHARSETS` decode a body; any other text encoding, or an unknown label, is
read as UTF-8 with replacement characters, and a label that names a bytes-to-bytes transform
(``base64``, ``hex``, ``zlib``, ``rot13``, ...) makes the body binary (summarised, never shown).
"""

from __future__ import annotations

import codecs
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, AnyStr, NoReturn

from alter_mcp.redaction import REDACTED

__all__ = [
    "HONOURED_CHARSETS",
    "MIN_PARTIAL",
    "AnswerForms",
    "ByteForm",
    "Charset",
    "answer_forms",
    "charset_of",
    "clean_text",
    "decode_text",
    "reveals",
    "scrub_bytes",
    "trim_cut",
]

#: Charsets a body is decoded with (Python's canonical codec names; aliases resolve to them).
#: All are ASCII-compatible or UTF-16/32, whose forms are scrubbed in the raw bytes.
HONOURED_CHARSETS = frozenset({
    "utf-8", "utf-8-sig", "ascii", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le",
    "utf-32-be", "iso8859-1", "iso8859-2", "iso8859-3", "iso8859-4", "iso8859-5",
    "iso8859-6", "iso8859-7", "iso8859-8", "iso8859-9", "iso8859-10", "iso8859-11",
    "iso8859-13", "iso8859-14", "iso8859-15", "iso8859-16", "cp1250", "cp1251", "cp1252",
    "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "koi8-r", "koi8-u",
    "shift_jis", "cp932", "euc_jp", "euc_kr", "cp949", "gb2312", "gbk", "gb18030", "big5",
    "big5hkscs",
})

#: The shortest piece of a form a cut edge may not show (for forms of 8+ characters).
#: Four characters: text ends with a given form's first four characters about once in 2**24
#: (base64 alphabet), so ordinary text is practically never trimmed, while what may show, at
#: most three characters, is always the same first (or last) three whatever the cut offset, so
#: repeated calls with shifted cuts learn nothing more.
MIN_PARTIAL = 4

_FALLBACK = "utf-8"
_BOMS = {"utf-16": (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE),
         "utf-32": (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)}
_WIDE = ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be")
_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9._:\-]+)""", re.IGNORECASE)
_ASCII_REDACTED = REDACTED.encode("ascii")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Charset:
    """How a body with this charset label is read."""

    label: str | None
    #: The codec that decodes the body: an honoured label, else UTF-8 with replacement.
    codec: str = _FALLBACK
    #: False when the label names a bytes-to-bytes transform: the body is not text at all.
    is_text: bool = True
    #: A text encoding the label names but that is not honoured: forms are scrubbed in it too.
    disguise: str | None = None


def charset_of(content_type: str | None) -> Charset:
    """Return how a body labelled ``content_type`` is decoded (never raises)."""
    match = _CHARSET.search(content_type or "")
    if match is None:
        return Charset(label=None)
    label = match.group(1)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return Charset(label=label)
    # Python marks its bytes-to-bytes and str-to-str codecs (base64, zlib, rot13...) this way.
    if not getattr(info, "_is_text_encoding", True):
        return Charset(label=label, is_text=False)
    if info.name in HONOURED_CHARSETS:
        return Charset(label=label, codec=info.name)
    return Charset(label=label, disguise=info.name)


def _least(form: str) -> int:
    return MIN_PARTIAL if len(form) >= 2 * MIN_PARTIAL else max(2, len(form) // 2)


#: One encoding of a form: its bytes, the shortest piece a cut may not show (in bytes), and
#: what replaces it. A plain tuple: one is built per form on every answer.
ByteForm = tuple[bytes, int, bytes]


@dataclass(frozen=True, slots=True)
class AnswerForms:
    """Every form of the credential an answer may carry, as text and as bytes.

    Built on every answer, so only what every answer needs is worked out up front: the plain
    ASCII forms (nearly always all of them) are encoded as they are searched, and pieces for
    cut edges and UTF-16/32 forms only when a body is cut or holds a NUL byte.
    """

    charset: Charset
    #: The text forms, longest first.
    forms: tuple[str, ...] = field(repr=False)
    #: Byte forms besides the ASCII ones: non-ASCII forms as UTF-8 and Latin-1, and every
    #: form in a disguise encoding; longest first.
    extra: tuple[ByteForm, ...] = field(default=(), repr=False)
    #: How many bytes past a cap to read so that a form across the cut is seen whole.
    margin: int = 0

    @property
    def text(self) -> tuple[tuple[str, int], ...]:
        """Return (text form, shortest piece of it a cut may not show) pairs, longest first."""
        return tuple((form, _least(form)) for form in self.forms)

    @property
    def narrow(self) -> tuple[ByteForm, ...]:
        """Return the byte forms in UTF-8, Latin-1 and any disguise, longest first."""
        plain = tuple((form.encode("ascii"), least, _ASCII_REDACTED)
                      for form, least in self.text if form.isascii())
        return _ordered((*plain, *self.extra)) if self.extra else plain

    def wide(self) -> tuple[ByteForm, ...]:
        """Return the UTF-16/32 byte forms (only a body holding a NUL byte can hold one)."""
        found: dict[bytes, ByteForm] = {}
        for form, least in self.text:
            for codec in _WIDE:
                if (pair := _encoded(form, least, codec, codec)) is not None:
                    found.setdefault(pair[0], pair)
        return _ordered(found.values())

    def forms_in(self, data: bytes) -> tuple[ByteForm, ...]:
        """Return the byte forms worth searching ``data`` for."""
        return (*self.narrow, *self.wide()) if b"\x00" in data else self.narrow

    def edges_in(self, data: bytes) -> list[tuple[bytes, int]]:
        """Return (byte form, shortest piece) pairs for :func:`trim_cut` on ``data``."""
        return [(form, least) for form, least, _ in self.forms_in(data)]

    def __reduce__(self) -> NoReturn:
        raise TypeError("AnswerForms holds secret values and cannot be pickled")


def _encoded(form: str, least: int, codec: str, shown_as: str) -> ByteForm | None:
    try:
        data, shown, nxt = (form.encode(codec), form[:least - 1].encode(codec),
                            form[least - 1:least].encode(codec))
        # The first byte past least-1 characters that tells anything of the next one (a
        # big-endian NUL high byte tells nothing) is the shortest piece a cut may not show.
        telling = len(nxt) - len(nxt.lstrip(b"\x00")) + 1
        return data, len(shown) + telling, REDACTED.encode(shown_as)
    except Exception:  # some codecs (idna, undefined) refuse any text
        return None


def _ordered(found: Iterable[ByteForm]) -> tuple[ByteForm, ...]:
    forms = tuple(found)
    if all(len(a[0]) >= len(b[0]) for a, b in itertools.pairwise(forms)):
        return forms
    return tuple(sorted(forms, key=lambda f: (-len(f[0]), f[0])))


def answer_forms(secrets: Sequence[str], content_type: str | None) -> AnswerForms:
    """Return the text and byte forms of ``secrets`` to scrub from an answer so labelled."""
    charset = charset_of(content_type)
    # Longest first, so a form holding another is replaced whole (KnownSecrets already are).
    forms = tuple(secrets)
    if not all(len(a) >= len(b) for a, b in itertools.pairwise(forms)):
        forms = tuple(sorted(forms, key=len, reverse=True))
    # UTF-32 takes 4 bytes a character, as does UTF-8 at most and UTF-16 at most.
    margin = 4 * len(forms[0]) if forms else 0
    if charset.disguise is None and all(form.isascii() for form in forms):
        return AnswerForms(charset=charset, forms=forms, margin=margin)
    extra: dict[bytes, ByteForm] = {}
    for form in forms:
        least = _least(form)
        codecs_of_form = () if form.isascii() else ("utf-8", "latin-1")
        # A disguised form is replaced in ASCII: the body is then read as UTF-8.
        for codec in (*codecs_of_form, *((charset.disguise,) if charset.disguise else ())):
            if (found := _encoded(form, least, codec, "ascii")) is not None:
                extra.setdefault(found[0], found)
    ordered = _ordered(extra.values())
    return AnswerForms(charset=charset, forms=forms, extra=ordered,
                       margin=max(margin, len(ordered[0][0]) if ordered else 0))


def scrub_bytes(data: bytes, forms: AnswerForms) -> bytes:
    """Return ``data`` with every byte form replaced by ``[redacted]`` in its own encoding."""
    if forms.extra or b"\x00" in data:
        for form, _, replacement in forms.forms_in(data):
            if form in data:
                data = data.replace(form, replacement)
        return data
    for text in forms.forms:  # the common case: ASCII forms only, encoded as searched
        form = text.encode("utf-8", "replace")  # (a form no codec took is a lone surrogate)
        if form in data:
            data = data.replace(form, _ASCII_REDACTED)
    return data


def _cut_end(data: AnyStr, forms: Sequence[tuple[AnyStr, int]]) -> int:
    """Return the length of the longest piece (of least+ characters) of a form ending data."""
    cut, last = 0, data[-1:]
    for form, least in forms:
        # Only sizes whose final character is data's final character can match.
        at = form.rfind(last, 0, min(len(form), len(data)))
        while at >= max(least, cut + 1) - 1:
            if data.endswith(form[:at + 1]):
                cut = at + 1
                break
            at = form.rfind(last, 0, at)
    return cut


def _cut_start(data: AnyStr, forms: Sequence[tuple[AnyStr, int]]) -> int:
    """Return the length of the longest piece (of least+ characters) of a form starting data."""
    cut, first = 0, data[:1]
    for form, least in forms:
        end = len(form) - max(least, cut + 1) + 1
        at = form.find(first, max(0, len(form) - len(data)), max(end, 0))
        while at != -1:
            if data.startswith(form[at:]):
                cut = len(form) - at
                break
            at = form.find(first, at + 1, end)
    return cut


def trim_cut(
    data: AnyStr, forms: Sequence[tuple[AnyStr, int]], *, end: bool, start: bool,
) -> AnyStr:
    """Return ``data`` without a piece of a form at a cut edge (its end, and/or its start)."""
    # Repeated: what is left after one trim may itself end with the start of another form.
    while end and (cut := _cut_end(data, forms)):
        data = data[:-cut]
    while start and (cut := _cut_start(data, forms)):
        data = data[cut:]
    return data


def clean_text(text: str) -> str:
    """Return ``text`` with lone surrogates (no UTF-8 can carry them) as U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")  # a C-speed scan; the regex below is ten times slower
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text)
    return text


def decode_text(data: bytes, charset: Charset, *, truncated: bool) -> str:
    """Return ``data`` decoded by ``charset`` with replacement characters, never raising."""
    codec = charset.codec
    if codec in ("utf-16", "utf-32") and not data.startswith(_BOMS[codec]):
        codec += "-be"  # RFC 2781: without a byte order mark, big-endian (Python would raise)
    # final=False when truncated: a character cut in half is dropped, not shown as U+FFFD.
    try:
        text = codecs.getincrementaldecoder(codec)(errors="replace").decode(
            data, final=not truncated)
    except UnicodeError:  # no decoder in the allow-list is known to raise; never let one
        text = data.decode(_FALLBACK, "replace")
    return clean_text(text)


def reveals(text: str, forms: AnswerForms, *, end: bool = False, start: bool = False) -> bool:
    """Return True if ``text`` read back through the label's own encoding shows a form.

    With ``end`` (``start``) a piece of a form at that cut edge counts too. The byte scrub
    misses a form whose encoding depends on its neighbours (UTF-7 merges adjacent base64
    runs), so this reads the result back the way a caller could.
    """
    disguise = forms.charset.disguise
    if disguise is None:
        return False
    try:
        back: Any = text.encode("utf-8").decode(disguise, "replace")
    except Exception:  # a codec that cannot decode cannot reveal either
        return False
    if any(form in back for form, _ in forms.text):
        return True
    return (end or start) and trim_cut(back, forms.text, end=end, start=start) != back
