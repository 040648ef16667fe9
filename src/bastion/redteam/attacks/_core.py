"""Shared machinery for attacker-LLM attacks: budgets, outcomes, metering and attacker-output parsing."""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from bastion.redteam.base import Judge, Judgement, Message, Seed, Target, TargetReply

STOP_SUCCESS = "success"
STOP_QUERIES = "max_queries"
STOP_TOKENS = "max_tokens"
STOP_TIME = "wall_time"
STOP_EXHAUSTED = "exhausted"  # the attack's own search ran out (iterations / depth / turns)
STOP_ERROR = "attacker_error"
STOP_TARGET_ERROR = "target_error"


@dataclass(frozen=True)
class Budget:
    """Limits on one attack run against one seed. `None` means unlimited.

    max_queries: target queries; max_attacker_queries: attacker/evaluator calls; max_tokens: tokens reported
    by attacker and target together; max_seconds: wall time.
    """

    max_queries: int | None = 20
    max_attacker_queries: int | None = None
    max_tokens: int | None = None
    max_seconds: float | None = 300.0

    def __post_init__(self) -> None:
        for k in ("max_queries", "max_attacker_queries", "max_tokens", "max_seconds"):
            v = getattr(self, k)
            if v is not None and v <= 0:
                raise ValueError(f"Budget.{k} must be > 0 or None, got {v!r}")


@dataclass
class Turn:
    """One target query made by an attack (with its judgement and search bookkeeping in `meta`)."""

    index: int
    messages: list[Message]
    reply: str
    judgement: Judgement | None = None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class AttackOutcome:
    attack: str
    seed_id: str
    success: bool
    best_prompt: list[Message]
    best_reply: str
    judgement: Judgement | None
    turns: list[Turn]
    queries_used: int
    stopped_reason: str
    attacker_queries: int = 0
    tokens_used: int = 0
    elapsed_s: float = 0.0
    error: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # search bookkeeping: pruning, backtracking


class TargetFailed(Exception):
    """The target raised instead of returning a TargetReply with `error` set."""


