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
"""

from __future__ import annotations

import functools
import io
import zipfile

from . import Extraction, register, sniffer

NAME = "stet.docx"
MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

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


@functools.cache
def version() -> str:
    """The extractor's version with python-docx's (imported on first use: it is slow to load)."""
    from importlib.metadata import version as installed

    return f"1 (python-docx {installed('python-docx')})"


@register(MEDIA_TYPE)
def extract_docx(data: bytes) -> Extraction:
    import docx  # imported on first use: it is slow to load
    from docx.opc.exceptions import PackageNotFoundError

    if data.startswith(_OLE):
        cause = ("encrypted: a password-protected Office document" if _ENCRYPTION_INFO in data
                 else "an OLE container (Word 97-2003?), not a DOCX")
        return Extraction("", NAME, version(), warning=f"DOCX not read: {cause}")
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
