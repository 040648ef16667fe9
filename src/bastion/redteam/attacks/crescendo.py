"""Crescendo: gradual multi-turn escalation with backtracking on refusal (Russinovich et al. 2024)."""

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
)


def _render(history: list[Message], limit: int = 1500) -> str:
    if not history:
        return "(empty)"
    return "\n".join(f"{m['role'].upper()}: {m['content'][:limit]}" for m in history)


@register_attack
class Crescendo(AttackerAttack):
    """Each turn the attacker asks a slightly more pointed question that builds on the target's answers.
    A refused question is erased from the target's conversation (backtracking) and retried another way."""

    name = "crescendo"
    description = "Crescendo: multi-turn escalation from benign questions, backtracking when the target refuses."
    reference = "https://arxiv.org/abs/2404.01833"

    def __init__(self, attacker: Any, budget: Budget | None = None, seed: int = 0, *, max_turns: int = 8,
                 max_backtracks: int = 5, attacker_params: dict[str, Any] | None = None) -> None:
        super().__init__(attacker, budget, seed, attacker_params)
        if max_turns < 1 or max_backtracks < 0:
            raise ValueError("Crescendo needs max_turns >= 1 and max_backtracks >= 0")
        self.max_turns, self.max_backtracks = max_turns, max_backtracks

    async def _search(self, seed: Seed, target: Target, judge: Judge) -> str:
        c = attack_prompts()["crescendo"]
        attacker_conv: list[Message] = [{"role": "system", "content": c["system"].format(
            goal=seed.text, max_turns=self.max_turns)}]
        history: list[Message] = []
        feedback = c["feedback_start"]
        backtracks = 0
        turn_no = 0
        while turn_no < self.max_turns:
            attacker_conv.append({"role": "user", "content": c["next"].format(
                turn=turn_no + 1, max_turns=self.max_turns, goal=seed.text, history=_render(history),
                feedback=feedback)})
            text = await self.ask_attacker(attacker_conv)
            attacker_conv.append({"role": "assistant", "content": text})
            question, _obj = parse_attacker_json(text, "question")
            msgs = [*history, {"role": "user", "content": question}]
            turn = await self.query(seed, target, judge, msgs, turn=turn_no + 1, backtracks=backtracks)
            j = turn.judgement
            if j is not None and j.success:
                return STOP_SUCCESS
            refused = turn.error is not None or (j is not None and j.refused)
            if refused and backtracks < self.max_backtracks:
                backtracks += 1
                turn.meta["backtracked"] = True
                self.events.append({"event": "backtrack", "turn": turn_no + 1, "question": question,
                                    "backtracks": backtracks})
                feedback = c["feedback_refused"].format(prompt=question)
                continue
            history = [*msgs, {"role": "assistant", "content": turn.reply}]
            turn_no += 1
            feedback = c["feedback_scored"].format(score=score10(j))
        return STOP_EXHAUSTED
