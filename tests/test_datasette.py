"""The published archive in Datasette: routes, metadata, search, canned queries, safety.

Every request goes through ``datasette.client`` against the public snapshot that ``stet
serve`` builds, with the stet plugin loaded from its entry point.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import pathlib
import time
from html.parser import HTMLParser
from urllib.parse import quote

import pytest

from stet import Archive, timeutil
from stet.snapshots import ensure_snapshot
from stet.serve import load_metadata, make_datasette, prepare

ROOT = pathlib.Path(__file__).resolve().parent.parent
SECRET_TEXT = "Zebulon Quartermaine testified in the closed session at Ashgrove."
SECRET_BODY = "informant Marwick-Oyelaran"
SECRET_LAYER = "witness-identities-xq"
PUBLIC_TABLES = ("documents", "annotations", "annotation_revisions", "annotation_anchoring",
                 "layers", "events")


def build_sample(directory: pathlib.Path) -> dict:
    """An archive of the sample documents with layers, revisions, a retraction, hostile
    strings, an emoji document and a restricted document with its own annotation."""
    path = directory / "archive.db"
    info: dict = {"path": path}
    with Archive(path) as archive:
        archive.ingest([ROOT / "ingest" / "press"], by="ana", source="press office")
        archive.ingest([ROOT / "ingest" / "udhr"], by="ana", source="https://www.unicode.org/udhr/")
        docs = {d["filename"]: d["id"] for d in archive.documents()}
        info["docs"] = docs
        pes, arb, eng = docs["udhr_pes_1.txt"], docs["udhr_arb.txt"], docs["udhr_eng.txt"]
        info.update(pes=pes, arb=arb, eng=eng)
        text = archive.text(pes)
        info["pes_text"] = text

        def at(word, after=0):
            start = text.index(word, after)
            return start, start + len(word)

        archive.add_layer("entities", by="ana", description="People, places, bodies", colour="#ffd54f")
        archive.add_layer("claims", by="ana", colour="#81d4fa")
        archive.add_layer("<b>bold</b> layer", by="ana")
        title_start, title_end = at("اعلامیه جهانی حقوق بشر")
        s, e = at("حقوق بشر", title_end)  # a later occurrence: a claims-only mark
        zwnj_s, zwnj_e = at("وحشیانه\u200cای")
        anns = {}
        anns["title"] = archive.annotate(pes, layer="entities", body="عنوان اعلامیه", by="ana",
                                         start=title_start, end=title_end, tags=["title"])
        anns["rights"] = archive.annotate(pes, layer="claims", body="human rights", by="reza",
                                          start=s, end=e)
        anns["zwnj"] = archive.annotate(pes, layer="claims", body="a word with a ZWNJ", by="reza",
                                        start=zwnj_s, end=zwnj_e)
        anns["script"] = archive.annotate(
            pes, layer="<b>bold</b> layer", body="<script>alert('x')</script>",
            by='<img src=x onerror="alert(1)">', start=zwnj_s, end=zwnj_e + 5)
        time.sleep(0.002)  # distinct instants for ?at= (microseconds are stored)
        info["before_revision"] = timeutil.iso(timeutil.now())
        time.sleep(0.002)
        archive.revise(anns["rights"]["id"], body="human rights (revised)", by="ana")
        anns["retracted"] = archive.annotate(pes, layer="entities", body="soon retracted",
                                             by="ana", start=s, end=s + 5)
        time.sleep(0.002)
        info["before_retraction"] = timeutil.iso(timeutil.now())
        time.sleep(0.002)
        archive.retract(anns["retracted"]["id"], by="ana", reason="wrong span")
        arb_text = archive.text(arb)
        word = "اعتُمد"
        a_s = arb_text.index(word)
        anns["arabic"] = archive.annotate(arb, layer="entities", body="adopted (اعتمد)",
                                          by="ana", start=a_s, end=a_s + len(word))
        info["anns"] = {k: v["id"] for k, v in anns.items()}

        emoji = directory / "emoji.txt"
        emoji.write_text("سلام 👋🏽 دنیا! می\u200cخواهم 🙂 ok\n", encoding="utf-8")
        info["emoji"] = archive.ingest([emoji], by="ana", title='<img src=x onerror="alert(2)">')[0]["id"]
        info["emoji_text"] = archive.text(info["emoji"])
        secret = directory / "secret.txt"
        secret.write_text(SECRET_TEXT + "\n", encoding="utf-8")
        result = archive.ingest([secret], by="ana", restricted=True, title="Closed session")[0]
        info["secret"], info["secret_sha"] = result["id"], result["sha256"]
        archive.annotate(info["secret"], layer=SECRET_LAYER, body=SECRET_BODY, by="ana",
                         quote="Zebulon Quartermaine")
        info["secret_text_sha"] = archive.document(info["secret"])["text_sha256"]
    return info


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    info = build_sample(tmp_path_factory.mktemp("published"))
    ds, snapshot = prepare(info["path"], metadata=ROOT / "metadata.yml")
    info["ds"], info["snapshot"] = ds, snapshot
    return info


@pytest.fixture(scope="module")
def get(sample):
    ds = sample["ds"]
    loop = asyncio.new_event_loop()

    def fetch(url, **kwargs):
        return loop.run_until_complete(ds.client.get(url, **kwargs))

    yield fetch
    loop.close()


class MarkedText(HTMLParser):
    """The text content of #document-text and, per character, the ids of the marks over it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth = 0
        self.text: list[str] = []
        self.cover: list[tuple[str, str]] = []
        self.mark = None
        self.marks: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if self.depth:
            self.depth += 1
            assert tag == "mark", f"unexpected <{tag}> inside #document-text"
            self.mark = attrs
            self.marks.append({**attrs, "text": ""})
        elif attrs.get("id") == "document-text":
            self.depth = 1
            self.container = attrs

    def handle_endtag(self, tag):
        if self.depth:
            self.depth -= 1
            self.mark = None

    def handle_data(self, data):
        if self.depth:
            self.text.append(data)
            ids = self.mark["data-annotation-ids"] if self.mark else ""
            layers = self.mark["data-layers"] if self.mark else ""
            self.cover.extend([(ids, layers)] * len(data))
            if self.mark:
                self.marks[-1]["text"] += data


