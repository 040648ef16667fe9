"""Output files that can be committed together with a checkpoint and resumed after a crash.

A sink's `commit()` makes everything written so far durable and returns a small state; after a crash,
re-opening the sink with that state discards whatever was written after the commit. So the outputs
always hold exactly the documents of the splits recorded in the checkpoint: none twice, none lost.

- JSONL: one file, appended; the state is its committed size (resume truncates to it).
- Parquet: numbered part files next to the target (`KEPT.parts/`); the state is the number of committed
  parts; `finalize()` merges them into the target file (streaming, row group by row group, into a temporary
  file renamed over the target, so it can be repeated) and `cleanup()` removes the parts once the driver has
  recorded the run as done.

Parquet strings are UTF-8, which cannot hold a lone surrogate (a JSON escape such as "\\ud800" without its
pair; it is not a character): in a Parquet output such a code point becomes U+FFFD, except in the JSON text
columns of a Parquet quarantine (`record`, `verdict`), which escape it and so keep the record exactly.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from bastion.jsonl import loads_line, utf8_safe

from . import sources

MERGE_ROWS = 65536


def _is_json(field: Any) -> bool:
    return bool(field.metadata) and field.metadata.get(b"bastion.encoding") == b"json"


def _scrub(value: Any) -> Any:
    """`value` with utf8_safe applied to every string in it (dict keys included)."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


def _json_text(value: Any) -> str:
    return utf8_safe(json.dumps(value, ensure_ascii=False, allow_nan=True, default=str))


