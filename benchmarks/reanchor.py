"""Carrying annotations to a new version of a text: how many land right, and how fast.

    .venv/bin/python benchmarks/reanchor.py                 # the tables for benchmarks/README.md
    .venv/bin/python benchmarks/reanchor.py --seed 7 --json

From the repository's own texts (``ingest/udhr/udhr_eng.txt``, ``udhr_pes_1.txt``,
``udhr_arb.txt`` and ``ingest/press/press-release-2014-08-13-geneva.txt``) it generates,
seeded, annotations (spans of 1 to 12 whole words within a paragraph) and, for each kind of
edit, an older and a newer version of the text with KNOWN edits, so that where each
annotated passage now is, or that it is gone, is known exactly:

- ``typo inside``: the older version has a typo (letters swapped, dropped, doubled or
  replaced) in a word of 30% of the annotations, which the newer one fixes: the passage is
  at the fixed words (``edited``);
- ``typo beside``: the same in the word just before or after 30% of the annotations;
- ``paragraphs inserted``: new paragraphs (20-60 words of the same text, shuffled);
- ``paragraphs deleted``: 12% of the paragraphs removed: their annotations are ``gone``;
- ``whitespace reflowed``: as a DOCX re-extracted from a PDF: every paragraph re-wrapped at
  about 70 code points, 30% of the paragraph breaks joined, indentation dropped, 5% double
  spaces, long Latin words hyphenated at a line end (``-`` + newline, or U+FFFE as PDFium
  gives it);
- ``sentences reordered``: the sentences of 40% of the paragraphs that have several put in
  another order, and 4 paragraphs moved elsewhere; an annotation across two sentences that
  are no longer together is ``gone``;
- ``passages rewritten``: 20% of the annotations' words replaced (each word with probability
  0.7, at least one) by other words of the text: ``rewritten``. The right outcome is
  decided to be *orphaned*: the annotation was about wording that is no longer there, so a
  person should place it again; a placement on the new wording is counted apart
  (``on rewrite``), a placement anywhere else as wrong;
- ``ZWNJ corrected`` (Persian): the older version has each ZWNJ typed as a space or left out
  (``می خواهم``, ``میخواهم``), the newer one has them, and a ZWNJ after the verbal prefix
  ``می`` where it was missing;
- ``harakat removed`` (Arabic): the older version is vocalized (a haraka on 60% of the
  letters, generated), the newer one has no harakat at all.

Annotations that no edit touches are ``unchanged`` (their passage is still there, code point
for code point, possibly moved): each must be placed exactly there; any other placement is
``wrong``. For each kind and script the table gives the share placed right (exactly the
known span), near (overlapping it, other ends), on the rewrite, wrong, orphaned, and how
many of the placements were exact or fuzzy. Every annotation is placed once with threshold
0, so that the threshold table can be computed for each threshold from the same scores.

Speed: the four texts concatenated and repeated to at least 200,000 code points (240,000;
each paragraph numbered ``§copy.n``, so that no two copies of a paragraph are the same),
1,000 annotations, a newer version with a mix of every edit above; the time to build the
``Reanchorer`` (keys and diff) and place the 1,000, median of 5 runs, the keys and the diff
alone, and a diff of characters only for comparison; and the same for a version in which
every paragraph is re-wrapped.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import re
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import fast_diff_match_patch  # noqa: E402  (imported after the sys.path line above)

from stet.annotations import anchoring  # noqa: E402  (imported after the sys.path line above)
from stet.annotations.reanchoring import (  # noqa: E402  (imported after the sys.path line above)
    DEFAULT_THRESHOLD, Reanchorer, key_diff, keyed,
)

SOURCES = {
    "eng": ("Latin", "ingest/udhr/udhr_eng.txt"),
    "press": ("Latin", "ingest/press/press-release-2014-08-13-geneva.txt"),
    "pes": ("Persian", "ingest/udhr/udhr_pes_1.txt"),
    "arb": ("Arabic", "ingest/udhr/udhr_arb.txt"),
}
THRESHOLDS = (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
HARAKAT = "\u064e\u064f\u0650\u0652\u064b\u064d"
ARABIC_LETTER = re.compile(r"[\u0621-\u063a\u0641-\u064a]")
ARABIC_MARK = re.compile(r"[\u064b-\u065f\u0670]")
SENTENCE_END = re.compile(r"(?<=[.!?؟])\s+")


# -- edits with known outcomes ---------------------------------------------------------------

class Edits:
    """Non-overlapping edits of a base text: ``(a, b, parts, kind)`` replaces ``base[a:b]``
    (``a == b``: inserts) by ``parts``, each a string or an ``(a, b)`` range of the base
    (a moved passage). Knows where each base position went."""

    def __init__(self, base: str):
        self.base = base
        self.items: list[tuple[int, int, list, str]] = []
        self._starts: list[int] = []
        self._ranges: list[tuple[int, int]] = []
        self._built = None

    def add(self, a: int, b: int, parts: list, kind: str) -> bool:
        """Add an edit unless it overlaps one already there; return whether it was added."""
        i = bisect.bisect_left(self._starts, a)
        for x, y in self._ranges[max(0, i - 1):]:
            if x > b:
                break
            if _conflict(a, b, x, y):
                return False
        self._starts.insert(i, a)
        self._ranges.insert(i, (a, b))
        self.items.append((a, b, parts, kind))
        self._built = None
        return True

    def free(self, a: int, b: int) -> bool:
        i = bisect.bisect_left(self._starts, a)
        for x, y in self._ranges[max(0, i - 1):]:
            if x > b:
                break
            if _conflict(a, b, x, y):
                return False
        return True

    def build(self):
        if self._built is None:
            out, edits, parts_at = [], [], []
            at = new = 0
            for a, b, parts, kind in sorted(self.items, key=lambda e: (e[0], e[1])):
                out.append(self.base[at:a])
                new += a - at
                start = new
                for part in parts:
                    if isinstance(part, str):
                        out.append(part)
                        new += len(part)
                    else:
                        parts_at.append((part[0], part[1], new))
                        out.append(self.base[part[0]:part[1]])
                        new += part[1] - part[0]
                edits.append((a, b, start, new, kind))
                at = b
            out.append(self.base[at:])
            parts_at.sort()
            self._alist = [edit[0] for edit in edits]
            self._built = ("".join(out), edits, parts_at)
        return self._built

    @property
    def text(self) -> str:
        return self.build()[0]

    def touching(self, s: int, e: int) -> list[str]:
        """The kinds of the edits that change something inside ``s:e``."""
        _, edits, _ = self.build()
        found = []
        for a, b, _, _, kind in edits[max(0, bisect.bisect_right(self._alist, s) - 2):]:
            if a >= e:
                break
            if (a < b and b > s) or (a == b and s < a):
                found.append(kind)
        return found

    def moved(self, p: int, end: bool = False) -> int | None:
        """Where base position ``p`` went if a moved passage holds it."""
        _, _, parts_at = self.build()
        i = bisect.bisect_right(parts_at, (p, float("inf"), 0)) - 1
        for pa, pb, new in parts_at[max(0, i - 1):i + 2]:
            if (pa < p <= pb) if end else (pa <= p < pb):
                return new + p - pa
        return None

    def map(self, p: int, end: bool = False) -> int:
        """Base position ``p`` in the edited text: a start (``end`` False) goes after an
        insertion there, an end before it; inside an edit, to the edit's start or end."""
        moved = self.moved(p, end)
        if moved is not None:
            return moved
        _, edits, _ = self.build()
        j = bisect.bisect_right(self._alist, p) - 1
        while j >= 0 and edits[j][0] == p:
            a, b, new_a, new_b, _ = edits[j]
            if a == b:
                return new_a if end else new_b
            if not end:
                return new_a
            j -= 1
        if j < 0:
            return p
        a, b, new_a, new_b, _ = edits[j]
        if p < b:
            return new_b if end else new_a
        return p + new_b - b


