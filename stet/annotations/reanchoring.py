# Over 400 lines on purpose: the algorithm (keys, the diff, slots, the search and its
# scores) and the long docstring that explains and justifies it are one concern, kept together.
"""Re-anchoring: carrying an annotation's span from one version of a text to the next.

Pure functions over two strings (no database). :class:`Reanchorer` is built once for an older
text OLD and a newer text NEW; :meth:`Reanchorer.place` places one span of OLD (``start``,
``end``, ``exact``, ``prefix``, ``suffix`` as :mod:`stet.annotations.anchoring` stores them:
code points of OLD) in NEW as a :class:`Placement`; :func:`carry` does both for a list:

- ``exact``: NEW holds the quote code point for code point, where the diff and the context
  say (or, for a moved passage, where its context on each side, or its being the only one
  with that context, says); score 1.0;
- ``fuzzy``: an approximate match where the diff puts the passage, scored 0..1, at or above
  the threshold; also the quote unchanged but for what the key leaves out (harakat,
  whitespace, ZWNJ: see below), with score 1.0;
- ``orphaned``: nothing good enough: no span, the best score found (0.0 if none). Nothing is
  ever dropped, and no span raises: an empty quote or a span outside OLD is orphaned, 0.0.
  A position that does not hold its quote is found again by quote and context
  (:func:`stet.annotations.anchoring.reanchor`, unique or orphaned); otherwise ``prefix`` and
  ``suffix`` are not needed: the context is read from OLD itself.

**The key.** Both texts are compared as a *key*: the text without whitespace, without what
:func:`stet.publish.fold` removes (harakat and other nonspacing marks, the tatweel, U+00AD,
U+FFFE), without invisible format characters (ZWSP, ZWNJ, ZWJ, bidi marks, BOM) and without a
hyphen at the end of a line. Each key character knows its offset in its text, so every
result is in code points of the text itself. In the key, a paragraph joined or re-wrapped, a
double space, a line-end hyphenation, a ZWNJ put in or taken out (``می خواهم``,
``می‌خواهم``, ``میخواهم``) and harakat removed are no change at all.

**The diff, once.** ``fast_diff_match_patch.diff`` (diff-match-patch in C++, with a deadline:
:data:`DIFF_DEADLINE`) runs on the two keys given one word a line: its line mode diffs words
first, then characters inside what changed, ten times faster than characters alone (60-80
ms against 0.8-1 s for 240,000 code points with a few hundred edits). Its equal runs are then
cleaned as its semantic cleanup does (:func:`equal_runs`: a run no longer than the changes on
each side goes, a coincidence of letters inside a rewrite), except a run between two small
insertions. Offsets are code points: the package passes strings to C++ as ``wchar_t``, 4
bytes on Linux and macOS (``fast_diff_match_patch.CHAR_WIDTH == 4``), so ``👋🏽`` counts 2
as ``len`` does; every operation is checked against the two texts, and where ``wchar_t`` is
2 bytes (Windows: the package refuses characters beyond the BMP) the diff runs again on
copies with one U+FFFD for each astral character: the same offsets.

**Placing a span.**

1. *Carried*: all its key characters are in one equal run. NEW there is the quote (with the
   same whitespace at its ends): ``exact``; or the quote but for what the key leaves out:
   ``fuzzy``, 1.0, from its first to its last letter and that letter's marks. Not when a word
   the quote began or ended with goes on in NEW (a letter put back: fuzzy below), and not when
   the diff could as well have carried another (the context differs on one side, and another
   occurrence fits that side: two paragraphs that begin alike, one removed; two sentences
   that begin alike, reordered): then orphaned, :data:`AMBIGUOUS` (0.5).
2. Otherwise its *slot*: in NEW, between the images of the nearest characters around it that
   the diff carried. The slot holds no text carried from elsewhere, so what is found in it is
   not another passage (a removed ``Geneva`` is never put on another ``Geneva`` that was
   there before: that one is carried, outside the slot).

   a. ``exact`` in the slot: the quote with its context on one side, or the only occurrence
      of a long quote (:data:`LONG_QUOTE`) or of one whose neighbours both survived.
      A quote of whitespace or marks only: where a diff of the few characters between the
      same two letters carries it.
   b. ``exact`` elsewhere, a moved passage: the old text between the survivors, if long and
      unique in both texts; or the quote in text the diff marks as new (or carried from a
      place whose context fits it clearly worse), with its context on each side
      (:data:`MOVED_AGREES`), or on one side if the quote with that side is unique in both
      texts; and no other removed occurrence of the quote fits there as well.
   c. ``fuzzy``: quote and context (the needle) aligned in the slot, in key characters
      (``rapidfuzz.fuzz.partial_ratio_alignment`` finds where in a large slot,
      ``rapidfuzz.distance.Indel.opcodes`` maps the quote's two ends; a quote longer than
      :data:`ALIGN_MAX` is aligned by its beginning and its end, each near where it should
      be), the span kept in the slot and widened to whole words where the old quote began
      or ended on a word boundary; occurrences of the quote in the slot without their
      context compete. The best is placed if its score reaches the threshold.

   When the slot holds far more old text than the quote (the diff gave up at its deadline,
   or everything around changed), a window around the proportional position is searched,
   and the context must agree on each side.

**The score** of a fuzzy candidate is ``q * (0.5 + 0.5 * c)``: ``q`` the similarity of the
quote's key with the candidate's (``Indel.normalized_similarity``, rapidfuzz's ``ratio``:
1 - (insertions + deletions) / both lengths), ``c`` the context's (the better side's
``Levenshtein.normalized_similarity`` of the :data:`KEY_CONTEXT` key characters beside the
span, old against new). In the benchmark: a fixed typo in a quote of 1 to 12 words
scores 0.67-0.99 (0.89 and up for nine in ten; 0.75 and up from 4 letters), a passage with
70% of its words replaced 0-0.97 (median 0.48), an unchanged quote in an unrelated place
0.55-0.65 (its context 0.1-0.3), a removed one nothing (its slot is empty).

**Harakat removed** (or ZWNJ, whitespace) is ``fuzzy`` with score 1.0, not ``exact``:
``exact`` promises that NEW holds the stored quote code point for code point, so that the
quote, searches and exports (a W3C TextQuoteSelector) still match; without its harakat the
quote is another string, which the carried annotation must store; 1.0 says it is the same
after folding.

**The threshold**, :data:`DEFAULT_THRESHOLD` = 0.75, is measured by ``benchmarks/reanchor.py``
(6,000 annotations on the UDHR in English, Persian and Arabic and a press release, 9 kinds of
edit; see ``benchmarks/README.md``, run of 2026-12-01). No threshold from 0.6 to 0.95 places
an annotation wrong where its passage still exists (those placements are exact, or fuzzy
at 1.0); at 0.5 a removed passage is put elsewhere. What the threshold trades is typo fixes
placed against rewritten passages put on their new wording rather than orphaned for a
person to look at: at 0.75, 99.7% of the typo fixes inside a quote are placed and 13.8% of
the rewritten passages (70% of their words replaced); at 0.6, 100% and 28.5%; at 0.8, 97.9%
and 10.7%; at 0.9, 87.9% and 2.7%. 0.75 is the highest that keeps 99% of the typo fixes:
what it loses is a typo in a word of three letters.

Cost: the keys and the diff once (0.1-0.2 s for 240,000 code points); then for a carried
span a bisection and its context; for the others a search in the slot, in NEW for a moved
passage (``str.find``), and one alignment of a few hundred characters: 1,000 annotations on
240,000 code points in about 0.2 s. Memory: the keys, an ``array`` of
offsets per run of each text, the equal runs; no alignment of more than about
:data:`ALIGN_MAX` by its window (a 60,000-character quote with a typo: 0.06 s, 50 MB for the
whole process).
"""

