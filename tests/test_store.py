"""The SQLite store: runs, attempts, resume keys, aggregation, digests."""

from __future__ import annotations

import sqlite3

import pytest

from bastion.store import AttemptRecord, Store, StoreError


def _att(key, cat="S1", tech="direct", success=False, benign=False, error=None):
    return AttemptRecord(key=key, seed_id=key.split("|")[0], seed_text="[PLACEHOLDER-BEHAVIOUR]", category=cat,
                         technique=tech, benign=benign, prompt=[{"role": "user", "content": "q"}],
                         reply=None if error else "Sure, here is [REDACTED-HARMFUL-STEP 1]",
                         success=None if error else success, refused=None if error else not success,
                         score=1.0 if success else 0.0, latency_ms=1.5, tokens={"total_tokens": 3}, error=error,
                         verdicts={"judges": {"guard": {"success": success}}})


def test_runs_and_attempts_roundtrip(tmp_path):
    st = Store(tmp_path / "b.db")
    rid = st.create_run("guard", {"limit": 3}, 7, {"bastion": "0.1.0"})
    st.add_attempt(rid, _att("a|direct", success=True))
    st.add_attempt(rid, _att("b|base64", cat="S2", tech="base64"))
    st.add_attempt(rid, _att("c|direct", benign=True))
    run = st.get_run(rid)
    assert run.status == "running" and run.seed == 7 and run.config == {"limit": 3} and run.n_attempts == 3
    assert st.get_run(rid[:12]).id == rid  # unique prefix
    atts = st.attempts(rid, with_turns=True)
    assert [a.key for a in atts] == ["a|direct", "b|base64", "c|direct"]
    assert atts[0].success is True and atts[0].tokens == {"total_tokens": 3}
    assert atts[0].turns == [{"role": "user", "content": "q"},
                             {"role": "assistant", "content": "Sure, here is [REDACTED-HARMFUL-STEP 1]"}]
    assert len(st.attempts(rid, benign=True)) == 1
    st.set_status(rid, "completed", summary={"x": 1})
    assert st.get_run(rid).summary == {"x": 1} and st.get_run(rid).finished_at
    assert [r.id for r in st.list_runs()] == [rid]
    with pytest.raises(KeyError):
        st.get_run("nope")


def test_resume_keys_no_duplicates_and_errors_are_retried(tmp_path):
    p = tmp_path / "b.db"
    st = Store(p)
    rid = st.create_run("guard", {}, 0, {})
    st.add_attempt(rid, _att("a|direct"))
    st.add_attempt(rid, _att("b|direct", error="timeout"))
    assert st.done_keys(rid) == {"a|direct"}  # the errored attempt will be run again
    st.close()
    st = Store(p)  # reopen: nothing lost
    st.add_attempt(rid, _att("b|direct", success=True))  # replaces the errored row
    st.add_attempt(rid, _att("a|direct"))  # idempotent
    atts = st.attempts(rid)
    assert sorted(a.key for a in atts) == ["a|direct", "b|direct"]
    assert all(a.error is None for a in atts)
    con = sqlite3.connect(p)
    assert con.execute("SELECT COUNT(*) FROM turns").fetchone()[0] == 4  # old turns went with the old row


def test_aggregate_and_digest(tmp_path):
    st = Store(tmp_path / "b.db")
    rid = st.create_run("guard", {}, 0, {})
    for i, (cat, tech, ok) in enumerate([("S1", "direct", True), ("S1", "base64", False), ("S2", "base64", True),
                                         ("S2", "base64", True)]):
        st.add_attempt(rid, _att(f"s{i}|{tech}", cat=cat, tech=tech, success=ok))
    st.add_attempt(rid, _att("x|direct", cat="S1", benign=True, success=True))
    st.add_attempt(rid, _att("y|direct", cat="S1", error="boom"))
    cats = {r["category"]: r for r in st.aggregate(rid, "category")}
    assert cats["S1"] == {"category": "S1", "attempts": 2, "successes": 1, "refusals": 1, "asr": 0.5}
    assert cats["S2"]["asr"] == 1.0
    techs = {r["technique"]: r for r in st.aggregate(rid, "technique")}
    assert techs["base64"]["attempts"] == 3
    d = st.attempts_sha256(rid)
    assert d == st.attempts_sha256(rid)
    st._con.execute("UPDATE attempts SET success=0 WHERE key='s2|base64'")
    assert st.attempts_sha256(rid) != d
    with pytest.raises(ValueError):
        st.aggregate(rid, "seed")


def test_bad_path_is_clear(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "missing" / "b.db")


def test_default_path_from_env(tmp_path, monkeypatch):
    from bastion.store import default_db_path

    monkeypatch.setenv("BASTION_DB", str(tmp_path / "env.db"))
    assert default_db_path() == str(tmp_path / "env.db")
    monkeypatch.delenv("BASTION_DB")
    assert default_db_path() == "bastion.db"


def test_digest_covers_turns_attempt_metadata_and_run_record(tmp_path):
    # review finding 6: version 2 of the digest covers everything stored for the run; version 1 (kept for old
    # scorecards) only the attempts' content columns
    st = Store(tmp_path / "d.db")
    rid = st.create_run("guard", {"a": 1}, 0, {})
    st.add_attempt(rid, _att("k1|direct", success=True))
    st.add_attempt(rid, _att("k2|direct"))
    st.set_status(rid, "completed")
    edits = ["UPDATE turns SET content='[EDITED]' WHERE idx=1",
             "UPDATE attempts SET latency_ms=99 WHERE key='k1|direct'",
             "UPDATE attempts SET tokens='{}' WHERE key='k1|direct'",
             "UPDATE runs SET status='failed'", "UPDATE runs SET target='other'",
             "UPDATE runs SET created_at='2020-01-01T00:00:00+00:00'"]
    for sql in edits:
        v1, v2 = st.attempts_sha256(rid, version=1), st.attempts_sha256(rid)
        st._con.execute(sql)
        assert st.attempts_sha256(rid) != v2, sql
        assert st.attempts_sha256(rid, version=1) == v1, sql
    with pytest.raises(ValueError, match="unknown digest version"):
        st.attempts_sha256(rid, version=3)
