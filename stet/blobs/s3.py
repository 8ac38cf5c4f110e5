"""An S3-compatible object store (AWS S3, Ceph's RADOS Gateway, MinIO, SeaweedFS) through
boto3, the AWS SDK: the client every S3 service is tested against, which reads endpoint and
credentials the standard way (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/config`` and ``~/.aws/credentials``, an
instance role), retries what S3 asks to be retried, and uploads large files in parts.

A location is ``s3://BUCKET/PREFIX``. Under it stet writes:

- ``objects/XX/SHA256``: raw bytes, content-addressed (``XX``: the hash's first two hex
  digits), each written with its SHA-256 for the server to check (``x-amz-checksum-sha256``)
  and confirmed by reading its size back;
- ``catalog/``: Litestream's replica of the archive file (:mod:`stet.replicate`);
- ``public/``, or wherever ``stet publish`` is given: public snapshots (:mod:`stet.remote`).

Against an endpoint other than AWS (``AWS_ENDPOINT_URL`` set) requests use path-style
addressing (``http://host/BUCKET/KEY``), which every S3-compatible server answers; on AWS,
boto3's own choice. Every failure is a :class:`StoreError` of one line naming the location.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterable, Iterator

from ..errors import InvalidInput, StetError
from ..hashing import CHUNK_SIZE

#: Parts of a large upload (larger for a file past PART_SIZE x 9,000: S3 takes at most
#: 10,000 parts), and how many go at once (memory: about twice PART_SIZE x PARALLEL).
PART_SIZE = 8 * CHUNK_SIZE
PARALLEL = 4

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_SHA = re.compile(r"[0-9a-f]{64}")


class StoreError(StetError):
    """The object store refused, or could not be reached."""


class ObjectChanged(StetError):
    """A file's bytes, read again to upload them, are not the ones hashed."""


