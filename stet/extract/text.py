"""Plain text in any encoding.

Order of evidence: a byte-order mark (UTF-8, UTF-32, UTF-16), strict UTF-8, then
charset-normalizer's detection for legacy encodings (the encoding found is recorded).
The BOM is dropped (it is the encoding's signature, not text); CR LF and lone CR become LF.
Nothing else changes: no normalization, every format character kept.
"""

from __future__ import annotations

from . import Extraction, register
from .decoding import decode, normalize_newlines

NAME = "stet.text"
VERSION = "1"


@register("text/plain", "text/markdown", "text/csv", "text/x-rst", "application/json")
def extract_text(data: bytes) -> Extraction:
    text, encoding = decode(data)
    if encoding == "utf-8" and "\r" not in text:
        return Extraction(text, NAME, VERSION, encoding=encoding, verbatim=True)
    return Extraction(normalize_newlines(text), NAME, VERSION, encoding=encoding)
