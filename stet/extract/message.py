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
- Bounds (hostile nesting): parts nested more than :data:`MAX_DEPTH` levels deep (each
  ``multipart`` and each attached message is a level) are not parsed: the parser reads them
  as opaque bytes, so nothing recurses deeper than that, and the message's own text is
  always kept. Such a message returns no attached messages as parts (each would be as
  deep, one level less, and so on), with a warning naming the bound. At most
  :data:`MAX_PARTS` parts are returned, with a warning when there are more.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage

from . import Extraction, register, says_text, sniffer
from .html import extract_html
from .decoding import decode_head, normalize_newlines

NAME = "stet.email"
VERSION = "1"
HEADERS = ("From", "To", "Cc", "Date", "Subject")
#: MIME nesting parsed (levels of ``multipart`` and attached messages), and parts returned.
MAX_DEPTH = 32
MAX_PARTS = 1000

_FIELD = re.compile(r"[!-9;-~]+:")  # RFC 5322 field name: printable ASCII except ':'
#: How a message can start (a BOM, an mbox "From " line or a field): a cheap first test.
_START = re.compile(rb"(?:\xef\xbb\xbf)?(?:From |[!-9;-~]+:)")
_KNOWN = {"from", "to", "cc", "date", "subject", "message-id", "mime-version", "received",
          "return-path", "reply-to", "sender", "content-type", "delivered-to", "x-mailer"}


@sniffer
def sniff_message(head: bytes, by_name: str | None) -> str | None:
    """A message, by the rules of docs/formats.md ("Hostile files"): never when the name
    says text (``notes.txt`` starting with ``From:`` lines stays text); named as a message
    (``.eml``), a header block with one well-known field; otherwise a header block that
    ends in an empty line, with ``From:`` and at least two other well-known fields."""
    if says_text(by_name) or not _START.match(head):  # cheap tests first: runs for every file
        return None
    text = normalize_newlines(decode_head(head))
    if text.startswith("From "):  # an mbox "From " line before the headers
        text = text.split("\n", 1)[1] if "\n" in text else ""
    named = by_name == "message/rfc822"
    block = text.split("\n\n", 1)
    if len(block) < 2 and not (named and len(head) < 8192):  # no end to the header block
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
    if (named and known) or ("from" in known and len(known) >= 3):
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


class _Bounded(EmailMessage):
    """A message part that knows its depth: past :data:`MAX_DEPTH`, a ``multipart`` or
    ``message`` part reads as opaque to the parser (and to every walk afterwards), so no
    recursion in :mod:`email` goes deeper (the parser recurses once per level). The top
    message's ``too_deep`` says whether that happened."""

    depth = 0
    top: "_Bounded | None" = None
    too_deep = False

    def attach(self, payload) -> None:
        if isinstance(payload, _Bounded):  # called by the parser as it makes each part
            payload.depth = self.depth + 1
            payload.top = self.top or self
        super().attach(payload)

    def get_content_maintype(self) -> str:
        maintype = super().get_content_maintype()
        if maintype in ("multipart", "message") and self.depth > MAX_DEPTH:
            (self.top or self).too_deep = True
            return "application"
        return maintype


def _walk(message):
    """Every part, depth first, without descending into attached messages (an explicit
    stack: no recursion)."""
    stack = [message]
    while stack:
        part = stack.pop()
        yield part
        if part.is_multipart() and part.get_content_maintype() != "message":
            stack.extend(reversed(list(part.iter_parts())))


def _attachments(message: EmailMessage, too_deep: bool) -> tuple[list[tuple[str, bytes]], list[str]]:
    parts = []
    warnings = []
    more = 0
    body = message.get_body(preferencelist=("plain", "html"))
    for part in _walk(message):
        if part is message or part is body:
            continue
        if part.get_content_maintype() == "message":
            inner = part.get_payload()
            if isinstance(inner, list) and inner:
                if too_deep:
                    continue
                if len(parts) >= MAX_PARTS:
                    more += 1
                    continue
                parts.append((_filename(part, len(parts) + 1), inner[0].as_bytes(policy=policy.default)))
            continue
        if part.is_multipart():
            continue
        if part.get_content_disposition() != "attachment" and not part.get_filename():
            continue
        if len(parts) >= MAX_PARTS:
            more += 1
            continue
        parts.append((_filename(part, len(parts) + 1), part.get_payload(decode=True) or b""))
    if too_deep:
        warnings.append(f"nested more than {MAX_DEPTH} levels deep: the parts below that level "
                        "and the attached messages are not extracted (their bytes are kept in "
                        "this message)")
    if more:
        warnings.append(f"{more} parts past the first {MAX_PARTS} are not extracted "
                        "(their bytes are kept in this message)")
    return parts, warnings


@register("message/rfc822", isolated=True)
def extract_message(data: bytes) -> Extraction:
    message = email.message_from_bytes(data, _Bounded, policy=policy.default)
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
    parts: list[tuple[str, bytes]] = []
    if not warning:
        parts, warnings = _attachments(message, message.too_deep)
        warning = "; ".join(warnings) or None
    return Extraction(text, NAME, VERSION, encoding=encoding, warning=warning,
                      title=subject or None, parts=parts)
