"""The technique library: registered single-turn converters and templates, composable with `+`.

>>> t = get_technique("refusal_suppression+base64")
>>> prompt = t.build("[PLACEHOLDER-BEHAVIOUR]", random.Random(0))
>>> t.decode(...)   # undoes the base64 answer encoding            # doctest: +SKIP

Spec syntax: `name` or `name:param` (e.g. `many_shot:32`, `best_of_n:16`, `template:jbc_aim`, `caesar:5`),
joined by `+`; parts apply left to right to the user text, and the last part builds the conversation.
"""

from __future__ import annotations

import difflib
import random
from functools import lru_cache
from importlib import resources

import yaml

from bastion.redteam.base import TECHNIQUES, AttackPrompt, Technique

from . import encodings, framings, instructions, sampling  # noqa: F401  (registers the techniques)
from ._common import BaseTechnique
from .encodings import Encoding
from .framings import fill_template, template_names
from .sampling import BestOfN, ManyShot

__all__ = ["BaseTechnique", "BestOfN", "Composite", "Encoding", "ManyShot", "TECHNIQUES", "campaign",
           "fill_template", "get_technique", "list_techniques", "template_names"]


class Composite(BaseTechnique):
    """`a+b+c`: a, then b, transform the text; c builds the final conversation. Decoding runs in reverse."""

    kind = "composite"

    def __init__(self, parts: list[Technique]) -> None:
        super().__init__(None)
        if len(parts) < 2:
            raise ValueError("a composite technique needs at least two parts")
        self.parts = parts
        self.name = "+".join(getattr(p, "spec", p.name) for p in parts)
        self.description = " then ".join(p.name for p in parts)
        self.reference = " ; ".join(dict.fromkeys(p.reference for p in parts))
        self.answers_encoded = any(getattr(p, "answers_encoded", False) for p in parts)
        bon = [p for p in parts if isinstance(p, BestOfN)]
        if len(bon) > 1:
            raise ValueError(f"technique {self.name!r}: at most one best_of_n part in a composite")
        self.bon: BestOfN | None = bon[0] if bon else None

    @property
    def variants(self) -> int:
        """Prompts per attempt: the Best-of-N part's budget N (1 without one)."""
        return self.bon.n if self.bon is not None else 1

    def build_variants(self, seed_text: str, rng: random.Random, n: int | None = None) -> list[AttackPrompt]:
        """With a Best-of-N part: N prompts, each a fresh augmentation with the other parts applied around it
        (`refusal_suppression+best_of_n:4` augments the suppressed text; `best_of_n:4+base64` encodes each
        augmented request)."""
        return super().build_variants(seed_text, rng, self.variants if n is None else n)

    @property
    def spec(self) -> str:
        return self.name

    def transform(self, text: str, rng: random.Random) -> str:
        for p in self.parts:
            text = p.transform(text, rng)
        return text

    def build(self, seed_text: str, rng: random.Random) -> AttackPrompt:
        text = seed_text
        for p in self.parts[:-1]:
            text = p.transform(text, rng)
        prompt = self.parts[-1].build(text, rng)
        prompt.technique = self.name
        prompt.decode = self.decode if self.answers_encoded else None
        return prompt

    def decode(self, reply: str) -> str:
        for p in reversed(self.parts):
            if getattr(p, "answers_encoded", False):
                reply = p.decode(reply)
        return reply


def _one(spec: str) -> Technique:
    name, _, param = spec.strip().partition(":")
    cls = TECHNIQUES.get(name)
    if cls is None:
        close = difflib.get_close_matches(name, TECHNIQUES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see `bastion redteam techniques`)"
        raise ValueError(f"unknown technique {name!r}{hint}")
    if issubclass(cls, BaseTechnique):
        return cls(param or None)
    if param:
        raise ValueError(f"technique {name!r} takes no parameter (got {param!r})")
    return cls()


def get_technique(spec: str) -> Technique:
    """A technique instance from a spec such as `base64`, `many_shot:16` or `refusal_suppression+base64`."""
    if not spec or not spec.strip():
        raise ValueError("empty technique spec")
    parts = [_one(s) for s in spec.split("+")]
    return parts[0] if len(parts) == 1 else Composite(parts)


def list_techniques() -> list[tuple[str, str, str, str]]:
    """(name, kind, description, reference) of every registered technique, sorted by kind then name."""
    rows = [(c.name, c.kind, c.description, c.reference) for c in TECHNIQUES.values()]
    return sorted(rows, key=lambda r: (r[1], r[0]))


@lru_cache(maxsize=1)
def _campaigns() -> dict[str, list[str]]:
    return yaml.safe_load(resources.files(__package__).joinpath("campaigns.yaml").read_text(encoding="utf-8"))


def campaign(name: str = "default") -> list[str]:
    """A named list of technique specs from `campaigns.yaml` (`default`: baseline plus one of each family)."""
    data = _campaigns()
    if name not in data:
        raise ValueError(f"unknown campaign {name!r} (choose from {', '.join(sorted(data))})")
    return list(data[name])