@dataclass(frozen=True)
class Location:
    """``s3://BUCKET/PREFIX``: a bucket and a key prefix (no leading or trailing ``/``)."""

    bucket: str
    prefix: str = ""

    @classmethod
    def parse(cls, url: str) -> Location:
        if not isinstance(url, str) or not url.startswith("s3://"):
            raise InvalidInput(f"{url!r} is not an object store location: give s3://BUCKET/PREFIX")
        bucket, _, prefix = url[len("s3://"):].partition("/")
        prefix = prefix.strip("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise InvalidInput(f"{url!r}: {bucket!r} is not a bucket name (3 to 63 lower-case "
                               "letters, digits, dots and hyphens)")
        parts = prefix.split("/") if prefix else []
        if any(p in ("", ".", "..") for p in parts) or any(ord(c) < 32 or c == "\x7f"
                                                             for c in prefix):
            raise InvalidInput(f"{url!r}: the prefix may not hold empty, '.' or '..' parts, "
                               "nor control characters")
        return cls(bucket, prefix)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def child(self, name: str) -> Location:
        return Location(self.bucket, self.key(name.strip("/")))


def settings() -> dict[str, Any]:
    """What the standard configuration says (environment first, then the AWS files): the
    endpoint (None: AWS), region and keys; for a program that is not boto3 (Litestream)."""
    import boto3
    session = boto3.session.Session()
    creds = session.get_credentials()
    frozen = creds.get_frozen_credentials() if creds is not None else None
    endpoint = (os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
                or session._session.get_scoped_config().get("endpoint_url"))
    return {"endpoint": endpoint or None,
            "region": session.region_name or "us-east-1",
            "access_key": frozen.access_key if frozen else None,
            "secret_key": frozen.secret_key if frozen else None,
            "token": frozen.token if frozen else None}


_clients: dict[int, Any] = {}
_clients_lock = threading.Lock()


def client():
    """A boto3 S3 client, one per process (clients are thread-safe; creating one costs
    ~50 ms)."""
    pid = os.getpid()
    with _clients_lock:
        if pid not in _clients:
            import boto3
            from botocore.config import Config
            custom = bool(os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL"))
            config = Config(
                s3={"addressing_style": "path"} if custom else {},
                retries={"mode": "standard", "max_attempts": 5},
                max_pool_connections=32,
                connect_timeout=10, read_timeout=60,
                # checksums only where stet asks (SHA-256): some S3-compatible servers refuse
                # the CRC trailers newer SDKs add by default
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required")
            _clients[pid] = boto3.session.Session().client("s3", config=config)
        return _clients[pid]


def _fail(where: Any, exc: BaseException) -> StoreError:
    """One line for any boto3 failure."""
    from botocore.exceptions import ClientError, NoCredentialsError
    if isinstance(exc, NoCredentialsError):
        why = ("no credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, "
               "or configure ~/.aws/credentials)")
    elif isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        why = f"{error.get('Code', '?')}: {error.get('Message') or 'refused'}"
    else:
        why = " ".join(str(exc).split()) or type(exc).__name__
    return StoreError(f"object store {where}: {why}")


def _missing(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError
    return isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in (
        "404", "NoSuchKey", "NotFound")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


class Bucket:
    """Plain keys under a :class:`Location`: files, JSON records, listings."""

    def __init__(self, location: Location | str) -> None:
        self.location = location if isinstance(location, Location) else Location.parse(location)

    def __str__(self) -> str:
        return str(self.location)

    def _where(self, key: str) -> str:
        return f"s3://{self.location.bucket}/{key}"

    def put_bytes(self, name: str, data: bytes, *, content_type: str | None = None) -> None:
        key = self.location.key(name)
        extra = {"ContentType": content_type} if content_type else {}
        try:
            client().put_object(Bucket=self.location.bucket, Key=key, Body=data,
                                ChecksumSHA256=_b64(hashlib.sha256(data).digest()), **extra)
        except Exception as exc:
            raise _fail(self._where(key), exc) from None

    def get_bytes(self, name: str, *, limit: int = 1 << 20) -> bytes | None:
        """A small object's bytes (None when absent); more than ``limit`` bytes is an error."""
        key = self.location.key(name)
        try:
            answer = client().get_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:
            if _missing(exc):
                return None
            raise _fail(self._where(key), exc) from None
        body = answer["Body"]
        try:
            data = body.read(limit + 1)
        finally:
            body.close()
        if len(data) > limit:
            raise StoreError(f"object store {self._where(key)}: larger than {limit} bytes")
        return data

    def upload(self, name: str, path: str | os.PathLike) -> None:
        """A file, in parts when large (boto3's transfer manager)."""
        from boto3.s3.transfer import TransferConfig
        key = self.location.key(name)
        try:
            client().upload_file(os.fspath(path), self.location.bucket, key,
                                 Config=TransferConfig(multipart_chunksize=PART_SIZE,
                                                       max_concurrency=PARALLEL))
        except Exception as exc:
            raise _fail(self._where(key), exc) from None

    def download(self, name: str, path: str | os.PathLike) -> None:
        from boto3.s3.transfer import TransferConfig
        key = self.location.key(name)
        try:
            client().download_file(self.location.bucket, key, os.fspath(path),
                                   Config=TransferConfig(multipart_chunksize=PART_SIZE,
                                                         max_concurrency=PARALLEL))
        except Exception as exc:
            if _missing(exc):
                raise StoreError(f"object store {self._where(key)}: no such object") from None
            raise _fail(self._where(key), exc) from None

    def delete(self, name: str) -> None:
        self.delete_key(self.location.key(name))

    def delete_key(self, key: str) -> None:
        """Delete the object under the full ``key`` (absent: nothing to do)."""
        try:
            client().delete_object(Bucket=self.location.bucket, Key=key)
        except Exception as exc:
            raise _fail(self._where(key), exc) from None

    def list(self, under: str = "") -> Iterator[dict[str, Any]]:
        """Every object under ``under``: dicts of ``name`` (below this location), ``size``,
        ``modified`` (a datetime), page by page (flat memory)."""
        prefix = self.location.key(under) if under else (
            self.location.prefix + "/" if self.location.prefix else "")
        cut = len(self.location.prefix) + 1 if self.location.prefix else 0
        try:
            pages = client().get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    yield {"name": item["Key"][cut:], "size": item["Size"],
                           "modified": item["LastModified"]}
        except Exception as exc:
            raise _fail(self._where(prefix), exc) from None


class ObjectStore(Bucket):
    """Raw bytes as content-addressed objects: ``objects/XX/SHA256`` under the location."""

    @staticmethod
    def name(sha256: str) -> str:
        return f"objects/{sha256[:2]}/{sha256}"

    def key(self, sha256: str) -> str:
        """The object's full key in the bucket (what ``blob_objects.key`` records)."""
        return self.location.key(self.name(sha256))

    def put(self, sha256: str, data: bytes) -> None:
        """Write one object (``objects/XX/SHA256``); the server checks its SHA-256, and its
        size is read back."""
        self.put_named(self.name(sha256), sha256, data)

    def put_named(self, name: str, sha256: str, data: bytes) -> None:
        """Write ``data`` (whose SHA-256 is ``sha256``) under ``name``, checked and confirmed
        as :meth:`put` says."""
        key = self.location.key(name)
        try:
            client().put_object(Bucket=self.location.bucket, Key=key, Body=data,
                                ChecksumSHA256=_b64(bytes.fromhex(sha256)))
        except Exception as exc:
            raise _fail(self._where(key), exc) from None
        self._confirm(key, len(data))

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Write many objects at once (:data:`PARALLEL` requests in flight: one round trip
        each, but not one after another); every one confirmed before this returns."""
        items = list(items)
        if len(items) == 1:
            self.put(*items[0])
            return
        with ThreadPoolExecutor(PARALLEL * 2) as pool:
            for done in [pool.submit(self.put, sha, data) for sha, data in items]:
                done.result()

    def put_file(self, sha256: str, size: int, stream: BinaryIO) -> None:
        """Write a large file's object in parts of :data:`PART_SIZE` (at most
        :data:`PARALLEL` parts in memory), hashing as it reads: ObjectChanged (the upload
        abandoned, nothing left under the key) when the bytes are not those of ``sha256``."""
        key = self.key(sha256)
        bucket = self.location.bucket
        s3 = client()
        try:
            upload = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        except Exception as exc:
            raise _fail(self._where(key), exc) from None
        digest = hashlib.sha256()
        total = 0
        parts: list[dict[str, Any]] = []
        part_size = max(PART_SIZE, -(-size // (9000 * CHUNK_SIZE)) * CHUNK_SIZE)

        def send(number: int, data: bytes) -> dict[str, Any]:
            answer = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                                    Body=data, ContentMD5=_b64(hashlib.md5(data).digest()))
            return {"PartNumber": number, "ETag": answer["ETag"]}

        try:
            with ThreadPoolExecutor(PARALLEL) as pool:
                pending = []
                for number, data in enumerate(iter(lambda: stream.read(part_size), b""), 1):
                    digest.update(data)
                    total += len(data)
                    pending.append(pool.submit(send, number, data))
                    if len(pending) >= PARALLEL:
                        parts.append(pending.pop(0).result())
                parts.extend(done.result() for done in pending)
            if digest.hexdigest() != sha256 or total != size:
                raise ObjectChanged("file changed while it was being ingested")
            if not parts:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
                self.put(sha256, b"")
                return
            s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                         MultipartUpload={"Parts": parts})
        except BaseException as exc:
            try:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
            except Exception:  # noqa: S110 (the first failure is the one to report)
                pass
            if isinstance(exc, (StetError, KeyboardInterrupt, SystemExit)):
                raise
            raise _fail(self._where(key), exc) from None
        self._confirm(key, size)

    def _confirm(self, key: str, size: int) -> None:
        found = self.size_of(key)
        if found != size:
            raise StoreError(f"object store {self._where(key)}: written, but "
                             f"reads back as {found if found is not None else 'absent'} "
                             f"(not {size} bytes)")

    def size(self, sha256: str) -> int | None:
        """The size of the object ``objects/XX/SHA256``, or None when it is absent."""
        return self.size_of(self.key(sha256))

    def size_of(self, key: str) -> int | None:
        """The size of the object under the full ``key``, or None when it is absent."""
        try:
            return client().head_object(Bucket=self.location.bucket, Key=key)["ContentLength"]
        except Exception as exc:
            if _missing(exc):
                return None
            raise _fail(self._where(key), exc) from None

    def read(self, sha256: str) -> Iterator[bytes]:
        """A whole object's bytes (``objects/XX/SHA256``), as :meth:`read_range` streams them."""
        return self.read_range(self.key(sha256), 0, None)

    def read_range(self, key: str, offset: int, length: int | None) -> Iterator[bytes]:
        """``length`` bytes at ``offset`` of the object under the full ``key`` (None: to its
        end), streamed in pieces of at most CHUNK_SIZE; StoreError when it is absent."""
        if length == 0:
            return
        extra = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            extra["Range"] = f"bytes={offset}-{end}"
        try:
            answer = client().get_object(Bucket=self.location.bucket, Key=key, **extra)
        except Exception as exc:
            if _missing(exc):
                raise StoreError(f"object store {self._where(key)}: no such object") from None
            raise _fail(self._where(key), exc) from None
        body = answer["Body"]
        try:
            while True:
                try:
                    data = body.read(CHUNK_SIZE)
                except Exception as exc:
                    raise _fail(self._where(key), exc) from None
                if not data:
                    return
                yield data
        finally:
            body.close()

    def objects(self) -> Iterator[dict[str, Any]]:
        """Every object stet writes raw bytes to (``objects/`` and ``packs/``), in key order:
        :meth:`Bucket.list`'s dicts, with ``key`` (the full key)."""
        for under in ("objects/", "packs/"):
            for item in self.list(under):
                item["key"] = self.location.key(item["name"])
                yield item


def is_location(text: str | os.PathLike | None) -> bool:
    return isinstance(text, str) and text.startswith("s3://")
