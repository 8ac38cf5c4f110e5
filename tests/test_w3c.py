"""W3C Web Annotation out and in: the W3C suite's MUSTs, round trips, idempotence, refusals."""

import io
import json
import subprocess
import sys

import pytest

from stet import Archive
from stet.errors import InvalidInput
from stet.annotations.w3c import revision_iri

FA = "اعلامیه جهانی حقوق بشر: آزادی‌های اساسی با همکاری سازمان ملل متحد تأمین شود."
AR = "لِكُلِّ شَخْصٍ حَقُّ التَّمَتُّعِ بِكَافَّةِ الْحُقُوقِ وَالْحُرِّيَّاتِ."


def build(path, folder):
    archive = Archive(path)
    results = archive.ingest([folder], by="archivist", source="test")
    return archive, [r["id"] for r in results]


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "1-fa.txt").write_text(FA, encoding="utf-8")
    (folder / "2-ar.txt").write_text(AR, encoding="utf-8")
    return folder


@pytest.fixture
def source(tmp_path, folder):
    """An archive with a revised, a retracted, a replied-to and a tagged annotation."""
    archive, (fa, ar) = build(tmp_path / "a.db", folder)
    un = archive.annotate(fa, layer="entities", quote="سازمان ملل متحد", body="the UN",
                          tags=["org"], by="ana")
    archive.revise(un["id"], body="United Nations", by="bo")
    gone = archive.annotate(fa, layer="translation", quote="آزادی‌های اساسی", body="ZWNJ", by="ana")
    archive.retract(gone["id"], reason="duplicate", by="bo")
    archive.annotate(fa, layer="entities", reply_to=un["id"], body="agreed", by="cy")
    archive.annotate(ar, layer="claims", quote="شَخْصٍ", body="", motivation="questioning",
                     by="ana")
    archive.annotate(ar, layer="claims", quote="حَقُّ", body="a fix", motivation="correcting",
                     by="ana")
    yield archive
    archive.close()


def exported(archive, **kwargs):
    out = io.StringIO()
    archive.export(out, **kwargs)
    return out.getvalue()


def everything(archive):
    # who imported a revision is the archive's own record, not part of the annotation
    return {a["uuid"]: [{k: v for k, v in r.items() if k != "imported_by"}
                        for r in archive.history(a["id"])]
            for a in archive.annotations(include_retracted=True)}


def test_export_is_a_w3c_collection_of_annotations(source):
    data = json.loads(exported(source))
    assert data["type"] == "AnnotationCollection" and data["total"] == 4
    assert data["@context"][0] == "http://www.w3.org/ns/anno.jsonld"
    items = data["first"]["items"]
    un = items[0]
    assert un["id"] == f"urn:uuid:{source.annotation(1)['uuid']}"
    assert un["type"] == "Annotation" and un["motivation"] == "commenting"
    assert un["creator"] == {"type": "Person", "name": "ana"}
    assert un["generator"]["name"] == "stet"
    assert un["body"] == [
        {"type": "TextualBody", "value": "United Nations", "format": "text/plain",
         "purpose": "commenting"},
        {"type": "TextualBody", "value": "org", "purpose": "tagging"}]
    doc = source.document(1)
    target = un["target"]
    assert target["source"] == f"urn:sha256:{doc['sha256']}"
    assert target["state"]["cached"] == f"urn:sha256:{doc['text_sha256']}"
    quote, position = target["selector"]
    assert quote == {"type": "TextQuoteSelector", "exact": "سازمان ملل متحد",
                     "prefix": FA[FA.index("سازمان") - 32:FA.index("سازمان")],
                     "suffix": FA[FA.index("متحد") + 4:]}
    assert position == {"type": "TextPositionSelector", "start": FA.index("سازمان"),
                        "end": FA.index("سازمان") + 15}
    reply = items[1]
    assert reply["target"] == un["id"] and reply["motivation"] == "replying"
    assert items[3]["motivation"] == "stet:correcting"
    for item in items:
        for key in ("created", "modified"):
            assert item[key].endswith("Z")
        for selector in (item["target"].get("selector", []) if isinstance(item["target"], dict) else []):
            if selector["type"] == "TextPositionSelector":
                assert 0 <= selector["start"] <= selector["end"]


def test_history_export_links_each_revision_to_its_predecessor(source):
    lines = [json.loads(line) for line in exported(source, fmt="jsonl", history=True).splitlines()]
    assert len(lines) == 7
    uuid = source.annotation(1)["uuid"]
    first, second = lines[0], lines[1]
    assert first["id"] == revision_iri(uuid, 1) and "dcterms:replaces" not in first
    assert second["dcterms:replaces"] == {"id": first["id"]}
    assert second["dcterms:isVersionOf"] == {"id": f"urn:uuid:{uuid}"}
    assert (second["stet:revision"], second["stet:author"]) == (2, "bo")
    assert lines[3]["stet:status"] == "retracted" and lines[3]["stet:reason"] == "duplicate"


@pytest.mark.parametrize("form", [{"fmt": "w3c"}, {"fmt": "jsonl"}, {"fmt": "w3c", "history": True},
                                  {"fmt": "jsonl", "history": True}])
