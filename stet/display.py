"""Names and text as people see them: on a terminal line, in a page, as a download's name.

A file name, title, path, source, author, layer name or note comes from whoever supplied the
file. Printed as it is, an ANSI escape sequence in it drives the terminal, a newline forges an
extra row, and a bidirectional override (U+202E) makes ``harmless\u202etxt.exe`` display as
``harmlessexe.txt``. :func:`shown` writes each such character visibly escaped instead
(``\\x1b``, ``\\n``, ``\\u202e``); :func:`download_name` replaces it with ``_`` in a file name
offered for download. ``--json`` output and the stored values stay exact: only what is shown
changes, and the document text on its page is never touched.

The characters (:data:`UNSAFE`):

- C0 controls U+0000-U+001F (tab, newline and carriage return included), DEL U+007F and the
  C1 controls U+0080-U+009F (NEL, CSI among them);
- the bidirectional formatting characters: the embeddings and overrides U+202A-U+202E, the
  isolates U+2066-U+2069, and the marks LRM U+200E, RLM U+200F and ALM U+061C (invisible, they
  move neutral characters such as ``.`` and digits around them);
- the line and paragraph separators U+2028 and U+2029 (a line break to many terminals and
  editors);
- lone surrogates U+D800-U+DFFF (a file name that is not valid UTF-8, as Python decodes it),
  which no terminal can print.

Kept as they are: ZWNJ U+200C and ZWJ U+200D (Persian spelling and emoji sequences need them,
and they reorder nothing), and every other character. A backslash is not escaped: the output
is for reading, ``--json`` is for exactness.
"""

from __future__ import annotations

import re

UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
                    "\u2066-\u2069\ud800-\udfff]")

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match) -> str:
    ch = match.group()
    code = ord(ch)
    return _NAMED.get(ch) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def shown(value) -> str:
    """``value`` as a line or a page shows it: every :data:`UNSAFE` character escaped
    visibly (``\\x1b``, ``\\n``, ``\\u202e``). None is the empty string."""
    if value is None:
        return ""
    return UNSAFE.sub(_escape, str(value))


def download_name(value, default: str = "download") -> str:
    """A file name for ``Content-Disposition``: every :data:`UNSAFE` character replaced by
    ``_`` (percent-encoding would only bring it back when the browser shows the name)."""
    name = UNSAFE.sub("_", str(value)) if value else ""
    return name or default
