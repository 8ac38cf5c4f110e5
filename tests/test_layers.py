"""Layers: a new one says so, rename and merge are events that keep history, verify holds them
to the chain, publish carries them, and colours and descriptions travel through W3C."""

import json
import sqlite3

import pytest

from stet import Archive
from stet.errors import InvalidInput, NotFound
from stet.publish import publish

FA = "اعلامیه جهانی حقوق بشر: آزادی‌های اساسی با همکاری سازمان ملل متحد تأمین شود."


@pytest.fixture
def doc(archive, tmp_path):
    (tmp_path / "fa.txt").write_text(FA, encoding="utf-8")
    return archive.ingest([tmp_path / "fa.txt"], by="archivist")[0]["id"]


def layer_names(archive):
    return [layer["name"] for layer in archive.layers()]


def test_a_new_layer_says_so(run, archive, doc):
    archive.add_layer("entities", by="ana")
    result = run("annotate", doc, "--layer", "entitys", "--quote", "سازمان ملل متحد")
    assert result.exit_code == 0
    assert result.stderr == "Warning: new layer 'entitys' (1 layer existed: entities)\n"
    result = run("annotate", doc, "--layer", "entitys", "--quote", "ملل")
    assert result.exit_code == 0 and result.stderr == ""  # it exists now


def test_rename_is_an_event_and_keeps_history(run, archive, doc):
    a = archive.annotate(doc, layer="entitys", quote="سازمان ملل متحد", by="ana")
    archive.revise(a["id"], body="UN", by="bo")
    result = run("layer", "rename", "entitys", "entities", "--reason", "typo", "--by", "cy")
    assert result.exit_code == 0, result.output
    assert result.stdout == "layer 1 (entitys) is now layer 2 (entities): 1 annotation\n"
    assert archive.annotation(a["id"])["layer"] == "entities"
    assert layer_names(archive) == ["entities"]
    # the revisions keep the layer they were made in; the layers table only grew
    assert {r["layer"] for r in archive.history(a["id"])} == {"entitys"}
    assert [r[0] for r in archive.conn.execute("SELECT name FROM layers ORDER BY id")] == [
        "entitys", "entities"]
    [event] = [e for e in archive.log() if e["action"] == "layer-rename"]
    assert (event["actor"], event["subject"], event["details"]["reason"],
            event["details"]["from"], event["details"]["into"]) == ("cy", "layer:entities",
                                                                      "typo", 1, 2)
    assert [x["id"] for x in archive.annotations(layer="entities")] == [a["id"]]
    assert [x["id"] for x in archive.annotations(layer="entitys")] == [a["id"]]  # followed
    assert archive.verify() == []
    # the old name is never used again; annotating with it goes to the new layer, saying so
    with pytest.raises(InvalidInput, match="existed and is now 'entities'"):
        archive.add_layer("entitys")
    result = run("annotate", doc, "--layer", "entitys", "--quote", "ملل", "--json")
    assert json.loads(result.stdout)["layer"] == "entities"
    assert "layer 'entitys' was renamed" in result.stderr
    with pytest.raises(InvalidInput, match="merge 'entities' into it"):
        archive.add_layer("claims") and archive.rename_layer("entities", "claims", reason="x")
    with pytest.raises(NotFound):
        archive.rename_layer("nothing", "other", reason="x")


def test_merge_moves_annotations_and_the_past_stays(run, archive, doc):
    a = archive.annotate(doc, layer="entitys", quote="سازمان ملل متحد", by="ana")
    b = archive.annotate(doc, layer="entities", quote="ملل", by="ana")
    before = archive.annotation(b["id"])["modified"]
    result = run("layer", "merge", "entitys", "entities", "--reason", "typo")
    assert result.exit_code == 0 and result.stdout == (
        "layer entitys merged into entities: 1 annotation moved\n")
    assert layer_names(archive) == ["entities"]
    assert [x["layer"] for x in archive.annotations()] == ["entities", "entities"]
    past = list(archive.annotations(at=before))
    assert {x["id"]: x["layer"] for x in past} == {a["id"]: "entitys", b["id"]: "entities"}
    assert archive.verify() == []
    # a revision after the merge stays in the merged layer; so does an import of it
    archive.revise(a["id"], body="UN", by="bo")
    assert archive.annotation(a["id"])["layer"] == "entities"
    assert archive.verify() == []
    with pytest.raises(InvalidInput, match="was merged"):
        archive.merge_layers("entitys", "entities", reason="again")
    with pytest.raises(InvalidInput, match="into itself"):
        archive.merge_layers("entities", "entities", reason="x")


def test_verify_holds_moves_to_the_chain(archive, doc, db_path):
    a = archive.annotate(doc, layer="entitys", quote="سازمان ملل متحد", by="ana")
    archive.add_layer("entities")
    archive.close()
    conn = sqlite3.connect(db_path)
    conn.execute("UPDATE annotations SET layer = 2 WHERE id = ?", (a["id"],))  # no event
    conn.commit()
    conn.close()
    with Archive(db_path) as again:
        assert again.verify() == [
            f"annotation {a['id']}: current state does not match its latest revision"]
        again.conn.execute("UPDATE annotations SET layer = 1")
        again.merge_layers("entitys", "entities", reason="typo")
        assert again.verify() == []


def test_publish_copies_the_events_of_kept_layers(archive, doc, db_path, tmp_path):
    archive.annotate(doc, layer="entitys", quote="سازمان ملل متحد", by="ana")
    archive.add_layer("entities")
    archive.merge_layers("entitys", "entities", reason="typo")
    archive.rename_layer("entities", "names", reason="plainer")
    out = tmp_path / "public.db"
    publish(db_path, out)
    with Archive(out, readonly=True) as snapshot:
        assert snapshot.verify() == []
        assert [x["layer"] for x in snapshot.annotations()] == ["names"]
        actions = [e["action"] for e in snapshot.log()]
        assert actions.count("layer-merge") == 1 and actions.count("layer-rename") == 1


def test_layer_colour_and_description_travel_in_w3c(archive, doc, tmp_path):
    archive.add_layer("claims", description="Claims to verify", colour="#e6550d")
    archive.annotate(doc, layer="claims", quote="سازمان ملل متحد", by="ana")
    out = tmp_path / "claims.jsonl"
    with open(out, "w", encoding="utf-8") as stream:
        archive.export(stream, fmt="jsonl")
    item = json.loads(out.read_text(encoding="utf-8"))
    assert (item["stet:layer"], item["stet:layerColour"], item["stet:layerDescription"]) == (
        "claims", "#e6550d", "Claims to verify")
    with Archive(tmp_path / "other.db") as other:
        other.ingest([tmp_path / "fa.txt"], by="x")
        other.import_([out])
        [layer] = other.layers()
        assert (layer["name"], layer["colour"], layer["description"]) == (
            "claims", "#e6550d", "Claims to verify")
        assert other.verify() == []
    # the old form (no colour, no description) still imports
    del item["stet:layerColour"], item["stet:layerDescription"]
    item["id"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
    item["stet:layer"] = "plain"
    (tmp_path / "old.jsonl").write_text(json.dumps(item), encoding="utf-8")
    archive.import_([tmp_path / "old.jsonl"])
    plain = [layer for layer in archive.layers() if layer["name"] == "plain"]
    assert plain and plain[0]["colour"] is None
