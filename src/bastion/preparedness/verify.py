"""Tamper evidence: recompute a scorecard's SHA-256 from the store and re-derive the whole scorecard.

Scorecards carry `digest_version`. Version 2 (current) digests each run's record, all its attempt columns and
its turns (`Store.attempts_sha256`), and `verify` re-derives the whole scorecard and compares every field but
the volatile ones. A scorecard without `digest_version` was written before version 2: its digest covers the
attempts' content columns only, and only its decision and overall level are re-derived; `verify` says so."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from .profile import Profile
from .safeguards import SafeguardsReport
from .scorecard import SCORECARD_DIGEST_VERSION, compute_evidence_sha256, score
from .store_adapter import evidence_from_store, open_store

REQUIRED = ("run_id", "config", "attempts_sha256", "evidence_sha256", "decision", "created_at")
VOLATILE = ("db",)  # where the store was when the scorecard was written; `created_at` is re-used, not compared
LEGACY_NOTE = ("note: this scorecard was written before digest version 2: its digest covers the stored attempts' "
               "content only (not turns, latency, tokens or the run record), and only its decision and overall "
               "level are re-derived; run `bastion scorecard` again for full coverage")


def _check_shape(card: dict[str, Any]) -> int:
    """Validate the scorecard's structure; return its digest version. Raises ValueError (one line)."""
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"not a Bastion scorecard: missing {', '.join(missing)}")
    if not isinstance(card["config"], dict):
        raise ValueError(f"not a Bastion scorecard: `config` must be an object, got {type(card['config']).__name__}")
    if not isinstance(card["attempts_sha256"], dict):
        raise ValueError("not a Bastion scorecard: `attempts_sha256` must be an object, got "
                         f"{type(card['attempts_sha256']).__name__}")
    for key in ("run_id", "evidence_sha256", "decision", "created_at"):
        if not isinstance(card[key], str):
            raise ValueError(f"not a Bastion scorecard: `{key}` must be a string, got {type(card[key]).__name__}")
    for key in ("pre_run_id", "baseline_run_id"):
        if card["config"].get(key) is not None and not isinstance(card["config"][key], str):
            raise ValueError(f"not a Bastion scorecard: `config.{key}` must be a string or null")
    if not isinstance(card["config"].get("profile"), dict):
        raise ValueError("not a Bastion scorecard: `config.profile` must be an object")
    version = card.get("digest_version", 1)
    if version not in (1, SCORECARD_DIGEST_VERSION) or isinstance(version, bool):
        raise ValueError(f"unsupported scorecard digest_version {version!r} (this Bastion knows 1 and "
                         f"{SCORECARD_DIGEST_VERSION}); use the Bastion version that wrote it")
    try:
        datetime.fromisoformat(card["created_at"])
    except ValueError:
        raise ValueError(f"not a Bastion scorecard: `created_at` {card['created_at']!r} is not an ISO date") from None
    return int(version)


def _one_line(e: ValidationError, what: str) -> str:
    err = e.errors()[0]
    loc = ".".join(str(x) for x in err["loc"]) or "(document)"
    return f"the scorecard's {what} is invalid: {loc}: {err['msg']}" + (
        f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else "")


def _diff(recorded: Any, derived: Any, path: str = "") -> list[str]:
    """Paths at which two JSON values differ."""
    if isinstance(recorded, dict) and isinstance(derived, dict):
        out = []
        for k in sorted(set(recorded) | set(derived), key=str):
            out += _diff(recorded.get(k, "<missing>"), derived.get(k, "<missing>"), f"{path}.{k}" if path else str(k))
        return out
    if isinstance(recorded, list) and isinstance(derived, list) and len(recorded) == len(derived):
        out = []
        for i, (a, b) in enumerate(zip(recorded, derived, strict=True)):
            out += _diff(a, b, f"{path}[{i}]")
        return out
    return [] if recorded == derived else [path or "(scorecard)"]


def verify_scorecard(card: dict[str, Any], db: str | None = None, notes: list[str] | None = None) -> list[str]:
    """Problems found (empty: the scorecard matches the store). Raises ValueError/KeyError/OSError for unusable
    input. `notes`, when given, receives remarks that are not failures (an old digest version)."""
    version = _check_shape(card)
    if version == 1 and notes is not None:
        notes.append(LEGACY_NOTE)
    cfg = card["config"]
    recorded_db = card.get("db")
    store = open_store(db or (recorded_db if isinstance(recorded_db, str) else None))
    runs = {"post": card["run_id"], "pre": cfg.get("pre_run_id"), "baseline": cfg.get("baseline_run_id")}
    problems: list[str] = []
    digests: dict[str, str | None] = {}
    for role, rid in runs.items():
        if rid is None:
            digests[role] = None
            continue
        try:
            store.get_run(rid)
        except KeyError:
            problems.append(f"{role} run {rid} is no longer in {store.path}")
            digests[role] = None
            continue
        digests[role] = store.attempts_sha256(rid, version=version)
        if digests[role] != card["attempts_sha256"].get(role):
            what = "stored attempts" if version == 1 else "stored run, attempts or turns"
            problems.append(f"the {what} of {role} run {rid} changed since the scorecard was made")
    if compute_evidence_sha256(digests, cfg) != card["evidence_sha256"]:
        if not problems:
            problems.append("the scorecard's configuration or digests were edited (evidence_sha256 mismatch)")
        else:
            problems.append("evidence_sha256 does not match the store")
    if problems:
        return problems
    # Same evidence and configuration: the scorecard must follow again.
    try:
        profile = Profile.model_validate(cfg["profile"])
    except ValidationError as e:
        raise ValueError(_one_line(e, "profile")) from None
    try:
        sg = SafeguardsReport.model_validate(cfg["safeguards"]) if cfg.get("safeguards") else None
    except ValidationError as e:
        raise ValueError(_one_line(e, "safeguards report")) from None
    max_age = cfg.get("max_age_s")
    if max_age is not None and (not isinstance(max_age, int) or isinstance(max_age, bool)):
        raise ValueError("not a Bastion scorecard: `config.max_age_s` must be an integer or null")
    age = timedelta(seconds=max_age) if max_age is not None else None
    dv = None if version == SCORECARD_DIGEST_VERSION else version
    ev = lambda rid: evidence_from_store(store, rid, digest_version=dv) if rid else None  # noqa: E731
    again = score(ev(runs["post"]), profile, pre=ev(runs["pre"]), safeguards=sg, baseline=ev(runs["baseline"]),
                  max_age=age, now=datetime.fromisoformat(card["created_at"]))
    if version == 1:
        for key in ("decision", "overall_level"):
            if card.get(key) != getattr(again, key):
                problems.append(f"{key} {card.get(key)!r} does not follow from the evidence ({getattr(again, key)!r})")
        return problems
    derived = json.loads(json.dumps(again.to_dict(), ensure_ascii=False))
    recorded = {k: v for k, v in card.items() if k not in VOLATILE}
    bad = _diff(recorded, derived)
    if bad:
        shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
        problems.append(f"scorecard field(s) {shown} do not follow from the evidence (re-derived from the store)")
        for key in ("decision", "overall_level", "exit_code"):
            if key in bad:
                problems.append(f"{key} {card.get(key)!r} does not follow from the evidence ({derived.get(key)!r})")
    return problems


__all__ = ["verify_scorecard", "LEGACY_NOTE"]
