"""Search results with the words searched for inside ``<mark>``: pure functions, no I/O.

The full-text index sees a folded text (:func:`stet.publish.fold`: nonspacing marks and breaks
inside words removed; the tokenizer also ignores case and Latin diacritics), while a snippet
shows the text as stored. Rather than folding the text and mapping offsets back, each word of
the query becomes a pattern over the stored text that lets any folded character stand between
(and after) its letters and matches each letter in any case or with any diacritic: ``manipulation``
matches ``manip\\ufffeulation`` and ``اعتمد`` matches ``اعتُمد``, and the match's offsets are
offsets in the stored text. A match counts only as a whole word, as the index counts it.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from ..publish import FOLDED, fold
from .marks import escape

#: Characters around the first match that a snippet shows.
BEFORE, AFTER = 80, 160

_FOLDED = re.compile(FOLDED)
_SPACE = re.compile(r"\s+")


def _base(ch: str) -> str:
    """A character without its diacritics, in lower case (what the tokenizer compares)."""
    return "".join(c for c in unicodedata.normalize("NFD", ch)
                   if not unicodedata.combining(c)).casefold() or ch


@functools.lru_cache(maxsize=1)
def _variants() -> dict[str, str]:
    """Each base letter and the precomposed letters that fold to it (é, É, ê... for e)."""
    found: dict[str, set[str]] = {}
    for cp in range(0x00C0, 0x3000):
        ch = chr(cp)
        if unicodedata.decomposition(ch) and not unicodedata.decomposition(ch).startswith("<"):
            base = _base(ch)
            if len(base) == 1 and base != ch:
                found.setdefault(base, set()).add(ch)
    return {base: "".join(sorted(chars)) for base, chars in found.items()}


def words(query: str) -> list[str]:
    """The words of a query as the index sees them (folded; quotes and punctuation dropped)."""
    return [_base_word(w) for w in re.findall(r"[^\W_]+", fold(query) or "")]


def _base_word(word: str) -> str:
    return "".join(_base(ch) for ch in word)


@functools.lru_cache(maxsize=256)
def pattern(query: str) -> re.Pattern | None:
    """One pattern matching any word of ``query`` in a stored text, or None (no words)."""
    between = FOLDED + "*"
    variants = _variants()
    alternatives = []
    for word in sorted(set(words(query)), key=len, reverse=True):  # longest first
        letters = []
        for ch in word:
            chars = ch + variants.get(ch, "")
            letters.append("[" + "".join(re.escape(c) for c in chars) + "]"
                           if len(chars) > 1 else re.escape(ch))
        alternatives.append(between.join(letters) + between)
    if not alternatives:
        return None
    return re.compile("|".join(alternatives), re.IGNORECASE)


def _whole(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a whole token: no letter or digit next to it, past any
    folded character."""
    i = start - 1
    while i >= 0 and _FOLDED.match(text, i):
        i -= 1
    if i >= 0 and text[i].isalnum():
        return False
    return not (end < len(text) and text[end].isalnum())


def matches(text: str, query: str):
    """``(start, end)`` of every whole word of ``query`` in ``text``, in order."""
    found = pattern(query)
    if found is None or not text:
        return
    for match in found.finditer(text):
        if _whole(text, match.start(), match.end()):
            yield match.start(), match.end()


def snippet(text: str | None, query: str) -> str | None:
    """The part of ``text`` around the first word of ``query`` in it (its start when there is
    none), with "…" where it was cut. Registered as the SQL function ``stet_snippet``."""
    if text is None:
        return None
    first = next(matches(text, query), None)
    at = first[0] if first else 0
    start, end = max(0, at - BEFORE), min(len(text), at + AFTER)
    # cut between words where there is a space near the edge
    if start:
        space = _SPACE.search(text, start, min(at, start + 20))
        start = space.end() if space else start
    if end < len(text):
        spaces = [m.start() for m in _SPACE.finditer(text, max(at, end - 20), end)]
        end = spaces[-1] if spaces else end
    return ("… " if start else "") + text[start:end] + (" …" if end < len(text) else "")


def highlight(text: str | None, query: str) -> str:
    """``text`` HTML-escaped, with every whole word of ``query`` inside ``<mark>``."""
    if not text:
        return ""
    out, pos = [], 0
    for start, end in matches(text, query):
        out.append(escape(text[pos:start]))
        out.append(f"<mark>{escape(text[start:end])}</mark>")
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out)
