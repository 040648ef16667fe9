"""The shipped seed library: harmful behaviours, benign look-alikes and jailbreak templates.

Built from public, licence-clean benchmarks by `scripts/build_seeds.py`; see `README.md` beside this file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources
from typing import Any

from bastion.redteam.base import Seed

__all__ = ["load_seeds", "harmful_seeds", "benign_seeds", "load_templates"]


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=2)
def _load(kind: str) -> tuple[Seed, ...]:
    out = []
    for line in _read(f"{kind}.jsonl").splitlines():
        if line.strip():
            r = json.loads(line)
            out.append(Seed(id=r["id"], text=r["text"], category=r["category"], source=r["source"],
                            licence=r["licence"], benign=(kind == "benign")))
    return tuple(out)


def harmful_seeds() -> list[Seed]:
    """All shipped harmful behaviours."""
    return list(_load("harmful"))


def benign_seeds() -> list[Seed]:
    """All shipped benign look-alikes (`category` = the hazard the prompt resembles)."""
    return list(_load("benign"))


def load_seeds(kind: str = "harmful", categories: Iterable[str] | None = None) -> list[Seed]:
    """Seeds of `kind` ("harmful", "benign" or "all"), optionally only the given taxonomy codes."""
    if kind not in ("harmful", "benign", "all"):
        raise ValueError(f"seed kind must be harmful, benign or all, got {kind!r}")
    seeds = (list(_load("harmful")) if kind in ("harmful", "all") else []) + \
            (list(_load("benign")) if kind in ("benign", "all") else [])
    if categories is not None:
        wanted = {c.upper() for c in categories}
        seeds = [s for s in seeds if s.category.upper() in wanted]
    return seeds


@lru_cache(maxsize=1)
def load_templates() -> tuple[dict[str, Any], ...]:
    """Public jailbreak templates: {name, family, source, licence, template} with `{prompt}` slots."""
    return tuple(json.loads(_read("templates.json")))