from __future__ import annotations

import bisect
import math
import re
import unicodedata
from array import array
from dataclasses import dataclass
from functools import cache
from itertools import accumulate, compress
from typing import Iterable, Iterator

import fast_diff_match_patch
from rapidfuzz import fuzz
from rapidfuzz.distance import Indel, Levenshtein, Postfix, Prefix

from ..errors import StetError
from . import anchoring

#: The score at or above which an approximate match is placed (``fuzzy``); below, orphaned.
#: Measured by ``benchmarks/reanchor.py``: see the module's docstring.
DEFAULT_THRESHOLD = 0.75
#: Seconds the diff may take before it returns a coarser (still valid) result.
DIFF_DEADLINE = 2.0
#: Key characters of context compared on each side of a span.
KEY_CONTEXT = 32
#: A side of context agrees when its similarity is at least this, ...
CONTEXT_AGREES = 0.5
#: ... or when this many key characters right beside the span are the same.
CONTEXT_BESIDE = 16
#: The similarity a context must reach for a quote found far from where the diff puts it
#: (a moved passage): a short quote occurs in many places, some with half-similar context.
MOVED_AGREES = 0.75
#: How much better an occurrence's context must fit the quote than the passage the diff
#: carried it from, to be taken as the quote (moved), and up to how many occurrences of the
#: quote are looked at that way.
CONTEXT_MARGIN = 0.25
MOVED_CARRIED = 64
#: Key characters from which a quote found once is taken as itself without its context.
LONG_QUOTE = 24
#: The most key characters inserted on each side of a short run of the diff that keeps it.
FEW_ADDED = 16
#: The longest quote (key characters) aligned whole with its context; a longer one is
#: aligned by its two ends (the memory of an alignment grows with both lengths).
ALIGN_MAX = 1000
#: The largest slot (key characters) searched whole; past it, a window around the position
#: the diff gives proportionally.
SLOT_MAX = 4096
#: The score of an unchanged quote that two places fit as well as each other: orphaned.
AMBIGUOUS = 0.5
#: Occurrences of a quote looked at, at most, in one search (a very common quote stops there).
MAX_OCCURRENCES = 2000

_ZERO_WIDTH = "\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff"
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Placement:
    """Where a span of the older text went in the newer one."""

    anchoring: str  # "exact" | "fuzzy" | "orphaned"
    score: float  # 1.0 exact; the match's for fuzzy; the best found for orphaned (0.0 if none)
    start: int | None  # code points of the new text; None when orphaned
    end: int | None
    exact: str | None  # new_text[start:end]; None when orphaned
    prefix: str | None  # the new context, as stet.annotations.anchoring.anchor gives it
    suffix: str | None


def orphaned(score: float = 0.0) -> Placement:
    return Placement("orphaned", score, None, None, None, None, None)


