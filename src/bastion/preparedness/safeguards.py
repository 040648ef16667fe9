"""Safeguards reports (Preparedness v2): per category, whether the safeguards were judged sufficient."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from bastion.yamlsrc import ConfigError, load_yaml_text, read_text, validate


class SafeguardEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sufficient: bool
    report: str = ""  # where the full safeguards report lives (path or URL)
    reviewed_by: str = ""
    date: str = ""
    notes: str = ""


class SafeguardsReport(BaseModel):
    """`categories` maps a profile category id to its safeguards assessment."""

    model_config = ConfigDict(extra="forbid")

    categories: dict[str, SafeguardEntry]

    def sufficient_for(self, category: str) -> bool:
        e = self.categories.get(category)
        return bool(e and e.sufficient)


def load_safeguards(path: str | Path, categories: list[str] | None = None) -> SafeguardsReport:
    """Load and validate a safeguards report YAML file against a profile's category ids."""
    p = Path(path)
    text = read_text(p)
    data, lines = load_yaml_text(text, str(p))
    report = validate(SafeguardsReport, data, lines, str(p))
    if categories:
        bad = [k for k in report.categories if k not in categories]
        if bad:
            raise ConfigError([f"{p}:{lines.get(('categories', k), 1)}: categories.{k}: unknown category {k!r} "
                               f"for this framework; known: {', '.join(categories)}" for k in bad])
    return report


__all__ = ["SafeguardEntry", "SafeguardsReport", "load_safeguards"]
