"""The corpus filter driver: plan splits, classify them on an engine, write outputs, checkpoint, resume.

The driver processes split results strictly in input order. After each split it commits both outputs
and then atomically replaces the checkpoint (input position, output states, running counts), so a
crash at any point resumes from the last checkpoint without duplicating or losing a document.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bastion.jsonl import LineError, loads_line

from . import sinks, sources
from .sources import UsageError
from .worker import (
    FilterOptions,
    GuardSpec,
    SplitResult,
    SplitWorker,
    init_process,
    process_in_pool,
    worker_ready,
)

CHECKPOINT_VERSION = 1
ENGINES = ("local", "ray")


@dataclass
class FilterSummary:
    docs: int = 0
    kept: int = 0
    unsafe: int = 0
    errors: int = 0
    blank: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    resumed: bool = False
    already_complete: bool = False

    @property
    def quarantined(self) -> int:
        return self.unsafe + self.errors

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "quarantined": self.quarantined}

    def add(self, r: SplitResult) -> None:
        self.docs += r.docs
        self.kept += r.kept
        self.unsafe += r.unsafe
        self.errors += r.errors
        self.blank += r.blank
        c = Counter(self.categories)
        c.update(r.categories)
        self.categories = dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))


def checkpoint_path(out: Path) -> Path:
    return out.with_name(out.name + ".bastion-filter.json")


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.bastion-filter.lock")


@contextmanager
def _single_writer(out: Path) -> Iterator[None]:
    """Hold an exclusive lock file beside the checkpoint for the whole run, so a second copy of the same
    command is refused (UsageError) instead of racing the first. The file is removed when the run ends
    (after a kill it stays, unlocked, and is reused). Where the filesystem has no locks, runs unlocked."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    path = lock_path(out)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UsageError(f"another bastion filter is writing {out}; wait for it to finish") from None
        except OSError:  # locks not supported here
            os.close(fd)
            yield
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we locked it: lock the current one
    try:
        yield
    finally:
        try:
            os.unlink(path)  # before releasing, so a waiting run then locks a fresh file
        except OSError:
            pass
        os.close(fd)


