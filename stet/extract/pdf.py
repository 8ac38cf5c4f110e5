"""PDF: the text of every page, via pypdfium2 (PDFium, the PDF engine of Chromium).

- PDFium maps each glyph back to its characters through the font's ``ToUnicode`` table and
  puts right-to-left runs back in reading order, so Arabic and Persian come out as ordinary
  letters (U+0600..U+06FF), not as the presentation forms (U+FB50..U+FEFF) that the glyphs
  show, and not reversed. (pypdf and pdfminer.six return presentation forms; pdfminer.six
  also reverses the words.)
- Pages are separated by a form feed (U+000C) alone: page ``n`` (from 0) is
  ``text.split("\\f")[n]``, and a PDF of ``n`` pages has exactly ``n - 1`` form feeds. A page
  without text is an empty string between two form feeds.
- Line ends are normalized to ``\\n``; nothing else is changed (no normalization).
- A PDF that needs a password, or that PDFium cannot parse, keeps its bytes with an empty
  text and a warning naming the cause.

Known limit: PDFium decides line breaks from glyph positions, so a combining mark drawn well
above its letter (an Arabic tanwin, say) can split a line in two at that point.
"""

from __future__ import annotations

import functools
import re

from . import Extraction, register, sniffer
from .decoding import normalize_newlines

NAME = "stet.pdf"
PAGE_SEPARATOR = "\f"

_CAUSES = {
    1: "unknown error",
    2: "file not found or could not be opened",
    3: "corrupt or not a PDF (PDFium: data format error)",
    4: "encrypted: a password is needed to read it",
    5: "encrypted with an unsupported security handler",
    6: "a page could not be read",
}


@functools.cache
def version() -> str:
    """The extractor's version with PDFium's (imported on first use: it is slow to load)."""
    import pypdfium2 as pdfium

    return f"1 (pypdfium2 {pdfium.PYPDFIUM_INFO}, pdfium {pdfium.PDFIUM_INFO})"


_SIGNATURE = re.compile(rb"%PDF-\d")


@sniffer
def sniff_pdf(head: bytes, by_name: str | None) -> str | None:
    """``%PDF-`` and a digit at the very start; or anywhere in the first KiB of a file
    named as a PDF (PDFium, like Acrobat, looks for the header in the first 1,024 bytes,
    so such a file opens as a PDF). A text file that mentions ``%PDF-1`` stays text."""
    if _SIGNATURE.match(head):
        return "application/pdf"
    if by_name == "application/pdf" and _SIGNATURE.search(head[:1024]):
        return "application/pdf"
    return None


@register("application/pdf", isolated=True)
def extract_pdf(data: bytes) -> Extraction:
    import pypdfium2 as pdfium

    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        cause = _CAUSES.get(getattr(exc, "err_code", None), str(exc))
        return Extraction("", NAME, version(), warning=f"PDF not read: {cause}")
    try:
        pages = []
        for index in range(len(document)):
            page = document[index]
            try:
                textpage = page.get_textpage()
                try:
                    pages.append(normalize_newlines(textpage.get_text_range()))
                finally:
                    textpage.close()
            finally:
                page.close()
    finally:
        document.close()
    return Extraction(PAGE_SEPARATOR.join(pages), NAME, version())
