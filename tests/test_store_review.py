"""The SQLite store after an adversarial review: text SQLite cannot encode, read-only stores, foreign and newer
databases, locks held by other processes, missing --db files and run-id prefixes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bastion.store.db as dbmod
from bastion.cli.main import app
from bastion.store import AttemptRecord, Store, StoreError

cli = CliRunner()
LOCKER: dict[str, object] = {"db": None, "con": None}


def _att(key: str, reply: str = "I can't help with that.", **kw: object) -> AttemptRecord:
    base = dict(key=key, seed_id=key, seed_text="[PLACEHOLDER-BEHAVIOUR]", category="S2", technique="direct",
                benign=False, prompt=[{"role": "user", "content": "[PLACEHOLDER-REQUEST]"}], reply=reply,
                success=False, refused=True, score=0.0)
    base.update(kw)
    return AttemptRecord(**base)  # type: ignore[arg-type]


def _store_with_run(path: Path, target: str = "guard") -> str:
    with Store(path) as st:
        rid = st.create_run(target, {"campaign": "test"}, 0, {"bastion": "test"})
        st.add_attempt(rid, _att("a|direct"))
        st.add_attempt(rid, _att("b|direct", reply="Sure, [REDACTED-HARMFUL-STEP]", success=True, refused=False,
                                 score=0.9))
        st.set_status(rid, "completed")
    return rid


def _tables(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return sorted(r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'"))
    finally:
        con.close()


# ---- python: targets used below ----------------------------------------------------------------------------
def surrogate_bot(messages):
    return "Sure, here is [REDACTED-HARMFUL-STEP] \ud83d and \ud800"


def locking_bot(messages):
    """Holds the store's write lock from its first call, as another process could."""
    if LOCKER["db"] is not None and LOCKER["con"] is None:
        con = sqlite3.connect(str(LOCKER["db"]), isolation_level=None, check_same_thread=False)
        con.execute("BEGIN IMMEDIATE")
        LOCKER["con"] = con
    return "I can't help with that."


# ---- 4. lone surrogates ----------------------------------------------------------------------------------------
def test_lone_surrogates_are_stored_as_replacement_characters(tmp_path):
    st = Store(tmp_path / "s.db")
    rid = st.create_run("python:app\udcff:f", {"note": "x\ud800"}, 0, {})
    st.add_attempt(rid, _att("k|direct", reply="step \ud83d end", seed_text="seed \udc00",
                             prompt=[{"role": "user", "content": "q \ud83d"}],
                             verdicts={"judges": {"g": {"reason": "r \ud800"}}}, error=None,
                             turns=[{"role": "user", "content": "q \ud83d", "meta": {"m": "\udfff"}},
                                    {"role": "assistant", "content": "pair \ud83d\ude00 ok"}]))
    st.set_status(rid, "failed", error="boom \ud800", summary={"first_error": "\ud800"})
    a = st.attempts(rid, with_turns=True)[0]
    assert a.reply == "step \ufffd end" and a.seed_text == "seed \ufffd"
    assert a.prompt == [{"role": "user", "content": "q \ufffd"}]
    assert a.verdicts == {"judges": {"g": {"reason": "r \ufffd"}}}
    assert a.turns[1]["content"] == "pair \U0001F600 ok"  # a surrogate pair becomes its character
    assert a.turns[0]["meta"] == {"m": "\udfff"}  # ASCII JSON (an escape), stored as it was
    run = st.get_run(rid)
    assert run.target == "python:app\ufffd:f" and run.error == "boom \ufffd" and run.config == {"note": "x\ud800"}
    assert st.attempts_sha256(rid)  # the stored text digests


