"""Email (``message/rfc822``, ``.eml``): headers, then the body; attachments as parts.

Read with the standard library's :mod:`email` and ``policy.default`` (RFC 2047 encoded
words and MIME charsets are decoded).

- The text starts with the header lines ``From``, ``To``, ``Cc``, ``Date`` and ``Subject``
  (those present, in that order, one ``Name: value`` line each, folded lines unfolded), then
  an empty line, then the body.
- The body is the ``text/plain`` part if there is one, else the ``text/html`` part through
  the HTML extractor (:mod:`stet.extract.html`: the visible text of the body).
- Every attachment (and every non-body part that carries a file name, such as an inline
  image) is returned in :attr:`Extraction.parts` as ``(filename, bytes)`` with its bytes as
  sent (the transfer encoding undone); ingest stores each as its own document whose
  ``parent`` is the message. An attached message (``message/rfc822``) is a part too.
- The subject becomes the title. An encrypted message (``multipart/encrypted``, S/MIME
  ``application/pkcs7-mime``) keeps its headers as text, with a warning.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage

from . import Extraction, register, sniffer
from .html import extract_html
from .text import decode_head, normalize_newlines

NAME = "stet.email"
VERSION = "1"
HEADERS = ("From", "To", "Cc", "Date", "Subject")

_FIELD = re.compile(r"[!-9;-~]+:")  # RFC 5322 field name: printable ASCII except ':'
#: How a message can start (a BOM, an mbox "From " line or a field): a cheap first test.
_START = re.compile(rb"(?:\xef\xbb\xbf)?(?:From |[!-9;-~]+:)")
_KNOWN = {"from", "to", "cc", "date", "subject", "message-id", "mime-version", "received",
          "return-path", "reply-to", "sender", "content-type", "delivered-to", "x-mailer"}


@sniffer
def sniff_message(head: bytes, by_name: str | None) -> str | None:
    """A header block (every line a field or a folded continuation) with ``From:`` and at
    least two other well-known fields before the first empty line."""
    if not _START.match(head):  # cheap test first: this runs for every file ingested
        return None
    text = normalize_newlines(decode_head(head))
    if text.startswith("From "):  # an mbox "From " line before the headers
        text = text.split("\n", 1)[1] if "\n" in text else ""
    block = text.split("\n\n", 1)
    if len(block) < 2 and len(text) < len(head) // 2:
        return None
    names = []
    for line in block[0].split("\n"):
        if line[:1] in (" ", "\t") and names:
            continue
        match = _FIELD.match(line)
        if not match:
            return None
        names.append(match.group()[:-1].lower())
    known = _KNOWN.intersection(names)
    if "from" in known and len(known) >= 3:
        return "message/rfc822"
    return None


def _header(message: EmailMessage, name: str) -> str | None:
    values = message.get_all(name)
    if not values:
        return None
    value = ", ".join(str(v) for v in values)
    return re.sub(r"\r?\n[ \t]*", " ", value)


def _body(message: EmailMessage) -> tuple[str, str | None]:
    """(the body's text, the encoding of the part it came from)."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return "", None
    charset = part.get_content_charset()
    content = part.get_content()
    if part.get_content_subtype() == "html":
        # A BOM tells the HTML extractor the encoding, over any <meta charset> in the markup.
        html = extract_html(b"\xef\xbb\xbf" + content.encode("utf-8", "surrogatepass"))
        return html.text, charset
    return normalize_newlines(content), charset


def _filename(part, index: int) -> str:
    name = part.get_filename()
    if name:
        return name.replace("/", "_").replace("\\", "_")
    if part.get_content_type() == "message/rfc822":
        return f"attachment-{index}.eml"
    import mimetypes

    extension = mimetypes.guess_extension(part.get_content_type()) or ".bin"
    return f"attachment-{index}{extension}"


def _walk(part):
    """Every part, depth first, without descending into attached messages."""
    yield part
    if part.is_multipart() and part.get_content_maintype() != "message":
        for sub in part.iter_parts():
            yield from _walk(sub)


def _attachments(message: EmailMessage) -> list[tuple[str, bytes]]:
    parts = []
    body = message.get_body(preferencelist=("plain", "html"))
    for part in _walk(message):
        if part is message or part is body:
            continue
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                parts.append((_filename(part, len(parts) + 1), inner[0].as_bytes(policy=policy.default)))
            continue
        if part.is_multipart():
            continue
        if part.get_content_disposition() != "attachment" and not part.get_filename():
            continue
        parts.append((_filename(part, len(parts) + 1), part.get_payload(decode=True) or b""))
    return parts


@register("message/rfc822")
def extract_message(data: bytes) -> Extraction:
    message = email.message_from_bytes(data, policy=policy.default)
    lines = []
    for name in HEADERS:
        value = _header(message, name)
        if value is not None:
            lines.append(f"{name}: {value}")
    subject = _header(message, "Subject")
    warning = None
    content_type = message.get_content_type()
    if content_type in ("multipart/encrypted", "application/pkcs7-mime"):
        body, encoding = "", None
        warning = f"encrypted message ({content_type}): only the headers are text"
    else:
        body, encoding = _body(message)
    text = "\n".join(lines) + "\n\n" + body if body else "\n".join(lines)
    parts = [] if warning else _attachments(message)
    return Extraction(text, NAME, VERSION, encoding=encoding, warning=warning,
                      title=subject or None, parts=parts)
