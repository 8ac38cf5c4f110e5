"""Write the sample annotation layers in this folder (W3C JSON Lines, every revision).

    .venv/bin/python annotations/make_samples.py

Builds a throwaway archive from ../ingest the way the Makefile does, annotates it through
the library API (by quote, so every span is checked), then exports each layer with its full
history. Times are moved into the week before 2026-11-28, a few hours apart, so that
`stet annotations --at` has a past to show; each annotation's revisions keep their order.
Only the plain-text documents are annotated: their text is their bytes, so the offsets do
not depend on an HTML extractor's version.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path

from stet import Archive, timeutil

HERE = Path(__file__).resolve().parent
INGEST = HERE.parent / "ingest"
START = timeutil.parse_micros("2026-11-21T08:30:00Z")
HOUR = 3_600_000_000


def build(archive: Archive) -> None:
    press, eng, fa, ar = (_doc(archive, name) for name in (
        "press-release-2014-08-13-geneva.txt", "udhr_eng.txt", "udhr_pes_1.txt", "udhr_arb.txt"))
    archive.add_layer("entities", description="People, places and organisations",
                      colour="#1f77b4", by="leila")
    archive.add_layer("claims", description="Claims to verify against other sources",
                      colour="#d62728", by="omid")
    archive.add_layer("translation", description="Notes across the three Declaration texts",
                      colour="#2ca02c", by="samira")
    note = archive.annotate
    # entities, in three scripts
    rajavi = note(press, layer="entities", quote="Maryam Rajavi", prefix="Geneva on August 13, ",
                  body="Person: Maryam Rajavi", motivation="identifying", tags=["person"], by="leila")
    note(press, layer="entities", quote="Geneva", prefix="European Headquarters in ",
         body="Place: Geneva, Switzerland", motivation="identifying", tags=["place"], by="leila")
    note(press, layer="entities", quote="Camp Liberty", suffix=" residents",
         body="Place: Camp Liberty (Camp Hurriya), Baghdad", motivation="identifying",
         tags=["place"], by="leila")
    ziegler = note(press, layer="entities", quote="Jean Ziegler", body="Person: Jean Ziegler",
                   motivation="identifying", tags=["person"], by="leila")
    un_en = note(eng, layer="entities", quote="United Nations", prefix="the peoples of the ",
                 body="Organisation: United Nations", motivation="identifying", tags=["org"],
                 by="leila")
    un_fa = note(fa, layer="entities", quote="سازمان ملل متحد", prefix="با همکاری ",
                 body="Organisation: United Nations (سازمان ملل متحد)", motivation="identifying",
                 tags=["org"], by="samira")
    un_ar = note(ar, layer="entities", quote="الأمم المتحدة", prefix="شعوب ",
                 body="Organisation: United Nations (الأمم المتحدة)", motivation="identifying",
                 tags=["org"], by="samira")
    note(fa, layer="entities", quote="مجمع عمومی", body="Organisation: the General Assembly",
         motivation="identifying", tags=["org"], by="samira")
    archive.revise(ziegler["id"], body="Person: Jean Ziegler, UN Human Rights Advisory Committee",
                   by="omid")
    # claims to verify
    massacre = note(press, layer="claims", quote="the 1988 massacre of 30,000 political prisoners",
                    body="Figure of 30,000: check against Amnesty International and UN reports",
                    motivation="questioning", tags=["figure", "to-verify"], by="omid")
    executions = note(press, layer="claims", quote="the number of executions exceeds 800",
                      body="Check against Iran Human Rights monitoring for Aug 2013 to Aug 2014",
                      motivation="questioning", tags=["figure", "to-verify"], by="omid")
    note(press, layer="claims", quote="killed 116 people", body="Source of the count?",
         motivation="questioning", tags=["figure"], by="leila")
    archive.annotate(press, layer="claims", reply_to=massacre["id"], by="leila",
                     body="Estimates range from several thousand to 30,000; cite the range.")
    archive.revise(executions["id"], by="omid", tags=["figure", "checked"],
                   body="Consistent with UN Special Rapporteur figures for the period")
    wrong = note(press, layer="claims", quote="Rouhani’s one-year record", suffix=" reflects",
                 body="Opinion, not a checkable claim", motivation="questioning", by="leila")
    archive.retract(wrong["id"], reason="an opinion, not a claim to verify", by="omid")
    # translation notes across the three texts
    art1 = note(eng, layer="translation", quote="All human beings are born free and equal in "
                "dignity and rights.", body="Article 1; compare the Persian and Arabic",
                motivation="linking", by="samira")
    note(fa, layer="translation", quote="تمام افراد بشر آزاد بدنیا میایند",
         body="Article 1: 'all members of humankind are born free'", motivation="describing",
         tags=["article-1"], by="samira")
    note(ar, layer="translation", quote="يولد جميع الناس أحرارًا", body="Article 1: 'all people "
         "are born free'; أحرارًا carries tanwin (a combining mark)", motivation="describing",
         tags=["article-1", "harakat"], by="samira")
    zwnj = note(fa, layer="translation", quote="آزادی‌های اساسی", body="ZWNJ (U+200C) between "
                "آزادی and های: one word, kept as written", motivation="describing",
                tags=["zwnj"], by="samira")
    note(ar, layer="translation", quote="لكل فرد الحق في الحياة", body="Article 3: 'every "
         "individual has the right to life'; Article 3 of the English says 'Everyone'",
         motivation="describing", by="samira")
    archive.annotate(eng, layer="translation", reply_to=art1["id"], by="leila",
                     body="The Persian adds nothing; the Arabic follows the English closely.")
    archive.revise(zwnj["id"], by="leila", body="ZWNJ (U+200C) joins آزادی and های into one "
                   "word without a ligature; search must not strip it")
    for item in (rajavi, un_en, un_fa, un_ar):
        assert item["status"] == "active"


def _doc(archive: Archive, filename: str) -> int:
    [doc] = [d["id"] for d in archive.documents() if d["filename"] == filename]
    return doc


def redate(lines: list[dict], base: dict[str, int]) -> list[dict]:
    """Spread the times over the past week (9 hours between annotations, in the order they
    were made; a revision 30 hours after the one before), keeping revisions in order."""
    for line in lines:
        iri = line["dcterms:isVersionOf"]["id"]
        first = base[iri]
        line["created"] = timeutil.from_micros(first)
        line["modified"] = timeutil.from_micros(first + (line["stet:revision"] - 1) * 30 * HOUR)
    return lines


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, Archive(Path(tmp) / "archive.db") as archive:
        archive.ingest([INGEST / "press"], by="stet-demo", source="press")
        archive.ingest([INGEST / "udhr"], by="stet-demo", source="udhr")
        build(archive)
        order = archive.conn.execute("SELECT uuid FROM annotations ORDER BY id").fetchall()
        base = {f"urn:uuid:{u}": START + index * 9 * HOUR for index, (u,) in enumerate(order)}
        for layer in ("entities", "claims", "translation"):
            out = io.StringIO()
            archive.export(out, layer=layer, history=True, fmt="jsonl")
            lines = redate([json.loads(line) for line in out.getvalue().splitlines()], base)
            (HERE / f"{layer}.jsonl").write_text(
                "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                encoding="utf-8")


if __name__ == "__main__":
    main()