def _conflict(a: int, b: int, x: int, y: int) -> bool:
    if a < b and x < y:
        return a < y and x < b
    if a == b and x == y:
        return a == x
    if a == b:
        return x < a < y
    return a < x < b


# -- texts, words, annotations ---------------------------------------------------------------

def lines_of(text: str) -> list[tuple[int, int, int]]:
    """(start, end of content, end with newline) of each line."""
    out = []
    for m in re.finditer(r"[^\n]*\n|[^\n]+$", text):
        content_end = m.end() - 1 if m.group().endswith("\n") else m.end()
        out.append((m.start(), content_end, m.end()))
    return out


def words_of(text: str, start: int, end: int) -> list[tuple[int, int]]:
    return [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]


def make_annotations(text: str, count: int, rng: random.Random) -> list[tuple[int, int]]:
    """``count`` spans of 1-12 whole words within a paragraph."""
    lines = [words_of(text, s, e) for s, e, _ in lines_of(text)]
    lines = [w for w in lines if w]
    weights = [len(w) for w in lines]
    spans = []
    for _ in range(count):
        words = rng.choices(lines, weights)[0]
        i = rng.randrange(len(words))
        j = min(len(words), i + rng.randint(1, 12))
        spans.append((words[i][0], words[j - 1][1]))
    return spans


