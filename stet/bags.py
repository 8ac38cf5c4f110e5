# Over 400 lines for now: validation, export and the stet tag file are the seams to split
# along (bags/validate.py, bags/export.py, bags/tagfile.py), left while bag export is edited.
"""BagIt (RFC 8493) out and in, with the Library of Congress ``bagit`` package.

Export (:func:`export`) writes the raw documents as the payload under their original names,
``manifest-sha256.txt`` and ``manifest-sha512.txt``, the tag manifests, ``bag-info.txt`` and
the tag file :data:`TAG_FILE` (one JSON object a line: each document's record as ingested,
its current state from the chain, its provenance events and its text). The bag is built in a
hidden folder beside ``DIR`` and renamed into place only when complete, so a failed export
leaves nothing behind. Export reads the archive and writes nothing to it (no event is
recorded: the archive does not change). Documents the public may not see
(:data:`stet.store.HIDDEN_DOCUMENTS`: restricted now, or an attachment of one) leave only
with ``include_restricted``, and so do the events of restricted submissions of public bytes.

Ingest (:func:`open_bag`) validates a bag completely before anything is written: the
tag files (regular files inside the bag), the structure, ``bagit.txt`` (strictly:
``Name: value``, one space), the manifests' paths (each payload manifest's inside ``data/``,
each tag manifest's inside the bag), ``fetch.txt`` (every file it lists fetched: on disk and
in the manifests), completeness (every payload file in every manifest and on disk), every
checksum of every manifest and tag manifest (computed by stet, reading regular files only,
never through a link that leads out of the bag), and the Payload-Oxum; all problems are
collected and reported in one :class:`~stet.errors.InvalidInput` naming the failing files.
The SHA-256 of each payload file as validated is kept (:attr:`ValidBag.sha256`): ingest
stores a payload file only if its bytes still have it, and refuses the bag whole otherwise.
The bag itself is recorded once, in a ``bag`` event (:meth:`ValidBag.event_details`), and
each payload file's event points at it. A stet bag (one with
:data:`TAG_FILE`, which must then be covered by a tag manifest) has that file read and
checked too, and refused whole if it is malformed; each payload file's ingest then takes the
document's restriction, title and source from it and records the original archive's
provenance under ``original`` (:meth:`ValidBag.details`). Its payload is ingested with each
message before its attachments, so that the message's extraction creates each attachment
with its link to the message (the attachment's own payload file is then a duplicate of it).
A bag from anywhere else ingests as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import posixpath
import re
import stat
import shutil
import tempfile
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import bagit

from . import store, timeutil
from ._version import __version__
from .errors import InvalidInput, arg
from .system import open_regular, reason
from .hashing import sha256_file

#: The stet tag file in an exported bag: one JSON object per document, in payload order.
TAG_FILE = "stet-documents.jsonl"
CHECKSUMS = ("sha256", "sha512")

#: bagit's private methods stet relies on, each checked by ``tests/test_bags.py`` against the
#: installed bagit (pinned below 2 in pyproject.toml): the validation steps bagit-python's
#: public ``validate()`` runs in one go, which stet runs one by one to report every problem
#: of a bag once, and between which it checks what bagit would open (regular files inside
#: the bag) and hashes the payload itself.
BAGIT_PRIVATE = ("_validate_structure", "_validate_bagittxt", "_validate_completeness")

_BAGIT_TXT_LINE = re.compile(r"(BagIt-Version|Tag-File-Character-Encoding): (\S.*)")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")
#: The files at a bag's top that bagit opens itself (and stet's tag file).
_TAG_FILES = re.compile(r"bagit\.txt|bag-info\.txt|package-info\.txt|fetch\.txt|"
                        r"(tag)?manifest-\w+\.txt|" + re.escape("stet-documents.jsonl"))
_MISSING = "in the manifest, missing on disk"
_OUT_OF_BAG = "a symbolic link that leads out of the bag"
#: How many names a message lists before "and N more".
_SHOWN = 5


# -- detection and validation -----------------------------------------------------------------


def is_bag(path: str | os.PathLike) -> bool:
    """A folder with ``bagit.txt`` at its top, or one that looks like a bag without it
    (a ``data`` folder beside a ``manifest-*.txt``), which validation will then refuse."""
    path = os.fspath(path)
    if os.path.isfile(os.path.join(path, "bagit.txt")):
        return True
    if not os.path.isdir(os.path.join(path, "data")):
        return False
    try:
        names = os.listdir(path)
    except OSError:
        return False
    return "data" in names and any(re.fullmatch(r"manifest-\w+\.txt", n) for n in names)


@dataclass
class ValidBag:
    """A bag that passed validation: its payload files and what to record of it."""

    path: str
    version: str
    info: dict[str, Any]
    payload: list[str] = field(default_factory=list)  # paths relative to the bag, in order
    #: A stet bag's records (:data:`TAG_FILE`) by payload path; empty for any other bag.
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Each payload file's SHA-256 as validated: the bytes its manifests vouch for.
    sha256: dict[str, str] = field(default_factory=dict)
    #: The SHA-256 of each manifest and tag manifest file, by name.
    manifests: dict[str, str] = field(default_factory=dict)
    size: int = 0  # the payload's bytes
    #: The bag's public name (relative to the folder that was ingested, or its folder's
    #: name), set by the ingest that found it.
    name: str | None = None

    def event_details(self) -> dict[str, Any]:
        """What the ``bag`` event records of the bag, once for all its payload files: where
        it was (``path``, absolute; ``name``, public), its BagIt version, its whole
        ``bag-info.txt``, the payload measured (files and bytes) and the SHA-256 of each of
        its manifest and tag manifest files."""
        return {"path": self.path, "name": self.name or os.path.basename(self.path),
                "bagit_version": self.version, "bag_info": self.info,
                "payload": {"files": len(self.payload), "bytes": self.size},
                "manifests": self.manifests}

    def details(self, relative: str) -> dict[str, Any]:
        """The provenance recorded with one payload file's ingest event: ``bag`` (its path in
        the bag, ``file``; the ingest adds the ``event`` number and ``hash`` of the bag's
        event). For a stet bag, also the document's current ``restricted``, ``source`` and
        ``title`` in the archive it came from (the ingest applies them), and that archive's
        record of it as ``original``: who ingested it and when, its id, title, source,
        message (``parent``) and events there, and the head of that archive's chain when the
        bag was made."""
        details: dict[str, Any] = {"bag": {"file": relative}}
        record = self.records.get(relative)
        if record is None:
            return details
        document, state = record["document"], _state(record)
        head = self.info.get("Stet-Event-Chain-Head")
        details.update(
            restricted=bool(state["restricted"] or state["hidden"]),
            source=state["source"],
            title=state["title"],
            original={
                "archive_event_head": head[0] if isinstance(head, list) else head,
                **{key: document[key] for key in (
                    "id", "sha256", "title", "source", "ingested_by", "ingested_at", "parent",
                    "supersedes")},
                "events": record["events"],
            },
        )
        return details


@dataclass
class BagFile:
    """One payload file of a valid bag, as the ingest carries it to the writer."""

    bag: ValidBag
    relative: str  # its path in the bag (``data/...``)

    @property
    def sha256(self) -> str:
        return self.bag.sha256[self.relative]


def open_bag(path: str | os.PathLike) -> ValidBag:
    """Validate the bag at ``path`` completely; raise InvalidInput naming every failing file."""
    path = os.path.abspath(os.fspath(path))
    shown = os.fspath(path)
    prefix = f"invalid bag {shown}"
    _check_tag_files(path, prefix)
    if not os.path.isfile(os.path.join(path, "bagit.txt")):
        raise InvalidInput(f"{prefix}: bagit.txt is missing")
    _check_bagit_txt(path, prefix)
    try:
        bag = bagit.Bag(path)
        bag._validate_structure()
        bag._validate_bagittxt()
    except bagit.BagError as exc:
        raise InvalidInput(f"{prefix}: {_strip(str(exc), path)}") from None
    _check_manifest_paths(bag, prefix)
    _check_fetch(bag, path, prefix)
    try:
        bag.validate_fetch()
    except bagit.BagError as exc:
        raise InvalidInput(f"{prefix}: {_strip(str(exc), path)}") from None
    problems: dict[str, list[str]] = {}
    try:
        bag._validate_completeness()
    except bagit.BagValidationError as exc:
        _collect(exc, problems)
    payload = sorted(bag.payload_files())
    sha256 = _check_entries(bag, path, set(payload), problems)
    for reasons in problems.values():  # a missing file's checksums cannot match: say missing
        if _MISSING in reasons:
            reasons[:] = [r for r in reasons if not r.endswith(" mismatch")]
    size = sum(os.stat(os.path.join(path, p)).st_size for p in payload)
    oxum = _oxum_problem(bag, size, payload)
    if problems or oxum:
        listed = [f"{name} ({', '.join(sorted(set(reasons)))})"
                  for name, reasons in sorted(problems.items())]
        if len(listed) > 20:
            listed = listed[:20] + [f"and {len(listed) - 20} more"]
        if oxum:
            listed.append(oxum)
        raise InvalidInput(f"{prefix}: " + "; ".join(listed))
    records = _stet_records(bag, path, payload, prefix)
    manifests = {}
    for manifest in sorted([*bag.manifest_files(), *bag.tagmanifest_files()]):
        with open_regular(manifest) as stream:
            manifests[os.path.basename(manifest)] = sha256_file(stream)[0]
    return ValidBag(path, ".".join(map(str, bag.version_info)), dict(bag.info),
                    _payload_order(payload, records), records, sha256, manifests, size)


def _listed(names: list[str]) -> str:
    """``a, b, c`` or ``a, b, c, d, e and 7 more``."""
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def _inside(real: str, root: str) -> bool:
    return real.startswith(root + os.sep)


def _check_tag_files(path: str, prefix: str) -> None:
    """Every file at the bag's top that bagit opens itself (``bagit.txt``, the manifests,
    ``bag-info.txt``, ``fetch.txt``...) is a regular file inside the bag: opening a FIFO
    would wait forever, and a link out of the bag would record another file as its info."""
    root = os.path.realpath(path)
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise InvalidInput(f"{prefix}: {reason(exc)}") from None
    for name in names:
        if not _TAG_FILES.fullmatch(name):
            continue
        location = os.path.join(path, name)
        if not _inside(os.path.realpath(location), root):
            raise InvalidInput(f"{prefix}: {name}: {_OUT_OF_BAG}")
        try:
            open_regular(location).close()
        except OSError as exc:
            raise InvalidInput(f"{prefix}: {name}: {reason(exc)}") from None


def _leaves(name: str, folder: str | None) -> bool:
    """Whether a path from a manifest or ``fetch.txt`` leads out of ``folder`` (``data``), or
    out of the bag (None), once normalized. A backslash counts as a separator here (it is
    one on Windows, where a bag may be read next); a path that starts with ``/``, ``~`` or
    a drive letter leads out."""
    text = name.replace("\\", "/")
    if text.startswith(("/", "~")) or re.match(r"[A-Za-z]:", text):
        return True
    normal = posixpath.normpath(text)
    if folder is not None:
        return not normal.startswith(folder + "/")
    return normal == ".." or normal.startswith("../")


def _manifest_lines(bag, manifest: str) -> Iterable[str]:
    """The paths a manifest lists, as written (bagit's own reading of it normalizes them)."""
    with open_regular(manifest) as raw, io.TextIOWrapper(raw, encoding=bag.encoding) as text:
        for line in text:
            line = line.strip().lstrip("\ufeff")
            if line and not line.startswith("#"):
                parts = line.split(None, 1)
                if len(parts) == 2:
                    yield parts[1].lstrip("*")


def _check_manifest_paths(bag, prefix: str) -> None:
    """Refuse a payload manifest entry that leaves ``data/`` or a tag manifest entry that
    leaves the bag, before anything is read through it. (bagit compares the real path with
    the bag's as strings: ``data/../../BAG-other/x`` passes its check.)"""
    problems = []
    for folder, manifests in (("data", bag.manifest_files()), (None, bag.tagmanifest_files())):
        for manifest in manifests:
            name = os.path.basename(manifest)
            try:
                problems += [f"{name}: {entry} leads out of {'data/' if folder else 'the bag'}"
                             for entry in _manifest_lines(bag, manifest) if _leaves(entry, folder)]
            except (OSError, UnicodeDecodeError, LookupError) as exc:
                problems.append(f"{name}: cannot be read ({exc})")
    if problems:
        raise InvalidInput(f"{prefix}: {_listed(problems)}")


def _decode(name: str) -> str:
    """A file name from ``fetch.txt`` or a manifest, its escapes decoded (RFC 8493: only CR,
    LF and ``%`` are percent-encoded)."""
    return re.sub("%0[dD]|%0[aA]|%25",
                  lambda m: {"%0D": "\r", "%0A": "\n", "%25": "%"}[m.group().upper()], name)


def _check_fetch(bag, path: str, prefix: str) -> None:
    """A bag whose ``fetch.txt`` lists a file it does not hold is not complete (RFC 8493:
    not until every file is fetched, and each must be in every payload manifest): refused,
    naming those files. A filled-in bag (every listed file on disk and in the manifests) is
    complete."""
    location = os.path.join(path, "fetch.txt")
    if not os.path.lexists(location):
        return
    listed = {bagit.normalize_unicode(p) for p in bag.payload_entries()}
    absent = []
    with open_regular(location) as raw, io.TextIOWrapper(raw, encoding=bag.encoding) as text:
        try:
            for number, line in enumerate(text, 1):
                if not line.strip():
                    continue
                parts = line.strip().split(None, 2)
                if len(parts) != 3 or not (parts[1] == "-" or parts[1].isdigit()):
                    raise InvalidInput(f"{prefix}: fetch.txt: line {number} is not "
                                       "URL LENGTH FILENAME")
                name = _decode(parts[2])
                if _leaves(name, "data"):
                    raise InvalidInput(f"{prefix}: fetch.txt: {parts[2]} leads out of data/")
                normal = posixpath.normpath(name)
                if (bagit.normalize_unicode(normal) not in listed
                        or not os.path.lexists(os.path.join(path, normal))):
                    absent.append(parts[2])
        except (UnicodeDecodeError, LookupError) as exc:
            raise InvalidInput(f"{prefix}: fetch.txt: cannot be read ({exc})") from None
    if absent:
        files = "file" if len(absent) == 1 else "files"
        raise InvalidInput(
            f"{prefix}: not complete: fetch.txt lists {len(absent)} {files} to fetch that "
            f"the bag does not hold: {_listed(absent)}")


def _check_entries(bag, path: str, payload: set[str],
                   problems: dict[str, list[str]]) -> dict[str, str]:
    """Every checksum of every manifest and tag manifest, computed here (bagit would open a
    FIFO and wait): each file opened only if it is regular and inside the bag. Returns each
    payload file's SHA-256 (computed too when no manifest has it)."""
    root = os.path.realpath(path)
    sha256: dict[str, str] = {}
    for relative, expected in sorted(bag.entries.items()):
        on_disk = bag.normalized_filesystem_names.get(bagit.normalize_unicode(relative), relative)
        location = os.path.join(path, on_disk)
        if not os.path.lexists(location):
            problems.setdefault(relative, []).append(_MISSING)
            continue
        if not _inside(os.path.realpath(location), root):
            problems.setdefault(relative, []).append(_OUT_OF_BAG)
            continue
        hashers = {algorithm: hashlib.new(algorithm) for algorithm in expected}
        if on_disk in payload and "sha256" not in hashers:
            hashers["sha256"] = hashlib.sha256()
        try:
            with open_regular(location) as stream:
                while block := stream.read(1024 * 1024):
                    for hasher in hashers.values():
                        hasher.update(block)
        except OSError as exc:
            problems.setdefault(relative, []).append(reason(exc))
            continue
        for algorithm, value in expected.items():
            if value.lower() != hashers[algorithm].hexdigest():
                problems.setdefault(relative, []).append(f"{algorithm} mismatch")
        if on_disk in payload:
            sha256[on_disk] = hashers["sha256"].hexdigest()
    return sha256


def _check_bagit_txt(path: str, prefix: str) -> None:
    with open_regular(os.path.join(path, "bagit.txt")) as stream:
        raw = stream.read(4096)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{prefix}: bagit.txt is not UTF-8") from None
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line and not _BAGIT_TXT_LINE.fullmatch(line.lstrip("\ufeff")):
            raise InvalidInput(f"{prefix}: bagit.txt: malformed line {line!r}")


def _collect(exc: "bagit.BagValidationError", problems: dict[str, list[str]]) -> None:
    for detail in exc.details or []:
        if isinstance(detail, bagit.ChecksumMismatch):
            why = f"{detail.algorithm} mismatch"
        elif isinstance(detail, bagit.FileMissing):
            why = "in the manifest, missing on disk"
        elif isinstance(detail, bagit.UnexpectedFile):
            why = "on disk, not in the manifest"
        else:
            why = str(detail)
        problems.setdefault(str(getattr(detail, "path", "?")), []).append(why)
    if not exc.details:
        problems.setdefault("bag", []).append(exc.message)


def _oxum_problem(bag, size: int, payload: list[str]) -> str | None:
    oxum = bag.info.get("Payload-Oxum")
    if oxum is None:
        return None
    if isinstance(oxum, list):
        oxum = oxum[0]
    octets, _, files = oxum.partition(".")
    if not (octets.isdigit() and files.isdigit()):
        return f"malformed Payload-Oxum {oxum!r}"
    if (int(octets), int(files)) != (size, len(payload)):
        return (f"Payload-Oxum {oxum} does not match the payload "
                f"({size} bytes in {len(payload)} files)")
    return None


def _strip(message: str, path: str) -> str:
    return message.replace(path + os.sep, "").replace(path, ".")


# -- a stet bag's tag file --------------------------------------------------------------------

_OPTIONAL_TEXT = (str, type(None))
_OPTIONAL_ID = (int, type(None))
#: What each key of a record's ``document`` must hold.
_DOCUMENT_KEYS = {
    "id": int, "sha256": str, "title": _OPTIONAL_TEXT, "filename": str, "source": _OPTIONAL_TEXT,
    "restricted": bool, "ingested_by": str, "ingested_at": str, "parent": _OPTIONAL_ID,
    "supersedes": _OPTIONAL_ID,
}
_STATE_KEYS = {"title": _OPTIONAL_TEXT, "source": _OPTIONAL_TEXT, "restricted": bool}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate key {next(k for k in keys if keys.count(k) > 1)!r}")
    return dict(pairs)


def _stet_records(bag, path: str, payload: list[str], prefix: str) -> dict[str, dict[str, Any]]:
    """The records of :data:`TAG_FILE`, by payload path; none when the bag has no such file.
    Raises InvalidInput, naming the line, unless it is a regular file covered by a tag
    manifest with one well-formed record for each payload file and nothing else."""
    location = os.path.join(path, TAG_FILE)
    try:
        info = os.lstat(location)
    except FileNotFoundError:
        return {}
    where = f"{prefix}: {TAG_FILE}"
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(f"{where}: not a regular file")
    if TAG_FILE not in bag.entries:
        raise InvalidInput(f"{where}: not in a tag manifest, so nothing vouches for it")
    expected = set(payload)
    records: dict[str, dict[str, Any]] = {}
    ids: set[int] = set()
    with open_regular(location) as stream:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line.decode("utf-8"), object_pairs_hook=_unique_keys)
                problem = _record_problem(record, expected, records, ids, bag.entries)
            except (UnicodeDecodeError, ValueError, RecursionError) as exc:
                problem = f"not a JSON object ({type(exc).__name__}: {exc})"[:200]
            if problem:
                raise InvalidInput(f"{where}: line {number}: {problem}")
            record.pop("text", None)  # the text is extracted again from the bytes
            records[record["payload"]] = record
            ids.add(record["document"]["id"])
    missing = sorted(expected - set(records))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InvalidInput(f"{where}: no record for {shown}")
    return records


