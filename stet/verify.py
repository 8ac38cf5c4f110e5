"""Fixity and consistency: recompute everything that can be recomputed, report every problem.

Like bagit-python's ``validate``, :func:`verify` does not stop at the first problem: it
collects them all, each naming the document (id and SHA-256 prefix), annotation or event.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

from .hashing import sha256_text
from .provenance import check_chain


def verify(conn) -> list[str]:
    problems: list[str] = []
    problems.extend(check_blobs(conn))
    problems.extend(check_texts(conn))
    problems.extend(check_chain(conn))
    problems.extend(check_spans(conn))
    problems.extend(check_current_state(conn))
    return problems


def _doc(doc_id, sha) -> str:
    return f"document {doc_id} (sha256 {str(sha)[:12]})"


def check_blobs(conn) -> Iterator[str]:
    """Every document's raw bytes, chunk by chunk, against their SHA-256 and size."""
    docs = conn.execute(
        "SELECT d.id, d.sha256, d.size, b.size, b.chunk_count, b.storage FROM documents d "
        "LEFT JOIN blobs b ON b.sha256 = d.sha256 ORDER BY d.id"
    ).fetchall()
    for doc_id, sha, doc_size, blob_size, chunk_count, storage in docs:
        name = _doc(doc_id, sha)
        if blob_size is None:
            yield f"{name}: raw bytes missing"
            continue
        if storage == "text":
            row = conn.execute("SELECT CAST(text AS BLOB) FROM texts WHERE document = ?",
                               (doc_id,)).fetchone()
            data = bytes(row[0] or b"") if row else b""
            if row is None:
                yield f"{name}: raw bytes (kept as its text) missing"
            elif len(data) != blob_size or len(data) != doc_size:
                yield f"{name}: raw bytes are {len(data)} bytes, recorded {doc_size}"
            elif hashlib.sha256(data).hexdigest() != sha:
                yield f"{name}: raw bytes do not match their SHA-256 (kept as its text, which was changed)"
            continue
        digest = hashlib.sha256()
        size = 0
        expected_seq = 0
        gap = False
        for seq, data in conn.execute(
            "SELECT seq, data FROM blob_chunks WHERE sha256 = ? ORDER BY seq", (sha,)
        ):
            if seq != expected_seq:
                gap = True
            expected_seq = seq + 1
            data = bytes(data) if not isinstance(data, bytes) else data
            digest.update(data)
            size += len(data)
        if gap or expected_seq != chunk_count:
            yield f"{name}: raw bytes incomplete ({expected_seq} of {chunk_count} chunks, or out of order)"
        if size != blob_size or size != doc_size:
            yield f"{name}: raw bytes are {size} bytes, recorded {doc_size}"
        if digest.hexdigest() != sha:
            yield f"{name}: raw bytes do not match their SHA-256 (got {digest.hexdigest()[:12]})"


def check_texts(conn) -> Iterator[str]:
    for doc_id, sha, text_sha, length, text in conn.execute(
        "SELECT d.id, d.sha256, t.sha256, t.length, t.text FROM documents d "
        "LEFT JOIN texts t ON t.document = d.id ORDER BY d.id"
    ):
        name = _doc(doc_id, sha)
        if text is None and text_sha is None:
            yield f"{name}: extracted text missing"
            continue
        if not isinstance(text, str):
            yield f"{name}: extracted text is not text"
            continue
        if sha256_text(text) != text_sha:
            yield f"{name}: text does not match its SHA-256"
        if len(text) != length:
            yield f"{name}: text is {len(text)} code points, recorded {length}"


def check_spans(conn) -> Iterator[str]:
    """``exact == text[start:end]`` and ``0 <= start < end <= length`` for every revision."""
    for ann, rev, doc_id, start, end, exact, text in conn.execute(
        'SELECT r.annotation, r.revision, r.document, r.start, r."end", r.exact, t.text '
        "FROM annotation_revisions r LEFT JOIN texts t ON t.document = r.document "
        "WHERE r.start IS NOT NULL ORDER BY r.id"
    ):
        if text is None:
            yield f"annotation {ann} revision {rev}: document {doc_id} has no text"
        elif not (0 <= start < end <= len(text)):
            yield f"annotation {ann} revision {rev}: span {start}:{end} outside document {doc_id}'s text"
        elif text[start:end] != exact:
            yield f"annotation {ann} revision {rev}: exact is not the text at {start}:{end} of document {doc_id}"


def check_current_state(conn) -> Iterator[str]:
    """The derived ``annotations`` table agrees with the latest revision of each annotation."""
    columns = ('uuid, document, layer, reply_to, start, "end", exact, prefix, suffix, body, '
               "motivation, tags, creator, author, created, modified, modified_us, revision, "
               "status, reason")
    rows = conn.execute(
        f"SELECT annotation, {columns} FROM annotation_revisions r WHERE revision = "
        "(SELECT max(revision) FROM annotation_revisions WHERE annotation = r.annotation) "
        f"EXCEPT SELECT id, {columns} FROM annotations"
    ).fetchall()
    for row in rows:
        yield f"annotation {row[0]}: current state does not match its latest revision"
    extra = conn.execute(
        "SELECT id FROM annotations WHERE id NOT IN (SELECT annotation FROM annotation_revisions)"
    ).fetchall()
    for (ann,) in extra:
        yield f"annotation {ann}: in the current state but has no revision"
