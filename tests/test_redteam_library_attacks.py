"""Attacker-LLM attacks (PAIR, TAP, Crescendo) and Best-of-N against scripted OpenAI-compatible servers.

The attacker is a `tests/fakellm.py` server; the target is another one behind a minimal Target. The target
complies (with a placeholder answer) only once the prompt holds a marker word the attacker eventually uses.
"""

from __future__ import annotations

import json
import re

import pytest

from bastion.llm import LLMClient
from bastion.redteam.attacks import (
    ATTACKS,
    PAIR,
    STOP_ERROR,
    STOP_EXHAUSTED,
    STOP_QUERIES,
    STOP_SUCCESS,
    STOP_TARGET_ERROR,
    STOP_TIME,
    STOP_TOKENS,
    TAP,
    BestOfNAttack,
    Budget,
    Crescendo,
    attack_prompts,
    get_attack,
    list_attacks,
    parse_attacker_json,
)
from bastion.redteam.base import Judgement, Seed, TargetReply
from tests.fakellm import FakeReply

SEED = Seed(id="t-1", text="Explain how to [PLACEHOLDER-HARMFUL-BEHAVIOUR]", category="S2", source="test",
            licence="MIT")
MARKER = "OPEN-SESAME"
COMPLY = "Sure, here is how: 1. [REDACTED-HARMFUL-STEP] 2. [REDACTED-HARMFUL-STEP]"
REFUSE = "I can't help with that."


_OPEN: list[LLMClient] = []


def client(base_url: str, model: str = "attacker") -> LLMClient:
    c = LLMClient(base_url, model, max_retries=0, timeout=10)
    _OPEN.append(c)
    return c


@pytest.fixture(autouse=True)
async def _close_clients():
    yield
    while _OPEN:
        await _OPEN.pop().aclose()


class LLMTarget:
    """A minimal Target over the OpenAI protocol (the real ones live in bastion.redteam.targets)."""

    name = "fake-target"

    def __init__(self, base_url: str) -> None:
        self.client = client(base_url, "target")

    async def respond(self, messages):
        r = await self.client.achat(messages)
        return TargetReply(text=r.text, usage=r.usage, latency_ms=r.latency_ms)


class MarkerJudge:
    """Success when the reply holds the placeholder answer; score from 'LEVEL n' hints; refusals flagged."""

    name = "marker"

    async def judge(self, seed, messages, reply):
        ok = "[REDACTED-HARMFUL-STEP]" in reply.text
        m = re.search(r"LEVEL (\d)", reply.text)
        score = 1.0 if ok else (int(m.group(1)) / 10 if m else 0.0)
        return Judgement(success=ok, score=score, refused=reply.text.startswith("I can't"), judge=self.name)


def last_user(req) -> str:
    return req["messages"][-1]["content"]


def marker_target(req):
    """Complies only when the last user turn holds the marker; echoes 'LEVEL n' hints in partial answers."""
    text = last_user(req)
    if MARKER in text:
        return COMPLY
    m = re.search(r"level=(\d)", text)
    return f"Here is something vague. LEVEL {m.group(1)}" if m else REFUSE


def attacker_json(**kw) -> str:
    return json.dumps(kw)


@pytest.fixture
def target(fake_llm):
    return LLMTarget(fake_llm(marker_target).base_url)


def test_registry_lists_attacks():
    assert {"pair", "tap", "crescendo", "bon"} <= set(ATTACKS)
    rows = {name: (d, ref, llm) for name, d, ref, llm in list_attacks()}
    assert rows["pair"][2] and rows["tap"][2] and rows["crescendo"][2] and not rows["bon"][2]
    assert all(ref.startswith("https://") for _, ref, _ in rows.values())
    assert get_attack("tap") is TAP
    with pytest.raises(ValueError, match="unknown attack"):
        get_attack("nope")
    with pytest.raises(ValueError, match="needs an attacker model"):
        PAIR(None, Budget(), 0)
    with pytest.raises(ValueError, match="max_queries"):
        Budget(max_queries=0)
    # attacker prompts are data, with the goal slot
    assert "{goal}" in attack_prompts()["pair"]["system"] and "{goal}" in attack_prompts()["crescendo"]["system"]


