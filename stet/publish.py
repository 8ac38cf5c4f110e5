"""The public snapshot: everything that may be published, nothing that may not.

``publish(source, out)`` writes a new SQLite file that holds the public part of an archive:

- every document that is not restricted and has no restricted ancestor (an attachment of a
  restricted message is restricted too), with its raw bytes, its text, the revisions of its
  annotations (the schema's triggers rebuild the current state from them; ``stet verify``
  on the snapshot checks every span again) and the events recorded about it;
- the layers that are not used only on withheld documents;
- full-text indexes (FTS5, ``unicode61``) over document titles and texts
  (``documents_fts``) and over annotation bodies, quotes and tags (``annotations_fts``).

Left out: restricted documents and their descendants, their raw bytes, texts, annotations,
revisions and events; events not tied to a published document (except the creation of a
published layer); and layers used only on withheld documents. References from a published document to a withheld one
(``supersedes``) become NULL. The file is built under a temporary name, VACUUMed (no free
page keeps a byte of anything) and renamed into place, so a reader never sees half a file.

The snapshot has its own event chain. Its first event (``action = 'publish'``) records the
source archive's chain length and head hash and how many rows of each kind were left out;
every published event follows, re-chained, its ``details`` extended with
``{"original": {"seq": ..., "hash": ...}}`` so that anyone holding the source can match each
one to the original. ``stet verify`` passes on the snapshot.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from . import __version__, store
from .errors import InvalidInput, NotFound, StetError
from .hashing import sha256_file
from .provenance import Chain

#: Bumped whenever what a snapshot holds changes, so cached snapshots are rebuilt.
FORMAT = 1

TOKENIZER = "unicode61 remove_diacritics 2"

#: Nonspacing marks (harakat, the Persian hamza above, Latin combining accents) are removed
#: from what the full-text index sees, so ``اعتمد`` finds ``اعتُمد``. The stored text keeps them.
_MARKS = re.compile(r"[\u0300-\u036f\u0483-\u0489\u0591-\u05bd\u05bf\u05c1\u05c2\u05c4\u05c5"
                    r"\u05c7\u0610-\u061a\u064b-\u065f\u0670\u06d6-\u06dc\u06df-\u06e4\u06e7"
                    r"\u06e8\u06ea-\u06ed\u0640]")


def fold(text: str | None) -> str | None:
    """What the full-text index sees of a text (and of a query): the marks removed."""
    if text is None:
        return None
    return _MARKS.sub("", text)


def publish(source: str | os.PathLike, out: str | os.PathLike, *, by: str | None = None,
            force: bool = False, record: bool = True) -> dict[str, Any]:
    """Write the public snapshot of ``source`` to ``out``; return a summary.

    With ``record`` the source archive gets a ``publish`` event naming the snapshot's SHA-256
    and chain head. ``force`` replaces an existing ``out`` (never the source itself).
    """
    source, out = Path(source), Path(out)
    if not source.exists():
        raise NotFound(f"no archive at {source}")
    if out.exists():
        if os.path.samefile(source, out):
            raise InvalidInput(f"{out} is the archive itself: publish writes a new file")
        if not force:
            raise InvalidInput(f"{out} already exists (give --force to replace it)")
    if out.parent and not out.parent.is_dir():
        raise NotFound(f"no folder {out.parent}")
    from .archive import Archive, default_user

    with Archive(source, create=False):  # migrates the source if it is older
        pass
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    _remove(tmp)
    try:
        summary = _build(source, tmp)
        summary["sha256"], summary["size"] = _file_hash(tmp)
        os.replace(tmp, out)
    except (OSError, sqlite3.OperationalError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StetError(f"cannot write {out}: {reason.lower()}") from None
    finally:
        _remove(tmp)
    summary["path"] = str(out)
    if record:
        with Archive(source) as archive, archive.write() as chain:
            event = chain.append(
                actor=by or default_user(), action="publish", subject=f"snapshot:{summary['sha256']}",
                details={"file": out.name, "sha256": summary["sha256"], "size": summary["size"],
                         "source": summary["source"], "left_out": summary["left_out"],
                         "snapshot_head": summary["head"], "format": FORMAT},
            )
        summary["event"] = event["seq"]
    return summary


def snapshot_info(path: str | os.PathLike) -> dict[str, Any] | None:
    """The first event's details of a snapshot (None if ``path`` is not one)."""
    try:
        conn = sqlite3.connect(f"file:{_uri_path(path)}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        row = conn.execute("SELECT action, details FROM events WHERE seq = 1").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if not row or row[0] != "publish":
        return None
    return json.loads(row[1])


def source_head(source: str | os.PathLike) -> tuple[int, str]:
    from .archive import Archive

    with Archive(source, create=False) as archive:
        return Chain(archive.conn).head()


def ensure_snapshot(source: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """The public snapshot for serving ``source``, rebuilt only when the source's chain head
    changed (every write appends an event, so an unchanged head means unchanged data)."""
    source = Path(source)
    cache = Path(cache) if cache else source.with_name(source.name + "-public")
    seq, head = source_head(source)
    info = snapshot_info(cache) if cache.exists() else None
    if (info and info.get("format") == FORMAT
            and info.get("source") == {"events": seq, "head": head}):
        return cache
    publish(source, cache, force=True, record=False)
    return cache


# -- building ---------------------------------------------------------------------------------

_HIDDEN = """
CREATE TEMP TABLE hidden_documents AS
WITH RECURSIVE hidden(id) AS (
    SELECT id FROM src.documents WHERE restricted != 0
    UNION SELECT d.id FROM src.documents d JOIN hidden h ON d.parent = h.id
) SELECT id FROM hidden
"""

_LEFT_OUT = {
    "documents": "SELECT count(*) FROM temp.hidden_documents",
    "texts": "SELECT count(*) FROM src.texts WHERE document IN temp.hidden_documents",
    "blobs": "SELECT count(*) FROM src.blobs WHERE sha256 IN "
             "(SELECT sha256 FROM src.documents WHERE id IN temp.hidden_documents)",
    "annotations": "SELECT count(*) FROM src.annotations WHERE document IN temp.hidden_documents",
    "annotation_revisions": "SELECT count(*) FROM src.annotation_revisions "
                            "WHERE document IN temp.hidden_documents",
    "layers": "SELECT count(*) FROM src.layers WHERE id NOT IN temp.kept_layers",
    "events": "SELECT count(*) FROM src.events WHERE document IN temp.hidden_documents "
              "OR (document IS NULL AND NOT (action = 'layer-add' AND subject IN "
              "(SELECT 'layer:' || name FROM src.layers WHERE id IN temp.kept_layers)))",
}

_COPY = [
    "INSERT INTO main.blobs SELECT * FROM src.blobs WHERE sha256 IN "
    "(SELECT sha256 FROM src.documents WHERE id NOT IN temp.hidden_documents)",
    "INSERT INTO main.blob_chunks (id, sha256, seq, data) SELECT id, sha256, seq, data "
    "FROM src.blob_chunks WHERE sha256 IN "
    "(SELECT sha256 FROM main.blobs) ORDER BY id",
    "INSERT INTO main.documents (id, sha256, title, filename, media_type, size, source, "
    "restricted, ingested_by, ingested_at, parent, supersedes) "
    "SELECT id, sha256, title, filename, media_type, size, source, restricted, ingested_by, "
    "ingested_at, parent, CASE WHEN supersedes IN temp.hidden_documents THEN NULL "
    "ELSE supersedes END FROM src.documents WHERE id NOT IN temp.hidden_documents ORDER BY id",
    "INSERT INTO main.texts SELECT * FROM src.texts WHERE document NOT IN temp.hidden_documents",
    "INSERT INTO main.layers SELECT * FROM src.layers WHERE id IN temp.kept_layers ORDER BY id",
    "INSERT INTO main.annotation_revisions SELECT * FROM src.annotation_revisions "
    "WHERE document NOT IN temp.hidden_documents ORDER BY id",
]

_FTS = [
    f"CREATE VIRTUAL TABLE documents_fts USING fts5(title, text, content='', "
    f"tokenize='{TOKENIZER}')",
    "INSERT INTO documents_fts (rowid, title, text) SELECT d.id, stet_fold(d.title), "
    "stet_fold(t.text) FROM documents d LEFT JOIN texts t ON t.document = d.id",
    f"CREATE VIRTUAL TABLE annotations_fts USING fts5(body, exact, tags, content='', "
    f"tokenize='{TOKENIZER}')",
    "INSERT INTO annotations_fts (rowid, body, exact, tags) SELECT id, stet_fold(body), "
    "stet_fold(exact), stet_fold((SELECT group_concat(value, ' ') FROM json_each(tags))) "
    "FROM annotations",
    "INSERT INTO documents_fts (documents_fts) VALUES ('optimize')",
    "INSERT INTO annotations_fts (annotations_fts) VALUES ('optimize')",
]


def _build(source: Path, path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(str(path), isolation_level=None, uri=False)
    try:
        conn.execute("PRAGMA journal_mode = MEMORY")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA cache_size = -200000")
        conn.create_function("stet_fold", 1, fold, deterministic=True)
        store.migrate(sqlite_utils.Database(conn))
        conn.execute("ATTACH DATABASE ? AS src", (str(source),))
        conn.execute("BEGIN")  # one read snapshot of the source for everything below
        seq, head = _src_head(conn)
        conn.execute(_HIDDEN)
        conn.execute(
            "CREATE TEMP TABLE kept_layers AS SELECT id FROM src.layers WHERE id IN "
            "(SELECT layer FROM src.annotation_revisions WHERE document NOT IN temp.hidden_documents) "
            "OR id NOT IN (SELECT layer FROM src.annotation_revisions)"
        )
        left_out = {name: conn.execute(sql).fetchone()[0] for name, sql in _LEFT_OUT.items()}
        source_info = {"events": seq, "head": head}
        chain = Chain(conn)
        genesis = chain.append(
            actor="stet publish", action="publish", subject=f"archive:{head}",
            details={
                "source": source_info,
                "left_out": left_out,
                "rule": "restricted documents and their attachments, with their raw bytes, "
                        "texts, annotations, revisions and events; events not tied to a "
                        "published document or layer; layers used only on withheld documents",
                "format": FORMAT,
                "stet": __version__,
            },
        )
        for sql in _COPY:
            conn.execute(sql)
        _copy_events(conn)
        for sql in _FTS:
            conn.execute(sql)
        head_seq, head_hash = chain.head()
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE src")
        conn.execute("VACUUM")
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("documents", "annotations", "annotation_revisions", "layers", "events")}
    finally:
        conn.close()
    return {"source": source_info, "left_out": left_out, "published": counts,
            "head": {"events": head_seq, "hash": head_hash}, "time": genesis["time"]}


def _src_head(conn) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM src.events ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, store.GENESIS_HASH)


def _copy_events(conn, batch: int = 5000) -> None:
    """Re-chain the published events, each pointing back at its original."""
    chain = Chain(conn)
    cursor = conn.execute(
        "SELECT seq, time, actor, action, subject, document, details, hash FROM src.events "
        "WHERE (document IS NOT NULL AND document NOT IN temp.hidden_documents) "
        "OR (document IS NULL AND action = 'layer-add' AND subject IN "
        "(SELECT 'layer:' || name FROM src.layers WHERE id IN temp.kept_layers)) ORDER BY seq"
    )
    while rows := cursor.fetchmany(batch):
        chain.append_many([
            dict(time=time, actor=actor, action=action, subject=subject, document=document,
                 details={**json.loads(details), "original": {"seq": seq, "hash": hash_}})
            for seq, time, actor, action, subject, document, details, hash_ in rows
        ])


def _file_hash(path: Path) -> tuple[str, int]:
    with open(path, "rb") as stream:
        return sha256_file(stream)


def _remove(path: Path) -> None:
    for p in (path, Path(f"{path}-journal")):
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _uri_path(path) -> str:
    from urllib.parse import quote

    return quote(str(Path(path).resolve()))