def test_campaign_with_a_lone_surrogate_reply_completes(tmp_path):
    db = tmp_path / "c.db"
    res = cli.invoke(app, ["redteam", "--db", str(db), "--target", "python:tests.test_store_review:surrogate_bot",
                           "--limit", "3", "--benign-limit", "0", "--techniques", "direct", "--json"],
                     catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["status"] == "completed"
    with Store(db) as st:
        rid = st.list_runs()[0].id
        replies = [a.reply for a in st.attempts(rid)]
    assert len(replies) == 3 and all(r == "Sure, here is [REDACTED-HARMFUL-STEP] \ufffd and \ufffd" for r in replies)


# ---- 5. read-only stores, and reading while another process writes ------------------------------------------
def test_read_commands_do_not_wait_for_a_writer(tmp_path, monkeypatch):
    db = tmp_path / "b.db"
    rid = _store_with_run(db)
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.3)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing
    try:
        res = cli.invoke(app, ["runs", "list", "--db", str(db), "--json"])
        assert res.exit_code == 0, res.output
        assert [r["run_id"] for r in json.loads(res.stdout)] == [rid]
        res = cli.invoke(app, ["scorecard", rid, "--db", str(db), "--json"])
        assert res.exit_code in (0, 10, 11, 12) and json.loads(res.stdout)["run_id"] == rid, res.output
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_readonly_store_never_writes(tmp_path):
    db = tmp_path / "b.db"
    rid = _store_with_run(db)
    before = db.read_bytes()
    with Store(db, readonly=True) as st:
        assert st.get_run(rid).n_attempts == 2
        with pytest.raises(sqlite3.OperationalError):
            st.create_run("guard", {}, 0, {})
    assert db.read_bytes() == before
    assert not Path(str(db) + "-wal").exists() and not Path(str(db) + "-shm").exists()
    with pytest.raises(StoreError, match="no Bastion database"):
        Store(tmp_path / "none.db", readonly=True)
    assert not (tmp_path / "none.db").exists()