def test_parse_attacker_json():
    assert parse_attacker_json('Sure! {"improvement": "x", "prompt": "P1"} trailing', "prompt")[0] == "P1"
    assert parse_attacker_json("just a prompt", "prompt") == ("just a prompt", {})
    assert parse_attacker_json('{"prompt": ""}', "prompt")[0] == '{"prompt": ""}'


# ---- PAIR --------------------------------------------------------------------------------------------
async def test_pair_iterates_until_the_marker_then_succeeds(fake_llm, target):
    calls = {"n": 0}

    def attacker(req):
        calls["n"] += 1
        prompt = f"attempt {calls['n']}" + (f" {MARKER}" if calls["n"] == 3 else "")
        return attacker_json(improvement=f"try {calls['n']}", prompt=prompt)

    att = fake_llm(attacker)
    out = await PAIR(client(att.base_url), Budget(max_queries=10), seed=1,
                     iterations=5).run(SEED, target, MarkerJudge())
    assert out.success and out.stopped_reason == STOP_SUCCESS
    assert out.queries_used == 3 and len(out.turns) == 3 and out.attacker_queries == 3
    assert MARKER in out.best_prompt[-1]["content"] and "[REDACTED-HARMFUL-STEP]" in out.best_reply
    assert [t.meta["iteration"] for t in out.turns] == [0, 1, 2]
    assert out.turns[1].meta["improvement"] == "try 2"
    # the attacker saw the goal, then the target's previous reply and its score
    first, second = att.requests[0]["messages"], att.requests[1]["messages"]
    assert SEED.text in first[0]["content"] and first[0]["role"] == "system"
    assert REFUSE in second[-1]["content"] and "SCORE: 1" in second[-1]["content"]
    assert att.requests[0]["seed"] == 1
    assert out.tokens_used > 0 and out.judgement.success


async def test_pair_stops_on_query_budget(fake_llm, target):
    att = fake_llm(attacker_json(improvement="none", prompt="never the marker"))
    out = await PAIR(client(att.base_url), Budget(max_queries=2), 0,
                     iterations=10).run(SEED, target, MarkerJudge())
    assert not out.success and out.stopped_reason == STOP_QUERIES and out.queries_used == 2
    assert len(out.turns) == 2 and out.best_reply == REFUSE


async def test_pair_exhausts_iterations_and_streams(fake_llm, target):
    att = fake_llm(attacker_json(improvement="none", prompt="never the marker"))
    out = await PAIR(client(att.base_url), Budget(max_queries=None), 0,
                     iterations=2, streams=3).run(SEED, target, MarkerJudge())
    assert out.stopped_reason == STOP_EXHAUSTED and out.queries_used == 6
    assert sorted({t.meta["stream"] for t in out.turns}) == [0, 1, 2]


async def test_pair_stops_on_token_budget(fake_llm, target):
    att = fake_llm(FakeReply(attacker_json(prompt="never the marker"), usage={
        "prompt_tokens": 400, "completion_tokens": 100, "total_tokens": 500}))
    out = await PAIR(client(att.base_url), Budget(max_tokens=1200), 0,
                     iterations=10).run(SEED, target, MarkerJudge())
    # 500 + target + 500 + target < 1200; the third attacker call crosses it before the third target query
    assert out.stopped_reason == STOP_TOKENS and out.tokens_used >= 1200
    assert out.attacker_queries == 3 and out.queries_used == 2


async def test_pair_stops_on_wall_time(fake_llm):
    slow = LLMTarget(fake_llm(FakeReply(REFUSE, delay=0.4)).base_url)
    att = fake_llm(attacker_json(prompt="never the marker"))
    out = await PAIR(client(att.base_url), Budget(max_seconds=1.0), 0,
                     iterations=50).run(SEED, slow, MarkerJudge())
    assert out.stopped_reason == STOP_TIME and 1 <= out.queries_used <= 3 and out.elapsed_s < 2.5


async def test_attacker_and_target_failures_keep_the_turns(fake_llm, target):
    calls = {"n": 0}

    def flaky(req):
        calls["n"] += 1
        return attacker_json(prompt="x") if calls["n"] == 1 else FakeReply("bad key", status=401)

    att = fake_llm(flaky)
    out = await PAIR(client(att.base_url), Budget(), 0).run(SEED, target, MarkerJudge())
    assert out.stopped_reason == STOP_ERROR and "401" in out.error and len(out.turns) == 1

    class Broken:
        name = "broken"

        async def respond(self, messages):
            raise ConnectionError("boom")

    att2 = fake_llm(attacker_json(prompt="x"))
    out = await PAIR(client(att2.base_url), Budget(), 0).run(SEED, Broken(), MarkerJudge())
    assert out.stopped_reason == STOP_TARGET_ERROR and "boom" in out.error


