"""Shared pieces for the built-in techniques: the phrasing data and a parameterised base class."""

from __future__ import annotations

import random
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from bastion.redteam.base import AttackPrompt, Technique


@lru_cache(maxsize=1)
def phrasings() -> dict[str, Any]:
    """The wording variants in `phrasings.yaml` (loaded once)."""
    text = resources.files(__package__).joinpath("phrasings.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def pick(key: str, rng: random.Random) -> str:
    """One wording variant for technique `key`, chosen with the seeded rng."""
    variants = phrasings()[key]
    return variants[rng.randrange(len(variants))]


class BaseTechnique(Technique):
    """A technique that may take one parameter (`name:param` in a technique spec).

    `answers_encoded` techniques ask the target to answer in the same encoding, so `build` attaches
    `decode` to the prompt. `reversible` encodings satisfy `decode(encode(x)) == x`.
    """

    answers_encoded: bool = False
    reversible: bool = False
    requires_llm: bool = False  # converters and templates run offline
    param_name: str | None = None  # e.g. "n" or "shift"; None: the technique takes no parameter

    def __init__(self, param: str | None = None) -> None:
        if param is not None and self.param_name is None:
            raise ValueError(f"technique {self.name!r} takes no parameter (got {param!r})")
        self.param = param

    @property
    def spec(self) -> str:
        """The name that rebuilds this instance with `get_technique`."""
        return self.name if self.param is None else f"{self.name}:{self.param}"

    def int_param(self, default: int, lo: int = 1, hi: int = 10_000) -> int:
        if self.param is None:
            return default
        try:
            v = int(self.param)
        except ValueError:
            raise ValueError(f"technique {self.name!r}: {self.param_name} must be an integer, got {self.param!r}") \
                from None
        if not lo <= v <= hi:
            raise ValueError(f"technique {self.name!r}: {self.param_name} must be in [{lo}, {hi}], got {v}")
        return v

    def build(self, seed_text: str, rng: random.Random) -> AttackPrompt:
        return AttackPrompt(messages=[{"role": "user", "content": self.transform(seed_text, rng)}],
                            technique=self.spec, decode=self.decode if self.answers_encoded else None)

    def build_variants(self, seed_text: str, rng: random.Random, n: int) -> list[AttackPrompt]:
        """`n` prompts drawn in sequence from the same rng (they differ wherever the technique is random)."""
        out = []
        for i in range(n):
            p = self.build(seed_text, rng)
            p.meta["variant"] = i
            out.append(p)
        return out

    def __repr__(self) -> str:
        return f"<technique {self.spec}>"
