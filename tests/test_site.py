"""What a reader of the public site meets: words broken across lines found and highlighted,
a neutral packaged description, replies read as threads, short hashes and linked documents.

Through ``datasette.client`` against the snapshot ``stet serve`` builds; one test in Chromium
for what only a browser shows (the hover panel, what CSS hides).
"""

from __future__ import annotations

import asyncio
import pathlib
import re
import time
from html.parser import HTMLParser
from urllib.parse import quote

import pytest
import yaml

from stet import Archive
from stet.datasette_plugin import highlight
from stet.publish import fold
from stet.serve import load_metadata, make_datasette, merge, prepare

from test_browser import browser, served  # noqa: F401  (the Chromium fixture)

ROOT = pathlib.Path(__file__).resolve().parent.parent

# U+FFFE is PDFium's mark for a hyphen at a line break, U+00AD a soft hyphen, U+200B a
# zero-width space (not folded: it separates words).
ENGLISH = ("Rules for DER manip\ufffeulation of <b>structures</b>.\n"
           "Soft\u00adware is free; zero\u200bwidth stays two words.\n")
PERSIAN = "اعلامیه جهانی حقو\ufffeق بشر و آزادی\u200cهای اساسی\n"
ARABIC = "لكل إنسان حق التمتع بالحريات، وقد اعتُ\ufffeمد الإعلان\n"


def build(directory: pathlib.Path) -> dict:
    info: dict = {"path": directory / "archive.db"}
    files = {}
    for key, text in (("eng", ENGLISH), ("pes", PERSIAN), ("arb", ARABIC)):
        files[key] = directory / f"{key}.txt"
        files[key].write_text(text, encoding="utf-8")
    with Archive(info["path"]) as archive:
        for key, path in files.items():
            info[key] = archive.ingest([path], by="ana", title=f"{key} sample")[0]["id"]
        archive.add_layer("notes", by="ana")
        archive.add_layer("claims", by="ana")

        def at(doc, word):
            start = archive.text(doc).index(word)
            return {"start": start, "end": start + len(word)}

        def note(doc, body, layer="notes", **span):
            time.sleep(0.002)  # distinct creation times
            return archive.annotate(doc, layer=layer, body=body, by="ana", **span)["id"]

        ids = info["ids"] = {}
        ids["e1"] = note(info["eng"], "hyphenated", **at(info["eng"], "manip\ufffeulation"))
        ids["e2"] = note(info["eng"], "soft", **at(info["eng"], "Soft\u00adware"))
        ids["a"] = note(info["pes"], "the declaration", **at(info["pes"], "اعلامیه"))
        ids["b"] = note(info["pes"], "first reply", reply_to=ids["a"])
        ids["c"] = note(info["pes"], "reply to the reply", reply_to=ids["b"])
        ids["x"] = note(info["pes"], "rights", layer="claims", **at(info["pes"], "بشر"))
        time.sleep(0.002)
        info["before_d"] = __import__("stet").timeutil.iso(__import__("stet").timeutil.now())
        ids["d"] = note(info["pes"], "second reply, on the same span", reply_to=ids["a"],
                        **at(info["pes"], "اعلامیه"))
        ids["p"] = note(info["arb"], "adopted", **at(info["arb"], "اعتُ\ufffeمد"))
        ids["q"] = note(info["arb"], "a reply that outlives its parent", reply_to=ids["p"])
        archive.retract(ids["p"], by="ana", reason="wrong span")
        info["eng_sha"] = archive.document(info["eng"])["sha256"]
    return info


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    info = build(tmp_path_factory.mktemp("site"))
    info["ds"], info["snapshot"] = prepare(info["path"], metadata=ROOT / "metadata.yml")
    return info


@pytest.fixture(scope="module")
def get(site):
    loop = asyncio.new_event_loop()
    yield lambda url: loop.run_until_complete(site["ds"].client.get(url))
    loop.close()


def search_html(get, q):
    response = get("/-/search?q=" + quote(q))
    assert response.status_code == 200
    return response.text


