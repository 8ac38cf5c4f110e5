"""The bulk import path: the current state written set-based after the revisions (the
per-row triggers dropped and created again in the same transaction), and the file parsed in
a worker process for large files. The results must be those of ordinary writes."""

import hashlib
import io
import json

import pytest

from stet import Archive
from stet.annotations import worker
from stet.errors import InvalidInput
from stet.store import CURRENT_STATE_TRIGGER_NAMES
from test_w3c import AR, FA, folder  # noqa: F401  (the same two documents and their fixture)


def build(path, folder):
    archive = Archive(path)
    archive.ingest([folder], by="archivist", source="test")
    return archive


@pytest.fixture
def source(tmp_path, folder):
    archive = build(tmp_path / "a.db", folder)
    un = archive.annotate(1, layer="entities", quote="سازمان ملل متحد", body="the UN", by="ana")
    archive.revise(un["id"], body="United Nations", by="bo")
    gone = archive.annotate(1, layer="translation", quote="آزادی‌های اساسی", body="ZWNJ", by="ana")
    archive.retract(gone["id"], reason="duplicate", by="bo")
    archive.annotate(1, layer="entities", reply_to=un["id"], body="agreed", by="cy")
    archive.annotate(2, layer="claims", quote="شَخْصٍ", by="ana")
    yield archive
    archive.close()


def history(archive):
    out = io.StringIO()
    archive.export(out, fmt="jsonl", history=True)
    return out.getvalue().splitlines()


def state(archive):
    """The current state and every revision, without the archive-local numbers."""
    return ({a["uuid"]: {k: v for k, v in a.items() if k not in ("id", "reply_to", "imported_by")}
             for a in archive.annotations(include_retracted=True)},
            {a["uuid"]: [{k: v for k, v in r.items() if k not in ("id", "reply_to", "imported_by")}
                         for r in archive.history(a["id"])]
             for a in archive.annotations(include_retracted=True)})


def triggers(archive):
    return {name for (name,) in archive.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'trigger'")}


@pytest.fixture(params=["in-process", "worker"])
def mode(request, monkeypatch):
    if request.param == "worker":
        monkeypatch.setattr(worker, "WORKER_BYTES", 0)
        monkeypatch.setattr(worker, "cpus", lambda: 2)
    return request.param


def test_import_in_two_parts_updates_the_current_state(source, tmp_path, folder, mode):
    lines = history(source)
    first = [line for line in lines if json.loads(line)["stet:revision"] == 1]
    (tmp_path / "first.jsonl").write_text("\n".join(first), encoding="utf-8")
    (tmp_path / "all.jsonl").write_text("\n".join(lines), encoding="utf-8")
    target = build(tmp_path / "b.db", folder)
    names = triggers(target)
    assert set(CURRENT_STATE_TRIGGER_NAMES) <= names
    target.import_([tmp_path / "first.jsonl"])
    # the rest: later revisions of annotations the archive now has (set-based UPDATE)
    [result] = target.import_([tmp_path / "all.jsonl"])
    assert (result["annotations"], result["skipped"]) == (0, len(first))
    assert state(target) == state(source)
    assert triggers(target) == names
    assert target.verify() == []


def test_ordinary_writes_after_an_import_keep_the_current_state(source, tmp_path, folder, mode):
    (tmp_path / "all.jsonl").write_text("\n".join(history(source)), encoding="utf-8")
    target = build(tmp_path / "b.db", folder)
    target.import_([tmp_path / "all.jsonl"])
    [claim] = target.annotations(layer="claims")
    target.revise(claim["id"], body="checked", by="dee")
    new = target.annotate(2, layer="claims", quote="حَقُّ", body="new", by="dee")
    assert target.annotation(claim["id"])["body"] == "checked"
    assert target.annotation(new["id"])["revision"] == 1
    assert target.verify() == []
    with pytest.raises(Exception, match="append-only: UPDATE refused"):
        target.conn.execute("UPDATE annotation_revisions SET body = 'x'")
    with pytest.raises(Exception, match="append-only: DELETE refused"):
        target.conn.execute("DELETE FROM annotation_revisions")


def test_a_refused_import_leaves_triggers_and_data_as_they_were(source, tmp_path, folder, mode):
    lines = history(source)
    target = build(tmp_path / "b.db", folder)
    before, names = target.counts(), triggers(target)
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(InvalidInput) as error:
        target.import_([path])
    assert str(error.value) == (
        f"{path}: line {len(lines) + 1}: not JSON (unexpected character, expected a string "
        "key: line 1 column 2 (char 1))")
    assert target.counts() == before and triggers(target) == names
    gap = tmp_path / "gap.jsonl"
    gap.write_text(lines[1], encoding="utf-8")  # revision 2 without its revision 1
    with pytest.raises(InvalidInput, match="gap.jsonl: line 1: revision 2 of urn:uuid:.*: the "
                       "revisions before it are neither in the archive nor the file"):
        target.import_([gap])
    assert target.counts() == before and triggers(target) == names
    target.import_([_good(tmp_path, lines)])  # and then a good one imports whole
    assert state(target) == state(source)
    assert target.verify() == []


def _good(tmp_path, lines):
    path = tmp_path / "good.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.mark.parametrize("where", ["worker", "here"])
@pytest.mark.parametrize("form", ["jsonl", "jsonld"])
def test_the_import_records_the_sha256_of_every_byte_it_read(source, tmp_path, folder,
                                                             monkeypatch, where, form):
    """The file's SHA-256 is hashed as it is read (in the worker, or here), over every byte:
    leading blank lines, blank lines between, trailing white space, a JSON-LD page."""
    lines = history(source)
    path = tmp_path / f"good.{form}"
    if form == "jsonl":
        path.write_bytes(("\n \n" + "\n\n".join(lines) + "\n  \n").encode())
    else:
        items = ",".join(lines)
        path.write_bytes(('\n{"type": "AnnotationPage", "items": [' + items + "]}\n").encode())
    if where == "worker":  # (else a small file is read here)
        monkeypatch.setattr(worker, "WORKER_BYTES", 0)
        monkeypatch.setattr(worker, "cpus", lambda: 2)
    target = build(tmp_path / "b.db", folder)
    [result] = target.import_([path])
    assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert result["revisions"] == len(lines)
    [event] = [e for e in target.log() if e["action"] == "import"]
    assert event["details"]["sha256"] == result["sha256"]


def test_a_worker_that_dies_fails_the_import_and_writes_nothing(source, tmp_path, folder,
                                                                monkeypatch):
    path = _good(tmp_path, history(source))
    monkeypatch.setattr(worker, "WORKER_BYTES", 0)
    monkeypatch.setattr(worker, "cpus", lambda: 2)
    target = build(tmp_path / "b.db", folder)
    before = target.counts()
    monkeypatch.setattr("sys.executable", "false")  # exits at once, says nothing
    with pytest.raises(InvalidInput) as error:
        target.import_([path])
    assert str(error.value) == f"{path}: the worker reading the file stopped unexpectedly"
    assert target.counts() == before
