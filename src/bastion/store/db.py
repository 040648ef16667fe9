"""SQLite store for red-team runs, attempts and turns (stdlib sqlite3, WAL, one commit per attempt).

Every finished attempt is committed as soon as it is written, so a crash or Ctrl-C loses nothing; attempts
have a deterministic `key` within their run, which makes `--resume` skip the ones already stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bastion.jsonl import utf8_safe

DEFAULT_DB = "bastion.db"
# 2: attempts.tracked (seed-level Preparedness category). A version 1 store is read as it is and upgraded by the
# first new run or attempt (its attempts keep NULL there), so an older Bastion refuses it instead of misreading it.
SCHEMA_VERSION = 2
READABLE_VERSIONS = ("1", "2")
DIGEST_VERSION = 2  # of Store.attempts_sha256
BUSY_TIMEOUT_S = 30.0  # how long to wait for another process's lock before failing

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id          TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL,
    finished_at TEXT,
    target      TEXT NOT NULL,
    label       TEXT,              -- "pre" / "post" for a --guarded pair, else NULL
    paired_with TEXT,              -- the other run of a --guarded pair
    config      TEXT NOT NULL,     -- JSON
    seed        INTEGER NOT NULL,
    status      TEXT NOT NULL,     -- running | completed | failed | interrupted
    versions    TEXT NOT NULL,     -- JSON
    error       TEXT,
    summary     TEXT               -- JSON, the stats when the run finished
);
CREATE TABLE IF NOT EXISTS attempts (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id      TEXT NOT NULL REFERENCES runs(id),
    key         TEXT NOT NULL,
    seed_id     TEXT NOT NULL,
    seed_text   TEXT NOT NULL,
    category    TEXT NOT NULL,
    technique   TEXT NOT NULL,
    benign      INTEGER NOT NULL,
    prompt      TEXT NOT NULL,     -- JSON list of messages sent
    reply       TEXT,
    blocked_by  TEXT,
    verdicts    TEXT NOT NULL,     -- JSON: {judge name: judgement, "guard": guard verdicts}
    success     INTEGER,
    refused     INTEGER,
    score       REAL,
    latency_ms  REAL,
    tokens      TEXT,              -- JSON usage
    error       TEXT,
    created_at  TEXT NOT NULL,
    tracked     TEXT,              -- the Preparedness tracked category its seed feeds ("": none); NULL: not
                                   -- recorded (a run stored before seed-level tracked categories)
    UNIQUE (run_id, key)
);
CREATE INDEX IF NOT EXISTS attempts_run ON attempts(run_id);
CREATE TABLE IF NOT EXISTS turns (
    attempt_id  INTEGER NOT NULL REFERENCES attempts(id) ON DELETE CASCADE,
    idx         INTEGER NOT NULL,
    role        TEXT NOT NULL,
    content     TEXT NOT NULL,
    meta        TEXT,
    PRIMARY KEY (attempt_id, idx)
);
"""


# The columns this code reads and writes: a database whose tables lack one is refused at open.
_COLUMNS = {
    "runs": ("id", "created_at", "finished_at", "target", "label", "paired_with", "config", "seed", "status",
             "versions", "error", "summary"),
    "attempts": ("id", "run_id", "key", "seed_id", "seed_text", "category", "technique", "benign", "prompt",
                 "reply", "blocked_by", "verdicts", "success", "refused", "score", "latency_ms", "tokens", "error",
                 "created_at"),
    "turns": ("attempt_id", "idx", "role", "content", "meta"),
}


def default_db_path() -> str:
    """`$BASTION_DB`, else `./bastion.db`."""
    return os.environ.get("BASTION_DB") or DEFAULT_DB


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]


