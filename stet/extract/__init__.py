"""Text extraction: one module per format, each pure (bytes in, text out).

:func:`detect_media_type` looks at the content first and the name second;
:func:`extract` picks the extractor for a media type. Every extractor returns an
:class:`Extraction` with its name and version. Texts keep every code point: no Unicode
normalization, no dropped format characters; line ends are normalized to ``\\n``.

A format without an extractor, or a file an extractor cannot read, still gets an
:class:`Extraction`, with an empty text and a warning: its bytes are archived all the same.
"""

from __future__ import annotations

import functools
import mimetypes
import os
import re
from dataclasses import dataclass, field
from typing import Callable

from .. import __version__

#: Files larger than this are archived with an empty text and a warning: extraction
#: holds the whole file and its text in memory, so it is bounded.
EXTRACT_LIMIT = 32 * 1024 * 1024


@dataclass
class Extraction:
    text: str
    extractor: str
    extractor_version: str
    encoding: str | None = None
    warning: str | None = None
    title: str | None = None
    #: True when ``text.encode("utf-8")`` is exactly the raw bytes (a UTF-8 file without BOM
    #: or CR): the bytes are then stored once, as the text, and the text's SHA-256 is theirs.
    verbatim: bool = False
    #: Further documents found inside this one (an email's attachments):
    #: a list of (filename, bytes).
    parts: list[tuple[str, bytes]] = field(default_factory=list)


Extractor = Callable[[bytes], Extraction]

_EXTRACTORS: dict[str, Extractor] = {}


def register(*media_types: str):
    """Register an extractor for media types (a decorator)."""

    def decorate(fn: Extractor) -> Extractor:
        for media_type in media_types:
            _EXTRACTORS[media_type] = fn
        return fn

    return decorate


def empty(warning: str) -> Extraction:
    return Extraction("", "none", __version__, warning=warning)


def too_large(size: int) -> Extraction | None:
    """The empty extraction, with its warning, of a file over :data:`EXTRACT_LIMIT`."""
    if size > EXTRACT_LIMIT:
        return empty(f"not extracted: {size} bytes is over the {EXTRACT_LIMIT}-byte extraction limit")
    return None


def extract(data: bytes, media_type: str) -> Extraction:
    """The text of ``data`` read as ``media_type``; never raises for bad content."""
    fn = _EXTRACTORS.get(media_type)
    if fn is None:
        return empty(f"no text extractor for {media_type}")
    if len(data) > EXTRACT_LIMIT:
        return too_large(len(data))
    try:
        return fn(data)
    except Exception as exc:  # a corrupt file keeps its bytes, with the cause
        return empty(f"{media_type} could not be read: {type(exc).__name__}: {exc}")


def detect_media_type(head: bytes, filename: str = "") -> str:
    """The media type from the first bytes of a file (at least 8 KiB), then its name."""
    from .text import looks_like_text

    by_name = _by_extension(os.path.splitext(filename)[1].lower()) if filename else None
    for sniff in _SNIFFERS:
        found = sniff(head, by_name)
        if found:
            return found
    if looks_like_text(head):
        if by_name and (by_name.startswith("text/") or by_name in _TEXTUAL):
            return by_name
        return "text/plain"
    return "application/octet-stream"


@functools.lru_cache(maxsize=512)
def _by_extension(extension: str) -> str | None:
    """The media type that a file name's extension suggests (cached: this runs per file)."""
    return mimetypes.guess_type("name" + extension, strict=False)[0] if extension else None


_TEXTUAL = {"application/json", "application/xml", "application/javascript", "message/rfc822"}


_MARKUP_START = re.compile(rb"(?:\xef\xbb\xbf|\xff\xfe|\xfe\xff)?[\s\x00]*<")


def _sniff_html(head: bytes, by_name: str | None) -> str | None:
    from .text import decode_head

    if not _MARKUP_START.match(head):  # cheap test first: this runs for every file ingested
        return None
    start = decode_head(head)[:1024].lstrip("\ufeff \t\r\n").lower()
    if start.startswith(("<!doctype html", "<html")) or (
        by_name in ("text/html", "application/xhtml+xml") and start.startswith("<")
    ):
        return "text/html"
    return None


Sniffer = Callable[[bytes, "str | None"], "str | None"]
#: Content sniffers, most specific first; format modules add theirs with :func:`sniffer`.
_SNIFFERS: list[Sniffer] = []


def sniffer(fn: Sniffer) -> Sniffer:
    _SNIFFERS.insert(0, fn)
    return fn


_SNIFFERS.append(_sniff_html)

from . import text, html  # noqa: E402,F401  (registers the extractors)
from . import pdf, word, message  # noqa: E402,F401  (word: DOCX; not named after python-docx)
