"""Hazard taxonomy: MLCommons-aligned categories S1-S14 plus `attack`, loaded from YAML data."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from types import MappingProxyType

import yaml

PREPAREDNESS_CATEGORIES = ("cbrn", "cybersecurity", "persuasion", "model_autonomy")


@dataclass(frozen=True)
class Category:
    """One hazard category."""

    code: str
    name: str
    preparedness: str | None
    description: str
    in_scope: tuple[str, ...]
    out_of_scope: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    """The full set of categories, in a stable order."""

    version: int
    categories: tuple[Category, ...]
    preparedness_names: Mapping[str, Mapping[str, str]]  # read-only: the taxonomy is shared by every caller in the process

    def __hash__(self) -> int:
        return hash((self.version, self.categories))

    def __reduce__(self) -> tuple:
        # mappingproxy cannot be pickled (a Ray task, a spawned worker): pickle plain dicts, re-wrap on load.
        names = {k: dict(v) if isinstance(v, Mapping) else v for k, v in self.preparedness_names.items()}
        return _taxonomy, (self.version, self.categories, names)

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.categories)

    @property
    def hazard_codes(self) -> tuple[str, ...]:
        """S1..S14, without `attack`."""
        return tuple(c.code for c in self.categories if c.code != "attack")

    def get(self, code: str) -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise KeyError(f"unknown hazard category {code!r}; known: {', '.join(self.codes)}")

    def preparedness_of(self, code: str) -> str | None:
        return self.get(code).preparedness

    def codes_for_preparedness(self, name: str) -> tuple[str, ...]:
        return tuple(c.code for c in self.categories if c.preparedness == name)


def _taxonomy(version: int, categories: tuple[Category, ...], names: dict) -> Taxonomy:
    return Taxonomy(version, categories, MappingProxyType(
        {k: MappingProxyType(dict(v)) if isinstance(v, dict) else v for k, v in names.items()}))


@lru_cache(maxsize=1)
def load_taxonomy() -> Taxonomy:
    """Load the shipped taxonomy (cached: parsed once per process)."""
    raw = yaml.safe_load(resources.files(__package__).joinpath("categories.yaml").read_text("utf-8"))
    cats = tuple(
        Category(
            code=str(c["code"]),
            name=c["name"],
            preparedness=c.get("preparedness"),
            description=c["description"],
            in_scope=tuple(c.get("in_scope", ())),
            out_of_scope=tuple(c.get("out_of_scope", ())),
        )
        for c in raw["categories"]
    )
    return _taxonomy(int(raw["version"]), cats, raw["preparedness_categories"])


@dataclass(frozen=True)
class TrackedRule:
    """One rule of `tracked.yaml`: seeds of `hazards` whose source category and text match feed `tracked`."""

    tracked: str
    hazards: tuple[str, ...]
    source_category: re.Pattern[str] | None = None
    text: re.Pattern[str] | None = None

    def matches(self, text: str, hazard: str, source_category: str = "") -> bool:
        return (hazard in self.hazards
                and (self.source_category is None or bool(self.source_category.search(source_category or "")))
                and (self.text is None or bool(self.text.search(text))))


@dataclass(frozen=True)
class TrackedRules:
    """Which Preparedness tracked category each harmful seed feeds (`tracked.yaml`: first matching rule wins)."""

    version: int
    min_seeds: int
    rules: tuple[TrackedRule, ...]

    def whole_hazard(self, tracked: str) -> bool:
        """True when `tracked` takes every seed of its hazards (its rules have no pattern, and no earlier rule
        takes a seed of those hazards elsewhere): then its seeds are exactly its hazards' seeds."""
        mine = [r for r in self.rules if r.tracked == tracked]
        if not mine or any(r.text is not None or r.source_category is not None for r in mine):
            return False
        hazards = {h for r in mine for h in r.hazards}
        first = self.rules.index(mine[0])
        return not any(set(r.hazards) & hazards for r in self.rules[:first] if r.tracked != tracked)

    def classify(self, text: str, hazard: str, source_category: str = "") -> str | None:
        """The tracked category a seed of `hazard` with this text feeds, or None (it feeds none)."""
        for r in self.rules:
            if r.matches(text, hazard, source_category):
                return r.tracked
        return None


def _pattern(raw: object, where: str) -> re.Pattern[str] | None:
    """A pattern, or a list of alternatives, compiled case-insensitive; None when absent."""
    if raw is None:
        return None
    alts = [raw] if isinstance(raw, str) else raw
    if not isinstance(alts, list) or not alts or not all(isinstance(a, str) and a for a in alts):
        raise ValueError(f"{where}: a pattern is a string or a non-empty list of strings")
    try:
        return re.compile("|".join(f"(?:{a})" for a in alts), re.IGNORECASE)
    except re.error as e:
        raise ValueError(f"{where}: bad regular expression: {e}") from None


def parse_tracked_rules(raw: Mapping, codes: tuple[str, ...]) -> TrackedRules:
    """Validate `tracked.yaml`'s content (raises ValueError naming the rule)."""
    rules = []
    for i, r in enumerate(raw.get("rules") or []):
        where = f"tracked.yaml rules[{i}]"
        if not isinstance(r, Mapping) or set(r) - {"tracked", "hazards", "source_category", "text"}:
            raise ValueError(f"{where}: a rule has keys tracked, hazards, source_category and text only")
        if r.get("tracked") not in PREPAREDNESS_CATEGORIES:
            raise ValueError(f"{where}: tracked must be one of {', '.join(PREPAREDNESS_CATEGORIES)}, "
                             f"got {r.get('tracked')!r}")
        hazards = tuple(r.get("hazards") or ())
        bad = [h for h in hazards if h not in codes]
        if not hazards or bad:
            raise ValueError(f"{where}: hazards must be a non-empty list of hazard codes (unknown: {bad})")
        rules.append(TrackedRule(r["tracked"], hazards, _pattern(r.get("source_category"), where),
                                 _pattern(r.get("text"), where)))
    return TrackedRules(int(raw.get("version", 1)), int(raw.get("min_seeds", 0)), tuple(rules))


@lru_cache(maxsize=1)
def load_tracked_rules() -> TrackedRules:
    """The shipped seed-level Preparedness rules (cached: parsed once per process)."""
    raw = yaml.safe_load(resources.files(__package__).joinpath("tracked.yaml").read_text("utf-8"))
    return parse_tracked_rules(raw, load_taxonomy().codes)


def tracked_category(text: str, hazard: str, source_category: str = "") -> str | None:
    """The Preparedness tracked category a harmful seed feeds (cbrn, cybersecurity, ...) or None: decided per
    seed from its hazard, its text and its source's own category, by the rules in `tracked.yaml`."""
    return load_tracked_rules().classify(text, hazard, source_category)


def hazard_sort_key(code: str) -> tuple[int, str]:
    """Orders hazard codes S1..S14 by number, anything else (`attack`, unknown text) after them."""
    return (int(code[1:]), code) if code[:1] == "S" and code[1:].isdigit() else (1000, code)


HAZARD_CODES = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13", "S14")

__all__ = ["Category", "Taxonomy", "load_taxonomy", "HAZARD_CODES", "PREPAREDNESS_CATEGORIES", "TrackedRule",
           "TrackedRules", "hazard_sort_key", "load_tracked_rules", "parse_tracked_rules", "tracked_category"]
