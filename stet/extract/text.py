"""Plain text in any encoding.

Order of evidence: a byte-order mark (UTF-8, UTF-32, UTF-16), strict UTF-8, then
charset-normalizer's detection for legacy encodings (the encoding found is recorded).
The BOM is dropped (it is the encoding's signature, not text); CR LF and lone CR become LF.
Nothing else changes: no normalization, every format character kept.
"""

from __future__ import annotations

import codecs

import charset_normalizer

from . import Extraction, register

NAME = "stet.text"
VERSION = "1"

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


@register("text/plain", "text/markdown", "text/csv", "text/x-rst", "application/json")
def extract_text(data: bytes) -> Extraction:
    text, encoding = decode(data)
    if encoding == "utf-8" and "\r" not in text:
        return Extraction(text, NAME, VERSION, encoding=encoding, verbatim=True)
    return Extraction(normalize_newlines(text), NAME, VERSION, encoding=encoding)
