"""Immutable, JSON-serialisable verdicts returned by every guard check."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
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
        # A verdict built by hand (lists, dicts, NumPy scalars) is made like the guard's own: immutable, hashable
        # and JSON-serialisable. Scores must be finite numbers (NaN is not JSON).
        put = object.__setattr__
        for name in ("categories", "obfuscation"):
            v = getattr(self, name)
            if type(v) is not tuple or not all(type(x) is str for x in v):
                put(self, name, tuple(str(x) for x in v))
        for name in ("category_scores", "thresholds"):
            v = getattr(self, name)
            if type(v) is not tuple or not all(type(p) is tuple and len(p) == 2 and type(p[1]) is float for p in v):
                pairs = v.items() if isinstance(v, dict) else v
                put(self, name, tuple((str(k), _finite(x, f"{name}[{k}]")) for k, x in pairs))
        if type(self.unsafe) is not bool:
            put(self, "unsafe", bool(self.unsafe))
        put(self, "score", _finite(self.score, "score"))
        for name in ("attack", "refusal"):
            v = getattr(self, name)
            if v is not None and type(v) is not bool:
                put(self, name, bool(v))
        for name in ("attack_score", "refusal_score"):
            v = getattr(self, name)
            if v is not None:
                put(self, name, _finite(v, name))
        if type(self.windows) is not int:
            put(self, "windows", int(self.windows))

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
        """A verdict from `to_dict()` output, a `bastion check --json` object or a `bastion classify --full` line
        (its `"verdict"`). Fields this version does not know are ignored, so newer output still reads."""
        if not isinstance(d, dict):
            raise ValueError(f"a verdict must be a JSON object, got {type(d).__name__}")
        if isinstance(d.get("verdict"), dict):
            # a classify --full line: the contract's fields at the top, the rest of the verdict under "verdict"
            d = {**{k: v for k, v in d.items() if k not in ("verdict", "id")}, **d["verdict"]}
        missing = [k for k in ("kind", "unsafe", "score") if k not in d]
        if missing:
            raise ValueError(f"not a verdict: missing field(s) {', '.join(missing)}")
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        for name in ("category_scores", "thresholds"):
            if isinstance(kw.get(name), list):  # JSON has no tuples: [[code, score], ...]
                kw[name] = tuple(tuple(p) for p in kw[name])
        try:
            return cls(**kw)
        except (TypeError, ValueError) as e:
            raise ValueError(f"not a valid verdict: {e}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> Verdict:
        """The inverse of `to_json()`."""
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None


def _finite(x: Any, name: str) -> float:
    try:
        f = float(x)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {x!r}") from None
    if not math.isfinite(f):
        raise ValueError(f"{name} must be a finite number, got {f}")
    return f
