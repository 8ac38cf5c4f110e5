"""Property: for random texts in any script and random valid spans, export then import
reproduces every annotation, every revision, exactly."""

import io
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from stet import Archive

ATOMS = [
    "a", "Z", " ", "\n", "é", "e\u0301",                      # Latin, a combining acute
    "ب", "ش", "ر", "\u200c", "ی", "پ",                        # Persian, ZWNJ
    "ل", "ِ", "ك", "ُ", "ّ", "ٍ",                              # Arabic letters and harakat
    "👩\u200d👩\u200d👧", "🇮🇷", "👍🏽", "\u200f", "\u200e", "\u00ad",  # ZWJ emoji, RLM/LRM, SHY
]


@st.composite
def texts_and_spans(draw):
    text = "T " + "".join(draw(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=60)))
    spans = []
    for _ in range(draw(st.integers(1, 6))):
        start = draw(st.integers(0, len(text) - 1))
        end = draw(st.integers(start + 1, len(text)))
        spans.append((start, end))
    edits = draw(st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["revise", "retract"])),
                          max_size=4))
    return text, spans, edits


def state(archive):
    # who imported a revision is the archive's own record, not part of the annotation
    return [[{k: v for k, v in r.items() if k != "imported_by"} for r in archive.history(a["id"])]
            for a in archive.annotations(include_retracted=True)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts_and_spans(), st.text(min_size=0, max_size=12))
def test_export_then_import_reproduces_every_annotation(case, body):
    text, spans, edits = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "docs"
        folder.mkdir()
        (folder / "doc.txt").write_text(text, encoding="utf-8")
        with Archive(Path(tmp) / "a.db") as source, Archive(Path(tmp) / "b.db") as target:
            [doc] = source.ingest([folder], by="x")
            assert source.text(doc["id"]) == text
            made = [source.annotate(doc["id"], layer="fuzz", start=s, end=e, body=body,
                                    tags=[body] if body.strip() else [], by="ana")
                    for s, e in spans]
            for index, action in edits:
                annotation = made[index % len(made)]
                if source.annotation(annotation["id"])["status"] == "retracted":
                    continue
                if action == "revise":
                    source.revise(annotation["id"], start=0, end=len(text), body=body + "!", by="bo")
                else:
                    source.retract(annotation["id"], reason=body, by="cy")
            for a in source.annotations(include_retracted=True):
                assert text[a["start"]:a["end"]] == a["exact"]
            for form in ("jsonl", "w3c"):
                out = io.StringIO()
                source.export(out, history=True, fmt=form)
                path = Path(tmp) / f"export.{form}.json"
                path.write_text(out.getvalue(), encoding="utf-8")
            target.ingest([folder], by="x")
            target.import_([Path(tmp) / "export.jsonl.json"])
            assert state(target) == state(source)
            assert target.import_([Path(tmp) / "export.w3c.json"])[0]["revisions"] == 0
            assert target.verify() == []
