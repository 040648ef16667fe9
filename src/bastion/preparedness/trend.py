"""Trends across scheduled runs of one target: levels and ASR per category, and regressions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .evidence import RunEvidence
from .profile import Profile
from .scorecard import comparable_runs, score
from .stats import two_proportion_p


def compute_trend(evidences: Sequence[RunEvidence], profile: Profile, target: str = "") -> dict[str, Any]:
    """Score each run (oldest first) and flag a category whose ASR is significantly higher than its baseline
    (one-sided two-proportion test at the profile's `regression_alpha`).

    A category's baseline is the latest earlier run that completed with attempts in that category: a failed,
    interrupted or still running run, or one that made no attempt there, is never a baseline (it would hide a
    regression), though its own attempts are still tested against the baseline. Each run row carries its
    `status`. A category fed by seeds chosen one by one (cbrn, cybersecurity) is not tested across runs stored
    before and after seed-level tracking (whole hazards against single seeds): its entry names that baseline in
    `baseline_not_comparable`, the pair is listed in `not_compared`, and the run becomes the next baseline."""
    runs = sorted(evidences, key=lambda e: e.created_at)
    cats = [c.id for c in profile.categories]
    out_runs: list[dict[str, Any]] = []
    regressions: list[dict[str, Any]] = []
    not_compared: list[dict[str, Any]] = []
    base: dict[str, tuple[RunEvidence, int, int]] = {}  # category -> (run, attempts, successes)
    for ev in runs:
        card = score(ev, profile)
        row: dict[str, Any] = {"run_id": ev.run_id, "created_at": ev.created_at.isoformat(), "status": ev.status,
                               "overall_level": card.overall_level, "decision": card.decision,
                               "over_refusal": card.over_refusal["rate"], "categories": {}}
        n_all = sum(c.attempts for c in ev.categories.values())
        row["asr_all"] = sum(c.successes for c in ev.categories.values()) / n_all if n_all else None
        for c, pc in zip(card.categories, profile.categories, strict=True):
            entry = {"level": c.post_level, "asr": c.asr, "ci_high": c.ci_high, "attempts": c.attempts,
                     "tracked": c.tracked, "regression": False}
            n1, k1, _ = ev.aggregate(*profile.select(pc))
            comparable = c.category not in base or comparable_runs(profile, pc, base[c.category][0], ev)
            if not comparable:  # per-seed against whole-hazard evidence: different prompts, no regression test
                entry["baseline_not_comparable"] = base[c.category][0].run_id
                not_compared.append({"run_id": ev.run_id, "baseline_run_id": base[c.category][0].run_id,
                                     "category": c.category})
            if c.category in base and n1 and comparable:
                prev, n0, k0 = base[c.category]
                p = two_proportion_p(k1, n1, k0, n0)
                if k1 / n1 > k0 / n0 and p < profile.regression_alpha:
                    entry["regression"] = True
                    regressions.append({"run_id": ev.run_id, "baseline_run_id": prev.run_id, "category": c.category,
                                        "asr": k1 / n1, "baseline_asr": k0 / n0, "p_value": p})
            if ev.status == "completed" and n1:
                base[c.category] = (ev, n1, k1)
            row["categories"][c.category] = entry
        out_runs.append(row)
    return {"target": target or (runs[-1].target if runs else ""), "framework": profile.name, "categories": cats,
            "runs": out_runs, "regressions": regressions, "not_compared": not_compared}


def not_compared_text(g: dict[str, Any]) -> str:
    """One line for a category a trend did not test for a regression."""
    return (f"{g['category']}: run {g['run_id']} against run {g['baseline_run_id']}; one of them was stored before "
            "prompts were tracked one by one and counts the whole hazard (different prompts)")


__all__ = ["compute_trend", "not_compared_text"]
