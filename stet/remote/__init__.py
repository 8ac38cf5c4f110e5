"""Public read replicas: snapshots published to an object store, served from it anywhere.

``stet publish s3://BUCKET/PREFIX/public/`` (:func:`publish_remote`) makes the public snapshot
of the archive as ``stet serve`` does (in ``ARCHIVE-public/`` beside it: the one for the
archive's chain head, brought up to date from an earlier one where it can be, or built whole;
``--full`` builds it whole, in a folder of its own) and publishes it under the prefix in
content-addressed parts::

    parts/XX/SHA256             a part of a snapshot: :data:`PART` bytes of the file (the last
                                shorter), named by their SHA-256 (XX: its first two hex digits)
    snapshots/LENGTH-HEAD.json  a snapshot's manifest (LENGTH, HEAD: the archive's chain it
                                holds): its size, SHA-256 and parts, in order
    latest.json                 which manifest is the newest, with the file's SHA-256 and size

An update of a snapshot (rows appended to a copy of the earlier one) leaves most of its pages
as they were, so most of its parts are already under ``parts/``: only the others are uploaded
(``parts/`` is listed once to know which), each with its SHA-256 for the server to check and
its size read back. Then the manifest, and only then ``latest.json``: a reader never finds a
pointer to something missing. The :data:`KEEP` newest manifests stay (a replica may be
downloading the one the pointer named a moment ago); older ones are then deleted, and every
part no kept manifest lists. ``latest.json`` holds no location (its ``snapshot`` is a key
relative to the prefix) and a snapshot names neither the archive's file nor its object store
(:func:`stet.publish.public_details`): the public prefix says nothing of the private bucket.

``stet serve --from s3://BUCKET/PREFIX/public/`` (:class:`RemoteSite`) reads ``latest.json``
and the manifest it names, and assembles the snapshot in a local cache folder: a part the
snapshot it serves (or another in its cache) already holds is copied from there, the others
are downloaded; every part is checked against its SHA-256. It then checks the whole file's
SHA-256 and size against the pointer, runs ``stet verify`` on it (its own chain must end at
the head the pointer records, and its first event must be ``stet publish``'s), and serves it
as ``stet serve`` serves a snapshot (:class:`stet.serve.LiveSite`, whose generations, swaps
and releases it reuses): every ``check_every`` seconds and on SIGHUP it reads ``latest.json``
again, and when that names another snapshot, assembles, checks and swaps it in. A snapshot
that fails a check is refused (one line in the log) and the one served stays; so does it
while the store cannot be reached. A replica only reads, and only under the public prefix.
"""


from . import formats
from .formats import KEEP, PART, POINTER, read_pointer
from .publishing import publish_remote
from .replica import RemoteSite, check_snapshot, default_cache, serve_remote

__all__ = ["KEEP", "PART", "POINTER", "RemoteSite", "check_snapshot", "default_cache", "formats",
           "publish_remote", "read_pointer", "serve_remote"]
