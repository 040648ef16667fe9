"""The gateway's audit log: an append-only SQLite table with a hash chain.

Each row stores `prev_hash` and `hash = H(prev_hash || canonical JSON of the row)`, where H is SHA-256, or
HMAC-SHA-256 when a key is given (BASTION_AUDIT_KEY), which also stops a full rewrite of the chain.
Rows are numbered 1..n without gaps and a one-row `audit_head` table holds the last seq and hash, so
`verify` detects an edited row, a deleted row (in the middle or at the end) and a reordered row.
Triggers refuse UPDATE and DELETE; the chain is what catches someone who drops them.

Writes go through a background thread (one writer per database file), so the event loop never waits on disk.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("bastion.gateway.audit")

GENESIS = "0" * 64
_WRITE_ATTEMPTS = 5
FIELDS = ("seq", "ts", "request_id", "key_id", "rail", "action", "categories", "verdicts", "latency_ms",
          "policy", "content_sha256", "content")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    request_id TEXT NOT NULL,
    key_id TEXT,
    rail TEXT NOT NULL,
    action TEXT NOT NULL,
    categories TEXT NOT NULL,
    verdicts TEXT NOT NULL,
    latency_ms REAL,
    policy TEXT,
    content_sha256 TEXT,
    content TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""


def content_hash(content: str) -> str:
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def _row_hash(prev: str, row: dict[str, Any], key: bytes | None) -> str:
    payload = prev.encode() + json.dumps({k: row.get(k) for k in FIELDS}, sort_keys=True,
                                         ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    if key:
        return hmac.new(key, payload, hashlib.sha256).hexdigest()
    return hashlib.sha256(payload).hexdigest()


def _connect(path: str | Path) -> sqlite3.Connection:
    con = sqlite3.connect(str(path), timeout=30, check_same_thread=False)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(_SCHEMA)
    return con


class AuditLog:
    """Append decisions to the log from any thread or coroutine without blocking."""

    def __init__(self, path: str | Path, store_content: bool = False, key: bytes | None = None) -> None:
        self.path = Path(path)
        self.store_content = store_content
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = _connect(self.path)
        last = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        con.close()
        self._seq, self._prev = (last[0], last[1]) if last else (0, GENESIS)
        self._q: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._errors = 0
        self._thread = threading.Thread(target=self._run, name="bastion-audit", daemon=True)
        self._thread.start()

    def record(self, *, request_id: str, key_id: str | None, rail: str, action: str,
               categories: list[str] | tuple[str, ...], verdicts: list[dict[str, Any]], latency_ms: float | None,
               content: str, policy: str = "") -> None:
        self._q.put({
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
            "request_id": request_id, "key_id": key_id, "rail": rail, "action": action,
            "categories": json.dumps(list(categories)),
            "verdicts": json.dumps(verdicts, sort_keys=True, ensure_ascii=False),
            "latency_ms": None if latency_ms is None else round(float(latency_ms), 3),
            "policy": policy,
            "content_sha256": content_hash(content),
            "content": content if self.store_content else None,
        })

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until everything recorded so far is committed."""
        done = threading.Event()
        self._q.put({"__flush__": done})
        done.wait(timeout)

    def close(self) -> None:
        self.flush()
        self._q.put(None)
        self._thread.join(timeout=10)

    @property
    def errors(self) -> int:
        return self._errors

    def _run(self) -> None:
        con = _connect(self.path)
        try:
            while True:
                first = self._q.get()
                if first is None:
                    return
                batch = [first]
                while len(batch) < 512:
                    try:
                        nxt = self._q.get_nowait()
                    except queue.Empty:
                        break
                    batch.append(nxt)
                stop = None in batch
                events = [b for b in batch if b is not None and "__flush__" not in b]
                if events:
                    self._write(con, events)
                for b in batch:
                    if b is not None and "__flush__" in b:
                        b["__flush__"].set()
                if stop:
                    return
        finally:
            con.close()

    def _write(self, con: sqlite3.Connection, events: list[dict[str, Any]]) -> None:
        # The chain's last row is read inside the write transaction (BEGIN IMMEDIATE takes the write lock), so a
        # second writer on the same file appends after it instead of colliding: no decision is dropped.
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    last = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
                    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
                    rows = []
                    for ev in events:
                        seq += 1
                        row = {**ev, "seq": seq}
                        h = _row_hash(prev, row, self.key)
                        rows.append((*(row[k] for k in FIELDS), prev, h))
                        prev = h
                    con.executemany(f"INSERT INTO audit ({', '.join(FIELDS)}, prev_hash, hash) "
                                    f"VALUES ({', '.join('?' * (len(FIELDS) + 2))})", rows)
                    con.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
                                "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash", (seq, prev))
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                self._seq, self._prev = seq, prev
                return
            except sqlite3.Error as e:
                if attempt == _WRITE_ATTEMPTS - 1 or not isinstance(e, (sqlite3.IntegrityError,
                                                                         sqlite3.OperationalError)):
                    self._failed(events, e)
                    return
                time.sleep(0.05 * (attempt + 1))

    def _failed(self, events: list[dict[str, Any]], e: Exception) -> None:
        self._errors += len(events)
        log.error("audit log %s: %d decision(s) not written (%s: %s)", self.path, len(events), type(e).__name__, e)


@dataclass
class VerifyResult:
    ok: bool
    rows: int
    problems: list[str] = field(default_factory=list)


def verify(path: str | Path, key: bytes | None = None, max_problems: int = 50) -> VerifyResult:
    """Check the chain: contiguous seq, prev_hash links, recomputed hashes, and the stored head."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such audit log")
    con = sqlite3.connect(f"file:{p}?mode=ro", uri=True)
    problems: list[str] = []
    n = 0
    try:
        cur = con.execute(f"SELECT {', '.join(FIELDS)}, prev_hash, hash FROM audit ORDER BY seq")
        expected_seq, prev = 1, GENESIS
        for rec in cur:
            n += 1
            row = dict(zip(FIELDS, rec[: len(FIELDS)], strict=False))
            stored_prev, stored_hash = rec[len(FIELDS)], rec[len(FIELDS) + 1]
            seq = row["seq"]
            if seq != expected_seq:
                problems.append(f"row {seq}: expected row {expected_seq} (rows {expected_seq}..{seq - 1} deleted)")
            if stored_prev != prev:
                problems.append(f"row {seq}: prev_hash does not match the previous row (a row was deleted or edited)")
            if _row_hash(stored_prev, row, key) != stored_hash:
                problems.append(f"row {seq}: content does not match its hash (row edited)")
            expected_seq, prev = seq + 1, stored_hash
        try:
            head = con.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        except sqlite3.Error:
            head = None
        if head is None:
            if n:
                problems.append("head record missing (log truncated or tampered)")
        else:
            if head[0] != expected_seq - 1:
                problems.append(f"head says {head[0]} rows but the log ends at row {expected_seq - 1} "
                                "(rows deleted at the end)")
            elif head[1] != prev:
                problems.append("head hash does not match the last row")
    except sqlite3.DatabaseError as e:
        problems.append(f"cannot read the log: {e}")
    finally:
        con.close()
    return VerifyResult(ok=not problems, rows=n, problems=problems[:max_problems])
