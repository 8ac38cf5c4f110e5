"""Hostile files (issue 10, items 1, 2, 4 and 11): each test crafts its input, and asserts by
outcome that extraction stays bounded, finishes and says why a file has no text."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import subprocess
import sys
import zipfile
from concurrent.futures import ProcessPoolExecutor

import docx
import pytest

from stet import extract as extraction
from stet.extract import detect_media_type, extract

DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MB = 1024 * 1024

# -- 1. DOCX zip bombs: bounded memory ----------------------------------------------------


def docx_with_body(body: bytes, *, level: int = 6) -> bytes:
    """A valid DOCX (made by python-docx) whose document body is ``body``."""
    made = io.BytesIO()
    document = docx.Document()
    document.add_paragraph("cover")
    document.save(made)
    source = zipfile.ZipFile(made)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "word/document.xml":
                at = content.index(b"<w:body>") + len(b"<w:body>")
                content = content[:at] + body + content[at:]
            target.writestr(info.filename, content)
    return out.getvalue()


# In a fresh interpreter: extract the file, end the extracting child, and report the peak
# resident memory of this process (VmHWM: ru_maxrss would carry over the peak of the forked
# pytest process it was exec'd from) and of every child it waited for (RUSAGE_CHILDREN).
PEAK = """
import json, re, resource, sys
from stet import extract
result = extract.extract(open(sys.argv[1], "rb").read(), sys.argv[2])
getattr(extract, "shutdown", lambda: None)()
own = int(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read()).group(1))
peak = max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"peak_mb": peak / 1024, "text": len(result.text), "warning": result.warning}))
"""


def peak_of_extracting(tmp_path, data: bytes, media_type: str) -> dict:
    path = tmp_path / "crafted"
    path.write_bytes(data)
    out = subprocess.run([sys.executable, "-I", "-c", PEAK, str(path), media_type],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_docx_zip_bomb_is_not_unzipped(tmp_path):
    """90 MB of empty paragraphs in a 90 KB DOCX (took 1.4 GB before): refused by the ZIP's
    bounds before python-docx sees it, the text empty with a warning that says why."""
    bomb = docx_with_body(b"<w:p/>" * 15_000_000, level=9)
    assert len(bomb) < 200_000
    found = peak_of_extracting(tmp_path, bomb, DOCX)
    assert found["text"] == 0
    assert found["warning"].startswith("DOCX not read: a ZIP bomb? word/document.xml would unzip to")
    assert found["peak_mb"] < 300


def test_docx_that_compresses_normally_but_needs_too_much_memory(tmp_path):
    """600,000 distinct paragraphs (2.9 MB, compressing 10:1, within every ZIP bound) need
    about 400 MB for python-docx's tree: the child's memory budget stops it."""
    body = b"".join(b"<w:p><w:r><w:t>%s</w:t></w:r></w:p>" % os.urandom(3).hex().encode()
                    for _ in range(600_000))
    found = peak_of_extracting(tmp_path, docx_with_body(body, level=1), DOCX)
    assert found["text"] == 0
    assert found["warning"].startswith("not extracted: it needed more than the 167772160-byte "
                                       "memory budget")
    assert found["peak_mb"] < 300


@pytest.mark.parametrize("media_type, data", [
    ("text/html", b"<html><body>" + b"<i>a</i>" * 3_500_000),  # 28 MB of tiny elements
    ("message/rfc822", b"From: a@example.org\nTo: b@example.org\nSubject: s\n\n"
     + b"a line of the message body\n" * 1_100_000),  # a 29 MB body
], ids=["html", "email"])
def test_every_format_parsed_in_the_child_stays_within_the_memory_bound(tmp_path, media_type,
                                                                        data):
    """Any file keeps peak memory under 300 MB, not only DOCX: the child's budget holds for
    HTML and email too; a file that needs more keeps its bytes, with a warning."""
    found = peak_of_extracting(tmp_path, data, media_type)
    assert found["peak_mb"] < 300
    assert found["text"] > 0 or found["warning"].startswith(
        "not extracted: it needed more than the 167772160-byte memory budget")


def test_docx_bounds_count_members_and_ratio():
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as target:
        for index in range(10_001):
            target.writestr(f"word/x{index}", b"")
    result = extract(many.getvalue(), DOCX)
    assert result.warning == "DOCX not read: a ZIP bomb? 10001 members in the ZIP, over the limit of 10000"
    ratio = extract(docx_with_body(b"<w:p/>" * 1_000_000), DOCX)
    assert "over the compression ratio limit of 200" in ratio.warning and ratio.text == ""


# -- 2. Deeply nested HTML: a time budget ---------------------------------------------------

DEEP_HTML = b"<div>" * 200_000  # 1 MB; took 110 s to parse


def test_deep_html_stops_at_the_time_budget_and_the_next_file_is_read():
    result = extract(DEEP_HTML, "text/html", timeout=1)
    assert result.text == ""
    assert result.warning == "not extracted: took longer than 1 s (the extraction time limit)"
    assert extract(b"<p>after</p>", "text/html").text == "after"  # a new child


def test_configured_budget_holds_in_forked_workers():
    """configure() sets the budget for the process and the ingest workers it forks; a worker
    (itself a forked process) forks its own extracting child."""
    try:
        extraction.configure(timeout=1)
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"))
        with pool:
            result = pool.submit(extract, DEEP_HTML, "text/html").result(timeout=60)
    finally:
        extraction.configure()
    assert extraction.timeout() == extraction.TIMEOUT == 30
    assert result.warning == "not extracted: took longer than 1 s (the extraction time limit)"
    with pytest.raises(ValueError):
        extraction.configure(timeout=0)


def test_results_are_the_same_in_the_child():
    from test_extract_formats import make_email  # tests/ is on the path (not "tests.": a package of that name may be installed)

    files = [
        ("<html><head><title>T</title></head><body><p>a\u200cb</p><pre> x\n y</pre></body></html>"
         .encode(),
         "text/html"),
        (make_email(), "message/rfc822"),
        (make_email(html=True, attach=False), "message/rfc822"),
        (docx_with_body(b"<w:p><w:r><w:t>\xd8\xb3\xd9\x84\xd8\xa7\xd9\x85</w:t></w:r></w:p>"), DOCX),
        (b"%PDF-1.7\n1 0 obj garbage", "application/pdf"),
    ]
    for data, media_type in files:
        assert extract(data, media_type) == extract(data, media_type, timeout=None)


# -- 4. Nested email -----------------------------------------------------------------------


def nested_message(depth: int) -> bytes:
    message = b"From: leaf@example.org\nTo: b@example.org\nSubject: leaf\n\nleaf body\n"
    for level in range(depth):
        message = (b"From: a%d@example.org\nTo: b@example.org\nSubject: level %d\n"
                   b"MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B%d\"\n\n"
                   b"--B%d\nContent-Type: text/plain\n\nown text %d\n"
                   b"--B%d\nContent-Type: message/rfc822\n\n" % ((level,) * 6)
                   ) + message + b"\n--B%d--\n" % level
    return message


@pytest.mark.parametrize("depth", [150, 3000])
def test_deeply_nested_email_keeps_its_own_text(depth):
    result = extract(nested_message(depth), "message/rfc822")
    top = depth - 1
    assert result.text == (f"From: a{top}@example.org\nTo: b@example.org\n"
                           f"Subject: level {top}\n\nown text {top}")
    assert result.parts == []
    assert result.warning.startswith("nested more than 32 levels deep: the parts below that level")
    # within the bound, an attached message is still a part, as before
    shallow = extract(nested_message(10), "message/rfc822")
    assert shallow.warning is None and [name for name, _ in shallow.parts] == ["attachment-1.eml"]


def test_parts_are_bounded():
    lines = [b"From: a@example.org\nTo: b@example.org\nSubject: many\nMIME-Version: 1.0\n"
             b"Content-Type: multipart/mixed; boundary=X\n\n--X\nContent-Type: text/plain\n\nhello\n"]
    for index in range(1500):
        lines.append(b"--X\nContent-Type: application/octet-stream\n"
                     b"Content-Disposition: attachment; filename=f%d.bin\n\n%d\n" % (index, index))
    lines.append(b"--X--\n")
    result = extract(b"".join(lines), "message/rfc822")
    assert result.text.endswith("Subject: many\n\nhello")
    assert len(result.parts) == 1000 and result.parts[-1] == ("f999.bin", b"999")
    assert result.warning == ("500 parts past the first 1000 are not extracted "
                              "(their bytes are kept in this message)")


# -- 11. Sniffing: content wins only on a real signature at its real place -------------------

NOTE = b"Minutes of the meeting.\nThe leaked file's header read %PDF-1.4, said the analyst.\n"
HEADERS = b"From: the field office\nTo: the archive\nDate: Monday\n\nWitness statements follow.\n"


def test_a_text_file_stays_text():
    cases = [
        (NOTE, "minutes.txt", "text/plain"),  # was application/pdf
        (HEADERS, "memo.txt", "text/plain"),  # was message/rfc822
        (b"<!DOCTYPE html><p>source</p>", "page-source.txt", "text/plain"),
        (b"junk before the header\n%PDF-1.7\n", "scan", "text/plain"),
        (b"From: a@b\nTo: c@d\nDate: Monday", "", "text/plain"),  # no end to the header block
        # content still wins on a real signature at its real place
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "report.txt", "application/pdf"),
        (b"junk before the header\n%PDF-1.7\n", "scan.pdf", "application/pdf"),  # readers accept it
        (HEADERS, "", "message/rfc822"),
        (b"From: a@b\nTo: c@d\nDate: Monday\n", "mail.eml", "message/rfc822"),  # named: the whole file
    ]
    assert [detect_media_type(head, name) for head, name, _ in cases] == [e for _, _, e in cases]


def test_ingested_text_files_keep_their_text(run, archive, tmp_path):
    (tmp_path / "minutes.txt").write_bytes(NOTE)
    (tmp_path / "memo.txt").write_bytes(HEADERS)
    out = run("ingest", tmp_path / "memo.txt", tmp_path / "minutes.txt", "--json")
    assert out.exit_code == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["media_type"] for r in records] == ["text/plain", "text/plain"]
    assert [archive.text(r["id"]) for r in records] == [HEADERS.decode(), NOTE.decode()]


def test_stet_ingest_takes_the_time_budget_as_an_option_for_that_ingest(run, tmp_path):
    deep = tmp_path / "deep.html"
    deep.write_bytes(b"<html><body>" + DEEP_HTML)
    result = run("ingest", deep, "--extract-timeout", "1")
    assert result.exit_code == 0
    assert f"Warning: {deep}: not extracted: took longer than 1 s (the extraction time limit)" \
        in result.output
    assert extraction.timeout() == extraction.TIMEOUT  # restored after the ingest
    assert run("ingest", deep, "--extract-timeout", "0").exit_code == 2
