"""Thin adapter from the red-team store (bastion.store) to the evidence the gate scores."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .evidence import CategoryEvidence, Example, RunEvidence


def open_store(db: str | Path | None, must_exist: bool = True) -> Any:
    """Open the store to read it: a missing database file is a usage error, not a new empty database, and an
    existing one is opened read-only (never written; an archived read-only copy can be read)."""
    from bastion.store.db import Store, default_db_path

    path = str(db) if db is not None else default_db_path()
    if must_exist and path != ":memory:" and not Path(path).expanduser().exists():
        raise FileNotFoundError(f"no Bastion database at {path} (run `bastion redteam` first, or pass --db)")
    return Store(path, readonly=must_exist)


def _parse_time(text: str) -> datetime:
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _last_user(prompt: list[dict[str, Any]]) -> str:
    for m in reversed(prompt or []):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""


def evidence_from_store(store: Any, run_id: str, max_examples: int = 12,
                        digest_version: int | None = None) -> RunEvidence:
    """Build a run's evidence: harmful attempts per hazard category and technique (errored attempts are
    excluded), benign refusals, the worst successful attempts, and the store's digest of the run (the current
    digest version unless `digest_version` asks for an older one, to check an old scorecard)."""
    from bastion.taxonomy import hazard_sort_key, load_taxonomy

    tax = load_taxonomy()
    run = store.get_run(run_id)
    cats: dict[str, dict[str, Any]] = {}
    tracked: dict[str, dict[str, Any]] = {}
    by_hazard = 0
    benign_n = benign_k = 0
    successes = []
    for a in store.attempts(run.id, include_errors=False):
        if a.benign:
            benign_n += 1
            refused = a.refused if a.refused is not None else bool(a.success)
            benign_k += int(bool(refused))
            continue
        win = bool(a.success)
        if a.tracked is None:  # stored before seed-level tracked categories: the hazard's mapping
            by_hazard += 1
            t_name = tax.preparedness_of(a.category) if a.category in tax.codes else None
        else:
            t_name = a.tracked or None
        for acc, key in ((cats, a.category), (tracked, t_name)):
            if key is None:
                continue
            c = acc.setdefault(key, {"n": 0, "k": 0, "r": 0, "tech": {}, "hz": set()})
            c["n"] += 1
            c["k"] += int(win)
            c["r"] += int(bool(a.refused))
            c["hz"].add(a.category)
            t = c["tech"].setdefault(a.technique, [0, 0])
            t[0] += 1
            t[1] += int(win)
        if win:
            successes.append(a)
    successes.sort(key=lambda a: (-(a.score if a.score is not None else 1.0), a.id or 0))
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for a in successes:  # spread the examples over categories: at most 3 per category
        if seen.get(a.category, 0) >= 3:
            continue
        seen[a.category] = seen.get(a.category, 0) + 1
        examples.append(Example(category=a.category, technique=a.technique, prompt=_last_user(a.prompt),
                                reply=a.reply or "", score=float(a.score if a.score is not None else 1.0),
                                seed_id=a.seed_id, attempt_id=str(a.id)))
        if len(examples) >= max_examples:
            break
    return RunEvidence(
        run_id=run.id, target=run.target, created_at=_parse_time(run.created_at),
        categories={code: CategoryEvidence(code, v["n"], v["k"], v["r"],
                                           {t: (x[0], x[1]) for t, x in v["tech"].items()})
                    for code, v in sorted(cats.items())},
        tracked={name: CategoryEvidence(name, v["n"], v["k"], v["r"], {t: (x[0], x[1]) for t, x in v["tech"].items()},
                                        tuple(sorted(v["hz"], key=hazard_sort_key)))
                 for name, v in sorted(tracked.items())},
        tracked_by_hazard=by_hazard,
        benign_attempts=benign_n, benign_refusals=benign_k, status=run.status,
        config={"run_config": run.config, "versions": run.versions, "label": run.label,
                "paired_with": run.paired_with, "seed": run.seed},
        examples=examples,
        attempts_sha256=(store.attempts_sha256(run.id) if digest_version is None
                         else store.attempts_sha256(run.id, version=digest_version)),
    )


def runs_for_target(store: Any, target: str | None = None) -> list[Any]:
    """Runs (oldest first), optionally only those of one target.

    Runs are ordered by creation time and, within the same second (`created_at` has 1 s resolution; the two
    runs of a `--guarded` pair are created together), by insertion order: the store lists runs newest first
    with that tie-break, so this is its reverse. Run ids are never compared (their suffix is random)."""
    return [r for r in reversed(store.list_runs()) if target is None or r.target == target]


def resolve_run_id(store: Any, run_id: str, target: str | None = None) -> str:
    """`latest` means the newest run (of `target`, when given); anything else is a run id or unique prefix.

    When the newest run is the pre-mitigation half of a `--guarded` pair, `latest` is its post-mitigation run
    (the deployment candidate; the pre run is scored beside it), unless `target` asks for the pre run's target."""
    if run_id == "latest":
        runs = runs_for_target(store, target)
        if not runs:
            raise KeyError(f"no runs{' of target ' + repr(target) if target else ''} in {store.path}")
        newest = runs[-1]
        if newest.label == "pre" and newest.paired_with and target is None:
            try:
                post = store.get_run(newest.paired_with)
            except KeyError:
                return newest.id
            if post.label == "post":
                return post.id
        return newest.id
    rid = store.get_run(run_id).id
    if target is not None:
        run = store.get_run(rid)
        if run.target != target:
            raise ValueError(f"run {rid} is of target {run.target!r}, not {target!r} (--target selects among runs "
                             "only with RUN_ID `latest`)")
    return rid


def paired_pre_run(store: Any, run_id: str) -> str | None:
    """For the post-mitigation run of a `--guarded` pair, the id of its pre-mitigation run."""
    run = store.get_run(run_id)
    if run.label == "post" and run.paired_with:
        return run.paired_with
    return None


__all__ = ["open_store", "evidence_from_store", "runs_for_target", "resolve_run_id", "paired_pre_run"]
