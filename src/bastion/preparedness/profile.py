"""Framework profiles: which categories are tracked, the level thresholds, and the gate's rules.

Profiles are YAML data (`profiles/*.yaml` in the package, or a user's file), validated with Pydantic."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from bastion.taxonomy import PREPAREDNESS_CATEGORIES, load_taxonomy
from bastion.yamlsrc import ConfigError, FieldErrors, load_model_file, load_yaml_text, validate

LEVELS: tuple[str, ...] = ("low", "medium", "high", "critical")
Level = Literal["low", "medium", "high", "critical"]
DEFAULT_PROFILE = "bastion-default"


def level_index(level: str) -> int:
    return LEVELS.index(level)


class LevelThresholds(BaseModel):
    """Lowest ASR statistic at which each level starts (Low is everything below `medium`)."""

    model_config = ConfigDict(extra="forbid")

    medium: float = Field(ge=0.0, le=1.0)
    high: float = Field(ge=0.0, le=1.0)
    critical: float = Field(ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _increasing(self) -> LevelThresholds:
        if not self.medium < self.high < self.critical:
            raise ValueError(f"thresholds must increase: medium ({self.medium}) < high ({self.high}) "
                             f"< critical ({self.critical})")
        return self

    def get(self, level: str) -> float:
        return float(getattr(self, level))


class ProfileCategory(BaseModel):
    """One framework category and where its evidence comes from: the attempts on seeds that feed a Preparedness
    tracked category (`preparedness`, decided per seed), or every attempt of some hazards (`hazards`)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    tracked: bool = True  # False: a research category, reported but never gating
    hazards: list[str] | None = None  # every attempt on seeds of these hazard codes
    # the attempts on seeds tracked as this Preparedness category (taxonomy/tracked.yaml); None with no `hazards`:
    # the category's own id, when that is a Preparedness category (cbrn, cybersecurity, persuasion, model_autonomy)
    preparedness: Literal["cbrn", "cybersecurity", "persuasion", "model_autonomy"] | None = None
    thresholds: LevelThresholds | None = None  # None: the profile's default_thresholds
    description: str = ""

    @field_validator("hazards")
    @classmethod
    def _known_hazards(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        codes = load_taxonomy().codes
        bad = [c for c in v if c not in codes]
        if bad:
            raise ValueError(f"unknown hazard code(s) {', '.join(map(repr, bad))}; known: {', '.join(codes)}")
        if len(set(v)) != len(v):
            raise ValueError("hazard codes are duplicated")
        return v


class Profile(BaseModel):
    """A framework profile. See docs/GATE.md for the meaning of each field."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str = ""
    version: int = 1
    description: str = ""
    reference: str = ""
    statistic: Literal["asr", "ci_high"] = "ci_high"  # which ASR figure the thresholds apply to
    confidence: float = Field(0.95, gt=0.5, lt=1.0)
    min_attempts: int = Field(1, ge=0)  # 0 acts as 1: a category with no attempts is always under-sampled
    undersampled_level: Level = "high"  # an under-sampled category cannot be ruled out below this level
    deploy_max_level: Level = "medium"  # deploy only if every tracked post-mitigation level is at most this
    develop_max_level: Level = "high"  # develop further only if every tracked post level is at most this
    safeguards_level: Level | None = None  # deploy at this level only with a sufficient safeguards report
    hardened_security_pre_level: Level | None = None  # pre-mitigation level that requires hardened security
    over_refusal_budget: float | None = Field(None, ge=0.0, le=1.0)
    over_refusal_statistic: Literal["rate", "ci_low", "ci_high"] = "rate"
    regression_alpha: float = Field(0.05, gt=0.0, lt=0.5)
    default_thresholds: LevelThresholds | None = None
    categories: list[ProfileCategory] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Profile:
        """Cross-field checks; each problem is reported at its own field (and so its line in the file)."""
        problems: list[tuple[tuple, str]] = []
        first: dict[str, int] = {}
        for i, c in enumerate(self.categories):
            if c.id in first:
                problems.append((("categories", i, "id"), f"category id {c.id!r} is duplicated (first in "
                                                          f"categories[{first[c.id]}])"))
            else:
                first[c.id] = i
        tax = load_taxonomy()
        for i, c in enumerate(self.categories):
            if c.thresholds is None and self.default_thresholds is None:
                problems.append((("categories", i, "thresholds"), f"category {c.id!r} has no thresholds and the "
                                                                  "profile has no default_thresholds"))
            if c.hazards is not None and c.preparedness is not None:
                problems.append((("categories", i, "preparedness"), f"category {c.id!r} has both `hazards` and "
                                                                    "`preparedness`; give one"))
            elif c.hazards is None and c.preparedness is None and not tax.codes_for_preparedness(c.id):
                problems.append((("categories", i, "hazards"), f"category {c.id!r} needs `hazards` or "
                                                               "`preparedness`: its id is not a Preparedness "
                                                               f"category ({', '.join(PREPAREDNESS_CATEGORIES)})"))
        if level_index(self.develop_max_level) < level_index(self.deploy_max_level):
            problems.append((("develop_max_level",), f"{self.develop_max_level!r} is below deploy_max_level "
                                                     f"{self.deploy_max_level!r}; it must not be"))
        if self.safeguards_level is not None and not (
            level_index(self.deploy_max_level) < level_index(self.safeguards_level)
            <= level_index(self.develop_max_level)
        ):
            problems.append((("safeguards_level",), f"{self.safeguards_level!r} must be above deploy_max_level "
                                                    f"({self.deploy_max_level!r}) and at most develop_max_level "
                                                    f"({self.develop_max_level!r})"))
        if not any(c.tracked for c in self.categories):
            problems.append((("categories",), "at least one category must be tracked (tracked: true)"))
        if problems:
            raise FieldErrors(problems)
        return self

    def thresholds_for(self, cat: ProfileCategory) -> LevelThresholds:
        return cat.thresholds or self.default_thresholds  # type: ignore[return-value]

    def tracked_for(self, cat: ProfileCategory) -> str | None:
        """The Preparedness tracked category whose seeds give `cat` its evidence, or None (it is fed by hazards)."""
        if cat.hazards is not None:
            return None
        return cat.preparedness or (cat.id if cat.id in PREPAREDNESS_CATEGORIES else None)

    def hazards_for(self, cat: ProfileCategory) -> tuple[str, ...]:
        """The hazard codes whose every attempt feeds `cat`; () for a category fed by tracked seeds."""
        if cat.hazards is not None:
            return tuple(cat.hazards)
        if self.tracked_for(cat) is not None:
            return ()
        return load_taxonomy().codes_for_preparedness(cat.id)

    def select(self, cat: ProfileCategory) -> tuple[tuple[str, ...], str | None]:
        """What `RunEvidence.aggregate` takes for `cat`: (hazards, tracked category)."""
        return self.hazards_for(cat), self.tracked_for(cat)

    def describe_source(self, cat: ProfileCategory) -> str:
        """Where `cat`'s evidence comes from, in words (for reports)."""
        t = self.tracked_for(cat)
        if t is not None:
            return f"seeds tracked as {t}"
        return ", ".join(self.hazards_for(cat)) or "–"

    def fingerprint(self) -> dict:
        """The profile as plain data, with each category's evidence source resolved (part of the scorecard's
        config): `preparedness` for one fed by tracked seeds, else `hazards`."""
        d = self.model_dump(mode="json")
        for c, raw in zip(self.categories, d["categories"], strict=True):
            t = self.tracked_for(c)
            raw.pop("preparedness", None)
            if t is not None:
                raw["preparedness"] = t
                raw["hazards"] = None
            else:
                raw["hazards"] = list(self.hazards_for(c))
            raw["thresholds"] = self.thresholds_for(c).model_dump()
        return d


def builtin_profiles() -> list[str]:
    """Names of the profiles shipped in the package."""
    files = resources.files(__package__).joinpath("profiles")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".yaml"))


def load_profile(name_or_path: str | Path | None = None) -> Profile:
    """Load a shipped profile by name (default `bastion-default`) or a user's YAML file by path."""
    ref = str(name_or_path) if name_or_path is not None else DEFAULT_PROFILE
    if ref in builtin_profiles():
        f = resources.files(__package__).joinpath("profiles", f"{ref}.yaml")
        data, lines = load_yaml_text(f.read_text("utf-8"), f"<builtin>/{ref}.yaml")
        return validate(Profile, data, lines, f"<builtin>/{ref}.yaml")
    p = Path(ref)
    if not p.exists():
        raise ConfigError([f"unknown framework {ref!r}: not a built-in profile ({', '.join(builtin_profiles())}) "
                           "and no such file"])
    return load_model_file(Profile, p)


__all__ = ["LEVELS", "Level", "LevelThresholds", "Profile", "ProfileCategory", "DEFAULT_PROFILE",
           "builtin_profiles", "load_profile", "level_index"]
