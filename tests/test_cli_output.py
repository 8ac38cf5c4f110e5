"""Listing commands speak sqlite-utils' output options (--json, --nl, --csv, --tsv, --table),
stream from the library's iterators, and take the filters users asked for; long commands
show a progress bar on a terminal only (issue 11, items 7 and 8)."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from datetime import datetime, timedelta, timezone

import pytest

from stet import Archive
from stet.cli import common, output
from stet.publish import STEPS

TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
T = "2026-01-01T00:00:00.000000Z"  # as wide as every stored time: tables keep their widths


def out(result) -> str:
    """Standard output exactly (``result.stdout`` turns CSV's CR LF line ends into LF)."""
    return result.stdout_bytes.decode("utf-8")


def timeless(text: str) -> str:
    return TIME.sub(T, text)


@pytest.fixture
def site(tmp_path, db_path):
    """Two documents (one restricted), two layers, three annotations."""
    (tmp_path / "a.txt").write_text("alpha text here", encoding="utf-8")
    (tmp_path / "b.txt").write_text('beta, "quoted"\n', encoding="utf-8")
    with Archive(db_path) as archive:
        archive.ingest([tmp_path / "a.txt"], by="ana", title="Alpha",
                       source="https://example.org/press")
        archive.ingest([tmp_path / "b.txt"], by="bo", restricted=True, source="Field office")
        archive.annotate(1, layer="claims", start=0, end=5, body="first word", by="ana",
                         tags=["check", "x"])
        archive.annotate(1, layer="claims", start=6, end=10, body="second", by="bo",
                         tags=["check"])
        archive.add_layer("entities", by="ana", description="People, places", colour="#c00")
        archive.annotate(2, layer="entities", quote="quoted", body='say "hi", twice', by="ana")
        return {"times": [d["ingested_at"] for d in archive.documents()]}


# -- the formats --------------------------------------------------------------------------


def test_documents_table_is_the_default(run, site):
    expected = (
        "  id  sha256        media_type      size  restricted    title\n"
        "----  ------------  ------------  ------  ------------  -------\n"
        "   1  a5ec06fbc5df  text/plain        15  no            Alpha\n"
        "   2  9241b9fc8602  text/plain        15  yes           b.txt\n"
    )
    assert run("documents").stdout == expected
    assert run("documents", "--table").stdout == expected
    assert run("documents", "-t").stdout == expected


def test_documents_json_is_the_array_as_before(run, site, archive):
    result = run("documents", "--json")
    docs = list(archive.documents())
    assert result.stdout == json.dumps(docs, ensure_ascii=False, indent=2) + "\n"
    assert [d["id"] for d in docs] == [1, 2]


def test_documents_nl_is_one_object_per_line(run, site, archive):
    assert run("documents", "--nl").stdout == "".join(
        json.dumps(d, ensure_ascii=False) + "\n" for d in archive.documents())


def test_documents_csv_and_tsv(run, site):
    a, b = site["times"]
    sha_a = "a5ec06fbc5df370a4d4ab8378e1f0fb68cda117bd1f105fee856a7fb901b0e79"
    sha_b = "9241b9fc8602da3fd2951369e529924fa494a88864f2d05b0e3d832c6163de17"
    header = ("id,sha256,title,filename,media_type,size,source,restricted,ingested_by,"
              "ingested_at,parent,supersedes,text_length,extractor\r\n")
    assert out(run("documents", "--csv")) == (
        header
        + f"1,{sha_a},Alpha,a.txt,text/plain,15,https://example.org/press,0,ana,{a},,,15,stet.text\r\n"
        + f"2,{sha_b},b.txt,b.txt,text/plain,15,Field office,1,bo,{b},,,15,stet.text\r\n")
    assert out(run("documents", "--tsv")) == (
        header.replace(",", "\t")
        + f"1\t{sha_a}\tAlpha\ta.txt\ttext/plain\t15\thttps://example.org/press\t0\tana\t{a}"
          "\t\t\t15\tstet.text\r\n"
        + f"2\t{sha_b}\tb.txt\tb.txt\ttext/plain\t15\tField office\t1\tbo\t{b}\t\t\t15\tstet.text\r\n")


def test_annotations_in_every_format(run, site):
    assert timeless(run("annotations").stdout) == (
        "  id    document  layer     span    author    modified                       revision  status    tags      exact    body\n"
        "----  ----------  --------  ------  --------  ---------------------------  ----------  --------  --------  -------  ---------------\n"
        f"   1           1  claims    0:5     ana       {T}           1  active    check, x  alpha    first word\n"
        f"   2           1  claims    6:10    bo        {T}           1  active    check     text     second\n"
        f"   3           2  entities  7:13    ana       {T}           1  active              quoted   say \"hi\", twice\n"
    )
    rows = list(csv.DictReader(io.StringIO(run("annotations", "--csv").stdout, newline="")))
    assert [(r["id"], r["tags"], r["body"], r["reply_to"]) for r in rows] == [
        ("1", '["check", "x"]', "first word", ""), ("2", '["check"]', "second", ""),
        ("3", "[]", 'say "hi", twice', "")]
    tsv = out(run("annotations", "--tsv")).split("\r\n")
    assert tsv[0].split("\t")[:4] == ["id", "uuid", "document", "layer"]
    assert tsv[3].split("\t")[-13:-10] == ['"say ""hi"", twice"', "commenting", "[]"]
    lines = run("annotations", "--nl").stdout.splitlines()
    assert [json.loads(line)["tags"] for line in lines] == [["check", "x"], ["check"], []]
    assert json.loads(run("annotations", "--json").stdout)[2]["body"] == 'say "hi", twice'


def test_history_in_every_format(run, site, archive):
    archive.revise(1, body="first word!", by="bo")
    assert timeless(run("history", 1).stdout) == (
        "  revision  status    author    imported_by    modified                     layer    span    reason    exact    body\n"
        "----------  --------  --------  -------------  ---------------------------  -------  ------  --------  -------  -----------\n"
        f"         1  active    ana                      {T}  claims   0:5               alpha    first word\n"
        f"         2  active    bo                       {T}  claims   0:5               alpha    first word!\n"
    )
    revisions = list(archive.history(1))
    assert run("history", 1, "--json").stdout == json.dumps(revisions, ensure_ascii=False,
                                                             indent=2) + "\n"
    assert [json.loads(line)["revision"] for line in run("history", 1, "--nl").stdout.splitlines()] == [1, 2]
    rows = list(csv.DictReader(io.StringIO(run("history", 1, "--csv").stdout, newline="")))
    assert [(r["author"], r["body"], r["imported_by"]) for r in rows] == [
        ("ana", "first word", ""), ("bo", "first word!", "")]


def test_log_in_every_format(run, site, archive):
    events = list(archive.log())
    table = timeless(run("log").stdout).splitlines()
    assert table[:3] == [
        "  seq  time                         actor    action     subject         hash",
        "-----  ---------------------------  -------  ---------  --------------  ------------",
        f"    1  {T}  ana      ingest     document:1      {events[0]['hash'][:12]}",
    ]
    assert len(table) == 2 + len(events) == 2 + 7
    assert run("log", "--json").stdout == json.dumps(events, ensure_ascii=False, indent=2) + "\n"
    assert [json.loads(line) for line in run("log", "--nl").stdout.splitlines()] == events
    rows = list(csv.DictReader(io.StringIO(run("log", "--tsv").stdout, newline=""),
                               dialect="excel-tab"))
    assert [r["action"] for r in rows] == [e["action"] for e in events]
    assert json.loads(rows[0]["details"]) == events[0]["details"]  # an object: its JSON
    assert [r["seq"] for r in csv.DictReader(io.StringIO(run("log", "1", "--csv").stdout))] == \
        [str(e["seq"]) for e in events if e["document"] == 1]


def test_log_head_in_every_format(run, site, archive):
    head = archive.head()
    assert run("log", "--head").stdout == f"{head['length']}:{head['head']}\n"
    assert run("log", "--head", "--json").stdout == json.dumps(head) + "\n"
    assert run("log", "--head", "--nl").stdout == json.dumps(head) + "\n"
    assert out(run("log", "--head", "--csv")) == f"length,head\r\n{head['length']},{head['head']}\r\n"


def test_layer_list_in_every_format(run, site, archive):
    assert run("layer", "list").stdout == (
        "  id  name        annotations  colour    description\n"
        "----  --------  -------------  --------  --------------\n"
        "   1  claims                2\n"
        "   2  entities              1  #c00      People, places\n"
    )
    layers = archive.layers()
    assert run("layer", "list", "--json").stdout == json.dumps(layers, indent=2) + "\n"
    assert timeless(out(run("layer", "list", "--csv"))) == (
        "id,name,description,colour,created_by,created,annotations\r\n"
        f"1,claims,,,ana,{T},2\r\n"
        f'2,entities,"People, places",#c00,ana,{T},1\r\n')
    assert [json.loads(line)["name"] for line in run("layer", "list", "--nl").stdout.splitlines()] \
        == ["claims", "entities"]


def test_one_format_at_a_time(run, site):
    result = run("documents", "--json", "--csv")
    assert result.exit_code == 2
    assert result.output.endswith("Error: give only one of --json, --csv\n")


def test_an_empty_listing(run, site):
    assert run("annotations", "--author", "nobody", "--json").stdout == "[]\n"
    for flag in ("--nl", "--csv", "--tsv", "--table"):
        result = run("annotations", "--author", "nobody", flag)
        assert (result.exit_code, result.stdout) == (0, ""), flag


def test_an_error_comes_before_any_output(run, site):
    for flag in ("--json", "--nl", "--csv", "--table"):
        result = run("annotations", "--layer", "nope", flag)
        assert result.exit_code == 1
        assert result.output == "Error: no layer 'nope'\n", flag


# -- the filters --------------------------------------------------------------------------


def _ids(run, *args) -> list[int]:
    return [json.loads(line)["id"] for line in run(*args, "--nl").stdout.splitlines()]


def test_documents_filters(run, site, archive):
    assert _ids(run, "documents", "--source", "example.org") == [1]
    assert _ids(run, "documents", "--source", "Example.org") == []  # as given, case included
    assert _ids(run, "documents", "--source", "office") == [2]
    assert _ids(run, "documents", "--restricted") == [2]
    assert _ids(run, "documents", "--public") == [1]
    archive.unrestrict(2, reason="consent given", by="ana")
    assert _ids(run, "documents", "--restricted") == []  # the current state, from the chain
    first, second = site["times"]
    assert _ids(run, "documents", "--since", first) == [1, 2]
    assert _ids(run, "documents", "--since", second) == [2]  # at or after
    # an instant, in any zone
    elsewhere = datetime.fromisoformat(second.replace("Z", "+00:00")).astimezone(
        timezone(timedelta(hours=5, minutes=30))).isoformat()
    assert _ids(run, "documents", "--since", elsewhere) == [2]
    assert _ids(run, "documents", "--since", "2999-01-01", "--source", "office") == []
    result = run("documents", "--since", "yesterday")
    assert (result.exit_code, result.output) == (1, "Error: not an ISO 8601 time: 'yesterday'\n")


def test_annotations_tag_and_since(run, site, archive):
    assert _ids(run, "annotations", "--tag", "check") == [1, 2]
    assert _ids(run, "annotations", "--tag", "check", "--tag", "x") == [1]  # every tag given
    assert _ids(run, "annotations", "--tag", "nope") == []
    revised = archive.revise(2, body="second, revised", by="ana")
    assert _ids(run, "annotations", "--since", revised["modified"]) == [2]
    assert _ids(run, "annotations", "--since", "2000-01-01", "--tag", "x", "--layer", "claims") == [1]
    assert _ids(run, "annotations", "--since", revised["modified"], "--at",
                revised["created"]) == []  # as they stood then: revision 1, made before
    assert [a["id"] for a in archive.annotations(tags=["check"], since=revised["modified"])] == [2]


def test_overlapping_goes_through_the_library(archive, site):
    assert [a["id"] for a in archive.annotations(overlapping="4:7")] == [1, 2]
    assert [a["id"] for a in archive.annotations(overlapping=(4, 5))] == [1]


# -- streaming ------------------------------------------------------------------------------


def test_listings_are_iterators(archive, site):
    for listing in (archive.documents(), archive.log(), archive.annotations(),
                    archive.history(1), archive.documents(restricted=False)):
        assert iter(listing) is listing


def _rows(n: int, fail: bool = True):
    for i in range(n):
        yield {"id": i, "name": "x" * (i % 7)}
    if fail:
        raise RuntimeError("stopped")


@pytest.mark.parametrize("fmt", ["nl", "csv", "json", "table"])
def test_the_writer_streams(capsys, monkeypatch, fmt):
    """Rows leave a window at a time: what came before a failure was written already."""
    monkeypatch.setattr(output, "TABLE_WINDOW", 100)
    with pytest.raises(RuntimeError):
        output.write(_rows(250), fmt)
    written = capsys.readouterr().out
    assert written.count("\"id\"" if fmt in ("nl", "json") else "\n") >= 199


def test_the_table_aligns_a_window_at_a_time(capsys, monkeypatch):
    """Columns widen for a later, wider window and never narrow; the header is printed once."""
    monkeypatch.setattr(output, "TABLE_WINDOW", 2)
    rows = [{"id": 1, "name": "a"}, {"id": 2, "name": "bb"}, {"id": 30, "name": "c"},
            {"id": 4, "name": "a much longer name"}, {"id": 5, "name": "e"}]
    output.write(iter(rows), "table")
    assert capsys.readouterr().out == (
        "  id  name\n"
        "----  ------\n"
        "   1  a\n"
        "   2  bb\n"
        "  30  c\n"
        "   4  a much longer name\n"
        "   5  e\n"
    )
    output.write(iter(rows[:3]), "table")  # a listing within one window: tabulate's table
    assert capsys.readouterr().out == "  id  name\n----  ------\n   1  a\n   2  bb\n  30  c\n"


def test_names_are_escaped_in_the_table_only(capsys):
    rows = [{"name": "evil\x1b[2J\nrow\u202e", "tags": ["a\tb"], "flag": True, "none": None}]
    output.write(iter(rows), "table")
    assert capsys.readouterr().out == (
        "name                    tags    flag    none\n"
        "----------------------  ------  ------  ------\n"
        "evil\\x1b[2J\\nrow\\u202e  a\\tb    yes\n")
    output.write(iter(rows), "csv")
    assert capsys.readouterr().out == ('name,tags,flag,none\r\n"evil\x1b[2J\nrow\u202e",'
                                       '"[""a\\tb""]",1,\r\n')


# -- progress ---------------------------------------------------------------------------------


class Counter:
    def __init__(self):
        self.total = None
        self.advanced = 0

    def __call__(self, total):
        import contextlib

        self.total = total

        @contextlib.contextmanager
        def bar():
            yield self.advance

        return bar()

    def advance(self, n):
        self.advanced += n


def test_library_progress_callbacks(archive, site, tmp_path):
    verify = Counter()
    assert archive.verify(progress=verify) == []
    assert verify.total == verify.advanced == 11 + 2  # the checks, and each document

    bag = Counter()
    summary = archive.bag_export(tmp_path / "bag", include_restricted=True, progress=bag)
    assert bag.total == bag.advanced == 2 * summary["bytes"] == 60

    published = Counter()
    archive.publish(tmp_path / "public.db", progress=published)
    assert published.total == published.advanced == STEPS

    with open(tmp_path / "out.jsonl", "w", encoding="utf-8") as out:
        archive.export(out, fmt="jsonl", include_restricted=True)
    imported = Counter()
    with Archive(tmp_path / "other.db") as other:
        other.ingest([tmp_path / "a.txt", tmp_path / "b.txt"], by="ana")
        other.import_([tmp_path / "out.jsonl"], progress=imported)
    assert imported.total == imported.advanced == (tmp_path / "out.jsonl").stat().st_size


@pytest.mark.parametrize("args, label", [
    (("verify",), "Verifying"),
    (("publish", "{tmp}/public.db"), "Publishing"),
    (("bag", "export", "{tmp}/bag"), "Bagging"),
    (("import", "{tmp}/out.jsonl"), "Importing"),
])
def test_long_commands_show_a_bar_on_a_terminal_only(run, site, archive, tmp_path, monkeypatch,
                                                     args, label):
    with open(tmp_path / "out.jsonl", "w", encoding="utf-8") as out:
        archive.export(out, fmt="jsonl")
    args = [a.format(tmp=tmp_path) for a in args]
    force = ["--force"] if args[0] == "publish" else []

    def again(*extra):
        shutil.rmtree(tmp_path / "bag", ignore_errors=True)
        result = run(*args, *extra)
        assert result.exit_code == 0, result.output
        return result.stderr

    assert label not in again()  # CliRunner's stdout is not a terminal
    monkeypatch.setattr(common, "on_terminal", lambda: True)
    assert label not in again("-s", *force)
    assert label in again(*force)
