"""SL-CAI: critique a response against a sampled principle, then revise it; repeat for N rounds."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bastion.llm import LLMClient

from .batch import MalformedOutput, with_retries
from .prompts import Message, critique_messages, revision_messages
from .schema import Constitution, CritiqueExample, Principle, default_constitution

_PREFIX_RE = re.compile(r"^\s*(?:\*\*)?(?:revision|revised response|rewritten response|revised|response)"
                        r"(?:\*\*)?\s*:\s*(?:\*\*)?\s*", re.IGNORECASE)
_REFUSAL_OF_TASK = re.compile(
    r"^\W*(?:(?:i(?:'m| am) )?sorry,? (?:but )?|i apologi[sz]e,? (?:but )?)?i (?:can(?:no|')t|won't|will not|"
    r"am (?:not able|unable) to|'m (?:not able|unable) to)\s+(?:(?:help|assist)(?: you)? with\s+)?"
    r"(?:critiqu|revis|rewrit|edit|review|evaluat|assess)", re.IGNORECASE)
_TASK_WORDS = re.compile(r"critiqu|revis|rewrit|edit|review|evaluat|assess", re.IGNORECASE)


def _opens_with_refusal(text: str) -> bool:
    """The text starts with a refusal phrase (the guard's phrase rules, no model)."""
    from bastion.guard.core import _refusal_rules

    return _refusal_rules().refusal.match(text.lstrip(" \t\n\"'*")) is not None


def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s|\n", text.strip(), maxsplit=1)[0]


def clean_text(text: str, kind: str) -> str:
    """Strip 'Revision:'-style labels and wrapping quotes; raise MalformedOutput when nothing usable is left."""
    t = (text or "").strip()
    if kind == "revision":
        t = _PREFIX_RE.sub("", t, count=1).strip()
        if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
            t = t[1:-1].strip()
    if not t:
        raise MalformedOutput(f"empty {kind} from the model")
    if _REFUSAL_OF_TASK.match(t):
        raise MalformedOutput(f"the model declined to write a {kind}: {_first_sentence(t)[:80]!r}")
    if kind == "critique" and _opens_with_refusal(t):
        # a critique has nothing to refuse: a reply that opens by declining is a refusal of the task
        raise MalformedOutput(f"the model declined to write a critique: {_first_sentence(t)[:80]!r}")
    if kind == "revision" and _opens_with_refusal(t) and _TASK_WORDS.search(_first_sentence(t)):
        # "I can't help with that request" is a fine revision of a harmful answer; "I can't help with
        # rewriting this" declines the revision itself
        raise MalformedOutput(f"the model declined to write a revision: {_first_sentence(t)[:80]!r}")
    return t


@dataclass(frozen=True)
class RevisionStep:
    principle_id: str
    critique: str
    revision: str

    def to_dict(self) -> dict[str, str]:
        return {"principle_id": self.principle_id, "critique": self.critique, "revision": self.revision}


def principle_rng(seed: int | None, stage: str, key: str) -> random.Random:
    """A per-record RNG: the same seed and record always draw the same principles, whatever the
    concurrency or resume order."""
    return random.Random(f"{seed}:{stage}:{key}")


class Reviser:
    """Have a model critique and revise a response under a constitution.

    ``Reviser(client, constitution).revise(prompt, response) -> str`` is the run-time path used by
    `on_violation="revise"` and the gateway's `revise` action; `arevise` is the async form and
    `arevise_steps` returns every critique/revision step.
    """

    def __init__(self, client: LLMClient, constitution: Constitution | None = None, *, rounds: int = 1,
                 few_shot: Sequence[CritiqueExample] | None = None, temperature: float = 0.7,
                 max_tokens: int | None = 1024, retries: int = 2, seed: int | None = None) -> None:
        if rounds < 1:
            raise ValueError("rounds must be >= 1")
        self.client = client
        self.constitution = constitution or default_constitution()
        self.rounds = rounds
        self.few_shot = list(self.constitution.few_shot if few_shot is None else few_shot)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.retries = retries
        self.seed = seed

    def _kw(self, attempt: int) -> dict[str, Any]:
        kw: dict[str, Any] = {"temperature": self.temperature}
        if self.max_tokens:
            kw["max_tokens"] = self.max_tokens
        if self.seed is not None:
            kw["seed"] = self.seed + attempt
        return kw

    async def _ask(self, messages: list[Message], kind: str) -> str:
        async def go(attempt: int) -> str:
            res = await self.client.achat(messages, **self._kw(attempt))
            return clean_text(res.text, kind)
        return await with_retries(go, self.retries)

    async def astep(self, prompt: str | Sequence[Message], response: str, principle: Principle) -> RevisionStep:
        """One critique -> revision round under one principle."""
        crit = await self._ask(critique_messages(prompt, response, principle, self.few_shot), "critique")
        rev = await self._ask(revision_messages(prompt, response, principle, crit, self.few_shot), "revision")
        return RevisionStep(principle.id, crit, rev)

    def pick(self, rng: random.Random, categories: Sequence[str] | None = None) -> Principle:
        among = self.constitution.for_categories(categories) if categories else None
        return self.constitution.sample(rng, among)

    async def arevise_steps(self, prompt: str | Sequence[Message], response: str, *, rng: random.Random | None = None,
                            categories: Sequence[str] | None = None,
                            on_step: Callable[[RevisionStep], None] | None = None) -> list[RevisionStep]:
        rng = rng or random.Random(self.seed)
        steps: list[RevisionStep] = []
        current = response
        for _ in range(self.rounds):
            step = await self.astep(prompt, current, self.pick(rng, categories))
            steps.append(step)
            if on_step:
                on_step(step)
            current = step.revision
        return steps

    async def arevise(self, prompt: str | Sequence[Message], response: str,
                      categories: Sequence[str] | None = None) -> str:
        """The final revision. `categories` (hazard codes from a guard verdict) focus the principle choice."""
        steps = await self.arevise_steps(prompt, response, categories=categories)
        return steps[-1].revision

    async def __call__(self, prompt: str, response: str, decision: Any = None) -> str:
        """The gateway's reviser hook, ``(prompt, response, decision) -> revised``: principles are chosen
        from the decision's (or verdict's) hazard categories."""
        cats = [c for c in getattr(decision, "categories", ()) or () if c != "attack"]
        return await self.arevise(prompt, response, categories=cats or None)

    def revise(self, prompt: str | Sequence[Message], response: str,
               categories: Sequence[str] | None = None) -> str:
        """Blocking form of `arevise` (do not call from inside a running event loop; use `arevise`)."""
        return asyncio.run(self.arevise(prompt, response, categories))


async def revise_record(reviser: Reviser, key: str, rec: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """Revise one input record `{prompt, response}` (optionally `messages`: the conversation before the
    response) into `{prompt, [messages,] initial, revisions, final}`."""
    from .sft import conversation

    msgs = conversation(rec)
    prompt = msgs if len(msgs) > 1 else rec["prompt"]
    rng = principle_rng(seed, "revise", key)
    steps = await reviser.arevise_steps(prompt, rec["response"], rng=rng)
    out: dict[str, Any] = {"key": key, "prompt": rec["prompt"], "initial": rec["response"],
                           "revisions": [s.to_dict() for s in steps], "final": steps[-1].revision,
                           "model": reviser.client.model, "seed": seed,
                           "constitution": reviser.constitution.name}
    if len(msgs) > 1:
        out["messages"] = msgs  # the whole conversation, so SFT/DPO data keep every turn
    for extra in ("id", "category", "source", "technique"):
        if extra in rec:
            out[extra] = rec[extra]
    return out


@dataclass
class RevisionOutcome:
    """What `revise_if_flagged` decided for one response."""

    text: str
    revised: bool
    refused: bool
    verdict_before: Any
    verdict_after: Any = None


async def arevise_if_flagged(guard: Any, reviser: Reviser, prompt: str, response: str, *,
                             refusal: str = "I can't help with that.") -> RevisionOutcome:
    """Check `response` with the guard; when unsafe, revise it under the principles for the flagged
    categories and re-check. If the revision is still unsafe (or revising fails), return `refusal`."""
    before = guard.check_response(prompt, response)
    if not before.unsafe:
        return RevisionOutcome(response, revised=False, refused=False, verdict_before=before)
    cats = [c for c in before.categories if c != "attack"]
    try:
        text = await reviser.arevise(prompt, response, categories=cats)
    except Exception:  # noqa: BLE001 - a failing upstream must not leak the unsafe response
        return RevisionOutcome(refusal, revised=False, refused=True, verdict_before=before)
    after = guard.check_response(prompt, text)
    if after.unsafe:
        return RevisionOutcome(refusal, revised=True, refused=True, verdict_before=before, verdict_after=after)
    return RevisionOutcome(text, revised=True, refused=False, verdict_before=before, verdict_after=after)