def _record_problem(record: Any, expected: set[str], records: dict[str, Any], ids: set[int],
                    entries: dict[str, dict[str, str]]) -> str | None:
    """What is wrong with one record of :data:`TAG_FILE`, or None."""
    if not isinstance(record, dict):
        return "not a JSON object"
    name = record.get("payload")
    if not isinstance(name, str) or name not in expected:
        return f"payload {name!r} is not a payload file of the bag"
    if name in records:
        return f"a second record for {name}"
    document = record.get("document")
    if not isinstance(document, dict):
        return f"{name}: no document record"
    for key, kind in _DOCUMENT_KEYS.items():
        value = document.get(key)
        if key not in document or not isinstance(value, kind) or (
                isinstance(value, bool) and kind is not bool):
            return f"{name}: document.{key} is missing or malformed"
    if document["id"] in ids:
        return f"{name}: a second record for document {document['id']}"
    manifest = entries.get(name, {}).get("sha256")
    if manifest is not None and document["sha256"] != manifest:
        return f"{name}: document.sha256 is not the payload file's SHA-256"
    state = record.get("state")
    if state is not None:  # bags from before stet kept the current state have none
        if not isinstance(state, dict):
            return f"{name}: state is not an object"
        for key, kind in {**_STATE_KEYS, "hidden": bool}.items():
            value = state.get(key)
            if key not in state or not isinstance(value, kind) or (
                    isinstance(value, bool) and kind is not bool):
                return f"{name}: state.{key} is missing or malformed"
    events = record.get("events")
    if not isinstance(events, list) or not all(isinstance(e, dict) for e in events):
        return f"{name}: events is not a list of objects"
    return None