def _write_json_atomic(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    sinks._fsync_dir(path.parent)


def _fingerprint(inp: Path, fmt: str, opts: FilterOptions, spec: GuardSpec, quarantine: Path,
                 out_fmt: str) -> dict[str, Any]:
    st = inp.stat()
    fp = {"input": str(inp.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "format": fmt,
          "text_field": opts.text_field, "id_field": opts.id_field, "quarantine": str(quarantine.resolve()),
          "threshold": spec.threshold, "model": spec.model, "factory": spec.factory}
    if fmt == "jsonl" and out_fmt == "parquet":
        fp["records_to_parquet"] = 2  # parts written by earlier versions may hold conflicting column types
    return fp


def _no_progress(ckpt: dict[str, Any]) -> bool:
    """A checkpoint written before the first split was committed (nothing in the outputs yet)."""
    sk = ckpt.get("sinks") or {}
    return (not ckpt.get("done") and ckpt.get("position") == 0 and ckpt.get("done_units") == 0
            and all(not any(v for v in (st or {}).values()) for st in sk.values()))


def _remove_outputs(ckpt_path: Path, out: Path, quarantine: Path) -> None:
    import shutil

    for p in [ckpt_path, *sinks.leftovers(out), *sinks.leftovers(quarantine)]:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


# ---- engines: each yields SplitResults for k = 0..len(plan)-1, in order ------------------------------
Engine = Callable[[sources.Plan, GuardSpec, FilterOptions, int], Iterator[SplitResult]]


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _worker_spec(spec: GuardSpec, workers: int) -> GuardSpec:
    """Share the cores between workers instead of oversubscribing them."""
    if spec.threads is None and spec.factory is None and workers > 1:
        return GuardSpec(factory=None, model=spec.model, threads=max(1, default_workers() // workers),
                         threshold=spec.threshold, window_chars=spec.window_chars)
    return spec


@contextmanager
def local_engine(plan: sources.Plan, spec: GuardSpec, options: FilterOptions,
                 workers: int) -> Iterator[Iterator[SplitResult]]:
    """Multiprocessing over the cores: one guard per process, at most 2 splits in flight per worker."""
    if workers <= 1:
        w = SplitWorker(spec, options)
        yield (w.process(plan, k) for k in range(len(plan)))
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # concurrent.futures (not mp.Pool): a worker that dies makes the pool fail loudly instead of hanging.
    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_process,
                               initargs=(_worker_spec(spec, workers), options))
    inflight: deque = deque()
    n = len(plan)
    nxt = 0

    def fill() -> None:
        nonlocal nxt
        while nxt < n and len(inflight) < 2 * workers:
            inflight.append(pool.submit(process_in_pool, plan, nxt))
            nxt += 1

    def run() -> Iterator[SplitResult]:
        while nxt < n or inflight:
            fill()
            yield inflight.popleft().result()

    try:
        # Start the workers and wait until one has loaded its guard, so a guard that cannot load fails the
        # run before the driver creates any output.
        ready = pool.submit(worker_ready)
        fill()
        err = ready.result()
        if err:
            raise RuntimeError(err)
        yield run()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---- the driver -------------------------------------------------------------------------------------
def filter_corpus(
    input: str | Path,
    out: str | Path,
    quarantine: str | Path,
    *,
    text_field: str = "text",
    id_field: str = "id",
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    threshold: float | None = None,
    model: str | None = None,
    guard_factory: str | None = None,
    split_bytes: int = sources.DEFAULT_SPLIT_BYTES,
    overwrite: bool = False,
    progress: bool = False,
    on_split: Callable[[int], None] | None = None,
) -> FilterSummary:
    """Filter a JSONL/Parquet corpus into kept and quarantined documents; resumes a crashed run.

    `on_split(k)` is called after split k is committed (used by tests to interrupt a run).
    """
    inp, out, quarantine = Path(input), Path(out), Path(quarantine)
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")
    if not inp.is_file():
        raise UsageError(f"{inp}: no such file")
    fmt = sources.detect_format(inp)
    out_fmt, q_fmt = sources.detect_format(out), sources.detect_format(quarantine)
    if "parquet" in (fmt, out_fmt, q_fmt):
        sources.require_pyarrow()
    for opt, p in (("--out", out), ("--quarantine", quarantine)):
        if not p.parent.is_dir():
            raise UsageError(f"{opt} {p}: no such directory {p.parent}")
    paths = {inp.resolve(), out.resolve(), quarantine.resolve()}
    if len(paths) < 3:
        raise UsageError("input, --out and --quarantine must be three different files")
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise UsageError(f"--threshold {threshold} is outside [0, 1]")
    if workers is not None and workers < 1:
        raise UsageError("--workers must be at least 1")
    options = FilterOptions(text_field=text_field, id_field=id_field)
    spec = GuardSpec(factory=guard_factory, model=model, threshold=threshold)
    in_schema = None
    if fmt == "parquet":
        cols = sources.parquet_columns(str(inp))  # UsageError when it is not a Parquet file
        if text_field not in cols:
            raise UsageError(f"{inp}: no column {text_field!r} (columns: {', '.join(cols)}); use --text-field")
        in_schema = sources.require_pyarrow().ParquetFile(inp).schema_arrow

    with _single_writer(out):
        return _filter_locked(inp, out, quarantine, fmt=fmt, out_fmt=out_fmt, q_fmt=q_fmt, options=options,
                              spec=spec, in_schema=in_schema, engine=engine, workers=workers, address=address,
                              split_bytes=split_bytes, overwrite=overwrite, progress=progress, on_split=on_split)


def _filter_locked(inp: Path, out: Path, quarantine: Path, *, fmt: str, out_fmt: str, q_fmt: str,
                   options: FilterOptions, spec: GuardSpec, in_schema: Any, engine: str, workers: int | None,
                   address: str | None, split_bytes: int, overwrite: bool, progress: bool,
                   on_split: Callable[[int], None] | None) -> FilterSummary:
    ckpt_path = checkpoint_path(out)
    fp = _fingerprint(inp, fmt, options, spec, quarantine, out_fmt)
    ckpt: dict[str, Any] | None = None
    if overwrite:
        _remove_outputs(ckpt_path, out, quarantine)
    elif ckpt_path.exists():
        try:
            ckpt = json.loads(ckpt_path.read_text("utf-8"))
        except (OSError, ValueError) as e:
            raise UsageError(f"{ckpt_path}: unreadable checkpoint ({e}); use --overwrite to start again") from None
        if ckpt.get("version") != CHECKPOINT_VERSION or ckpt.get("fingerprint") != fp:
            if not _no_progress(ckpt):
                raise UsageError(f"{ckpt_path} belongs to a different run (input or options changed); "
                                 f"use --overwrite to start again")
            _remove_outputs(ckpt_path, out, quarantine)  # nothing was written yet: start afresh
            ckpt = None
        elif ckpt.get("done"):
            missing = [p for p in (out, quarantine) if not p.exists()]
            if missing:
                raise UsageError(f"{missing[0]} is missing although {ckpt_path} records the run as complete; "
                                 f"use --overwrite to run it again")
            for p in (out, quarantine):  # a run stopped after recording itself as done, before removing them
                if sources.detect_format(p) == "parquet":
                    sinks.remove_parts(p)
            s = FilterSummary(**ckpt["summary"])
            s.already_complete = True
            return s
    else:
        existing = sinks.leftovers(out) + sinks.leftovers(quarantine)
        if existing:
            raise UsageError(f"{existing[0]} already exists; use --overwrite to replace it")

    if fmt == "jsonl" and ckpt is None:
        sources.check_jsonl_input(str(inp), options.text_field)
    spec.check_factory()  # an unimportable factory is a usage error, found before any worker starts
    resumed = ckpt is not None and not _no_progress(ckpt)
    summary = FilterSummary(**ckpt["summary"]) if ckpt else FilterSummary()
    summary.resumed = resumed
    position = ckpt["position"] if ckpt else 0
    done_units = ckpt["done_units"] if ckpt else 0  # JSONL: lines; Parquet: rows
    plan = sources.make_plan(fmt, str(inp), position, split_bytes)
    t0 = time.perf_counter()
    elapsed0 = summary.seconds

    def save(state: dict[str, Any], done: bool) -> None:
        _write_json_atomic(ckpt_path, {"version": CHECKPOINT_VERSION, "fingerprint": fp, "position": position,
                                       "done_units": done_units, "sinks": state,
                                       "summary": _summary_state(summary), "done": done})

    with ExitStack() as stack:
        # The engine starts (and loads the guard) before any output exists: a bad model, factory or cluster
        # address fails without leaving files behind.
        if engine == "ray":
            from .ray_engine import ray_engine

            results = stack.enter_context(ray_engine(plan, spec, options, workers, address))
        else:
            results = stack.enter_context(local_engine(plan, spec, options, workers or default_workers()))

        if ckpt is None:  # record the empty outputs first, so a run stopped before its first split resumes
            save({"kept": _empty_state(out), "quarantine": _empty_state(quarantine)}, False)
        kept = sinks.open_sink(out, ckpt["sinks"]["kept"] if ckpt else None, schema=in_schema)
        stack.callback(kept.close)
        q_parquet = q_fmt == "parquet"
        qs = sinks.open_sink(quarantine, ckpt["sinks"]["quarantine"] if ckpt else None,
                             schema=sinks.quarantine_schema() if q_parquet else None)
        stack.callback(qs.close)
        if len(plan) and any(getattr(x, "merged", False) for x in (kept, qs)):
            raise UsageError(f"the part files of {out} or {quarantine} are missing; use --overwrite to start again")

        def write_q(entry: dict[str, Any]) -> None:
            qs.write_record(sinks.flatten_for_parquet(entry) if q_parquet else entry)

        bar = stack.enter_context(_progress(progress, fmt, inp, position, done_units))
        for k, res in enumerate(results):
            if res.split != k:
                raise RuntimeError(f"engine returned split {res.split}, expected {k}")
            start, end = plan.split(k)
            if fmt == "jsonl":
                done_units = _write_jsonl_split(plan, k, res, done_units, options, kept, write_q)
            else:
                done_units = _write_parquet_split(plan, k, res, done_units, kept, write_q)
            summary.add(res)
            summary.seconds = elapsed0 + time.perf_counter() - t0
            position = end
            save({"kept": kept.commit(), "quarantine": qs.commit()}, False)
            bar(position, done_units, summary)
            if on_split is not None:
                on_split(k)
        # Merging may be repeated (a rerun after a crash here merges again); the part files are removed only
        # once the run is recorded as done.
        kept.finalize()
        qs.finalize()
        summary.seconds = elapsed0 + time.perf_counter() - t0
        save({}, True)
        kept.cleanup()
        qs.cleanup()
    return summary


def _empty_state(path: Path) -> dict[str, Any]:
    return {"parts": 0} if sources.detect_format(path) == "parquet" else {"size": 0}


def _summary_state(s: FilterSummary) -> dict[str, Any]:
    d = asdict(s)
    d.pop("already_complete")
    d["resumed"] = False
    return d


def _write_jsonl_split(plan: sources.Plan, k: int, res: SplitResult, line_no: int, options: FilterOptions,
                       kept: Any, write_q: Callable[[dict[str, Any]], None]) -> int:
    start, end = plan.split(k)
    for i, line in enumerate(sources.iter_jsonl_lines(plan.path, start, end)):
        line_no += 1
        entry = res.removed.get(i)
        if entry is None:
            if not sources.is_blank(line):
                kept.write_line(line)
            continue
        entry = dict(entry, line=line_no)
        try:
            rec = loads_line(line.decode("utf-8"), strict=False)  # as the worker parsed it
            entry["record"] = rec
            if entry.get("id") is None and isinstance(rec, dict):
                entry["id"] = rec.get(options.id_field)
        except UnicodeDecodeError:
            entry["raw_base64"] = base64.b64encode(line).decode("ascii")
        except LineError:
            entry["raw"] = line.decode("utf-8").rstrip("\r\n")
        write_q(entry)
    return line_no


def _write_parquet_split(plan: sources.Plan, k: int, res: SplitResult, row_no: int, kept: Any,
                         write_q: Callable[[dict[str, Any]], None]) -> int:
    import pyarrow as pa

    rg, _ = plan.split(k)
    i = 0
    for batch in sources.iter_parquet_batches(plan.path, rg):
        n = batch.num_rows
        mask = [i + j not in res.removed for j in range(n)]
        if all(mask):
            kept.write_arrow(pa.Table.from_batches([batch]))
        else:
            kept.write_arrow(pa.Table.from_batches([batch.filter(pa.array(mask))]))
            for j in range(n):
                if not mask[j]:
                    entry = dict(res.removed[i + j], row=row_no + j + 1,
                                 record=batch.slice(j, 1).to_pylist()[0])
                    write_q(entry)
        i += n
        row_no += n
    return row_no


@contextmanager
def _progress(enabled: bool, fmt: str, inp: Path, position: int,
              done_units: int) -> Iterator[Callable[[int, int, FilterSummary], None]]:
    if not enabled:
        yield lambda *a: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    if fmt == "jsonl":
        total, start = inp.stat().st_size, position
    else:
        total, start = sources.parquet_total_rows(str(inp)), done_units
    cols = [TextColumn("[bold]filter"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*cols, transient=False) as p:
        task = p.add_task("filter", total=total, completed=start, info="")

        def update(pos: int, units: int, s: FilterSummary) -> None:
            rate = s.docs / s.seconds if s.seconds > 0 else 0.0
            p.update(task, completed=pos if fmt == "jsonl" else units,
                     info=f"{s.docs} docs, {s.quarantined} quarantined, {rate:.0f} docs/s")

        yield update
