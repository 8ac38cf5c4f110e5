"""The README's examples run as written against `make demo`'s archive, in order, and each does
what its comment says.

The archive is built the way the Makefile builds it (the `archive.db.built` recipe: each
sample file ingested with its source and title, then `stet import annotations/`), in a
temporary folder holding a copy of `ingest/` and `annotations/`, which is also the working
directory of every example. The examples are the lines of the README's ```sh blocks, run
through the command line (CliRunner) in order; nothing in them is changed: the archive is
given by `$STET_DB`, as a reader's shell would.

Which lines are not run, by rule:

- a line whose command is not `stet` (`make demo`, `python -m bagit`, `datasette serve`):
  not stet's command line;
- `stet serve`: a server, it does not return;
- a line with an argument starting with `~` (`stet ingest ~/transfer/`): a path on the
  reader's machine.

A `"$(stet ...)"` argument is the output of that stet command (run first), as the shell
gives it. A line whose comment starts with `refused` must fail with one `Error:` line; every
other line must succeed. What a comment says is checked where it can be (:data:`CHECKS`); each
checked line must still be in the README.
"""

from __future__ import annotations

import json
import pathlib
import re
import shlex
import shutil
import sqlite3

import pytest
from click.testing import CliRunner

from stet.cli import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SAMPLES = ("ingest", "annotations")

pytestmark = pytest.mark.skipif(
    not all((ROOT / name).is_dir() for name in SAMPLES) or not (ROOT / "Makefile").is_file(),
    reason="the demo's samples (ingest/, annotations/) or the Makefile are not here")


def sh_lines(text: str) -> list[str]:
    """Every line of every ```sh block, in order (blank lines and whole-line comments left
    out)."""
    lines = []
    for block in re.findall(r"^```sh\n(.*?)^```", text, flags=re.S | re.M):
        lines += [line for line in block.splitlines() if line.strip()
                  and not line.lstrip().startswith("#")]
    return lines


