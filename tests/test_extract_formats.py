"""PDF, DOCX and email extraction, and detection by content; every file made here."""

import functools
import io
import json
import pathlib
import unicodedata
from email.message import EmailMessage

import docx
import pytest

from stet.extract import detect_media_type, extract

DEJAVU = pathlib.Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"

ARABIC = "يولد جميع الناس أحرارا متساوين في الكرامة والحقوق"
PERSIAN = "همه\u200cی افراد بشر آزاد به دنیا می\u200cآیند و از لحاظ حیثیت و حقوق با هم برابرند."


def make_pdf(pages: list[list[str]], *, shaping: bool = True, **encryption) -> bytes:
    fpdf = pytest.importorskip("fpdf", reason="fpdf2 (the test extra) writes the test PDFs")
    if not DEJAVU.exists():
        pytest.skip(f"no font with Arabic glyphs: {DEJAVU} (Debian's fonts-dejavu-core) is absent")
    pdf = fpdf.FPDF()
    pdf.add_font("dejavu", fname=str(DEJAVU))
    pdf.set_font("dejavu", size=14)
    if shaping:
        pytest.importorskip("uharfbuzz", reason="fpdf2 shapes Arabic with uharfbuzz (the test extra)")
        pdf.set_text_shaping(True)  # glyphs in visual order, as real layout engines write them
    for lines in pages:
        pdf.add_page()
        for line in lines:
            pdf.multi_cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    if encryption:
        from fpdf.enums import EncryptionMethod

        pdf.set_encryption(encryption_method=EncryptionMethod.RC4, **encryption)
    return bytes(pdf.output())


# -- PDF ------------------------------------------------------------------------------------


def test_pdf_arabic_is_ordinary_letters_in_reading_order():
    data = make_pdf([[ARABIC, "Second line in English."], ["صفحة ثانية"]])
    assert detect_media_type(data[:8192], "scan.bin") == "application/pdf"
    result = extract(data, "application/pdf")
    assert result.warning is None
    assert result.extractor == "stet.pdf" and "pypdfium2" in result.extractor_version
    assert result.text == f"{ARABIC}\nSecond line in English.\fصفحة ثانية"
    letters = [c for c in result.text if unicodedata.category(c).startswith("L") and not c.isascii()]
    assert letters and all("\u0600" <= c <= "\u06ff" for c in letters)  # no presentation forms


def test_pdf_pages_are_separated_by_form_feed():
    data = make_pdf([["one"], [], ["three"]], shaping=False)
    assert extract(data, "application/pdf").text.split("\f") == ["one", "", "three"]


def test_encrypted_pdf_keeps_bytes_with_a_warning(run, tmp_path):
    path = tmp_path / "locked.pdf"
    path.write_bytes(make_pdf([["secret"]], shaping=False, owner_password="o", user_password="u"))
    result = extract(path.read_bytes(), "application/pdf")
    assert result.text == ""
    assert result.warning == "PDF not read: encrypted: a password is needed to read it"
    out = run("ingest", path, "--json")
    assert out.exit_code == 0
    assert "Warning: " in out.stderr and "password is needed" in out.stderr
    record = json.loads(out.stdout)
    assert record["status"] == "new" and record["media_type"] == "application/pdf"
    assert run("text", record["id"]).stdout == ""


def test_pdf_with_owner_password_only_is_read():
    data = make_pdf([["open to read"]], shaping=False, owner_password="o")
    assert extract(data, "application/pdf").text == "open to read"


def test_corrupt_pdf_keeps_bytes_with_a_warning():
    result = extract(b"%PDF-1.7\n1 0 obj garbage", "application/pdf")
    assert result.text == ""
    assert result.warning == "PDF not read: corrupt or not a PDF (PDFium: data format error)"


# -- DOCX -----------------------------------------------------------------------------------


@functools.cache
def make_docx() -> bytes:
    # Made once: a DOCX is a ZIP, whose entries carry the time they were written (to 2
    # seconds), so two calls a moment apart can differ in those bytes.
    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "سرصفحه: بیانیه"
    document.add_paragraph(PERSIAN)
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "نام"
    table.cell(0, 1).text = "تاریخ"
    table.cell(1, 0).text = "مریم"
    table.cell(1, 1).text = "۱۳۹۳"
    run = document.add_paragraph().add_run("tab\there")
    run.add_break()
    run.add_text("after break")
    document.sections[0].footer.paragraphs[0].text = "پانویس"
    document.core_properties.title = "بیانیه"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def test_docx_persian_paragraphs_tables_headers_in_order():
    data = make_docx()
    assert detect_media_type(data[:8192], "noname") == DOCX
    result = extract(data, DOCX)
    assert result.warning is None and result.extractor == "stet.docx"
    assert result.text == (
        "سرصفحه: بیانیه\n"
        f"{PERSIAN}\n"
        "نام\tتاریخ\n"
        "مریم\t۱۳۹۳\n"
        "tab\there\nafter break\n"
        "پانویس"
    )
    assert "\u200c" in result.text and result.title == "بیانیه"


def test_encrypted_docx_keeps_bytes_with_a_warning():
    # A password-protected Office file is an OLE compound file holding EncryptionInfo.
    data = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504) + "EncryptionInfo".encode("utf-16-le")
            + bytes(1000))
    assert detect_media_type(data[:8192], "secret.docx") == DOCX
    result = extract(data, DOCX)
    assert result.text == ""
    assert result.warning == "DOCX not read: encrypted: a password-protected Office document"


