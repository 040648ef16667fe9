"""JSONL input/output for the constitution pipelines: clear bad-line reports and resumable appends."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bastion.jsonl import LineError, dumps_line, loads_line


class InputError(ValueError):
    """An input file cannot be used at all (missing, unreadable, or with no valid line)."""


@dataclass
class BadLine:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


@dataclass
class Loaded:
    """Valid records (with their 1-based line numbers) and the lines that were rejected."""

    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)


def read_jsonl(path: str | Path, required: Iterable[str] = (),
               check: Callable[[dict[str, Any]], str | None] | None = None) -> Loaded:
    """Read a JSONL file; lines that are not JSON objects, lack a required string field, or fail `check`
    (which returns a reason or None) are reported as BadLine, never silently dropped."""
    p = Path(path)
    try:
        fh = p.open("rb")
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory, not a JSONL file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    out = Loaded()
    req = list(required)
    with fh:
        for n, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                out.bad.append(BadLine(str(p), n, f"not UTF-8 ({e.reason} at byte {e.start} of the line)"))
                continue
            if not line.strip():
                continue
            try:
                obj = loads_line(line)
            except LineError as e:
                out.bad.append(BadLine(str(p), n, str(e)))
                continue
            if not isinstance(obj, dict):
                out.bad.append(BadLine(str(p), n, f"expected a JSON object, got {type(obj).__name__}"))
                continue
            missing = [k for k in req if not isinstance(obj.get(k), str)]
            if missing:
                what = "missing or not a string"
                out.bad.append(BadLine(str(p), n, f"field {', '.join(map(repr, missing))} {what}"))
                continue
            if check is not None and (reason := check(obj)):
                out.bad.append(BadLine(str(p), n, reason))
                continue
            out.records.append((n, obj))
    return out


def content_key(*parts: Any) -> str:
    """A stable key for an input record (so resumed runs skip work already done)."""
    # surrogatepass: a lone surrogate copied from an input's \ud800 escape still gets a key (and the same key as before
    # for every other value)
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def keyed(records: Iterable[tuple[int, dict[str, Any]]], key_of: Callable[[dict[str, Any]], str]
          ) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Attach keys; the k-th duplicate of the same content gets '#k' so duplicates are kept, not merged."""
    seen: dict[str, int] = {}
    for n, rec in records:
        base = str(rec["id"]) if isinstance(rec.get("id"), (str, int)) else key_of(rec)
        k = seen.get(base, 0)
        seen[base] = k + 1
        yield (base if k == 0 else f"{base}#{k}"), n, rec