def split(line: str) -> tuple[list[str], str]:
    """The words of a line (as the shell splits them) and its comment: what follows the
    first `#` that begins a word outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1].isspace()):
            return shlex.split(line[:i]), line[i + 1:].strip()
    return shlex.split(line), ""


def skipped(words: list[str]) -> str | None:
    """Why a line is not run (the module's rules), or None."""
    if not words or words[0] != "stet":
        return "not stet"
    if words[1:2] == ["serve"]:
        return "a server"
    if any(w.startswith("~") for w in words):
        return "a path on the reader's machine"
    return None


def makefile_build() -> list[list[str]]:
    """The `archive.db.built` recipe's stet commands, with the Makefile's variables."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    variables = dict(re.findall(r"^([A-Z_]+) :?= (.*)$", text, flags=re.M))
    recipe = text.split("\narchive.db.built:", 1)[1].split("\n\n", 1)[0]
    recipe = recipe.replace("\\\n", " ")
    commands = []
    for line in recipe.splitlines()[1:]:
        line = line.strip()
        if not line.startswith("$(BIN)/stet "):
            continue
        line = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m[1], m[0]), line)
        words = shlex.split(line)[1:]
        if "verify" in words[:1]:
            continue
        commands.append(words)
    return commands


@pytest.fixture
def demo(tmp_path, monkeypatch):
    for name in SAMPLES:
        shutil.copytree(ROOT / name, tmp_path / name)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    env = {"STET_DB": str(tmp_path / "archive.db"), "STET_USER": "stet-demo"}
    for words in makefile_build():
        words = [w for i, w in enumerate(words)
                 if w != "--db" and (i == 0 or words[i - 1] != "--db")]
        result = runner.invoke(cli, words, env=env, catch_exceptions=False)
        assert result.exit_code == 0, (words, result.output)
    return tmp_path, runner, env


def rows(path, sql, *params):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def annotation(db, number):
    return dict(zip(("document", "layer", "start", "end", "body", "status", "revision",
                     "reply_to"),
                    rows(db, 'SELECT a.document, l.name, a.start, a."end", a.body, a.status, '
                             "a.revision, a.reply_to FROM annotations a JOIN layers l "
                             "ON l.id = a.layer WHERE a.id = ?", number)[0]))


def _check_retract(db, result, folder):
    a, dup = annotation(db, 23), annotation(db, 11)
    assert a["status"] == "retracted"
    assert (a["document"], a["layer"], a["start"], a["end"]) == (
        dup["document"], dup["layer"], dup["start"], dup["end"])  # 23 really duplicated 11


def _check_at(db, result, folder):
    assert [line.split()[0] for line in result.stdout.splitlines()[2:]] == ["11", "13"]


def _check_threaded(db, result, folder):
    ids = [line.split()[0] for line in result.stdout.splitlines()[2:]]
    assert ids.index("22") == ids.index("20") + 1


#: What a comment says, checked: the README line (its command, as written) and a check given
#: the archive's path, the CliRunner result and the working folder.
CHECKS = {
    'stet documents --source unicode.org --since 2026-11-01 --csv':
        lambda db, r, f: len(r.stdout.strip().splitlines()) == 1 + 6,
    'stet edit 3 --title "UDHR in Arabic (plain text)" --reason "a shorter title"':
        lambda db, r, f: rows(db, "SELECT title FROM document_state WHERE document = 3")
        == [("UDHR in Arabic (plain text)",)],
    'stet annotate 7 --layer entities --quote "دول عضو" --body "Member States" --by leila':
        lambda db, r, f: r.stdout.split()[0] == "20" and annotation(db, 20)["document"] == 7,
    'stet annotate 7 --layer entities --quote "اعلامیه جهانی حقوق بشر" --body "UDHR"':
        lambda db, r, f: "matches 2 places" in r.output,
    'stet annotate 5 --layer claims --start 462 --end 541 --body "Check this" --tag to-verify':
        lambda db, r, f: rows(db, "SELECT exact FROM annotations WHERE id = 21")[0][0]
        .startswith("Whereas disregard") and rows(db, "SELECT exact FROM annotations "
                                                      "WHERE id = 21")[0][0].endswith("barbarous acts"),
    'stet annotate --reply-to 20 --body "Agreed: the older word for them" --by omid':
        lambda db, r, f: (annotation(db, 22)["reply_to"], annotation(db, 22)["document"],
                          annotation(db, 22)["layer"]) == (20, 7, "entities"),
    'stet revise 20 --body "Member States (of the United Nations)" --by omid':
        lambda db, r, f: (annotation(db, 20)["revision"], annotation(db, 20)["document"]) == (2, 7),
    'stet annotate 7 --layer entities --quote "سازمان ملل متحد" --body "United Nations"':
        lambda db, r, f: "Warning: annotation 11 already marks this span in layer 'entities'"
        in r.stderr and r.stdout.split()[0] == "23",
    'stet retract 23 --reason "duplicate of 11"': _check_retract,
    'stet annotations 7 --layer entities': _check_threaded,
    'stet annotations 7 --at 2026-11-24T17:00:00Z': _check_at,
    'stet annotations 7 --overlapping 1180:1200 --json':
        lambda db, r, f: [a["id"] for a in json.loads(r.stdout)] == [11],
    'stet annotations --tag to-verify --since 2026-11-20 --nl':
        lambda db, r, f: {json.loads(x)["id"] for x in r.stdout.splitlines()} == {1, 21},
    'stet history 20': lambda db, r, f: len(r.stdout.strip().splitlines()) == 2 + 2,
    'stet import notes.jsonl':
        lambda db, r, f: "0 new annotations, 0 revisions" in r.stdout,
    'stet export 7 --format brat -o udhr_pes.ann':
        lambda db, r, f: (f / "udhr_pes.txt").read_text(encoding="utf-8")
        == rows(db, "SELECT text FROM texts WHERE document = 7")[0][0]
        and "AnnotatorNotes" in (f / "udhr_pes.ann").read_text(encoding="utf-8"),
    'stet annotate 5 --layer entitys --quote "General Assembly" --body "Organisation"':
        lambda db, r, f: "Warning: new layer 'entitys'" in r.stderr,
    'stet layer merge entitys entities --reason "typo"':
        lambda db, r, f: rows(db, "SELECT l.name FROM annotations a JOIN layers l "
                                  "ON l.id = a.layer WHERE a.id = 24") == [("entities",)],
    'stet layer list':
        lambda db, r, f: [line.split()[1] for line in r.stdout.splitlines()[2:]]
        == ["claims", "entities", "translation", "verification"],
    'stet bag export out/transfer-42 --organization "Field office, Erbil"':
        lambda db, r, f: (f / "out" / "transfer-42" / "bagit.txt").is_file(),
    'stet prov 3 -o lineage.json':
        lambda db, r, f: json.loads((f / "lineage.json").read_text(encoding="utf-8")),
    'stet verify --expect-head "$(stet log --head)"': lambda db, r, f: r.exit_code == 0,
    'stet publish public.db':
        lambda db, r, f: CliRunner().invoke(cli, ["verify", "--db", str(f / "public.db")])
        .exit_code == 0,
}


def test_every_checked_line_is_in_the_readme():
    commands = {split(line)[0] and shlex.join(split(line)[0]) for line in sh_lines(
        README.read_text(encoding="utf-8"))}
    missing = [c for c in CHECKS if shlex.join(shlex.split(c)) not in commands]
    assert not missing, f"checked lines no longer in the README: {missing}"


def test_the_readme_examples_run_as_written(demo):
    folder, runner, env = demo
    db = env["STET_DB"]
    checks = {shlex.join(shlex.split(c)): check for c, check in CHECKS.items()}
    ran = []
    for line in sh_lines(README.read_text(encoding="utf-8")):
        words, comment = split(line)
        if skipped(words):
            continue
        key = shlex.join(words)
        words = [_substituted(w, runner, env) for w in words]
        result = runner.invoke(cli, words[1:], env=env, catch_exceptions=False)
        if comment.startswith("refused"):
            assert result.exit_code == 1, (line, result.output)
            assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1, line
        else:
            assert result.exit_code == 0, (line, result.output)
        check = checks.get(key)
        if check is not None:
            assert check(db, result, folder) is not False, (line, result.output)
        ran.append(key)
    assert set(checks) <= set(ran), set(checks) - set(ran)
    verified = runner.invoke(cli, ["verify"], env=env)
    assert verified.exit_code == 0, verified.output


def _substituted(word: str, runner, env) -> str:
    """``$(stet ...)`` inside a word: that command's output, its trailing newline removed."""
    def run(match):
        inner = shlex.split(match[1])
        assert inner[0] == "stet"
        result = runner.invoke(cli, inner[1:], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout.rstrip("\n")
    return re.sub(r"\$\(([^)]*)\)", run, word)


def test_skip_rules():
    assert skipped(["make", "demo"]) and skipped(["python", "-m", "bagit"])
    assert skipped(["stet", "serve"]) and skipped(["stet", "ingest", "~/transfer/"])
    assert skipped(["stet", "ingest", "out/transfer-42"]) is None
    assert split('stet annotate 7 --quote "a # b"   # the comment') == (
        ["stet", "annotate", "7", "--quote", "a # b"], "the comment")
