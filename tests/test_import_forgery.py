"""Imported history cannot be forged: times in the future or out of range, revisions out of
order or retracted from birth are refused; an IRI already here with other content is reported;
every imported row is held to its import event, and the history says who imported it."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from urllib.parse import quote

import pytest

from stet import Archive, timeutil
from stet.annotations import CLOCK_SKEW_MINUTES, revisions_digest
from stet.errors import InvalidInput
from stet.annotations.w3c import revision_iri

TEXT = "The Commission met in Geneva on 12 March; the minutes were published in April.\n"
OUT_OF_RANGE = ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+05:00")
RANGE = "times must lie between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z"


@pytest.fixture
def doc_file(tmp_path):
    path = tmp_path / "minutes.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def source(tmp_path, doc_file):
    """An archive with one annotation revised once (ana, then bo) and one retracted."""
    with Archive(tmp_path / "source.db") as archive:
        [doc] = archive.ingest([doc_file], by="archivist")
        met = archive.annotate(doc["id"], layer="claims", quote="Geneva", body="the place",
                               tags=["place"], by="ana")
        archive.revise(met["id"], body="Geneva, Palais des Nations", by="bo")
        gone = archive.annotate(doc["id"], layer="claims", quote="April", body="a month",
                                by="ana")
        archive.retract(gone["id"], reason="not a claim", by="bo")
        yield archive


def lines(archive, *, history=True) -> list[dict]:
    out = io.StringIO()
    archive.export(out, fmt="jsonl", history=history)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def write(path, items) -> str:
    path.write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items),
                    encoding="utf-8")
    return str(path)


def next_revision(item: dict, *, modified: str, author: str, body: str) -> dict:
    """The revision after ``item`` (one line of a --history export), as another archive
    would write it."""
    uuid = item["dcterms:isVersionOf"]["id"][9:]
    number = item["stet:revision"] + 1
    forged = json.loads(json.dumps(item))
    forged.update({"id": revision_iri(uuid, number), "stet:revision": number,
                   "dcterms:replaces": {"id": item["id"]}, "modified": modified,
                   "stet:author": author})
    forged["body"][0]["value"] = body
    return forged


def target(tmp_path, doc_file, name="target.db") -> Archive:
    archive = Archive(tmp_path / name)
    archive.ingest([doc_file], by="archivist")
    return archive


def import_events(archive) -> list[dict]:
    return [e for e in archive.log() if e["action"] == "import"]


# -- revision times ---------------------------------------------------------------------


def test_a_revision_from_the_future_is_refused_and_writes_nothing(source, tmp_path):
    history = lines(source)
    last = history[1]  # revision 2 of the revised annotation
    forged = next_revision(last, modified="9999-12-31T23:59:59Z", author="mallory",
                           body="forged")
    path = write(tmp_path / "forged.jsonl", [last, forged])
    before = source.counts()
    with pytest.raises(InvalidInput) as error:
        source.import_([path], by="mallory")
    uuid = last["dcterms:isVersionOf"]["id"]
    assert re.fullmatch(
        re.escape(f"{path}: line 2: revision 3 of {uuid} is dated 9999-12-31T23:59:59.000000Z, "
                  "in the future (this archive's clock says ")
        + r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"
        + re.escape(f"; {CLOCK_SKEW_MINUTES} minutes of clock skew are allowed)"),
        str(error.value))
    assert source.counts() == before
    # a revision dated now imports, and the next ordinary revision follows it, dated now
    moment = timeutil.iso(timeutil.now())
    honest = next_revision(last, modified=moment, author="dee", body="checked")
    [result] = source.import_([write(tmp_path / "honest.jsonl", [honest])], by="importer")
    assert (result["annotations"], result["revisions"], result["skipped"]) == (0, 1, 0)
    assert source.annotation(1)["modified"] == moment
    revised = source.revise(1, body="after the import", by="cy")
    assert revised["revision"] == 4
    assert timeutil.parse(moment) <= timeutil.parse(revised["modified"]) <= timeutil.now()
    assert source.verify() == []


def test_a_new_annotation_created_in_the_future_is_refused(source, tmp_path, doc_file, run):
    item = lines(source)[0]
    item["created"] = item["modified"] = "9999-12-31T23:59:59Z"
    path = write(tmp_path / "future.jsonl", [item])
    archive = target(tmp_path, doc_file)
    before = archive.counts()
    archive.close()
    result = run("import", path, db=str(tmp_path / "target.db"))
    assert result.exit_code == 1
    assert result.output.startswith(
        f"Error: {path}: line 1: {item['dcterms:isVersionOf']['id']} was created "
        "9999-12-31T23:59:59.000000Z, in the future")
    assert result.output.count("\n") == 1
    with Archive(tmp_path / "target.db") as archive:
        assert archive.counts() == before


def test_revision_times_keep_their_order(source, tmp_path, doc_file):
    first, second = lines(source)[:2]
    first["created"] = first["modified"] = second["created"] = "2020-01-01T00:00:00Z"
    second["modified"] = "2020-06-01T00:00:00Z"
    early = next_revision(second, modified="2020-03-01T00:00:00Z", author="mallory",
                          body="backdated")
    path = write(tmp_path / "early.jsonl", [first, second, early])
    archive = target(tmp_path, doc_file)
    with pytest.raises(InvalidInput) as error:
        archive.import_([path])
    assert str(error.value) == (f"{path}: line 3: revision 3 of {early['dcterms:isVersionOf']['id']} "
                                "is dated before the revision it follows")
    early["created"] = "2020-02-01T00:00:00Z"  # moving its creation too does not help
    write(tmp_path / "early.jsonl", [first, second, early])
    with pytest.raises(InvalidInput, match=r"line 3: revision 3 of urn:uuid:\S+ does not keep"):
        archive.import_([path])
    # modified before created
    item = lines(source, history=False)[0]
    item["modified"] = "2001-01-01T00:00:00Z"
    item["created"] = "2001-01-02T00:00:00+01:00"
    path = write(tmp_path / "before.jsonl", [item])
    with pytest.raises(InvalidInput) as error:
        archive.import_([path])
    assert str(error.value) == (
        f"{path}: line 1: revision 1 of {item['id']} is dated 2001-01-01T00:00:00.000000Z, "
        "before its annotation was created (2001-01-01T23:00:00.000000Z)")
    assert list(archive.annotations(include_retracted=True)) == []


def test_a_first_revision_that_is_a_retraction_is_refused(source, tmp_path, doc_file, run):
    retracted = [item for item in lines(source) if item["stet:status"] == "retracted"][0]
    born_dead = {**retracted, "id": revision_iri(retracted["dcterms:isVersionOf"]["id"][9:], 1),
                 "stet:revision": 1}
    del born_dead["dcterms:replaces"]
    path = write(tmp_path / "dead.jsonl", [born_dead])
    target(tmp_path, doc_file).close()
    db = str(tmp_path / "target.db")
    events = len(json.loads(run("log", "--json", db=db).output))
    result = run("import", path, db=db)
    assert result.exit_code == 1
    assert result.output == (f"Error: {path}: line 1: revision 1 of "
                             f"{retracted['dcterms:isVersionOf']['id']} is a retraction: an "
                             "annotation cannot begin retracted\n")
    assert len(json.loads(run("log", "--json", db=db).output)) == events



def test_a_revision_after_a_retraction_is_refused(source, tmp_path, doc_file):
    """As ``revise`` refuses: nothing follows a retraction, whether the retraction is in the
    same file or already in the archive."""
    gone = [item for item in lines(source) if item["stet:status"] == "retracted"][0]
    first = [item for item in lines(source) if item["id"] == gone["dcterms:replaces"]["id"]][0]
    iri = gone["dcterms:isVersionOf"]["id"]
    revived = {**gone, "id": revision_iri(iri[9:], 3), "stet:revision": 3,
               "dcterms:replaces": {"id": gone["id"]}, "stet:author": "mallory",
               "stet:status": "active"}
    del revived["stet:reason"]
    message = (f"line 3: revision 3 of {iri} follows its retraction: a retracted annotation "
               "cannot be revised")
    path = write(tmp_path / "revived.jsonl", [first, gone, revived])
    archive = target(tmp_path, doc_file)
    with pytest.raises(InvalidInput) as error:
        archive.import_([path])
    assert str(error.value) == f"{path}: {message}"
    assert list(archive.annotations(include_retracted=True)) == []
    archive.import_([write(tmp_path / "gone.jsonl", [first, gone])])  # the retraction lands
    path = write(tmp_path / "revived.jsonl", [revived])
    with pytest.raises(InvalidInput) as error:
        archive.import_([path])
    assert str(error.value) == f"{path}: {message.replace('line 3', 'line 1')}"
    assert [h["status"] for h in archive.history(1)] == ["active", "retracted"]

# -- times out of range -----------------------------------------------------------------


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
@pytest.mark.parametrize("key", ["created", "modified"])
def test_an_import_with_a_time_out_of_range_is_one_line_and_writes_nothing(
        source, tmp_path, doc_file, run, moment, key):
    items = lines(source)
    items[1][key] = moment
    path = write(tmp_path / "range.jsonl", items)
    target(tmp_path, doc_file).close()
    db = str(tmp_path / "target.db")
    head = run("log", "--head", "--json", db=db).output
    result = run("import", path, db=db)
    assert result.exit_code == 1
    assert result.output == f"Error: {path}: line 2: {key}: {moment!r} is out of range: {RANGE}\n"
    assert run("log", "--head", "--json", db=db).output == head


@pytest.mark.parametrize("moment", OUT_OF_RANGE)
def test_annotations_at_a_time_out_of_range_is_one_line(source, run, moment):
    result = run("annotations", "--at", moment, db=str(source.path))
    assert result.exit_code == 1
    assert result.output == f"Error: {moment!r} is out of range: {RANGE}\n"


def test_time_functions_refuse_what_they_cannot_hold():
    for moment in OUT_OF_RANGE:
        with pytest.raises(InvalidInput, match="is out of range"):
            timeutil.parse_micros(moment)
    with pytest.raises(InvalidInput, match="is out of range"):
        timeutil.from_micros(10 ** 18)
    assert timeutil.from_micros(timeutil.parse_micros("9999-12-31T23:59:59.999999Z")) == \
        "9999-12-31T23:59:59.999999Z"
    assert timeutil.parse_micros("0001-01-01T05:00:00+05:00") == \
        timeutil.parse_micros("0001-01-01T00:00:00Z")


def test_the_document_page_answers_400_to_a_time_out_of_range(source):
    from stet.serve import prepare

    ds, _ = prepare(source.path)
    loop = asyncio.new_event_loop()
    try:
        good = loop.run_until_complete(ds.client.get("/-/documents/1?at=2030-01-01"))
        assert good.status_code == 200
        for moment in OUT_OF_RANGE:
            page = loop.run_until_complete(ds.client.get("/-/documents/1?at=" + quote(moment)))
            assert page.status_code == 400
            assert "is out of range" in page.text
    finally:
        loop.close()


# -- conflicts --------------------------------------------------------------------------


def test_a_reimport_with_other_content_is_reported(source, tmp_path, doc_file, run):
    items = lines(source)
    path = write(tmp_path / "all.jsonl", items)
    target(tmp_path, doc_file).close()
    db = str(tmp_path / "target.db")
    assert run("import", path, db=db).exit_code == 0
    again = run("import", path, "--json", db=db)  # the same file: nothing to say
    assert again.exit_code == 0 and again.stderr == ""
    assert "conflicts" not in json.loads(again.stdout)
    items[1]["body"][0]["value"] = "rewritten"           # revision 2: another body
    items[2]["stet:author"] = "mallory"                  # revision 1 of the other: author
    items[3]["modified"] = "2030-01-01T00:00:00Z"        # a retraction: another time
    changed = write(tmp_path / "changed.jsonl", items)
    result = run("import", changed, "--json", db=db)
    assert result.exit_code == 0
    assert result.stderr == (
        f"Warning: {changed}: 3 annotations already in the archive differ from the file "
        f"(first: {items[1]['id']}); the archive's are kept\n")
    record = json.loads(result.stdout)
    assert (record["revisions"], record["skipped"]) == (0, 4)
    assert (record["conflicts"], record["first_conflict"]) == (3, items[1]["id"])
    with Archive(db) as archive:
        assert list(archive.history(1))[1]["body"] == "Geneva, Palais des Nations"
        assert import_events(archive)[-1]["details"]["conflicts"] == 3


def test_a_current_state_annotation_with_other_content_is_a_conflict(source, tmp_path):
    [item] = lines(source, history=False)
    # a current-state export is a snapshot of one revision: not a conflict when it is older
    old = write(tmp_path / "current.jsonl", [item])
    source.revise(1, body="later", by="cy")
    [result] = source.import_([old])
    assert result["skipped"] == 1 and "conflicts" not in result
    same = json.loads(json.dumps(item))
    same["body"].append(same["body"][1])  # a tag given twice is stored once: the same
    other_layer = {**item, "stet:layer": "entities"}
    item["body"][0]["value"] = "not what ana or bo wrote"
    [result] = source.import_([write(tmp_path / "one.jsonl", [same, item, other_layer])])
    assert (result["skipped"], result["conflicts"], result["first_conflict"]) == \
        (3, 2, item["id"])
    assert "entities" not in [layer["name"] for layer in source.layers()]  # only compared


# -- who imported it --------------------------------------------------------------------


def test_history_names_who_imported_each_revision(source, tmp_path, doc_file, run):
    path = write(tmp_path / "all.jsonl", lines(source))
    archive = target(tmp_path, doc_file)
    archive.import_([path], by="importer")
    archive.revise(1, body="revised here", by="dee")
    history = list(archive.history(1))
    assert [(h["author"], h["imported_by"]) for h in history] == [
        ("ana", "importer"), ("bo", "importer"), ("dee", None)]
    assert [h["imported_by"] for h in source.history(1)] == [None, None]
    archive.close()
    out = run("history", 1, "--csv", db=str(tmp_path / "target.db")).output
    assert [(r["author"], r["imported_by"]) for r in csv.DictReader(io.StringIO(out))] == [
        ("ana", "importer"), ("bo", "importer"), ("dee", "")]
    table = run("history", 1, db=str(tmp_path / "target.db")).output.splitlines()
    assert table[0].split()[2:4] == ["author", "imported_by"]
    assert [line.split()[2:4] for line in table[2:4]] == [["ana", "importer"], ["bo", "importer"]]
    assert [h["imported_by"] for h in json.loads(
        run("history", 1, "--json", db=str(tmp_path / "target.db")).output)] == [
        "importer", "importer", None]


def test_each_import_event_holds_the_rows_it_wrote(source, tmp_path, doc_file):
    items = lines(source)
    first = write(tmp_path / "a.jsonl", items[:2])
    second = write(tmp_path / "b.jsonl", items[2:])
    archive = target(tmp_path, doc_file)
    archive.annotate(1, layer="local", quote="minutes", body="a local note", by="dee")
    results = archive.import_([first, second], by="importer")
    events = import_events(archive)
    assert [e["actor"] for e in events] == ["importer", "importer"]
    ranges = [e["details"]["rows"] for e in events]
    assert ranges[0]["first"] == 2 and ranges[0]["last"] == 3
    assert ranges[1]["first"] == 4 and ranges[1]["last"] == 5
    for rows, result in zip(ranges, results):
        assert rows["count"] == result["revisions"] == 2
        assert (rows["count"], rows["sha256"]) == revisions_digest(archive.conn, rows["first"],
                                                                   rows["last"])
    assert archive.import_([first], by="importer")[0]["revisions"] == 0
    assert import_events(archive)[-1]["details"]["rows"] is None
    assert archive.verify() == []
