"""Bytes to text, and sniffing whether bytes are text: what the text extractor and the media
type detection share (a byte-order mark first, then strict UTF-8, then charset-normalizer's
detection for legacy encodings). No extractor registry here, so the package imports it at
its top."""

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
        if b"\x00" in data:
            raise
        best = charset_normalizer.from_bytes(data).best()
        if best is None:
            raise exc
        return str(best), best.encoding


def decode_head(head: bytes) -> str:
    """A best-effort decoding of the first bytes of a file, for sniffing."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head.decode(encoding, "ignore")
    return head.decode("utf-8", "ignore")


def looks_like_text(head: bytes) -> bool:
    """True when the first bytes of a file read as text."""
    if not head:
        return True
    if head.startswith(tuple(bom for bom, _ in _BOMS)):
        return True
    if b"\x00" in head:
        return False
    if head.isascii():
        return True
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        if exc.start >= len(head) - 3:  # a character cut at the end of the sample
            return True
    controls = sum(1 for b in head if b < 32 and b not in (9, 10, 12, 13, 27))
    return controls * 20 < len(head) and charset_normalizer.from_bytes(head).best() is not None