def test_exports_pass_the_w3c_test_suite(source, shared, tmp_path, form):
    path = tmp_path / "export.json"
    path.write_text(exported(source, **form), encoding="utf-8")
    result = subprocess.run([sys.executable, str(shared / "tools" / "w3c_validate.py"), str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    assert " 0 failed" in result.stdout


def test_history_round_trip_rebuilds_everything(source, tmp_path, folder):
    path = tmp_path / "history.jsonl"
    path.write_text(exported(source, fmt="jsonl", history=True), encoding="utf-8")
    target, _ = build(tmp_path / "b.db", folder)
    [result] = target.import_([path], by="importer")
    assert (result["annotations"], result["revisions"], result["skipped"]) == (5, 7, 0)
    assert everything(target) == everything(source)
    assert target.verify() == []
    again = target.import_([path], by="importer")[0]
    assert (again["annotations"], again["revisions"], again["skipped"]) == (0, 0, 7)
    assert everything(target) == everything(source)
    assert [e["action"] for e in list(target.log())[-2:]] == ["import", "import"]
    assert list(target.log())[-1]["details"]["sha256"] == result["sha256"]


def test_collection_round_trip_keeps_the_current_state(source, tmp_path, folder):
    path = tmp_path / "current.json"
    path.write_text(exported(source), encoding="utf-8")
    target, _ = build(tmp_path / "b.db", folder)
    target.import_([path])
    def current(archive):
        return {a["uuid"]: {k: v for k, v in a.items() if k not in ("id", "reply_to", "revision")}
                for a in archive.annotations()}
    assert current(target) == current(source)
    assert target.import_([path])[0]["annotations"] == 0


def test_import_refuses_a_malformed_file_whole(source, tmp_path, folder):
    good = exported(source, fmt="jsonl").splitlines()
    target, _ = build(tmp_path / "b.db", folder)
    before = target.counts()
    cases = {
        "broken.jsonl": (good[0] + "\n{not json\n",
                         "broken.jsonl: line 2: not JSON (unexpected character, expected a string key: "
                         "line 1 column 2 (char 1))"),
        "type.jsonl": (good[0] + "\n" + json.dumps({**json.loads(good[1]), "type": "Note"}),
                       "type.jsonl: line 2: not a W3C Annotation (type is not 'Annotation')"),
        "notarget.jsonl": (json.dumps({k: v for k, v in json.loads(good[0]).items() if k != "target"}),
                           "notarget.jsonl: line 1: the annotation has no target"),
        "bad.json": ('{"type": "AnnotationCollection", "first": "https://example.org/page1"}',
                     "bad.json: the collection's pages must be embedded, not links"),
    }
    unknown = json.loads(good[0])
    unknown["target"]["source"] = "urn:sha256:" + "0" * 64
    cases["unknown.jsonl"] = (json.dumps(unknown), "unknown.jsonl: 1 annotation on documents "
                              "this archive does not hold (the first: line 1, urn:sha256:"
                              + "0" * 64 + "); nothing was imported (skip_missing imports "
                              "the rest)")
    moved = json.loads(good[0])
    moved["target"]["selector"][0]["exact"] = "حقوق زن"
    at = FA.index("سازمان")
    cases["moved.jsonl"] = (json.dumps(moved), f"moved.jsonl: line 1: the text at {at}:{at + 15} "
                            "is not the quote, and quote 'حقوق زن' not found in the text with "
                            "that prefix/suffix")
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        with pytest.raises(InvalidInput) as error:
            target.import_([path])
        assert str(error.value) == f"{path.parent}/{message}", name
        assert target.counts() == before
    # a good file beside a bad one: nothing from either
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "a.jsonl").write_text("\n".join(good), encoding="utf-8")
    (tmp_path / "dir" / "b.jsonl").write_text("[1]", encoding="utf-8")
    with pytest.raises(InvalidInput, match="b.jsonl: item 1: not a JSON object"):
        target.import_([tmp_path / "dir"])
    assert target.counts() == before


def test_import_re_anchors_a_moved_position_by_its_quote(source, tmp_path, folder):
    line = json.loads(exported(source, fmt="jsonl").splitlines()[0])
    line["target"]["selector"][1]["start"] -= 3
    line["target"]["selector"][1]["end"] -= 3
    (tmp_path / "moved.jsonl").write_text(json.dumps(line), encoding="utf-8")
    target, _ = build(tmp_path / "b.db", folder)
    target.import_([tmp_path / "moved.jsonl"])
    [a] = target.annotations()
    assert FA[a["start"]:a["end"]] == a["exact"] == "سازمان ملل متحد"


def test_import_of_a_history_with_a_missing_revision_is_refused(source, tmp_path, folder):
    lines = exported(source, fmt="jsonl", history=True).splitlines()
    (tmp_path / "gap.jsonl").write_text(lines[1], encoding="utf-8")
    target, _ = build(tmp_path / "b.db", folder)
    with pytest.raises(InvalidInput, match="gap.jsonl: line 1: revision 2 of urn:uuid:.*: the "
                       "revisions before it are neither in the archive nor the file"):
        target.import_([tmp_path / "gap.jsonl"])


def test_foreign_annotation_with_a_plain_body_and_an_https_id(source, tmp_path, folder):
    doc = source.document(2)
    foreign = {
        "@context": "http://www.w3.org/ns/anno.jsonld", "id": "https://example.org/anno/1",
        "type": "Annotation", "bodyValue": "a note", "creator": "https://example.org/people/dee",
        "created": "2026-11-24T17:00:00+01:00",
        "target": {"source": f"urn:sha256:{doc['sha256']}",
                   "selector": {"type": "TextQuoteSelector", "exact": "شَخْصٍ"}},
    }
    (tmp_path / "foreign.json").write_text(json.dumps(foreign), encoding="utf-8")
    source.import_([tmp_path / "foreign.json"])
    [a] = source.annotations(layer="imported")
    assert (a["body"], a["creator"], a["created"]) == (
        "a note", "https://example.org/people/dee", "2026-11-24T16:00:00.000000Z")
    assert a["exact"] == "شَخْصٍ" and a["start"] == AR.index("شَخْصٍ")
    assert source.import_([tmp_path / "foreign.json"])[0]["skipped"] == 1


def test_brat_standoff(source):
    assert exported(source, documents=[1], fmt="brat") == (
        f"T1\tentities {FA.index('سازمان')} {FA.index('سازمان') + 15}\tسازمان ملل متحد\n"
        "#1\tAnnotatorNotes T1\tUnited Nations | tags: org | reply by cy: agreed\n")
    with pytest.raises(InvalidInput, match="give exactly one DOC"):
        exported(source, fmt="brat")


def test_cli_export_and_import(run, source, tmp_path, folder):
    out = tmp_path / "out.jsonl"
    result = run("export", "--history", "--format", "jsonl", "-o", out, db=source.path)
    assert result.exit_code == 0 and len(out.read_text().splitlines()) == 7
    result = run("export", "1", "--layer", "entities", "--format", "w3c", db=source.path)
    assert json.loads(result.output)["total"] == 2
    fresh = tmp_path / "fresh.db"
    Archive(fresh).ingest([folder], by="x")
    result = run("import", out, "--json", db=fresh)
    assert result.exit_code == 0
    assert json.loads(result.output)["revisions"] == 7
    result = run("import", out, db=fresh)
    assert result.output == f"{out}: 0 new annotations, 0 revisions, 7 already here\n"
    result = run("import", tmp_path / "nothing-here", db=fresh)
    assert result.exit_code == 1
    assert result.output == f"Error: {tmp_path / 'nothing-here'}: no such file or directory\n"
    result = run("export", "--format", "brat", "-o", tmp_path / "x.ann", db=source.path)
    assert result.exit_code == 1 and not (tmp_path / "x.ann").exists()


# -- brat with its text, and documents that are missing (issue 16, item 8) -------------------


def test_brat_writes_the_text_beside_the_standoff(run, source, tmp_path):
    ann = tmp_path / "fa.ann"
    result = run("export", "1", "--format", "brat", "-o", ann, db=source.path)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "fa.txt").read_text(encoding="utf-8") == source.text(1)
    lines = ann.read_text(encoding="utf-8").splitlines()
    start = FA.index("سازمان")
    assert lines == [f"T1\tentities {start} {start + 15}\tسازمان ملل متحد",
                     "#1\tAnnotatorNotes T1\tUnited Nations | tags: org | reply by cy: agreed"]
    assert source.text(1)[start:start + 15] == "سازمان ملل متحد"
    for args in ((), ("-o", tmp_path / "fa.txt")):
        result = run("export", "1", "--format", "brat", *args, db=source.path)
        assert result.exit_code == 2 and "brat needs -o NAME.ann" in result.stderr