class ResumableWriter:
    """Append JSON lines to `path`, keeping every existing valid line.

    Existing valid lines contribute their `key_field` values to `done`. Damaged existing lines (not UTF-8 or
    not JSON, e.g. a line cut short by a crash) are moved to `PATH.damaged` (appended, bytes as they were)
    and OUT is rewritten without them, so OUT stays valid JSONL; their line numbers are in `damaged` and the
    side file in `damaged_to`. If the file does not end in a newline one is added first, so a new record
    never merges into a partial line.
    """

    def __init__(self, path: str | Path, key_field: str | None = "key", resume: bool = True) -> None:
        self.path = Path(path)
        self.key_field = key_field
        self.done: set[str] = set()
        self.existing: list[dict[str, Any]] = []
        self.damaged: list[int] = []
        self.damaged_to: Path | None = None
        self._needs_newline = False
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a directory; --out must be a file")
        if self.path.exists() and not resume:
            raise InputError(f"{self.path} exists; pass --resume to append to it or choose another --out")
        if self.path.exists():
            self._scan()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO | None = None
        self.written = 0

    def _scan(self) -> None:
        raw = self.path.read_bytes()
        good: list[bytes] = []
        bad: list[bytes] = []
        for n, bline in enumerate(raw.splitlines(keepends=True), start=1):
            if not bline.strip():
                continue
            try:
                obj = loads_line(bline.decode("utf-8"), strict=False)
            except (UnicodeDecodeError, LineError):
                self.damaged.append(n)
                bad.append(bline if bline.endswith(b"\n") else bline + b"\n")
                continue
            good.append(bline if bline.endswith(b"\n") else bline + b"\n")
            if isinstance(obj, dict):
                self.existing.append(obj)
                if self.key_field and self.key_field in obj:
                    self.done.add(str(obj[self.key_field]))
        if bad:
            self.damaged_to = side_path(self.path, ".damaged")
            with self.damaged_to.open("ab") as fh:
                fh.write(b"".join(bad))
                fh.flush()
                os.fsync(fh.fileno())
            atomic_write_bytes(self.path, b"".join(good))
        else:
            self._needs_newline = bool(raw) and not raw.endswith(b"\n")

    def drop(self, pred: Callable[[dict[str, Any]], bool], side: Path) -> int:
        """Move existing records for which `pred` is true to `side` (appended) and rewrite OUT without them
        (e.g. a synth principle that was only partly written). Returns how many were moved."""
        if not self.path.exists():
            return 0
        keep: list[bytes] = []
        moved: list[bytes] = []
        for bline in self.path.read_bytes().splitlines(keepends=True):
            if not bline.strip():
                continue
            obj = loads_line(bline.decode("utf-8"), strict=False)
            line = bline if bline.endswith(b"\n") else bline + b"\n"
            (moved if isinstance(obj, dict) and pred(obj) else keep).append(line)
        if moved:
            with side.open("ab") as fh:
                fh.write(b"".join(moved))
                fh.flush()
                os.fsync(fh.fileno())
            atomic_write_bytes(self.path, b"".join(keep))
            self.existing = [r for r in self.existing if not pred(r)]
            self._needs_newline = False
        return len(moved)

    def open(self) -> ResumableWriter:
        self._fh = self.path.open("a", encoding="utf-8")
        if self._needs_newline:
            self._fh.write("\n")
            self._needs_newline = False
        return self

    def write(self, record: dict[str, Any]) -> None:
        self.write_many([record])

    def write_many(self, records: Iterable[dict[str, Any]]) -> None:
        if self._fh is None:
            self.open()
        assert self._fh is not None
        data = "".join(dumps_line(r) + "\n" for r in records)
        if not data:
            return
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.written += data.count("\n")

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> ResumableWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def failed_path(out: str | Path) -> Path:
    """Where records that could not be processed go: `OUT.failed.jsonl` next to OUT."""
    p = Path(out)
    return p.with_name(p.name.removesuffix(".jsonl") + ".failed.jsonl")


def side_path(out: str | Path, suffix: str) -> Path:
    """A file next to OUT: `OUT<suffix>` (e.g. `prefs.jsonl.damaged`)."""
    p = Path(out)
    return p.with_name(p.name + suffix)


def ties_path(out: str | Path) -> Path:
    """Where `label` puts ties and order-disagreeing labels (unless --keep-ties): `OUT.ties.jsonl`."""
    p = Path(out)
    return p.with_name(p.name.removesuffix(".jsonl") + ".ties.jsonl")


def state_path(out: str | Path) -> Path:
    """The settings (and, for synth, per-principle progress) of the run that wrote OUT: `OUT.state.json`."""
    return side_path(out, ".state.json")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def read_state(out: str | Path) -> dict[str, Any] | None:
    p = state_path(out)
    try:
        data = json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: unreadable resume state ({e}); move it away to start OUT afresh") from None
    return data if isinstance(data, dict) else None


def write_state(out: str | Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(state_path(out), (json.dumps(state, ensure_ascii=False, sort_keys=True) + "\n").encode())


def _opt(name: str) -> str:
    if name == "principles":
        return "the --principle/--tag selection"
    return "--" + name.replace("_", "-")


def check_settings(out: str | Path, settings: dict[str, Any], existing: Iterable[dict[str, Any]],
                   record_fields: Iterable[str] = ()) -> dict[str, Any]:
    """Refuse to resume OUT with settings other than those it was written with (InputError naming the
    setting). The settings are kept in `OUT.state.json`; for an OUT written before that file existed, the
    per-record fields in `record_fields` (e.g. model, seed, cot) are compared instead. Returns the state."""
    state = read_state(out) or {}
    old = state.get("settings")
    if not isinstance(old, dict):
        old = {}
        for rec in existing:
            old = {k: rec[k] for k in record_fields if k in rec and k in settings}
            break
    for k, v in settings.items():
        if k in old and old[k] != v:
            raise InputError(f"{out} was written with {_opt(k)} {json.dumps(old[k])}, not {json.dumps(v)}; "
                             "rerun with the same settings to resume, or choose a new --out")
    state["settings"] = settings
    return state
