"""BagIt (RFC 8493) out and in, with the Library of Congress ``bagit`` package, in three
modules:

- :mod:`~stet.bags.validate`: :func:`is_bag`, and :func:`open_bag`, which validates a bag
  completely before anything is ingested (:class:`ValidBag`, :class:`BagFile`);
- :mod:`~stet.bags.write`: :func:`export`, documents written out as a bag;
- :mod:`~stet.bags.tagfile`: the stet tag file (:data:`TAG_FILE`): each document's record
  written on export, and read back and checked on ingest.

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

from .write import CHECKSUMS, export, payload_name
from .tagfile import TAG_FILE
from .validate import BAGIT_PRIVATE, BagFile, ValidBag, is_bag, open_bag

__all__ = ["BAGIT_PRIVATE", "CHECKSUMS", "TAG_FILE", "BagFile", "ValidBag", "export", "is_bag",
           "open_bag", "payload_name"]
