"""Code that must not run: every subprocess stet starts is isolated from the working
directory and from PYTHONPATH, so a module planted there never runs (issue 10, item 9)."""

import io

from stet import Archive
from stet.annotations import worker
from test_w3c import folder  # noqa: F401  (the documents of the W3C tests)

PLANTED = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\nraise SystemExit(3)\n"


def test_a_planted_stet_module_never_runs_in_the_import_worker(tmp_path, folder, monkeypatch):
    source = Archive(tmp_path / "a.db")
    source.ingest([folder], by="archivist")
    source.annotate(1, layer="entities", quote="سازمان ملل متحد", body="the UN", by="ana")
    notes = tmp_path / "notes.jsonl"
    with open(notes, "w", encoding="utf-8") as out:
        source.export(out, fmt="jsonl", history=True)
    target = Archive(tmp_path / "b.db")
    target.ingest([folder], by="archivist")

    marker = tmp_path / "planted-code-ran"
    planted = tmp_path / "planted"
    planted.mkdir()
    for where in (planted, planted / "on-pythonpath"):
        where.mkdir(exist_ok=True)
        (where / "stet.py").write_text(PLANTED.format(marker=str(marker)), encoding="utf-8")
        (where / "sitecustomize.py").write_text(PLANTED.format(marker=str(marker)),
                                                encoding="utf-8")
    monkeypatch.chdir(planted)  # the working directory holds stet.py
    monkeypatch.setenv("PYTHONPATH", str(planted / "on-pythonpath"))
    monkeypatch.setattr(worker, "WORKER_BYTES", 0)  # every file goes through the worker process
    monkeypatch.setattr(worker, "cpus", lambda: 2)

    results = target.import_([notes], by="importer")
    assert not marker.exists()
    assert results[0]["revisions"] == 1
    out = io.StringIO()
    target.export(out, fmt="jsonl")
    assert "the UN" in out.getvalue()