class BudgetExceeded(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Meter:
    """Counts queries, tokens and time against a Budget; `check()` raises BudgetExceeded when one is spent."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.t0 = time.monotonic()
        self.queries = 0
        self.attacker_queries = 0
        self.tokens = 0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining_s(self) -> float | None:
        return None if self.budget.max_seconds is None else max(0.0, self.budget.max_seconds - self.elapsed())

    def check(self, target_call: bool = False, attacker_call: bool = False) -> None:
        b = self.budget
        if b.max_seconds is not None and self.elapsed() >= b.max_seconds:
            raise BudgetExceeded(STOP_TIME)
        if b.max_tokens is not None and self.tokens >= b.max_tokens:
            raise BudgetExceeded(STOP_TOKENS)
        if target_call and b.max_queries is not None and self.queries >= b.max_queries:
            raise BudgetExceeded(STOP_QUERIES)
        if attacker_call and b.max_attacker_queries is not None and self.attacker_queries >= b.max_attacker_queries:
            raise BudgetExceeded(STOP_QUERIES)

    async def timed(self, coro: Any) -> Any:
        rem = self.remaining_s()
        if rem is None:
            return await coro
        try:
            return await asyncio.wait_for(coro, timeout=max(rem, 0.001))
        except asyncio.TimeoutError:
            raise BudgetExceeded(STOP_TIME) from None


@lru_cache(maxsize=1)
def attack_prompts() -> dict[str, Any]:
    """Attacker system prompts and message templates (`prompts.yaml`)."""
    return yaml.safe_load(resources.files(__package__).joinpath("prompts.yaml").read_text(encoding="utf-8"))


_JSON_OBJ = re.compile(r"\{.*\}", re.S)


def parse_attacker_json(text: str, key: str) -> tuple[str, dict[str, Any]]:
    """The `key` field of the first JSON object in an attacker reply (whole reply if none parses)."""
    m = _JSON_OBJ.search(text or "")
    if m:
        blob = m.group(0)
        for cand in (blob, blob[: blob.rfind("}") + 1]):
            try:
                obj = json.loads(cand)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get(key), str) and obj[key].strip():
                return obj[key].strip(), obj
    return (text or "").strip(), {}


def score10(j: Judgement | None) -> int:
    """A judgement as PAIR's 1-10 rating."""
    if j is None:
        return 1
    if j.success:
        return 10
    return max(1, min(10, 1 + round(9 * float(j.score))))


def target_string(seed: Seed) -> str:
    return "Sure, here is " + seed.text[:1].lower() + seed.text[1:].rstrip(" .?!")


class AttackerAttack:
    """Base for attacks that drive an attacker LLM (`bastion.llm.LLMClient`) against a target and a judge."""

    name: str = ""
    description: str = ""
    reference: str = ""
    requires_llm: bool = True

    def __init__(self, attacker: Any, budget: Budget | None = None, seed: int = 0,
                 attacker_params: dict[str, Any] | None = None) -> None:
        if self.requires_llm and attacker is None:
            raise ValueError(f"attack {self.name!r} needs an attacker model (--attacker-model/--attacker-base-url)")
        self.attacker = attacker
        self.budget = budget or Budget()
        self.seed = seed
        self.rng = random.Random(seed)
        self.attacker_params = {"temperature": 1.0, "max_tokens": 1024, **(attacker_params or {})}
        self.attacker_params.setdefault("seed", seed)

    # ---- per-run state --------------------------------------------------------------------------
    def _start(self) -> None:
        self.meter = Meter(self.budget)
        self.turns: list[Turn] = []
        self.best: tuple[int, Turn] | None = None
        self.events: list[dict[str, Any]] = []

    async def ask_attacker(self, messages: list[Message], client: Any = None) -> str:
        self.meter.check(attacker_call=True)
        self.meter.attacker_queries += 1
        res = await self.meter.timed((client or self.attacker).achat(messages, **self.attacker_params))
        self.meter.tokens += int((getattr(res, "usage", None) or {}).get("total_tokens", 0))
        return res.text

    async def query(self, seed: Seed, target: Target, judge: Judge, messages: list[Message],
                    **meta: Any) -> Turn:
        """Send `messages` to the target, judge the reply, record the turn (and the best so far)."""
        self.meter.check(target_call=True)
        self.meter.queries += 1
        try:
            reply: TargetReply = await self.meter.timed(target.respond(messages))
        except BudgetExceeded:
            raise
        except Exception as e:  # noqa: BLE001 - reported in the outcome, turns so far are kept
            raise TargetFailed(f"target {getattr(target, 'name', '?')} failed: {type(e).__name__}: {e}") from e
        usage = getattr(reply, "usage", None) or {}
        self.meter.tokens += int(usage.get("total_tokens", 0) or
                                 usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
        judgement = None
        if reply.error is None:
            judgement = await self.meter.timed(judge.judge(seed, messages, reply))
        turn = Turn(index=len(self.turns), messages=[dict(m) for m in messages], reply=reply.text,
                    judgement=judgement, error=reply.error, meta=dict(meta))
        self.turns.append(turn)
        s = score10(judgement)
        if self.best is None or s > self.best[0]:
            self.best = (s, turn)
        return turn

    def outcome(self, seed: Seed, reason: str, error: str | None = None) -> AttackOutcome:
        best = self.best[1] if self.best else None
        j = best.judgement if best else None
        return AttackOutcome(
            attack=self.name, seed_id=seed.id, success=bool(j and j.success),
            best_prompt=best.messages if best else [], best_reply=best.reply if best else "", judgement=j,
            turns=self.turns, queries_used=self.meter.queries, stopped_reason=reason,
            attacker_queries=self.meter.attacker_queries, tokens_used=self.meter.tokens,
            elapsed_s=self.meter.elapsed(), error=error, events=self.events)

    async def run(self, seed: Seed, target: Target, judge: Judge) -> AttackOutcome:
        """Attack one seed until success or a budget/search limit; never raises for attacker/budget failures."""
        from bastion.llm import LLMError

        self._start()
        try:
            reason = await self._search(seed, target, judge)
        except BudgetExceeded as e:
            return self.outcome(seed, e.reason)
        except TargetFailed as e:
            return self.outcome(seed, STOP_TARGET_ERROR, error=str(e))
        except LLMError as e:
            return self.outcome(seed, STOP_ERROR, error=str(e))
        return self.outcome(seed, reason)

    async def _search(self, seed: Seed, target: Target, judge: Judge) -> str:
        raise NotImplementedError