def _state(record: dict[str, Any]) -> dict[str, Any]:
    """A record's current state: ``state`` as exported, or (from an older stet) the record."""
    state = record.get("state")
    if state is None:
        document = record["document"]
        return {"title": document["title"], "source": document["source"],
                "restricted": document["restricted"], "hidden": document["restricted"]}
    return state


def _payload_order(payload: list[str], records: dict[str, dict[str, Any]]) -> list[str]:
    """The payload in the order to ingest it: as given (sorted), except that each message in
    the bag comes before its attachments, so that extracting the message creates each
    attachment with its link to it (the attachment's own file is then a duplicate).

    One exception keeps restriction first: an attachment restricted on its own whose message
    is public would be created public by its message's extraction. It goes first instead,
    and is ingested restricted as a document of its own (its message is then recorded in its
    event's ``original.parent`` only)."""
    if not records:
        return payload
    by_id = {record["document"]["id"]: name for name, record in records.items()}

    def parent_of(name: str) -> str | None:
        return by_id.get(records[name]["document"]["parent"])

    def alone(name: str) -> bool:
        parent = parent_of(name)
        return parent is not None and _state(records[name])["restricted"] \
            and not _state(records[parent])["hidden"]

    order: list[str] = []
    placed: set[str] = set()
    first = [name for name in payload if alone(name)]
    for name in first + payload:
        chain: list[str] = []
        current: str | None = name
        while current is not None and current not in placed and current not in chain:
            chain.append(current)
            current = None if alone(chain[-1]) else parent_of(chain[-1])
        for ancestor in reversed(chain):
            placed.add(ancestor)
            order.append(ancestor)
    return order