def test_corrupt_docx_keeps_bytes_with_a_warning():
    data = make_docx()[:3000]
    result = extract(data, DOCX)
    assert result.text == ""
    assert result.warning.startswith("DOCX not read: corrupt or not a DOCX (BadZipFile: ")


# -- email ----------------------------------------------------------------------------------


def make_email(*, html: bool = False, attach: bool = True) -> bytes:
    message = EmailMessage()
    message["From"] = "Maryam Rajavi <press@example.org>"
    message["To"] = "ناظر <observer@example.org>"
    message["Date"] = "Wed, 13 Aug 2014 10:00:00 +0200"
    message["Subject"] = "بیانیه‌ی مطبوعاتی"
    if html:
        message.set_content("<html><head><title>t</title></head><body><p>سلام <b>دنیا</b></p>"
                            "<script>x()</script><p>line two</p></body></html>", subtype="html")
    else:
        message.set_content(f"{PERSIAN}\nSecond line.\n")
    if attach:
        message.add_attachment(make_docx(), maintype="application",
                               subtype="vnd.openxmlformats-officedocument.wordprocessingml.document",
                               filename="بیانیه.docx")
        message.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream",
                               filename="data.bin")
    return message.as_bytes()


def test_email_headers_then_body_and_attachments_as_parts():
    data = make_email()
    assert detect_media_type(data[:8192], "") == "message/rfc822"
    result = extract(data, "message/rfc822")
    assert result.text == (
        "From: Maryam Rajavi <press@example.org>\n"
        "To: ناظر <observer@example.org>\n"
        "Date: Wed, 13 Aug 2014 10:00:00 +0200\n"
        "Subject: بیانیه‌ی مطبوعاتی\n"
        "\n"
        f"{PERSIAN}\nSecond line.\n"
    )
    assert result.title == "بیانیه‌ی مطبوعاتی"
    assert [name for name, _ in result.parts] == ["بیانیه.docx", "data.bin"]
    assert result.parts[0][1] == make_docx() and result.parts[1][1] == b"\x00\x01binary"


def test_email_html_body_goes_through_the_html_extractor():
    result = extract(make_email(html=True, attach=False), "message/rfc822")
    assert result.text.endswith("Subject: بیانیه‌ی مطبوعاتی\n\nسلام دنیا\nline two")
    assert result.parts == []


def test_attached_message_is_one_part():
    outer = EmailMessage()
    outer["From"] = "a@example.org"
    outer["To"] = "b@example.org"
    outer["Subject"] = "Fwd"
    outer.set_content("see attached")
    inner = email_from(make_email(attach=True))
    outer.add_attachment(inner)
    result = extract(outer.as_bytes(), "message/rfc822")
    assert len(result.parts) == 1
    name, data = result.parts[0]
    assert name == "attachment-1.eml"
    assert extract(data, "message/rfc822").text.startswith("From: Maryam Rajavi")


def email_from(data: bytes):
    import email
    from email import policy

    return email.message_from_bytes(data, policy=policy.default)


def test_encrypted_email_keeps_headers_with_a_warning():
    data = (b"From: a@example.org\r\nTo: b@example.org\r\nSubject: s\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; "
            b"boundary=XX\r\n\r\n--XX\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
            b"Version: 1\r\n--XX\r\nContent-Type: application/octet-stream\r\n\r\n"
            b"-----BEGIN PGP MESSAGE-----\r\n--XX--\r\n")
    result = extract(data, "message/rfc822")
    assert result.text == "From: a@example.org\nTo: b@example.org\nSubject: s"
    assert result.warning == "encrypted message (multipart/encrypted): only the headers are text"


def test_ingest_email_stores_attachments_linked_to_the_message(run, archive, tmp_path):
    path = tmp_path / "statement.eml"
    path.write_bytes(make_email())
    out = run("ingest", path, "--json")
    assert out.exit_code == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["media_type"] for r in records] == ["message/rfc822", DOCX, "application/octet-stream"]
    message, attachment, binary = (archive.document(r["id"]) for r in records)
    assert attachment["parent"] == binary["parent"] == message["id"]
    assert attachment["filename"] == "بیانیه.docx"
    assert PERSIAN in archive.text(attachment["id"])
    assert message["title"] == "بیانیه‌ی مطبوعاتی"
    # each ingest event records where the bytes came from: the message, then message#name
    paths = [event["details"]["path"] for event in archive.log() if event["action"] == "ingest"]
    assert paths == [str(path), f"{path}#بیانیه.docx", f"{path}#{records[2]['path'].split('#')[1]}"]


# -- detection by content -------------------------------------------------------------------


@pytest.mark.parametrize("head, name, expected", [
    (b"%PDF-1.4\n", "report.txt", "application/pdf"),
    # a text file stays text (issue 10, item 11): a header block in a .txt is its text
    (b"From: a@b\nTo: c@d\nSubject: hi\n\nbody", "note.txt", "text/plain"),
    (b"From: a@b\nTo: c@d\nSubject: hi\n\nbody", "", "message/rfc822"),
    (b"From: me\nI wrote this note.\n", "note.txt", "text/plain"),
    (b"PK\x03\x04" + b"\x00" * 26 + b"mimetype", "a.zip", "application/zip"),
    (b"plain words", "letter.docx", "text/plain"),
])
def test_detection_by_content_before_name(head, name, expected):
    assert detect_media_type(head, name) == expected