@cache
def _patterns() -> tuple[re.Pattern, re.Pattern, re.Pattern]:
    """What the key leaves out: every dropped run; the marks and breaks inside words; the
    runs that separate words. Read from :mod:`stet.publish` on first use (not at import:
    stet.publish imports stet.annotations, which may one day import this module)."""
    from ..publish import BREAK_CHARS, MARK_CHARS

    hyphen = r"-(?=[ \t]*\n)"  # a hyphen at the end of a line
    return (re.compile(rf"((?:[\s{_ZERO_WIDTH}{BREAK_CHARS}{MARK_CHARS}]|{hyphen})+)"),
            re.compile(rf"[{BREAK_CHARS}{MARK_CHARS}]|{hyphen}"),
            re.compile(rf"[\s{_ZERO_WIDTH}]+"))


class KeyOffsets:
    """Where each character of a key is in its text, kept run by run (a run: text between
    two dropped stretches): ``offsets[k]`` is key character ``k``'s offset in the text,
    ``offsets.before(p)`` how many key characters lie before text offset ``p``."""

    __slots__ = ("_key_at", "_text_at", "_length")

    def __init__(self, key_at: array, text_at: array, length: int):
        self._key_at, self._text_at, self._length = key_at, text_at, length

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, k: int) -> int:
        if not 0 <= k < self._length:
            raise IndexError(k)
        i = bisect.bisect_right(self._key_at, k) - 1
        return self._text_at[i] + k - self._key_at[i]

    def before(self, p: int) -> int:
        i = bisect.bisect_right(self._text_at, p) - 1
        if i < 0:
            return 0
        run_end = self._key_at[i + 1] if i + 1 < len(self._key_at) else self._length
        return min(self._key_at[i] + p - self._text_at[i], run_end)


def keyed(text: str) -> tuple[str, KeyOffsets, str]:
    """The comparison key of ``text``; where each key character is in ``text``; and the key
    with a newline between words (what the diff runs on, see :func:`key_diff`)."""
    dropped, inside, between = _patterns()
    pieces = dropped.split(text)  # kept, dropped, kept, ..., kept (the first and last may be "")
    starts = list(accumulate(map(len, pieces), initial=0))
    kept = pieces[0::2]
    nonempty = list(map(bool, kept))
    kept = list(compress(kept, nonempty))
    text_at = array("q", compress(starts[0::2], nonempty))
    key_at = array("q", accumulate(map(len, kept), initial=0))
    length = key_at.pop()
    words = between.sub("\n", inside.sub("", text)).strip("\n")
    return "".join(kept), KeyOffsets(key_at, text_at, length), words


def key_diff(old: str, new: str, deadline: float = DIFF_DEADLINE) -> list[tuple[str, int]]:
    """``fast_diff_match_patch.diff`` of two keys given a word a line (:func:`keyed`'s third
    value): (op, length in key characters: code points, the newlines not counted). The
    diff runs word by word first (its line mode), then character by character inside what
    changed: more than ten times faster than characters alone on 200,000 of them."""
    if old == new:
        length = len(old) - old.count("\n")
        return [("=", length)] if length else []
    try:
        ops = _diff(old, new, deadline)
        if _consistent(ops, old, new):
            return _counted(ops)
    except Exception:  # noqa: BLE001  (a 2-byte wchar_t refuses astral characters)
        pass
    # The same number of code points, each astral character one U+FFFD: offsets unchanged.
    bmp_old, bmp_new = _ASTRAL.sub("\ufffd", old), _ASTRAL.sub("\ufffd", new)
    ops = _diff(bmp_old, bmp_new, deadline)
    if not _consistent(ops, bmp_old, bmp_new):
        raise RuntimeError("fast_diff_match_patch's diff does not add up to the two texts")
    return _counted(ops)


def _diff(old: str, new: str, deadline: float) -> list[tuple[str, str]]:
    return fast_diff_match_patch.diff(old, new, timelimit=deadline, checklines=True,
                                      cleanup="No", counts_only=False)