def contexts(html):
    return re.findall(r'<div class="context" dir="auto">(.*?)</div>', html, re.S)


# -- 1. words broken across lines --------------------------------------------------------------

def test_fold_removes_breaks_inside_words_and_keeps_separators():
    assert fold("manip\ufffeulation") == "manipulation"
    assert fold("Soft\u00adware") == "Software"
    assert fold("اعتُ\ufffeمد") == "اعتمد"
    assert fold("zero\u200bwidth") == "zero\u200bwidth"  # ZWSP separates words: kept
    assert fold("آزادی\u200cهای") == "آزادی\u200cهای"      # ZWNJ too, as before


@pytest.mark.parametrize("q, doc, marked", [
    ("manipulation", "eng", "manip\ufffeulation"),
    ("software", "eng", "Soft\u00adware"),
    ("حقوق", "pes", "حقو\ufffeق"),
    ("اعتمد", "arb", "اعتُ\ufffeمد"),       # typed without the damma, broken in the text
    ("اعتُمد", "arb", "اعتُ\ufffeمد"),      # typed with it
])
def test_a_word_broken_across_lines_is_found_and_highlighted(site, get, q, doc, marked):
    html = search_html(get, q)
    assert "Documents: 1" in html
    assert f'href="/-/documents/{site[doc]}"' in html
    [context] = contexts(html)
    assert context.count("<mark>") == 1 and f"<mark>{marked}</mark>" in context
    # the table's own search (Datasette's ?_search=) takes the query as typed: folded here
    table = get("/archive/documents.json?_shape=array&_search=" + quote(fold(q))).json()
    assert [r["id"] for r in table] == [site[doc]]


def test_only_the_index_is_folded(site, get):
    with Archive(site["path"]) as archive:
        assert archive.text(site["eng"]) == ENGLISH
        assert archive.text(site["arb"]) == ARABIC
    assert "manip\ufffeulation" in get(f"/-/documents/{site['eng']}").text
    [row] = get("/archive.json?_shape=array&sql=" + quote(
        "select rowid from documents_fts where documents_fts match 'manipulation'")).json()
    assert row["rowid"] == site["eng"]


def test_zero_width_space_and_zwnj_still_separate_words(site, get):
    assert "Documents: 1" in search_html(get, "zero")
    assert "Documents: 0" in search_html(get, "zerowidth")
    html = search_html(get, "آزادی\u200cهای")  # Persian words joined by a ZWNJ, as today
    assert "Documents: 1" in html
    assert "<mark>آزادی</mark>\u200c<mark>های</mark>" in contexts(html)[0]


def test_snippets_are_escaped_around_the_marks(site, get):
    [context] = contexts(search_html(get, "structures"))
    assert context == ("Rules for DER manip\ufffeulation of &lt;b&gt;<mark>structures</mark>"
                       "&lt;/b&gt;.\nSoft\u00adware is free; zero\u200bwidth stays two words.\n")
    html = search_html(get, "reply")
    assert html.count("<mark>reply</mark>") == 5  # once in b, d and q, twice in c
    html = search_html(get, "<b>")
    assert "<b>" not in html.split("<h1>")[1]


def test_highlight_matches_whole_words_in_any_case_and_any_diacritics():
    assert highlight.highlight("Résumé, RESUME; resumed", "resume") == \
        "<mark>Résumé</mark>, <mark>RESUME</mark>; resumed"
    assert highlight.highlight("قال: اعتُمد، اعتمدوا", "اعتمد") == "قال: <mark>اعتُمد</mark>، اعتمدوا"
    assert highlight.highlight("a <i>", "zzz") == "a &lt;i&gt;"
    text = "x " * 100 + "DER manip\ufffeulation." + " y" * 200
    got = highlight.snippet(text, "manipulation")
    assert got.startswith("… x x") and got.endswith(" …") and "manip\ufffeulation." in got
    assert len(got) < 260


# -- 2. neutral packaged metadata; the demo's over it ---------------------------------------------

