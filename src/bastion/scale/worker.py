"""What every filter worker runs (a local process or a Ray actor): classify one split.

The worker returns only decisions for the documents that are *not* kept (small), plus counts; the driver
re-reads the split to write the outputs, so document text never travels back over the wire.
"""

from __future__ import annotations

import importlib
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import sources
from .sources import BadRecord
from .windows import WINDOW_CHARS, classify_documents

if TYPE_CHECKING:
    from bastion.guard import Guard

# Documents (or characters of text) classified together; bounds worker memory.
GROUP_DOCS = 256
GROUP_CHARS = 1 << 20


@dataclass(frozen=True)
class GuardSpec:
    """How a worker builds its guard, once per process/actor.

    `factory` is an importable "module:function" returning a Guard (for custom or test models); otherwise
    `Guard(model=model, threads=threads)` loads the embedded default model (or a model directory).
    """

    factory: str | None = None
    model: str | None = None
    threads: int | None = None
    threshold: float | None = None
    window_chars: int = WINDOW_CHARS

    def factory_function(self) -> Any:
        """The factory callable; UsageError (one line) when it cannot be imported."""
        assert self.factory
        mod, sep, fn = self.factory.partition(":")
        if not sep or not mod or not fn:
            raise sources.UsageError(f"guard factory must be 'module:function', got {self.factory!r}")
        try:
            f = getattr(importlib.import_module(mod), fn)
        except ImportError as e:
            raise sources.UsageError(f"guard factory {self.factory!r}: cannot import {mod!r} ({e})") from None
        except AttributeError:
            raise sources.UsageError(f"guard factory {self.factory!r}: module {mod!r} has no {fn!r}") from None
        if not callable(f):
            raise sources.UsageError(f"guard factory {self.factory!r}: {fn!r} is not callable")
        return f

    def check_factory(self) -> None:
        """Import the factory (without calling it) on the driver, so a typo fails before workers start."""
        if self.factory:
            self.factory_function()

    def build(self) -> Guard:
        if self.factory:
            guard = self.factory_function()()
            if not callable(getattr(guard, "check_batch", None)):
                raise TypeError(f"the guard factory {self.factory!r} returned {type(guard).__name__}, "
                                f"not an object with check_batch (a Guard)")
        else:
            from bastion.guard import Guard

            guard = Guard(model=self.model, threads=self.threads)
        if self.threshold is not None:
            guard = guard.with_thresholds(prompt_harm=self.threshold, response_harm=self.threshold)
        return guard


@dataclass(frozen=True)
class FilterOptions:
    text_field: str = "text"
    id_field: str = "id"


