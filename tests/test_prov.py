"""stet prov: a document's lineage as W3C PROV-JSON that the prov package reads back."""

import json
import sqlite3

import pytest
from prov.model import ProvDocument

from stet.timeutil import iso, micros, now


def add_revision(db_path, *, annotation, revision, uuid, body, author, start=0, end=5,
                 status="active"):
    """Annotation rows written directly (the annotation API is another module's concern)."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    # layers is append-only: a colliding INSERT (even OR IGNORE) is refused, so look first
    conn.execute("INSERT INTO layers (id, name, created_by, created) "
                 "SELECT 1, 'claims', 'ana', '2026-01-01T00:00:00.000000Z' "
                 "WHERE NOT EXISTS (SELECT 1 FROM layers WHERE id = 1)")
    moment = now()
    text = conn.execute("SELECT text FROM texts WHERE document = 1").fetchone()[0]
    conn.execute(
        'INSERT INTO annotation_revisions (annotation, revision, uuid, document, layer, start, '
        '"end", exact, prefix, suffix, body, motivation, tags, creator, author, created, modified, '
        "modified_us, status) VALUES (?, ?, ?, 1, 1, ?, ?, ?, '', '', ?, 'commenting', '[]', "
        "'ana', ?, '2026-01-01T00:00:00.000000Z', ?, ?, ?)",
        (annotation, revision, uuid, start, end, text[start:end], body, author, iso(moment),
         micros(moment), status),
    )
    conn.close()


@pytest.fixture
def doc(run, tmp_path):
    path = tmp_path / "statement.txt"
    path.write_text("سلام دنیا، بیانیه‌ی امروز", encoding="utf-8")
    assert run("ingest", path, "--source", "https://example.org/x", "-s").exit_code == 0
    assert run("ingest", path, "-s", "--by", "bob").exit_code == 0  # a duplicate submission
    return path


def test_prov_json_parses_and_holds_the_lineage(run, doc, db_path):
    uid = "0b1c2d3e-0000-4000-8000-000000000001"
    add_revision(db_path, annotation=1, revision=1, uuid=uid, body="first", author="ana")
    add_revision(db_path, annotation=1, revision=2, uuid=uid, body="second", author="omid")
    out = run("prov", "1")
    assert out.exit_code == 0, out.stderr
    document = ProvDocument.deserialize(content=out.stdout, format="json")
    data = json.loads(out.stdout)

    raw = next(k for k in data["entity"] if k.startswith("sha256:"))
    text = "stet:document/1/text"
    assert data["entity"][text]["stet:extractor"] == "stet.text"
    derived = {(d["prov:generatedEntity"], d["prov:usedEntity"], d.get("prov:activity"))
               for d in data["wasDerivedFrom"].values()}
    assert (text, raw, "stet:document/1/extraction") in derived
    generated = {(g["prov:entity"], g.get("prov:activity")) for g in data["wasGeneratedBy"].values()}
    assert (text, "stet:document/1/extraction") in generated
    assert (raw, "stet:event/1") in generated

    # the ingest, and the later duplicate submission, each with its agent
    associations = {(a["prov:activity"], a["prov:agent"]) for a in data["wasAssociatedWith"].values()}
    assert ("stet:event/1", "stet:agent/tester") in associations
    assert ("stet:event/2", "stet:agent/bob") in associations
    assert data["activity"]["stet:event/1"]["prov:type"] == "stet:ingest"
    assert data["agent"]["stet:agent/tester"]["prov:type"] == "prov:Person"

    # each annotation revision attributed to its own author, linked to the previous one
    attributed = {(a["prov:entity"], a["prov:agent"]) for a in data["wasAttributedTo"].values()}
    assert (f"stet:annotation/{uid}/1", "stet:agent/ana") in attributed
    assert (f"stet:annotation/{uid}/2", "stet:agent/omid") in attributed
    assert data["entity"][f"stet:annotation/{uid}/2"]["stet:body"] == "second"
    revisions = [(r["prov:generatedEntity"], r["prov:usedEntity"])  # wasRevisionOf in PROV-JSON
                 for r in data["wasDerivedFrom"].values()
                 if r.get("prov:type") == {"$": "prov:Revision", "type": "xsd:QName"}]
    assert (f"stet:annotation/{uid}/2", f"stet:annotation/{uid}/1") in revisions

    # the parsed document has the same records
    records = {r.identifier.uri for r in document.get_records() if r.identifier}
    assert f"urn:stet:annotation/{uid}/2" in records and "urn:stet:document/1/text" in records


def test_prov_to_a_file(run, doc, tmp_path):
    target = tmp_path / "lineage.json"
    out = run("prov", "1", "-o", target)
    assert out.exit_code == 0 and out.stdout == ""
    ProvDocument.deserialize(content=target.read_text(encoding="utf-8"), format="json")
    assert not (tmp_path / "lineage.json.partial").exists()


def test_prov_of_an_attachment_links_its_message(run, tmp_path):
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = "a@example.org"
    message["To"] = "b@example.org"
    message["Subject"] = "s"
    message.set_content("body")
    message.add_attachment(b"attached bytes", maintype="application", subtype="octet-stream",
                           filename="x.bin")
    path = tmp_path / "m.eml"
    path.write_bytes(message.as_bytes())
    assert run("ingest", path, "-s").exit_code == 0
    data = json.loads(run("prov", "2").stdout)
    links = [d for d in data["wasDerivedFrom"].values() if d.get("prov:type") == "stet:Attachment"]
    assert len(links) == 1 and links[0]["prov:usedEntity"].startswith("sha256:")


def test_prov_of_a_missing_document(run, doc):
    out = run("prov", "99")
    assert out.exit_code == 1
    assert out.stderr == "Error: no document 99\n"
