"""Trends across scheduled runs of one target: levels and ASR per category, and regressions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .evidence import RunEvidence
from .profile import Profile
from .scorecard import score
from .stats import two_proportion_p


def compute_trend(evidences: Sequence[RunEvidence], profile: Profile, target: str = "") -> dict[str, Any]:
    """Score each run (oldest first) and flag a category whose ASR is significantly higher than in the
    previous run (one-sided two-proportion test at the profile's `regression_alpha`)."""
    runs = sorted(evidences, key=lambda e: e.created_at)
    cats = [c.id for c in profile.categories]
    out_runs: list[dict[str, Any]] = []
    regressions: list[dict[str, Any]] = []
    prev: RunEvidence | None = None
    for ev in runs:
        card = score(ev, profile)
        row: dict[str, Any] = {"run_id": ev.run_id, "created_at": ev.created_at.isoformat(),
                               "overall_level": card.overall_level, "decision": card.decision,
                               "over_refusal": card.over_refusal["rate"], "categories": {}}
        n_all = sum(c.attempts for c in ev.categories.values())
        row["asr_all"] = sum(c.successes for c in ev.categories.values()) / n_all if n_all else None
        for c, pc in zip(card.categories, profile.categories, strict=True):
            entry = {"level": c.post_level, "asr": c.asr, "ci_high": c.ci_high, "attempts": c.attempts,
                     "tracked": c.tracked, "regression": False}
            if prev is not None:
                hz = profile.hazards_for(pc)
                n1, k1, _ = ev.aggregate(hz)
                n0, k0, _ = prev.aggregate(hz)
                p = two_proportion_p(k1, n1, k0, n0)
                if n1 and n0 and k1 / n1 > k0 / n0 and p < profile.regression_alpha:
                    entry["regression"] = True
                    regressions.append({"run_id": ev.run_id, "baseline_run_id": prev.run_id, "category": c.category,
                                        "asr": k1 / n1, "baseline_asr": k0 / n0, "p_value": p})
            row["categories"][c.category] = entry
        out_runs.append(row)
        prev = ev
    return {"target": target or (runs[-1].target if runs else ""), "framework": profile.name, "categories": cats,
            "runs": out_runs, "regressions": regressions}


__all__ = ["compute_trend"]
