"""Workbench accounts and tokens: each change an event, passwords and tokens kept only as
hashes, never logged, never published; verify holds the rows to their events."""

import json
import sqlite3
from datetime import timedelta

import pytest

from stet import Archive, accounts, timeutil
from stet.accounts import allows, authenticate_token, check_password
from stet.store import _append_only

PASSWORD = "correct horse battery"


@pytest.fixture
def people(run, tmp_path, db_path):
    """ana (annotator, added by boss) and xerxes7 (editor), through the command line; a public
    document beside them."""
    (tmp_path / "a.txt").write_text("Article 1. All human beings are born free.\n")
    assert run("ingest", tmp_path / "a.txt").exit_code == 0
    result = run("user", "add", "ana", "--role", "annotator", "--by", "boss",
                 input=PASSWORD + "\nsecond line ignored\n")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("user ana: added, role annotator (event 2)")
    assert run("user", "add", "xerxes7", "--role", "editor", input="another password\n").exit_code == 0
    return db_path


def events(db_path, action=None):
    conn = sqlite3.connect(db_path)
    try:
        sql = "SELECT seq, actor, action, subject, document, details FROM events"
        rows = conn.execute(sql + (" WHERE action = ?" if action else "") + " ORDER BY seq",
                            (action,) if action else ()).fetchall()
        return [dict(zip(("seq", "actor", "action", "subject", "document", "details"), r))
                for r in rows]
    finally:
        conn.close()


def test_roles_are_ordered():
    assert allows("archivist", "reader") and allows("editor", "annotator")
    assert allows("annotator", "annotator")
    assert not allows("annotator", "editor") and not allows("reader", "annotator")
    assert not allows(None, "reader") and not allows("root", "reader")
    with pytest.raises(ValueError):
        allows("archivist", "root")


def test_add_list_role_disable_through_the_cli(people, run):
    listed = json.loads(run("user", "list", "--json").output)
    assert [(u["name"], u["role"], u["disabled"]) for u in listed] == [
        ("ana", "annotator", False), ("xerxes7", "editor", False)]
    assert set(listed[0]) == {"id", "name", "role", "disabled", "created", "created_by"}
    assert listed[0]["created_by"] == "boss"
    table = run("user", "list").output.splitlines()
    assert table[0].split() == ["name", "role", "disabled", "created"]
    assert run("user", "role", "ana", "editor").output == "user ana: role editor (event 4)\n"
    assert run("user", "disable", "xerxes7").output == "user xerxes7: disabled (event 5)\n"
    listed = json.loads(run("user", "list", "--json").output)
    assert [(u["role"], u["disabled"]) for u in listed] == [("editor", False), ("editor", True)]
    assert run("user", "enable", "xerxes7").output == "user xerxes7: enabled (event 6)\n"
    user_events = [e for e in events(people) if e["action"].startswith("user-")]
    assert [(e["action"], e["subject"], e["document"]) for e in user_events] == [
        ("user-add", "user:ana", None), ("user-add", "user:xerxes7", None),
        ("user-role", "user:ana", None), ("user-disable", "user:xerxes7", None),
        ("user-enable", "user:xerxes7", None)]
    assert user_events[0]["actor"] == "boss" and user_events[1]["actor"] == "tester"
    assert json.loads(user_events[2]["details"]) == {
        "account": 1, "name": "ana", "role": "editor", "disabled": False}


def test_refusals(people, run):
    wrong = run("user", "add", "reza", "--role", "root", input=PASSWORD + "\n")
    assert wrong.exit_code == 2 and "'root' is not one of" in wrong.output
    assert run("user", "role", "ana", "god").exit_code == 2
    duplicate = run("user", "add", "ana", "--role", "reader", input=PASSWORD + "\n")
    assert (duplicate.exit_code, duplicate.output) == (1, "Error: user 'ana' exists already\n")
    short = run("user", "add", "reza", "--role", "reader", input="short\n")
    assert short.output == "Error: a password needs at least 8 characters\n"
    empty = run("user", "add", "reza", "--role", "reader", input="")
    assert empty.exit_code == 1
    bad = run("user", "add", "re za\x1b", "--role", "reader", input=PASSWORD + "\n")
    assert bad.exit_code == 1 and "is not a user name" in bad.output
    assert run("user", "role", "ana", "annotator").output == (
        "Error: user 'ana' has role annotator already\n")
    assert run("user", "disable", "nobody").output == "Error: no user 'nobody'\n"
    assert run("token", "revoke", "99").output == "Error: no token 99\n"
    assert run("token", "create", "ana", "--expires", "0").exit_code == 2
    assert len(events(people)) == 3  # nothing refused was written


def test_passwords_hashed_with_argon2(people):
    conn = sqlite3.connect(people)
    (stored,) = conn.execute("SELECT password_hash FROM accounts WHERE name = 'ana'").fetchone()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    with Archive(people) as archive:
        account = check_password(archive.conn, "ana", PASSWORD)
        assert (account["name"], account["role"]) == ("ana", "annotator")
        assert check_password(archive.conn, "ana", "wrong password") is None
        assert check_password(archive.conn, "nobody", PASSWORD) is None
        archive.disable_user("ana", by="boss")
        assert check_password(archive.conn, "ana", PASSWORD) is None
        archive.enable_user("ana", by="boss")
        assert check_password(archive.conn, "ana", PASSWORD)["name"] == "ana"


