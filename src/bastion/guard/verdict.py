"""Immutable, JSON-serialisable verdicts returned by every guard check."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """The result of one guard check.

    `unsafe`/`score` judge the prompt for a prompt check and the response for a response check.
    `attack*` is set for prompt checks, `refusal*` for response checks; the other pair is None.
    """

    kind: str  # "prompt" | "response"
    unsafe: bool
    score: float
    categories: tuple[str, ...] = ()
    category_scores: tuple[tuple[str, float], ...] = ()
    attack: bool | None = None
    attack_score: float | None = None
    refusal: bool | None = None
    refusal_score: float | None = None
    obfuscation: tuple[str, ...] = ()
    windows: int = 1
    model_version: str = ""
    thresholds: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # A verdict built by hand with lists or dicts is made immutable (and hashable) like the guard's own.
        for name in ("categories", "obfuscation"):
            v = getattr(self, name)
            if not isinstance(v, tuple):
                object.__setattr__(self, name, tuple(v))
        for name in ("category_scores", "thresholds"):
            v = getattr(self, name)
            if type(v) is not tuple or (v and type(v[0]) is not tuple):  # the guard's own: a tuple of pairs
                pairs = v.items() if isinstance(v, dict) else v
                object.__setattr__(self, name, tuple((str(k), float(x)) for k, x in pairs))

    @property
    def flagged(self) -> bool:
        """True when any check fired (harm or attack)."""
        return bool(self.unsafe or self.attack)

    @property
    def top_category(self) -> str | None:
        """The highest-scoring hazard category; None when no category was read (no scores, or all zero: a reply
        under the category floor, a text the cascade settled without the encoder)."""
        best = max(self.category_scores, key=lambda kv: kv[1], default=None)
        return best[0] if best is not None and best[1] > 0 else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["categories"] = list(self.categories)
        d["category_scores"] = {k: v for k, v in self.category_scores}
        d["obfuscation"] = list(self.obfuscation)
        d["thresholds"] = {k: v for k, v in self.thresholds}
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        d = dict(d)
        d["categories"] = tuple(d.get("categories", ()))
        d["category_scores"] = tuple((k, float(v)) for k, v in dict(d.get("category_scores", {})).items())
        d["obfuscation"] = tuple(d.get("obfuscation", ()))
        d["thresholds"] = tuple((k, float(v)) for k, v in dict(d.get("thresholds", {})).items())
        return cls(**d)
