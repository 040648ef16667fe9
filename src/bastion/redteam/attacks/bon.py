"""Best-of-N as an attack: try up to N augmented variants of the seed until the judge reports success."""

from __future__ import annotations

from typing import Any

from bastion.redteam.base import Judge, Seed, Target, register_attack

from ._core import STOP_EXHAUSTED, STOP_SUCCESS, AttackerAttack, Budget


@register_attack
class BestOfNAttack(AttackerAttack):
    """No attacker model: N = `n` or the budget's max_queries; variants come from the `best_of_n` technique
    (or any technique spec, e.g. `best_of_n+base64`)."""

    name = "bon"
    description = "Best-of-N: sample augmented variants (scramble, casing, noise) until one succeeds; N = budget."
    reference = "https://arxiv.org/abs/2412.03556"
    requires_llm = False

    def __init__(self, attacker: Any = None, budget: Budget | None = None, seed: int = 0, *,
                 n: int | None = None, technique: str = "best_of_n") -> None:
        super().__init__(attacker, budget, seed)
        from bastion.redteam.techniques import get_technique

        self.technique = get_technique(technique)
        self.n = n or self.budget.max_queries or 8

    async def _search(self, seed: Seed, target: Target, judge: Judge) -> str:
        for prompt in self.technique.build_variants(seed.text, self.rng, self.n):
            turn = await self.query(seed, target, judge, prompt.messages, variant=prompt.meta.get("variant"),
                                    technique=prompt.technique)
            if turn.judgement is not None and turn.judgement.success:
                return STOP_SUCCESS
        return STOP_EXHAUSTED
