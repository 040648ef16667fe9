"""Corpus inputs (JSONL, Parquet) cut into independent splits.

A split is read independently by a worker (to classify) and again by the driver (to write), so both
see exactly the same documents in the same order:

- JSONL: a byte range [start, end); it holds the lines that *begin* inside it (Hadoop-style), so
  ranges can be cut anywhere and every line belongs to exactly one split.
- Parquet: one row group, read in bounded record batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.jsonl import LineError, dumps_line, loads_line

DEFAULT_SPLIT_BYTES = 4 << 20
PARQUET_READ_ROWS = 1024


class UsageError(ValueError):
    """Bad user input (path, format, field); the CLI turns it into a one-line error, exit status 2."""


def require_pyarrow() -> Any:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("Parquet needs pyarrow: pip install 'bastion-guard[ray]' (or pip install pyarrow)") from None
    return pq


def detect_format(path: str | Path) -> str:
    """'jsonl' or 'parquet', from the file name."""
    name = str(path).lower()
    if name.endswith(".parquet") or name.endswith(".pq"):
        return "parquet"
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    raise UsageError(f"{path}: unknown format (use a .jsonl or .parquet file name)")


@dataclass(frozen=True)
class Plan:
    """The splits still to process: split k of the plan is computed from k, so the plan is tiny."""

    fmt: str
    path: str
    base: int  # JSONL: byte offset to start from; Parquet: first row group
    stop: int  # JSONL: file size; Parquet: number of row groups
    step: int  # JSONL: bytes per split; Parquet: 1

    def __len__(self) -> int:
        return max(0, -(-(self.stop - self.base) // self.step))

    def split(self, k: int) -> tuple[int, int]:
        start = self.base + k * self.step
        return start, min(start + self.step, self.stop)


def make_plan(fmt: str, path: str, position: int, split_bytes: int = DEFAULT_SPLIT_BYTES) -> Plan:
    if fmt == "jsonl":
        return Plan(fmt, path, position, os.path.getsize(path), max(1, int(split_bytes)))
    pq = require_pyarrow()
    return Plan(fmt, path, position, pq.ParquetFile(path).metadata.num_row_groups, 1)


UTF8_BOM = b"\xef\xbb\xbf"


def iter_jsonl_lines(path: str, start: int, end: int) -> Iterator[bytes]:
    """The raw lines (with their newline, if any) that begin in [start, end). A UTF-8 byte-order mark at
    the very start of the file is not part of the first line (as bastion.jsonl.iter_lines does)."""
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()  # the rest of a line that began before `start` belongs to the previous split
        while f.tell() < end:
            at = f.tell()
            line = f.readline()
            if not line:
                return
            yield line[len(UTF8_BOM):] if at == 0 and line.startswith(UTF8_BOM) else line


# How much of a JSONL input `check_jsonl_input` reads before the run starts.
SNIFF_RECORDS = 100
SNIFF_BYTES = 8 << 20


def check_jsonl_input(path: str, text_field: str) -> None:
    """Refuse, before anything is written, an input that is certainly not JSONL or a --text-field that
    none of the first records has (UsageError, one line). Looks at the first SNIFF_RECORDS records."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4096).removeprefix(UTF8_BOM).lstrip()
    pretty_array = head.split(b"\n", 1)[0].strip() == b"["  # "[" alone on the first line
    if head.startswith(b"[") and (str(path).lower().endswith(".json") or pretty_array):
        raise UsageError(f"{path}: a JSON array, not JSON Lines (one object per line); convert it first, "
                         f"e.g. jq -c '.[]' {path} > corpus.jsonl")
    parsed = 0
    fields: dict[str, None] = {}
    read = 0
    for line in iter_jsonl_lines(path, 0, size):
        read += len(line)
        if not is_blank(line):
            try:
                rec = loads_line(line.decode("utf-8"), strict=False)
            except (UnicodeDecodeError, LineError):
                rec = None
            if isinstance(rec, dict):
                parsed += 1
                if text_field in rec:
                    return
                fields.update(dict.fromkeys(rec))
        if parsed >= SNIFF_RECORDS or read >= SNIFF_BYTES:
            break
    if parsed:
        seen = ", ".join(list(fields)[:12]) + (", ..." if len(fields) > 12 else "")
        raise UsageError(f"{path}: none of the first {parsed} records has the field {text_field!r} "
                         f"(fields: {seen or 'none'}); use --text-field")


class BadRecord(Exception):
    """A record that cannot be classified; it goes to quarantine with this reason."""


def parse_jsonl_line(line: bytes, text_field: str) -> tuple[dict[str, Any], str]:
    """(record, text) or BadRecord."""
    try:
        s = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRecord(f"invalid UTF-8 at byte {e.start}") from None
    try:
        rec = loads_line(s, strict=False)
    except LineError as e:
        raise BadRecord(str(e)) from None
    if not isinstance(rec, dict):
        raise BadRecord(f"record is a JSON {type(rec).__name__}, not an object")
    return rec, record_text(rec, text_field)


def record_text(rec: dict[str, Any], text_field: str) -> str:
    if text_field not in rec or rec[text_field] is None:
        raise BadRecord(f"missing text field {text_field!r}")
    text = rec[text_field]
    if not isinstance(text, str):
        raise BadRecord(f"text field {text_field!r} is a {type(text).__name__}, not a string")
    return text


def is_blank(line: bytes) -> bool:
    return not line.strip()


def parquet_columns(path: str) -> list[str]:
    """The column names; UsageError (one line) when `path` is not a readable Parquet file."""
    pq = require_pyarrow()
    import pyarrow as pa

    try:
        return list(pq.ParquetFile(path).schema_arrow.names)
    except (pa.ArrowException, OSError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UsageError(f"{path}: not a Parquet file ({detail})") from None


def iter_parquet_batches(path: str, row_group: int, columns: list[str] | None = None) -> Iterator[Any]:
    """Record batches of one row group (bounded size)."""
    pq = require_pyarrow()
    pf = pq.ParquetFile(path)
    yield from pf.iter_batches(batch_size=PARQUET_READ_ROWS, row_groups=[row_group], columns=columns)


def parquet_total_rows(path: str) -> int:
    pq = require_pyarrow()
    return pq.ParquetFile(path).metadata.num_rows


def parquet_rows_before(path: str, row_group: int) -> int:
    pq = require_pyarrow()
    md = pq.ParquetFile(path).metadata
    return sum(md.row_group(i).num_rows for i in range(row_group))


def to_json_line(obj: Any) -> bytes:
    return (dumps_line(obj, allow_nan=True, default=str) + "\n").encode("utf-8")