def parse_page(html: str) -> MarkedText:
    parser = MarkedText()
    parser.feed(html)
    parser.close()
    return parser


def rows(get, url):
    response = get(url)
    assert response.status_code == 200, response.text[:500]
    return response.json()


# -- metadata ---------------------------------------------------------------------------------

@pytest.mark.parametrize("given", [None, ROOT / "metadata.yml"])  # packaged; the demo's over it
def test_metadata_describes_every_public_column(sample, given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./metadata.yml
    meta = load_metadata(given)
    for key in ("title", "license", "source"):
        assert meta[key]
    assert meta["description_html"]
    db = meta["databases"]["archive"]
    import sqlite3

    conn = sqlite3.connect(sample["snapshot"])
    for table in PUBLIC_TABLES:
        config = db["tables"][table]
        assert config["description"], table
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        missing = [c for c in columns if not config["columns"].get(c)]
        assert missing == [], (table, missing)
        assert "hidden" not in config
    assert db["tables"]["annotations"]["facets"][:3] == ["layer", "author", "status"]
    assert "media_type" in db["tables"]["documents"]["facets"]
    for table in ("blobs", "blob_chunks", "texts", "documents_fts", "annotations_fts"):
        assert db["tables"][table]["hidden"] is True
    for name in ("annotations_overlapping", "annotation_history", "document_provenance",
                 "archive_at", "layer_annotations"):
        query = db["queries"][name]
        assert query["title"] and query["description"] and ":" in query["sql"], name


def test_database_page_lists_public_tables_and_hides_internal_ones(get):
    response = get("/archive.json")
    assert response.status_code == 200
    data = response.json()
    visible = {t["name"] for t in data["tables"] if not t["hidden"]}
    assert visible == set(PUBLIC_TABLES)
    html = get("/archive").text
    assert "annotations overlapping a span" in html.lower()
    assert get("/").status_code == 200


def test_settings_suggest_no_facets(get):
    settings = get("/-/settings.json").json()
    assert settings["suggest_facets"] is False
    html = get("/archive/annotations").text
    assert "Suggested facets" not in html


def test_metadata_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_metadata()["title"] == "stet archive"  # the packaged copy
    (tmp_path / "metadata.yml").write_text("title: local\n", encoding="utf-8")
    assert load_metadata()["title"] == "local"
    other = tmp_path / "other.yml"
    other.write_text("title: given\n", encoding="utf-8")
    assert load_metadata(other)["title"] == "given"


def test_serve_refuses_missing_files(run, tmp_path):
    result = CliRunner_invoke(["serve", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: no archive at {tmp_path / 'none.db'} (ingest something first, or give --db)"
    Archive(tmp_path / "a.db").close()
    result = CliRunner_invoke(["serve", "--db", str(tmp_path / "a.db"), "--metadata", "nope.yml"])
    assert result.exit_code == 1
    assert result.output.strip() == "Error: no metadata file nope.yml"


def CliRunner_invoke(args):
    from click.testing import CliRunner
    from stet.cli import cli

    return CliRunner().invoke(cli, args)


# -- the document page ------------------------------------------------------------------------

def test_document_page_text_and_marks(sample, get):
    response = get(f"/-/documents/{sample['pes']}")
    assert response.status_code == 200
    page = parse_page(response.text)
    assert "".join(page.text) == sample["pes_text"]
    assert page.container["dir"] == "rtl"
    with Archive(sample["path"]) as archive:
        current = list(archive.annotations(sample["pes"]))
    expected = [set() for _ in sample["pes_text"]]
    layer_of = {}
    for a in current:
        layer_of[a["id"]] = a["layer"]
        for i in range(a["start"], a["end"]):
            expected[i].add(a["id"])
    assert sample["anns"]["retracted"] not in layer_of
    for i, (ids, _layers) in enumerate(page.cover):
        got = {int(x) for x in ids.split()}
        assert got == expected[i], i
    with Archive(sample["path"]) as archive:
        names = {layer["id"]: layer["name"] for layer in archive.layers()}
    for mark in page.marks:
        ids = [int(x) for x in mark["data-annotation-ids"].split()]
        assert ids == sorted(ids)
        layers = {int(x) for x in mark["data-layers"].split()}
        assert {names[layer] for layer in layers} == {layer_of[i] for i in ids}
        assert mark["tabindex"] == "0"
    # overlapping annotations are split into segments carrying the full set
    assert any(len(m["data-annotation-ids"].split()) > 1 for m in page.marks)
    html = response.text
    assert f"/archive/annotation_history?annotation={sample['anns']['title']}" in html
    assert 'id="layer-panel"' in html and 'id="annotation-details"' in html
    assert "stet.js" in html and "stet.css" in html


def test_document_page_reads_the_database_in_one_visit(sample, get, monkeypatch):
    """Each ``db.execute`` is a round trip through the database's thread; the page's own
    reads (document, history, annotations, versions, anchoring, layers) are one."""
    from datasette.database import Database

    visits, statements = [], []
    execute, execute_fn = Database.execute, Database.execute_fn

    async def counted_execute(self, sql, *args, **kwargs):
        statements.append(sql)
        return await execute(self, sql, *args, **kwargs)

    async def counted_execute_fn(self, fn):
        visits.append(fn)
        return await execute_fn(self, fn)

    get("/")  # (Datasette's start-up reads)
    monkeypatch.setattr(Database, "execute", counted_execute)
    monkeypatch.setattr(Database, "execute_fn", counted_execute_fn)
    page = get(f"/-/documents/{sample['pes']}?at=2999-01-01T00:00:00Z")  # (not a kept page)
    assert page.status_code == 200 and 'id="document-text"' in page.text
    # (db.execute visits through execute_fn: those are the statements)
    assert len(visits) - len(statements) == 1
    assert all("sqlite_master" in sql for sql in statements), statements  # Datasette's own


def test_document_page_provenance(sample, get):
    html = get(f"/-/documents/{sample['pes']}").text
    with Archive(sample["path"]) as archive:
        doc = archive.document(sample["pes"])
    for value in (doc["sha256"], "https://www.unicode.org/udhr/", "ana", doc["ingested_at"],
                  doc["media_type"], f"/-/documents/{sample['pes']}/raw",
                  f"/archive/document_provenance?document={sample['pes']}"):
        assert value in html, value


def test_english_is_left_to_right(sample, get):
    page = parse_page(get(f"/-/documents/{sample['eng']}").text)
    assert page.container["dir"] == "ltr"
    assert page.marks == []


def test_every_user_string_is_escaped(sample, get):
    html = get(f"/-/documents/{sample['pes']}").text
    assert "<script>alert('x')</script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert '<img src=x onerror="alert(1)">' not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in html
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; layer" in html
    emoji = get(f"/-/documents/{sample['emoji']}").text
    assert '<img src=x onerror="alert(2)">' not in emoji
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in emoji  # Jinja's escaping
    table = get("/archive/documents").text
    assert '<img src=x onerror="alert(2)">' not in table
    search = get("/-/search?q=" + quote('"><script>alert(3)</script>')).text
    assert "<script>alert(3)" not in search


def test_document_page_at_a_past_instant(sample, get):
    url = f"/-/documents/{sample['pes']}"
    rights = sample["anns"]["rights"]
    now = get(url).text
    assert "human rights (revised)" in now
    before = get(url + "?at=" + quote(sample["before_revision"])).text
    assert "human rights (revised)" not in before and "human rights" in before
    assert "Showing the annotations current at" in before
    retracted = sample["anns"]["retracted"]
    then = parse_page(get(url + "?at=" + quote(sample["before_retraction"])).text)
    assert any(str(retracted) in m["data-annotation-ids"].split() for m in then.marks)
    assert not any(str(retracted) in m["data-annotation-ids"].split()
                   for m in parse_page(now).marks)
    assert str(rights) in " ".join(m["data-annotation-ids"] for m in then.marks)
    early = parse_page(get(url + "?at=2000-01-01").text)
    assert early.marks == [] and "".join(early.text) == sample["pes_text"]
    bad = get(url + "?at=" + quote("<not a time>"))
    assert bad.status_code == 400
    assert "<not a time>" not in bad.text and "not an ISO 8601 time" in bad.text


def test_restricted_and_missing_documents_are_404(sample, get):
    assert get(f"/-/documents/{sample['secret']}").status_code == 404
    assert get(f"/-/documents/{sample['secret']}/raw").status_code == 404
    assert get("/-/documents/99999").status_code == 404
    assert get(f"/archive/documents/{sample['secret']}").status_code == 404
    assert get("/-/documents/abc").status_code == 404


def test_raw_bytes(sample, get):
    response = get(f"/-/documents/{sample['docs']['udhr_pes_1.html']}/raw")
    assert response.status_code == 200
    assert response.content == (ROOT / "ingest" / "udhr" / "udhr_pes_1.html").read_bytes()
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


def test_row_pages_link_to_the_document_page(sample, get):
    doc = sample["pes"]
    assert f'href="/-/documents/{doc}"' in get(f"/archive/documents/{doc}").text
    assert f'href="/-/documents/{doc}"' in get("/archive/documents").text
    ann = sample["anns"]["title"]
    row = get(f"/archive/annotations/{ann}").text
    assert f'href="/-/documents/{doc}#annotation-{ann}"' in row
    assert f'href="/-/documents/{doc}#annotation-{ann}"' in get("/archive/annotations").text


# -- search -----------------------------------------------------------------------------------

@pytest.mark.parametrize("word, doc_key", [
    ("Declaration", "eng"),
    ("وحشیانه\u200cای", "pes"),   # Persian, with a ZWNJ
    ("شناسائی", "pes"),
    ("اعتمد", "arb"),              # Arabic, typed without the damma the text has
    ("الإنسان", "arb"),
])
def test_table_search_in_three_scripts(sample, get, word, doc_key):
    data = rows(get, "/archive/documents.json?_shape=array&_search=" + quote(word))
    ids = {r["id"] for r in data}
    assert sample[doc_key] in ids


def test_search_page_and_annotation_search(sample, get):
    data = rows(get, "/archive/annotations.json?_shape=array&_search=" + quote("revised"))
    assert [r["id"] for r in data] == [sample["anns"]["rights"]]
    html = get("/-/search?q=" + quote("اعتُمد")).text  # with the damma: folded like the index
    assert f'href="/-/documents/{sample["arb"]}"' in html
    assert f'href="/-/documents/{sample["arb"]}#annotation-{sample["anns"]["arabic"]}"' in html
    html = get("/-/search?q=" + quote("عنوان")).text
    assert f"#annotation-{sample['anns']['title']}" in html
    assert "Documents: 0" in get("/-/search?q=zzzqqq").text


def test_search_finds_no_retracted_note(sample, get):
    """A retracted annotation stays in the snapshot as history, but is no longer a match."""
    html = get("/-/search?q=" + quote('"soon retracted"')).text
    assert "Annotations: 0" in html
    assert f"#annotation-{sample['anns']['retracted']}" not in html


def test_search_finds_nothing_restricted(get):
    for words in ("Quartermaine", "Ashgrove", "Marwick", "Zebulon"):
        assert rows(get, "/archive/documents.json?_shape=array&_search=" + words) == []
        assert rows(get, "/archive/annotations.json?_shape=array&_search=" + words) == []
        html = get("/-/search?q=" + words).text
        assert "Documents: 0" in html and "Annotations: 0" in html


# -- canned queries ---------------------------------------------------------------------------

def test_canned_queries(sample, get):
    a = sample["anns"]
    with Archive(sample["path"]) as archive:
        title = archive.annotation(a["title"])
    end = title["end"]
    overlap = rows(get, f"/archive/annotations_overlapping.json?_shape=array&document={sample['pes']}"
                        f"&start={end - 1}&end={end}")
    assert [r["id"] for r in overlap] == [a["title"]]
    with Archive(sample["path"]) as archive:
        rights = archive.annotation(a["rights"])
    overlap = rows(get, f"/archive/annotations_overlapping.json?_shape=array&document={sample['pes']}"
                        f"&start={rights['start'] - 10}&end={rights['start'] + 1}")
    ids = {r["id"] for r in overlap}
    assert a["rights"] in ids and a["retracted"] not in ids and a["title"] not in ids
    none = rows(get, f"/archive/annotations_overlapping.json?_shape=array&document={sample['pes']}"
                     f"&start={end}&end={end + 1}")
    assert a["title"] not in {r["id"] for r in none}  # end is exclusive
    history = rows(get, f"/archive/annotation_history.json?_shape=array&annotation={a['rights']}")
    assert [(r["revision"], r["body"]) for r in history] == [(1, "human rights"),
                                                              (2, "human rights (revised)")]
    provenance = rows(get, f"/archive/document_provenance.json?_shape=array&document={sample['pes']}")
    seqs = [r["seq"] for r in provenance]
    assert seqs == sorted(seqs) and provenance[0]["action"] == "ingest"
    assert {"annotate", "revise", "retract"} <= {r["action"] for r in provenance}
    at = rows(get, "/archive/archive_at.json?_shape=array&at=" + quote(sample["before_retraction"]))
    by_id = {r["id"]: r for r in at}
    assert a["retracted"] in by_id and by_id[a["rights"]]["body"] == "human rights (revised)"
    at = rows(get, "/archive/archive_at.json?_shape=array&at=" + quote(sample["before_revision"]))
    by_id = {r["id"]: r for r in at}
    assert by_id[a["rights"]]["body"] == "human rights" and a["retracted"] not in by_id
    # instants, not strings: the same moment in another zone
    moment = timeutil.parse(sample["before_revision"])
    tehran = moment.astimezone(__import__("datetime").timezone(
        __import__("datetime").timedelta(hours=3, minutes=30))).isoformat()
    assert rows(get, "/archive/archive_at.json?_shape=array&at=" + quote(tehran)) == at
    layer = rows(get, "/archive/layer_annotations.json?_shape=array&layer=claims")
    assert {r["id"] for r in layer} == {a["rights"], a["zwnj"]}
    assert all(r["exact"] and r["prefix"] is not None for r in layer)


# -- read-only and restricted -----------------------------------------------------------------

def test_sql_cannot_write(sample, get):
    before = hashlib.sha256(pathlib.Path(sample["snapshot"]).read_bytes()).hexdigest()
    count = rows(get, "/archive.json?_shape=array&sql=" + quote("select count(*) as n from documents"))
    for sql in ("insert into layers (name, created_by, created) values ('x', 'x', 'x')",
                "update documents set title = 'changed'",
                "delete from annotations",
                "drop table annotations",
                "select 1; delete from annotations",
                "pragma writable_schema = 1",
                "attach database 'other.db' as other"):
        response = get("/archive.json?sql=" + quote(sql))
        assert response.status_code >= 400, sql
    assert rows(get, "/archive.json?_shape=array&sql=" + quote("select count(*) as n from documents")) == count
    after = hashlib.sha256(pathlib.Path(sample["snapshot"]).read_bytes()).hexdigest()
    assert before == after


def test_no_url_reveals_restricted_material(sample, get):
    secrets = [SECRET_TEXT[:20], "Quartermaine", SECRET_BODY, SECRET_LAYER, sample["secret_sha"],
               sample["secret_text_sha"], "Closed session"]
    names = rows(get, "/archive.json?_shape=array&sql=" + quote(
        "select name from sqlite_master where type in ('table', 'view') order by name"))
    assert len(names) > 10
    for row in names:
        name = row["name"]
        sql = f'select * from "{name}"'
        response = get("/archive.json?_shape=array&_size=max&sql=" + quote(sql))
        assert response.status_code == 200, (name, response.text[:300])
        body = response.text
        for secret in secrets:
            assert secret not in body, (name, secret)
    pages = ["/archive/documents.json", "/archive/annotations.json", "/archive/events.json",
             "/archive/layers.json", "/archive/annotation_revisions.json", "/-/search?q=Zebulon",
             "/archive", "/"]
    for url in pages:
        body = get(url).text
        for secret in secrets:
            assert secret not in body, (url, secret)
    download = get("/archive.db")
    assert download.status_code == 200
    for secret in secrets:
        assert secret.encode("utf-8") not in download.content


def test_snapshot_is_reused_until_the_archive_changes(sample, tmp_path):
    info = build_small(tmp_path)
    first = ensure_snapshot(info)
    stamp = os.stat(first).st_mtime_ns, os.stat(first).st_ino
    again = ensure_snapshot(info)
    assert (os.stat(again).st_mtime_ns, os.stat(again).st_ino) == stamp
    with Archive(info) as archive:
        archive.add_layer("new", by="ana")
    third = ensure_snapshot(info)
    assert (os.stat(third).st_mtime_ns, os.stat(third).st_ino) != stamp
    import sqlite3

    assert sqlite3.connect(third).execute("select name from layers").fetchall() == [("new",)]


def build_small(directory):
    path = directory / "small.db"
    doc = directory / "a.txt"
    doc.write_text("hello world\n", encoding="utf-8")
    with Archive(path) as archive:
        archive.ingest([doc], by="ana")
    return path


def test_make_datasette_names_the_database_archive(sample):
    ds = make_datasette(sample["snapshot"], metadata={})
    assert [n for n in ds.databases if n != "_internal"] == ["archive"]
    assert ds.databases["archive"].is_mutable is False


def test_the_canned_query_of_the_past_uses_the_one_at_instant_builder():
    """'The archive as it was at a time' is the same SQL as stet annotations --at and the
    document page's ?at=: stet.annotations.schema.state_at, copied into the YAML (which
    cannot call Python) and held to it here."""
    from stet.annotations.schema import state_at

    queries = load_metadata(ROOT / "stet" / "metadata.yml")["databases"]["archive"]["queries"]
    assert state_at("stet_micros(:at)") in queries["archive_at"]["sql"]