def test_packaged_metadata_is_neutral_and_the_demo_overrides_only_what_differs(tmp_path, monkeypatch):
    packaged = yaml.safe_load((ROOT / "stet" / "metadata.yml").read_text(encoding="utf-8"))
    demo = yaml.safe_load((ROOT / "metadata.yml").read_text(encoding="utf-8"))
    assert packaged["title"] == "stet archive"
    for word in ("human-rights", "human rights", "Persian", "Arabic", "press releases"):
        assert word not in yaml.safe_dump(packaged, allow_unicode=True), word
    assert set(demo) == {"title", "description_html"}
    assert "human-rights documentation" in demo["description_html"]
    merged = load_metadata(ROOT / "metadata.yml")
    assert merged == {**packaged, **demo}
    monkeypatch.chdir(tmp_path)
    assert load_metadata() == packaged


def test_merge_lays_mappings_over_each_other_and_null_removes():
    base = {"title": "a", "databases": {"archive": {"tables": {"t": {"description": "T",
                                                                   "columns": {"x": "X"}}},
                                                    "queries": {"q": {"sql": "select 1"}}}}}
    over = {"databases": {"archive": {"tables": {"t": {"columns": {"y": "Y"}}}, "queries": None}}}
    assert merge(base, over) == {"title": "a", "databases": {"archive": {"tables": {
        "t": {"description": "T", "columns": {"x": "X", "y": "Y"}}}}}}
    assert base["databases"]["archive"]["queries"]  # the base is left as it was


def test_the_index_page_says_what_the_archive_holds(site, get, tmp_path, monkeypatch):
    html = get("/").text
    assert "human-rights documentation" in html  # the demo's description, with the demo here
    holds = ('<p class="stet-holdings">This archive holds 3 documents and 8 annotations in '
             '2 layers.</p>')
    assert holds in html
    monkeypatch.chdir(tmp_path)  # no ./metadata.yml: the packaged copy
    neutral = make_datasette(site["snapshot"])
    loop = asyncio.new_event_loop()
    page = loop.run_until_complete(neutral.client.get("/")).text
    loop.close()
    assert "<title>stet archive: archive</title>" in page
    assert "human-rights" not in page and holds in page


# -- 6. replies read as threads -----------------------------------------------------------------

class Threads(HTMLParser):
    """The annotation ids of ``#annotation-list`` as a tree: ``[(id, [children...]), ...]``."""

    def __init__(self):
        super().__init__()
        self.root: list = []
        self.stack: list = []  # (tag, children list or None)
        self.inside = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id") == "annotation-list":
            self.inside = True
            self.stack = [("ol", self.root)]
            return
        if not self.inside:
            return
        if tag == "li":
            node = (int(attrs["id"].removeprefix("annotation-")), [])
            self.stack[-1][1].append(node)
            self.stack.append(("li", node[1]))
        elif tag == "ol":
            assert attrs.get("class") == "replies"
            self.stack.append(("ol", self.stack[-1][1]))

    def handle_endtag(self, tag):
        if self.inside and tag in ("li", "ol"):
            self.stack.pop()
            if not self.stack:
                self.inside = False


def threads(html):
    parser = Threads()
    parser.feed(html)
    return parser.root


def test_replies_nest_under_their_parent_in_time_order(site, get):
    i = site["ids"]
    html = get(f"/-/documents/{site['pes']}").text
    assert threads(html) == [(i["a"], [(i["b"], [(i["c"], [])]), (i["d"], [])]), (i["x"], [])]
    assert "<h2>5 annotations</h2>" in html
    before = get(f"/-/documents/{site['pes']}?at=" + quote(site["before_d"])).text
    assert threads(before) == [(i["a"], [(i["b"], [(i["c"], [])])]), (i["x"], [])]


def test_a_reply_whose_parent_is_retracted_stands_alone(site, get):
    html = get(f"/-/documents/{site['arb']}").text
    assert threads(html) == [(site["ids"]["q"], [])]
    assert f"reply to {site['ids']['p']}" in html
    assert "<h2>1 annotation</h2>" in html