def test_tokens(people, run):
    created = run("token", "create", "ana", "--expires", "30", "--by", "boss")
    assert created.exit_code == 0
    token = created.stdout.strip()
    assert len(token) >= 43 and "\n" not in token
    assert created.stderr.startswith("token 1 for ana (expires ")
    assert "shown once" in created.stderr and token not in created.stderr
    with Archive(people) as archive:
        assert authenticate_token(archive.conn, token)["name"] == "ana"
        assert authenticate_token(archive.conn, token + "x") is None
        assert authenticate_token(archive.conn, "") is None
    listed = json.loads(run("token", "list", "ana", "--json").output)
    assert [(t["id"], t["account"], t["revoked"]) for t in listed] == [(1, "ana", False)]
    assert token not in run("token", "list", "--json").output
    event = events(people, "token-create")[0]
    assert (event["actor"], event["subject"]) == ("boss", "token:1")
    assert set(json.loads(event["details"])) == {"id", "account", "name", "expires"}
    assert run("token", "revoke", "1").output == f"token 1: revoked (event {event['seq'] + 1})\n"
    assert run("token", "revoke", "1").output == "Error: token 1 is revoked already\n"
    with Archive(people) as archive:
        assert authenticate_token(archive.conn, token) is None
    assert json.loads(run("token", "list", "--json").output)[0]["revoked"] is True


def test_token_expired_or_account_disabled(people):
    with Archive(people) as archive:
        with archive.write() as chain:
            old = accounts.create_token(archive.conn, chain, "xerxes7", by="boss",
                                        expires=timeutil.now() - timedelta(seconds=1))
        assert authenticate_token(archive.conn, old["token"]) is None
        fresh = archive.create_token("xerxes7", expires=1, by="boss")
        never = archive.create_token("ana", by="boss")
        assert never["expires"] is None
        assert authenticate_token(archive.conn, fresh["token"])["name"] == "xerxes7"
        archive.disable_user("xerxes7", by="boss")
        assert authenticate_token(archive.conn, fresh["token"]) is None
        assert authenticate_token(archive.conn, never["token"])["name"] == "ana"
        with pytest.raises(Exception, match="user 'xerxes7' is disabled"):
            archive.create_token("xerxes7", by="boss")
        assert archive.verify() == []


def test_no_secret_in_log_events_or_snapshot(people, run, tmp_path):
    token = run("token", "create", "ana").stdout.strip()
    conn = sqlite3.connect(people)
    hashes = [row[0] for row in conn.execute("SELECT password_hash FROM accounts")]
    digests = [row[0] for row in conn.execute("SELECT sha256 FROM tokens")]
    conn.close()
    secrets = [PASSWORD, "another password", token, *hashes, *digests]
    log = run("log", "--json").output
    assert "user-add" in log and "token-create" in log
    dumped = json.dumps(events(people))
    for secret in secrets:
        assert secret not in log and secret not in dumped
    out = tmp_path / "public.db"
    assert run("publish", out).exit_code == 0
    data = out.read_bytes()
    for value in [*secrets, "xerxes7", "boss"]:
        assert value.encode() not in data, value
    snapshot = sqlite3.connect(out)
    assert snapshot.execute("SELECT count(*) FROM events WHERE action LIKE 'user-%' "
                            "OR action LIKE 'token-%' OR subject LIKE 'user:%'").fetchone() == (0,)
    assert snapshot.execute("SELECT count(*) FROM accounts").fetchone() == (0,)
    assert snapshot.execute("SELECT count(*) FROM tokens").fetchone() == (0,)
    snapshot.close()
    assert run("verify", db=str(out)).exit_code == 0


def test_verify_holds_rows_to_their_events(people, run):
    run("token", "create", "ana", "--expires", "5")
    assert run("verify").exit_code == 0
    expires = json.loads(events(people, "token-create")[0]["details"])["expires"]
    conn = sqlite3.connect(people, isolation_level=None)
    for table in ("accounts", "tokens"):
        conn.execute(f"DROP TRIGGER {table}_no_update")
    conn.execute("UPDATE accounts SET created_by = 'mallory' WHERE name = 'ana'")
    conn.execute("UPDATE tokens SET expires = '9999-01-01T00:00:00.000000Z'")
    conn.execute("INSERT INTO accounts (name, password_hash, created, created_by) "
                 "VALUES ('ghost', '$argon2id$x', '2026-01-01T00:00:00.000000Z', 'mallory')")
    conn.executescript(_append_only("accounts") + _append_only("tokens"))
    conn.close()
    with Archive(people, readonly=True) as archive:
        found = archive.verify()
    assert found == [
        "account 1 ('ana'): created_by is 'mallory', event 2 (user-add) records 'boss'",
        "account 3 ('ghost'): no user-add event records it",
        f"token 1: expires is '9999-01-01T00:00:00.000000Z', event 4 (token-create) records {expires!r}"]
    with Archive(people, readonly=True) as archive:
        assert archive.users()[1]["disabled"] is True  # no event: fail safe


def test_database_refuses_update_and_delete(people, run):
    run("token", "create", "ana")
    conn = sqlite3.connect(people)
    for table, column in (("accounts", "password_hash"), ("tokens", "expires")):
        with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: UPDATE"):
            conn.execute(f"UPDATE {table} SET {column} = {column}")
        with pytest.raises(sqlite3.IntegrityError, match=f"{table} is append-only: DELETE"):
            conn.execute(f"DELETE FROM {table}")
    conn.close()
