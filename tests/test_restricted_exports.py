"""Restricted material leaves only when asked: `stet export` leaves out the annotations on
documents the public may not see (restricted now, by the chain, or an attachment of one)
unless given --include-restricted, says how many it left out, and refuses a restricted DOC
named without the flag (issue 9, leak 4)."""

import io
import json

import pytest

from test_extract_formats import make_email

WARNING = "Warning: left out {} annotations on restricted documents (--include-restricted to include them)\n"


@pytest.fixture
def mixed(run, archive, tmp_path):
    """Documents 1 (public), 2 (ingested restricted), 3 (restricted later, by an event),
    4 a restricted message with attachments 5 and 6; one annotation on each of 1..5, two on
    1, and annotation 3 (on document 2) revised once."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "public.txt").write_text("a public statement", encoding="utf-8")
    (src / "secret.txt").write_text("a witness's name", encoding="utf-8")
    (src / "later.txt").write_text("restricted later", encoding="utf-8")
    (src / "mail.eml").write_bytes(make_email())
    for name, *flags in (("public.txt",), ("secret.txt", "--restricted"), ("later.txt",),
                         ("mail.eml", "--restricted")):
        out = run("ingest", src / name, "-s", *flags)
        assert out.exit_code == 0, out.stderr
    assert run("restrict", "3", "--reason", "names a witness").exit_code == 0
    assert [(d["id"], d["parent"]) for d in archive.documents()][3:5] == [(4, None), (5, 4)]
    archive.annotate(1, layer="claims", start=0, end=1, body="one")
    archive.annotate(1, layer="entities", start=2, end=8, body="two")
    archive.annotate(2, layer="entities", start=2, end=9, body="hidden")
    archive.revise(3, body="hidden, revised")
    archive.annotate(3, layer="claims", start=0, end=4, body="hidden later")
    archive.annotate(5, layer="claims", start=0, end=2, body="on an attachment")
    return archive


def lines(out):
    return [json.loads(line) for line in out.stdout.splitlines()]


def body(item):
    bodies = item["body"] if isinstance(item["body"], list) else [item["body"]]
    return bodies[0]["value"]


def test_export_leaves_out_restricted_annotations_and_says_so(run, mixed):
    out = run("export", "--format", "jsonl")
    assert out.exit_code == 0, out.stderr
    assert [body(item) for item in lines(out)] == ["one", "two"]
    assert out.stderr == WARNING.format(3)


def test_include_restricted_exports_everything_without_a_warning(run, mixed):
    out = run("export", "--format", "jsonl", "--include-restricted")
    assert out.exit_code == 0, out.stderr
    assert [body(item) for item in lines(out)] == [
        "one", "two", "hidden, revised", "hidden later", "on an attachment"]
    assert out.stderr == ""


def test_history_counts_annotations_not_revisions(run, mixed, tmp_path):
    target = tmp_path / "history.jsonl"
    out = run("export", "--format", "jsonl", "--history", "-o", target)
    assert out.exit_code == 0, out.stderr
    assert out.stderr == WARNING.format(3)
    assert len(target.read_text(encoding="utf-8").splitlines()) == 2
    out = run("export", "--format", "jsonl", "--history", "--include-restricted")
    assert len(lines(out)) == 6 and out.stderr == ""


def test_a_layer_counts_only_what_it_would_have_exported(run, mixed):
    out = run("export", "--format", "jsonl", "--layer", "entities")
    assert [body(item) for item in lines(out)] == ["two"]
    assert out.stderr == WARNING.format(1).replace("annotations", "annotation")


@pytest.mark.parametrize("doc", ["2", "3", "5"])  # restricted, restricted later, attachment
def test_naming_a_restricted_document_is_an_error(run, mixed, tmp_path, doc):
    target = tmp_path / "out.json"
    out = run("export", "1", doc, "-o", target)
    assert out.exit_code == 1
    assert out.stderr == (f"Error: document {doc} is restricted: give --include-restricted "
                          "to export it\n")
    assert not target.exists() and list(tmp_path.glob("out.json*")) == []
    out = run("export", doc, "--format", "jsonl")  # to stdout: nothing written before it
    assert out.exit_code == 1 and out.stdout == ""
    out = run("export", doc, "--format", "jsonl", "--include-restricted")
    assert out.exit_code == 0 and len(lines(out)) == 1 and out.stderr == ""


def test_restriction_comes_from_the_chain(run, mixed):
    assert run("unrestrict", "3", "--reason", "consent given").exit_code == 0
    out = run("export", "--format", "jsonl")
    assert [body(item) for item in lines(out)] == ["one", "two", "hidden later"]
    assert out.stderr == WARNING.format(2)
    assert run("export", "3", "--format", "jsonl").exit_code == 0


def test_the_library_reports_what_it_left_out(mixed):
    out = io.StringIO()
    assert mixed.export(out, fmt="jsonl") == {"annotations": 2, "left_out": 3}
    assert len(out.getvalue().splitlines()) == 2
    assert mixed.export(io.StringIO(), fmt="jsonl", include_restricted=True) == {
        "annotations": 5, "left_out": 0}
    # naming only public documents leaves nothing out, though other documents are restricted
    assert mixed.export(io.StringIO(), [1], fmt="brat") == {"annotations": 2, "left_out": 0}


def test_the_help_documents_the_flag(run):
    out = run("export", "--help")
    assert "--include-restricted" in out.stdout and "left out" in out.stdout


def test_prov_can_leave_restricted_material_out(mixed, tmp_path):
    from stet.errors import InvalidInput

    copy = tmp_path / "copy.txt"
    copy.write_text("a public statement", encoding="utf-8")  # document 1's bytes
    [result] = mixed.ingest([copy], restricted=True, source="a tip-off")
    assert result["status"] == "duplicate"
    assert str(copy) in mixed.prov(1, include_restricted=True)  # the private lineage
    public = json.loads(mixed.prov(1))  # the default leaves restricted material out
    assert str(copy) not in json.dumps(public, ensure_ascii=False)
    assert len(public["activity"]) == 1 + 1  # the first ingest and the extraction
    for doc in (2, 3, 5):
        with pytest.raises(InvalidInput, match=f"document {doc} is restricted"):
            mixed.prov(doc)


def test_stet_prov_refuses_a_restricted_document_unless_asked(mixed, run):
    result = run("prov", "2")
    assert result.exit_code == 1
    assert result.output == "Error: document 2 is restricted: give --include-restricted to export it\n"
    assert run("prov", "2", "--include-restricted").exit_code == 0