@dataclass
class SplitResult:
    """Decisions for one split. `removed` maps a document's index in the split (JSONL: line index,
    blank lines included; Parquet: row index in the row group) to its quarantine entry."""

    split: int
    docs: int = 0
    blank: int = 0
    kept: int = 0
    unsafe: int = 0
    errors: int = 0
    categories: Counter = field(default_factory=Counter)
    removed: dict[int, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"split": self.split, "docs": self.docs, "blank": self.blank, "kept": self.kept,
                "unsafe": self.unsafe, "errors": self.errors, "categories": dict(self.categories),
                "removed": [[k, v] for k, v in self.removed.items()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitResult:
        return cls(split=d["split"], docs=d["docs"], blank=d["blank"], kept=d["kept"], unsafe=d["unsafe"],
                   errors=d["errors"], categories=Counter(d["categories"]),
                   removed={int(k): v for k, v in d["removed"]})


def _id(value: Any) -> Any:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


class SplitWorker:
    """Holds one guard (loaded once) and classifies splits of a plan."""

    def __init__(self, spec: GuardSpec, options: FilterOptions, guard: Guard | None = None) -> None:
        self.spec = spec
        self.options = options
        self.guard = guard if guard is not None else spec.build()

    def process(self, plan: sources.Plan, k: int) -> SplitResult:
        start, end = plan.split(k)
        res = SplitResult(split=k)
        pending: list[tuple[int, Any, str]] = []  # (index, id, text)
        chars = 0
        if plan.fmt == "jsonl":
            for i, line in enumerate(sources.iter_jsonl_lines(plan.path, start, end)):
                if sources.is_blank(line):
                    res.blank += 1
                    continue
                res.docs += 1
                try:
                    rec, text = sources.parse_jsonl_line(line, self.options.text_field)
                except BadRecord as e:
                    self._error(res, i, None, str(e))
                    continue
                pending.append((i, _id(rec.get(self.options.id_field)), text))
                chars += len(text)
                if len(pending) >= GROUP_DOCS or chars >= GROUP_CHARS:
                    self._classify(res, pending)
                    chars = 0
        else:
            cols = [self.options.text_field]
            names = sources.parquet_columns(plan.path)
            has_id = self.options.id_field in names and self.options.id_field != self.options.text_field
            if has_id:
                cols.append(self.options.id_field)
            i = 0
            for batch in sources.iter_parquet_batches(plan.path, start, cols):
                texts = batch.column(0).to_pylist()
                ids = batch.column(1).to_pylist() if has_id else [None] * len(texts)
                for text, doc_id in zip(texts, ids, strict=True):
                    res.docs += 1
                    if not isinstance(text, str):
                        what = "missing (null)" if text is None else f"a {type(text).__name__}, not a string"
                        self._error(res, i, _id(doc_id), f"text field {self.options.text_field!r} is {what}")
                    else:
                        pending.append((i, _id(doc_id), text))
                    i += 1
                self._classify(res, pending)
        self._classify(res, pending)
        res.kept = res.docs - res.unsafe - res.errors
        return res

    def _error(self, res: SplitResult, i: int, doc_id: Any, reason: str) -> None:
        res.errors += 1
        res.removed[i] = {"id": doc_id, "reason": "error", "error": reason}

    def _classify(self, res: SplitResult, pending: list[tuple[int, Any, str]]) -> None:
        if not pending:
            return
        verdicts = classify_documents(self.guard, [t for _, _, t in pending], self.spec.window_chars)
        for (i, doc_id, _), v in zip(pending, verdicts, strict=True):
            if v.unsafe:
                res.unsafe += 1
                res.categories.update(v.categories or ("uncategorised",))
                res.removed[i] = {"id": doc_id, "reason": "unsafe", "score": v.score,
                                  "categories": list(v.categories), "verdict": v.to_dict()}
        pending.clear()


# ---- multiprocessing entry points (one SplitWorker per process) -------------------------------------
_WORKER: SplitWorker | None = None
_INIT_ERROR: str | None = None


def exit_with_parent() -> None:
    """End this worker process when the driver dies, even by SIGKILL (no orphan holding a loaded guard).

    Linux: the kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG); elsewhere, and as a fallback,
    a daemon thread polls the parent's pid once a second."""
    import multiprocessing as mp
    import os
    import sys
    import threading

    parent = mp.parent_process()
    ppid = parent.pid if parent is not None and parent.pid else os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    if os.getppid() != ppid:  # the driver died before the signal was armed
        os._exit(1)

    def watch() -> None:
        import time

        while os.getppid() == ppid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="bastion-parent-watch", daemon=True).start()


def worker_ready() -> str | None:
    """Run in a pool worker once initialised: the guard load error, or None."""
    return _INIT_ERROR if _WORKER is None else None


def init_process(spec: GuardSpec, options: FilterOptions) -> None:
    global _WORKER, _INIT_ERROR
    exit_with_parent()
    try:
        _WORKER = SplitWorker(spec, options)
    except Exception as e:  # reported by the first task, with its message, instead of a broken pool
        _INIT_ERROR = f"worker could not load the guard: {type(e).__name__}: {e}"


def process_in_pool(plan: sources.Plan, k: int) -> SplitResult:
    if _WORKER is None:
        raise RuntimeError(_INIT_ERROR or "worker not initialised")
    return _WORKER.process(plan, k)
