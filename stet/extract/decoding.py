"""Bytes to text, and sniffing whether bytes are text: what the text extractor and the media
type detection share (a byte-order mark first, then strict UTF-8, then charset-normalizer's
detection for legacy encodings). No extractor registry here, so the package imports it at
its top.

A file cut at an arbitrary byte (a download stopped short, a log split by size, an excerpt)
may begin or end inside a multi-byte UTF-8 character. Such a file is UTF-8 text all the same,
not a legacy encoding: :func:`decode_text` reads it as UTF-8, each cut fragment (the 1-3
bytes left of the character) becoming one U+FFFD REPLACEMENT CHARACTER in the text, with a
warning that says so; the raw bytes are kept as received by whoever stores them. Only what
is not UTF-8 but for such fragments goes to charset-normalizer's detection (the slow path:
about a millisecond a file), and the sniffing rejects binary cheaply first (a NUL byte, or
more than one control character in twenty).
"""

from __future__ import annotations

import codecs

import charset_normalizer

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def decode(data: bytes) -> tuple[str, str]:
    """Decode bytes to text; return (text, encoding). Raises UnicodeDecodeError if binary."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data.decode(encoding), encoding
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        return _legacy(data, exc)


def _legacy(data: bytes, exc: UnicodeDecodeError) -> tuple[str, str]:
    """The slow path: charset-normalizer's detection, for bytes that are not UTF-8."""
    if b"\x00" in data:
        raise exc
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise exc
    return str(best), best.encoding


#: The bytes :func:`looks_like_text` last decoded whole, and their text: the media type of a
#: small file is sniffed from all of its bytes, which its extraction then decodes again; the
#: second decoding (a fifth of the read-ahead worker's time on small text files) reuses the
#: first. Held by identity (``is``), so only those very bytes match; replaced whole, never
#: changed in place, so a thread that reads it once sees one pair.
_decoded: tuple = (None, "")

#: What stands in the text for each fragment of a cut character.
REPLACEMENT = "\ufffd"


def decode_text(data: bytes) -> tuple[str, str, str | None]:
    """Decode bytes to text, as :func:`decode`, but read UTF-8 cut inside a character at its
    start or end as UTF-8: (text, encoding, warning). Each cut fragment (at the start, the
    1-3 continuation bytes left of a character whose first bytes are gone; at the end, the
    first 1-3 bytes of a character cut short) is one U+FFFD in the text, and the warning says
    which bytes they were. A UTF-8 BOM is dropped as usual (its fragment can only be at the
    end). Raises UnicodeDecodeError if binary."""
    body, encoding = data, "utf-8"
    if data.startswith(codecs.BOM_UTF8):
        body, encoding = memoryview(data)[len(codecs.BOM_UTF8):], "utf-8-sig"
    elif data.startswith(tuple(bom for bom, _ in _BOMS)):
        text, encoding = decode(data)
        return text, encoding, None
    start, end = cut_edges(body)
    decoded = _decoded  # (one read: another thread may replace it meanwhile)
    if decoded[0] is data and not (start or end):  # decoded whole by looks_like_text
        return decoded[1], encoding, None
    try:
        text = codecs.utf_8_decode(body[start:len(body) - end], "strict", True)[0]
    except UnicodeDecodeError as exc:
        if encoding == "utf-8-sig":
            raise
        text, encoding = _legacy(data, exc)
        return text, encoding, None
    if not (start or end):
        return text, encoding, None
    return (REPLACEMENT * bool(start) + text + REPLACEMENT * bool(end), encoding,
            cut_warning(body, start, end))


def cut_edges(data: bytes | memoryview) -> tuple[int, int]:
    """(start, end): how many bytes at the start of ``data`` are the rest of a character whose
    first bytes were cut off (1-3 continuation bytes, 0 if none), and how many at its end are
    the first bytes of a character cut short (a lead byte and fewer continuation bytes than
    it announces, 0 if none). Looks at 4 bytes at each end: whether the bytes between are
    UTF-8 is for the caller to find out."""
    size = len(data)
    start = 0
    while start < size and start < 4 and 0x80 <= data[start] <= 0xBF:
        start += 1
    if start == 4:  # four continuation bytes: no character was cut there
        start = 0
    end = 0
    for back in range(1, min(3, size - start) + 1):
        byte = data[size - back]
        if byte < 0x80:
            break  # ASCII: nothing cut
        if byte >= 0xC0:  # the lead byte of the last character
            try:
                bytes(data[size - back:]).decode("utf-8")
            except UnicodeDecodeError as exc:  # a valid beginning, cut short
                if exc.reason == "unexpected end of data":
                    end = back
            break
    return start, end


def cut_warning(data: bytes | memoryview, start: int, end: int) -> str:
    """The warning of a text whose UTF-8 was cut inside a character at its start or end."""
    where = []
    if start:
        where.append(f"the first {_bytes(start)} ({bytes(data[:start]).hex(' ')}) {_are(start)} the end of "
                     "a character whose beginning is missing")
    if end:
        where.append(f"the last {_bytes(end)} ({bytes(data[len(data) - end:]).hex(' ')}) {_are(end)} the "
                     "beginning of a character cut short")
    return (f"UTF-8 cut inside a character: {' and '.join(where)}; each such fragment is one "
            "U+FFFD in the text, the bytes are kept as received")


def _bytes(count: int) -> str:
    return "byte" if count == 1 else f"{count} bytes"


def _are(count: int) -> str:
    return "is" if count == 1 else "are"


def decode_head(head: bytes) -> str:
    """A best-effort decoding of the first bytes of a file, for sniffing."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head.decode(encoding, "ignore")
    return head.decode("utf-8", "ignore")


def looks_like_text(head: bytes) -> bool:
    """True when the first bytes of a file read as text."""
    global _decoded
    if not head:
        return True
    if head.startswith(tuple(bom for bom, _ in _BOMS)):
        return True
    if b"\x00" in head:
        return False
    if head.isascii():
        return True
    start = 0
    while start < 4 and start < len(head) and 0x80 <= head[start] <= 0xBF:
        start += 1  # a character cut at the start of the file
    try:
        text, used = codecs.utf_8_decode(memoryview(head)[start if start < 4 else 0:], "strict", False)
    except UnicodeDecodeError:
        pass
    else:  # (not final: a character cut at the end of the sample is fine)
        if not start and used == len(head):
            _decoded = (head, text)  # a small file's whole bytes: decode_text reuses the text
        return True
    # Binary is rejected cheaply (a C-speed count of control characters) before the slow
    # detection of a legacy encoding.
    controls = len(head) - len(head.translate(None, _CONTROLS))
    return controls * 20 < len(head) and charset_normalizer.from_bytes(head).best() is not None


#: Control characters that no text has (all of them but tab, line feed, form feed, carriage
#: return and escape): more than one in twenty bytes, and bytes are not text.
_CONTROLS = bytes(b for b in range(32) if b not in (9, 10, 12, 13, 27))