# -- export -----------------------------------------------------------------------------------


def payload_name(filename: str, taken: set[str]) -> str:
    """A safe, unique payload file name from a document's original name: no folders, no
    control characters; a name already used (ignoring case and Unicode normalization) gets
    `` (2)``, `` (3)``... before its extension."""
    name = _UNSAFE.sub("_", filename).strip() or "document"
    if name in (".", ".."):
        name = name.replace(".", "_")
    stem, dot, extension = name.rpartition(".")
    if not stem:
        stem, dot, extension = name, "", ""
    candidate, n = name, 1
    while _key(candidate) in taken:
        n += 1
        candidate = f"{stem} ({n}){dot}{extension}"
    taken.add(_key(candidate))
    return candidate


def _key(name: str) -> str:
    return unicodedata.normalize("NFC", name).casefold()


def export(archive, directory: str | os.PathLike, refs: Iterable[str | int] = (), *,
           organization: str | None = None, identifier: str | None = None,
           processes: int = 1, include_restricted: bool = False,
           progress: Callable | None = None) -> dict[str, Any]:
    """Write the documents (all, or ``refs`` with their attachments) as a bag at ``directory``,
    which must not exist or be an empty folder. Returns a summary, with ``left_out``: how
    many hidden documents were left out. Hidden documents (restricted now, or an attachment
    of one) are left out unless ``include_restricted``; naming one is an error.
    ``progress``: given twice the payload's bytes, a context manager yielding ``advance(n)``,
    advanced by each document's size as it is written, then by the whole payload once
    bagit has checksummed it."""
    target = os.path.abspath(os.fspath(directory))
    if os.path.lexists(target) and not (os.path.isdir(target) and not os.listdir(target)):
        raise InvalidInput(f"{directory}: exists and is not an empty folder")
    created = _make_parents(directory, os.path.dirname(target))
    conn = archive.conn
    snapshot = not conn.in_transaction  # one read snapshot: what is hidden, and what is written
    if snapshot:
        conn.execute("BEGIN")
    done = False
    try:
        summary = _export(archive, target, refs, organization=organization,
                          identifier=identifier, processes=processes,
                          include_restricted=include_restricted, progress=progress)
        done = True
        return summary
    finally:
        if snapshot and conn.in_transaction:
            conn.execute("ROLLBACK")  # a read: nothing to keep
        if not done:
            for folder in reversed(created):  # the folders made for a bag that failed
                with contextlib.suppress(OSError):
                    os.rmdir(folder)