def typo(word: str, rng: random.Random) -> str | None:
    letters = [k for k, c in enumerate(word) if c.isalpha()]
    if len(letters) < 3:
        return None
    for _ in range(20):
        k = rng.choice(letters)
        how = rng.randrange(4)
        if how == 0 and k + 1 < len(word) and word[k + 1].isalpha() and word[k] != word[k + 1]:
            out = word[:k] + word[k + 1] + word[k] + word[k + 2:]
        elif how == 1:
            out = word[:k] + word[k + 1:]
        elif how == 2:
            out = word[:k] + word[k] + word[k:]
        else:
            others = [word[j] for j in letters if word[j] != word[k]]
            if not others:
                continue
            out = word[:k] + rng.choice(others) + word[k + 1:]
        if out != word:
            return out
    return None


def vocabulary(text: str) -> list[str]:
    return sorted({m.group() for m in re.finditer(r"\S+", text)
                   if any(c.isalpha() for c in m.group())})


# -- the kinds of edit: each adds to the older version's edits and the newer one's ----------

def typo_inside(text, spans, old, new, rng, share=0.3, **_):
    for s, e in rng.sample(spans, int(len(spans) * share)):
        words = [(a, b) for a, b in words_of(text, s, e) if typo(text[a:b], rng)]
        rng.shuffle(words)
        for a, b in words:
            wrong = typo(text[a:b], rng)
            if wrong and old.add(a, b, [wrong], "typo"):
                break


def typo_beside(text, spans, old, new, rng, share=0.3, **_):
    lines = lines_of(text)
    starts = [s for s, _, _ in lines]
    for s, e in rng.sample(spans, int(len(spans) * share)):
        line = lines[bisect.bisect_right(starts, s) - 1]
        words = words_of(text, line[0], line[1])
        before = [w for w in words if w[1] < s]
        after = [w for w in words if w[0] > e]
        sides = ([before[-1]] if before else []) + ([after[0]] if after else [])
        rng.shuffle(sides)
        for a, b in sides:
            wrong = typo(text[a:b], rng)
            if wrong and old.add(a, b, [wrong], "typo"):
                break


def paragraphs_inserted(text, spans, old, new, rng, count=10, **_):
    vocab = vocabulary(text)
    starts = [s for s, _, _ in lines_of(text)] + [len(text)]
    for _ in range(count):
        at = rng.choice(starts)
        words = [rng.choice(vocab) for _ in range(rng.randint(20, 60))]
        new.add(at, at, [" ".join(words) + "\n"], "insert")


def paragraphs_deleted(text, spans, old, new, rng, share=0.12, **_):
    lines = [line for line in lines_of(text) if text[line[0]:line[1]].strip()]
    for s, _, e in rng.sample(lines, int(len(lines) * share)):
        new.add(s, e, [], "delete")


