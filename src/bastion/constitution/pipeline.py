"""File-to-file pipelines behind the `bastion constitution` commands: resumable, concurrent, and never
crashing the batch on one bad item (failures go to OUT.failed.jsonl with their reason and are retried on
the next run)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.jsonl import LineError, loads_line

from .batch import MalformedOutput, Outcome, run_batch
from .jsonl import (
    BadLine,
    ResumableWriter,
    atomic_write_bytes,
    check_settings,
    content_key,
    failed_path,
    keyed,
    read_jsonl,
    side_path,
    ties_path,
    write_state,
)
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
    written: int = 0  # records appended to OUT (label: ties sent to the ties file are not counted)
    failed: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)
    damaged_out_lines: list[int] = field(default_factory=list)
    damaged_to: str | None = None  # where damaged OUT lines were moved
    incomplete_moved: int = 0  # synth: records of partly written principles moved aside (and redone)
    incomplete_to: str | None = None
    failed_out: str | None = None
    reasons: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    ties: int = 0  # label: chosen_prob exactly 0.5
    order_disagree: int = 0  # label: the two orderings preferred different responses
    ties_out: str | None = None  # where ties went (None: kept in OUT, or none)
    labels: dict[str, Counter] = field(default_factory=dict)  # synth: principle id -> {label: records in OUT}


def _failure_writer(out: str | Path) -> ResumableWriter:
    return ResumableWriter(failed_path(out), key_field=None)


def compact_failed(out: str | Path, done: set[str]) -> str | None:
    """Rewrite OUT.failed.jsonl to the records still failing: drop those whose key is now done and keep
    only the latest entry per key. Removes the file when nothing is still failing; returns its path or None."""
    fp = failed_path(out)
    if not fp.exists():
        return None
    latest: dict[str, bytes] = {}
    for n, bline in enumerate(fp.read_bytes().splitlines(keepends=True)):
        if not bline.strip():
            continue
        try:
            obj = loads_line(bline.decode("utf-8"), strict=False)
            key = str(obj.get("key")) if isinstance(obj, dict) and obj.get("key") is not None else f"#line{n}"
        except (UnicodeDecodeError, LineError):
            key = f"#line{n}"
        if key in done:
            continue
        latest.pop(key, None)  # keep the order of the latest attempt
        latest[key] = bline if bline.endswith(b"\n") else bline + b"\n"
    if not latest:
        fp.unlink()
        return None
    atomic_write_bytes(fp, b"".join(latest.values()))
    return str(fp)


async def _run(items: list[tuple[str, int, dict[str, Any]]], work: Callable[[tuple[str, int, dict[str, Any]]], Any],
               out: str | Path, stage: str, concurrency: int, summary: Summary,
               progress: Progress | None, *, settings: dict[str, Any] | None = None,
               record_fields: Sequence[str] = (), side: tuple[Path, Callable[[dict[str, Any]], bool]] | None = None
               ) -> Summary:
    """Run `work` over the items not yet in OUT. `settings` are checked against (and saved in) OUT's resume
    state; `side` = (path, pred): results for which pred is true go to that file instead of OUT."""
    writer = ResumableWriter(out)
    summary.damaged_out_lines = writer.damaged
    summary.damaged_to = str(writer.damaged_to) if writer.damaged_to else None
    if settings is not None:
        write_state(out, check_settings(out, settings, writer.existing, record_fields))
    side_writer = ResumableWriter(side[0]) if side else None
    done = set(writer.done) | (side_writer.done if side_writer else set())
    todo = [it for it in items if it[0] not in done]
    summary.skipped = len(items) - len(todo)
    if progress and summary.skipped:
        progress(summary.skipped)
    fails = _failure_writer(out)

    def on_outcome(oc: Outcome) -> None:
        key, line, rec = oc.item
        if oc.error is None:
            if side_writer is not None and side is not None and side[1](oc.result):
                side_writer.write(oc.result)
                summary.ties_out = str(side_writer.path)
            else:
                writer.write(oc.result)
                summary.written += 1
            done.add(key)
        else:
            fails.write({"key": key, "line": line, "stage": stage, "status": "unlabelled" if stage == "label"
                         else "failed", "reason": oc.error, "input": rec,
                         "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if progress:
            progress(1)

    try:
        stats = await run_batch(todo, work, concurrency=concurrency, on_outcome=on_outcome)
    finally:
        writer.close()
        fails.close()
        if side_writer is not None:
            side_writer.close()
        summary.failed_out = compact_failed(out, done)
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


def revise_settings(reviser: Reviser, seed: int | None) -> dict[str, Any]:
    """What a revise output depends on (a resumed run must use the same)."""
    return {"model": reviser.client.model, "seed": seed, "rounds": reviser.rounds,
            "constitution": reviser.constitution.name, "principles": reviser.constitution.ids}


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

    return await _run(items, work, out, "revise", concurrency, s, progress,
                      settings=revise_settings(reviser, seed), record_fields=("model", "seed"))


async def revise_items(items: list[dict[str, Any]], out: str | Path, reviser: Reviser, *, seed: int | None = None,
                       concurrency: int = 8, progress: Progress | None = None,
                       on_total: StartProgress | None = None) -> Summary:
    """Like revise_file, for in-memory items (e.g. attacks from the red-team store)."""
    s = Summary(str(out))
    keyed_items = list(keyed(enumerate(items, start=1),
                             lambda r: content_key(r.get("prompt"), r.get("response"))))
    s.total = len(keyed_items)
    if on_total:
        on_total(len(keyed_items))

    async def work(it: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        return await revise_record(reviser, it[0], it[2], seed)

    return await _run(keyed_items, work, out, "revise", concurrency, s, progress,
                      settings=revise_settings(reviser, seed), record_fields=("model", "seed"))


def _check_pair(rec: dict[str, Any]) -> str | None:
    if rec["response_a"] == rec["response_b"]:
        return "response_a and response_b are identical; nothing to compare"
    return None


def is_tie(rec: dict[str, Any]) -> bool:
    """A label that says nothing about which response is better: an exact tie (e.g. two hard labels that
    each picked the first slot) or hard labels whose two orderings preferred different responses."""
    return bool(rec.get("tie")) or (rec.get("label_type") == "hard" and rec.get("orderings_agree") is False)


async def label_file(in_path: str | Path, out: str | Path, labeller: FeedbackLabeller, *, seed: int | None = None,
                     concurrency: int = 8, progress: Progress | None = None,
                     on_total: StartProgress | None = None, keep_ties: bool = False) -> Summary:
    """`{prompt, response_a, response_b}` lines -> TRL preference lines with soft labels. Unless `keep_ties`,
    ties and order-disagreeing labels go to OUT.ties.jsonl instead of OUT (DPO/reward trainers would read
    them as real preferences)."""
    s = Summary(str(out))
    loaded = read_jsonl(in_path, ("prompt", "response_a", "response_b"), check=_check_pair)
    s.bad_lines = loaded.bad
    items = list(keyed(loaded.records, lambda r: content_key(r["prompt"], r["response_a"], r["response_b"])))
    s.total = len(items)
    if on_total:
        on_total(len(items))

    async def work(it: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        rec = await label_record(labeller, it[0], it[2], seed)
        s.ties += bool(rec.get("tie"))
        s.order_disagree += rec.get("orderings_agree") is False
        return rec

    settings = {"model": labeller.client.model, "seed": seed, "cot": labeller.cot,
                "constitution": labeller.constitution.name, "principles": labeller.constitution.ids}
    return await _run(items, work, out, "label", concurrency, s, progress, settings=settings,
                      record_fields=("model", "seed", "cot"),
                      side=None if keep_ties else (ties_path(out), is_tie))


async def synth_file(out: str | Path, synth: Synthesizer, *, concurrency: int = 4,
                     progress: Progress | None = None, on_total: StartProgress | None = None) -> Summary:
    """One resumable unit per principle; each principle's records are appended in one write and then marked
    complete (with its record count) in OUT.state.json. On resume a principle is done only when it is marked
    complete and OUT holds exactly that many of its records; the records of a partly written principle are
    moved to OUT.incomplete and the principle is redone."""
    s = Summary(str(out))
    writer = ResumableWriter(out, key_field="principle_id")
    s.damaged_out_lines = writer.damaged
    s.damaged_to = str(writer.damaged_to) if writer.damaged_to else None
    state = check_settings(out, synth.settings(), writer.existing)
    counts = Counter(str(r.get("principle_id")) for r in writer.existing)
    marks = state.get("principles_done")
    if isinstance(marks, dict):
        complete = {pid for pid, n in marks.items() if counts.get(pid, 0) == n}
    else:  # OUT written before completion marks: all but a principle cut short by a crash count as done
        complete = set(counts)
        if writer.damaged and writer.existing:
            complete.discard(str(writer.existing[-1].get("principle_id")))
        marks = {pid: counts[pid] for pid in complete}
    partial = set(counts) - complete
    if partial:
        side = side_path(out, ".incomplete")
        s.incomplete_moved = writer.drop(lambda r: str(r.get("principle_id")) in partial, side)
        s.incomplete_to = str(side)
        s.notes.append(f"principle(s) {', '.join(sorted(partial))} were only partly in {out}: "
                       f"{s.incomplete_moved} record(s) moved to {side}; redoing them")
    marks = {pid: n for pid, n in marks.items() if pid in complete}
    state["principles_done"] = marks
    write_state(out, state)
    principles = synth.constitution.principles
    todo = [p for p in principles if p.id not in complete]
    s.total, s.skipped = len(principles), len(principles) - len(todo)
    if on_total:
        on_total(len(todo))
    fails = _failure_writer(out)
    done: set[str] = set(complete)
    for r in writer.existing:
        if str(r.get("principle_id")) in complete:
            s.labels.setdefault(str(r.get("principle_id")), Counter())[r.get("label")] += 1

    def on_outcome(oc: Outcome) -> None:
        if oc.error is None:
            recs, notes = oc.result
            writer.write_many([r.to_dict() for r in recs])
            s.labels[oc.item.id] = Counter(r.label for r in recs)
            marks[oc.item.id] = len(recs)
            write_state(out, state)
            done.add(oc.item.id)
            s.written += len(recs)
            s.notes += notes
        else:
            fails.write({"key": oc.item.id, "stage": "synth", "status": "failed", "reason": oc.error,
                         "input": {"principle_id": oc.item.id}, "time": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if progress:
            progress(1)

    try:
        stats = await run_batch(todo, synth.aprinciple, concurrency=concurrency, on_outcome=on_outcome)
    finally:
        writer.close()
        fails.close()
        s.failed_out = compact_failed(out, done)
    s.failed = stats.failed
    s.reasons = stats.reasons
    return s


async def fill_responses(items: list[dict[str, Any]], client: Any, cache: str | Path, *, concurrency: int = 8,
                         temperature: float = 0.7, progress: Progress | None = None,
                         on_total: StartProgress | None = None) -> tuple[list[dict[str, Any]], Summary]:
    """Give every item without a `response` one from `client` (cached, resumable, in `cache`). Returns the
    items that have a response and the answering step's Summary (its failures are in CACHE.failed.jsonl)."""
    s = Summary(str(cache))
    need = [it for it in items if not isinstance(it.get("response"), str)]
    if not need:
        return items, s

    async def work(it: tuple[str, int, dict[str, Any]]) -> dict[str, Any]:
        rec = it[2]
        msgs = rec.get("messages") or [{"role": "user", "content": rec["prompt"]}]
        res = await client.achat(msgs, temperature=temperature)
        if not (res.text or "").strip():
            raise MalformedOutput("empty response from the model")
        return {"key": it[0], "response": res.text}

    keyed_need = list(keyed(enumerate(need, start=1), lambda r: content_key(r.get("prompt"), r.get("messages"))))
    s.total = len(keyed_need)
    if on_total:
        on_total(len(keyed_need))
    await _run(keyed_need, work, cache, "respond", concurrency, s, progress, settings={"model": client.model})
    done = {r["key"]: r["response"] for r in ResumableWriter(cache).existing if "key" in r}
    out = []
    for (key, _, rec) in keyed_need:
        if key in done:
            out.append({**rec, "response": done[key]})
    return [it for it in items if isinstance(it.get("response"), str)] + out, s
