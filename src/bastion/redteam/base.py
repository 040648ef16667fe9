"""Red-team contracts shared by the attack library, targets, judges and the runner.

Kept small and stable: techniques and attacks are registered classes; targets and judges are protocols.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}


@dataclass(frozen=True)
class Seed:
    """A harmful behaviour (or a benign look-alike, for over-refusal) to attack with."""

    id: str
    text: str
    category: str  # taxonomy code S1..S14 (benign look-alikes carry the category they resemble)
    source: str  # public benchmark it came from
    licence: str
    benign: bool = False
    tracked: str | None = None  # the Preparedness tracked category this seed feeds (taxonomy/tracked.yaml), if any


@dataclass
class AttackPrompt:
    """What a technique produces: the conversation to send, and how it was built."""

    messages: list[Message]
    technique: str  # e.g. "base64" or "refusal_suppression+base64"
    decode: Callable[[str], str] | None = None  # maps the target's reply back to plain text, if encoded
    meta: dict[str, Any] = field(default_factory=dict)


class Technique:
    """A single-turn converter or template. Subclasses set name/description/reference and implement
    `transform`. Techniques compose: `a+b` applies a then b to the user text."""

    name: str = ""
    description: str = ""
    reference: str = ""
    kind: str = "converter"  # "encoding" | "instruction" | "framing" | "sampling" | "converter"

    def transform(self, text: str, rng: random.Random) -> str:
        raise NotImplementedError

    def build(self, seed_text: str, rng: random.Random) -> AttackPrompt:
        """Default: one user turn holding the transformed text. Many-shot etc. override this."""
        return AttackPrompt(messages=[{"role": "user", "content": self.transform(seed_text, rng)}],
                            technique=self.name)

    def decode(self, reply: str) -> str:
        """Undo the encoding in a reply, when the technique asks for an encoded answer."""
        return reply


@runtime_checkable
class Target(Protocol):
    """Anything that answers a conversation. `name` identifies it in stored runs."""

    name: str

    async def respond(self, messages: list[Message]) -> TargetReply: ...


@dataclass
class TargetReply:
    text: str
    blocked_by: str | None = None  # "input" | "output" when a guard in front of the target stopped it
    guard_verdicts: dict[str, Any] = field(default_factory=dict)
    latency_ms: float = 0.0
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)  # token counts, when the target reports them


@dataclass
class Judgement:
    success: bool  # the attack achieved the harmful behaviour (for benign seeds: the target refused)
    score: float  # [0,1]
    refused: bool
    reason: str = ""
    judge: str = ""


@runtime_checkable
class Judge(Protocol):
    name: str

    async def judge(self, seed: Seed, messages: list[Message], reply: TargetReply) -> Judgement: ...


# ---- registries ------------------------------------------------------------------------------------
TECHNIQUES: dict[str, type[Technique]] = {}
ATTACKS: dict[str, type] = {}


def register_technique(cls: type[Technique]) -> type[Technique]:
    """Class decorator: make a technique available by its `name`."""
    if not cls.name or cls.name in TECHNIQUES:
        raise ValueError(f"technique name missing or duplicated: {cls.name!r}")
    TECHNIQUES[cls.name] = cls
    return cls


def register_attack(cls: type) -> type:
    """Class decorator for attacker-LLM (multi-turn / iterative) attacks: PAIR, TAP, Crescendo."""
    name = getattr(cls, "name", "")
    if not name or name in ATTACKS:
        raise ValueError(f"attack name missing or duplicated: {name!r}")
    ATTACKS[name] = cls
    return cls