def _make_parents(directory, parent_dir: str) -> list[str]:
    """Create the missing folders above the bag (``out/`` of ``out/transfer-42``), outermost
    first; return those created, for removal if the export fails. A path in the way that is
    not a folder is an error."""
    missing = []
    folder = parent_dir
    while not os.path.isdir(folder):
        if os.path.lexists(folder):
            raise InvalidInput(f"{directory}: {folder} is not a folder")
        missing.append(folder)
        folder = os.path.dirname(folder)
    created = []
    for folder in reversed(missing):
        try:
            os.mkdir(folder)
        except OSError as exc:
            for made in reversed(created):
                with contextlib.suppress(OSError):
                    os.rmdir(made)
            raise InvalidInput(f"{directory}: cannot create {folder}: {exc.strerror}") from None
        created.append(folder)
    return created


def _export(archive, target: str, refs: Iterable[str | int], *, organization: str | None,
            identifier: str | None, processes: int, include_restricted: bool,
            progress: Callable | None) -> dict[str, Any]:
    conn = archive.conn
    hidden = {row[0] for row in conn.execute(store.HIDDEN_DOCUMENTS)}
    ids, left_out = _selection(archive, refs, set() if include_restricted else hidden)
    counting = (progress(2 * _payload_bytes(conn, ids)) if progress is not None
                else contextlib.nullcontext(lambda n: None))
    with counting as advance:
        return _write_bag(archive, target, ids, hidden, organization=organization,
                          identifier=identifier, processes=processes,
                          include_restricted=include_restricted, left_out=left_out,
                          advance=advance)