def _exact_json_text(value: Any) -> str:
    """JSON text that Parquet can store and that loads back to exactly `value` (lone surrogates escaped)."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return json.dumps(value, ensure_ascii=True, default=str)


def _parquet_can_store(pa: Any, typ: Any) -> bool:
    """False for types Parquet cannot write (a struct without fields, e.g. from an empty object)."""
    if pa.types.is_struct(typ):
        return typ.num_fields > 0 and all(_parquet_can_store(pa, typ.field(i).type) for i in range(typ.num_fields))
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return _parquet_can_store(pa, typ.value_type)
    return True


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class JsonlSink:
    def __init__(self, path: Path, state: dict[str, Any] | None) -> None:
        self.path = path
        if state is None or (int(state["size"]) == 0 and not path.exists()):
            self.f = open(path, "wb")  # a fresh run (or one stopped before this file was created)
        else:
            self.f = open(path, "r+b")
            self.f.truncate(int(state["size"]))
            self.f.seek(0, os.SEEK_END)

    def write_line(self, raw: bytes) -> None:
        self.f.write(raw if raw.endswith(b"\n") else raw + b"\n")

    def write_record(self, rec: dict[str, Any]) -> None:
        self.f.write(sources.to_json_line(rec))

    def write_arrow(self, table: Any) -> None:
        for rec in table.to_pylist():
            self.write_record(rec)

    def commit(self) -> dict[str, Any]:
        self.f.flush()
        os.fsync(self.f.fileno())
        return {"size": self.f.tell()}

    def finalize(self) -> None:
        self.f.close()

    def cleanup(self) -> None:
        pass

    def close(self) -> None:
        if not self.f.closed:
            self.f.close()

    @staticmethod
    def leftovers(path: Path) -> list[Path]:
        return [path] if path.exists() else []


# Field metadata of a column holding JSON texts (JSONL input, Parquet output: see ParquetSink).
JSON_ENCODING = {b"bastion.encoding": b"json"}


class ParquetSink:
    """Parquet output. With a `schema` (Parquet input, quarantine) every row follows it. Without one (JSONL
    records), each column gets Arrow's type for its values; a field whose values cannot share one type
    (1 here and "s" there, an empty object, mixed lists, across or within splits) becomes a string column
    of JSON texts, marked with the field metadata `bastion.encoding: json`, so any JSONL can be written."""

    def __init__(self, path: Path, state: dict[str, Any] | None, schema: Any = None) -> None:
        self.pq = sources.require_pyarrow()
        import pyarrow as pa

        self.pa = pa
        self.path = path
        self.schema = schema
        self.parts_dir = self.parts_path(path)
        self.parts = 0 if state is None else int(state["parts"])
        # A run stopped after merging the parts and removing them, before it was recorded as done (earlier
        # versions removed the parts first): the target already holds every committed part.
        self.merged = state is not None and self.parts > 0 and not self.parts_dir.exists() and path.exists()
        if self.merged:
            return
        if state is not None and self.parts > 0 and not self.parts_dir.exists():
            raise sources.UsageError(f"{self.parts_dir} (the committed part files of {path}) is missing; "
                                     f"use --overwrite to start again")
        if state is None and self.parts_dir.exists():
            shutil.rmtree(self.parts_dir)
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        for p in self.parts_dir.iterdir():  # parts written after the last commit
            if not p.name.startswith("part-") or not p.name.endswith(".parquet") or \
                    int(p.name[5:13]) >= self.parts:
                p.unlink()
        self.rows: list[dict[str, Any]] = []
        self.tables: list[Any] = []

    @staticmethod
    def parts_path(path: Path) -> Path:
        return path.with_name(path.name + ".parts")

    def _part(self, i: int) -> Path:
        return self.parts_dir / f"part-{i:08d}.parquet"

    def write_line(self, raw: bytes) -> None:
        self.rows.append(loads_line(raw.decode("utf-8"), strict=False))  # as the worker parsed it

    def write_record(self, rec: dict[str, Any]) -> None:
        self.rows.append(rec)

    def write_arrow(self, table: Any) -> None:
        if table.num_rows:
            self.tables.append(table)

    def commit(self) -> dict[str, Any]:
        tables = list(self.tables)
        if self.rows:
            tables.append(self.pa.Table.from_pylist(self.rows, schema=self.schema) if self.schema is not None
                          else self._records_table(self.rows))
        tables = [t if isinstance(t, self.pa.Table) else self.pa.Table.from_batches([t]) for t in tables]
        if tables:
            table = self.pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
            tmp = self.parts_dir / f".tmp-{self.parts:08d}.parquet"
            self.pq.write_table(table, tmp)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, self._part(self.parts))
            _fsync_dir(self.parts_dir)
            self.parts += 1
        self.rows.clear()
        self.tables.clear()
        return {"parts": self.parts}

    def finalize(self) -> None:
        """Merge the committed parts into the target file (repeatable: the parts stay until `cleanup()`)."""
        if self.merged:
            return
        parts = [self._part(i) for i in range(self.parts)]
        schemas = [self.pq.read_schema(p) for p in parts]
        if self.schema is not None:
            schemas.insert(0, self.schema)
        if not schemas:
            schema = self.pa.schema([])
        elif self.schema is None:
            schema = self._records_schema(schemas)
        else:
            try:
                schema = self.pa.unify_schemas(schemas, promote_options="permissive")
            except (self.pa.ArrowInvalid, self.pa.ArrowTypeError) as e:
                raise sources.UsageError(f"{self.path}: records have conflicting field types ({e}); "
                                         f"write JSONL instead") from None
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with self.pq.ParquetWriter(tmp, schema) as w:
            buf: list[Any] = []
            n = 0
            for p in parts:
                t = self.pq.read_table(p)
                for b in t.to_batches(max_chunksize=MERGE_ROWS):
                    buf.append(self._conform(b, schema))
                    n += b.num_rows
                    if n >= MERGE_ROWS:
                        w.write_table(self.pa.Table.from_batches(buf, schema=schema))
                        buf, n = [], 0
            if buf:
                w.write_table(self.pa.Table.from_batches(buf, schema=schema))
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def cleanup(self) -> None:
        """Remove the part files; call only after the run is recorded as done."""
        remove_parts(self.path)

    def _conform(self, batch: Any, schema: Any) -> Any:
        cols = []
        for f in schema:
            i = batch.schema.get_field_index(f.name)
            col = batch.column(i) if i >= 0 else self.pa.nulls(batch.num_rows, f.type)
            if _is_json(f) and i >= 0 and not _is_json(batch.schema.field(i)):
                col = self.pa.array([None if v is None else _json_text(v) for v in col.to_pylist()], self.pa.string())
            cols.append(col.cast(f.type) if col.type != f.type else col)
        return self.pa.RecordBatch.from_arrays(cols, schema=schema)

    # ---- JSONL records -> Parquet ----------------------------------------------------------------
    def _records_table(self, rows: list[dict[str, Any]]) -> Any:
        pa = self.pa
        names = list(dict.fromkeys(k for r in rows for k in r))
        if any(utf8_safe(n) != n for n in names):
            rows = [{utf8_safe(k): v for k, v in r.items()} for r in rows]
            names = list(dict.fromkeys(k for r in rows for k in r))
        fields, arrays = [], []
        for name in names:
            values = [r.get(name) for r in rows]
            try:
                try:
                    arr = pa.array(values)
                except UnicodeEncodeError:  # a lone surrogate: Parquet strings are UTF-8
                    values = _scrub(values)
                    arr = pa.array(values)
                if not _parquet_can_store(pa, arr.type):
                    raise TypeError(arr.type)
                fields.append(pa.field(name, arr.type))
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                arr = pa.array([None if v is None else _json_text(v) for v in values], pa.string())
                fields.append(pa.field(name, pa.string(), metadata=JSON_ENCODING))
            arrays.append(arr)
        return pa.Table.from_arrays(arrays, schema=pa.schema(fields))

    def _records_schema(self, schemas: list[Any]) -> Any:
        """One column per field name (first-seen order): the unified type, or JSON texts when any part
        stored it as JSON or the parts' types cannot be unified."""
        pa = self.pa
        names = list(dict.fromkeys(n for s in schemas for n in s.names))
        out = []
        for name in names:
            fs = [s.field(name) for s in schemas if name in s.names]
            field = None
            if not any(_is_json(f) for f in fs):
                try:
                    typ = pa.unify_schemas([pa.schema([f.remove_metadata()]) for f in fs],
                                           promote_options="permissive").field(name).type
                    if _parquet_can_store(pa, typ):
                        field = pa.field(name, typ)
                except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                    pass
            out.append(field if field is not None else pa.field(name, pa.string(), metadata=JSON_ENCODING))
        return pa.schema(out)

    def close(self) -> None:
        pass

    @staticmethod
    def leftovers(path: Path) -> list[Path]:
        return [p for p in (path, ParquetSink.parts_path(path)) if p.exists()]


