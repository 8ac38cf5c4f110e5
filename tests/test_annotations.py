"""Annotations: anchoring in any script, revisions, retractions, the past, overlap, refusals."""

import json
import sqlite3

import pytest

from stet import timeutil
from stet.errors import Ambiguous, InvalidInput, NotFound

FA = "اعلامیه جهانی حقوق بشر: آزادی‌های اساسی با همکاری سازمان ملل متحد تأمین شود."
AR = "لِكُلِّ شَخْصٍ حَقُّ التَّمَتُّعِ بِكَافَّةِ الْحُقُوقِ وَالْحُرِّيَّاتِ."
EMOJI = "A family 👩\u200d👩\u200d👧 and a flag 🇮🇷, cafe\u0301 and the cat and the cat."
FIELDS = {"id", "uuid", "document", "layer", "reply_to", "start", "end", "exact", "prefix",
          "suffix", "body", "motivation", "tags", "creator", "author", "created", "modified",
          "revision", "status", "reason", "carried_from", "anchoring", "score"}


@pytest.fixture
def docs(archive, tmp_path):
    """Three small documents: Persian with ZWNJ, Arabic with harakat, emoji and Latin."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for name, text in (("1-fa.txt", FA), ("2-ar.txt", AR), ("3-mixed.txt", EMOJI)):
        (folder / name).write_text(text, encoding="utf-8")
    results = archive.ingest([folder], by="archivist", source="test")
    return {name: r["id"] for name, r in zip(("fa", "ar", "mixed"), results)}


def counts(archive):
    return (archive.conn.execute("SELECT count(*) FROM annotation_revisions").fetchone()[0],
            archive.conn.execute("SELECT count(*) FROM events").fetchone()[0])


# -- anchoring in any script -----------------------------------------------------------------


def test_annotate_by_offsets_gives_every_field(archive, docs):
    a = archive.annotate(docs["fa"], layer="entities", start=0, end=7, body="title", by="ana",
                         tags=["heading", "heading", "fa"])
    assert set(a) == FIELDS
    assert a["exact"] == FA[0:7] == "اعلامیه"
    assert (a["prefix"], a["suffix"]) == ("", FA[7:39])
    assert a["tags"] == ["heading", "fa"]
    assert (a["revision"], a["status"], a["motivation"]) == (1, "active", "commenting")
    assert a["creator"] == a["author"] == "ana" and a["created"] == a["modified"]
    assert a["created"].endswith("Z") and a["uuid"] and a["reply_to"] is None


def test_quote_with_zwnj_counts_code_points(archive, docs):
    a = archive.annotate(docs["fa"], layer="translation", quote="آزادی‌های اساسی", body="ZWNJ")
    assert FA[a["start"]:a["end"]] == "آزادی‌های اساسی"
    assert a["end"] - a["start"] == 15  # the ZWNJ (U+200C) is one code point
    assert a["prefix"] == FA[max(0, a["start"] - 32):a["start"]]
    assert a["suffix"] == FA[a["end"]:a["end"] + 32]


def test_quote_with_combining_marks(archive, docs):
    a = archive.annotate(docs["ar"], layer="entities", quote="شَخْصٍ", body="person")
    assert (a["start"], a["end"]) == (AR.index("شَخْصٍ"), AR.index("شَخْصٍ") + 6)
    assert a["exact"] == "ش\u064eخ\u0652ص\u064d"


def test_emoji_zwj_sequence_and_decomposed_accent(archive, docs):
    family = archive.annotate(docs["mixed"], layer="x", quote="👩\u200d👩\u200d👧")
    assert family["end"] - family["start"] == 5
    accent = archive.annotate(docs["mixed"], layer="x", quote="cafe\u0301")
    assert accent["exact"] == "cafe\u0301" and accent["end"] - accent["start"] == 5
    assert archive.text(docs["mixed"])[accent["start"]:accent["end"]] == "cafe\u0301"


def test_ambiguous_quote_says_how_many_and_prefix_or_suffix_chooses(archive, docs):
    before = counts(archive)
    with pytest.raises(Ambiguous) as error:
        archive.annotate(docs["mixed"], layer="x", quote="the cat")
    assert str(error.value) == (
        f"document {docs['mixed']}: quote 'the cat' matches 2 places in the text: add prefix "
        "or suffix (the text just before or after it) to choose one")
    assert counts(archive) == before
    second = archive.annotate(docs["mixed"], layer="x", quote="the cat", prefix="and ", suffix=".")
    assert second["start"] == EMOJI.rindex("the cat")
    first = archive.annotate(docs["mixed"], layer="x", quote="the cat", suffix=" and")
    assert first["start"] == EMOJI.index("the cat")


def test_quote_not_found_and_with_context_not_found(archive, docs):
    with pytest.raises(NotFound) as error:
        archive.annotate(docs["fa"], layer="x", quote="حقوق زن")
    assert str(error.value) == f"document {docs['fa']}: quote 'حقوق زن' not found in the text"
    with pytest.raises(NotFound) as error:
        archive.annotate(docs["mixed"], layer="x", quote="the cat", prefix="zebra ")
    assert str(error.value).endswith("not found in the text with that prefix/suffix")


@pytest.mark.parametrize("kwargs, message", [
    ({"start": 5, "end": 5}, "span 5:5 is not within the text: need 0 <= start < end <= {n}"),
    ({"start": 6, "end": 2}, "span 6:2 is not within the text: need 0 <= start < end <= {n}"),
    ({"start": -1, "end": 2}, "span -1:2 is not within the text: need 0 <= start < end <= {n}"),
    ({"start": 0, "end": 999}, "span 0:999 is not within the text: need 0 <= start < end <= {n}"),
    ({"start": 3}, "give both start and end (or quote)"),
    ({"start": 0, "end": 3, "quote": "x"}, "give either start/end or quote, not both"),
    ({"start": 0, "end": 3, "prefix": "x"}, "prefix and suffix go with quote"),
    ({}, "an annotation needs a span (start/end or quote); only a reply (reply_to) may have none"),
    ({"start": 0, "end": 3, "motivation": "liking"}, "unknown motivation 'liking': use one of "
     "assessing, bookmarking, classifying, commenting, describing, editing, highlighting, "
     "identifying, linking, moderating, questioning, replying, tagging, correcting"),
    ({"start": 0, "end": 3, "tags": [""]}, "a tag must be a non-empty string"),
])
def test_bad_spans_are_refused_and_write_nothing(archive, docs, kwargs, message):
    before = counts(archive)
    with pytest.raises(InvalidInput) as error:
        archive.annotate(docs["ar"], layer="x", **kwargs)
    assert message.format(n=len(AR)).split(": ", 1)[-1] in str(error.value)
    assert counts(archive) == before


def test_unknown_document_is_refused(archive, docs):
    with pytest.raises(NotFound) as error:
        archive.annotate(99, layer="x", start=0, end=1)
    assert str(error.value) == "no document 99"


# -- replies, revisions, retractions ----------------------------------------------------------


def test_reply_needs_no_span_and_stays_on_its_parents_document(archive, docs):
    parent = archive.annotate(docs["fa"], layer="claims", quote="سازمان ملل متحد", by="ana")
    reply = archive.annotate(docs["fa"], layer="claims", reply_to=parent["id"],
                             body="Checked against the charter", by="bo")
    assert (reply["reply_to"], reply["start"], reply["exact"]) == (parent["id"], None, None)
    assert reply["motivation"] == "replying"
    with pytest.raises(InvalidInput) as error:
        archive.annotate(docs["ar"], layer="claims", reply_to=parent["id"])
    assert str(error.value) == (f"annotation {parent['id']} is on document {docs['fa']}, "
                                f"not {docs['ar']}")
    with pytest.raises(NotFound):
        archive.annotate(docs["fa"], layer="claims", reply_to=999)


def test_revise_appends_and_keeps_what_is_not_given(archive, docs):
    a = archive.annotate(docs["fa"], layer="entities", quote="سازمان ملل متحد",
                         body="the United Nations", tags=["org"], by="ana")
    b = archive.revise(a["id"], body="United Nations (UN)", by="bo")
    assert (b["id"], b["uuid"], b["revision"], b["body"]) == (a["id"], a["uuid"], 2, "United Nations (UN)")
    assert (b["creator"], b["author"], b["created"]) == ("ana", "bo", a["created"])
    assert (b["start"], b["end"], b["tags"]) == (a["start"], a["end"], ["org"])
    assert timeutil.parse_micros(b["modified"]) >= timeutil.parse_micros(a["modified"])
    c = archive.revise(a["id"], quote="ملل متحد", tags=["org", "un"], by="ana")
    assert (c["exact"], c["tags"], c["body"]) == ("ملل متحد", ["org", "un"], "United Nations (UN)")
    history = list(archive.history(a["id"]))
    assert [h["revision"] for h in history] == [1, 2, 3]
    assert [h["author"] for h in history] == ["ana", "bo", "ana"]
    assert history[0]["body"] == "the United Nations"


def test_revise_refusals(archive, docs):
    a = archive.annotate(docs["ar"], layer="x", start=0, end=3)
    with pytest.raises(InvalidInput) as error:
        archive.revise(a["id"])
    assert str(error.value) == ("nothing to revise: give body, start/end, quote, tags "
                                "or motivation")
    with pytest.raises(InvalidInput) as error:
        archive.revise(a["id"], start=0, end=len(AR) + 1)
    assert "need 0 <= start < end" in str(error.value)
    with pytest.raises(NotFound) as error:
        archive.revise(42, body="x")
    assert str(error.value) == "no annotation 42"
    archive.retract(a["id"])
    with pytest.raises(InvalidInput) as error:
        archive.revise(a["id"], body="again")
    assert str(error.value) == f"annotation {a['id']} is retracted; it cannot be revised"
    with pytest.raises(InvalidInput) as error:
        archive.retract(a["id"])
    assert str(error.value) == f"annotation {a['id']} is already retracted"


def test_retract_is_a_tombstone(archive, docs):
    keep = archive.annotate(docs["ar"], layer="x", start=0, end=3, by="ana")
    gone = archive.annotate(docs["ar"], layer="x", start=5, end=9, by="ana")
    tomb = archive.retract(gone["id"], reason="duplicate", by="bo")
    assert (tomb["status"], tomb["reason"], tomb["revision"], tomb["author"]) == (
        "retracted", "duplicate", 2, "bo")
    assert [a["id"] for a in archive.annotations(docs["ar"])] == [keep["id"]]
    assert [a["id"] for a in archive.annotations(docs["ar"], include_retracted=True)] == [
        keep["id"], gone["id"]]
    assert [h["status"] for h in archive.history(gone["id"])] == ["active", "retracted"]


# -- the past, overlap, filters ----------------------------------------------------------------


def test_as_of_instants_between_revisions(archive, docs):
    a = archive.annotate(docs["fa"], layer="claims", start=0, end=7, body="v1", by="ana")
    b = archive.revise(a["id"], body="v2", by="bo")
    c = archive.retract(a["id"], by="ana")
    t1, t2, t3 = (timeutil.parse_micros(x["modified"]) for x in (a, b, c))
    assert t1 <= t2 <= t3

    def bodies(at, **kw):
        return [(x["body"], x["status"]) for x in archive.annotations(docs["fa"], at=at, **kw)]

    assert bodies(timeutil.from_micros(t1 - 1)) == []
    assert bodies(a["modified"]) == [("v1", "active")]
    if t2 > t1:
        assert bodies(timeutil.from_micros(t2 - 1)) == [("v1", "active")]
    assert bodies(b["modified"]) == [("v2", "active")]
    assert bodies(c["modified"]) == []
    assert bodies(c["modified"], include_retracted=True) == [("v2", "retracted")]
    # the same instant written in another zone is the same instant
    moment = timeutil.parse(b["modified"])
    from datetime import timedelta, timezone
    tehran = moment.astimezone(timezone(timedelta(hours=3, minutes=30))).isoformat()
    assert bodies(tehran) == bodies(b["modified"])
    assert bodies("2000-01-01") == []


def test_as_of_keeps_other_documents_and_layers_apart(archive, docs):
    archive.annotate(docs["fa"], layer="a", start=0, end=7)
    b = archive.annotate(docs["ar"], layer="b", start=0, end=3)
    now = timeutil.iso(timeutil.now())
    assert [x["id"] for x in archive.annotations(docs["ar"], at=now)] == [b["id"]]
    assert [x["id"] for x in archive.annotations(at=now, layer="b")] == [b["id"]]


def test_bad_instant_is_refused(archive, docs):
    with pytest.raises(InvalidInput) as error:
        archive.annotations(docs["fa"], at="last tuesday")
    assert str(error.value) == "not an ISO 8601 time: 'last tuesday'"


@pytest.mark.parametrize("window, hit", [
    ((20, 30), False), ((19, 20), True), ((0, 10), False), ((0, 11), True),
    ((12, 13), True), ((5, 25), True), ((10, 20), True), ((9, 10), False),
])
def test_overlap_is_half_open(archive, docs, window, hit):
    a = archive.annotate(docs["ar"], layer="x", start=10, end=20)
    found = archive.annotations(docs["ar"], overlapping=window)
    assert [x["id"] for x in found] == ([a["id"]] if hit else [])


def test_author_matches_the_creator_and_layer_filters(archive, docs):
    a = archive.annotate(docs["ar"], layer="x", start=0, end=3, by="ana")
    archive.revise(a["id"], body="edited", by="bo")
    b = archive.annotate(docs["ar"], layer="y", start=3, end=6, by="bo")
    assert [x["id"] for x in archive.annotations(author="ana")] == [a["id"]]
    assert [x["id"] for x in archive.annotations(author="bo")] == [b["id"]]
    assert [x["id"] for x in archive.annotations(layer="y")] == [b["id"]]
    with pytest.raises(NotFound) as error:
        archive.annotations(layer="nope")
    assert str(error.value) == "no layer 'nope'"


# -- layers, events, the database's own refusals -----------------------------------------------


def test_layers_are_created_on_first_use_or_explicitly(archive, docs):
    layer = archive.add_layer("claims", description="Claims to verify", colour="#e6550d", by="ana")
    assert (layer["name"], layer["colour"], layer["created_by"]) == ("claims", "#e6550d", "ana")
    with pytest.raises(InvalidInput) as error:
        archive.add_layer("claims")
    assert str(error.value) == "layer 'claims' already exists"
    with pytest.raises(InvalidInput) as error:
        archive.add_layer("x", colour="red; background: url(x)")
    assert "give #rgb, #rrggbb or a CSS colour name" in str(error.value)
    archive.annotate(docs["ar"], layer="entities", start=0, end=3)
    assert [(layer["name"], layer["annotations"]) for layer in archive.layers()] == [("claims", 0), ("entities", 1)]


def test_every_write_is_an_event_in_the_chain(archive, docs):
    start = len(list(archive.log()))
    a = archive.annotate(docs["ar"], layer="x", start=0, end=3, by="ana")
    archive.revise(a["id"], body="b", by="bo")
    archive.retract(a["id"], by="ana")
    archive.add_layer("more", by="ana")
    events = list(archive.log())[start:]
    assert [e["action"] for e in events] == ["layer-add", "annotate", "revise", "retract", "layer-add"]
    assert events[1]["subject"] == f"annotation:{a['id']}"
    assert events[1]["document"] == docs["ar"]
    assert events[2]["details"]["revision"] == 2 and events[2]["actor"] == "bo"
    assert archive.verify() == []


def test_database_refuses_rewriting_history(archive, docs):
    a = archive.annotate(docs["ar"], layer="x", start=0, end=3)
    for sql in ("UPDATE annotation_revisions SET body = 'x'", "DELETE FROM annotation_revisions",
                "UPDATE layers SET name = 'y'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            archive.conn.execute(sql)
    columns = ('annotation, revision, uuid, document, layer, motivation, creator, author, '
               'created, modified, modified_us, status, start, "end", exact')
    row = archive.conn.execute(f"SELECT {columns} FROM annotation_revisions").fetchone()
    skipping = (row[0], 3) + row[2:]
    with pytest.raises(sqlite3.DatabaseError, match="revision must follow the last one"):
        archive.conn.execute(f"INSERT INTO annotation_revisions ({columns}) VALUES "
                             f"({', '.join('?' * 15)})", skipping)
    other_creator = (row[0], 2) + row[2:6] + ("mallory",) + row[7:]
    with pytest.raises(sqlite3.DatabaseError, match="keeps its annotation's uuid"):
        archive.conn.execute(f"INSERT INTO annotation_revisions ({columns}) VALUES "
                             f"({', '.join('?' * 15)})", other_creator)
    reused_uuid = (a["id"] + 1, 1) + row[2:]
    with pytest.raises(sqlite3.IntegrityError, match="annotations.uuid"):
        archive.conn.execute(f"INSERT INTO annotation_revisions ({columns}) VALUES "
                             f"({', '.join('?' * 15)})", reused_uuid)


def test_verify_names_a_span_written_behind_stets_back(archive, docs):
    archive.annotate(docs["ar"], layer="x", start=0, end=3)
    columns = ('annotation, revision, uuid, document, layer, motivation, creator, author, '
               'created, modified, modified_us, status, start, "end", exact')
    row = list(archive.conn.execute(f"SELECT {columns} FROM annotation_revisions").fetchone())
    row[1], row[-1] = 2, "xyz"  # as long as the span (a CHECK refuses any other length)
    archive.conn.execute(f"INSERT INTO annotation_revisions ({columns}) VALUES "
                         f"({', '.join('?' * 15)})", row)
    problems = archive.verify()
    assert f"annotation 1 revision 2: exact is not the text at 0:3 of document {docs['ar']}" \
        in problems
    # and no event of the chain wrote it: the row is held to the chain too
    assert "annotation 1 revision 2: no event records it (no annotate, revise or retract " \
        "event, and no import's or reanchor's rows)" in problems


# -- the command line --------------------------------------------------------------------------


@pytest.fixture
def cli_docs(run, docs, archive):
    return docs


def test_cli_annotate_revise_retract_history(run, cli_docs):
    fa = cli_docs["fa"]
    result = run("annotate", fa, "--layer", "entities", "--quote", "سازمان ملل متحد",
                 "--body", "United Nations", "--tag", "org", "--json", "--by", "ana")
    assert result.exit_code == 0, result.output
    a = json.loads(result.stdout)  # stderr warns: a new layer
    assert set(a) == FIELDS and a["exact"] == "سازمان ملل متحد" and a["author"] == "ana"
    result = run("revise", a["id"], "--body", "UN", "--json", "--by", "bo")
    assert json.loads(result.output)["revision"] == 2
    other = json.loads(run("annotate", fa, "--layer", "claims", "--start", 0, "--end", 7,
                           "--json").stdout)
    result = run("retract", other["id"], "--reason", "wrong layer")
    assert result.exit_code == 0 and "[retracted]" in result.output
    history = json.loads(run("history", a["id"], "--json").output)
    assert [(h["revision"], h["author"], h["body"]) for h in history] == [
        (1, "ana", "United Nations"), (2, "bo", "UN")]
    listing = json.loads(run("annotations", fa, "--json").output)
    assert [x["id"] for x in listing] == [a["id"]]
    past = json.loads(run("annotations", fa, "--at", history[0]["modified"], "--json",
                          "--include-retracted").output)
    assert [x["body"] for x in past] == ["United Nations"]
    text = run("annotations", fa, "--layer", "entities").output
    assert "سازمان ملل متحد" in text and "UN" in text
    overlap = json.loads(run("annotations", fa, "--overlapping", f"{a['start']}:{a['start'] + 1}",
                             "--json").output)
    assert [x["id"] for x in overlap] == [a["id"]]


@pytest.mark.parametrize("args, message", [
    (("annotate", 1, "--layer", "x", "--quote", "the cat"),
     "Error: document 3: quote 'the cat' matches 2 places in the text: add --prefix or --suffix"),
    (("annotate", 1, "--layer", "x", "--start", 5, "--end", 500),
     "Error: document 1: span 5:500 is not within the text"),
    (("revise", 7, "--body", "x"), "Error: no annotation 7"),
    (("retract", 7), "Error: no annotation 7"),
    (("history", 7), "Error: no annotation 7"),
    (("annotations", "--overlapping", "9:3"), "Error: --overlapping '9:3': N must be less than M"),
    (("annotations", "--overlapping", "a:b"), "Error: --overlapping 'a:b': give N:M, two integers"),
    (("annotations", "--at", "yesterday"), "Error: not an ISO 8601 time: 'yesterday'"),
    (("annotations", "123456789"), "Error: '123456789' could be a document id or a SHA-256 prefix"),
])
def test_cli_refusals(run, cli_docs, args, message):
    if args[0] == "annotate" and "the cat" in args:
        args = ("annotate", cli_docs["mixed"]) + args[2:]
    result = run(*args)
    assert result.exit_code == 1
    assert result.output.startswith(message) or message in result.output
    assert result.output.count("\n") == 1


def test_cli_layer_add_and_list(run, cli_docs):
    result = run("layer", "add", "claims", "--description", "Claims to verify", "--colour", "#c00")
    assert result.exit_code == 0 and result.output == "layer 1: claims\n"
    assert run("layer", "add", "claims").output == "Error: layer 'claims' already exists\n"
    listing = json.loads(run("layer", "list", "--json").output)
    assert [(layer["name"], layer["description"]) for layer in listing] == [("claims", "Claims to verify")]


def test_every_command_has_help_with_an_example(run):
    for command in (("layer", "add"), ("layer", "list"), ("annotate",), ("revise",),
                    ("retract",), ("annotations",), ("history",), ("export",), ("import",)):
        result = run(*command, "--help")
        assert result.exit_code == 0 and "Example:" in result.output, command


# -- refusals that are messages (issue 16, items 4 and 6) ------------------------------------


def test_by_must_name_someone(run, cli_docs):
    for by in ("", "  "):
        result = run("annotate", cli_docs["fa"], "--layer", "x", "--start", 0, "--end", 3,
                     "--by", by)
        assert result.exit_code == 2 and result.stderr.endswith("Error: --by needs a name\n")
    result = run("layer", "add", "claims", "--by", "")
    assert result.exit_code == 2 and "--by needs a name" in result.stderr


def test_the_same_span_twice_warns(run, cli_docs):
    fa = cli_docs["fa"]
    first = run("annotate", fa, "--layer", "entities", "--quote", "ملل", "--body", "UN", "--json")
    number = json.loads(first.stdout)["id"]
    again = run("annotate", fa, "--layer", "entities", "--quote", "ملل", "--body", "UN")
    assert again.exit_code == 0
    assert again.stderr == (f"Warning: annotation {number} already marks this span in layer "
                            "'entities' with this body\n")
    other = run("annotate", fa, "--layer", "entities", "--quote", "ملل", "--body", "other")
    assert other.stderr == (f"Warning: annotation {number} already marks this span in layer "
                            "'entities'\n")
    elsewhere = run("annotate", fa, "--layer", "claims2", "--quote", "ملل", "--body", "UN")
    assert "already marks" not in elsewhere.stderr  # another layer: only the new-layer warning


def test_a_reply_takes_its_parents_document_and_layer(run, archive, docs):
    parent = archive.annotate(docs["fa"], layer="claims", quote="سازمان ملل متحد", by="ana")
    result = run("annotate", "--reply-to", parent["id"], "--body", "agreed", "--json")
    assert result.exit_code == 0, result.output
    reply = json.loads(result.stdout)
    assert (reply["document"], reply["layer"], reply["reply_to"]) == (
        docs["fa"], "claims", parent["id"])
    result = run("annotate", "--reply-to", parent["id"], "--layer", "entities", "--body", "x")
    assert result.exit_code == 1 and result.stderr == (
        f"Error: annotation {parent['id']} is in layer 'claims', not 'entities': a reply is in "
        "its parent's layer\n")
    result = run("annotate", docs["ar"], "--reply-to", parent["id"], "--body", "x")
    assert result.exit_code == 1 and "is on document" in result.stderr
    result = run("annotate", "--layer", "claims", "--start", 0, "--end", 3)
    assert result.exit_code == 2 and "give DOC" in result.stderr


def test_an_empty_table_says_so(run, archive, docs):
    result = run("annotations", docs["fa"], "--at", "2026-01-01")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, "", "no annotations at that instant\n")
    result = run("annotations", docs["fa"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "no annotations\n")
    for fmt, out in (("--json", "[]\n"), ("--nl", ""), ("--csv", "")):
        result = run("annotations", docs["fa"], "--at", "2026-01-01", fmt)
        assert (result.exit_code, result.stdout, result.stderr) == (0, out, "")


def test_replies_are_listed_after_their_parent(run, archive, docs):
    fa = docs["fa"]
    late = archive.annotate(fa, layer="c", start=40, end=45, by="ana")
    early = archive.annotate(fa, layer="c", start=0, end=5, by="ana")
    r1 = archive.annotate(fa, layer="c", reply_to=late["id"], by="bo")
    r2 = archive.annotate(fa, layer="c", reply_to=early["id"], by="bo")
    r11 = archive.annotate(fa, layer="c", reply_to=r1["id"], by="cy")
    r3 = archive.annotate(fa, layer="c", reply_to=late["id"], by="bo")
    expected = [early["id"], r2["id"], late["id"], r1["id"], r11["id"], r3["id"]]
    assert [a["id"] for a in archive.annotations(fa)] == expected
    assert [a["id"] for a in json.loads(run("annotations", fa, "--json").stdout)] == expected
    assert [json.loads(x)["id"] for x in run("annotations", fa, "--nl").stdout.splitlines()] \
        == expected
    assert [int(x.split(",")[0]) for x in run("annotations", fa, "--csv").stdout.splitlines()[1:]] \
        == expected
    assert [int(x.split()[0]) for x in run("annotations", fa).stdout.splitlines()[2:]] == expected
    # a reply whose parent is not listed stands where its thread's span starts
    archive.retract(late["id"], by="ana")
    assert [a["id"] for a in archive.annotations(fa)] == [
        early["id"], r2["id"], r1["id"], r11["id"], r3["id"]]