@dataclass
class RunRecord:
    id: str
    created_at: str
    target: str
    config: dict[str, Any]
    seed: int
    status: str
    versions: dict[str, Any]
    finished_at: str | None = None
    label: str | None = None
    paired_with: str | None = None
    error: str | None = None
    summary: dict[str, Any] | None = None
    n_attempts: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AttemptRecord:
    """One attack attempt (or one benign prompt) and its outcome."""

    key: str
    seed_id: str
    seed_text: str
    category: str
    technique: str
    benign: bool
    prompt: list[dict[str, Any]]
    reply: str | None = None
    blocked_by: str | None = None
    verdicts: dict[str, Any] = field(default_factory=dict)
    success: bool | None = None
    refused: bool | None = None
    score: float | None = None
    latency_ms: float | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    tracked: str | None = None  # Preparedness tracked category of the seed ("": none; None: not recorded)
    turns: list[dict[str, Any]] = field(default_factory=list)  # [{role, content, meta?}]; default: prompt + reply
    run_id: str = ""
    id: int | None = None
    created_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class StoreError(RuntimeError):
    pass


class Store:
    """Access to a Bastion SQLite database. Safe to share between threads (one connection, one lock)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, readonly: bool = False,
                 timeout: float | None = None) -> None:
        """Open (read-write: create when missing) or, with `readonly`, only read an existing store.

        A read-only store never changes the store's contents and does not wait for a writer's lock on the
        schema. A file this user can write is opened normally with every change refused: on close SQLite may fold
        a write-ahead log left by a killed writer into the main file (same contents, different bytes). A file it
        cannot write is opened read-only, as immutable when no -wal/-shm lies beside it or its directory is
        read-only (where SQLite cannot create the WAL index), so an archived copy is read as it is. A file that
        is not a Bastion store, or one of a newer schema, is refused with a StoreError and left untouched.
        `timeout`: seconds to wait for another process's lock (default BUSY_TIMEOUT_S)."""
        timeout = BUSY_TIMEOUT_S if timeout is None else timeout
        self.timeout = timeout
        self.path = str(path if path is not None else default_db_path())
        self.readonly = readonly and self.path != ":memory:"
        self._needs_upgrade = False  # set by _check_schema for a version 1 store opened to write
        if self.path != ":memory:":
            p = Path(self.path).expanduser()
            parent = p.resolve().parent
            if not parent.is_dir():
                raise StoreError(f"database directory does not exist: {parent}")
            if self.readonly and not p.is_file():
                raise StoreError(f"no Bastion database at {self.path}" if not p.exists()
                                 else f"{self.path} is not a database file")
        try:
            if self.readonly:
                self._con = self._connect_readonly(timeout)
            else:
                self._con = sqlite3.connect(self.path, timeout=timeout, check_same_thread=False,
                                            isolation_level=None)
                self._con.row_factory = sqlite3.Row
            fresh = self._check_schema()
            if not self.readonly:
                self._con.execute("PRAGMA journal_mode=WAL")
                self._con.execute("PRAGMA synchronous=NORMAL")
                if fresh:
                    self._con.executescript(_SCHEMA)
                    self._con.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)",
                                      (str(SCHEMA_VERSION),))
            self._con.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            if getattr(self, "_con", None) is not None:
                self._con.close()
            raise StoreError(f"cannot open database {self.path}: {e}") from e
        except StoreError:
            if getattr(self, "_con", None) is not None:
                self._con.close()
            raise
        self._lock = threading.RLock()

    def _connect_readonly(self, timeout: float) -> sqlite3.Connection:
        p = Path(self.path).expanduser()

        def connect(target: str, uri: bool = False) -> sqlite3.Connection:
            con = sqlite3.connect(target, uri=uri, timeout=timeout, check_same_thread=False, isolation_level=None)
            con.row_factory = sqlite3.Row
            return con

        if os.access(p, os.W_OK) and os.access(p.resolve().parent, os.W_OK):
            # A writable file: a normal connection that refuses every change (it still tidies its WAL files
            # away on close, which a mode=ro connection cannot).
            con = connect(str(p))
            con.execute("PRAGMA query_only=ON")
            return con
        uri = p.resolve().as_uri()
        if not any(Path(f"{p}{x}").exists() for x in ("-wal", "-shm", "-journal")):
            # No connection has the store open and no change is pending. A mode=ro connection would create -wal
            # and -shm files (with the database's r--r--r-- bits, owned by this user) that it cannot remove, and
            # the next writer would fail on them: read it as immutable, creating nothing (a writer that starts
            # during this read is not seen; this user cannot write the file anyway).
            return connect(uri + "?mode=ro&immutable=1", uri=True)
        con = connect(uri + "?mode=ro", uri=True)
        try:
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        except sqlite3.OperationalError as e:
            con.close()
            if "locked" in str(e) or "busy" in str(e):
                raise
            # A WAL database in a directory this user cannot write: SQLite cannot create its -shm index.
            # Nothing can be writing there either, so it is read as immutable, unless a write-ahead log holds
            # changes not yet in the main file (immutable would not see them).
            wal = Path(f"{p}-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise StoreError(f"cannot read {self.path} read-only: {e}; its write-ahead log {wal} holds "
                                 "changes that only a writable copy can apply (copy the database together "
                                 "with its -wal file to a writable directory)") from e
            con = connect(uri + "?mode=ro&immutable=1", uri=True)
        return con

    def _check_schema(self) -> bool:
        """Check that the file is a Bastion store this code can read; True when it is empty (a new store).
        Raises StoreError, before anything is written, for a foreign or newer database."""
        tables = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            if self.readonly:
                raise StoreError(f"{self.path} is not a Bastion database (it is empty); run `bastion redteam` "
                                 "first, or pass --db")
            return True
        if "meta" not in tables:
            raise StoreError(f"{self.path} is not a Bastion database (it has tables "
                             f"{', '.join(sorted(tables)[:5])} but no Bastion schema version); pass another --db")
        try:
            row = self._con.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError:
            raise StoreError(f"{self.path} is not a Bastion database (its meta table is not Bastion's); "
                             "pass another --db") from None
        version = None if row is None else str(row[0])
        if version is not None and version not in READABLE_VERSIONS:
            newer = version.isdigit() and int(version) > SCHEMA_VERSION
            raise StoreError(f"{self.path} has store schema version {version}; this Bastion reads version "
                             f"{SCHEMA_VERSION}" + (": upgrade Bastion to read it" if newer else ""))
        for table, cols in _COLUMNS.items():
            have = {r[1] for r in self._con.execute(f"PRAGMA table_info({table})")}
            if not have:
                raise StoreError(f"{self.path} is not a usable Bastion database: table {table} is missing")
            missing = [c for c in cols if c not in have]
            if missing:
                raise StoreError(f"{self.path} is not a usable Bastion database: table {table} lacks column(s) "
                                 f"{', '.join(missing)}")
        # A version 1 store is upgraded by the first write that needs it (a new run or attempt), not by opening it:
        # a command that only reads, fails, or is refused (an older run's --resume) leaves it to the Bastion that
        # wrote it. One whose version was never recorded (its creation stopped) is brought up to date now.
        self._needs_upgrade = version != str(SCHEMA_VERSION) and not self.readonly
        if version is None and self._needs_upgrade:
            self._upgrade()
        return False

    def _ensure_current(self) -> None:
        """Upgrade a version 1 store before the first write that needs this version's schema."""
        if self._needs_upgrade:
            with self._lock, _writing(self.path, self.timeout, "upgrade the store to schema version 2"):
                if self._needs_upgrade:
                    self._upgrade()

    def _upgrade(self) -> None:
        """Bring a version 1 store (or one whose version was never recorded) to this version, in one transaction
        that re-reads the schema under the write lock (two processes may open the same old store at once)."""
        self._con.execute("BEGIN IMMEDIATE")
        try:
            have = {r[1] for r in self._con.execute("PRAGMA table_info(attempts)")}
            if "tracked" not in have:  # its attempts keep NULL: scored by the hazard mapping, digests unchanged
                self._con.execute("ALTER TABLE attempts ADD COLUMN tracked TEXT")
            self._con.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)",
                              (str(SCHEMA_VERSION),))
            self._con.execute("COMMIT")
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._needs_upgrade = False

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- runs ------------------------------------------------------------------------------------
    def create_run(self, target: str, config: dict[str, Any], seed: int, versions: dict[str, Any],
                   run_id: str | None = None, label: str | None = None) -> str:
        rid = run_id or new_run_id()
        self._ensure_current()
        with self._lock, _writing(self.path, self.timeout, "create the run"):
            self._con.execute(
                "INSERT INTO runs(id, created_at, target, label, config, seed, status, versions) "
                "VALUES (?, ?, ?, ?, ?, ?, 'running', ?)",
                (_text(rid), _now(), _text(target), _text(label), _text(json.dumps(config, sort_keys=True)),
                 int(seed), _text(json.dumps(versions, sort_keys=True))))
        return rid

    def pair_runs(self, a: str, b: str) -> None:
        with self._lock:
            self._con.execute("UPDATE runs SET paired_with=? WHERE id=?", (b, a))
            self._con.execute("UPDATE runs SET paired_with=? WHERE id=?", (a, b))

    def set_status(self, run_id: str, status: str, error: str | None = None,
                   summary: dict[str, Any] | None = None) -> None:
        finished = _now() if status != "running" else None
        with self._lock, _writing(self.path, self.timeout, f"record the status of run {run_id}"):
            self._con.execute(
                "UPDATE runs SET status=?, error=?, finished_at=?, summary=COALESCE(?, summary) WHERE id=?",
                (status, _text(error), finished, _text(json.dumps(summary)) if summary is not None else None,
                 run_id))

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id (a unique prefix is accepted). Raises KeyError when unknown or empty."""
        if not run_id or not run_id.strip():
            raise KeyError("empty run id: give a run id, a unique prefix of one, or `latest`")
        with self._lock:
            row = self._con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:  # a literal prefix (no LIKE wildcards)
                rows = self._con.execute("SELECT * FROM runs WHERE substr(id, 1, ?) = ? ORDER BY created_at",
                                         (len(run_id), run_id)).fetchall()
                if len(rows) == 1:
                    row = rows[0]
                elif len(rows) > 1:
                    raise KeyError(f"run id {run_id!r} is ambiguous ({len(rows)} runs match)")
            if row is None:
                raise KeyError(f"no run {run_id!r} in {self.path}")
            n = self._con.execute("SELECT COUNT(*) FROM attempts WHERE run_id=?", (row["id"],)).fetchone()[0]
        return self._run(row, n)

    def list_runs(self, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first, with their attempt counts."""
        q = ("SELECT r.*, (SELECT COUNT(*) FROM attempts a WHERE a.run_id=r.id) AS n FROM runs r "
             "ORDER BY r.created_at DESC, r.rowid DESC")
        if limit:
            q += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self._con.execute(q).fetchall()
        return [self._run(r, r["n"]) for r in rows]

    @staticmethod
    def _run(row: sqlite3.Row, n: int) -> RunRecord:
        return RunRecord(
            id=row["id"], created_at=row["created_at"], finished_at=row["finished_at"], target=row["target"],
            label=row["label"], paired_with=row["paired_with"], config=json.loads(row["config"]),
            seed=row["seed"], status=row["status"], versions=json.loads(row["versions"]), error=row["error"],
            summary=json.loads(row["summary"]) if row["summary"] else None, n_attempts=int(n))

    # ---- attempts --------------------------------------------------------------------------------
    def add_attempt(self, run_id: str, a: AttemptRecord) -> int:
        """Store (or replace, for a retried errored attempt) one attempt and its turns; committed at once."""
        turns = a.turns or [*a.prompt, *([{"role": "assistant", "content": a.reply}] if a.reply is not None else [])]
        self._ensure_current()
        with self._lock, _writing(self.path, self.timeout, f"store an attempt of run {run_id}"):
            cur = self._con.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.execute("DELETE FROM attempts WHERE run_id=? AND key=?", (run_id, a.key))
                cur.execute(
                    "INSERT INTO attempts(run_id, key, seed_id, seed_text, category, technique, benign, prompt, "
                    "reply, blocked_by, verdicts, success, refused, score, latency_ms, tokens, error, created_at, "
                    "tracked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, _text(a.key), _text(a.seed_id), _text(a.seed_text), _text(a.category),
                     _text(a.technique), int(a.benign), _text(json.dumps(a.prompt, ensure_ascii=False)),
                     _text(a.reply), _text(a.blocked_by),
                     _text(json.dumps(a.verdicts, ensure_ascii=False, default=str)), _opt_int(a.success),
                     _opt_int(a.refused), a.score, a.latency_ms, _text(json.dumps(a.tokens)), _text(a.error),
                     _now(), _text(a.tracked)))
                aid = int(cur.lastrowid)
                cur.executemany(
                    "INSERT INTO turns(attempt_id, idx, role, content, meta) VALUES (?, ?, ?, ?, ?)",
                    [(aid, i, _text(str(t.get("role", ""))), _text(str(t.get("content") or "")),
                      _text(json.dumps(t["meta"], default=str)) if t.get("meta") else None)
                     for i, t in enumerate(turns)])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return aid

    def done_keys(self, run_id: str) -> set[str]:
        """Keys of attempts that finished without error (a resumed run skips these)."""
        with self._lock:
            rows = self._con.execute("SELECT key FROM attempts WHERE run_id=? AND error IS NULL", (run_id,))
            return {r[0] for r in rows}

    def attempts(self, run_id: str, *, benign: bool | None = None, with_turns: bool = False,
                 include_errors: bool = True) -> list[AttemptRecord]:
        """A run's attempts in insertion order."""
        q = "SELECT * FROM attempts WHERE run_id=?"
        args: list[Any] = [run_id]
        if benign is not None:
            q += " AND benign=?"
            args.append(int(benign))
        if not include_errors:
            q += " AND error IS NULL"
        q += " ORDER BY id"
        with self._lock:
            rows = self._con.execute(q, args).fetchall()
            out = [self._attempt(r) for r in rows]
            if with_turns:
                for a in out:
                    a.turns = [{"role": t["role"], "content": t["content"],
                                **({"meta": json.loads(t["meta"])} if t["meta"] else {})}
                               for t in self._con.execute("SELECT * FROM turns WHERE attempt_id=? ORDER BY idx",
                                                          (a.id,))]
        return out

    def iter_attempt_rows(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Raw attempt rows as dicts (JSON columns decoded), for export."""
        for a in self.attempts(run_id, with_turns=True):
            yield a.to_dict()

    @staticmethod
    def _attempt(r: sqlite3.Row) -> AttemptRecord:
        return AttemptRecord(
            id=r["id"], run_id=r["run_id"], key=r["key"], seed_id=r["seed_id"], seed_text=r["seed_text"],
            category=r["category"], technique=r["technique"], benign=bool(r["benign"]),
            prompt=json.loads(r["prompt"]), reply=r["reply"], blocked_by=r["blocked_by"],
            verdicts=json.loads(r["verdicts"]), success=_opt_bool(r["success"]), refused=_opt_bool(r["refused"]),
            score=r["score"], latency_ms=r["latency_ms"], tokens=json.loads(r["tokens"] or "{}"), error=r["error"],
            created_at=r["created_at"], tracked=r["tracked"] if "tracked" in r.keys() else None)

    def attempts_sha256(self, run_id: str, version: int = DIGEST_VERSION) -> str:
        """A digest of what the store holds for a run: changes if any of it is edited.

        Version 2 (the default) covers the run record (every column), every column of every attempt but its
        row id, and every turn. Version 1, the digest of scorecards written before version 2, covers only the
        attempts' content columns; it is kept so that those scorecards can still be checked."""
        if version == 1:
            return self._attempts_sha256_v1(run_id)
        if version != 2:
            raise ValueError(f"unknown digest version {version!r}; known: 1, 2")
        h = hashlib.sha256(b"bastion-store-digest-v2\n")
        with self._lock:
            run = self._con.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            atts = self._con.execute("SELECT * FROM attempts WHERE run_id=? ORDER BY key", (run_id,)).fetchall()
            turns = self._con.execute(
                "SELECT a.key, t.idx, t.role, t.content, t.meta FROM turns t JOIN attempts a ON a.id = t.attempt_id "
                "WHERE a.run_id=? ORDER BY a.key, t.idx", (run_id,)).fetchall()

        def put(kind: str, row: dict[str, Any]) -> None:
            h.update(json.dumps([kind, row], sort_keys=True, default=str, ensure_ascii=False).encode())
            h.update(b"\n")

        put("run", dict(run) if run is not None else {})
        for r in atts:
            # `tracked` is left out while NULL, so a run stored before the column existed keeps its digest
            put("attempt", {k: r[k] for k in r.keys() if k != "id" and not (k == "tracked" and r[k] is None)})
        for t in turns:
            put("turn", dict(t))
        return h.hexdigest()

    def _attempts_sha256_v1(self, run_id: str) -> str:
        h = hashlib.sha256()
        with self._lock:
            rows = self._con.execute(
                "SELECT key, seed_id, seed_text, category, technique, benign, prompt, reply, blocked_by, verdicts, "
                "success, refused, score, error FROM attempts WHERE run_id=? ORDER BY key", (run_id,)).fetchall()
        for r in rows:
            h.update(json.dumps(list(r), default=str, ensure_ascii=False).encode())
            h.update(b"\n")
        return h.hexdigest()

    # ---- aggregation -------------------------------------------------------------------------------
    def aggregate(self, run_id: str, by: str = "category") -> list[dict[str, Any]]:
        """Counts of harmful attempts (errors excluded) grouped by `category` or `technique`:
        `{by, attempts, successes, refusals, asr}`. `bastion.redteam.stats.summarize_run` adds intervals."""
        if by not in ("category", "technique"):
            raise ValueError("by must be 'category' or 'technique'")
        with self._lock:
            rows = self._con.execute(
                f"SELECT {by} AS k, COUNT(*) AS n, SUM(COALESCE(success, 0)) AS s, SUM(COALESCE(refused, 0)) AS r "
                f"FROM attempts WHERE run_id=? AND benign=0 AND error IS NULL GROUP BY {by} ORDER BY {by}",
                (run_id,)).fetchall()
        return [{by: r["k"], "attempts": int(r["n"]), "successes": int(r["s"]), "refusals": int(r["r"]),
                 "asr": int(r["s"]) / int(r["n"]) if r["n"] else 0.0} for r in rows]

    def delete_run(self, run_id: str) -> None:
        with self._lock:
            self._con.execute("DELETE FROM turns WHERE attempt_id IN (SELECT id FROM attempts WHERE run_id=?)",
                              (run_id,))
            self._con.execute("DELETE FROM attempts WHERE run_id=?", (run_id,))
            self._con.execute("DELETE FROM runs WHERE id=?", (run_id,))




def _text(x: str | None) -> str | None:
    """Text SQLite can store as UTF-8 (see `bastion.jsonl.utf8_safe`), instead of failing the whole write."""
    return None if x is None else utf8_safe(x)


@contextmanager
def _writing(path: str, timeout: float, what: str) -> Iterator[None]:
    """A lock held by another process past the busy timeout becomes a one-line StoreError."""
    try:
        yield
    except sqlite3.OperationalError as e:
        if "locked" in str(e) or "busy" in str(e):
            raise StoreError(f"cannot {what}: database {path} is locked by another process "
                             f"(waited {timeout:g} s)") from e
        raise


def _opt_int(x: bool | None) -> int | None:
    return None if x is None else int(bool(x))


def _opt_bool(x: int | None) -> bool | None:
    return None if x is None else bool(x)


def keys_of(records: Sequence[AttemptRecord]) -> set[str]:
    return {r.key for r in records}
