"""TAP: Tree of Attacks with Pruning (Mehrotra et al. 2023)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
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


@dataclass
class _Node:
    id: int
    depth: int
    parent: int | None
    conv: list[Message]
    prompt: str = ""
    score: int = 0
    children: list[int] = field(default_factory=list)


@register_attack
class TAP(AttackerAttack):
    """Branches each leaf into `branching` refinements, prunes off-topic prompts before querying the target,
    then keeps the `width` best-scored leaves for the next level, up to `depth` levels."""

    name = "tap"
    description = "TAP: tree search over attacker refinements with off-topic and score-based pruning."
    reference = "https://arxiv.org/abs/2312.02119"

    def __init__(self, attacker: Any, budget: Budget | None = None, seed: int = 0, *, depth: int = 4,
                 branching: int = 3, width: int = 4, evaluator: Any = None, keep_last: int = 6,
                 attacker_params: dict[str, Any] | None = None) -> None:
        super().__init__(attacker, budget, seed, attacker_params)
        if min(depth, branching, width) < 1:
            raise ValueError("TAP needs depth, branching and width >= 1")
        self.depth, self.branching, self.width, self.keep_last = depth, branching, width, keep_last
        self.evaluator = evaluator

    async def on_topic(self, goal: str, prompt: str) -> bool:
        """Phase-1 pruning: does the candidate still ask for the goal? (lenient when the answer is unclear)."""
        t = attack_prompts()["tap"]
        msgs = [{"role": "system", "content": t["on_topic_system"].format(goal=goal)},
                {"role": "user", "content": t["on_topic_user"].format(prompt=prompt)}]
        saved = self.attacker_params
        self.attacker_params = {**saved, "temperature": 0.0, "max_tokens": 16}
        try:
            text = await self.ask_attacker(msgs, client=self.evaluator)
        finally:
            self.attacker_params = saved
        m = re.search(r"\[\[\s*(YES|NO)\s*\]\]", text, re.I)
        return not (m and m.group(1).upper() == "NO")

    async def _search(self, seed: Seed, target: Target, judge: Judge) -> str:
        p = attack_prompts()["pair"]
        fields = {"goal": seed.text, "target_str": target_string(seed)}
        root = _Node(0, 0, None, [{"role": "system", "content": p["system"].format(**fields)},
                                  {"role": "user", "content": p["init"].format(**fields)}])
        nodes = [root]
        leaves = [root]
        for depth in range(1, self.depth + 1):
            children: list[_Node] = []
            for leaf in leaves:  # branch
                for _ in range(self.branching):
                    text = await self.ask_attacker([leaf.conv[0], *leaf.conv[1:][-self.keep_last:]])
                    prompt, _obj = parse_attacker_json(text, "prompt")
                    child = _Node(len(nodes), depth, leaf.id, [*leaf.conv, {"role": "assistant", "content": text}],
                                  prompt=prompt)
                    nodes.append(child)
                    leaf.children.append(child.id)
                    children.append(child)
            on_topic = []
            for c in children:  # phase 1: prune off-topic prompts without querying the target
                if await self.on_topic(seed.text, c.prompt):
                    on_topic.append(c)
                else:
                    self.events.append({"event": "pruned_off_topic", "depth": depth, "node": c.id,
                                        "parent": c.parent, "prompt": c.prompt})
            for c in on_topic:  # query and score
                turn = await self.query(seed, target, judge, [{"role": "user", "content": c.prompt}],
                                        depth=depth, node=c.id, parent=c.parent)
                c.score = score10(turn.judgement)
                if turn.judgement is not None and turn.judgement.success:
                    return STOP_SUCCESS
                reply = turn.reply if turn.error is None else f"[target error: {turn.error}]"
                c.conv.append({"role": "user", "content": p["feedback"].format(
                    reply=reply[:4000], score=c.score, **fields)})
            # phase 2: keep the `width` best (stable order breaks ties by creation)
            ranked = sorted(on_topic, key=lambda n: -n.score)
            for c in ranked[self.width:]:
                self.events.append({"event": "pruned_width", "depth": depth, "node": c.id, "score": c.score})
            leaves = ranked[: self.width]
            if not leaves:
                self.events.append({"event": "all_pruned", "depth": depth})
                return STOP_EXHAUSTED
        return STOP_EXHAUSTED
