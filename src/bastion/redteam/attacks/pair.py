"""PAIR: Prompt Automatic Iterative Refinement (Chao et al. 2023)."""

from __future__ import annotations

from typing import Any

from bastion.redteam.base import Judge, Message, Seed, Target, register_attack

from ._core import (
    STOP_EXHAUSTED,
    STOP_SUCCESS,
    AttackerAttack,
    Budget,
    attack_prompts,
    parse_attacker_json,
    score10,
    target_string,
)


@register_attack
class PAIR(AttackerAttack):
    """An attacker LLM rewrites the prompt each iteration from the target's reply and the judge's score."""

    name = "pair"
    description = "PAIR: an attacker LLM iteratively refines a jailbreak prompt from the target's replies and scores."
    reference = "https://arxiv.org/abs/2310.08419"

    def __init__(self, attacker: Any, budget: Budget | None = None, seed: int = 0, *, iterations: int = 5,
                 streams: int = 1, keep_last: int = 6, attacker_params: dict[str, Any] | None = None) -> None:
        super().__init__(attacker, budget, seed, attacker_params)
        if iterations < 1 or streams < 1:
            raise ValueError("PAIR needs iterations >= 1 and streams >= 1")
        self.iterations, self.streams, self.keep_last = iterations, streams, keep_last

    async def _search(self, seed: Seed, target: Target, judge: Judge) -> str:
        p = attack_prompts()["pair"]
        fields = {"goal": seed.text, "target_str": target_string(seed)}
        convs: list[list[Message]] = [[{"role": "system", "content": p["system"].format(**fields)},
                                       {"role": "user", "content": p["init"].format(**fields)}]
                                      for _ in range(self.streams)]
        for it in range(self.iterations):
            for s, conv in enumerate(convs):
                # system prompt + the most recent exchanges (PAIR truncates the attacker's history)
                text = await self.ask_attacker([conv[0], *conv[1:][-self.keep_last:]])
                prompt, obj = parse_attacker_json(text, "prompt")
                conv.append({"role": "assistant", "content": text})
                turn = await self.query(seed, target, judge, [{"role": "user", "content": prompt}],
                                        iteration=it, stream=s, improvement=obj.get("improvement", ""))
                if turn.judgement is not None and turn.judgement.success:
                    return STOP_SUCCESS
                reply = turn.reply if turn.error is None else f"[target error: {turn.error}]"
                conv.append({"role": "user", "content": p["feedback"].format(
                    reply=reply[:4000], score=score10(turn.judgement), **fields)})
        return STOP_EXHAUSTED
