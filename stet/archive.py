# Over 400 lines on purpose: the facade is one method per operation the CLI and the plugin
# need, each a few lines that resolve references and call the module that does the work.
"""The library's front door: ``Archive("archive.db")``.

The CLI and the Datasette plugin both go through this facade; each concern lives in its
own module (``ingest``, ``verify``, ``provenance``, ...) and the facade only wires them up.

Listings (:meth:`Archive.documents`, :meth:`Archive.annotations`, :meth:`Archive.history`,
:meth:`Archive.log`) are iterators that read from the cursor as they are consumed: keep the
archive open until they are. Long operations take ``progress``: a callable given the total
(units per method) that returns a context manager yielding ``advance(n)``, called per file or
per step, never per row (:meth:`Archive.ingest` gives files and bytes).

Example::

    from stet import Archive
    archive = Archive("archive.db")
    results = archive.ingest(["ingest/"], by="ana", source="https://example.org")
    print(archive.text(results[0]["id"]))
    assert archive.verify() == []
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from . import accounts
from . import annotations as annotations_module
from . import bags, blobs, content, lineage, provenance, state, store, timeutil
from . import ingest as ingest_module
from . import publish as publish_module
from .annotations import files as annotation_files
from .blobs import manage as blobs_manage
from .annotations import versions as versions_module
from .annotations import w3c
from .errors import Ambiguous, InvalidInput, NotFound, arg
from .extract import time_budget
from .provenance import Chain
from .verify import verify as verify_archive

DOCUMENT_COLUMNS = (
    "id", "sha256", "title", "filename", "media_type", "size", "source", "restricted",
    "ingested_by", "ingested_at", "parent", "supersedes",
)

#: The columns as selected: title, source and restriction are the current state, read from
#: the chain (the ``document_state`` view); the rest is the row as ingested.
_CURRENT = {"title": "s.title", "source": "s.source", "restricted": "s.restricted"}
_SELECT_DOCUMENT = ", ".join(_CURRENT.get(c, "d." + c) for c in DOCUMENT_COLUMNS)
_FROM_DOCUMENT = ("FROM documents d JOIN document_state s ON s.document = d.id "
                  "LEFT JOIN texts t ON t.document = d.id")

_HEX = re.compile(r"[0-9a-f]+")


def default_user() -> str:
    """Who acts when no ``by`` is given: the login name (the command line reads
    ``$STET_USER`` for its ``--by``)."""
    try:
        return getpass.getuser()
    except Exception:  # no login name (a container without a passwd entry)
        return "unknown"


class Archive:
    """An archive file: SQLite in WAL mode, migrated on open."""

    def __init__(self, path: str | os.PathLike = "archive.db", *, create: bool = True,
                 readonly: bool = False, check: bool = True) -> None:
        """``readonly``: write nothing to the file (see :func:`stet.store.connect`), and refuse
        one that needs migrating unless ``check`` is false (``stet verify`` of a damaged schema)."""
        self.path = Path(path)
        if (readonly or not create) and not self.path.exists():
            raise NotFound(f"no archive at {self.path}")
        self.db = store.connect(str(self.path), mode="read" if readonly else "write",
                                check=check)
        self.conn = self.db.conn

    def head(self) -> dict[str, Any]:
        """The chain's length and head hash, ``{"length": N, "head": "HEX"}`` (64 zeros for
        an empty chain): an anchor to keep elsewhere for ``stet verify --expect-head N:HEX``."""
        length, head = Chain(self.conn).head()
        return {"length": length, "head": head}

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "Archive":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions ---------------------------------------------------------------------

    @contextlib.contextmanager
    def write(self) -> Iterator[Chain]:
        """One unit of work: ``BEGIN IMMEDIATE`` (the write lock first, so concurrent writers
        queue on the busy timeout instead of failing), commit on success, roll back on any
        error. Yields the event chain to append to inside the same transaction."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield Chain(self.conn)
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    # -- documents ------------------------------------------------------------------------

    def ingest(
        self,
        paths: Iterable[str | os.PathLike],
        *,
        by: str | None = None,
        source: str | None = None,
        title: str | None = None,
        restricted: bool = False,
        supersedes: str | int | None = None,
        progress: Callable | None = None,
        extract_timeout: float | None = None,
        workers: int | None = None,
        threshold: float | None = None,
    ) -> list[dict[str, Any]]:
        """Ingest files and folders; one result dict per file (see ``stet ingest --json``).
        ``extract_timeout``: seconds one file's text extraction may take (default
        :data:`stet.extract.TIMEOUT`); past it the file is kept with an empty text and a
        warning. ``workers``: that many worker processes (0: none), else as many as pay
        (see :func:`stet.ingest.ingest`). With ``supersedes``, each new document is a newer
        version of that one and the older one's annotations are carried to it (one more
        write transaction after the ingest's: see :meth:`reanchor`, ``threshold``); its
        result gets the summary as ``carried``."""
        older = self.resolve(supersedes) if supersedes is not None else None
        if threshold is not None:
            versions_module.check_threshold(threshold)
        options = ingest_module.Options(
            by=by or default_user(),
            source=source,
            title=title,
            restricted=restricted,
            supersedes=older,
        )
        with time_budget(extract_timeout):  # the worker processes forked inside inherit it
            results = ingest_module.ingest(self.conn, [os.fspath(p) for p in paths], options,
                                           progress=progress, workers=workers)
        if older is not None:
            for result in results:
                if result.get("status") == "new" and result.get("id") is not None and \
                        self.conn.execute("SELECT supersedes FROM documents WHERE id = ?",
                                          (result["id"],)).fetchone()[0] == older:
                    result["carried"] = self.reanchor(result["id"], source=older,
                                                      threshold=threshold, by=options.by)
        return results

    def reanchor(self, document: str | int, *, source: str | int | None = None,
                 threshold: float | None = None, by: str | None = None) -> dict[str, Any]:
        """Carry the annotations of an older version (``source``, default the document this
        one supersedes) to this one, and try its orphans again: one ``reanchor`` event (see
        :mod:`stet.annotations.versions`)."""
        new = self.resolve(document)
        older = self.resolve(source) if source is not None else None
        with self.write() as chain:
            return versions_module.carry(self.conn, chain, new, by=by or default_user(),
                                         source=older, threshold=threshold)

    def versions(self, document: str | int) -> list[dict[str, Any]]:
        """The versions of a document (from any of them), oldest first."""
        return versions_module.versions(self.conn, self.resolve(document))

    def resolve(self, ref: str | int) -> int:
        """A document id from an id or a SHA-256 prefix of 8+ hex digits (``sha256:`` optional)."""
        if isinstance(ref, int):
            return self._document_id(ref)
        text = str(ref).strip().lower()
        if text.startswith("sha256:"):
            return self._by_prefix(text[len("sha256:"):], ref)
        if text.isdigit():
            if len(text) >= 8:
                raise Ambiguous(
                    f"{ref!r} could be a document id or a SHA-256 prefix: "
                    f"write {int(text)} for the id or sha256:{text} for the hash"
                )
            return self._document_id(int(text))
        if _HEX.fullmatch(text):
            return self._by_prefix(text, ref)
        raise NotFound(f"no document {ref!r}: give an id or a SHA-256 prefix of 8+ hex digits")

    def _document_id(self, doc_id: int) -> int:
        if self.conn.execute("SELECT 1 FROM documents WHERE id = ?", (doc_id,)).fetchone() is None:
            raise NotFound(f"no document {doc_id}")
        return doc_id

    def _by_prefix(self, prefix: str, ref) -> int:
        if len(prefix) < 8 or not _HEX.fullmatch(prefix):
            raise InvalidInput(f"{ref!r}: a SHA-256 prefix needs at least 8 hex digits")
        rows = self.conn.execute(
            "SELECT id FROM documents WHERE sha256 >= ? AND sha256 < ? ORDER BY id LIMIT 2",
            (prefix, prefix + "g"),
        ).fetchall()
        if not rows:
            raise NotFound(f"no document with SHA-256 prefix {prefix}")
        if len(rows) > 1:
            raise Ambiguous(f"SHA-256 prefix {prefix} matches more than one document: give more digits")
        return rows[0][0]

    def documents(self, *, source: str | None = None, restricted: bool | None = None,
                  since: str | None = None) -> Iterator[dict[str, Any]]:
        """The documents in id order, as an iterator (the archive must stay open while it is
        read). ``source``: only those whose current source contains this text (case and every
        code point as given); ``restricted=True``: only those the public may not see
        (restricted, or an attachment of a restricted document: :data:`stet.store.HIDDEN_DOCUMENTS`),
        ``False``: only the others; ``since``: only those ingested at or after this ISO 8601
        instant."""
        where, params = [], []
        if source is not None:
            where.append("instr(s.source, ?) > 0")
            params.append(source)
        if restricted is not None:
            where.append(f"d.id {'' if restricted else 'NOT '}IN ({store.HIDDEN_DOCUMENTS})")
        if since is not None:
            # Both in the one stored form (UTC, fixed width, microseconds, Z): comparing the
            # strings compares the instants.
            where.append("d.ingested_at >= ?")
            params.append(timeutil.iso(timeutil.parse(since)))
        condition = f" WHERE {' AND '.join(where)}" if where else ""
        sql = (f"SELECT {_SELECT_DOCUMENT}, t.length, t.extractor {_FROM_DOCUMENT}{condition} "
               "ORDER BY d.id")
        return map(self._document_dict, self.conn.execute(sql, params))

    def document(self, ref: str | int) -> dict[str, Any]:
        """One document's record, with its text's hash, length, extractor and warning."""
        doc_id = self.resolve(ref)
        row = self.conn.execute(
            f"SELECT {_SELECT_DOCUMENT}, t.length, t.extractor, t.sha256, t.extractor_version, "
            f"t.encoding, t.warning {_FROM_DOCUMENT} WHERE d.id = ?",
            (doc_id,),
        ).fetchone()
        record = self._document_dict(row[:-4])
        record.update(
            text_sha256=row[-4], extractor_version=row[-3], encoding=row[-2], warning=row[-1],
        )
        return record

    @staticmethod
    def _document_dict(row) -> dict[str, Any]:
        record = dict(zip(DOCUMENT_COLUMNS + ("text_length", "extractor"), row))
        record["restricted"] = bool(record["restricted"])
        return record

    def document_history(self, ref: str | int) -> list[dict[str, Any]]:
        """Every title, source and restriction the document had, oldest first, each with
        who set it, when and why (see :mod:`stet.state`)."""
        return state.history(self.conn, self.resolve(ref))

    def restrict(self, ref: str | int, *, reason: str, by: str | None = None) -> dict[str, Any]:
        """Withhold a document (and its attachments) from the public: an event."""
        doc_id = self.resolve(ref)
        with self.write() as chain:
            return state.restrict(self.conn, chain, doc_id, by=by or default_user(), reason=reason)

    def unrestrict(self, ref: str | int, *, reason: str, by: str | None = None) -> dict[str, Any]:
        """Make a restricted document public again: an event."""
        doc_id = self.resolve(ref)
        with self.write() as chain:
            return state.unrestrict(self.conn, chain, doc_id, by=by or default_user(),
                                    reason=reason)

    def edit(self, ref: str | int, *, reason: str, title: str | None = None,
             source: str | None = None, by: str | None = None) -> dict[str, Any]:
        """Correct a document's title or source: an event; the old value stays on record."""
        doc_id = self.resolve(ref)
        with self.write() as chain:
            return state.edit(self.conn, chain, doc_id, by=by or default_user(), reason=reason,
                              title=title, source=source)

    def text(self, ref: str | int) -> str:
        return content.text(self.conn, self.resolve(ref))

    def raw(self, ref: str | int) -> Iterator[bytes]:
        """The document's raw bytes, chunk by chunk (see :mod:`stet.content`)."""
        yield from content.raw(self.conn, self.resolve(ref))

    # -- annotations (stet.annotations, stet.w3c) ----------------------------------------

    def add_layer(self, name: str, *, by: str | None = None, description: str | None = None,
                  colour: str | None = None) -> dict[str, Any]:
        with self.write() as chain:
            return annotations_module.add_layer(self.conn, chain, name, by=by or default_user(),
                                                description=description, colour=colour)

    def layers(self) -> list[dict[str, Any]]:
        return annotations_module.layers(self.conn)

    def annotate(self, document: str | int | None, *, layer: str | None, body: str = "",
                 by: str | None = None, start: int | None = None, end: int | None = None,
                 quote: str | None = None, prefix: str | None = None,
                 suffix: str | None = None, motivation: str | None = None,
                 tags: Iterable[str] = (), reply_to: int | None = None,
                 warn: Callable[[str], Any] | None = None,
                 via: str | None = None) -> dict[str, Any]:
        """A new annotation on a span (offsets, or a quote) of a document's text. A reply
        (``reply_to``) may leave out ``document`` and ``layer``: its parent's. ``warn`` is
        called, once the annotation is written, with each warning (a new layer, the same
        span already marked in the layer: see :func:`stet.annotations.annotate`)."""
        span = annotations_module.Span(start, end, quote, prefix, suffix)
        notes: list[str] = []
        with self.write() as chain:
            record = annotations_module.annotate(
                self.conn, chain, self.resolve(document) if document is not None else None,
                layer=layer, body=body, by=by or default_user(), span=span,
                motivation=motivation, tags=tags, reply_to=reply_to, warn=notes.append, via=via)
        if warn is not None:
            for note in notes:
                warn(note)
        return record

    def rename_layer(self, old: str, new: str, *, reason: str | None = None,
                     by: str | None = None) -> dict[str, Any]:
        """Rename a layer: an event; its history stays (see
        :func:`stet.annotations.rename_layer`)."""
        with self.write() as chain:
            return annotations_module.rename_layer(self.conn, chain, old, new,
                                                   by=by or default_user(), reason=reason)

    def merge_layers(self, source: str, into: str, *, reason: str | None = None,
                     by: str | None = None) -> dict[str, Any]:
        """Move every annotation of layer ``source`` into layer ``into``: an event (see
        :func:`stet.annotations.merge_layers`)."""
        with self.write() as chain:
            return annotations_module.merge_layers(self.conn, chain, source, into,
                                                   by=by or default_user(), reason=reason)

    def revise(self, annotation: int, *, by: str | None = None, body: str | None = None,
               start: int | None = None, end: int | None = None, quote: str | None = None,
               prefix: str | None = None, suffix: str | None = None,
               tags: Iterable[str] | None = None, motivation: str | None = None,
               via: str | None = None) -> dict[str, Any]:
        span = annotations_module.Span(start, end, quote, prefix, suffix)
        with self.write() as chain:
            return annotations_module.revise(self.conn, chain, annotation, by=by or default_user(),
                                             body=body, span=span, tags=tags, motivation=motivation,
                                             via=via)

    def retract(self, annotation: int, *, by: str | None = None,
                reason: str | None = None, via: str | None = None) -> dict[str, Any]:
        with self.write() as chain:
            return annotations_module.retract(self.conn, chain, annotation,
                                              by=by or default_user(), reason=reason, via=via)

    def annotation(self, annotation: int) -> dict[str, Any]:
        return annotations_module.get(self.conn, annotation)

    def annotations(self, document: str | int | None = None, *,
                    overlapping: tuple[int, int] | str | None = None, tags: Iterable[str] = (),
                    since: str | None = None, **filters: Any) -> Iterator[dict[str, Any]]:
        """Current annotations, or as they were ``at=`` an instant (see
        :func:`stet.annotations.query` for ``layer``, ``author``, ``at``, ``include_retracted``),
        as an iterator. ``overlapping``: ``(n, m)`` or the text ``"N:M"``, spans with
        ``start < m and n < end``; ``tags``: only annotations that carry every one of them;
        ``since``: only those whose revision shown was made at or after this ISO 8601 instant."""
        doc_id = self.resolve(document) if document is not None else None
        if isinstance(overlapping, str):
            overlapping = annotations_module.parse_overlap(overlapping)
        floor = timeutil.iso(timeutil.parse(since)) if since is not None else None
        records = annotations_module.query(self.conn, document=doc_id, overlapping=overlapping,
                                           **filters)
        wanted = set(tags)
        if not wanted and floor is None:
            return iter(records)
        # The stored times are all in one fixed-width UTC form: comparing them as strings
        # compares the instants.
        return (r for r in records
                if wanted.issubset(r["tags"]) and (floor is None or r["modified"] >= floor))

    def history(self, annotation: int) -> Iterator[dict[str, Any]]:
        """Every revision of an annotation, oldest first, as an iterator."""
        return iter(annotations_module.history(self.conn, annotation))

    def export(self, out, documents: Iterable[str | int] = (), *, fmt: str = "w3c",
               layer: str | None = None, history: bool = False,
               include_restricted: bool = False) -> dict[str, int]:
        """Write annotations as W3C JSON-LD, JSON Lines or brat to ``out``; return how many
        (``annotations``) and how many on hidden documents were left out (``left_out``).

        Annotations on documents the public may not see (restricted now, or an attachment
        of one: :data:`stet.store.HIDDEN_DOCUMENTS`) leave only with ``include_restricted``;
        naming such a document without it is an error, raised before anything is written."""
        doc_ids = [self.resolve(d) for d in documents] or None
        left_out = 0
        if not include_restricted:
            if doc_ids:
                hidden = {row[0] for row in self.conn.execute(
                    f"SELECT id FROM ({store.HIDDEN_DOCUMENTS}) "
                    f"WHERE id IN ({', '.join('?' * len(doc_ids))})", doc_ids)}
                for doc_id in doc_ids:
                    if doc_id in hidden:
                        raise InvalidInput(f"document {doc_id} is restricted: give "
                                           f"{arg('include_restricted')} to export it")
            left_out = w3c.left_out(self.conn, documents=doc_ids, layer=layer, history=history)
        count = w3c.export(self.conn, out, fmt=fmt, documents=doc_ids, layer=layer,
                           history=history, include_restricted=include_restricted)
        return {"annotations": count, "left_out": left_out}

    def import_(self, paths: Iterable[str | os.PathLike], *, by: str | None = None,
                progress: Callable | None = None,
                skip_missing: bool = False) -> list[dict[str, Any]]:
        """Import W3C annotation files and folders; all or nothing, one event per file.
        ``progress`` is given the number of bytes to read and advanced by each file's size.
        Annotations on documents this archive does not hold refuse the import (saying how
        many), unless ``skip_missing``: then they are left out and counted (``missing``)."""
        files = annotation_files.files(paths)
        sizes = {str(path): path.stat().st_size for path in files} if progress else {}
        counting = (progress(sum(sizes.values())) if progress
                    else contextlib.nullcontext(lambda n: None))
        with counting as advance, self.write() as chain:
            return annotations_module.import_files(
                self.conn, chain, files, by=by or default_user(),
                progress=(lambda path: advance(sizes[str(path)])) if progress else None,
                skip_missing=skip_missing)

    # -- provenance -----------------------------------------------------------------------

    def log(self, document: str | int | None = None) -> Iterator[dict[str, Any]]:
        """The event chain, oldest first (only a document's events, if given), as an iterator
        read from the cursor."""
        doc_id = self.resolve(document) if document is not None else None
        return provenance.log(self.conn, document=doc_id)

    def counts(self) -> dict[str, int]:
        """How many documents, events and annotation revisions the archive holds."""
        return {
            table.replace("_", " "): self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("documents", "events", "annotation_revisions")
        }

    def verify(self, *, expect_head: tuple[int, str] | None = None,
               progress: Callable | None = None, notes: list[str] | None = None) -> list[str]:
        """Every problem found (an empty list when the archive is sound); ``expect_head``:
        ``(length, hash)`` from an earlier ``stet log --head`` (see :func:`stet.verify.verify`).
        ``progress`` counts the checks and the documents, each advanced once; ``notes``
        gets what is no problem but worth knowing (objects nothing refers to)."""
        return verify_archive(self.conn, expect_head=expect_head, progress=progress, notes=notes)

    # -- where raw bytes live (stet.blobs) ---------------------------------------------------

    def store(self) -> dict[str, Any]:
        """Where new raw bytes go (``store``: a location, or None for the file), and how many
        blobs (and bytes) are in the file as chunks, as their text, and in stores."""
        in_file = blobs_manage.pending(self.conn)
        as_text = self.conn.execute("SELECT count(*), coalesce(sum(size), 0) FROM blobs "
                                    "WHERE storage = 'text'").fetchone()
        in_stores = self.conn.execute("SELECT count(*), coalesce(sum(length), 0) "
                                      "FROM blob_objects").fetchone()
        return {"store": blobs.current_store(self.conn),
                "in_file": {"blobs": in_file[0], "bytes": in_file[1]},
                "as_text": {"blobs": as_text[0], "bytes": as_text[1]},
                "in_stores": {"blobs": in_stores[0], "bytes": in_stores[1]}}

    def set_store(self, url: str, *, by: str | None = None) -> dict[str, Any]:
        """New raw bytes go to ``url`` (``s3://BUCKET/PREFIX``; ``file``: the archive file)
        from now on: a ``store-set`` event (see :func:`stet.blobs.manage.set_store`)."""
        return blobs_manage.set_store(self.conn, url, by=by or default_user())

    def migrate_store(self, *, by: str | None = None,
                      progress: Callable | None = None) -> dict[str, Any]:
        """Move the raw bytes kept in the file to the current store (``progress``: bytes)."""
        return blobs_manage.migrate(self.conn, by=by or default_user(), progress=progress)

    def gc_store(self, *, dry_run: bool = False) -> list[dict[str, Any]]:
        """The objects no document refers to, deleted unless ``dry_run``."""
        return blobs_manage.gc(self.conn, dry_run=dry_run)

    def prov(self, document: str | int, *, include_restricted: bool = False) -> str:
        """The document's lineage as W3C PROV-JSON (see :mod:`stet.lineage`); a restricted
        document only with ``include_restricted``."""
        doc_id = self.resolve(document)
        return lineage.prov_json(self.conn, doc_id, document=self.document, events=self.log(doc_id),
                         include_restricted=include_restricted)

    # -- publication (stet.publish, stet.serve) -------------------------------------------

    def publish(self, out: str | os.PathLike, *, by: str | None = None, force: bool = False,
                full: bool = False, progress: Callable | None = None) -> dict[str, Any]:
        """Write the public snapshot of this archive to ``out`` and record a ``publish`` event;
        return the summary (see :func:`stet.publish.publish`: an earlier snapshot of this
        archive is brought up to date where it can be, unless ``full``), with the event's
        ``seq`` (``event``) and the archive's chain as it stands after it (``archive_head``:
        the anchor to keep). ``progress`` counts the snapshot's build steps."""
        summary = publish_module.publish(self.path, out, force=force, full=full,
                                         progress=progress)
        with self.write() as chain:
            event = chain.append(
                actor=by or default_user(), action="publish",
                subject=f"snapshot:{summary['sha256']}",
                details={"file": Path(out).name, "sha256": summary["sha256"],
                         "size": summary["size"], "source": summary["source"],
                         "left_out": summary["left_out"], "snapshot_head": summary["head"],
                         "format": publish_module.FORMAT},
            )
        summary.pop("archive_head")  # the source's head before the event: replaced, after it
        summary["event"] = event["seq"]
        summary["archive_head"] = {"length": event["seq"], "head": event["hash"]}
        return summary

    def publish_remote(self, url: str, *, by: str | None = None, full: bool = False,
                       force: bool = False, progress: Callable | None = None) -> dict[str, Any]:
        """Publish the public snapshot to an object store (``s3://BUCKET/PREFIX``) for read
        replicas (see :func:`stet.remote.publish_remote`) and record a ``publish`` event
        naming it, unless nothing was uploaded (``build``: ``"unchanged"``); the summary as
        :meth:`publish` returns it, with ``url``, ``snapshot`` and ``pointer``."""
        from . import remote  # boto3 loads only when publishing to a store

        summary = remote.publish_remote(self.path, url, full=full, force=force,
                                        progress=progress)
        if not summary.get("uploaded"):
            return summary
        with self.write() as chain:
            event = chain.append(
                actor=by or default_user(), action="publish",
                subject=f"snapshot:{summary['sha256']}",
                details={"file": summary["snapshot"], "url": summary["url"],
                         "sha256": summary["sha256"], "size": summary["size"],
                         "source": summary["source"], "left_out": summary["left_out"],
                         "snapshot_head": summary["head"], "format": publish_module.FORMAT},
            )
        summary["event"] = event["seq"]
        summary["archive_head"] = {"length": event["seq"], "head": event["hash"]}
        return summary

    def serve(self, *, host: str = "127.0.0.1", port: int = 8001,
              metadata: str | os.PathLike | None = None, cache_mb: float = 128,
              check_every: float = 5.0, announce: Callable[[str], Any] = print) -> None:
        """Serve the public snapshot with Datasette until interrupted, keeping up to
        ``cache_mb`` megabytes of answers in memory (0: none) and looking for a new state of
        the archive every ``check_every`` seconds (0: only on SIGHUP; see :mod:`stet.serve`).
        This archive's own connection is closed first: serving reads the archive with
        connections of its own."""
        from . import serve  # Datasette, uvicorn and YAML load only when serving: start-up

        self.close()
        serve.run(self.path, host=host, port=port, metadata=metadata, cache_mb=cache_mb,
                  check_every=check_every, announce=announce)

    def datasette(self, *, metadata: str | os.PathLike | None = None,
                  settings: dict[str, Any] | None = None):
        """A Datasette serving the public snapshot (built or reused), and the snapshot's path:
        what ``serve`` runs, for tests and embedding."""
        from . import serve  # as in serve(): only when serving

        return serve.prepare(self.path, metadata=metadata, settings=settings)

    # -- accounts (stet.accounts) ---------------------------------------------------------

    def add_user(self, name: str, *, role: str, password: str,
                 by: str | None = None) -> dict[str, Any]:
        """A workbench account: a ``user-add`` event; the password kept only as its hash."""
        with self.write() as chain:
            return accounts.add(self.conn, chain, name, role=role, password=password,
                                by=by or default_user())

    def users(self) -> list[dict[str, Any]]:
        """Every account (name, role, disabled, created, created_by), by name."""
        return accounts.users(self.conn)

    def set_role(self, name: str, role: str, *, by: str | None = None) -> dict[str, Any]:
        with self.write() as chain:
            return accounts.set_role(self.conn, chain, name, role, by=by or default_user())

    def disable_user(self, name: str, *, by: str | None = None) -> dict[str, Any]:
        with self.write() as chain:
            return accounts.set_disabled(self.conn, chain, name, True, by=by or default_user())

    def enable_user(self, name: str, *, by: str | None = None) -> dict[str, Any]:
        with self.write() as chain:
            return accounts.set_disabled(self.conn, chain, name, False, by=by or default_user())

    def create_token(self, name: str, *, expires: float | None = None,
                     by: str | None = None) -> dict[str, Any]:
        """A bearer token for the account, in the result's ``token`` (shown once: only its
        SHA-256 is kept); ``expires``: days until it stops working (None: never)."""
        until = accounts.days(expires)
        with self.write() as chain:
            return accounts.create_token(self.conn, chain, name, by=by or default_user(),
                                         expires=until)

    def tokens(self, name: str | None = None) -> list[dict[str, Any]]:
        return accounts.tokens(self.conn, name)

    def revoke_token(self, token_id: int, *, by: str | None = None) -> dict[str, Any]:
        with self.write() as chain:
            return accounts.revoke_token(self.conn, chain, token_id, by=by or default_user())

    # -- bags -----------------------------------------------------------------------------

    def bag_export(self, directory: str | os.PathLike, documents: Iterable[str | int] = (), *,
                   organization: str | None = None, identifier: str | None = None,
                   include_restricted: bool = False,
                   progress: Callable | None = None) -> dict[str, Any]:
        """Write documents (all by default) as a BagIt bag; a read: no event (see :mod:`stet.bags`).
        Hidden documents (restricted, or an attachment of one) are left out, and counted in
        the summary's ``left_out``, unless ``include_restricted``; naming one is an error.
        ``progress`` counts payload bytes twice (written, then checksummed)."""
        doc_ids = [self.resolve(ref) for ref in documents]
        return bags.export(self.conn, directory, doc_ids, name=self.path.name,
                           organization=organization, identifier=identifier,
                           include_restricted=include_restricted, progress=progress)