def whitespace_reflowed(text, spans, old, new, rng, share=1.0, latin=False, **_):
    """Every chosen paragraph re-wrapped at about 70 code points, as a PDF gives it back."""
    lines = lines_of(text)
    for index, (s, content_end, e) in enumerate(lines):
        if rng.random() >= share:
            continue
        words = words_of(text, s, content_end)
        if not words:
            continue
        if words[0][0] > s:
            new.add(s, words[0][0], [], "space")  # the indentation
        column = words[0][1] - words[0][0]
        for (_, b), (c, d) in zip(words, words[1:]):
            column += 1 + d - c
            if column > 70:
                column = d - c
                if latin and d - c >= 8 and text[c:d].isalpha() and rng.random() < 0.5:
                    if text[b:c] != " ":
                        new.add(b, c, [" "], "space")
                    cut = c + (d - c) // 2
                    mark = "-\n" if rng.random() < 0.5 else "\ufffe"
                    new.add(c, d, [text[c:cut] + mark + text[cut:d]], "space")
                    column = d - cut
                    continue
                replacement = "\n"
            elif rng.random() < 0.05:
                replacement = "  "
            else:
                replacement = " "
            if text[b:c] != replacement:
                new.add(b, c, [replacement], "space")
        if e > content_end and index + 1 < len(lines) and rng.random() < 0.3:
            new.add(content_end, e, [" "], "space")  # the paragraph joined to the next


def sentences_reordered(text, spans, old, new, rng, share=0.4, moves=4, **_):
    lines = lines_of(text)
    candidates = []
    for s, content_end, _ in lines:
        words = words_of(text, s, content_end)
        if not words:
            continue
        body = (words[0][0], content_end)
        pieces = [(m.start() + body[0], m.end() + body[0])
                  for m in re.finditer(r"\S(?:.*?)(?:[.!?؟](?=\s)|$)",
                                       text[body[0]:body[1]])]
        if len(pieces) >= 2:
            candidates.append((body, pieces))
    for body, pieces in rng.sample(candidates, int(len(candidates) * share)):
        order = pieces[:]
        while order == pieces:
            rng.shuffle(order)
        parts: list = []
        for piece in order:
            if parts:
                parts.append(" ")
            parts.append(piece)
        new.add(body[0], body[1], parts, "reorder")
    full = [line for line in lines if text[line[0]:line[1]].strip() and line[2] > line[1]]
    starts = [s for s, _, _ in lines]
    for s, _, e in rng.sample(full, min(moves, len(full))):
        if not new.free(s, e):
            continue
        for _ in range(20):
            at = rng.choice(starts)
            if not s <= at <= e and new.free(at, at):
                new.add(s, e, [], "move-out")
                new.add(at, at, [(s, e)], "move-in")
                break


def passages_rewritten(text, spans, old, new, rng, share=0.2, **_):
    vocab = vocabulary(text)
    for s, e in rng.sample(spans, int(len(spans) * share)):
        words = words_of(text, s, e)
        replace = [rng.random() < 0.7 for _ in words]
        if not any(replace):
            replace[rng.randrange(len(words))] = True
        for (a, b), change in zip(words, replace):
            if change and new.free(a, b):
                while (other := rng.choice(vocab)) == text[a:b]:
                    pass
                new.add(a, b, [other], "rewrite")


def zwnj_corrected(text, spans, old, new, rng, **_):
    for m in re.finditer("\u200c", text):
        old.add(m.start(), m.end(), [" " if rng.random() < 0.5 else ""], "zwnj")
    for m in re.finditer(r"(?:(?<=\s)|^)می(?=[\u0621-\u064a\u067e\u0686\u0698\u06a9\u06af\u06cc])",
                         text, re.M):
        new.add(m.start(), m.end(), ["می\u200c"], "zwnj")


def harakat_removed(text, spans, old, new, rng, **_):
    for m in ARABIC_LETTER.finditer(text):
        following = text[m.end():m.end() + 1]
        if not ARABIC_MARK.match(following) and rng.random() < 0.6:
            old.add(m.start(), m.end(), [m.group() + rng.choice(HARAKAT)], "mark")
    for m in ARABIC_MARK.finditer(text):
        new.add(m.start(), m.end(), [], "mark")


KINDS = {
    "typo inside": (typo_inside, None),
    "typo beside": (typo_beside, None),
    "paragraphs inserted": (paragraphs_inserted, None),
    "paragraphs deleted": (paragraphs_deleted, None),
    "whitespace reflowed": (whitespace_reflowed, None),
    "sentences reordered": (sentences_reordered, None),
    "passages rewritten": (passages_rewritten, None),
    "ZWNJ corrected": (zwnj_corrected, "Persian"),
    "harakat removed": (harakat_removed, "Arabic"),
}


# -- ground truth and outcomes ---------------------------------------------------------------

