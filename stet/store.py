# Over 400 lines on purpose: the released migrations are never edited (a change is a new
# migration), and they must sit beside connect() and migrate(), which apply them.
"""The schema: tables, indexes and the triggers that make history append-only.

Every table that records what happened (raw bytes, documents, texts, events, layers,
annotation revisions) refuses UPDATE and DELETE in the database itself, so no code path and
no SQL client can rewrite history. Derived tables (the current state of annotations, full-text
indexes) may be rebuilt from them.

Schema changes go through :class:`sqlite_utils.migrations.Migrations`; a migration is never
edited once released, a change is a new migration.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import urllib.parse
from typing import Iterator

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .errors import StetError

GENESIS_HASH = "0" * 64

#: Tables whose rows are history: the database refuses UPDATE and DELETE on them.
APPEND_ONLY = (
    "blobs",
    "blob_chunks",
    "documents",
    "texts",
    "events",
    "layers",
    "annotation_revisions",
    "_sqlite_migrations",
    "accounts",
    "tokens",
    "annotation_anchoring",
    "blob_objects",
)

migrations = Migrations("stet")


#: The unique keys of each append-only table: an INSERT that would collide with one is
#: refused before SQLite's REPLACE conflict resolution could delete the old row (REPLACE
#: deletes without firing DELETE triggers).
UNIQUE_KEYS = {
    "blobs": [("sha256",)],
    "blob_chunks": [("id",), ("sha256", "seq")],
    "documents": [("id",), ("sha256",)],
    "texts": [("document",)],
    "events": [("seq",), ("hash",)],
    "layers": [("id",), ("name",)],
    "annotation_revisions": [("id",), ("annotation", "revision")],
    "_sqlite_migrations": [("id",), ("migration_set", "name")],
    "accounts": [("id",), ("name",)],
    "tokens": [("id",), ("sha256",)],
    "annotation_anchoring": [("id",), ("annotation", "event")],
    "blob_objects": [("sha256",)],
}

#: The events that set a document's metadata: each records the whole state after it
#: (``title``, ``source``, ``restricted``) in its details. A document's current state is
#: that of the latest of them: the chain is the record (DESIGN.md, invariant 8).
STATE_ACTIONS = ("ingest", "restrict", "unrestrict", "edit")
STATE_ACTIONS_SQL = "(" + ", ".join(f"'{a}'" for a in STATE_ACTIONS) + ")"


def _append_only(table: str) -> str:
    collides = " OR ".join(
        "(" + " AND ".join(f'"{c}" = NEW."{c}"' for c in key) + ")" for key in UNIQUE_KEYS[table]
    )
    return f"""
    CREATE TRIGGER IF NOT EXISTS {table}_no_update BEFORE UPDATE ON {table}
    BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE refused'); END;
    CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table}
    BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE refused'); END;
    CREATE TRIGGER IF NOT EXISTS {table}_no_replace BEFORE INSERT ON {table}
    BEGIN SELECT RAISE(ABORT, '{table} is append-only: that row exists already')
          WHERE EXISTS (SELECT 1 FROM {table} WHERE {collides}); END;
    """


@migrations()
def m001_core(db: sqlite_utils.Database) -> None:
    _script(db,
        f"""
        -- Raw bytes, content-addressed. storage 'chunks': in blob_chunks. storage 'text': the
        -- bytes are exactly the UTF-8 of the text extracted from them (a UTF-8 file without BOM
        -- or CR), kept once, in texts.text of the document with this sha256.
        CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY NOT NULL
                CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
            size INTEGER NOT NULL CHECK (size >= 0),
            storage TEXT NOT NULL DEFAULT 'chunks' CHECK (storage IN ('chunks', 'text')),
            chunk_count INTEGER NOT NULL CHECK (chunk_count >= 0),
            CHECK (storage = 'chunks' OR chunk_count = 0)
        );
        -- Raw bytes in chunks of at most CHUNK_SIZE bytes, in order (seq from 0).
        CREATE TABLE blob_chunks (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL REFERENCES blobs(sha256),
            seq INTEGER NOT NULL CHECK (seq >= 0),
            data BLOB NOT NULL,
            UNIQUE (sha256, seq)
        );
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            sha256 TEXT NOT NULL UNIQUE REFERENCES blobs(sha256),
            title TEXT,
            filename TEXT NOT NULL,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL CHECK (size >= 0),
            source TEXT,
            restricted INTEGER NOT NULL DEFAULT 0 CHECK (restricted IN (0, 1)),
            ingested_by TEXT NOT NULL,
            ingested_at TEXT NOT NULL,
            parent INTEGER REFERENCES documents(id),
            supersedes INTEGER REFERENCES documents(id)
        );
        CREATE INDEX documents_parent ON documents(parent) WHERE parent IS NOT NULL;
        -- A document's annotatable text, extracted once; offsets index it in code points.
        CREATE TABLE texts (
            document INTEGER PRIMARY KEY REFERENCES documents(id),
            sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
            length INTEGER NOT NULL CHECK (length >= 0),
            text TEXT NOT NULL,
            extractor TEXT NOT NULL,
            extractor_version TEXT NOT NULL,
            encoding TEXT,
            warning TEXT
        );
        -- The hash-chained event log: one row per write, linear, append-only.
        CREATE TABLE events (
            seq INTEGER PRIMARY KEY CHECK (seq >= 1),
            time TEXT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            subject TEXT,
            document INTEGER REFERENCES documents(id),
            details TEXT NOT NULL,
            prev_hash TEXT NOT NULL CHECK (length(prev_hash) = 64),
            hash TEXT NOT NULL UNIQUE CHECK (length(hash) = 64)
        );
        CREATE INDEX events_document ON events(document) WHERE document IS NOT NULL;
        CREATE TRIGGER events_linear BEFORE INSERT ON events
        BEGIN
            SELECT RAISE(ABORT, 'events: seq must follow the last event')
            WHERE NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM events);
            SELECT RAISE(ABORT, 'events: prev_hash must be the hash of the last event')
            WHERE NEW.prev_hash IS NOT coalesce(
                (SELECT hash FROM events ORDER BY seq DESC LIMIT 1), '{GENESIS_HASH}');
        END;
        -- texts.length (code points) is computed by stet and checked by stet verify: SQLite's
        -- length() over every text cost about a tenth of an ingest (benchmarks/README.md).
        CREATE TRIGGER texts_verbatim BEFORE INSERT ON texts
        BEGIN
            SELECT RAISE(ABORT, 'texts: raw bytes stored as text must be the text')
            WHERE EXISTS (SELECT 1 FROM blobs b JOIN documents d ON d.sha256 = b.sha256
                          WHERE d.id = NEW.document AND b.storage = 'text'
                          AND NEW.sha256 IS NOT b.sha256);
        END;
        {''.join(_append_only(t) for t in ("blobs", "blob_chunks", "documents", "texts", "events"))}
        """
    )


#: The triggers that keep ``annotations`` (the current state) up to date on every insert into
#: ``annotation_revisions``. A bulk import (``stet.annotations.importer.Importer``) drops them
#: inside its write transaction, writes the current state of what it added in two set-based
#: statements, and creates them again from this same text before it commits. Released text,
#: never edited: ``stet.annotations.schema`` generates the same statements from the one column
#: list, and ``tests/test_annotations_schema.py`` holds the two equal.
CURRENT_STATE_TRIGGER_NAMES = ("annotation_revisions_create", "annotation_revisions_current")
CURRENT_STATE_TRIGGERS = """CREATE TRIGGER annotation_revisions_create AFTER INSERT ON annotation_revisions
        WHEN NEW.revision = 1
        BEGIN
            INSERT INTO annotations (
                id, uuid, document, layer, reply_to, start, "end", exact, prefix, suffix,
                body, motivation, tags, creator, author, created, modified, modified_us,
                revision, status, reason)
            VALUES (
                NEW.annotation, NEW.uuid, NEW.document, NEW.layer, NEW.reply_to, NEW.start,
                NEW."end", NEW.exact, NEW.prefix, NEW.suffix, NEW.body, NEW.motivation,
                NEW.tags, NEW.creator, NEW.author, NEW.created, NEW.modified, NEW.modified_us,
                NEW.revision, NEW.status, NEW.reason);
        END;
        CREATE TRIGGER annotation_revisions_current AFTER INSERT ON annotation_revisions
        WHEN NEW.revision > 1
        BEGIN
            UPDATE annotations SET start = NEW.start, "end" = NEW."end", exact = NEW.exact,
                prefix = NEW.prefix, suffix = NEW.suffix, body = NEW.body,
                motivation = NEW.motivation, tags = NEW.tags, author = NEW.author,
                modified = NEW.modified, modified_us = NEW.modified_us,
                revision = NEW.revision, status = NEW.status, reason = NEW.reason
            WHERE id = NEW.annotation;
        END;