def remove_parts(path: Path) -> None:
    """Remove the part files of a Parquet output whose merged target exists (nothing otherwise)."""
    parts = ParquetSink.parts_path(path)
    if path.exists() and parts.is_dir():
        shutil.rmtree(parts, ignore_errors=True)


QUARANTINE_PARQUET_FIELDS = (
    ("id", "string"), ("reason", "string"), ("error", "string"), ("score", "float64"),
    ("categories", "list<string>"), ("line", "int64"), ("row", "int64"),
    ("verdict", "string"), ("record", "string"), ("raw", "string"), ("raw_base64", "string"),
)


def quarantine_schema() -> Any:
    import pyarrow as pa

    types = {"string": pa.string(), "float64": pa.float64(), "int64": pa.int64(),
             "list<string>": pa.list_(pa.string())}
    return pa.schema([(n, types[t]) for n, t in QUARANTINE_PARQUET_FIELDS])


def flatten_for_parquet(entry: dict[str, Any]) -> dict[str, Any]:
    """A quarantine entry with nested values as JSON strings (fixed Parquet schema). `verdict` and `record`
    load back exactly (a lone surrogate is escaped); in other strings it becomes U+FFFD."""
    out = {n: entry.get(n) for n, _ in QUARANTINE_PARQUET_FIELDS}
    for k in ("verdict", "record"):
        if out[k] is not None:
            out[k] = _exact_json_text(out[k])
    if out["id"] is not None:
        out["id"] = str(out["id"])
    for k, v in out.items():
        if k not in ("verdict", "record"):
            out[k] = _scrub(v)
    return out


def open_sink(path: Path, state: dict[str, Any] | None, schema: Any = None) -> JsonlSink | ParquetSink:
    if sources.detect_format(path) == "parquet":
        return ParquetSink(path, state, schema)
    return JsonlSink(path, state)


def leftovers(path: Path) -> list[Path]:
    cls = ParquetSink if sources.detect_format(path) == "parquet" else JsonlSink
    return cls.leftovers(path)