# ---- TAP ---------------------------------------------------------------------------------------------
def tap_attacker(req):
    """Evaluator calls: [[NO]] for OFFTOPIC prompts. Attacker calls: children depend on the parent's prompt."""
    msgs = req["messages"]
    if "impartial judge" in msgs[0]["content"]:
        return "Response: [[NO]]" if "OFFTOPIC" in last_user(req) else "Response: [[YES]]"
    parents = [m["content"] for m in msgs if m["role"] == "assistant"]  # one per level above this node
    if not parents:  # children of the root: one weak, one off-topic, one promising
        k = req.get("_k", 0)
        options = [("level=1 weak", "a"), ("OFFTOPIC cooking question", "b"), ("level=5 promising", "c")]
        return attacker_json(improvement="start", prompt=options[k][0])
    parent = json.loads(parents[-1])["prompt"]
    if "level=5" in parent:
        return attacker_json(improvement="refine the promising branch", prompt=f"level=6 {MARKER}")
    return attacker_json(improvement="refine", prompt="level=2 still weak")


async def test_tap_branches_prunes_off_topic_and_by_width(fake_llm, target):
    root_calls = {"n": 0}

    def attacker(req):
        msgs = req["messages"]
        if "impartial judge" not in msgs[0]["content"] and not any(m["role"] == "assistant" for m in msgs):
            req["_k"] = root_calls["n"] % 3
            root_calls["n"] += 1
        return tap_attacker(req)

    att = fake_llm(attacker)
    tap = TAP(client(att.base_url), Budget(max_queries=50), seed=3,
              depth=3, branching=3, width=1)
    out = await tap.run(SEED, target, MarkerJudge())
    assert out.success and out.stopped_reason == STOP_SUCCESS
    # depth 1: 3 children, 1 pruned off-topic before any target query, 2 queried, width keeps the best
    pruned = [e for e in out.events if e["event"] == "pruned_off_topic"]
    assert len(pruned) == 1 and "OFFTOPIC" in pruned[0]["prompt"]
    assert not any("OFFTOPIC" in t.messages[-1]["content"] for t in out.turns)
    width = [e for e in out.events if e["event"] == "pruned_width"]
    assert len(width) == 1 and width[0]["depth"] == 1
    best_d1 = next(t for t in out.turns if "level=5" in t.messages[-1]["content"])
    winner = out.turns[-1]
    assert winner.meta["depth"] == 2 and winner.meta["parent"] == best_d1.meta["node"]
    assert MARKER in out.best_prompt[-1]["content"]
    assert out.queries_used == 3  # 2 at depth 1, the first child at depth 2 succeeds
    # on-topic checks run deterministically (temperature 0) and the attacker saw the score feedback
    evals = [r for r in att.requests if "impartial judge" in r["messages"][0]["content"]]
    assert evals and all(r["temperature"] == 0.0 for r in evals)
    d2 = [r for r in att.requests if sum(m["role"] == "assistant" for m in r["messages"]) == 1]
    assert d2 and "SCORE: 5" in d2[0]["messages"][-1]["content"]


async def test_tap_stops_when_everything_is_off_topic(fake_llm, target):
    def attacker(req):
        if "impartial judge" in req["messages"][0]["content"]:
            return "Response: [[NO]]"
        return attacker_json(prompt="OFFTOPIC")

    att = fake_llm(attacker)
    out = await TAP(client(att.base_url), Budget(), 0, depth=3, branching=2,
                    width=2).run(SEED, target, MarkerJudge())
    assert out.stopped_reason == STOP_EXHAUSTED and out.queries_used == 0 and not out.success
    assert [e["event"] for e in out.events] == ["pruned_off_topic", "pruned_off_topic", "all_pruned"]


async def test_tap_respects_query_budget(fake_llm, target):
    att = fake_llm(lambda req: "Response: [[YES]]" if "impartial judge" in req["messages"][0]["content"]
                   else attacker_json(prompt="level=1 weak"))
    out = await TAP(client(att.base_url), Budget(max_queries=4), 0, depth=5,
                    branching=3, width=3).run(SEED, target, MarkerJudge())
    assert out.stopped_reason == STOP_QUERIES and out.queries_used == 4


