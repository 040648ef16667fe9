"""Attacker-LLM attacks (PAIR, TAP, Crescendo) and Best-of-N search, registered in `ATTACKS`.

Each is constructed as `Attack(attacker: LLMClient | None, budget: Budget, seed: int, **params)` and run per
seed with `await attack.run(seed, target, judge) -> AttackOutcome`.
"""

from __future__ import annotations

from bastion.redteam.base import ATTACKS

from ._core import (
    STOP_ERROR,
    STOP_EXHAUSTED,
    STOP_QUERIES,
    STOP_SUCCESS,
    STOP_TARGET_ERROR,
    STOP_TIME,
    STOP_TOKENS,
    AttackerAttack,
    AttackOutcome,
    Budget,
    Turn,
    attack_prompts,
    parse_attacker_json,
)
from .bon import BestOfNAttack
from .crescendo import Crescendo
from .pair import PAIR
from .tap import TAP

__all__ = ["ATTACKS", "PAIR", "TAP", "AttackOutcome", "AttackerAttack", "BestOfNAttack", "Budget", "Crescendo",
           "STOP_ERROR", "STOP_EXHAUSTED", "STOP_QUERIES", "STOP_SUCCESS", "STOP_TARGET_ERROR", "STOP_TIME",
           "STOP_TOKENS", "Turn", "attack_prompts", "get_attack", "list_attacks", "parse_attacker_json"]


def get_attack(name: str) -> type[AttackerAttack]:
    """The attack class registered as `name`."""
    try:
        return ATTACKS[name]
    except KeyError:
        raise ValueError(f"unknown attack {name!r} (choose from {', '.join(sorted(ATTACKS))})") from None


def list_attacks() -> list[tuple[str, str, str, bool]]:
    """(name, description, reference, requires_llm) of every registered attack."""
    return sorted((c.name, c.description, c.reference, bool(getattr(c, "requires_llm", True)))
                  for c in ATTACKS.values())
