"""Document versions in the archive (stet.annotations.versions): a newer version gets every
active annotation of the older one, placed exact, fuzzy or orphaned, in three scripts; the
record (anchoring rows, one reanchor event) holds up under verify, publishing, the W3C export
and the document page; carrying again carries only what is new; nothing is ever dropped.
Where each passage lands is tested on its own in tests/test_reanchoring.py."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import subprocess
import sys

import pytest
import sqlite_utils

from stet import Archive, store
from stet.annotations import versions as versions_module
from stet.errors import InvalidInput
from stet.serve import make_datasette

ENGLISH_V1 = (
    "The committee met in Geneva on Monday.\n\n"
    "It heard three witnesses about the detention centre.\n\n"
    "The secretariat will publish the minutes next week.\n")
ENGLISH_V2 = (
    "Preface added by the editor.\n\n"
    "The committee met in Geneva on Monday.\n\n"
    "It heard three witneses about the detention center.\n\n"
    "Closing remarks.\n")
PERSIAN_V1 = "ما می خواهم که این متن را بخوانیم و درباره حقوق بشر بنویسیم.\n"
PERSIAN_V2 = "ما می\u200cخواهم که این متن را بخوانیم و درباره حقوق بشر بنویسیم.\n"
ARABIC_V1 = "وَلَمَّا كَانَ الاعْتِرَافُ بِالكَرَامَةِ المُتَأَصِّلَةِ فِي جَمِيعِ أَعْضَاءِ الأُسْرَةِ البَشَرِيَّةِ.\n"
ARABIC_V2 = "ولما كان الاعتراف بالكرامة المتأصلة في جميع أعضاء الأسرة البشرية.\n"


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def english(tmp_path):
    """Version 1 with: an annotation on an unchanged sentence, a reply to it, one on a
    sentence whose words were changed, one on a paragraph the new version deletes, and a
    retracted one; then version 2 ingested with --supersedes."""
    archive = Archive(tmp_path / "archive.db")
    old = archive.ingest([write(tmp_path, "v1.txt", ENGLISH_V1)], by="leila")[0]["id"]
    spans = {}
    for key, quote in (("same", "The committee met in Geneva"),
                       ("changed", "three witnesses about the detention centre"),
                       ("gone", "publish the minutes next week"), ("retracted", "Monday")):
        spans[key] = archive.annotate(old, layer="notes", quote=quote, body=f"on {key}",
                                      tags=[key], by="ana")["id"]
    spans["reply"] = archive.annotate(None, layer=None, reply_to=spans["same"], body="agreed",
                                      by="bo")["id"]
    archive.retract(spans["retracted"], by="ana", reason="wrong")
    before = {a["id"]: a for a in archive.annotations(old)}
    [result] = archive.ingest([write(tmp_path, "v2.txt", ENGLISH_V2)], by="omid", supersedes=old)
    yield {"archive": archive, "old": old, "new": result["id"], "result": result,
           "spans": spans, "before": before, "path": tmp_path / "archive.db"}
    archive.close()


def by_origin(archive, document):
    return {a["carried_from"]: a for a in archive.annotations(document)}


def test_every_active_annotation_is_carried_and_placed(english):
    archive, old, new, spans = (english[k] for k in ("archive", "old", "new", "spans"))
    carried = english["result"]["carried"]
    assert (carried["exact"], carried["fuzzy"], carried["orphaned"]) == (2, 1, 1)
    assert carried["carried"] == 4 and carried["from"] == old and carried["to"] == new
    placed = by_origin(archive, new)
    assert set(placed) == {spans[k] for k in ("same", "changed", "gone", "reply")}
    same = placed[spans["same"]]
    assert (same["anchoring"], same["score"]) == ("exact", 1.0)
    assert ENGLISH_V2[same["start"]:same["end"]] == "The committee met in Geneva" == same["exact"]
    changed = placed[spans["changed"]]
    assert changed["anchoring"] == "fuzzy" and 0 < changed["score"] < 1
    assert changed["exact"] == ENGLISH_V2[changed["start"]:changed["end"]]
    assert "witneses about the detention center" in changed["exact"]
    gone = placed[spans["gone"]]
    assert gone["anchoring"] == "orphaned" and gone["start"] is None and gone["exact"] is None
    reply = placed[spans["reply"]]
    assert reply["reply_to"] == same["id"] and reply["anchoring"] == "exact"
    # body, tags, layer, creator, author and times are the original's
    for key in ("same", "changed", "gone"):
        origin, copy = english["before"][spans[key]], placed[spans[key]]
        for field in ("body", "tags", "layer", "motivation", "creator", "author", "created",
                      "modified"):
            assert copy[field] == origin[field], (key, field)
        assert copy["uuid"] != origin["uuid"] and copy["document"] == new
    assert spans["retracted"] not in placed


def test_the_older_version_stays_as_it_was_and_verify_holds_it_all(english):
    archive, old = english["archive"], english["old"]
    assert {a["id"]: a for a in archive.annotations(old)} == english["before"]
    event = list(archive.log())[-1]
    assert (event["action"], event["actor"], event["document"]) == ("reanchor", "omid",
                                                                     english["new"])
    details = event["details"]
    assert (details["from"], details["exact"], details["fuzzy"], details["orphaned"]) == (old, 2, 1, 1)
    assert details["rows"]["count"] == 4 and details["anchoring"]["count"] == 4
    assert archive.verify() == []


def test_the_orphan_listing_and_versions(english, run):
    new, old = english["new"], english["old"]
    db = str(english["path"])
    orphans = json.loads(run("annotations", new, "--anchoring", "orphaned", "--json", db=db).output)
    assert [a["carried_from"] for a in orphans] == [english["spans"]["gone"]]
    fuzzy = json.loads(run("annotations", new, "--anchoring", "fuzzy", "--json", db=db).output)
    assert [a["carried_from"] for a in fuzzy] == [english["spans"]["changed"]]
    table = run("annotations", new, db=db).output
    assert "orphaned" in table and "fuzzy 0." in table
    for member in (old, new):
        listed = json.loads(run("versions", member, "--json", db=db).output)
        assert [v["id"] for v in listed] == [old, new]
        assert listed[1]["supersedes"] == old and listed[1]["carried"] == 4


def test_carrying_again_carries_only_what_is_new_and_retries_orphans(english, run):
    archive, old, new = english["archive"], english["old"], english["new"]
    events = len(list(archive.log()))
    nothing = archive.reanchor(new, by="omid")
    assert nothing["event"] is None and nothing["carried"] == 0
    assert len(list(archive.log())) == events  # nothing to do: nothing written
    later = archive.annotate(old, layer="notes", quote="Geneva", body="later", by="ana")
    again = archive.reanchor(new, by="omid")
    assert (again["carried"], again["exact"], again["placed_again"]) == (1, 1, 0)
    assert by_origin(archive, new)[later["id"]]["anchoring"] == "exact"
    # a third version: all five carried again, the orphan staying one (it has no passage in
    # the version it is carried from)
    db = str(english["path"])
    out = run("ingest", write(english["path"].parent, "v3.txt", ENGLISH_V2 + "Signed.\n"),
              "--supersedes", new, "--by", "omid", db=db)
    assert out.exit_code == 0, out.output
    assert f"carried 5 annotations from document {new} to document" in out.output
    assert "1 orphaned" in out.output and "--anchoring orphaned" in out.output
    third = max(v["id"] for v in archive.versions(new))
    assert [v["id"] for v in archive.versions(third)] == [old, new, third]
    assert archive.verify() == []


def test_an_orphan_is_placed_again_when_the_threshold_allows(tmp_path):
    with Archive(tmp_path / "a.db") as archive:
        old = archive.ingest([write(tmp_path, "a.txt", "alpha beta gamma delta\n")], by="x")[0]["id"]
        ann = archive.annotate(old, layer="l", quote="beta gamma", body="b", by="ana")["id"]
        new = archive.ingest([write(tmp_path, "b.txt", "alpha bxta gxmma delta\n")], by="x",
                             supersedes=old, threshold=0.99)[0]
        assert new["carried"]["orphaned"] == 1
        copy = by_origin(archive, new["id"])[ann]
        assert copy["start"] is None
        again = archive.reanchor(new["id"], threshold=0.3, by="omid")
        assert again["placed_again"] == 1 and again["fuzzy"] == 1
        placed = archive.annotation(copy["id"])
        assert placed["revision"] == 2 and placed["author"] == "omid"
        assert placed["exact"] == "bxta gxmma" and placed["creator"] == "ana"
        assert by_origin(archive, new["id"])[ann]["anchoring"] == "fuzzy"
        assert archive.verify() == []


@pytest.mark.parametrize("v1,v2,quote,expected", [
    (PERSIAN_V1, PERSIAN_V2, "می خواهم", "می\u200cخواهم"),
    (ARABIC_V1, ARABIC_V2, "الاعْتِرَافُ بِالكَرَامَةِ", "الاعتراف بالكرامة"),
])
def test_other_scripts_keep_their_annotations(tmp_path, v1, v2, quote, expected):
    with Archive(tmp_path / "a.db") as archive:
        old = archive.ingest([write(tmp_path, "v1.txt", v1)], by="x")[0]["id"]
        kept = archive.annotate(old, layer="l", quote="حقوق" if "حقوق" in v1 else "جَمِيعِ",
                                body="kept", by="ana")["id"]
        moved = archive.annotate(old, layer="l", quote=quote, body="moved", by="ana")["id"]
        new = archive.ingest([write(tmp_path, "v2.txt", v2)], by="x", supersedes=old)[0]["id"]
        placed = by_origin(archive, new)
        assert placed[moved]["exact"] == expected
        assert placed[moved]["anchoring"] in ("exact", "fuzzy") and placed[moved]["score"] >= 0.75
        assert placed[kept]["start"] is not None
        assert placed[kept]["exact"] == v2[placed[kept]["start"]:placed[kept]["end"]]
        assert archive.verify() == []


def test_the_database_keeps_a_spanless_annotation_for_replies_and_orphans_only(english):
    conn = sqlite3.connect(english["path"])
    row = list(conn.execute("SELECT * FROM annotation_revisions ORDER BY id LIMIT 1").fetchone())
    columns = [c[1] for c in conn.execute("PRAGMA table_info(annotation_revisions)")]
    values = dict(zip(columns, row))
    values.update(id=None, annotation=999, uuid="x", start=None, end=None, exact=None,
                  prefix=None, suffix=None, reply_to=None)
    with pytest.raises(sqlite3.IntegrityError, match="only a reply, or an orphaned carried"):
        conn.execute(f"INSERT INTO annotation_revisions ({', '.join(map(repr, columns))}) "
                     f"VALUES ({', '.join('?' * len(columns))})", list(values.values()))
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE annotation_anchoring SET score = 1")
    conn.close()


def test_verify_finds_a_changed_anchoring(english):
    path = english["path"]
    english["archive"].close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TRIGGER annotation_anchoring_no_update")
    conn.execute("UPDATE annotation_anchoring SET anchoring = 'exact', score = 1 "
                 "WHERE anchoring = 'fuzzy'")
    conn.commit()
    conn.close()
    with Archive(path, readonly=True, check=False) as archive:
        problems = archive.verify()
    assert any("anchoring rows" in p and "are not the rows it recorded" in p for p in problems)


def test_an_archive_from_before_versions_migrates_whole(tmp_path):
    from stet import ingest as ingest_module
    from stet.annotations import Span, annotate
    from stet.provenance import Chain

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(path)
    store.migrations.apply(db, stop_before="m006_versions")
    db.execute("PRAGMA foreign_keys = ON")
    ingest_module.ingest(db.conn, [str(write(tmp_path, "a.txt", ENGLISH_V1))],
                         ingest_module.Options(by="x"))
    with db.conn:
        chain = Chain(db.conn)
        first = annotate(db.conn, chain, 1, layer="l", by="ana", span=Span(quote="Geneva"))
        annotate(db.conn, chain, None, layer=None, by="bo", reply_to=first["id"], body="yes")
    db.conn.close()
    with Archive(path) as archive:  # migrates
        assert [a["exact"] for a in archive.annotations(1)] == ["Geneva", None]
        assert archive.verify() == []
        assert archive.conn.execute("SELECT count(*) FROM annotation_anchoring").fetchone() == (0,)


def test_publishing_carries_the_links_and_hides_a_restricted_origin(english, tmp_path):
    archive, old, new = english["archive"], english["old"], english["new"]
    out = tmp_path / "site.db"
    archive.publish(out, by="leila")
    with Archive(out, readonly=True) as snapshot:
        assert snapshot.verify() == []
        origins = {a["carried_from"] for a in snapshot.annotations(new)}
        assert english["spans"]["same"] in origins
    archive.restrict(old, reason="withdrawn", by="leila")
    archive.publish(out, by="leila", force=True)
    with Archive(out, readonly=True) as snapshot:
        assert snapshot.verify() == []
        assert {a["carried_from"] for a in snapshot.annotations(new)} == {None}
        event = [e for e in snapshot.log() if e["action"] == "reanchor"][0]
        assert event["details"]["from"] is None
    assert b"publish the minutes next week" not in out.read_bytes()


def test_the_w3c_export_links_each_carried_annotation_to_its_origin(english, tmp_path, shared):
    archive, new = english["archive"], english["new"]
    out = io.StringIO()
    archive.export(out, [new], fmt="jsonl")
    path = tmp_path / "export.jsonl"
    path.write_text(out.getvalue(), encoding="utf-8")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    before = english["before"]
    uuids = {a["uuid"] for a in before.values()}
    assert all(item["via"].removeprefix("urn:uuid:") in uuids for item in lines)
    orphan = [item for item in lines if item["stet:anchoring"] == "orphaned"][0]
    assert "selector" not in orphan["target"] and orphan["target"]["type"] == "SpecificResource"
    result = subprocess.run([sys.executable, str(shared / "tools" / "w3c_validate.py"), str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0 and " 0 failed" in result.stdout, result.stdout


def test_the_document_pages_link_the_versions_and_list_orphans(english, tmp_path):
    archive, old, new = english["archive"], english["old"], english["new"]
    out = tmp_path / "site.db"
    archive.publish(out, by="leila")
    ds = make_datasette(out)

    async def get(url):
        return (await ds.client.get(url)).text

    older, newer = asyncio.run(get(f"/-/documents/{old}")), asyncio.run(get(f"/-/documents/{new}"))
    assert 'id="superseded-by"' in older and f'href="/-/documents/{new}"' in older
    assert 'id="new-version-of"' in newer and f'href="/-/documents/{old}"' in newer
    assert 'id="orphans"' in newer and "1 orphaned annotation" in newer
    orphan_list = newer.split('id="orphan-list"')[1].split("</ol>")[0]
    assert "on gone" in orphan_list and "on same" not in orphan_list
    assert 'class="stet-anchoring fuzzy"' in newer
    assert 'id="orphans"' not in older


def test_bad_input_writes_nothing(english, run):
    db = str(english["path"])
    events = len(list(english["archive"].log()))
    for args in (("reanchor", english["old"]),  # supersedes nothing
                 ("reanchor", english["new"], "--from", english["new"]),
                 ("reanchor", english["new"], "--from", 999),
                 ("reanchor", english["new"], "--threshold", "0"),
                 ("annotations", english["new"], "--anchoring", "nowhere")):
        result = run(*args, db=db)
        assert result.exit_code != 0, args
        assert result.output.startswith(("Error:", "Usage:")), result.output
    assert len(list(english["archive"].log())) == events
    with pytest.raises(InvalidInput, match="at most 1"):
        versions_module.check_threshold(1.5)


def test_a_docx_superseded_by_the_pdf_of_its_text(tmp_path):
    """The final PDF of a DOCX: another format, lines wrapped by the PDF's layout, the same
    words: every annotation still placed, none misplaced, in English and Persian."""
    import docx

    from test_extract_formats import make_pdf

    paragraphs = [
        "The committee met in Geneva on Monday and heard three witnesses about the detention "
        "centre, who described the conditions there in detail.",
        "همه\u200cی افراد بشر آزاد به دنیا می\u200cآیند و از لحاظ حیثیت و حقوق با هم برابرند.",
        "The secretariat will publish the minutes next week, after the members have read them.",
    ]
    document = docx.Document()
    for paragraph in paragraphs:
        document.add_paragraph(paragraph)
    document.save(tmp_path / "minutes.docx")
    (tmp_path / "minutes.pdf").write_bytes(make_pdf([paragraphs]))
    with Archive(tmp_path / "a.db") as archive:
        old = archive.ingest([tmp_path / "minutes.docx"], by="x")[0]["id"]
        quotes = ("three witnesses about the detention centre", "حیثیت و حقوق",
                  "publish the minutes next week")
        made = {archive.annotate(old, layer="l", quote=q, body=q, by="ana")["id"]: q for q in quotes}
        [new] = archive.ingest([tmp_path / "minutes.pdf"], by="x", supersedes=old)
        assert new["carried"]["orphaned"] == 0, new["carried"]
        text = archive.text(new["id"])
        for origin, copy in by_origin(archive, new["id"]).items():
            assert copy["exact"] == text[copy["start"]:copy["end"]]
            assert " ".join(copy["exact"].split()) == made[origin], (made[origin], copy["exact"])
            assert copy["anchoring"] in ("exact", "fuzzy") and copy["score"] >= 0.75
        assert archive.verify() == []


def test_an_export_with_carried_annotations_imports_whole(english, tmp_path):
    """Carried annotations, orphans among them, go out in W3C and come back in: exported
    from one archive, imported into another holding both versions, every annotation arrives,
    an orphan still without a span, each with its anchoring and its origin; verify holds the
    import's anchoring rows to its event, and a published snapshot of it verifies."""
    archive = english["archive"]
    out = io.StringIO()
    archive.export(out, fmt="jsonl", history=True)
    path = tmp_path / "all.jsonl"
    path.write_text(out.getvalue(), encoding="utf-8")
    with Archive(tmp_path / "other.db") as other:
        other.ingest([tmp_path / "v1.txt"], by="x")
        other.ingest([tmp_path / "v2.txt"], by="x")
        [result] = other.import_([path], by="importer")
        assert result["skipped"] == 0
        source = {a["uuid"]: a for a in archive.annotations(include_retracted=True)}
        arrived = {a["uuid"]: a for a in other.annotations(include_retracted=True)}
        assert set(arrived) == set(source)
        uuid_of = {a["id"]: a["uuid"] for a in source.values()}
        uuid_there = {a["id"]: a["uuid"] for a in arrived.values()}
        for uuid, a in source.items():
            b = arrived[uuid]
            for field in ("start", "end", "exact", "body", "tags", "status", "anchoring", "score"):
                assert b[field] == a[field], (field, a, b)
            if a["carried_from"] is not None:
                assert uuid_there[b["carried_from"]] == uuid_of[a["carried_from"]]
        event = list(other.log())[-1]
        assert event["details"]["anchoring"]["count"] == 4
        assert other.verify() == []
        again = other.import_([path], by="importer")[0]
        assert (again["annotations"], again["revisions"]) == (0, 0)
        other.publish(tmp_path / "other-site.db", by="x")
    with Archive(tmp_path / "other-site.db", readonly=True) as snapshot:
        assert snapshot.verify() == []