def _counted(ops: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """The operations in key characters (newlines left out), runs of one kind merged."""
    out: list[tuple[str, int]] = []
    for op, chunk in ops:
        length = len(chunk) - chunk.count("\n")
        if not length:
            continue
        if out and out[-1][0] == op:
            out[-1] = (op, out[-1][1] + length)
        else:
            out.append((op, length))
    return out


def diff_runs(ops: list[tuple[str, int]]) -> Iterator[tuple[int, int, int]]:
    """Each equal run of a diff (``ops``: diff-match-patch's counts), as ``(old start, new
    start, length)``, in order."""
    at_old = at_new = 0
    for op, length in ops:
        if op == "=":
            yield at_old, at_new, length
            at_old += length
            at_new += length
        elif op == "-":
            at_old += length
        else:
            at_new += length


def equal_runs(ops: list[tuple[str, int]], old_length: int,
               new_length: int) -> list[tuple[int, int, int]]:
    """The diff's equal runs, ``(old start, new start, length)``, without the ones that only
    happen to coincide: a run no longer than what changed on each side of it goes (the rule
    of diff-match-patch's semantic cleanup, repeated until none is left to go). Except a run
    between two insertions of at most :data:`FEW_ADDED` key characters each: nothing of the
    old text around it was removed, and so little was added that it is the old text itself
    (a longer insertion, a moved paragraph say, holds letters enough to spell a few short
    runs of the old text by chance)."""
    runs = list(diff_runs(ops))
    kept: list[tuple[int, int, int]] = []
    for run in runs + [(old_length, new_length, 0)]:
        kept.append(run)
        while len(kept) >= 2:
            (o, n, length), after = kept[-2], kept[-1]
            po, pn, pl = kept[-3] if len(kept) >= 3 else (0, 0, 0)
            removed_before, added_before = o - po - pl, n - pn - pl
            removed_after, added_after = after[0] - o - length, after[1] - n - length
            if (removed_before or removed_after or max(added_before, added_after) > FEW_ADDED) \
                    and length <= max(removed_before, added_before) \
                    and length <= max(removed_after, added_after):
                del kept[-2]
                continue
            break
    kept.pop()
    return kept


def _consistent(ops: list[tuple[str, str]], old: str, new: str) -> bool:
    """Whether the diff's operations, read in order, are exactly the two texts: what is
    equal is in both at the same places, the rest in one. Cheap (slices compared in C), and
    what lets every offset be trusted whatever the platform's ``wchar_t``."""
    at_old = at_new = 0
    for op, chunk in ops:
        length = len(chunk)
        if op != "+":
            if old[at_old:at_old + length] != chunk:
                return False
            at_old += length
        if op != "-":
            if new[at_new:at_new + length] != chunk:
                return False
            at_new += length
    return at_old == len(old) and at_new == len(new)


def _wordish(char: str) -> bool:
    return char.isalnum() or unicodedata.category(char)[0] == "M"


def _is_mark(char: str) -> bool:
    return unicodedata.category(char)[0] == "M"


class Reanchorer:
    """The position map from ``old_text`` to ``new_text``, computed once; :meth:`place`
    places one span of ``old_text`` at a time (see the module's docstring)."""

    def __init__(self, old_text: str, new_text: str, *, deadline: float = DIFF_DEADLINE):
        self.old_text, self.new_text = old_text, new_text
        self._identical = old_text == new_text
        self._old_key, self._old_at, old_words = keyed(old_text)
        self._new_key, self._new_at, new_words = keyed(new_text)
        # The equal runs of the diff, in key characters: old start, new start, length.
        if self._identical:
            ops = [("=", len(self._old_key))] if self._old_key else []
        else:
            ops = key_diff(old_words, new_words, deadline)
        runs = equal_runs(ops, len(self._old_key), len(self._new_key))
        self._eq_old = [run[0] for run in runs]
        self._eq_new = [run[1] for run in runs]
        self._eq_len = [run[2] for run in runs]

    # -- placing -------------------------------------------------------------------------

    def place(self, start: int, end: int, exact: str, prefix: str | None, suffix: str | None,
              *, threshold: float = DEFAULT_THRESHOLD) -> Placement:
        """Where the span ``start:end`` of the old text (quote ``exact``, context ``prefix``
        and ``suffix`` as it was stored) is in the new text."""
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) \
                or math.isnan(threshold) or not 0 <= threshold <= 1:
            raise ValueError(f"a threshold is between 0 and 1, not {threshold!r}")
        span = self._old_span(start, end, exact, prefix, suffix)
        if span is None:
            return orphaned()
        start, end = span
        if self._identical:
            return self._placement("exact", 1.0, start, end)
        old_at = self._old_at
        ks, ke = old_at.before(start), old_at.before(end)
        if ks < ke:
            run = self._run_of(ks)
            if run is not None and ke <= self._eq_old[run] + self._eq_len[run]:
                a = self._eq_new[run] + (ks - self._eq_old[run])
                placed = self._at_key(a, start, end, ks, ke)
                if placed is not None:
                    if self._rivalled(start, end, ks, ke, a, a + (ke - ks), placed.start):
                        return orphaned(AMBIGUOUS)
                    return placed
        return self._search(start, end, ks, ke, threshold)

    def _old_span(self, start, end, exact, prefix, suffix) -> tuple[int, int] | None:
        """The span checked against the old text: the quote must be there; a position whose
        text is not the quote is found again by quote and context (it must be unique)."""
        text = self.old_text
        if not isinstance(exact, str) or not exact:
            return None
        for value in (start, end):
            if isinstance(value, bool) or not isinstance(value, int):
                return None
        if not 0 <= start < end <= len(text):
            return None
        if text[start:end] == exact:
            return start, end
        try:
            found = anchoring.reanchor(text, None, None, exact, prefix or None, suffix or None)
        except StetError:
            return None
        return found.start, found.end

    def _at_key(self, a: int, start: int, end: int, ks: int, ke: int) -> Placement | None:
        """The span ``start:end`` (key ``ks:ke``) whose key is, unchanged, at new key ``a``:
        exact if the new text there is the quote, else fold-equal (fuzzy, score 1.0); None
        if a word the quote ended at goes on in the new text (a letter was put back)."""
        b = a + (ke - ks)
        new_at, old_at = self._new_at, self._old_at
        lead = old_at[ks] - start  # whitespace or marks the quote begins with
        trail = end - (old_at[ke - 1] + 1)  # ... and ends with
        s, e = new_at[a] - lead, new_at[b - 1] + 1 + trail
        if 0 <= s and e <= len(self.new_text) and self.new_text[s:e] == self.old_text[start:end]:
            kind = "exact"
        else:
            kind, s, e = "fuzzy", new_at[a], self._after_marks(new_at[b - 1] + 1, len(self.new_text))
        if not self._edges_agree(start, end, s, e):
            return None
        return self._placement(kind, 1.0, s, e)

    def _edges_agree(self, start: int, end: int, s: int, e: int) -> bool:
        """Whether ``s:e`` of the new text does not cut a word where the old span
        ``start:end`` began or ended with a whole word."""
        old, new = self.old_text, self.new_text
        if _wordish(old[start]) and (start == 0 or not _wordish(old[start - 1])) \
                and s > 0 and _wordish(new[s - 1]):
            return False
        if _wordish(old[end - 1]) and (end == len(old) or not _wordish(old[end])) \
                and e < len(new) and _wordish(new[e]):
            return False
        return True

    def _search(self, start: int, end: int, ks: int, ke: int, threshold: float) -> Placement:
        """A span that was edited, moved or removed: its slot, then the whole text."""
        quote = self.old_text[start:end]
        new_text, new_key = self.new_text, self._new_key
        slot_lo, slot_hi, old_lo, old_hi = self._slot(ks, ke)
        raw_lo = self._new_at[slot_lo - 1] + 1 if slot_lo > 0 else 0
        raw_hi = self._new_at[slot_hi] if slot_hi < len(new_key) else len(new_text)
        old_raw_lo = self._old_at[old_lo - 1] + 1 if old_lo > 0 else 0
        expected = min(raw_hi, raw_lo + (start - old_raw_lo))
        key_length = ke - ks
        slot_length = slot_hi - slot_lo
        # the diff gave up (its deadline) or all changed around the quote: the position says
        # little, the context must say it all, on each side
        coarse = slot_length > SLOT_MAX and old_hi - old_lo - key_length > SLOT_MAX
        least = MOVED_AGREES if coarse else CONTEXT_AGREES
        if coarse:  # a window where the position falls, proportionally
            middle = slot_lo + (ks - old_lo) * slot_length // max(1, old_hi - old_lo)
            half = SLOT_MAX // 2
            win_lo, win_hi = max(slot_lo, middle - half), min(slot_hi, middle + half)
            low = self._new_at[win_lo - 1] + 1 if win_lo > slot_lo else raw_lo
            high = self._new_at[win_hi] if win_hi < slot_hi else raw_hi
        else:
            win_lo, win_hi, low, high = slot_lo, slot_hi, raw_lo, raw_hi

        if not key_length and not coarse:
            # only whitespace or marks: where the characters between the same two letters went
            old_raw_hi = self._old_at[old_hi] if old_hi < len(self._old_key) else len(self.old_text)
            at = _raw_map(self.old_text[old_raw_lo:old_raw_hi], new_text[raw_lo:raw_hi],
                          start - old_raw_lo, end - old_raw_lo)
            if at is not None:
                return self._placement("exact", 1.0, raw_lo + at, raw_lo + at + len(quote))

        # a. the quote itself, in the slot (or across its ends: where a diff of repeated
        # words drew them is a matter of choice)
        best: tuple | None = None
        near: list[tuple[float, int]] = []  # (context, start) of the occurrences in the slot
        if key_length:
            search_lo, search_hi = max(0, low - 2 * len(quote)), high + 2 * len(quote)
        else:
            search_lo, search_hi = low, high
        for at in self._occurrences(quote, search_lo, search_hi):
            a, b = self._key_range(at, at + len(quote))
            if key_length and not (a < win_hi and win_lo < b) \
                    or not self._edges_agree(start, end, at, at + len(quote)):
                continue
            context = self._context(ks, ke, a, b)
            similarity = context.worst() if coarse else context.best()
            near.append((similarity, at))
            rank = (context.agrees(least, every=coarse), similarity, -abs(at - expected), -at)
            if best is None or rank > best:
                best = rank
        if best is not None:
            at = -best[3]
            alone = (old_lo, old_hi) == (ks, ke)  # nothing else of the old text between
            if best[0] or (len(near) == 1 and not coarse and (alone or key_length >= LONG_QUOTE)):
                return self._placement("exact", 1.0, at, at + len(quote))

        # b. a moved passage: the old text between the survivors around the quote, or the
        # quote itself, unchanged, in text the diff marks as new
        if key_length and old_hi - old_lo >= LONG_QUOTE:
            gap = self._old_key[old_lo:old_hi]
            found = self._occurrences(gap, 0, len(new_key), new_key, limit=2)
            if len(found) == 1 and self._carried_length(found[0], found[0] + len(gap)) * 2 <= len(gap) \
                    and len(self._occurrences(gap, 0, len(self._old_key), self._old_key, limit=2)) == 1:
                placed = self._at_key(found[0] + (ks - old_lo), start, end, ks, ke)
                if placed is not None:
                    return placed
        if key_length:
            moved = self._moved(quote, start, end, ks, ke, raw_lo, raw_hi)
            if moved is not None:
                return self._placement("exact", 1.0, moved, moved + len(quote))

        # c. the best approximate match in the slot
        if key_length == 0:
            return orphaned()
        candidates: list[tuple[float, int, int]] = [
            (self._score(1.0, context), at, at + len(quote)) for context, at in near]
        aligned = self._aligned(start, end, ks, ke, slot_lo, slot_hi, win_lo, win_hi, raw_lo,
                                raw_hi, coarse, old_lo, old_hi)
        if aligned is not None:
            candidates.append(aligned)
        if not candidates:
            return orphaned()
        score, s, e = max(candidates, key=lambda c: (c[0], -abs(c[1] - expected), -c[1]))
        if score > 0 and score >= threshold:
            return self._placement("fuzzy", score, s, e)
        return orphaned(score)

    def _aligned(self, start, end, ks, ke, slot_lo, slot_hi, win_lo, win_hi, raw_lo,
                 raw_hi, coarse, old_lo, old_hi) -> tuple[float, int, int] | None:
        """The quote's best approximate match in the window ``win_lo:win_hi`` of its slot:
        (score, start, end) in the new text, or None."""
        old_key, new_key = self._old_key, self._new_key
        if win_lo >= win_hi:
            return None
        w_lo, w_hi = max(0, win_lo - KEY_CONTEXT), min(len(new_key), win_hi + KEY_CONTEXT)
        p_lo = max(0, ks - KEY_CONTEXT)
        if ke - ks <= ALIGN_MAX:  # quote and context aligned at once
            a, b = self._align(old_key[p_lo:ke + KEY_CONTEXT], ks - p_lo, ke - p_lo, w_lo, w_hi)
        else:  # a long quote: its beginning and its end, each with its context, each looked
            # for where it should be give or take the difference in length (a long quote may
            # repeat its own phrases)
            head, tail_lo = old_key[p_lo:ks + KEY_CONTEXT], ke - KEY_CONTEXT
            tail = old_key[tail_lo:ke + KEY_CONTEXT]
            give = abs((slot_hi - slot_lo) - (old_hi - old_lo)) + 2 * KEY_CONTEXT
            at = slot_lo + (ks - old_lo)
            a = self._align(head, ks - p_lo, None, max(w_lo, at - len(head) - give),
                            min(w_hi, at + len(head) + give))[0]
            at = slot_hi - (old_hi - ke)
            b = self._align(tail, None, ke - tail_lo, max(w_lo, at - len(tail) - give),
                            min(w_hi, at + len(tail) + give))[1]
        if a is None or b is None:
            return None
        a, b = max(a, slot_lo), min(b, slot_hi)
        if b <= a:
            return None
        new_at, text = self._new_at, self.new_text
        s, e = new_at[a], self._after_marks(new_at[b - 1] + 1, raw_hi)
        old = self.old_text
        if (start == 0 or not _wordish(old[start - 1])) and _wordish(old[start]):
            stop = max(raw_lo, s - KEY_CONTEXT)
            while s > stop and _wordish(text[s - 1]):
                s -= 1
        if (end == len(old) or not _wordish(old[end])) and _wordish(old[end - 1]):
            stop = min(raw_hi, e + KEY_CONTEXT)
            while e < stop and _wordish(text[e]):
                e += 1
        a, b = self._key_range(s, e)
        if b <= a:
            return None
        quote_similarity = Indel.normalized_similarity(old_key[ks:ke], new_key[a:b])
        context = self._context(ks, ke, a, b)
        return self._score(quote_similarity, context.worst() if coarse else context.best()), s, e

    def _align(self, needle: str, q0: int | None, q1: int | None, w_lo: int,
               w_hi: int) -> tuple[int | None, int | None]:
        """Where the needle's characters ``q0`` (a start) and ``q1`` (an end) fall in the new
        key's ``w_lo:w_hi``: ``partial_ratio_alignment`` finds the needle's place in a large
        window, ``Indel.opcodes`` maps the two through the alignment there."""
        window = self._new_key[w_lo:w_hi]
        if not window:
            return None, None
        margin = max(8, len(needle) // 4)
        if len(window) > len(needle) + 2 * margin:
            found = fuzz.partial_ratio_alignment(needle, window)
            cut_lo = max(0, found.dest_start - margin)
            window = window[cut_lo:found.dest_end + margin]
            w_lo += cut_lo
        a, b = _map_ends(Indel.opcodes(needle, window), q0, q1)
        return (None if a is None else a + w_lo), (None if b is None else b + w_lo)

    def _moved(self, quote: str, start: int, end: int, ks: int, ke: int, raw_lo: int,
               raw_hi: int) -> int | None:
        """The start of the quote moved elsewhere, unchanged, or None: an occurrence in text
        the diff marks as new, or in text it carried from another place of the old text but
        whose context is clearly this quote's and not that place's (a diff of repeated
        phrases may pair them either way), with its context; a long quote found nowhere
        else in either text, without."""
        occurrences = self._occurrences(quote, 0, len(self.new_text))
        found: list[tuple[bool, float, int]] = []
        for at in occurrences:
            if raw_lo <= at and at + len(quote) <= raw_hi \
                    or not self._edges_agree(start, end, at, at + len(quote)):
                continue  # in the slot (looked at already), or part of another word
            a, b = self._key_range(at, at + len(quote))
            carried = self._carried_length(a, b) * 2 > b - a
            if carried and len(occurrences) > MOVED_CARRIED:
                continue
            context = self._context(ks, ke, a, b)
            agrees = context.agrees(MOVED_AGREES, every=ke - ks < LONG_QUOTE) \
                or self._unique_with_context(ks, ke, a, b)
            if carried:
                origin = self._origin(a)
                if origin is None or not agrees or context.worst() < self._context(
                        origin, origin + (ke - ks), a, b).worst() + CONTEXT_MARGIN:
                    continue  # another passage of the old text, carried over
            found.append((agrees, context.worst(), -at))
        if not found:
            return None
        agrees, similarity, at = max(found)
        at = -at
        if agrees:
            a, b = self._key_range(at, at + len(quote))
            return None if self._claimed(quote, start, a, b, similarity) else at
        if len(occurrences) == 1 and ke - ks >= LONG_QUOTE and len(self._occurrences(
                quote, 0, len(self.old_text), self.old_text, limit=2)) == 1:
            return at
        return None

    def _unique_with_context(self, ks: int, ke: int, a: int, b: int) -> bool:
        """Whether the quote at new key ``a:b`` has on one side the very :data:`KEY_CONTEXT`
        key characters it had, and the quote with them occurs once in each text (a sentence
        moved, its first or last words annotated: the other side is another sentence)."""
        old_key, new_key = self._old_key, self._new_key
        for lo, hi in ((max(0, ks - KEY_CONTEXT), ke), (ks, ke + KEY_CONTEXT)):
            stretch = old_key[lo:hi]
            if len(stretch) < LONG_QUOTE or new_key[a - (ks - lo):a - (ks - lo) + len(stretch)] != stretch:
                continue
            if len(self._occurrences(stretch, 0, len(new_key), new_key, limit=2)) == 1 \
                    and len(self._occurrences(stretch, 0, len(old_key), old_key, limit=2)) == 1:
                return True
        return False

    def _uncarried(self, quote: str, start: int) -> Iterator[tuple[int, int]]:
        """The key spans of the other occurrences of ``quote`` in the old text (not the one
        at ``start``) that the diff did not carry where they were: moved or removed too."""
        old_at = self._old_at
        for other in self._occurrences(quote, 0, len(self.old_text), self.old_text):
            if other == start:
                continue
            ks, ke = old_at.before(other), old_at.before(other + len(quote))
            run = self._run_of(ks) if ks < ke else None
            if run is not None and ke <= self._eq_old[run] + self._eq_len[run]:
                continue  # still where it was: it has a place of its own
            yield ks, ke

    def _claimed(self, quote: str, start: int, a: int, b: int, similarity: float) -> bool:
        """Whether another occurrence of the quote in the old text, one the diff did not
        carry either (moved or removed too), fits the new occurrence at key ``a:b`` about
        as well: then which of the two moved there cannot be told."""
        for ks, ke in self._uncarried(quote, start):
            context = self._context(ks, ke, a, b)
            if context.agrees() and context.best() > similarity - CONTEXT_MARGIN:
                return True
        return False

    def _origin(self, a: int) -> int | None:
        """The old key position the diff carried new key position ``a`` (or the first
        carried one after it) from."""
        i = max(0, bisect.bisect_right(self._eq_new, a) - 1)
        if i < len(self._eq_new) and a >= self._eq_new[i] + self._eq_len[i]:
            i += 1
        if i >= len(self._eq_new):
            return None
        return self._eq_old[i] + max(0, a - self._eq_new[i])

    # -- the position map ----------------------------------------------------------------

    def _run_of(self, k: int) -> int | None:
        """The equal run holding old key character ``k``, or None."""
        i = bisect.bisect_right(self._eq_old, k) - 1
        if i >= 0 and k < self._eq_old[i] + self._eq_len[i]:
            return i
        return None

    def _slot(self, ks: int, ke: int) -> tuple[int, int, int, int]:
        """``(slot_lo, slot_hi, old_lo, old_hi)``: the key characters ``old_lo:old_hi`` of the
        old text between the nearest survivors around ``ks:ke``, and where that gap is in the
        new key, ``slot_lo:slot_hi``."""
        eq_old, eq_new, eq_len = self._eq_old, self._eq_new, self._eq_len
        i = bisect.bisect_right(eq_old, ks - 1) - 1 if ks > 0 else -1
        if i >= 0:
            last = min(ks - 1, eq_old[i] + eq_len[i] - 1)
            old_lo, slot_lo = last + 1, eq_new[i] + (last - eq_old[i]) + 1
        else:
            old_lo = slot_lo = 0
        j = bisect.bisect_right(eq_old, ke) - 1
        if j >= 0 and ke < eq_old[j] + eq_len[j]:
            old_hi, slot_hi = ke, eq_new[j] + (ke - eq_old[j])
        elif j + 1 < len(eq_old):
            old_hi, slot_hi = eq_old[j + 1], eq_new[j + 1]
        else:
            old_hi, slot_hi = len(self._old_key), len(self._new_key)
        return slot_lo, slot_hi, old_lo, old_hi

    def _carried_length(self, a: int, b: int) -> int:
        """How many of the new key characters ``a:b`` the diff carried from the old text."""
        eq_new, eq_len = self._eq_new, self._eq_len
        i = max(0, bisect.bisect_right(eq_new, a) - 1)
        covered = 0
        while i < len(eq_new) and eq_new[i] < b:
            covered += max(0, min(b, eq_new[i] + eq_len[i]) - max(a, eq_new[i]))
            i += 1
        return covered

    def _key_range(self, s: int, e: int) -> tuple[int, int]:
        return self._new_at.before(s), self._new_at.before(e)

    def _rivalled(self, start: int, end: int, ks: int, ke: int, a: int, b: int, s: int) -> bool:
        """Whether the span the diff carried to key ``a:b`` (text offset ``s``), whose context
        there differs on one side, could as well be another: a diff of repeated words pairs
        them either way (two paragraphs that begin alike, one removed; two sentences that
        begin alike, put in another order). Either a rival in the new text (the quote, in
        text the diff marks as new, with that side's context, and no other old passage it
        could be), or a competitor in the old text (another occurrence of the quote, which
        the diff did not carry, whose context on that side is the new one)."""
        before, after = self._sides(ks, ke, a, b)
        weak_before = before is not None and before < CONTEXT_AGREES
        weak_after = after is not None and after < CONTEXT_AGREES
        if weak_before == weak_after:
            return False
        quote = self.old_text[start:end]
        for at in self._occurrences(quote, 0, len(self.new_text)):
            if at == s or not self._edges_agree(start, end, at, at + len(quote)):
                continue
            ra, rb = self._key_range(at, at + len(quote))
            if self._carried_length(ra, rb) * 2 > rb - ra:
                continue
            rival = self._sides(ks, ke, ra, rb)
            side = rival[0] if weak_before else rival[1]
            if side is not None and side >= CONTEXT_AGREES \
                    and not self._claimed(quote, start, ra, rb, side):
                return True
        for oks, oke in self._uncarried(quote, start):
            side = self._sides(oks, oke, a, b)[0 if weak_before else 1]
            if side is not None and side >= CONTEXT_AGREES:
                return True
        return False

    def _sides(self, ks: int, ke: int, a: int, b: int) -> tuple[float | None, float | None]:
        """The similarity of the old key's context of ``ks:ke`` with the new key's of ``a:b``,
        before and after (None for a side the old span does not have)."""
        old_key, new_key = self._old_key, self._new_key
        before = old_key[max(0, ks - KEY_CONTEXT):ks]
        after = old_key[ke:ke + KEY_CONTEXT]
        return (Levenshtein.normalized_similarity(before, new_key[max(0, a - len(before)):a])
                if before else None,
                Levenshtein.normalized_similarity(after, new_key[b:b + len(after)])
                if after else None)

    def _context(self, ks: int, ke: int, a: int, b: int) -> Context:
        """How well the new context of key range ``a:b`` matches the old one of ``ks:ke``."""
        old_key, new_key = self._old_key, self._new_key
        before = old_key[max(0, ks - KEY_CONTEXT):ks]
        after = old_key[ke:ke + KEY_CONTEXT]
        sides = []
        if before:
            new_before = new_key[max(0, a - len(before)):a]
            sides.append((Levenshtein.normalized_similarity(before, new_before),
                          Postfix.similarity(before, new_before)))
        if after:
            new_after = new_key[b:b + len(after)]
            sides.append((Levenshtein.normalized_similarity(after, new_after),
                          Prefix.similarity(after, new_after)))
        return Context(sides)

    @staticmethod
    def _score(quote_similarity: float, context: float) -> float:
        return quote_similarity * (0.5 + 0.5 * context)

    def _occurrences(self, quote: str, low: int, high: int, text: str | None = None,
                     limit: int = MAX_OCCURRENCES) -> list[int]:
        text = self.new_text if text is None else text
        found: list[int] = []
        at = text.find(quote, low, high)
        while at != -1 and len(found) < limit:
            found.append(at)
            at = text.find(quote, at + 1, high)
        return found

    def _after_marks(self, e: int, limit: int) -> int:
        text = self.new_text
        while e < limit and _is_mark(text[e]):
            e += 1
        return e

    def _placement(self, kind: str, score: float, s: int, e: int) -> Placement:
        new = anchoring.anchor(self.new_text, s, e)
        return Placement(kind, score, s, e, new.exact, new.prefix, new.suffix)


def _raw_map(old: str, new: str, start: int, end: int) -> int | None:
    """Where ``old[start:end]`` is in ``new`` if a diff of the two (short) strings carries it
    whole, else None."""
    try:
        ops = fast_diff_match_patch.diff(old, new, cleanup="No", counts_only=True)
    except Exception:  # noqa: BLE001  (a 2-byte wchar_t refuses astral characters)
        return None
    for at_old, at_new, length in diff_runs(ops):
        if at_old <= start and end <= at_old + length:
            found = at_new + start - at_old
            return found if new[found:found + end - start] == old[start:end] else None
    return None


class Context:
    """How the context of a candidate in the new text matches the old span's: per side the
    old span has (before, after), the similarity of its :data:`KEY_CONTEXT` key characters
    with the new ones (``Levenshtein.normalized_similarity``) and how many key characters
    right beside the span are the same."""

    __slots__ = ("sides",)

    def __init__(self, sides: list[tuple[float, int]]):
        self.sides = sides

    def best(self) -> float:
        """The better side's similarity (1.0 when the old span has no context)."""
        return max((similarity for similarity, _ in self.sides), default=1.0)

    def worst(self) -> float:
        return min((similarity for similarity, _ in self.sides), default=1.0)

    def agrees(self, least: float = CONTEXT_AGREES, every: bool = False) -> bool:
        """Whether one side (``every``: each side) says the span is the same passage: a
        similarity of at least ``least``, or :data:`CONTEXT_BESIDE` identical characters
        right beside it."""
        votes = [similarity >= least or beside >= CONTEXT_BESIDE for similarity, beside in self.sides]
        return all(votes) if every else (any(votes) or not votes)


def _map_ends(opcodes, q0: int | None, q1: int | None) -> tuple[int | None, int | None]:
    """Where the needle's characters ``q0:q1`` fall in the aligned text (either end may be
    None: not wanted): characters inserted at either end are left out (whole words are
    restored afterwards)."""
    a = b = None
    for tag, i1, i2, j1, _ in opcodes:
        if i1 == i2:
            continue
        if a is None and q0 is not None and i1 <= q0 < i2:
            a = j1 + (q0 - i1) if tag == "equal" else j1
        if q1 is not None and i1 <= q1 - 1 < i2:
            b = j1 + (q1 - i1) if tag == "equal" else j1
            break
    return a, b


def carry(old_text: str, new_text: str, spans: Iterable, *,
          threshold: float = DEFAULT_THRESHOLD) -> list[Placement]:
    """Each span ``(start, end, exact, prefix, suffix)`` of ``old_text`` placed in
    ``new_text``, in order, with one :class:`Reanchorer`."""
    placer = Reanchorer(old_text, new_text)
    return [placer.place(start, end, exact, prefix, suffix, threshold=threshold)
            for start, end, exact, prefix, suffix in spans]