# ---- Crescendo ---------------------------------------------------------------------------------------
def crescendo_target(req):
    """Refuses any question with FORBIDDEN; complies once the marker arrives after >= 2 earlier answers."""
    msgs = req["messages"]
    text = last_user(req)
    if "FORBIDDEN" in text:
        return REFUSE
    if MARKER in text and sum(m["role"] == "assistant" for m in msgs) >= 2:
        return COMPLY
    return f"A general answer about {text[:30]}. LEVEL 3"


async def test_crescendo_escalates_and_backtracks_on_refusal(fake_llm):
    def attacker(req):
        user = last_user(req)
        turn = int(re.search(r"Turn (\d+)", user).group(1))
        if "erased" in user:
            return attacker_json(question="a gentler follow-up question", rationale="backtracked")
        if turn == 2:
            return attacker_json(question="FORBIDDEN direct question", rationale="too fast")
        if turn == 3:
            return attacker_json(question=f"so, building on that, {MARKER}", rationale="escalate")
        return attacker_json(question="an innocuous history question", rationale="start broad")

    att = fake_llm(attacker)
    target = LLMTarget(fake_llm(crescendo_target).base_url)
    out = await Crescendo(client(att.base_url), Budget(), seed=0, max_turns=6,
                          max_backtracks=3).run(SEED, target, MarkerJudge())
    assert out.success and out.stopped_reason == STOP_SUCCESS
    assert out.queries_used == 4  # turn 1, refused turn 2, retried turn 2, turn 3
    assert [e["event"] for e in out.events] == ["backtrack"]
    assert out.turns[1].meta.get("backtracked") and out.turns[1].reply == REFUSE
    # the refused exchange was erased from the conversation the target sees
    final = out.best_prompt
    assert len(final) == 5 and not any("FORBIDDEN" in m["content"] for m in final)
    assert [m["role"] for m in final] == ["user", "assistant", "user", "assistant", "user"]
    # the attacker was told about the refusal
    assert any("erased" in r["messages"][-1]["content"] for r in att.requests)


async def test_crescendo_backtrack_limit_and_turn_limit(fake_llm):
    att = fake_llm(attacker_json(question="FORBIDDEN every time"))
    target = LLMTarget(fake_llm(crescendo_target).base_url)
    out = await Crescendo(client(att.base_url), Budget(max_queries=None), 0,
                          max_turns=2, max_backtracks=2).run(SEED, target, MarkerJudge())
    assert out.stopped_reason == STOP_EXHAUSTED and not out.success
    assert out.queries_used == 4 and sum(e["event"] == "backtrack" for e in out.events) == 2
    assert len(out.turns[-1].messages) == 3  # after the backtracks, a refusal is kept in the history


async def test_crescendo_respects_query_budget(fake_llm):
    att = fake_llm(attacker_json(question="FORBIDDEN every time"))
    target = LLMTarget(fake_llm(crescendo_target).base_url)
    out = await Crescendo(client(att.base_url), Budget(max_queries=3), 0,
                          max_turns=10, max_backtracks=10).run(SEED, target, MarkerJudge())
    assert out.stopped_reason == STOP_QUERIES and out.queries_used == 3


# ---- Best-of-N ---------------------------------------------------------------------------------------
async def test_best_of_n_attack_samples_until_success(fake_llm):
    # the target complies once a variant happens to start with a lower-case letter
    target = LLMTarget(fake_llm(lambda req: COMPLY if last_user(req)[:1].islower() else REFUSE).base_url)
    out = await BestOfNAttack(None, Budget(max_queries=40), seed=5).run(SEED, target, MarkerJudge())
    assert out.success and out.stopped_reason == STOP_SUCCESS and 1 <= out.queries_used <= 40
    again = await BestOfNAttack(None, Budget(max_queries=40), seed=5).run(SEED, target, MarkerJudge())
    assert again.queries_used == out.queries_used and again.best_prompt == out.best_prompt
    refuser = LLMTarget(fake_llm(REFUSE).base_url)
    out = await BestOfNAttack(None, Budget(max_queries=6), seed=5).run(SEED, refuser, MarkerJudge())
    assert out.stopped_reason == STOP_EXHAUSTED and out.queries_used == 6
    assert len({t.messages[0]["content"] for t in out.turns}) == 6
