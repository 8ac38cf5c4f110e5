"""HTML: the visible text of the body, via selectolax (lexbor).

- ``script``, ``style``, ``template``, ``noscript``, ``head`` and comments are not text;
  entities are decoded by the parser.
- Runs of ASCII white space (space, tab, LF, FF, CR) collapse to one space as a browser
  renders them, except inside ``pre``, ``textarea`` and ``listing``; no other character is
  touched (NBSP, ZWNJ, ZWJ, LRM, RLM, soft hyphen stay as they are).
- Block elements and ``br`` end a line; spaces at the start and end of a line are dropped and
  runs of blank lines fold into one.
- The ``<title>`` becomes the document's title.
"""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser

from . import Extraction, register
from .decoding import decode, normalize_newlines

NAME = "stet.html"
VERSION = "1"

SKIP = {"script", "style", "template", "noscript", "head", "title", "-comment", "iframe", "object"}
PRESERVE = {"pre", "textarea", "listing", "plaintext"}
BLOCK = {
    "address", "article", "aside", "blockquote", "body", "caption", "center", "dd", "details",
    "dialog", "dir", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
    "h1", "h2", "h3", "h4", "h5", "h6", "header", "hgroup", "hr", "html", "legend", "li",
    "main", "menu", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "ul", "option", "listing", "plaintext",
}
_ASCII_SPACE = re.compile(r"[ \t\n\f\r]+")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def decode_html(data: bytes) -> tuple[str, str]:
    """BOM, then a ``<meta charset>`` in the first 4 KiB, then the text rules."""
    if not data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        match = _META_CHARSET.search(data[:4096])
        if match:
            encoding = match.group(1).decode("ascii").lower()
            try:
                return data.decode(encoding), encoding
            except (LookupError, UnicodeDecodeError):
                pass
    return decode(data)


class _Lines:
    """Accumulates text with collapsed white space and block-level line breaks."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.preserved: list[bool] = []
        self.pending_space = False

    def _append(self, value: str, preserved: bool) -> None:
        self.parts.append(value)
        self.preserved.append(preserved)

    def _at_line_start(self) -> bool:
        return not self.parts or self.parts[-1].endswith("\n")

    def text(self, value: str, preserve: bool) -> None:
        if preserve:
            self.pending_space = False
            self._append(normalize_newlines(value), True)
            return
        collapsed = _ASCII_SPACE.sub(" ", value)
        if collapsed.startswith(" "):
            self.pending_space = True
            collapsed = collapsed[1:]
        if not collapsed:
            return
        if self.pending_space and not self._at_line_start():
            self._append(" ", False)
        self.pending_space = collapsed.endswith(" ")
        self._append(collapsed.rstrip(" "), False)

    def newline(self) -> None:
        """End the line (once): spaces collapsed at its end are dropped."""
        self.pending_space = False
        while self.parts and not self.preserved[-1] and self.parts[-1].strip(" ") == "" \
                and not self.parts[-1].endswith("\n"):
            self.parts.pop()
            self.preserved.pop()
        if not self._at_line_start():
            self._append("\n", False)

    def result(self) -> str:
        text = "".join(self.parts)
        return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _walk(node, out: _Lines, preserve: bool) -> None:
    # An explicit stack keeps deeply nested documents from exhausting Python's recursion.
    stack = [(node, preserve, False)]
    while stack:
        current, keep, closing = stack.pop()
        tag = current.tag
        if closing:
            if tag in BLOCK:
                out.newline()
            continue
        if tag == "-text":
            out.text(current.text(deep=False) or "", keep)
            continue
        if tag in SKIP:
            continue
        if tag == "br":
            out.pending_space = False
            out._append("\n", False)
            continue
        if tag in BLOCK:
            out.newline()
        inner = keep or tag in PRESERVE
        stack.append((current, keep, True))
        children = list(current.iter(include_text=True))
        for child in reversed(children):
            stack.append((child, inner, False))


@register("text/html", "application/xhtml+xml", isolated=True)
def extract_html(data: bytes) -> Extraction:
    markup, encoding = decode_html(data)
    tree = LexborHTMLParser(markup)
    title_node = tree.css_first("head > title") or tree.css_first("title")
    title = _ASCII_SPACE.sub(" ", title_node.text()).strip() if title_node else None
    out = _Lines()
    if tree.body is not None:
        _walk(tree.body, out, False)
    return Extraction(out.result(), NAME, VERSION, encoding=encoding, title=title or None)
