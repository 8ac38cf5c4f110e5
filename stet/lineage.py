"""A document's lineage as W3C PROV (PROV-JSON), with the ``prov`` package.

What the graph holds, for one document:

- ``sha256:HEX`` (``urn:sha256:HEX``), an entity: the raw bytes as received, with the file
  name, media type and size. It ``wasGeneratedBy`` the first ingest; if the document is an
  attachment it ``wasDerivedFrom`` its message's raw bytes; if it supersedes a document it
  ``wasRevisionOf`` that one's raw bytes.
- ``stet:document/ID/text``, an entity: the extracted text, with its SHA-256, length and
  extractor. It ``wasDerivedFrom`` the raw bytes and ``wasGeneratedBy`` the extraction.
- ``stet:event/SEQ``, an activity per ingest event (the first ingest and every later
  submission of the same bytes), at the event's time, ``wasAssociatedWith`` the person who
  ingested (``stet:agent/NAME``, a ``prov:Person``); a later submission ``used`` the bytes.
  Each carries the event's hash so the record can be checked against ``stet log``.
- ``stet:document/ID/extraction``, an activity that ``used`` the raw bytes, ``wasInformedBy``
  the ingest and ``wasAssociatedWith`` the extractor (``stet:software/NAME``, a
  ``prov:SoftwareAgent`` with its version).
- ``stet:annotation/UUID/N``, an entity per annotation revision (``N`` from 1), with its
  layer, span, exact text, body, motivation, tags and status, ``wasAttributedTo`` the
  revision's author, generated at its time, ``wasRevisionOf`` the previous revision,
  ``specializationOf`` the annotation ``urn:uuid:UUID``, and ``wasDerivedFrom`` the text it
  annotates.

With ``include_restricted=False`` the graph is fit to hand on: a hidden document
(:data:`stet.store.HIDDEN_DOCUMENTS`) is refused, the events of restricted submissions of
its bytes are left out, and so is a hidden document it supersedes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable, Iterable
from urllib.parse import quote

from . import store
from .errors import InvalidInput, arg

if TYPE_CHECKING:
    from prov.model import ProvDocument

NAMESPACES = {
    "stet": "urn:stet:",
    "sha256": "urn:sha256:",
    "uuid": "urn:uuid:",
}


def _agent_id(name: str) -> str:
    return "stet:agent/" + quote(name, safe="")


def _hidden(conn, doc_id: int) -> bool:
    return conn.execute(f"SELECT 1 FROM ({store.HIDDEN_DOCUMENTS}) WHERE id = ?",
                        (doc_id,)).fetchone() is not None


def lineage(conn, doc_id: int, *, document: Callable[[int], dict[str, Any]],
            events: Iterable[dict[str, Any]], include_restricted: bool = False) -> ProvDocument:
    """The PROV document of one document's lineage (see the module's docstring for what
    ``include_restricted=False`` leaves out): ``doc_id`` resolved, ``document`` giving a
    document's record by id (:meth:`stet.Archive.document`), ``events`` its events with their
    details parsed, oldest first (:meth:`stet.Archive.log`)."""
    if not include_restricted and _hidden(conn, doc_id):
        raise InvalidInput(f"document {doc_id} is restricted: give "
                           f"{arg('include_restricted')} to export it")
    # prov (about 25 ms to import) is loaded on first use, not by every command
    from prov.model import ProvDocument

    record = document(doc_id)
    prov = ProvDocument()
    for prefix, uri in NAMESPACES.items():
        prov.add_namespace(prefix, uri)
    agents: dict[str, Any] = {}

    def person(name: str):
        key = _agent_id(name)
        if key not in agents:
            agents[key] = prov.agent(key, {"prov:type": "prov:Person", "prov:label": name})
        return agents[key]

    raw_id = f"sha256:{record['sha256']}"
    raw = prov.entity(raw_id, {
        "prov:type": "stet:RawBytes",
        "prov:label": record["filename"],
        "stet:mediaType": record["media_type"],
        "stet:size": record["size"],
        "stet:title": record["title"] or "",
        "stet:document": doc_id,
        "stet:restricted": bool(record["restricted"]),
    })
    if record["source"]:
        raw.add_attributes({"stet:source": record["source"]})

    first_ingest = None
    for event in events:
        if not event["action"].startswith("ingest"):
            continue
        if not include_restricted and event["action"] == "ingest-duplicate" \
                and event["details"].get("restricted"):
            continue  # a restricted submission of these bytes: private, like the submission
        attributes = {"prov:type": f"stet:{event['action']}", "stet:seq": event["seq"],
                      "stet:hash": event["hash"]}
        path = event["details"].get("path")
        if path:
            attributes["stet:path"] = path
        bag = event["details"].get("bag")
        if bag:
            attributes["stet:bag"] = json.dumps(bag, ensure_ascii=False, sort_keys=True)
        activity = prov.activity(f"stet:event/{event['seq']}", event["time"], event["time"],
                                 attributes)
        prov.wasAssociatedWith(activity, person(event["actor"]))
        if event["action"] == "ingest" and first_ingest is None:
            first_ingest = activity
            prov.wasGeneratedBy(raw, activity, event["time"])
        else:
            prov.used(activity, raw, event["time"])

    if record["parent"] is not None:
        parent = document(record["parent"])
        prov.wasDerivedFrom(raw, prov.entity(f"sha256:{parent['sha256']}",
                                             {"prov:label": parent["filename"],
                                              "stet:document": parent["id"]}),
                            other_attributes={"prov:type": "stet:Attachment"})
    if record["supersedes"] is not None and (
            include_restricted or not _hidden(conn, record["supersedes"])):
        older = document(record["supersedes"])
        prov.wasRevisionOf(raw, prov.entity(f"sha256:{older['sha256']}",
                                            {"prov:label": older["filename"],
                                             "stet:document": older["id"]}))

    text = None
    if record["text_sha256"] is not None:
        text = prov.entity(f"stet:document/{doc_id}/text", {
            "prov:type": "stet:Text",
            "stet:sha256": record["text_sha256"],
            "stet:length": record["text_length"],
            "stet:extractor": record["extractor"],
            "stet:extractorVersion": record["extractor_version"],
        })
        if record["warning"]:
            text.add_attributes({"stet:warning": record["warning"]})
        extraction = prov.activity(f"stet:document/{doc_id}/extraction",
                                   other_attributes={"prov:type": "stet:Extraction"})
        software = prov.agent(f"stet:software/{quote(record['extractor'], safe='')}", {
            "prov:type": "prov:SoftwareAgent",
            "prov:label": record["extractor"],
            "stet:version": record["extractor_version"],
        })
        prov.used(extraction, raw)
        prov.wasAssociatedWith(extraction, software)
        if first_ingest is not None:
            prov.wasInformedBy(extraction, first_ingest)
        prov.wasGeneratedBy(text, extraction, record["ingested_at"])
        prov.wasDerivedFrom(text, raw, extraction)

    _annotations(prov, conn, doc_id, text, person)
    return prov


def _annotations(prov: ProvDocument, conn, doc_id: int, text, person) -> None:
    """Every revision of every annotation on the document, read from the table itself."""
    rows = conn.execute(
        'SELECT r.uuid, r.revision, l.name, r.start, r."end", r.exact, r.body, r.motivation, '
        "r.tags, r.author, r.modified, r.status, r.reason, r.reply_to, r.annotation "
        "FROM annotation_revisions r JOIN layers l ON l.id = r.layer "
        "WHERE r.document = ? ORDER BY r.annotation, r.revision",
        (doc_id,),
    ).fetchall()
    annotations: dict[str, Any] = {}
    previous = None
    for (uid, revision, layer, start, end, exact, body, motivation, tags, author, modified,
         status, reason, reply_to, annotation_id) in rows:
        if uid not in annotations:
            annotations[uid] = prov.entity(f"uuid:{uid}", {"prov:type": "stet:Annotation",
                                                           "stet:id": annotation_id})
            previous = None
        attributes: dict[str, Any] = {
            "prov:type": "stet:AnnotationRevision",
            "stet:revision": revision,
            "stet:layer": layer,
            "stet:body": body,
            "stet:motivation": motivation,
            "stet:tags": tags,
            "stet:status": status,
        }
        if start is not None:
            attributes.update({"stet:start": start, "stet:end": end, "stet:exact": exact})
        if reason:
            attributes["stet:reason"] = reason
        if reply_to is not None:
            attributes["stet:replyTo"] = reply_to
        entity = prov.entity(f"stet:annotation/{uid}/{revision}", attributes)
        prov.wasAttributedTo(entity, person(author))
        prov.wasGeneratedBy(entity, None, modified)
        prov.specializationOf(entity, annotations[uid])
        if previous is not None:
            prov.wasRevisionOf(entity, previous)
        elif text is not None:
            prov.wasDerivedFrom(entity, text)
        previous = entity


def prov_json(conn, doc_id: int, **arguments: Any) -> str:
    """The lineage as PROV-JSON text (the arguments of :func:`lineage`)."""
    return lineage(conn, doc_id, **arguments).serialize(format="json", indent=2,
                                                         ensure_ascii=False)