"""


@migrations()
def m002_annotations(db: sqlite_utils.Database) -> None:
    _script(db,
        f"""
        CREATE TABLE layers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
            description TEXT,
            colour TEXT,
            created_by TEXT NOT NULL,
            created TEXT NOT NULL
        );
        -- Every revision of every annotation: the source of truth, append-only.
        -- Revision 1 creates the annotation; a retraction is a revision with status 'retracted'.
        -- Offsets are code points into texts.text, start inclusive, end exclusive.
        CREATE TABLE annotation_revisions (
            id INTEGER PRIMARY KEY,
            annotation INTEGER NOT NULL CHECK (annotation >= 1),
            revision INTEGER NOT NULL CHECK (revision >= 1),
            uuid TEXT NOT NULL,
            document INTEGER NOT NULL REFERENCES documents(id),
            layer INTEGER NOT NULL REFERENCES layers(id),
            reply_to INTEGER,
            start INTEGER,
            "end" INTEGER,
            exact TEXT,
            prefix TEXT,
            suffix TEXT,
            body TEXT NOT NULL DEFAULT '',
            motivation TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
            creator TEXT NOT NULL,
            author TEXT NOT NULL,
            created TEXT NOT NULL,
            modified TEXT NOT NULL,
            modified_us INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'retracted')),
            reason TEXT,
            UNIQUE (annotation, revision),
            CHECK ((start IS NULL AND "end" IS NULL AND exact IS NULL)
                   OR (start >= 0 AND start < "end" AND exact IS NOT NULL)),
            CHECK (start IS NULL OR length(exact) = "end" - start),
            CHECK (start IS NOT NULL OR reply_to IS NOT NULL)
        );
        -- The span lies inside the text: reads texts.length only (it comes before the text
        -- in the row, so the text itself is not read). exact == text[start:end] is checked by
        -- stet before the insert and by stet verify (see below).
        CREATE TRIGGER annotation_revisions_span BEFORE INSERT ON annotation_revisions
        WHEN NEW.start IS NOT NULL
        BEGIN
            SELECT RAISE(ABORT, 'annotation_revisions: span outside the text')
            WHERE NEW."end" > coalesce((SELECT length FROM texts WHERE document = NEW.document), -1);
        END;
        -- exact == text[start:end] and 0 <= start < end <= length are checked by stet before
        -- every insert and by stet verify for every revision. A trigger checking it with
        -- substr() over the whole text cost more than the rest of an insert (see
        -- benchmarks/README.md) and grows with the text's length, so there is none.
        -- The state at a past instant: the latest revision at or before it, per document.
        CREATE INDEX annotation_revisions_document_time
            ON annotation_revisions(document, modified_us);
        -- A later revision follows the one before it (and is not dated before it) and keeps
        -- its annotation's identity. Revision 1 needs no check here: UNIQUE (annotation,
        -- revision) refuses a second one, and annotations.uuid UNIQUE a reused uuid.
        CREATE TRIGGER annotation_revisions_sequence BEFORE INSERT ON annotation_revisions
        WHEN NEW.revision > 1
        BEGIN
            SELECT RAISE(ABORT, 'annotation_revisions: revision must follow the last one, not dated before it')
            WHERE NOT EXISTS (
                SELECT 1 FROM annotation_revisions WHERE annotation = NEW.annotation
                AND revision = NEW.revision - 1 AND modified_us <= NEW.modified_us);
            SELECT RAISE(ABORT, 'annotation_revisions: a revision keeps its annotation''s uuid, document, layer, creator, created and reply_to')
            WHERE NOT EXISTS (
                SELECT 1 FROM annotation_revisions WHERE annotation = NEW.annotation
                AND revision = 1 AND uuid = NEW.uuid AND document = NEW.document
                AND layer = NEW.layer AND creator = NEW.creator AND created = NEW.created
                AND reply_to IS NEW.reply_to);
        END;
        -- The current state, one row per annotation: derived, maintained by the triggers
        -- below, rebuildable from annotation_revisions (stet verify checks that it agrees).
        CREATE TABLE annotations (
            id INTEGER PRIMARY KEY,
            uuid TEXT NOT NULL UNIQUE,
            document INTEGER NOT NULL REFERENCES documents(id),
            layer INTEGER NOT NULL REFERENCES layers(id),
            reply_to INTEGER,
            start INTEGER,
            "end" INTEGER,
            exact TEXT,
            prefix TEXT,
            suffix TEXT,
            body TEXT NOT NULL,
            motivation TEXT NOT NULL,
            tags TEXT NOT NULL,
            creator TEXT NOT NULL,
            author TEXT NOT NULL,
            created TEXT NOT NULL,
            modified TEXT NOT NULL,
            modified_us INTEGER NOT NULL,
            revision INTEGER NOT NULL,
            status TEXT NOT NULL,
            reason TEXT
        );
        -- Overlap: document = ? AND start < M AND "end" > N (measured faster than an R*Tree).
        CREATE INDEX annotations_span ON annotations(document, start, "end");
        CREATE INDEX annotations_layer ON annotations(layer);
        CREATE INDEX annotations_creator ON annotations(creator);
        {CURRENT_STATE_TRIGGERS}
        {''.join(_append_only(t) for t in ("layers", "annotation_revisions"))}
        """
    )


#: The ids of the documents the public may not see: restricted now by the chain
#: (``document_state``), or an attachment, at any depth, of one that is. Every export and
#: page that leaves out restricted material selects with this one query.
HIDDEN_DOCUMENTS = """WITH RECURSIVE hidden(id) AS (
    SELECT document FROM document_state WHERE restricted
    UNION SELECT d.id FROM documents d JOIN hidden h ON d.parent = h.id
) SELECT id FROM hidden"""


@migrations()
def m003_state_from_the_chain(db: sqlite_utils.Database) -> None:
    _script(db,
        f"""
        -- The latest metadata event of each document, found without reading its other events.
        CREATE INDEX events_document_state ON events(document, seq)
            WHERE action IN {STATE_ACTIONS_SQL};
        -- A document's current title, source and restriction, read from the chain: from the
        -- details of its latest ingest, restrict, unrestrict or edit event. A document with no
        -- such event counts as restricted (fail safe); stet verify reports it.
        CREATE VIEW document_state AS
        SELECT d.id AS document,
               CASE WHEN e.seq IS NULL THEN d.title ELSE json_extract(e.details, '$.title') END
                   AS title,
               CASE WHEN e.seq IS NULL THEN d.source ELSE json_extract(e.details, '$.source') END
                   AS source,
               CASE WHEN e.seq IS NULL THEN 1
                    ELSE coalesce(json_extract(e.details, '$.restricted'), 1) != 0 END
                   AS restricted,
               e.seq AS event
        FROM documents d LEFT JOIN events e ON e.seq = (
            SELECT max(seq) FROM events INDEXED BY events_document_state
            WHERE document = d.id AND action IN {STATE_ACTIONS_SQL});
        {_append_only("_sqlite_migrations")}
        """
    )


@migrations()
def m004_rare_events(db: sqlite_utils.Database) -> None:
    _script(db,
        """
        -- Imports (whose rows ranges say who imported a revision) and layer renames and
        -- merges (which say where a layer's annotations are now) are few among millions of
        -- events, and read on every history, annotate and layer listing: partial indexes hold
        -- only them. Each WHERE is written exactly as the queries write it (stet.annotations),
        -- which is what lets SQLite use a partial index.
        CREATE INDEX events_imports ON events(seq) WHERE action = 'import';
        CREATE INDEX events_layer_moves ON events(seq)
            WHERE action IN ('layer-rename', 'layer-merge');
        """
    )


#: The events that set an account's role and whether it is disabled; each records the whole
#: state after it (``role``, ``disabled``): the ``account_state`` view reads the latest.
USER_ACTIONS = ("user-add", "user-role", "user-disable", "user-enable")
USER_ACTIONS_SQL = "(" + ", ".join(f"'{a}'" for a in USER_ACTIONS) + ")"


@migrations()
def m005_accounts(db: sqlite_utils.Database) -> None:
    _script(db,
        f"""
        -- Workbench accounts (stet.accounts): the name, the password's argon2 hash, and who
        -- made it when (as its user-add event records). Role and disabled change only by
        -- events (user-add, user-role, user-disable, user-enable): see account_state.
        CREATE TABLE accounts (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE CHECK (length(name) > 0),
            password_hash TEXT NOT NULL CHECK (password_hash GLOB '$argon2*'),
            created TEXT NOT NULL,
            created_by TEXT NOT NULL
        );
        -- Bearer tokens: only the SHA-256 of each token is kept. Revoked by an event.
        CREATE TABLE tokens (
            id INTEGER PRIMARY KEY,
            account INTEGER NOT NULL REFERENCES accounts(id),
            sha256 TEXT NOT NULL UNIQUE
                CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
            created TEXT NOT NULL,
            created_by TEXT NOT NULL,
            expires TEXT
        );
        CREATE INDEX tokens_account ON tokens(account);
        CREATE INDEX events_account_state ON events(subject, seq)
            WHERE action IN {USER_ACTIONS_SQL};
        CREATE INDEX events_token_revoke ON events(subject) WHERE action = 'token-revoke';
        -- An account's current role and whether it is disabled, from the details of its
        -- latest user-* event. An account with no such event counts as disabled (fail
        -- safe); stet verify reports it.
        CREATE VIEW account_state AS
        SELECT a.id AS account, a.name AS name,
               json_extract(e.details, '$.role') AS role,
               CASE WHEN e.seq IS NULL THEN 1
                    ELSE coalesce(json_extract(e.details, '$.disabled'), 1) != 0 END
                   AS disabled,
               e.seq AS event
        FROM accounts a LEFT JOIN events e ON e.seq = (
            SELECT max(seq) FROM events INDEXED BY events_account_state
            WHERE subject = 'user:' || a.name
            AND action IN {USER_ACTIONS_SQL});
        -- Whether each token is revoked: a token-revoke event names it.
        CREATE VIEW token_state AS
        SELECT t.id AS token, t.account AS account, EXISTS (
                   SELECT 1 FROM events INDEXED BY events_token_revoke
                   WHERE subject = 'token:' || t.id AND action = 'token-revoke') AS revoked
        FROM tokens t;
        {''.join(_append_only(t) for t in ("accounts", "tokens"))}
        """
    )


#: How an annotation carried to a newer version of its document was placed (stet.annotations
#: .versions): exactly, approximately with a score, or not at all (kept, with no span).
ANCHORINGS = ("exact", "fuzzy", "orphaned")


@migrations()
def m006_versions(db: sqlite_utils.Database) -> None:
    """Document versions: annotations carried to a newer version (``stet reanchor``).

    ``annotation_revisions`` is rebuilt (SQLite's way of changing a table's constraints: a
    new table, the rows copied in order, the old one dropped, the new one renamed, its
    indexes and triggers made again from their own text) to lift one CHECK: an annotation
    with no span had to be a reply; now it may also be an annotation carried to a newer
    version whose passage is gone (orphaned), which a trigger checks against
    ``annotation_anchoring``. Every other constraint and trigger stays as it was."""
    kept = [row[0] for row in db.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'annotation_revisions' "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL ORDER BY rowid")]
    _script(db,
        f"""
        -- How each carried annotation was placed, by each reanchor event that placed it:
        -- the latest row of an annotation is its anchoring now (anchoring_state).
        -- origin: the annotation it was carried from (on the older version; NULL only in a
        -- public snapshot, when that one is not published).
        CREATE TABLE annotation_anchoring (
            id INTEGER PRIMARY KEY,
            annotation INTEGER NOT NULL CHECK (annotation >= 1),
            origin INTEGER,
            anchoring TEXT NOT NULL CHECK (anchoring IN {ANCHORINGS!r}),
            score REAL NOT NULL CHECK (score >= 0 AND score <= 1),
            event INTEGER NOT NULL CHECK (event >= 1),
            UNIQUE (annotation, event)
        );
        CREATE INDEX annotation_anchoring_origin ON annotation_anchoring(origin);
        CREATE VIEW anchoring_state AS
        SELECT annotation, origin, anchoring, score, event FROM annotation_anchoring x
        WHERE event = (SELECT max(event) FROM annotation_anchoring
                       WHERE annotation = x.annotation);
        CREATE INDEX events_reanchors ON events(seq) WHERE action = 'reanchor';
        {_append_only("annotation_anchoring")}
        -- m002's annotation_revisions, restated whole (a migration states what it creates;
        -- m002's text is released and never edited), without CHECK (start IS NOT NULL OR
        -- reply_to IS NOT NULL), which annotation_revisions_spanless replaces below.
        CREATE TABLE annotation_revisions_m006 (
            id INTEGER PRIMARY KEY,
            annotation INTEGER NOT NULL CHECK (annotation >= 1),
            revision INTEGER NOT NULL CHECK (revision >= 1),
            uuid TEXT NOT NULL,
            document INTEGER NOT NULL REFERENCES documents(id),
            layer INTEGER NOT NULL REFERENCES layers(id),
            reply_to INTEGER,
            start INTEGER,
            "end" INTEGER,
            exact TEXT,
            prefix TEXT,
            suffix TEXT,
            body TEXT NOT NULL DEFAULT '',
            motivation TEXT NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(tags) AND json_type(tags) = 'array'),
            creator TEXT NOT NULL,
            author TEXT NOT NULL,
            created TEXT NOT NULL,
            modified TEXT NOT NULL,
            modified_us INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('active', 'retracted')),
            reason TEXT,
            UNIQUE (annotation, revision),
            CHECK ((start IS NULL AND "end" IS NULL AND exact IS NULL)
                   OR (start >= 0 AND start < "end" AND exact IS NOT NULL)),
            CHECK (start IS NULL OR length(exact) = "end" - start)
        );
        INSERT INTO annotation_revisions_m006 SELECT * FROM annotation_revisions ORDER BY id;
        DROP TABLE annotation_revisions;
        ALTER TABLE annotation_revisions_m006 RENAME TO annotation_revisions;
        """)
    for sql in kept:
        db.execute(sql)
    _script(db,
        """
        -- Only a reply, or a carried annotation whose passage is gone, has no span.
        CREATE TRIGGER annotation_revisions_spanless BEFORE INSERT ON annotation_revisions
        WHEN NEW.start IS NULL AND NEW.reply_to IS NULL
        BEGIN
            SELECT RAISE(ABORT, 'annotation_revisions: only a reply, or an orphaned carried annotation, has no span')
            WHERE NOT EXISTS (SELECT 1 FROM annotation_anchoring
                              WHERE annotation = NEW.annotation AND anchoring = 'orphaned');
        END;
        """)


@migrations()
def m007_versions_index(db: sqlite_utils.Database) -> None:
    """The newer versions of a document, found without reading every document: each
    document page asks (``superseded by``), and so does ``stet versions``."""
    _script(db,
        """
        CREATE INDEX documents_supersedes ON documents(supersedes)
            WHERE supersedes IS NOT NULL;
        """)


@migrations()
def m008_object_store(db: sqlite_utils.Database) -> None:
    """Raw bytes in an S3-compatible object store (:mod:`stet.blobs`).

    ``blob_objects`` says where a blob's bytes are when they are not in the file: in which
    store, under which key, at which offset and length (a pack holds the files of one ingest
    batch; a large file is an object of its own), and which event recorded it (the
    document's ``ingest``, or the ``store-migrate`` that moved it out of the file). Such a
    blob keeps its ``blobs`` row as it was ('chunks', its chunk count): its chunks are the
    object's bytes, cut at CHUNK_SIZE. The chunks of a blob may leave the file only once
    the blob has its ``blob_objects`` row: the one DELETE the database allows on
    ``blob_chunks`` (``stet store migrate``, in the transaction that records the move)."""
    _script(db,
        f"""
        CREATE TABLE blob_objects (
            sha256 TEXT PRIMARY KEY NOT NULL REFERENCES blobs(sha256),
            store TEXT NOT NULL CHECK (store GLOB 's3://?*'),
            key TEXT NOT NULL CHECK (length(key) > 0),
            "offset" INTEGER NOT NULL CHECK ("offset" >= 0),
            length INTEGER NOT NULL CHECK (length >= 0),
            event INTEGER NOT NULL CHECK (event >= 1)
        );
        CREATE INDEX blob_objects_key ON blob_objects(store, key, "offset");
        {_append_only("blob_objects")}
        DROP TRIGGER blob_chunks_no_delete;
        CREATE TRIGGER blob_chunks_no_delete BEFORE DELETE ON blob_chunks
        BEGIN SELECT RAISE(ABORT, 'blob_chunks is append-only: DELETE refused')
              WHERE NOT EXISTS (SELECT 1 FROM blob_objects WHERE sha256 = OLD.sha256); END;
        """)


#: How :func:`connect` opens a file: the one place stet's SQLite settings are written.
MODES = ("write", "read", "build", "checkpoint")

#: 16 KiB pages (for a new file only, archive and snapshot alike): raw bytes and texts are
#: large values, and larger pages halved the time to store the benchmark corpus against the
#: 4 KiB default.
PAGE_SIZE = 16384


def connect(path: str, *, mode: str = "write", check: bool = True) -> sqlite_utils.Database:
    """Open a stet database file; every connection stet makes goes through here. ``mode``:

    - ``"write"``: an archive to read and write: WAL, foreign keys, a 30-second busy
      timeout, :data:`PAGE_SIZE` pages for a new file, migrations applied.
    - ``"read"``: the file as it is: no migration, no change of journal mode, not a byte
      written, and no ``-wal`` or ``-shm`` file left beside it, so reading and verifying a
      published snapshot leaves its SHA-256 unchanged (DESIGN.md, invariant 9). It refuses
      an archive that needs migrating unless ``check`` is false (``stet verify`` reports a
      damaged schema instead of refusing to look at it).
    - ``"build"``: a new file written whole by one connection (a public snapshot):
      :data:`PAGE_SIZE` pages, the rollback journal in memory, foreign keys, a large page
      cache, the schema applied.
    - ``"checkpoint"``: a second connection to a WAL archive that only copies the log into
      the database (:func:`background_checkpoints`): a short busy timeout, nothing else."""
    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: one of {', '.join(MODES)}")
    if mode == "read":
        return _connect_read(path, check)
    conn = sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)
    if mode == "checkpoint":
        conn.execute("PRAGMA busy_timeout = 1000")
        return sqlite_utils.Database(conn)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    conn.execute("PRAGMA foreign_keys = ON")
    if mode == "build":
        conn.execute("PRAGMA journal_mode = MEMORY")
        conn.execute("PRAGMA cache_size = -200000")
    else:
        _wal(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
    db = sqlite_utils.Database(conn)
    migrate(db)
    return db


def _wal(conn, wait: float = 30.0) -> None:
    """WAL mode, waiting (as the busy timeout would) while another connection holds the
    archive in the rollback journal for a while (stet.ingest.journal: a large file written
    once): SQLite refuses a change of journal mode at once, without a busy wait."""
    deadline = time.monotonic() + wait
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _connect_read(path: str, check: bool) -> sqlite_utils.Database:
    # A snapshot is in rollback-journal mode: SQLite's ``mode=ro`` reads it and creates
    # nothing. A live archive is in WAL mode, where every reader needs the ``-wal`` and
    # ``-shm`` files. While a writer has the archive open they exist, and ``mode=ro``
    # shares them (it sees every committed write). When none does, they are absent, and
    # ``mode=ro`` (SQLite 3.22+) creates them, but being read-only can never checkpoint
    # and so never deletes them: they stay beside the archive after it closes (measured
    # with SQLite 3.40). A read-write connection creates them just the same and, as the
    # last connection to close, checkpoints (nothing: the empty log copies no page, the
    # file is byte-identical, its mtime unchanged) and deletes them, as SQLite always
    # does. So a quiescent WAL archive is read through a read-write connection with
    # ``query_only`` on, which refuses every statement that would write. If a writer
    # opens the archive meanwhile, SQLite's locks coordinate the two as for any pair of
    # connections; whatever its commits leave in the log when we close is copied in by
    # our closing checkpoint (its write, not ours). ``immutable=1`` would create nothing,
    # but would not see a concurrent writer's commits, and is only for a file that
    # cannot change. ``query_only`` is set on both paths alike, so that a read which
    # tries to write anything (even a TEMP table, which ``mode=ro`` alone would allow)
    # fails the same way on a snapshot as on a live archive: build scratch tables in a
    # connection of their own (``sqlite3.connect(":memory:")``).
    #
    # The file itself is never opened here but by SQLite: closing any descriptor of a file
    # drops every POSIX lock this process holds on it, the locks of SQLite connections
    # still open on it included (SQLite's own connections share one descriptor per file for
    # this reason). A reader that peeked at the header with open() and close() let another
    # process's last connection checkpoint and delete the log under a connection of ours
    # still using it (stale reads, then "database disk image is malformed": seen under
    # `stet serve` and the workbench, which keep connections open while reading). So: no
    # ``-wal`` beside the file (a quiescent WAL archive, or a snapshot in rollback mode, in
    # which a read-write connection writes nothing either): read-write with ``query_only``;
    # a ``-wal`` (a writer has it open): ``mode=ro``.
    mode = "ro" if os.path.exists(path + "-wal") else "rw"
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=" + mode
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30,
                           check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA query_only = 1")
    db = sqlite_utils.Database(conn)
    try:
        if check:
            pending = migrations.pending(db)
        else:  # a damaged stet archive still has some of its tables; another file none
            tables = {name for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            pending = [] if tables & {"_sqlite_migrations", "documents", "events"} else ["all"]
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StetError(f"{path} is not a stet archive ({exc})") from None
    if pending:
        conn.close()
        raise StetError(f"{path} is not a stet archive, or one that needs migrating "
                        "(a write command migrates it)")
    return db


@contextlib.contextmanager
def page_cache(conn: sqlite3.Connection, mebibytes: int) -> Iterator[None]:
    """A larger SQLite page cache for a bulk write, the previous size restored after. Keys
    that arrive in random order (SHA-256 hashes, uuids) touch index pages all over; with
    SQLite's default 2 MiB, most of them would be read back from the file for each insert."""
    (previous,) = conn.execute("PRAGMA cache_size").fetchone()
    conn.execute(f"PRAGMA cache_size = {-1024 * int(mebibytes)}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA cache_size = {int(previous)}")


@contextlib.contextmanager
def background_checkpoints(conn: sqlite3.Connection, interval: float = 0.05) -> Iterator[None]:
    """While a bulk write runs on ``conn``, copy the WAL into the database from a second
    connection in a thread, instead of in the writer's COMMITs.

    In WAL mode every byte is written twice: to the WAL, then, at a checkpoint, into the
    database. A PASSIVE checkpoint never blocks the writer, and SQLite releases the GIL while
    it copies, so this moves that second write to the other core (a fifth off the ingest
    benchmark, benchmarks/README.md). Safe at any moment: frames not yet copied stay in the
    WAL, which SQLite reads and recovers like any other. Does nothing for a file that is not
    in WAL mode. Do not fork while it runs (worker pools start their processes first)."""
    path = next((p for _, name, p in conn.execute("PRAGMA database_list") if name == "main"), "")
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if not path or mode.lower() != "wal":
        yield
        return
    previous = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
    stop = threading.Event()

    def run() -> None:
        checkpointer = connect(path, mode="checkpoint").conn
        try:
            while True:
                finished = stop.wait(interval)
                try:
                    checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError:
                    pass  # busy: the next round copies what this one could not
                if finished:
                    return
        finally:
            checkpointer.close()

    conn.execute("PRAGMA wal_autocheckpoint = 0")
    thread = threading.Thread(target=run, name="stet-checkpoint", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        conn.execute(f"PRAGMA wal_autocheckpoint = {int(previous)}")


def migrate(db: sqlite_utils.Database) -> None:
    """Apply pending migrations under the write lock, so concurrent openers do it once."""
    if not migrations.pending(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        migrations.apply(db)  # looks again under the lock; each migration is a savepoint
        db.execute("COMMIT")
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise


def _script(db: sqlite_utils.Database, sql: str) -> None:
    """Run a script statement by statement (executescript would COMMIT mid-migration)."""
    statement = ""
    for line in sql.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement: {statement!r}")
