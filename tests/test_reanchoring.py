"""Re-anchoring: annotations carried to a new version of a text, exact, fuzzy or orphaned, in
English, Persian and Arabic (stet.annotations.reanchoring; pure, no database)."""

import math
import pathlib
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stet.annotations import anchoring, reanchoring
from stet.annotations.reanchoring import (
    DEFAULT_THRESHOLD, Placement, Reanchorer, carry, key_diff, keyed,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent

EN = ("The conference opened in Geneva on Monday.\n"
      "Delegates from forty countries attended the first session on the right to education.\n"
      "Everyone has the right to education in every country.\n"
      "The press office published the full report on the right to education.\n"
      "Human rights defenders met again in Geneva on Tuesday evening.\n")
FA = ("اعلامیه جهانی حقوق بشر در پاریس تصویب شد و حق آموزش را شناخت.\n"
      "هر کس حق دارد از آزادی عقیده و بیان برخوردار باشد.\n"
      "آموزش و پرورش باید رایگان باشد و حق آموزش برای همه است.\n"
      "این حق شامل آزادی داشتن عقاید بدون مداخله است و حق آموزش را تقویت کند.\n"
      "نمایندگان کشورها بار دیگر در ژنو دیدار کردند.\n")
AR = ("لكل شخص الحق في التعليم في كل البلدان.\n"
      "ويجب أن يكون التعليم في مراحله الأولى مجانيا ضمانا لحق التعليم.\n"
      "لكل فرد الحق في حرية التفكير والضمير والدين وحق التعليم.\n"
      "نشر المكتب الصحفي التقرير الكامل عن حق التعليم.\n"
      "اجتمع المندوبون مرة أخرى في جنيف يوم الثلاثاء.\n")
#: Per script: the text; a word in its last line that also occurs in an earlier line (the
#: earlier line is deleted in one test); a phrase that occurs three times.
SCRIPTS = {
    "English": (EN, "Geneva", "the right to education"),
    "Persian": (FA, "آزادی", "حق آموزش"),
    "Arabic": (AR, "التعليم", "حق التعليم"),
}
#: Per script: (old text, new text, the old quote, the new quote): a typo fixed inside it.
TYPOS = {
    "English": (EN.replace("forty", "fourty"), EN, "from fourty countries", "from forty countries"),
    "Persian": (FA.replace("عقیده", "عقیدهه"), FA, "آزادی عقیدهه و بیان", "آزادی عقیده و بیان"),
    "Arabic": (AR.replace("التفكير", "التفكبر"), AR, "حرية التفكبر والضمير", "حرية التفكير والضمير"),
}
#: Per script: (old text, new text, a quote beside which a typo was fixed).
BESIDE = {
    "English": (EN.replace("countries", "countires"), EN, "attended the first session"),
    "Persian": (FA.replace("برخوردار", "برخودار"), FA, "آزادی عقیده و بیان"),
    "Arabic": (AR.replace("والضمير", "والضمبر"), AR, "حرية التفكير"),
}


def span(text: str, quote: str, n: int = 0) -> tuple:
    """The stored span of the ``n``-th occurrence of ``quote`` in ``text``."""
    at = -1
    for _ in range(n + 1):
        at = text.index(quote, at + 1)
    return tuple(anchoring.anchor(text, at, at + len(quote)))


def where(text: str, quote: str, n: int = 0) -> tuple[int, int]:
    s = span(text, quote, n)
    return s[0], s[1]


def words(text: str) -> list[tuple]:
    """Every word and every pair of words of ``text``, as stored spans."""
    found = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    spans = [tuple(anchoring.anchor(text, a, b)) for a, b in found]
    spans += [tuple(anchoring.anchor(text, a, d)) for (a, _), (_, d) in zip(found, found[1:])]
    return spans


def assert_placed(p: Placement, text: str, anchoring_kind: str, at: tuple[int, int]):
    assert (p.anchoring, (p.start, p.end)) == (anchoring_kind, at), p
    assert p.exact == text[p.start:p.end]
    expected = anchoring.anchor(text, p.start, p.end)
    assert (p.prefix, p.suffix) == (expected.prefix, expected.suffix)


# -- exact -----------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_unchanged_text_places_every_span_exactly_where_it_was(script):
    text = SCRIPTS[script][0]
    spans = words(text)
    for s, p in zip(spans, carry(text, text, spans)):
        assert (p.anchoring, p.score, p.start, p.end, p.exact, p.prefix, p.suffix) == \
            ("exact", 1.0, *s)


@pytest.mark.parametrize("script", SCRIPTS)
def test_text_inserted_before_shifts_every_span(script):
    text = SCRIPTS[script][0]
    intro = {"English": "A new introduction.\n\n", "Persian": "مقدمه‌ای تازه.\n\n",
             "Arabic": "مقدمة جديدة.\n\n"}[script]
    spans = words(text)
    for s, p in zip(spans, carry(text, intro + text, spans)):
        assert_placed(p, intro + text, "exact", (s[0] + len(intro), s[1] + len(intro)))
        assert p.score == 1.0 and p.exact == s[2]


@pytest.mark.parametrize("script", SCRIPTS)
def test_typo_fixed_beside_the_quote_is_exact(script):
    old, new, quote = BESIDE[script]
    (p,) = carry(old, new, [span(old, quote)])
    assert_placed(p, new, "exact", where(new, quote))
    assert p.prefix != span(old, quote)[3] or p.suffix != span(old, quote)[4]  # the context changed


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_phrase_repeated_three_times_each_lands_on_its_own_occurrence(script):
    text, _, phrase = SCRIPTS[script]
    lines = text.splitlines(keepends=True)
    inserted = {"English": "A paragraph about the right to work.\n",
                "Persian": "بندی درباره حق کار.\n", "Arabic": "فقرة عن حق العمل.\n"}[script]
    new = "".join(lines[:3] + [inserted] + lines[3:])
    assert text.count(phrase) == new.count(phrase) == 3
    placements = carry(text, new, [span(text, phrase, n) for n in range(3)])
    for n, p in enumerate(placements):
        assert_placed(p, new, "exact", where(new, phrase, n))


@pytest.mark.parametrize("script", SCRIPTS)
def test_sentences_reordered_each_quote_is_exact_at_its_new_place(script):
    text = SCRIPTS[script][0]
    lines = text.splitlines(keepends=True)
    new = "".join([lines[3], lines[0], lines[4], lines[1], lines[2]])
    cases = []  # (old start, old end, new start)
    for line in lines:  # every line, whole; and words of the second line
        body = line.rstrip("\n")
        cases.append((text.index(body), text.index(body) + len(body), new.index(body)))
    second, moved_to = text.index(lines[1]), new.index(lines[1])
    for m in list(re.finditer(r"\S+(?: \S+)?", lines[1]))[1:4]:
        cases.append((second + m.start(), second + m.end(), moved_to + m.start()))
    spans = [tuple(anchoring.anchor(text, a, b)) for a, b, _ in cases]
    for (a, b, at), p in zip(cases, carry(text, new, spans)):
        assert_placed(p, new, "exact", (at, at + b - a))
        assert p.exact == text[a:b]


def test_a_moved_word_is_found_by_its_context_not_by_the_word_alone():
    old = "Alpha beta gamma delta. Second sentence is here with Geneva in it. Third one."
    new = "Second sentence is here with Geneva in it. Alpha beta gamma delta. Third one."
    (p,) = carry(old, new, [span(old, "Geneva")])
    assert_placed(p, new, "exact", where(new, "Geneva"))


# -- fuzzy -----------------------------------------------------------------------------------


@pytest.mark.parametrize("script", TYPOS)
def test_typo_fixed_inside_the_quote_is_fuzzy_on_the_corrected_span(script):
    old, new, quote, corrected = TYPOS[script]
    (p,) = carry(old, new, [span(old, quote)])
    assert_placed(p, new, "fuzzy", where(new, corrected))
    assert DEFAULT_THRESHOLD <= p.score < 1.0


def test_a_typo_fixed_at_the_start_of_a_quote_takes_the_whole_word():
    old = "They seized ower through bloodshed and fear."
    new = "They seized power through bloodshed and fear."
    (p,) = carry(old, new, [span(old, "ower through bloodshed")])
    assert_placed(p, new, "fuzzy", where(new, "power through bloodshed"))


def test_whitespace_reflowed_as_a_pdf_gives_it_places_every_quote_on_the_same_words():
    """A DOCX superseded by a PDF of the same text: lines wrapped, paragraphs joined, a word
    hyphenated at a line end (with a hyphen, or U+FFFE as PDFium gives it), double spaces."""
    old = ("The General Assembly proclaims this Universal Declaration of Human Rights as a "
           "common standard of achievement for all peoples.\n\n"
           "Everyone is entitled to all the rights and freedoms set forth in this Declaration, "
           "without distinction of any kind.\n\n"
           "No one shall be subjected to arbitrary interference with his privacy.\n")
    new = ("The General Assembly proclaims this Universal\nDeclaration of Human Rights as "
           "a common  standard of achieve-\nment for all peoples. Everyone is entitled to all "
           "the\nrights and freedoms set forth in this Declara\ufffetion, without distinction "
           "of any kind.\nNo one shall be subjected to arbitrary interference with his "
           "privacy.\n")
    quotes = {  # old quote -> its words in the new text
        "this Universal Declaration of Human": "this Universal\nDeclaration of Human",
        "common standard of achievement for all": "common  standard of achieve-\nment for all",
        "peoples.\n\nEveryone is entitled": "peoples. Everyone is entitled",
        "set forth in this Declaration, without": "set forth in this Declara\ufffetion, without",
        "arbitrary interference": "arbitrary interference",
        "General Assembly": "General Assembly",
    }
    placements = carry(old, new, [span(old, q) for q in quotes])
    for (quote, expected), p in zip(quotes.items(), placements):
        kind = "exact" if quote == expected else "fuzzy"
        assert_placed(p, new, kind, where(new, expected))
        assert p.score == 1.0  # the same words: only whitespace and breaks differ


def test_persian_zwnj_corrected_or_removed():
    old = "من می خواهم که آزادی‌های اساسی همه تأمین شود و هر کس میتواند بیاموزد.\n"
    new = "من می‌خواهم که آزادیهای اساسی همه تأمین شود و هر کس می‌تواند بیاموزد.\n"
    cases = {  # old quote -> (anchoring, new quote)
        "می خواهم": ("fuzzy", "می‌خواهم"),  # a space became a ZWNJ
        "خواهم": ("exact", "خواهم"),
        "آزادی‌های اساسی": ("fuzzy", "آزادیهای اساسی"),  # a ZWNJ taken out
        "اساسی همه": ("exact", "اساسی همه"),
        "هر کس میتواند": ("fuzzy", "هر کس می‌تواند"),  # a ZWNJ put in
    }
    placements = carry(old, new, [span(old, q) for q in cases])
    for (kind, expected), p in zip(cases.values(), placements):
        assert_placed(p, new, kind, where(new, expected))
        assert p.score == 1.0


def test_arabic_harakat_removed_is_fuzzy_with_score_one_on_the_same_letters():
    """Exact would promise the stored quote code point for code point; the quote without
    harakat is another string, so it is fuzzy, scored 1.0: the same after folding."""
    old = "لِكُلِّ شَخْصٍ حَقُّ التَّعْلِيمِ، وَيَجِبُ أَنْ يَكُونَ مَجَّانِيًّا في المراحل الأولى.\n"
    new = "لكل شخص حق التعليم، ويجب أن يكون مجانيا في المراحل الأولى.\n"
    cases = {  # old quote -> (anchoring, new quote)
        "حَقُّ التَّعْلِيمِ": ("fuzzy", "حق التعليم"),
        "لِكُلِّ": ("fuzzy", "لكل"),
        "مَجَّانِيًّا": ("fuzzy", "مجانيا"),
        "في المراحل الأولى": ("exact", "في المراحل الأولى"),  # no harakat to remove
    }
    placements = carry(old, new, [span(old, q) for q in cases])
    for (kind, expected), p in zip(cases.values(), placements):
        assert_placed(p, new, kind, where(new, expected))
        assert p.score == 1.0


def test_arabic_harakat_removed_and_a_typo_fixed_is_fuzzy_below_one():
    old = "لِكُلِّ شَخْصٍ حَقُّ التَّعْلِيمِ وَالتَّفْكبر وَالضَّمِيرِ.\n"
    new = "لكل شخص حق التعليم والتفكير والضمير.\n"
    (p,) = carry(old, new, [span(old, "التَّعْلِيمِ وَالتَّفْكبر وَالضَّمِيرِ")])
    assert_placed(p, new, "fuzzy", where(new, "التعليم والتفكير والضمير"))
    assert DEFAULT_THRESHOLD <= p.score < 1.0


def test_a_long_quote_with_a_typo_fixed_is_aligned_by_its_two_ends():
    """Past reanchoring.ALIGN_MAX key characters a quote is not aligned whole (the memory of
    an alignment grows with both lengths) but by its beginning and its end."""
    text = (ROOT / "ingest" / "udhr" / "udhr_eng.txt").read_text(encoding="utf-8")
    start = text.index("Article 3")
    end = text.index("Article 20")
    assert len(keyed(text[start:end])[0]) > reanchoring.ALIGN_MAX
    old = text.replace("inhuman or degrading treatment", "inhuman or degradnig treatment", 1)
    (p,) = carry(old, text, [span(old, old[start:end + 1])])
    assert_placed(p, text, "fuzzy", (start, end + 1))
    assert 0.99 < p.score < 1.0


def test_emoji_and_astral_characters_before_the_span_keep_offsets_in_code_points():
    old = "👩\u200d👩\u200d👧 🇮🇷 Hello 👋🏽 world. The meeting in Genva was long. 𝕏 marks it.\n"
    new = "😀 New line 🎉.\n" + old.replace("Genva", "Geneva")
    placements = carry(old, new, [span(old, "world"), span(old, "meeting in Genva"),
                                  span(old, "👋🏽"), span(old, "𝕏 marks")])
    assert_placed(placements[0], new, "exact", where(new, "world"))
    assert_placed(placements[1], new, "fuzzy", where(new, "meeting in Geneva"))
    assert_placed(placements[2], new, "exact", where(new, "👋🏽"))
    assert_placed(placements[3], new, "exact", where(new, "𝕏 marks"))
    assert new[placements[2].start:placements[2].end] == "👋🏽"  # str offsets are code points
    assert placements[2].end - placements[2].start == 2  # 👋 and its skin tone modifier


# -- orphaned --------------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_passage_deleted_while_its_word_occurs_elsewhere_is_orphaned(script):
    text, word, _ = SCRIPTS[script]
    lines = text.splitlines(keepends=True)
    deleted = next(i for i, line in enumerate(lines) if word in line)
    new = "".join(lines[:deleted] + lines[deleted + 1:])
    assert word in new  # exact string search alone would misplace it
    first = span(text, word, 0)
    last = span(text, word, text.count(word) - 1)
    removed, kept = carry(text, new, [first, last])
    assert removed.anchoring == "orphaned", removed
    assert (removed.start, removed.end, removed.exact, removed.prefix, removed.suffix) == (None,) * 5
    assert removed.score < DEFAULT_THRESHOLD
    assert_placed(kept, new, "exact", where(new, word, new.count(word) - 1))


def test_geneva_removed_from_the_press_release_is_orphaned_not_put_on_another_geneva():
    text = (ROOT / "ingest" / "press" / "press-release-2014-08-13-geneva.txt").read_text(encoding="utf-8")
    first = text.index("Geneva")
    start = text.rindex("\n", 0, first) + 1
    new = text[:start] + text[text.index("\n", first) + 1:]
    assert text.count("Geneva") - 1 == new.count("Geneva") >= 1
    spans = [span(text, "Geneva", n) for n in range(text.count("Geneva"))]
    placements = carry(text, new, spans)
    assert placements[0].anchoring == "orphaned"
    for n, p in enumerate(placements[1:]):
        assert_placed(p, new, "exact", where(new, "Geneva", n))


def test_a_rewritten_passage_is_orphaned_with_its_score_and_placed_only_with_a_low_threshold():
    old = "The committee met in Geneva and approved the annual report without a vote.\n"
    new = "The committee met in Geneva and rejected every draft proposal after long talks.\n"
    quote = "approved the annual report without a vote"
    (p,) = carry(old, new, [span(old, quote)])
    assert p.anchoring == "orphaned" and 0 < p.score < DEFAULT_THRESHOLD
    (low,) = carry(old, new, [span(old, quote)], threshold=p.score)
    assert low.anchoring == "fuzzy" and low.score == p.score
    assert old.index("approved") <= low.start < low.end <= len(new.rstrip())


def test_a_removed_paragraph_that_began_like_the_next_one_is_orphaned():
    old = ("Everyone has the right to work and to free choice of employment.\n"
           "Everyone has the right to rest and leisure, and to holidays with pay.\n")
    new = "Everyone has the right to rest and leisure, and to holidays with pay.\n"
    removed, kept = carry(old, new, [span(old, "has the right to work"),
                                     span(old, "to rest and leisure")])
    assert removed.anchoring == "orphaned"
    assert_placed(kept, new, "exact", where(new, "to rest and leisure"))


@pytest.mark.parametrize("bad", [
    (0, 0, "", None, None),  # empty quote (and span)
    (3, 3, "x", None, None),  # start == end
    (5, 2, "abc", None, None),  # start > end
    (-1, 3, "abc", None, None),  # negative
    (0, 10_000, "abc", None, None),  # past the end
    (0.0, 3.0, "The", None, None),  # not integers
    (True, 3, "he", None, None),  # a bool is not an offset
    (0, 3, None, None, None),  # no quote
    (0, 3, "xyz", None, None),  # not the text there, and nowhere in it
])
def test_a_bad_span_is_orphaned_with_score_zero_never_an_error(bad):
    (p,) = carry(EN, EN + "More.\n", [bad])
    assert p == Placement("orphaned", 0.0, None, None, None, None, None)


def test_a_quote_not_at_its_position_is_found_by_quote_and_context():
    old = "First line here.\nThe conference opened in Geneva on Monday.\n"
    new = "Intro.\n" + old
    stored = (0, 6, "Geneva", "opened in ", " on Monday")  # offsets of another extraction
    (p,) = carry(old, new, [stored])
    assert_placed(p, new, "exact", where(new, "Geneva"))


# -- the threshold, the interface ------------------------------------------------------------


def test_threshold_decides_between_fuzzy_and_orphaned_and_the_score_is_kept():
    old, new, quote, corrected = TYPOS["English"]
    (p,) = carry(old, new, [span(old, quote)])
    (at,) = carry(old, new, [span(old, quote)], threshold=p.score)
    (above,) = carry(old, new, [span(old, quote)], threshold=min(1.0, p.score + 0.01))
    assert at == p
    assert above.anchoring == "orphaned" and above.score == p.score and above.start is None
    placer = Reanchorer(old, new)
    for wrong in (-0.1, 1.5, math.nan, "0.8", True):
        with pytest.raises(ValueError):
            placer.place(*span(old, quote), threshold=wrong)


def test_carry_is_place_for_each_span_and_deterministic():
    old, new, _, _ = TYPOS["Persian"]
    spans = words(old)
    placer = Reanchorer(old, new)
    one_by_one = [placer.place(*s) for s in spans]
    assert carry(old, new, spans) == one_by_one == carry(old, new, iter(spans))
    assert carry(old, new, []) == []


def test_default_threshold_is_a_score():
    assert 0.6 <= DEFAULT_THRESHOLD <= 0.95


def test_keyed_leaves_out_whitespace_marks_and_breaks_and_keeps_offsets():
    text = "Human  rights\n- li-\nfe  لِكُلِّ\u200cشخص manip\ufffeulation\u00ad!"
    key, offsets, line_words = keyed(text)
    assert key == "Humanrights-lifeلكلشخصmanipulation!"
    assert line_words.replace("\n", "") == key
    assert [text[offsets[k]] for k in range(len(key))] == list(key)
    assert [offsets.before(p) for p in (0, 5, 7, len(text))] == [0, 5, 5, len(key)]


def test_key_diff_counts_code_points_for_astral_characters():
    old, new = "a👋🏽b\ncd", "a👋🏽xb\ncd"
    assert key_diff(old, new) == [("=", 3), ("+", 1), ("=", 3)]


def test_key_diff_falls_back_when_the_diff_refuses_astral_characters(monkeypatch):
    """Where wchar_t is 2 bytes the package refuses characters outside the BMP: the diff is
    then run on copies with one U+FFFD for each, and the offsets are the same."""
    real = reanchoring._diff

    def narrow(old, new, deadline):
        if re.search("[\U00010000-\U0010ffff]", old + new):
            raise ValueError("character outside the BMP")
        return real(old, new, deadline)

    old = "👩\u200d👩\u200d👧 🇮🇷 Hello 👋🏽 world. The meeting in Genva was long.\n"
    new = "😀 New.\n" + old.replace("Genva", "Geneva")
    expected = carry(old, new, [span(old, "world"), span(old, "meeting in Genva")])
    monkeypatch.setattr(reanchoring, "_diff", narrow)
    assert carry(old, new, [span(old, "world"), span(old, "meeting in Genva")]) == expected


# -- properties ------------------------------------------------------------------------------

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
#: Text from letters of three scripts, harakat, ZWNJ, spaces, newlines, hyphens and emoji;
#: what is inserted comes from characters the text never has (so that an insertion cannot
#: make a second copy of a quote) that are not letters (so that it does not lengthen a word),
#: at most 4 at a place, at most 4 places: at most reanchoring.FEW_ADDED (16) together, the
#: most the diff keeps a one-letter run between two insertions for (with more, a quote with
#: nothing of its context left is placed by its context, or not at all).
TEXT = st.text(st.sampled_from(list("ab cde\n-") + ["آ", "ب", "ی", "\u200c", "ل", "\u064e",
                                                     "\u0651", "👋", "🏽", "é", "\u0301"]),
               min_size=1, max_size=120)
INSERT = st.text(st.sampled_from(list("#%&*+<=>@^|~") + ["☃", "🎉"]), min_size=1, max_size=4)


@st.composite
def text_and_spans(draw):
    text = draw(TEXT)
    pairs = draw(st.lists(st.tuples(st.integers(0, len(text)), st.integers(0, len(text))),
                          min_size=1, max_size=8))
    spans = [(min(a, b), max(a, b)) for a, b in pairs if a != b]
    return text, spans


@SETTINGS
@given(text_and_spans())
def test_property_the_same_text_places_every_span_exactly(case):
    text, spans = case
    stored = [tuple(anchoring.anchor(text, s, e)) for s, e in spans]
    for s, p in zip(stored, carry(text, text, stored)):
        assert (p.anchoring, p.score, p.start, p.end, p.exact, p.prefix, p.suffix) == \
            ("exact", 1.0, *s)


@SETTINGS
@given(text_and_spans(), st.data())
def test_property_insertions_outside_every_span_keep_every_span_exact(case, data):
    text, spans = case
    outside = [p for p in range(len(text) + 1) if not any(s < p < e for s, e in spans)]
    points = sorted(set(data.draw(st.lists(st.sampled_from(outside), min_size=1, max_size=4))))
    pieces, at = [], 0
    for point in points:
        pieces += [text[at:point], data.draw(INSERT)]
        at = point
    new = "".join(pieces + [text[at:]])
    stored = [tuple(anchoring.anchor(text, s, e)) for s, e in spans]
    for s, p in zip(stored, carry(text, new, stored)):
        assert p.anchoring == "exact" and p.score == 1.0, (s, p)
        assert new[p.start:p.end] == p.exact == s[2]


@SETTINGS
@given(st.text(st.sampled_from(list("ab -\n\t") + ["\u064e", "\u00ad", "\ufffe", "\u200c", "👋", "\u2028"]),
               max_size=80))
def test_property_the_key_is_the_text_without_what_it_leaves_out(text):
    key, offsets, line_words = keyed(text)
    assert line_words.replace("\n", "") == key
    assert len(offsets) == len(key)
    assert "".join(text[offsets[k]] for k in range(len(key))) == key
    assert offsets.before(len(text)) == len(key)
