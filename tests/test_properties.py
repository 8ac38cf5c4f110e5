"""Property tests: any bytes ingest and come back exactly; UTF-8 text round-trips exactly."""

import hashlib

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stet import Archive
from stet.extract import detect_media_type

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(data=st.binary(max_size=4096), name=st.sampled_from(["a.txt", "b.bin", "c.html", "d"]))
def test_any_bytes_ingest_and_come_back(tmp_path_factory, data, name):
    folder = tmp_path_factory.mktemp("bytes")
    (folder / name).write_bytes(data)
    with Archive(folder / "archive.db") as archive:
        (result,) = archive.ingest([folder / name], by="prop")
        assert result["status"] == "new"
        assert result["sha256"] == hashlib.sha256(data).hexdigest()
        assert result["size"] == len(data)
        assert b"".join(archive.raw(result["id"])) == data
        assert archive.verify() == []
        (again,) = archive.ingest([folder / name], by="prop")
        assert again["status"] == "duplicate" and again["id"] == result["id"]


# Any code point but surrogates (not encodable) and NUL (a file with NUL bytes is binary).
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"), max_size=300)


@SETTINGS
@given(text=TEXT)
def test_utf8_text_round_trips_exactly(tmp_path_factory, text):
    data = text.encode("utf-8")
    assume(not text.startswith("\ufeff"))  # a leading BOM is the encoding's signature
    assume(detect_media_type(data[:8192], "t.txt") == "text/plain")  # not sniffed as HTML/email
    folder = tmp_path_factory.mktemp("text")
    (folder / "t.txt").write_bytes(data)
    with Archive(folder / "archive.db") as archive:
        (result,) = archive.ingest([folder / "t.txt"], by="prop")
        assert archive.text(result["id"]) == text
        doc = archive.document(result["id"])
        assert doc["text_length"] == len(text)
        assert doc["text_sha256"] == hashlib.sha256(data).hexdigest()
        assert archive.verify() == []


@SETTINGS
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=200))
def test_newlines_normalized_and_nothing_else(tmp_path_factory, text):
    data = text.encode("utf-8")
    assume(not text.startswith("\ufeff"))
    assume(detect_media_type(data[:8192], "t.txt") == "text/plain")
    folder = tmp_path_factory.mktemp("nl")
    (folder / "t.txt").write_bytes(data)
    with Archive(folder / "archive.db") as archive:
        (result,) = archive.ingest([folder / "t.txt"], by="prop")
        assert archive.text(result["id"]) == text.replace("\r\n", "\n").replace("\r", "\n")
