"""What the gate scores: per-hazard attack counts and benign refusals of one red-team run.

Built from the store by `bastion.preparedness.store_adapter.evidence_from_store`, or directly in tests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class CategoryEvidence:
    """Attack attempts on harmful seeds of one hazard category (taxonomy code S1..S14 or `attack`), or on the seeds
    that feed one Preparedness tracked category (`RunEvidence.tracked`)."""

    category: str
    attempts: int
    successes: int
    refusals: int = 0
    per_technique: dict[str, tuple[int, int]] = field(default_factory=dict)  # technique -> (attempts, successes)
    hazards: tuple[str, ...] = ()  # for a tracked category: the hazards of its seeds

    def __post_init__(self) -> None:
        if not 0 <= self.successes <= self.attempts:
            raise ValueError(f"{self.category}: need 0 <= successes <= attempts, "
                             f"got {self.successes}/{self.attempts}")


@dataclass(frozen=True)
class Example:
    """One stored attempt, for the report's worst examples (text is redacted when rendered by default)."""

    category: str
    technique: str
    prompt: str
    reply: str
    score: float = 1.0
    seed_id: str = ""
    attempt_id: str = ""


@dataclass
class RunEvidence:
    """Everything the scorecard needs from one run."""

    run_id: str
    target: str
    created_at: datetime
    categories: dict[str, CategoryEvidence]
    benign_attempts: int = 0
    benign_refusals: int = 0
    status: str = "completed"  # the store's run status; anything else does not deploy
    config: dict[str, Any] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    attempts_sha256: str | None = None  # set by the store adapter: digest of the stored attempt rows
    # Attempts by the Preparedness tracked category their seed feeds (cbrn, cybersecurity, ...), decided per seed
    # when the run was made. Attempts stored before that was recorded count by their hazard's taxonomy mapping;
    # None (evidence built by hand from `categories` alone): every attempt counts that way.
    tracked: dict[str, CategoryEvidence] | None = None
    tracked_by_hazard: int = 0  # how many harmful attempts had no recorded tracked category (mapped by hazard)

    def __post_init__(self) -> None:
        if self.created_at.tzinfo is None:
            self.created_at = self.created_at.replace(tzinfo=timezone.utc)
        if not 0 <= self.benign_refusals <= self.benign_attempts:
            raise ValueError(f"need 0 <= benign_refusals <= benign_attempts, got "
                             f"{self.benign_refusals}/{self.benign_attempts}")

    def aggregate(self, hazards: tuple[str, ...], tracked: str | None = None
                  ) -> tuple[int, int, dict[str, tuple[int, int]]]:
        """Sum attempts, successes and per-technique counts over some hazard codes or, with `tracked`, over the
        seeds that feed that Preparedness tracked category (then `hazards` is ignored)."""
        n = k = 0
        tech: dict[str, list[int]] = {}
        sources = [self.by_tracked().get(tracked)] if tracked is not None else [self.categories.get(c) for c in hazards]
        for ce in sources:
            if ce is None:
                continue
            n += ce.attempts
            k += ce.successes
            for t, (tn, tk) in ce.per_technique.items():
                acc = tech.setdefault(t, [0, 0])
                acc[0] += tn
                acc[1] += tk
        return n, k, {t: (a, b) for t, (a, b) in tech.items()}

    def by_tracked(self) -> dict[str, CategoryEvidence]:
        """Evidence per Preparedness tracked category: as recorded per seed, or (`tracked` None) by hazard."""
        return self.tracked if self.tracked is not None else _tracked_by_hazard(self)

    def counted_by_hazard(self) -> bool:
        """True when (some of) its tracked-category evidence comes from whole hazards: a run stored before
        seed-level tracking, or evidence built from `categories` alone. Such evidence and per-seed evidence
        measure different prompts and are not compared for regressions."""
        return self.tracked is None or self.tracked_by_hazard > 0

    def techniques(self) -> list[str]:
        return sorted({t for ce in self.categories.values() for t in ce.per_technique})

    def digest(self) -> str:
        """SHA-256 of the attempts behind this evidence: the store's digest when known, else of the counts."""
        if self.attempts_sha256:
            return self.attempts_sha256
        payload = {
            "run_id": self.run_id,
            "categories": {c: asdict(e) for c, e in sorted(self.categories.items())},
            "benign": [self.benign_attempts, self.benign_refusals],
        }
        if self.tracked is not None:
            payload["tracked"] = {c: asdict(e) for c, e in sorted(self.tracked.items())}
        return sha256_json(payload)


def _tracked_by_hazard(ev: RunEvidence) -> dict[str, CategoryEvidence]:
    """Per-hazard evidence summed into the Preparedness categories the taxonomy maps each hazard to."""
    from bastion.taxonomy import PREPAREDNESS_CATEGORIES, load_taxonomy

    tax = load_taxonomy()
    out = {}
    for name in PREPAREDNESS_CATEGORIES:
        hazards = tuple(c for c in tax.codes_for_preparedness(name) if c in ev.categories)
        if hazards:
            n, k, tech = ev.aggregate(hazards)
            out[name] = CategoryEvidence(name, n, k, sum(ev.categories[c].refusals for c in hazards), tech, hazards)
    return out


def sha256_json(obj: Any) -> str:
    """SHA-256 of a canonical JSON encoding (sorted keys, no whitespace)."""
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


__all__ = ["CategoryEvidence", "Example", "RunEvidence", "sha256_json"]
