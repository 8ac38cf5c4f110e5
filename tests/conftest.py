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
