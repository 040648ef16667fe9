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
        fh = p.open("r", encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except OSError as e:
        raise InputError(f"{p}: cannot read ({e.strerror})") from None
    out = Loaded()
    req = list(required)
    with fh:
        for n, line in enumerate(fh, start=1):
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
    """Append JSON lines to `path`, keeping every existing line.

    Existing valid lines contribute their `key_field` values to `done`; unparsable existing lines
    (e.g. a line cut short by a crash) are kept in place and counted in `damaged`. If the file does not end
    in a newline one is added first, so a new record never merges into a partial line.
    """

    def __init__(self, path: str | Path, key_field: str | None = "key", resume: bool = True) -> None:
        self.path = Path(path)
        self.key_field = key_field
        self.done: set[str] = set()
        self.existing: list[dict[str, Any]] = []
        self.damaged: list[int] = []
        if self.path.exists() and not resume:
            raise InputError(f"{self.path} exists; pass --resume to append to it or choose another --out")
        if self.path.exists():
            self._scan()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: TextIO | None = None
        self.written = 0

    def _scan(self) -> None:
        raw = self.path.read_bytes()
        for n, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = loads_line(line, strict=False)
            except LineError:
                self.damaged.append(n)
                continue
            if isinstance(obj, dict):
                self.existing.append(obj)
                if self.key_field and self.key_field in obj:
                    self.done.add(str(obj[self.key_field]))
        self._needs_newline = bool(raw) and not raw.endswith(b"\n")

    def open(self) -> ResumableWriter:
        self._fh = self.path.open("a", encoding="utf-8")
        if getattr(self, "_needs_newline", False):
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
