"""Hazard taxonomy: MLCommons-aligned categories S1-S14 plus `attack`, loaded from YAML data."""

from __future__ import annotations

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


HAZARD_CODES = ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9", "S10", "S11", "S12", "S13", "S14")

__all__ = ["Category", "Taxonomy", "load_taxonomy", "HAZARD_CODES", "PREPAREDNESS_CATEGORIES"]
