"""The audit log: what is recorded, the hash chain, and `bastion audit verify`."""

from __future__ import annotations

import json
import sqlite3

import httpx
import pytest
import typer
from typer.testing import CliRunner

from bastion.cli import gateway_cmds
from bastion.gateway.audit import AuditLog, content_hash, verify
from tests.test_gateway_support import HARM, chat, gateway_fixture  # noqa: F401


def _cli() -> typer.Typer:
    app = typer.Typer()
    gateway_cmds.register(app)
    return app


def _log(path, n=5, **kw) -> AuditLog:
    log = AuditLog(path, **kw)
    for i in range(n):
        log.record(request_id=f"r{i}", key_id="k", rail="input", action="allow", categories=[],
                   verdicts=[{"score": 0.01 * i}], latency_ms=1.5, content=f"text {i}")
    log.flush()
    return log


def _tamper(path, sql: str) -> None:
    con = sqlite3.connect(path)
    con.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;" + sql)
    con.commit()
    con.close()


def test_gateway_records_decisions(gateway):
    g = gateway("Fine answer.")
    with httpx.Client(base_url=g.url) as c:
        c.post("/v1/chat/completions", json=chat("hello"))
        c.post("/v1/chat/completions", json=chat(f"tell me {HARM}"))
        c.post("/v1/chat/completions", json=chat("hello", stream=True))
    g.gw.audit.flush()
    con = sqlite3.connect(g.audit_path)
    rows = con.execute("SELECT rail, action, categories, key_id, latency_ms, content_sha256, content, verdicts "
                       "FROM audit ORDER BY seq").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("input", "allow"), ("output", "allow"), ("input", "block"),
                                            ("input", "allow"), ("output", "allow")]
    assert json.loads(rows[2][2]) == ["S1"]
    assert all(r[6] is None for r in rows)  # content is not stored by default
    assert rows[1][5] == content_hash("Fine answer.") and rows[4][5] == content_hash("Fine answer.")
    assert rows[0][4] is not None and json.loads(rows[2][7])[0]["unsafe"] is True
    assert verify(g.audit_path).ok


def test_content_stored_only_when_enabled(gateway):
    g = gateway("Fine answer.", audit_content=True)
    httpx.post(g.url + "/v1/chat/completions", json=chat("hello"))
    g.gw.audit.flush()
    contents = [r[0] for r in sqlite3.connect(g.audit_path).execute("SELECT content FROM audit ORDER BY seq")]
    assert contents[1] == "Fine answer." and "hello" in contents[0]


def test_log_is_append_only(tmp_path):
    p = tmp_path / "a.db"
    _log(p).close()
    con = sqlite3.connect(p)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit SET action = 'block' WHERE seq = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("DELETE FROM audit WHERE seq = 2")


def test_chain_survives_restart(tmp_path):
    p = tmp_path / "a.db"
    _log(p, 3).close()
    _log(p, 3).close()
    res = verify(p)
    assert res.ok and res.rows == 6


@pytest.mark.parametrize("sql, expect", [
    ("UPDATE audit SET action = 'block', categories = '[\"S1\"]' WHERE seq = 3;", "row 3: content does not match"),
    ("DELETE FROM audit WHERE seq = 3;", "row 4: expected row 3"),
    ("DELETE FROM audit WHERE seq = 5;", "rows deleted at the end"),
    ("UPDATE audit SET seq = 10 WHERE seq = 5; UPDATE audit_head SET seq = 10;", "row 10: content does not match"),
])
def test_verify_detects_edits_and_deletions(tmp_path, sql, expect):
    p = tmp_path / "a.db"
    _log(p).close()
    assert verify(p).ok
    _tamper(p, sql)
    res = verify(p)
    assert not res.ok
    assert any(expect in prob for prob in res.problems), res.problems


def test_hmac_key_stops_chain_rewrite(tmp_path):
    p = tmp_path / "a.db"
    _log(p, key=b"secret").close()
    assert verify(p, key=b"secret").ok
    assert not verify(p).ok  # without the key the hashes do not match


def test_cli_audit_verify_and_show(tmp_path):
    p = tmp_path / "a.db"
    _log(p).close()
    runner = CliRunner()
    r = runner.invoke(_cli(), ["audit", "verify", str(p)])
    assert r.exit_code == 0 and "OK: 5 rows" in r.output
    r = runner.invoke(_cli(), ["audit", "show", str(p), "--limit", "2"])
    assert r.exit_code == 0 and "input" in r.output
    _tamper(p, "UPDATE audit SET latency_ms = 0 WHERE seq = 2;")
    r = runner.invoke(_cli(), ["audit", "verify", str(p), "--json"])
    assert r.exit_code == 1 and json.loads(r.output)["ok"] is False
    r = runner.invoke(_cli(), ["audit", "verify", str(tmp_path / "missing.db")])
    assert r.exit_code == 2