def test_a_thread_deeper_than_the_recursion_limit():
    from stet.datasette_plugin.views import threads as walk

    chain = [{"id": n, "reply_to": n - 1 if n > 1 else None, "created": f"{n:06d}"}
             for n in range(1, 5001)]
    steps = list(walk(chain))
    assert [s[1]["id"] for s in steps[:3]] == [1, 2, 3] and len(steps) == 10000
    assert steps[4999][0] == "open" and steps[5000] == ("close", chain[-1], False)


# -- 7. pages a user reads -----------------------------------------------------------------------

def test_annotation_count_reads_as_a_number_of_annotations(site, get):
    html = get(f"/-/documents/{site['eng']}").text
    assert "<h2>2 annotations</h2>" in html and "All 2" not in html


def test_the_documents_table_shows_a_short_hash(site, get):
    sha = site["eng_sha"]
    cell = (f'<code class="stet-sha256" title="{sha}">{sha[:12]}'
            f'<span class="stet-sha256-rest">{sha[12:]}</span></code>')
    assert f'<a href="/archive/blobs/{sha}">{cell}</a>' in get("/archive/documents").text
    assert cell in get(f"/archive/documents/{site['eng']}").text
    assert "stet.css" in get("/archive/documents").text
    rows = get("/archive/documents.json?_shape=array").json()
    assert {r["id"]: r["sha256"] for r in rows}[site["eng"]] == sha


def test_document_ids_in_query_results_link_to_their_pages(site, get):
    i = site["ids"]
    html = get(f"/archive/annotation_history?annotation={i['a']}").text
    assert f'<a class="stet-document" href="/-/documents/{site["pes"]}">{site["pes"]}</a>' in html
    html = get("/archive/archive_at?at=2100-01-01").text
    for doc in ("eng", "pes", "arb"):
        assert f'<a class="stet-document" href="/-/documents/{site[doc]}">{site[doc]}</a>' in html
    rows = get("/archive/archive_at.json?_shape=array&at=2100-01-01").json()
    assert {r["document"] for r in rows} == {site["eng"], site["pes"], site["arb"]}


# -- in a browser ---------------------------------------------------------------------------------

@pytest.mark.browser
def test_threads_hashes_and_marks_in_chromium(browser, site):
    with served(site["ds"].app()) as base:
        _threads_hashes_and_marks(browser, site, base)


def _threads_hashes_and_marks(browser, site, base):
    i = site["ids"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        # hovering the parent's passage shows its thread once, replies under it
        page.goto(f"{base}/-/documents/{site['pes']}")
        page.hover(f'#document-text mark[data-annotation-ids="{i["a"]} {i["d"]}"]')
        shown = page.eval_on_selector_all(
            "#annotation-details li",
            "els => els.map(el => [el.querySelector(':scope > span').textContent, "
            "el.parentElement.closest('li') ? el.parentElement.closest('li')"
            ".querySelector(':scope > span').textContent : null])")
        assert shown == [["the declaration", None], ["first reply", "the declaration"],
                         ["reply to the reply", "first reply"],
                         ["second reply, on the same span", "the declaration"]]
        assert page.locator("#annotation-details [id]").count() == 0
        # a table shows 12 hex digits and an ellipsis, the whole hash on hover; a row page all
        sha = site["eng_sha"]
        page.goto(f"{base}/archive/documents")
        cell = page.locator(f'code.stet-sha256[title="{sha}"]')
        assert cell.inner_text() == sha[:12] and cell.get_attribute("title") == sha
        assert page.evaluate("() => getComputedStyle(document.querySelector("
                             "'code.stet-sha256'), '::after').content") == '"…"'
        page.goto(f"{base}/archive/documents/{site['eng']}")
        assert page.locator(f'code.stet-sha256[title="{sha}"]').inner_text() == sha
        # search results: the matching word marked, visibly
        page.goto(f"{base}/-/search?q=manipulation")
        mark = page.locator(".stet-results .context mark")
        assert mark.count() == 1 and mark.inner_text().replace("\ufffe", "") == "manipulation"
        assert mark.evaluate("el => getComputedStyle(el).backgroundColor") != "rgba(0, 0, 0, 0)"
    finally:
        page.close()
