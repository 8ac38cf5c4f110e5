# Over 400 lines on purpose: one format, W3C Web Annotation, both ways (and brat out, which
# shares its row selection); writing and parsing must agree on every field, so they sit together.
"""W3C Web Annotation out and in, and brat standoff out: serialization only (the files an
import reads are found and read in :mod:`stet.annotations.files`, written in
:mod:`stet.annotations.importer`).

One stet annotation is one W3C ``Annotation``:

- ``id`` is ``urn:uuid:<uuid>``, stable for the annotation's whole life;
- ``target`` is a ``SpecificResource`` whose ``source`` is the raw document's
  ``urn:sha256:<sha>`` and whose ``state`` (a ``TimeState``) names the exact text the
  offsets index: ``cached`` is ``urn:sha256:<text sha>``, ``sourceDate`` when it was
  ingested; its selectors are a ``TextQuoteSelector`` (exact, 32 code points of prefix
  and suffix) and a ``TextPositionSelector`` (code points). A reply targets its parent's IRI
  (and the span too, if it has one);
- ``body`` is a ``TextualBody`` (``text/plain``, purpose = the motivation) and one
  ``TextualBody`` with purpose ``tagging`` per tag;
- what the W3C model has no term for goes in the ``stet:`` namespace: ``stet:layer``,
  ``stet:revision``, ``stet:status``, ``stet:reason``, ``stet:author`` (of this revision),
  and the layer's ``stet:layerColour`` and ``stet:layerDescription`` where it has them (an
  import creates a new layer with them).

With ``--history`` each revision is its own annotation with the IRI
``urn:uuid:<uuid5(annotation uuid, "revision/N")>``, ``dcterms:isVersionOf`` the annotation's
IRI and ``dcterms:replaces`` its predecessor, so that an import rebuilds the whole history.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid as uuid_module
from datetime import datetime, timedelta
from typing import Any, Iterable, Iterator, NamedTuple, TextIO

import orjson

from .. import store, timeutil
from .._version import __version__
from ..errors import InvalidInput, arg
from ..store import ANCHORINGS
from .schema import FIELDS, W3C_MOTIVATIONS, select

ANNO_CONTEXT = "http://www.w3.org/ns/anno.jsonld"
STET_NS = "https://w3id.org/stet/ns#"
CONTEXT = [ANNO_CONTEXT, {"stet": STET_NS}]
_W3C_MOTIVATIONS = frozenset(W3C_MOTIVATIONS)
FORMATS = ("w3c", "jsonl", "brat")
GENERATOR = {"type": "Software", "name": "stet", "schema:softwareVersion": __version__}
_CANONICAL_UUID_IRI = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_STORED_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)
#: What an export reads of each annotation (or revision ``a``): its fields, the parent's uuid
#: for ``reply_to`` (from ``annotations p``), and the document's and text's identity.
_EXPORTED = {"layer": "l.name", "reply_to": "p.uuid", "source": "d.sha256",
             "ingested_at": "d.ingested_at", "text_sha256": "t.sha256",
             "layer_colour": "l.colour", "layer_description": "l.description",
             "origin_uuid": "o.uuid", "anchoring": "x.anchoring", "score": "x.score"}
_EXTRA = ("source", "ingested_at", "text_sha256", "layer_colour", "layer_description",
          "origin_uuid", "anchoring", "score")
_KEYS = (*("parent" if f == "reply_to" else f for f in FIELDS), *_EXTRA)
_COLUMNS = {history: select("a", (*FIELDS, *_EXTRA), revisions=history, replace=_EXPORTED)
            for history in (False, True)}


def iri(uuid: str) -> str:
    return f"urn:uuid:{uuid}"


def revision_iri(uuid: str, revision: int) -> str:
    if _CANONICAL_UUID.fullmatch(uuid):  # uuid5 by hand: the same value, a quarter the time
        digest = bytearray(hashlib.sha1(bytes.fromhex(uuid.replace("-", ""))
                                        + f"revision/{revision}".encode()).digest()[:16])
        digest[6] = (digest[6] & 0x0F) | 0x50
        digest[8] = (digest[8] & 0x3F) | 0x80
        h = digest.hex()
        return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return iri(str(uuid_module.uuid5(uuid_module.UUID(uuid), f"revision/{revision}")))


def uuid_of(value: str) -> str:
    """The stet uuid behind an annotation IRI (another system's IRI gets a uuid5 of it)."""
    if _CANONICAL_UUID_IRI.fullmatch(value):
        return value[9:]
    if value.lower().startswith("urn:uuid:"):
        try:
            return str(uuid_module.UUID(value[9:]))
        except ValueError:
            raise InvalidInput(f"{value!r} is not a valid urn:uuid IRI") from None
    return str(uuid_module.uuid5(uuid_module.NAMESPACE_URL, value))


# -- export -----------------------------------------------------------------------------


#: The layer an exported annotation is in: the current state's (a revision's own layer may
#: have been renamed or merged since).
_LAYER = {False: "JOIN layers l ON l.id = a.layer",
          True: "JOIN annotations c ON c.id = a.annotation JOIN layers l ON l.id = c.layer"}


def _selection(documents: list[int] | None, layer: str | None,
               history: bool) -> tuple[str, str, list[str], list[Any]]:
    """The table, its annotation id column and the conditions of an export's selection."""
    table, ident = ("annotation_revisions", "annotation") if history else ("annotations", "id")
    where: list[str] = []
    params: list[Any] = []
    if not history:
        where.append("a.status = 'active'")
    if documents:
        where.append(f"a.document IN ({', '.join('?' * len(documents))})")
        params += documents
    if layer is not None:
        where.append("l.name = ?")
        params.append(layer)
    return table, ident, where, params


def rows(conn, *, documents: list[int] | None = None, layer: str | None = None,
         history: bool = False, include_restricted: bool = False) -> Iterator[dict[str, Any]]:
    """The annotations to export: active current state, or every revision, in id order.
    Annotations on hidden documents (:data:`stet.store.HIDDEN_DOCUMENTS`: restricted now,
    or an attachment of one) are left out unless ``include_restricted``. Each is in its
    layer as it is now (a revision made before a rename or merge too: the current state's
    layer), with the layer's colour and description."""
    table, ident, where, params = _selection(documents, layer, history)
    if not include_restricted:
        where.append(f"a.document NOT IN ({store.HIDDEN_DOCUMENTS})")
    sql = (
        f"SELECT {_COLUMNS[history]} FROM {table} a {_LAYER[history]} "
        "JOIN documents d ON d.id = a.document JOIN texts t ON t.document = a.document "
        "LEFT JOIN annotations p ON p.id = a.reply_to "
        # carried from an older version: how it was placed, and the one it came from
        f"LEFT JOIN anchoring_state x ON x.annotation = a.{ident} "
        f"LEFT JOIN annotations o ON o.id = x.origin AND o.document NOT IN ({store.HIDDEN_DOCUMENTS})"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY a.{ident}, a.revision"
    )
    for row in conn.execute(sql, params):
        yield dict(zip(_KEYS, row))


def left_out(conn, *, documents: list[int] | None = None, layer: str | None = None,
             history: bool = False) -> int:
    """How many annotations an export without ``include_restricted`` leaves out (those the
    same selection finds on hidden documents)."""
    table, ident, where, params = _selection(documents, layer, history)
    where.append(f"a.document IN ({store.HIDDEN_DOCUMENTS})")
    sql = (f"SELECT count(DISTINCT a.{ident}) FROM {table} a {_LAYER[history]} "
           "WHERE " + " AND ".join(where))
    return conn.execute(sql, params).fetchone()[0]


def to_w3c(row: dict[str, Any], *, history: bool = False) -> dict[str, Any]:
    """One annotation (or, with ``history``, one revision) as a W3C Annotation."""
    motivation = row["motivation"]
    if motivation not in _W3C_MOTIVATIONS:
        motivation = f"stet:{motivation}"
    body = []
    if row["body"]:
        body.append({"type": "TextualBody", "value": row["body"], "format": "text/plain",
                     "purpose": motivation})
    body += [{"type": "TextualBody", "value": tag, "purpose": "tagging"}
             for tag in json.loads(row["tags"])]
    targets: list[Any] = []
    if row["parent"] is not None:
        targets.append(iri(row["parent"]))
    if row["start"] is not None:
        targets.append({
            "type": "SpecificResource",
            "source": f"urn:sha256:{row['source']}",
            "state": {"type": "TimeState", "sourceDate": row["ingested_at"],
                      "cached": f"urn:sha256:{row['text_sha256']}"},
            "selector": [
                {"type": "TextQuoteSelector", "exact": row["exact"], "prefix": row["prefix"],
                 "suffix": row["suffix"]},
                {"type": "TextPositionSelector", "start": row["start"], "end": row["end"]},
            ],
        })
    if not targets:  # carried to a newer version, its passage gone: the text, no selector
        targets.append({
            "type": "SpecificResource",
            "source": f"urn:sha256:{row['source']}",
            "state": {"type": "TimeState", "sourceDate": row["ingested_at"],
                      "cached": f"urn:sha256:{row['text_sha256']}"},
        })
    annotation: dict[str, Any] = {
        "@context": CONTEXT,
        "id": revision_iri(row["uuid"], row["revision"]) if history else iri(row["uuid"]),
        "type": "Annotation",
        "motivation": motivation,
        "creator": {"type": "Person", "name": row["creator"]},
        "created": row["created"],
        "modified": row["modified"],
        "generator": GENERATOR,
    }
    if body:
        annotation["body"] = body if len(body) > 1 else body[0]
    annotation["target"] = targets if len(targets) > 1 else targets[0]
    annotation["stet:layer"] = row["layer"]
    if row.get("layer_colour") is not None:
        annotation["stet:layerColour"] = row["layer_colour"]
    if row.get("layer_description") is not None:
        annotation["stet:layerDescription"] = row["layer_description"]
    annotation["stet:revision"] = row["revision"]
    annotation["stet:status"] = row["status"]
    annotation["stet:author"] = row["author"]
    if row["reason"] is not None:
        annotation["stet:reason"] = row["reason"]
    if row.get("anchoring") is not None:  # carried from an older version of the document
        if row.get("origin_uuid") is not None:
            annotation["via"] = iri(row["origin_uuid"])
        annotation["stet:anchoring"] = row["anchoring"]
        annotation["stet:score"] = row["score"]
    if history:
        annotation["dcterms:isVersionOf"] = {"id": iri(row["uuid"])}
        if row["revision"] > 1:
            annotation["dcterms:replaces"] = {"id": revision_iri(row["uuid"], row["revision"] - 1)}
    return annotation


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def export(conn, out: TextIO, *, fmt: str = "w3c", documents: list[int] | None = None,
           layer: str | None = None, history: bool = False,
           include_restricted: bool = False) -> int:
    """Write annotations to ``out``; return how many were written. Annotations on hidden
    documents are left out unless ``include_restricted`` (see :func:`rows`)."""
    if fmt not in FORMATS:
        raise InvalidInput(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    selected = rows(conn, documents=documents, layer=layer, history=history,
                    include_restricted=include_restricted)
    if fmt == "brat":
        return _brat(conn, out, selected, documents, history)
    count = 0
    if fmt == "jsonl":
        for row in selected:
            out.write(_dumps(to_w3c(row, history=history)) + "\n")
            count += 1
        return count
    header = {
        "@context": CONTEXT, "id": iri(str(uuid_module.uuid4())), "type": "AnnotationCollection",
        "label": "stet export" + (" (every revision)" if history else ""),
        "generated": timeutil.iso(timeutil.now()),
        "generator": GENERATOR,
    }
    out.write(_dumps(header)[:-1] + ',"first":{"type":"AnnotationPage","startIndex":0,"items":[')
    for row in selected:
        item = to_w3c(row, history=history)
        del item["@context"]  # the collection's context applies
        out.write(("," if count else "") + "\n" + _dumps(item))
        count += 1
    out.write(f'\n]}},"total":{count}}}\n')
    return count


def _brat(conn, out: TextIO, selected: Iterable[dict[str, Any]],
          documents: list[int] | None, history: bool) -> int:
    """brat standoff of one document: a ``T`` line per span (``T<n>\t<layer> <start>
    <end>\t<exact>``) and one ``AnnotatorNotes`` note per span that has something to say:
    its body, its tags (``tags: a, b``), the span it replies to (``reply to T<n>``) and each
    reply without a span (``reply by NAME: body``), in thread order, under the span its
    thread starts from; `` | `` between them, white space in each folded to one space. The
    document's text goes in a ``.txt`` beside the ``.ann`` (the command line writes it).
    Returns how many annotations were written (a reply in a note counts as one)."""
    if history:
        raise InvalidInput(f"{arg('history')} is not available in brat format")
    if not documents or len(documents) != 1:
        raise InvalidInput("brat format is one document's standoff: give exactly one DOC")
    rows = list(selected)  # one document's annotations
    by_uuid = {row["uuid"]: row for row in rows}
    spans: dict[str, int] = {}  # uuid -> T number
    for row in rows:
        if row["start"] is not None:
            spans[row["uuid"]] = len(spans) + 1
    notes: dict[int, list[str]] = {n: [] for n in spans.values()}
    count = 0
    for row in rows:
        if row["start"] is not None:
            n = spans[row["uuid"]]
            if row["body"]:
                notes[n].append(_one_line(row["body"]))
            tags = json.loads(row["tags"])
            if tags:
                notes[n].append("tags: " + _one_line(", ".join(tags)))
            if row["parent"] in spans:
                notes[n].append(f"reply to T{spans[row['parent']]}")
            count += 1
            continue
        root, seen = row, set()  # a reply without a span: its thread's first span
        while root["start"] is None and root["parent"] in by_uuid and root["uuid"] not in seen:
            seen.add(root["uuid"])
            root = by_uuid[root["parent"]]
        if root["start"] is None:
            continue  # its thread has no span here (the parent was not exported)
        tags = json.loads(row["tags"])
        notes[spans[root["uuid"]]].append(
            f"reply by {_one_line(row['creator'])}: {_one_line(row['body'])}"
            + (f" (tags: {_one_line(', '.join(tags))})" if tags else ""))
        count += 1
    for row in rows:
        if row["start"] is None:
            continue
        n = spans[row["uuid"]]
        label = "_".join(row["layer"].split()) or "layer"
        out.write(f"T{n}\t{label} {row['start']} {row['end']}\t{_one_line(row['exact'], keep=True)}\n")
        if notes[n]:
            out.write(f"#{n}\tAnnotatorNotes T{n}\t{' | '.join(notes[n])}\n")
    return count


def _one_line(text: str, *, keep: bool = False) -> str:
    """Text on one line: line breaks become spaces (``keep``: every other character kept,
    so that a quote keeps its length), else all white space folds to single spaces."""
    if keep:
        return " ".join(text.splitlines()) if "\n" in text or "\r" in text else text
    return " ".join(text.split())


# -- parsing one annotation -------------------------------------------------------------


class Parsed(NamedTuple):
    """The stet fields of one W3C annotation, as :func:`parse` reads and checks them.

    A tuple, not a dict: a large import sends millions of them from its parse worker to the
    process that writes (:mod:`stet.annotations.worker`), and a tuple crosses in about four
    fifths of a dict's time (its keys are not sent)."""

    uuid: str
    revision: int | None  # (a --history export's; None: a current-state export's)
    parent: str | None  # the uuid of the annotation it replies to
    source: str | None  # the document's SHA-256
    text_sha256: str | None
    start: int | None
    end: int | None
    exact: str | None
    prefix: str | None
    suffix: str | None
    body: str
    tags: tuple[str, ...]
    motivation: str
    creator: str
    author: str
    created: str  # as stored (UTC, microseconds, Z), and as microseconds
    created_us: int
    modified: str
    modified_us: int
    status: str
    reason: str | None
    layer: str
    iri: str
    layer_colour: str | None
    layer_description: str | None
    anchoring: str | None  # a carried annotation's (stet:anchoring, stet:score, via)
    score: float | None
    origin: str | None


def parse(item: dict[str, Any]) -> Parsed:
    """The stet fields of one W3C annotation, checked; :class:`InvalidInput` if malformed."""
    kinds = item.get("type")
    if "Annotation" not in (kinds if isinstance(kinds, list) else [kinds]):
        raise InvalidInput("not a W3C Annotation (type is not 'Annotation')")
    ident = item.get("id")
    if not isinstance(ident, str) or not ident:
        raise InvalidInput("the annotation has no id")
    version_of = item.get("dcterms:isVersionOf")
    if version_of is not None:  # one revision of a --history export
        annotation_iri = _ref(version_of, "dcterms:isVersionOf")
        revision = item.get("stet:revision")
        if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
            raise InvalidInput("a revision needs stet:revision, an integer >= 1")
        replaces = item.get("dcterms:replaces")
        expected = revision_iri(uuid_of(annotation_iri), revision - 1) if revision > 1 else None
        if (_ref(replaces, "dcterms:replaces") if replaces is not None else None) != expected:
            raise InvalidInput(f"revision {revision} must replace {expected or 'nothing'}")
    else:
        annotation_iri, revision = ident, None
    motivation = item.get("motivation", "commenting")
    if isinstance(motivation, list):
        motivation = motivation[0] if motivation else "commenting"
    if not isinstance(motivation, str):
        raise InvalidInput("motivation must be a string")
    if motivation.startswith("oa:"):
        motivation = motivation[3:]
    elif motivation.startswith("stet:"):
        motivation = motivation[5:]
    body, tags = _bodies(item)
    anchoring, score, origin = _carried(item)
    parent, target = _targets(item.get("target"), spanless=anchoring == "orphaned")
    creator = _agent(item.get("creator"), "creator")
    created = _time(item.get("created"), "created")
    given = item.get("modified")
    modified = created if given is None or given == item["created"] else \
        _time(given or item.get("created"), "modified")
    author = item.get("stet:author", creator)
    if not isinstance(author, str) or not author:
        raise InvalidInput("stet:author must be a name")
    status = item.get("stet:status", "active")
    if status not in ("active", "retracted"):
        raise InvalidInput(f"stet:status {status!r}: must be 'active' or 'retracted'")
    layer = item.get("stet:layer", "imported")
    reason = item.get("stet:reason")
    if not isinstance(layer, str) or (reason is not None and not isinstance(reason, str)):
        raise InvalidInput("stet:layer and stet:reason must be strings")
    colour, description = item.get("stet:layerColour"), item.get("stet:layerDescription")
    if any(v is not None and not isinstance(v, str) for v in (colour, description)):
        raise InvalidInput("stet:layerColour and stet:layerDescription must be strings")
    return Parsed(uuid_of(annotation_iri), revision, parent, *target, body, tags, motivation,
                  creator, author, created[0], created[1], modified[0], modified[1], status,
                  reason, layer, ident, colour, description, anchoring, score, origin)


def _carried(item: dict[str, Any]) -> tuple[str | None, float | None, str | None]:
    """An annotation carried to a newer version (``stet:anchoring``, ``stet:score``, and the
    one it came from, ``via``): what the import records of it (None: not carried)."""
    anchoring = item.get("stet:anchoring")
    if anchoring is None:
        return None, None, None
    if anchoring not in ANCHORINGS:
        raise InvalidInput(f"stet:anchoring {anchoring!r}: one of {', '.join(ANCHORINGS)}")
    score = item.get("stet:score", 1.0 if anchoring == "exact" else 0.0)
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
        raise InvalidInput("stet:score must be a number from 0 to 1")
    via = item.get("via")
    origin = uuid_of(_ref(via, "via")) if via is not None else None
    return anchoring, float(score), origin


def _ref(value: Any, key: str) -> str:
    if isinstance(value, dict):
        value = value.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key} must be an IRI")
    return value


def _bodies(item: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    if "bodyValue" in item:
        if "body" in item:
            raise InvalidInput("an annotation has body or bodyValue, not both")
        if not isinstance(item["bodyValue"], str):
            raise InvalidInput("bodyValue must be a string")
        return item["bodyValue"], ()
    bodies = item.get("body", [])
    bodies = bodies if isinstance(bodies, list) else [bodies]
    text, tags = None, []
    for body in bodies:
        if not isinstance(body, dict) or not isinstance(body.get("value"), str):
            raise InvalidInput("only embedded TextualBody bodies (with a value) can be imported")
        if body.get("purpose") == "tagging":
            tags.append(body["value"])
        elif text is None:
            text = body["value"]
        else:
            raise InvalidInput("more than one body that is not a tag")
    return text or "", tuple(tags)


#: A target that names no document (a reply's): the seven target fields of :class:`Parsed`.
_NO_TARGET = (None,) * 7


def _targets(target: Any, *, spanless: bool = False) -> tuple[str | None, tuple]:
    """The parent annotation and the document's resource a target names; ``spanless``: a
    resource may come without a selector (an orphaned carried annotation)."""
    if target is None:
        raise InvalidInput("the annotation has no target")
    parent, found = None, None
    for one in (target if isinstance(target, list) else [target]):
        if isinstance(one, str):
            if parent is not None:
                raise InvalidInput("more than one annotation targeted")
            parent = uuid_of(one)
        elif isinstance(one, dict) and "source" in one:
            if found is not None:
                raise InvalidInput("more than one document targeted")
            found = _specific(one, spanless=spanless)
        else:
            raise InvalidInput("a target must be an annotation IRI or a resource with a source")
    if found is None:
        if parent is None:
            raise InvalidInput("the annotation has no target")
        found = _NO_TARGET
    return parent, found


def _specific(target: dict[str, Any], *, spanless: bool = False) -> tuple:
    """``(source, text_sha256, start, end, exact, prefix, suffix)``, in :class:`Parsed`'s
    order."""
    source = target["source"]
    if not isinstance(source, str) or not source.startswith("urn:sha256:"):
        raise InvalidInput(f"target source {source!r}: stet finds documents by urn:sha256: IRI")
    out = {"source": source[11:].lower(), "text_sha256": None, "start": None, "end": None,
           "exact": None, "prefix": None, "suffix": None}
    state = target.get("state")
    if isinstance(state, dict) and isinstance(state.get("cached"), str) \
            and state["cached"].startswith("urn:sha256:"):
        out["text_sha256"] = state["cached"][11:].lower()
    selectors = target.get("selector", [])
    for selector in (selectors if isinstance(selectors, list) else [selectors]):
        kind = selector.get("type") if isinstance(selector, dict) else None
        if kind == "TextPositionSelector":
            start, end = selector.get("start"), selector.get("end")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end)):
                raise InvalidInput("TextPositionSelector start and end must be integers")
            out["start"], out["end"] = start, end
        elif kind == "TextQuoteSelector":
            for key in ("exact", "prefix", "suffix"):
                value = selector.get(key)
                if value is not None and not isinstance(value, str):
                    raise InvalidInput(f"TextQuoteSelector {key} must be a string")
                out[key] = value
            if not out["exact"]:
                raise InvalidInput("TextQuoteSelector needs a non-empty exact")
    if out["start"] is None and out["exact"] is None and not (spanless and "selector" not in target):
        raise InvalidInput("the target has no TextPositionSelector or TextQuoteSelector")
    return tuple(out.values())


def _agent(value: Any, key: str) -> str:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        value = value.get("name") or value.get("nickname") or value.get("id")
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"the annotation needs a {key} (a name)")
    return value


def _time(value: Any, key: str) -> tuple[str, int]:
    """A time as stored (UTC, microseconds, Z) and as microseconds."""
    if not isinstance(value, str):
        raise InvalidInput(f"the annotation needs {key}, an ISO 8601 time")
    if _STORED_TIME.fullmatch(value):  # stet's own form: the common case, made fast
        try:
            return value, (datetime.fromisoformat(value[:-1]) - _EPOCH) // _MICROSECOND
        except ValueError:
            pass
    try:
        moment = timeutil.parse(value)
        return timeutil.iso(moment), timeutil.micros(moment)
    except InvalidInput as exc:  # not a time, or one out of range (year 0 or 10000 in UTC)
        raise InvalidInput(f"{key}: {exc}") from None
