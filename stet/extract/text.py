"""Plain text in any encoding.

Order of evidence: a byte-order mark (UTF-8, UTF-32, UTF-16), strict UTF-8, then
charset-normalizer's detection for legacy encodings (the encoding found is recorded).
The BOM is dropped (it is the encoding's signature, not text); CR LF and lone CR become LF.
Nothing else changes: no normalization, every format character kept.

UTF-8 cut inside a character at its very start or end (a file cut at an arbitrary byte) is
UTF-8 all the same: each cut fragment is one U+FFFD in the text, with a warning naming its
bytes (:func:`~.decoding.decode_text`); the raw bytes are kept exactly as ever. Version 2
(version 1 sent such a file to charset-normalizer, which mostly found no encoding).
"""

from __future__ import annotations

from . import Extraction, register
from .decoding import decode_text, normalize_newlines

NAME = "stet.text"
VERSION = "2"


@register("text/plain", "text/markdown", "text/csv", "text/x-rst", "application/json")
def extract_text(data: bytes) -> Extraction:
    text, encoding, warning = decode_text(data)
    if encoding == "utf-8" and warning is None and "\r" not in text:
        return Extraction(text, NAME, VERSION, encoding=encoding, verbatim=True)
    return Extraction(normalize_newlines(text), NAME, VERSION, encoding=encoding, warning=warning)