def truth(base_span, old: Edits, new: Edits) -> tuple:
    """What became of the passage ``base_span`` of the base text in the newer version:
    (``unchanged`` | ``edited`` | ``gone`` | ``rewritten`` | ``split``, start, end, the
    places of the pieces of a split passage)."""
    s, e = base_span
    kinds = set(new.touching(s, e))
    if "delete" in kinds:
        return "gone", None, None, ()
    if "rewrite" in kinds:
        return "rewritten", new.map(s), new.map(e, end=True), ()
    if kinds and kinds <= {"move-out", "reorder"}:
        start, end = new.moved(s), new.moved(e, end=True)
        if start is None or end is None or end - start != e - s \
                or new.text[start:end] != new.base[s:e]:
            pieces = tuple((at + max(s, a) - a, at + min(e, b) - a)
                           for a, b, at in new.build()[2] if a < e and s < b)
            return ("split", None, None, pieces) if pieces else ("gone", None, None, ())
        return ("edited" if old.touching(s, e) else "unchanged"), start, end, ()
    start, end = new.map(s), new.map(e, end=True)
    if not kinds and not old.touching(s, e):
        return "unchanged", start, end, ()
    return "edited", start, end, ()


def outcome(kind: str, t_start, t_end, pieces, placement, threshold: float) -> str:
    """right | near | on rewrite | wrong | orphaned, at ``threshold``."""
    anchoring = placement.anchoring
    if anchoring == "fuzzy" and placement.score < threshold:
        anchoring = "orphaned"
    if anchoring == "orphaned":
        return "orphaned"
    s, e = placement.start, placement.end
    if kind == "gone":
        return "wrong"
    if kind == "split":
        return "near" if any(s < b and a < e for a, b in pieces) else "wrong"
    overlaps = s < t_end and t_start < e
    if kind == "rewritten":
        return "on rewrite" if overlaps else "wrong"
    if (s, e) == (t_start, t_end):
        return "right"
    if kind == "edited" and overlaps:
        return "near"
    return "wrong"



def run_kind(name, script, base, spans, rng, **options):
    """Versions of ``base`` with the edits of kind ``name``; a record per annotation."""
    make, _ = KINDS[name]
    old, new = Edits(base), Edits(base)
    make(base, spans, old, new, rng, latin=script == "Latin", **options)
    old_text, new_text = old.text, new.text
    annotations, truths = [], []
    for s, e in spans:
        start, end = old.map(s), old.map(e, end=True)
        annotations.append(tuple(anchoring.anchor(old_text, start, end)))
        truths.append(truth((s, e), old, new))
    placer = Reanchorer(old_text, new_text)
    records = []
    for span, (kind, t_start, t_end, pieces) in zip(annotations, truths):
        if kind == "unchanged":
            assert new_text[t_start:t_end] == span[2], (name, span, new_text[t_start:t_end])
        placement = placer.place(*span, threshold=0.0)
        records.append({"kind": name, "script": script, "truth": kind, "truth_span": (t_start, t_end, pieces),
                        "placement": placement, "quote": span[2]})
    return records


# -- reports -------------------------------------------------------------------------------

OUTCOMES = ("right", "near", "on rewrite", "wrong", "orphaned")


def summarize(records, threshold: float) -> list[dict]:
    groups = defaultdict(list)
    for r in records:
        groups[(r["kind"], r["script"], r["truth"])].append(r)
    rows = []
    for (kind, script, truth_kind), group in groups.items():
        counts = Counter(outcome(truth_kind, *r["truth_span"], r["placement"], threshold)
                         for r in group)
        anchorings = Counter("orphaned" if r["placement"].anchoring == "fuzzy"
                             and r["placement"].score < threshold else r["placement"].anchoring
                             for r in group)
        rows.append({"kind": kind, "script": script, "truth": truth_kind, "n": len(group),
                     **{o: counts[o] for o in OUTCOMES},
                     "exact": anchorings["exact"], "fuzzy": anchorings["fuzzy"]})
    order = list(KINDS)
    scripts = ["Latin", "Persian", "Arabic"]
    truths = ["unchanged", "edited", "split", "gone", "rewritten"]
    rows.sort(key=lambda r: (order.index(r["kind"]), scripts.index(r["script"]),
                             truths.index(r["truth"])))
    return rows


def pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def threshold_table(records) -> list[dict]:
    out = []
    for t in THRESHOLDS:
        by = defaultdict(Counter)
        for r in records:
            by[r["truth"]][outcome(r["truth"], *r["truth_span"], r["placement"], t)] += 1
        typo = Counter()
        for r in records:
            if r["kind"] == "typo inside" and r["truth"] == "edited":
                typo[outcome("edited", *r["truth_span"], r["placement"], t)] += 1
        wrong_unchanged = by["unchanged"]["wrong"]
        out.append({
            "threshold": t,
            "typo_fixed_placed": (typo["right"] + typo["near"]) / max(1, sum(typo.values())),
            "typo_fixed_right": typo["right"] / max(1, sum(typo.values())),
            "edited_placed": (by["edited"]["right"] + by["edited"]["near"])
            / max(1, sum(by["edited"].values())),
            "rewritten_on_rewrite": by["rewritten"]["on rewrite"]
            / max(1, sum(by["rewritten"].values())),
            "gone_placed": by["gone"]["wrong"],
            "wrong": sum(c["wrong"] for c in by.values()),
            "wrong_unchanged": wrong_unchanged,
        })
    return out


def speed(texts: dict[str, str], rng: random.Random, runs: int, annotations: int) -> list[dict]:
    """About 200,000 code points, ``annotations`` annotations, two newer versions."""
    joined = "\n".join(texts[k] for k in SOURCES) + "\n"
    base = "".join(numbered(joined, copy) for copy in range(1, -(-200_000 // len(joined)) + 1))
    spans = make_annotations(base, annotations, rng)
    results = []
    for label, build in (("mixed edits", _mixed), ("every paragraph re-wrapped", _rewrapped)):
        old, new = Edits(base), Edits(base)
        build(base, spans, old, new, rng)
        old_text, new_text = old.text, new.text
        anchors = [tuple(anchoring.anchor(old_text, old.map(s), old.map(e, end=True)))
                   for s, e in spans]
        truths = [truth(span, old, new) for span in spans]
        totals, keys, diffs, chars, placing = [], [], [], [], []
        for _ in range(runs):
            t0 = time.perf_counter()
            old_key, _, old_words = keyed(old_text)
            new_key, _, new_words = keyed(new_text)
            t1 = time.perf_counter()
            key_diff(old_words, new_words)
            t2 = time.perf_counter()
            fast_diff_match_patch.diff(old_key, new_key, timelimit=2.0, checklines=False,
                                       cleanup="No")
            t3 = time.perf_counter()
            keys.append(t1 - t0)
            diffs.append(t2 - t1)
            chars.append(t3 - t2)
            t0 = time.perf_counter()
            placer = Reanchorer(old_text, new_text)
            t1 = time.perf_counter()
            placements = [placer.place(*a) for a in anchors]
            t2 = time.perf_counter()
            totals.append(t2 - t0)
            placing.append(t2 - t1)
        counts = Counter(_right(t[0], outcome(*t, p, DEFAULT_THRESHOLD))
                         for t, p in zip(truths, placements))
        wrong_unchanged = sum(1 for t, p in zip(truths, placements)
                              if t[0] == "unchanged" and outcome(*t, p, 1.0) == "wrong")
        results.append({
            "version": label, "old_length": len(old_text), "new_length": len(new_text),
            "annotations": len(anchors), "total_s": statistics.median(totals),
            "keys_s": statistics.median(keys), "diff_s": statistics.median(diffs),
            "diff_characters_s": statistics.median(chars),
            "place_s": statistics.median(placing),
            "truth": dict(Counter(t[0] for t in truths)), "outcomes": dict(counts),
            "anchoring": dict(Counter(p.anchoring for p in placements)),
            "wrong_unchanged": wrong_unchanged,
        })
    return results


def numbered(text: str, copy: int) -> str:
    """``text`` with each paragraph numbered (``§2.17``): the copies of a text repeated to
    make 200,000 code points are then not the same paragraph for paragraph (a paragraph
    moved next to its own copy could not be told from it, by any method)."""
    out, number = [], 0
    for line in text.splitlines(keepends=True):
        body = line.lstrip()
        if body.strip():
            number += 1
            line = line[:len(line) - len(body)] + f"§{copy}.{number} " + body
        out.append(line)
    return "".join(out)


def _right(kind: str, result: str) -> str:
    """An outcome, ``orphaned_right`` for a passage gone, rewritten or split and orphaned."""
    return "orphaned_right" if result == "orphaned" and kind in ("gone", "rewritten", "split") \
        else result


def _mixed(base, spans, old, new, rng):
    typo_inside(base, spans, old, new, rng, share=0.05)
    typo_beside(base, spans, old, new, rng, share=0.05)
    passages_rewritten(base, spans, old, new, rng, share=0.03)
    paragraphs_deleted(base, spans, old, new, rng, share=0.03)
    sentences_reordered(base, spans, old, new, rng, share=0.05, moves=5)
    paragraphs_inserted(base, spans, old, new, rng, count=20)
    whitespace_reflowed(base, spans, old, new, rng, share=0.1)


def _rewrapped(base, spans, old, new, rng):
    whitespace_reflowed(base, spans, old, new, rng, share=1.0, latin=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--annotations", type=int, default=200, help="per text and kind")
    parser.add_argument("--runs", type=int, default=5, help="timed runs (the median is kept)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    args = parser.parse_args(argv)

    texts = {k: (ROOT / path).read_text(encoding="utf-8") for k, (_, path) in SOURCES.items()}
    records = []
    for name, (_, only) in KINDS.items():
        for key, (script, _) in SOURCES.items():
            if only is not None and script != only:
                continue
            rng = random.Random(f"{args.seed}/{name}/{key}")
            spans = make_annotations(texts[key], args.annotations, rng)
            records.extend(run_kind(name, script, texts[key], spans, rng))
    rows = summarize(records, DEFAULT_THRESHOLD)
    thresholds = threshold_table(records)
    timing = speed(texts, random.Random(f"{args.seed}/speed"), args.runs, 1000)
    if args.json:
        print(json.dumps({"seed": args.seed, "threshold": DEFAULT_THRESHOLD, "kinds": rows,
                          "thresholds": thresholds, "speed": timing}, indent=1))
        return
    print(f"{len(records)} annotations, threshold {DEFAULT_THRESHOLD}, seed {args.seed}\n")
    print("| edit | script | passage | n | right | near | on rewrite | wrong | orphaned "
          "| exact | fuzzy |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        n = r["n"]
        print(f"| {r['kind']} | {r['script']} | {r['truth']} | {n} | {pct(r['right'], n)} "
              f"| {pct(r['near'], n)} | {pct(r['on rewrite'], n)} | {r['wrong']} "
              f"| {pct(r['orphaned'], n)} | {pct(r['exact'], n)} | {pct(r['fuzzy'], n)} |")
    print("\n| threshold | typo fixed inside: placed (right) | every edited passage placed "
          "| rewritten: placed on the rewrite | gone: placed | wrong (of which unchanged) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for t in thresholds:
        print(f"| {t['threshold']:.2f} | {100 * t['typo_fixed_placed']:.1f}% "
              f"({100 * t['typo_fixed_right']:.1f}%) | {100 * t['edited_placed']:.1f}% "
              f"| {100 * t['rewritten_on_rewrite']:.1f}% | {t['gone_placed']} "
              f"| {t['wrong']} ({t['wrong_unchanged']}) |")
    print("\n| new version | code points (old → new) | keys + diff + 1,000 placed | keys "
          "| diff (words, then characters) | placing | diff, characters only "
          "| exact / fuzzy / orphaned | right | wrong (unchanged) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|")
    for t in timing:
        a, outcomes = t["anchoring"], t["outcomes"]
        right = outcomes.get("right", 0) + outcomes.get("orphaned_right", 0)
        print(f"| {t['version']} | {t['old_length']:,} → {t['new_length']:,} "
              f"| {1000 * t['total_s']:.0f} ms | {1000 * t['keys_s']:.0f} ms "
              f"| {1000 * t['diff_s']:.0f} ms | {1000 * t['place_s']:.0f} ms "
              f"| {1000 * t['diff_characters_s']:.0f} ms "
              f"| {a.get('exact', 0)} / {a.get('fuzzy', 0)} / {a.get('orphaned', 0)} "
              f"| {right} | {outcomes.get('wrong', 0)} ({t['wrong_unchanged']}) |")


if __name__ == "__main__":
    main()