def _payload_bytes(conn, ids: list[int]) -> int:
    total = 0
    for offset in range(0, len(ids), 500):
        part = ids[offset:offset + 500]
        total += conn.execute(f"SELECT coalesce(sum(size), 0) FROM documents WHERE id IN "
                              f"({', '.join('?' * len(part))})", part).fetchone()[0]
    return total


def _write_bag(archive, target: str, ids: list[int], hidden: set[int], *,
               organization: str | None, identifier: str | None, processes: int,
               include_restricted: bool, left_out: int,
               advance: Callable[[int], Any]) -> dict[str, Any]:
    conn = archive.conn
    seq, head = conn.execute(
        "SELECT coalesce(max(seq), 0), coalesce((SELECT hash FROM events ORDER BY seq DESC "
        "LIMIT 1), '') FROM events").fetchone()
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(target)}.partial-",
                            dir=os.path.dirname(target))
    try:
        taken: set[str] = set()
        records = []
        total = 0
        for doc_id in ids:
            record = _tag_record(archive, doc_id, hidden, include_restricted)
            name = payload_name(record["document"]["filename"], taken)
            record = {"payload": f"data/{name}", **record}
            with open(os.path.join(work, name), "wb") as out:
                for block in archive.raw(doc_id):
                    out.write(block)
            total += record["document"]["size"]
            records.append(record)
            advance(record["document"]["size"])
        bag_info = {
            "Source-Organization": organization or "unknown",
            "Bagging-Date": timeutil.now().strftime("%Y-%m-%d"),
            "External-Identifier": identifier or f"urn:uuid:{uuid.uuid4()}",
            "Bag-Software-Agent": f"stet {__version__} (bagit.py {bagit.VERSION})",
            "Internal-Sender-Description":
                f"{len(records)} documents from the stet archive {os.path.basename(archive.path)}",
            "Stet-Event-Chain-Head": f"{seq} {head}".strip(),
        }
        bag = bagit.make_bag(work, bag_info, processes=processes, checksums=list(CHECKSUMS))
        advance(total)
        with open(os.path.join(work, TAG_FILE), "w", encoding="utf-8", newline="\n") as tag:
            for record in records:
                tag.write(json.dumps(record, ensure_ascii=False, sort_keys=True) + "\n")
        bag.save()  # the tag manifests again, now covering the stet tag file
        if os.path.isdir(target):
            os.rmdir(target)
        os.rename(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return {"path": target, "documents": len(records), "bytes": total,
            "payload": [record["payload"] for record in records],
            "external_identifier": bag_info["External-Identifier"], "left_out": left_out}


def _selection(archive, refs: Iterable[str | int], hidden: set[int]) -> tuple[list[int], int]:
    """All documents, or the given ones and (recursively) their attachments, in id order,
    without the ``hidden`` ones; and how many hidden ones were left out. Naming a hidden
    document is an error."""
    conn = archive.conn
    refs = list(refs)
    if not refs:
        every = [row[0] for row in conn.execute("SELECT id FROM documents ORDER BY id")]
        kept = [doc_id for doc_id in every if doc_id not in hidden]
        return kept, len(every) - len(kept)
    named = [archive.resolve(ref) for ref in refs]
    for doc_id in named:
        if doc_id in hidden:
            raise InvalidInput(f"document {doc_id} is restricted: give "
                               f"{arg('include_restricted')} to export it")
    chosen = set(named)
    frontier = set(chosen)
    while frontier:
        marks = ",".join("?" * len(frontier))
        children = {row[0] for row in conn.execute(
            f"SELECT id FROM documents WHERE parent IN ({marks})", tuple(frontier))}
        frontier = children - chosen
        chosen |= children
    kept = sorted(chosen - hidden)
    return kept, len(chosen) - len(kept)


#: A document's row as ingested (the ``documents`` table never changes).
_AS_INGESTED = ("id", "sha256", "title", "filename", "media_type", "size", "source",
                "restricted", "ingested_by", "ingested_at", "parent", "supersedes")


def _restricted_submission(event: dict[str, Any]) -> bool:
    """An event recording a restricted submission of bytes already archived (a public
    document's ``ingest-duplicate`` asked to be restricted): what it records (path, source,
    submitter, bag) stays private like the submission."""
    return event["action"] == "ingest-duplicate" and bool(event["details"].get("restricted"))


def _tag_record(archive, doc_id: int, hidden: set[int],
                include_restricted: bool) -> dict[str, Any]:
    """One document's line of :data:`TAG_FILE`: its row as ingested (``document``), its
    current title, source and restriction from the chain (``state``; ``hidden`` when it is
    restricted or an attachment of a restricted document), its text and its events."""
    row = archive.conn.execute(
        f"SELECT {', '.join('d.' + c for c in _AS_INGESTED)}, s.title, s.source, s.restricted, "
        "t.sha256, t.length, t.extractor, t.extractor_version, t.encoding, t.warning "
        "FROM documents d JOIN document_state s ON s.document = d.id "
        "LEFT JOIN texts t ON t.document = d.id WHERE d.id = ?", (doc_id,)).fetchone()
    document = dict(zip(_AS_INGESTED, row))
    document["restricted"] = bool(document["restricted"])
    title, source, restricted, *text = row[len(_AS_INGESTED):]
    events = list(archive.log(doc_id))
    if not include_restricted:
        events = [event for event in events if not _restricted_submission(event)]
    return {
        "document": document,
        "state": {"title": title, "source": source, "restricted": bool(restricted),
                  "hidden": doc_id in hidden},
        "text": {
            **dict(zip(("sha256", "length", "extractor", "extractor_version", "encoding",
                        "warning"), text)),
            "text": archive.text(doc_id),
        },
        "events": events,
    }