def _as_unprivileged(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run the CLI as a user who cannot write the archive (uid 65534 when the tests run as root)."""
    cmd = [sys.executable, "-c", "import sys; from bastion.cli.main import main; sys.argv[0] = 'bastion'; main()",
           *args]  # argv: ['-c', *args]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop privileges")
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              x for x in (os.environ.get("PYTHONPATH"), str(Path(__file__).resolve().parents[1])) if x)})


def test_archived_read_only_store_can_be_read_and_verified():
    base = Path(tempfile.mkdtemp(prefix="bastion-ro-"))  # outside pytest's private tmp dir: uid 65534 can enter
    arch = base / "archive"
    arch.mkdir()
    try:
        base.chmod(0o755)
        db = arch / "bastion.db"
        rid = _store_with_run(db)
        card = base / "scorecard.json"
        res = cli.invoke(app, ["scorecard", rid, "--db", str(db), "--json", "--out", str(card)])
        assert card.exists(), res.output
        card.chmod(0o644)
        db.chmod(0o444)
        arch.chmod(0o555)
        beside = sorted(p.name for p in arch.iterdir())
        r = _as_unprivileged(["runs", "list", "--db", str(db), "--json"], base)
        assert r.returncode == 0, r.stderr
        assert [x["run_id"] for x in json.loads(r.stdout)] == [rid]
        r = _as_unprivileged(["verify", str(card), "--db", str(db)], base)
        assert r.returncode == 0 and r.stdout.startswith("OK:"), r.stderr
        r = _as_unprivileged(["trend", "--db", str(db), "--json"], base)
        assert r.returncode == 0, r.stderr
        assert sorted(p.name for p in arch.iterdir()) == beside  # nothing written beside it
    finally:
        arch.chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


# ---- 6. foreign and newer databases ------------------------------------------------------------------------------
def _foreign(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs(id TEXT PRIMARY KEY, created_at TEXT)")
    con.execute("INSERT INTO runs VALUES ('r1', '2026-01-01')")
    con.commit()
    con.close()


@pytest.mark.parametrize("args", [["runs", "list"], ["runs", "show", "r1"], ["runs", "export", "r1"],
                                  ["scorecard", "latest"], ["trend"], ["report", "latest"],
                                  ["redteam", "--limit", "1", "--benign-limit", "0"]])
def test_foreign_database_is_refused_and_left_alone(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "foreign.db"
    _foreign(db)
    before = db.read_bytes()
    res = cli.invoke(app, [*args, "--db", str(db)])
    assert res.exit_code == 2, res.output
    assert "not a Bastion database" in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    assert _tables(db) == ["runs"] and db.read_bytes() == before
    assert not (tmp_path / "report.html").exists()


def test_newer_schema_and_missing_columns_are_refused(tmp_path):
    newer = tmp_path / "newer.db"
    _store_with_run(newer)
    con = sqlite3.connect(newer)
    con.execute("UPDATE meta SET value='7' WHERE key='schema_version'")
    con.commit()
    con.close()
    for readonly in (True, False):
        with pytest.raises(StoreError, match="schema version 7; this Bastion reads version 2: upgrade"):
            Store(newer, readonly=readonly)
    res = cli.invoke(app, ["runs", "list", "--db", str(newer)])
    assert res.exit_code == 2 and "schema version 7" in res.stderr and "Traceback" not in res.output

    lacking = tmp_path / "lacking.db"
    con = sqlite3.connect(lacking)
    con.executescript(dbmod._SCHEMA.replace("    tokens      TEXT,              -- JSON usage\n", ""))
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.commit()
    con.close()
    before = lacking.read_bytes()
    for readonly in (True, False):
        with pytest.raises(StoreError, match="table attempts lacks column"):
            Store(lacking, readonly=readonly)
    assert lacking.read_bytes() == before


def test_stores_written_by_this_schema_still_open(tmp_path):
    # a store as the current code creates it (and one whose creation stopped before the version was recorded)
    # opens read-only and read-write, with its digest unchanged
    p = tmp_path / "v1.db"
    rid = _store_with_run(p)
    with Store(p) as st:
        digest = st.attempts_sha256(rid)
    with Store(p, readonly=True) as st:
        assert st.attempts_sha256(rid) == digest
    con = sqlite3.connect(p)
    con.execute("DELETE FROM meta")
    con.commit()
    con.close()
    with Store(p) as st:
        assert st.attempts_sha256(rid) == digest
    con = sqlite3.connect(p)
    assert con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("2",)
    con.close()


# ---- 7. a lock held by another process ------------------------------------------------------------------------
def test_write_under_a_held_lock_is_a_store_error(tmp_path):
    db = tmp_path / "l.db"
    st = Store(db, timeout=0.2)
    rid = st.create_run("guard", {}, 0, {})
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="cannot store an attempt of run .* is locked by another process"):
            st.add_attempt(rid, _att("a|direct"))
        with pytest.raises(StoreError, match="cannot create the run"):
            st.create_run("guard", {}, 0, {})
    finally:
        other.execute("ROLLBACK")
        other.close()
    st.add_attempt(rid, _att("a|direct"))
    assert st.get_run(rid).n_attempts == 1


def test_campaign_under_a_held_lock_fails_in_one_line_and_resumes(tmp_path, monkeypatch):
    db = tmp_path / "lk.db"
    monkeypatch.setattr(dbmod, "BUSY_TIMEOUT_S", 0.3)
    LOCKER.update(db=db, con=None)
    args = ["--db", str(db), "--limit", "4", "--benign-limit", "0", "--techniques", "direct", "--concurrency", "1"]
    try:
        res = cli.invoke(app, ["redteam", "--target", "python:tests.test_store_review:locking_bot", *args])
        assert res.exit_code == 1, res.output
        assert "Traceback" not in res.output and len(res.stderr.strip().splitlines()) == 1
        assert "locked by another process" in res.stderr and "continue with: bastion redteam --resume" in res.stderr
        rid = res.stderr.split("--resume ")[1].split()[0]
    finally:
        con = LOCKER["con"]
        if con is not None:
            con.execute("ROLLBACK")  # type: ignore[attr-defined]
            con.close()  # type: ignore[attr-defined]
        LOCKER.update(db=None, con=None)
    res = cli.invoke(app, ["redteam", "--resume", rid, "--db", str(db), "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout.strip().splitlines()[-1])
    assert d["run_id"] == rid and d["status"] == "completed" and d["attempts"] == 4


# ---- 8. runs commands never create a database ---------------------------------------------------------------------
@pytest.mark.parametrize("args", [["runs", "list"], ["runs", "show", "latest"], ["runs", "export", "latest"]])
def test_runs_commands_need_an_existing_database(tmp_path, args):
    db = tmp_path / "typo.db"
    res = cli.invoke(app, [*args, "--db", str(db)])
    assert res.exit_code == 2 and "no Bastion database at" in res.stderr, res.output
    assert not db.exists()


# ---- 9. run-id prefixes are literal ------------------------------------------------------------------------------
def test_run_id_prefix_has_no_wildcards(tmp_path):
    db = tmp_path / "p.db"
    rid = _store_with_run(db)
    with Store(db) as st:
        assert st.get_run(rid[:10]).id == rid
        for bad in ("", " ", "_", "%", "2%", "_0"):
            with pytest.raises(KeyError):
                st.get_run(bad)
    res = cli.invoke(app, ["runs", "show", "", "--db", str(db)])
    assert res.exit_code == 2 and "empty run id" in res.stderr
    for args in (["scorecard", "%"], ["scorecard", ""], ["runs", "show", "_"]):
        res = cli.invoke(app, [*args, "--db", str(db)])
        assert res.exit_code == 2 and "Traceback" not in res.output, (args, res.output)