def test_import_counts_annotations_on_missing_documents(run, source, tmp_path, folder):
    out = tmp_path / "all.jsonl"
    assert run("export", "--history", "--format", "jsonl", "-o", out, db=source.path).exit_code == 0
    only_fa = tmp_path / "only-fa"
    only_fa.mkdir()
    (only_fa / "fa.txt").write_bytes(next(p for p in folder.iterdir() if "fa" in p.name)
                                     .read_bytes())
    fresh = tmp_path / "fresh.db"
    Archive(fresh).ingest([only_fa], by="x")
    before = Archive(fresh).head()
    result = run("import", out, db=fresh)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: {out}: 2 annotations on documents this archive "
                                    "does not hold (the first: line ")
    assert result.stderr.endswith("nothing was imported (--skip-missing imports the rest)\n")
    assert Archive(fresh).head() == before  # nothing written
    result = run("import", out, "--skip-missing", db=fresh)
    assert result.exit_code == 0, result.output
    assert result.stdout == (f"{out}: 3 new annotations, 5 revisions, 0 already here, "
                             "2 left out (their documents are not in this archive)\n")
    result = run("import", out, "--skip-missing", "--json", db=fresh)
    assert json.loads(result.stdout)["missing"] == 2 and Archive(fresh).verify() == []
