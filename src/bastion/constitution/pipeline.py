"""File-to-file pipelines behind the `bastion constitution` commands: resumable, concurrent, and never
crashing the batch on one bad item (failures go to OUT.failed.jsonl with their reason and are retried on
the next run)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch import Outcome, run_batch
from .jsonl import BadLine, ResumableWriter, content_key, failed_path, keyed, read_jsonl
from .label import FeedbackLabeller, label_record
from .revise import Reviser, revise_record
from .synth import Synthesizer

Progress = Callable[[int], None]  # advance by n
StartProgress = Callable[[int], None]  # total known


@dataclass
class Summary:
    """What a pipeline run did."""

    out: str
    total: int = 0
    skipped: int = 0  # already in OUT (resumed)
    written: int = 0
    failed: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    damaged_out_lines: list[int] = field(default_factory=list)
    failed_out: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _failure_writer(out: str | Path) -> ResumableWriter:
    return ResumableWriter(failed_path(out), key_field=None)


async def _run(items: list[tuple[str, int, dict[str, Any]]], work: Callable[[tuple[str, int, dict[str, Any]]], Any],
               out: str | Path, stage: str, concurrency: int, summary: Summary,
               progress: Progress | None) -> Summary:
    writer = ResumableWriter(out)
    summary.damaged_out_lines = writer.damaged
    todo = [it for it in items if it[0] not in writer.done]
    summary.skipped = len(items) - len(todo)
    fails = _failure_writer(out)

    def on_outcome(oc: Outcome) -> None:
        key, line, rec = oc.item
        if oc.error is None:
            writer.write(oc.result)
        else:
            fails.write({"key": key, "line": line, "stage": stage, "status": "unlabelled" if stage == "label"
                         else "failed", "reason": oc.error, "input": rec,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
            summary.failed_out = str(fails.path)
        if progress:
            progress(1)

    try:
        stats = await run_batch(todo, work, concurrency=concurrency, on_outcome=on_outcome)
    finally:
        writer.close()
        fails.close()
    summary.written = stats.done
    summary.failed = stats.failed
    summary.reasons = stats.reasons
    return summary


def _load(in_path: str | Path, required: Sequence[str], key_fields: Sequence[str], summary: Summary
          ) -> list[tuple[str, int, dict[str, Any]]]:
    loaded = read_jsonl(in_path, required)
    summary.bad_lines = loaded.bad
    items = list(keyed(loaded.records, lambda r: content_key(*[r.get(k) for k in key_fields])))
    summary.total = len(items)
    return items


async def revise_file(in_path: str | Path, out: str | Path, reviser: Reviser, *, seed: int | None = None,
                      concurrency: int = 8, progress: Progress | None = None,
                      on_total: StartProgress | None = None) -> Summary:
    """`{prompt, response}` lines -> `{prompt, initial, revisions, final}` lines."""
    s = Summary(str(out))
    items = _load(in_path, ("prompt", "response"), ("prompt", "response"), s)
    if on_total:
        on_total(len(items))

    async def work(it: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        return await revise_record(reviser, it[0], it[2], seed)

    return await _run(items, work, out, "revise", concurrency, s, progress)


async def revise_items(items: list[dict[str, Any]], out: str | Path, reviser: Reviser, *, seed: int | None = None,
                       concurrency: int = 8, progress: Progress | None = None) -> Summary:
    """Like revise_file, for in-memory items (e.g. attacks from the red-team store)."""
    s = Summary(str(out))
    keyed_items = list(keyed(enumerate(items, start=1),
                             lambda r: content_key(r.get("prompt"), r.get("response"))))
    s.total = len(keyed_items)

    async def work(it: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        return await revise_record(reviser, it[0], it[2], seed)

    return await _run(keyed_items, work, out, "revise", concurrency, s, progress)


def _check_pair(rec: dict[str, Any]) -> str | None:
    if rec["response_a"] == rec["response_b"]:
        return "response_a and response_b are identical; nothing to compare"
    return None


async def label_file(in_path: str | Path, out: str | Path, labeller: FeedbackLabeller, *, seed: int | None = None,
                     concurrency: int = 8, progress: Progress | None = None,
                     on_total: StartProgress | None = None) -> Summary:
    """`{prompt, response_a, response_b}` lines -> TRL preference lines with soft labels."""
    s = Summary(str(out))
    loaded = read_jsonl(in_path, ("prompt", "response_a", "response_b"), check=_check_pair)
    s.bad_lines = loaded.bad
    items = list(keyed(loaded.records, lambda r: content_key(r["prompt"], r["response_a"], r["response_b"])))
    s.total = len(items)
    if on_total:
        on_total(len(items))

    async def work(it: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        return await label_record(labeller, it[0], it[2], seed)

    return await _run(items, work, out, "label", concurrency, s, progress)


async def synth_file(out: str | Path, synth: Synthesizer, *, concurrency: int = 4,
                     progress: Progress | None = None, on_total: StartProgress | None = None) -> Summary:
    """One resumable unit per principle: principles already present in OUT are skipped; each principle's
    records are appended in one write."""
    s = Summary(str(out))
    writer = ResumableWriter(out, key_field="principle_id")
    s.damaged_out_lines = writer.damaged
    principles = synth.constitution.principles
    todo = [p for p in principles if p.id not in writer.done]
    s.total, s.skipped = len(principles), len(principles) - len(todo)
    if on_total:
        on_total(len(todo))
    fails = _failure_writer(out)

    def on_outcome(oc: Outcome) -> None:
        if oc.error is None:
            recs, notes = oc.result
            writer.write_many([r.to_dict() for r in recs])
            s.written += len(recs)
            s.notes += notes
        else:
            fails.write({"key": oc.item.id, "stage": "synth", "status": "failed", "reason": oc.error,
                         "input": {"principle_id": oc.item.id}, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
            s.failed_out = str(fails.path)
        if progress:
            progress(1)

    try:
        stats = await run_batch(todo, synth.aprinciple, concurrency=concurrency, on_outcome=on_outcome)
    finally:
        writer.close()
        fails.close()
    s.failed = stats.failed
    s.reasons = stats.reasons
    return s


async def fill_responses(items: list[dict[str, Any]], client: Any, cache: str | Path, *, concurrency: int = 8,
                         temperature: float = 0.7, progress: Progress | None = None) -> list[dict[str, Any]]:
    """Give every item without a `response` one from `client` (cached, resumable, in `cache`)."""
    need = [it for it in items if not isinstance(it.get("response"), str)]
    if not need:
        return items
    s = Summary(str(cache))

    async def work(it: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        rec = it[2]
        msgs = rec.get("messages") or [{"role": "user", "content": rec["prompt"]}]
        res = await client.achat(msgs, temperature=temperature)
        if not (res.text or "").strip():
            from .batch import MalformedOutput

            raise MalformedOutput("empty response from the model")
        return {"key": it[0], "response": res.text}

    keyed_need = list(keyed(enumerate(need, start=1), lambda r: content_key(r.get("prompt"), r.get("messages"))))
    await _run(keyed_need, work, cache, "respond", concurrency, s, progress)
    done = {r["key"]: r["response"] for r in ResumableWriter(cache).existing if "key" in r}
    out = []
    for (key, _, rec) in keyed_need:
        if key in done:
            out.append({**rec, "response": done[key]})
    return [it for it in items if isinstance(it.get("response"), str)] + out
