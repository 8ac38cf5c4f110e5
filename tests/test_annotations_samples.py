"""The sample layers in annotations/ import into the demo archive, as `make demo` builds it."""

import subprocess
import sys

from stet import Archive

from conftest import ROOT


def test_samples_import_into_the_demo_archive(tmp_path):
    with Archive(tmp_path / "archive.db") as archive:
        archive.ingest([ROOT / "ingest" / "press"], by="stet-demo", source="press")
        archive.ingest([ROOT / "ingest" / "udhr"], by="stet-demo", source="udhr")
        results = archive.import_([ROOT / "annotations"], by="stet-demo")
        assert [r["file"].rsplit("/", 1)[-1] for r in results] == [
            "claims.jsonl", "entities.jsonl", "translation.jsonl"]
        assert all(r["annotations"] > 0 and r["skipped"] == 0 for r in results)
        assert archive.verify() == []
        current = list(archive.annotations())
        assert {a["layer"] for a in current} == {"entities", "claims", "translation"}
        scripts = {a["exact"] for a in current if a["exact"]}
        assert "سازمان ملل متحد" in scripts and "الأمم المتحدة" in scripts
        assert "آزادی\u200cهای اساسی" in scripts  # the ZWNJ kept
        assert any(a["reply_to"] for a in current)
        assert any(a["status"] == "retracted" for a in archive.annotations(include_retracted=True))
        assert any(len(list(archive.history(a["id"]))) > 1 for a in current)
        # the week before: fewer annotations than now, none from after that instant
        past = list(archive.annotations(at="2026-11-24T00:00:00Z"))
        assert 0 < len(past) < len(current)
        assert all(a["modified"] < "2026-11-24" for a in past)
        again = archive.import_([ROOT / "annotations"])
        assert sum(r["revisions"] for r in again) == 0


def test_samples_pass_the_w3c_test_suite(shared):
    files = sorted(str(p) for p in (ROOT / "annotations").glob("*.jsonl"))
    result = subprocess.run([sys.executable, str(shared / "tools" / "w3c_validate.py"), *files],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
