"""Text extraction: one module per format, each pure (bytes in, text out).

:func:`detect_media_type` looks at the content first and the name second;
:func:`extract` picks the extractor for a media type. Every extractor returns an
:class:`Extraction` with its name and version. Texts keep every code point: no Unicode
normalization, no dropped format characters; line ends are normalized to ``\\n``.

A format without an extractor, or a file an extractor cannot read, still gets an
:class:`Extraction`, with an empty text and a warning: its bytes are archived all the same.

Hostile files: the formats that are parsed (HTML, PDF, DOCX, email) are extracted in a
child process with a time budget (:data:`TIMEOUT`, set for the process with
:func:`configure` or per call with ``extract(..., timeout=)``) and, for DOCX, a memory
budget; see :mod:`stet.extract.worker` and docs/formats.md, "Hostile files".
"""

from __future__ import annotations

import contextlib
import functools
import mimetypes
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from .._version import __version__
from . import worker
from .decoding import decode_head, looks_like_text

#: Files larger than this are archived with an empty text and a warning: extraction
#: holds the whole file and its text in memory, so it is bounded.
EXTRACT_LIMIT = 32 * 1024 * 1024
#: Seconds one file's extraction may take (formats extracted in a child process); past
#: it the file keeps its bytes, with an empty text and a warning. ``None``: no limit.
TIMEOUT: float | None = 30.0


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
#: Media types extracted in the child process, with each one's memory budget (or None).
_ISOLATED: dict[str, int | None] = {}
_settings: dict[str, float | None] = {"timeout": TIMEOUT}


#: How many bytes the extracting child may allocate for one file (its RLIMIT_AS above what it
#: holds already): with the child's own 50-60 MB, one file's extraction stays under 300 MB
#: (issue: any file, pool or not). An ordinary HTML page grows about ten times its size when
#: parsed, so pages up to about 16 MiB keep their text; a larger one keeps its bytes, with an
#: empty text and a warning that it needed more memory.
MEMORY = 160 * 1024 * 1024


def register(*media_types: str, isolated: bool = False, memory: int | None = MEMORY):
    """Register an extractor for media types (a decorator). ``isolated``: a parser that a
    crafted file can keep busy, run in the child process within the time budget;
    ``memory``: how many bytes that child may allocate for one file (None: no bound)."""

    def decorate(fn: Extractor) -> Extractor:
        for media_type in media_types:
            _EXTRACTORS[media_type] = fn
            if isolated:
                _ISOLATED[media_type] = memory
            else:
                _ISOLATED.pop(media_type, None)
        return fn

    return decorate


def configure(*, timeout: float | None = TIMEOUT) -> None:
    """Set this process's extraction time budget in seconds (``None``: no budget, every
    extraction in this process). Processes forked afterwards (ingest's workers) inherit it.

    Example: ``stet.extract.configure(timeout=120)`` before ``Archive.ingest(...)``."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"the extraction timeout must be a positive number of seconds, not {timeout!r}")
    _settings["timeout"] = timeout


def timeout() -> float | None:
    """The time budget in force in this process."""
    return _settings["timeout"]


@contextlib.contextmanager
def time_budget(seconds: float | None) -> Iterator[None]:
    """:func:`configure` the budget for a block (an ingest), then restore the one before.
    ``seconds=None`` keeps the budget in force."""
    previous = timeout()
    if seconds is not None:
        configure(timeout=seconds)
    try:
        yield
    finally:
        _settings["timeout"] = previous


def empty(warning: str) -> Extraction:
    return Extraction("", "none", __version__, warning=warning)


def too_large(size: int) -> Extraction | None:
    """The empty extraction, with its warning, of a file over :data:`EXTRACT_LIMIT`."""
    if size > EXTRACT_LIMIT:
        return empty(f"not extracted: {size} bytes is over the {EXTRACT_LIMIT}-byte extraction limit")
    return None


_UNSET: Any = object()


def extract(data: bytes, media_type: str, *, timeout: float | None = _UNSET) -> Extraction:
    """The text of ``data`` read as ``media_type``; never raises for bad content.

    ``timeout``: seconds this file may take (default: :func:`configure`'s, else
    :data:`TIMEOUT`; ``None``: no budget, extracted in this process)."""
    fn = _EXTRACTORS.get(media_type)
    if fn is None:
        return empty(f"no text extractor for {media_type}")
    if len(data) > EXTRACT_LIMIT:
        return too_large(len(data))
    budget = _settings["timeout"] if timeout is _UNSET else timeout
    if media_type in _ISOLATED and budget is not None and worker.available() and not _runner().inside:
        return _in_child(data, media_type, budget)
    return _run(fn, data, media_type)


def _run(fn: Extractor, data: bytes, media_type: str) -> Extraction:
    try:
        return fn(data)
    except MemoryError:
        raise
    except Exception as exc:  # a corrupt file keeps its bytes, with the cause
        return empty(f"{media_type} could not be read: {type(exc).__name__}: {exc}")


def _serve(request: tuple[bytes, str]) -> tuple[Extraction, bool]:
    """In the child: one file extracted within its memory budget; (the extraction, whether
    the child may go on: not after running out of memory)."""
    data, media_type = request
    memory = _ISOLATED.get(media_type)
    peak = worker.peak_memory()
    limit = worker.limit_memory(memory)
    try:
        result = _run(_EXTRACTORS[media_type], data, media_type)
        # A C library (lxml) reports a failed allocation as its own error: the peak says why.
        if result.warning is None or limit is None or worker.peak_memory() <= max(peak, limit - (8 << 20)):
            return result, True
    except MemoryError:
        pass
    finally:
        worker.limit_memory(None)
    return empty(f"not extracted: it needed more than the {memory}-byte memory budget "
                 f"for {media_type}"), False


def _in_child(data: bytes, media_type: str, budget: float) -> Extraction:
    try:
        return _runner().ask((data, media_type), budget)
    except TimeoutError:
        return empty(f"not extracted: took longer than {budget:g} s (the extraction time limit)")
    except worker.Died as died:
        return empty(f"not extracted: the extracting process {died} while reading it")


@functools.cache
def _runner() -> worker.Runner:
    return worker.Runner(_serve)


def shutdown() -> None:
    """End this process's extracting child, if there is one (it also ends at exit)."""
    _runner().shutdown()


def detect_media_type(head: bytes, filename: str = "") -> str:
    """The media type from the first bytes of a file (at least 8 KiB), then its name.

    Content wins only on a real signature at its real place; a file whose name says text
    stays text unless it starts with a binary format's signature (docs/formats.md,
    "Hostile files")."""
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


def says_text(by_name: str | None) -> bool:
    """Whether a file's name says it is text other than HTML (``.txt``, ``.md``, ``.csv``,
    ``.json``...): content sniffing then claims it for another text format (HTML, email)
    never; only a binary signature at its place (``%PDF-`` at offset 0, a ZIP) overrides it."""
    if by_name is None:
        return False
    if by_name.startswith("text/"):
        return by_name != "text/html"
    return by_name in ("application/json", "application/javascript")


_MARKUP_START = re.compile(rb"(?:\xef\xbb\xbf|\xff\xfe|\xfe\xff)?[\s\x00]*<")


def _sniff_html(head: bytes, by_name: str | None) -> str | None:
    if says_text(by_name) or not _MARKUP_START.match(head):  # cheap tests first: runs per file
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
