"""Tamper evidence: recompute a scorecard's SHA-256 from the store and re-derive its decision."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .profile import Profile
from .safeguards import SafeguardsReport
from .scorecard import compute_evidence_sha256, score
from .store_adapter import evidence_from_store, open_store

REQUIRED = ("run_id", "config", "attempts_sha256", "evidence_sha256", "decision", "created_at")


def verify_scorecard(card: dict[str, Any], db: str | None = None) -> list[str]:
    """Problems found (empty: the scorecard matches the store). Raises for unusable input."""
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ValueError(f"not a Bastion scorecard: missing {', '.join(missing)}")
    store = open_store(db or card.get("db"))
    cfg = card["config"]
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
        digests[role] = store.attempts_sha256(rid)
        if digests[role] != (card["attempts_sha256"] or {}).get(role):
            problems.append(f"the stored attempts of {role} run {rid} changed since the scorecard was made")
    if compute_evidence_sha256(digests, cfg) != card["evidence_sha256"]:
        if not problems:
            problems.append("the scorecard's configuration or digests were edited (evidence_sha256 mismatch)")
        else:
            problems.append("evidence_sha256 does not match the store")
    if problems:
        return problems
    # Same evidence and configuration: the decision must follow again.
    profile = Profile.model_validate(cfg["profile"])
    sg = SafeguardsReport.model_validate(cfg["safeguards"]) if cfg.get("safeguards") else None
    age = timedelta(seconds=cfg["max_age_s"]) if cfg.get("max_age_s") is not None else None
    ev = lambda rid: evidence_from_store(store, rid) if rid else None  # noqa: E731
    again = score(ev(runs["post"]), profile, pre=ev(runs["pre"]), safeguards=sg, baseline=ev(runs["baseline"]),
                  max_age=age, now=datetime.fromisoformat(card["created_at"]))
    for key in ("decision", "overall_level"):
        if card.get(key) != getattr(again, key):
            problems.append(f"{key} {card.get(key)!r} does not follow from the evidence ({getattr(again, key)!r})")
    return problems


__all__ = ["verify_scorecard"]
