"""DOCX (Word 2007 and later): the text of paragraphs, tables, headers and footers, via
python-docx, in document order.

- Each section's header comes first, then the section's body (paragraphs and tables as they
  follow each other), then its footer; a header or footer linked to the previous section's is
  not repeated. Headers and footers used only on first or even pages are left out.
- A paragraph is one line. A table row is one line with its cells separated by a tab (U+0009);
  the paragraphs inside a cell are separated by ``\\n``; a merged cell counts once; nested
  tables are read in place.
- Inside a paragraph: ``w:t`` is its text as written, ``w:tab`` a tab, ``w:br`` and ``w:cr``
  a line feed, ``w:noBreakHyphen`` U+2011 and ``w:softHyphen`` U+00AD (format characters are
  kept, never dropped). Deleted revisions, field codes and the fallback copy of text boxes
  (``mc:Fallback``) are not text; text boxes are read once, where they are anchored.
- A password-protected file (an OLE container holding ``EncryptionInfo``) or a file that is
  not a valid DOCX keeps its bytes, with an empty text and a warning naming the cause.
- A ZIP bomb is not unzipped: before python-docx sees the file, its central directory and
  then each member, read in blocks and counted, must stay within :data:`MEMBERS`,
  :data:`MEMBER_BYTES`, :data:`UNZIPPED_BYTES` and :data:`RATIO`; otherwise the file keeps
  its bytes, with an empty text and a warning naming the bound. The extraction runs in the
  child process (:mod:`stet.extract.worker`) with :data:`MEMORY` as its memory budget.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile

from . import MEMORY as extraction_memory, Extraction, register, sniffer

NAME = "stet.docx"
MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

#: Bounds on what a DOCX may unzip to (python-docx reads every part into memory, and lxml
#: needs 10 to 25 times an XML part's size for its tree): members in the ZIP, bytes of one
#: member, bytes of all members, and the compression ratio of a member over RATIO_FROM bytes
#: (XML compresses about 5 to 20 times; DEFLATE allows about 1,000).
MEMBERS = 10_000
MEMBER_BYTES = 32 * 1024 * 1024
UNZIPPED_BYTES = 64 * 1024 * 1024
RATIO = 200
RATIO_FROM = 1024 * 1024
#: The memory one DOCX's extraction may allocate (the child's RLIMIT_AS, above its size):
#: the budget every extraction in the child has.
MEMORY = extraction_memory

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_MC_FALLBACK = "{http://schemas.openxmlformats.org/markup-compatibility/2006}Fallback"
_OLE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ENCRYPTION_INFO = "EncryptionInfo".encode("utf-16-le")
_CHARACTERS = {
    _W + "tab": "\t", _W + "br": "\n", _W + "cr": "\n",
    _W + "noBreakHyphen": "\u2011", _W + "softHyphen": "\u00ad",
}
#: Not text: deleted runs, field instructions, properties.
_SKIP = {_W + "del", _W + "instrText", _W + "delInstrText", _W + "rPr", _W + "pPr",
         _W + "moveFrom", _MC_FALLBACK}


@sniffer
def sniff_office(head: bytes, by_name: str | None) -> str | None:
    """A ZIP whose first entries name ``word/``; an OLE container named like a DOCX."""
    if head.startswith(b"PK\x03\x04"):
        if b"word/" in head or by_name == MEDIA_TYPE:
            return MEDIA_TYPE
        return by_name if by_name and by_name.startswith("application/") else "application/zip"
    if head.startswith(_OLE):
        if by_name == MEDIA_TYPE or (_ENCRYPTION_INFO in head and by_name is None):
            return MEDIA_TYPE  # an encrypted DOCX: the extractor says so
        return by_name if by_name and by_name.startswith("application/") else "application/x-ole-storage"
    return None


def _paragraph(element) -> str:
    parts: list[str] = []
    stack = [element]
    while stack:
        node = stack.pop()
        tag = node.tag
        if not isinstance(tag, str) or tag in _SKIP:
            continue
        if tag == _W + "t":
            parts.append(node.text or "")
            continue
        char = _CHARACTERS.get(tag)
        if char is not None:
            if tag != _W + "br" or node.get(_W + "type") in (None, "textWrapping"):
                parts.append(char)
            else:
                parts.append("\n")  # page and column breaks end the line too
            continue
        if tag == _W + "p" and node is not element:
            parts.append("\n")  # a paragraph inside a text box starts a new line
        stack.extend(reversed(node))
    return "".join(parts)


def _blocks(container, lines: list[str]) -> None:
    """Paragraphs and tables of a body, header, footer or cell, in order."""
    for child in container:
        if child.tag == _W + "p":
            lines.append(_paragraph(child))
        elif child.tag == _W + "tbl":
            _table(child, lines)
        elif child.tag == _W + "sdt":  # a content control: its content is in place
            for content in child.iterchildren(_W + "sdtContent"):
                _blocks(content, lines)


def _table(tbl, lines: list[str]) -> None:
    for tr in tbl.iterchildren(_W + "tr"):
        cells = []
        for tc in tr.iterchildren(_W + "tc"):
            inner: list[str] = []
            _blocks(tc, inner)
            cells.append("\n".join(inner))
        lines.append("\t".join(cells))


def _part_lines(part) -> list[str]:
    lines: list[str] = []
    if part is not None and not part.is_linked_to_previous:
        _blocks(part._element, lines)
        if not any(lines):
            lines = []
    return lines


class Bomb(Exception):
    """A ZIP that would unzip past one of the bounds."""


_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"


def _member_count(data: bytes) -> int | None:
    """The number of members the end of central directory record declares (read before
    :mod:`zipfile` builds an object for each), or None if there is none to read."""
    end = data.rfind(_EOCD, max(0, len(data) - 22 - 65535))
    if end < 0 or end + 22 > len(data):
        return None
    (count,) = struct.unpack_from("<H", data, end + 10)
    locator = end - 20
    if count == 0xFFFF and locator >= 0 and data.startswith(_EOCD64_LOCATOR, locator):
        (offset,) = struct.unpack_from("<Q", data, locator + 8)
        if offset + 40 <= len(data):
            (count,) = struct.unpack_from("<Q", data, offset + 32)
    return count


def check_unzipped(data: bytes) -> None:
    """Raise :class:`Bomb` if the ZIP ``data`` unzips past the bounds: declared sizes
    first, then each member read in blocks and counted, stopping at the bound (a declared
    size can lie)."""
    count = _member_count(data)
    if count is not None and count > MEMBERS:
        raise Bomb(f"{count} members in the ZIP, over the limit of {MEMBERS}")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        if len(members) > MEMBERS:
            raise Bomb(f"{len(members)} members in the ZIP, over the limit of {MEMBERS}")
        declared = 0
        for info in members:
            _check_member(info.filename, info.file_size, info.compress_size)
            declared += info.file_size
        if declared > UNZIPPED_BYTES:
            raise Bomb(f"it would unzip to {declared} bytes, over the {UNZIPPED_BYTES}-byte limit")
        total = 0
        for info in members:
            size = 0
            with archive.open(info) as stream:
                while block := stream.read(1024 * 1024):
                    size += len(block)
                    total += len(block)
                    _check_member(info.filename, size, info.compress_size)
                    if total > UNZIPPED_BYTES:
                        raise Bomb(f"it unzips to more than {UNZIPPED_BYTES} bytes, over the limit")


def _check_member(name: str, size: int, compressed: int) -> None:
    if size > MEMBER_BYTES:
        raise Bomb(f"{name} would unzip to {size} bytes, over the {MEMBER_BYTES}-byte limit for one member")
    if size > RATIO_FROM and size > RATIO * max(compressed, 1):
        raise Bomb(f"{name} would unzip to {size} bytes from {compressed}, "
                   f"over the compression ratio limit of {RATIO}")


@functools.cache
def version() -> str:
    """The extractor's version with python-docx's (imported on first use: it is slow to load)."""
    from importlib.metadata import version as installed

    return f"1 (python-docx {installed('python-docx')})"


@register(MEDIA_TYPE, isolated=True, memory=MEMORY)
def extract_docx(data: bytes) -> Extraction:
    import docx  # imported on first use: it is slow to load
    from docx.opc.exceptions import PackageNotFoundError

    if data.startswith(_OLE):
        cause = ("encrypted: a password-protected Office document" if _ENCRYPTION_INFO in data
                 else "an OLE container (Word 97-2003?), not a DOCX")
        return Extraction("", NAME, version(), warning=f"DOCX not read: {cause}")
    try:
        check_unzipped(data)
    except Bomb as bomb:
        return Extraction("", NAME, version(), warning=f"DOCX not read: a ZIP bomb? {bomb}")
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError) as exc:
        return Extraction("", NAME, version(),
                          warning=f"DOCX not read: corrupt or not a DOCX ({type(exc).__name__}: {exc})")
    try:
        document = docx.Document(io.BytesIO(data))
    except (zipfile.BadZipFile, PackageNotFoundError, KeyError, ValueError) as exc:
        return Extraction("", NAME, version(),
                          warning=f"DOCX not read: corrupt or not a DOCX ({type(exc).__name__}: {exc})")
    sections = list(document.sections)
    body = document.element.body
    lines: list[str] = []
    index = 0

    def start(i: int) -> None:
        if i < len(sections):
            lines.extend(_part_lines(sections[i].header))

    def end(i: int) -> None:
        if i < len(sections):
            lines.extend(_part_lines(sections[i].footer))

    start(0)
    for child in body:
        if child.tag == _W + "sectPr":
            continue
        _blocks([child], lines)
        # A paragraph holding a sectPr ends its section.
        if child.tag == _W + "p" and child.find(f"{_W}pPr/{_W}sectPr") is not None:
            end(index)
            index += 1
            start(index)
    end(index)
    title = document.core_properties.title or None
    return Extraction("\n".join(lines), NAME, version(), title=title)
