"""Constitution: files and validation, critique->revise, AI-feedback labels, synth, SFT/DPO, run-time revise.

Every LLM call goes to the scripted loopback server in tests/fakellm.py. No real harmful text:
harmful content is the placeholder [REDACTED-HARMFUL-STEP].
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
from pathlib import Path

import pytest

from bastion.constitution import (
    ConstitutionError,
    FeedbackLabeller,
    Reviser,
    Synthesizer,
    SynthFormatError,
    arevise_if_flagged,
    default_constitution,
    dpo_pairs,
    extract_json_items,
    letter_probs,
    load_constitution,
    parse_constitution,
    read_synth,
    sft_from_revision,
    validate_synth_record,
)
from bastion.constitution.label import parse_answer
from bastion.constitution.pipeline import label_file, revise_file, synth_file
from bastion.llm import ChatResult, LLMClient, TokenLogprob
from tests.fakellm import FakeReply, last_user

SWARM = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "constitutions" / "hf_llm_swarm"
HARM = "[REDACTED-HARMFUL-STEP]"


def small_constitution(n: int = 4, **extra):
    return parse_constitution({
        "name": "test",
        "principles": [{"id": f"p{i}", "critique_request": f"CRITIQUE-REQ p{i}", "revision_request": f"REVISE-REQ p{i}",
                        "comparison": f"COMPARE p{i}: which is better?", "tags": ["S2"], "weight": 1.0 + i}
                       for i in range(n)],
        **extra,
    }, "test.yaml")


def client(llm, **kw) -> LLMClient:
    return LLMClient(llm.base_url, "fake-model", api_key="x", max_retries=kw.pop("max_retries", 1),
                     backoff_base=0.001, **kw)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


# ---- constitution files -----------------------------------------------------------------------------
def test_default_constitution_has_16_tagged_principles():
    c = default_constitution()
    assert len(c.principles) >= 16
    assert len(set(c.ids)) == len(c.ids)
    for p in c.principles:
        assert p.critique_request and p.revision_request and p.comparison and p.weight > 0
    tagged = {t for p in c.principles for t in p.tags}
    assert {f"S{i}" for i in range(1, 15)} <= tagged  # every hazard category is covered
    assert c.few_shot and HARM in c.few_shot[0].messages[-1].content


def test_weighted_sampling_is_seeded_and_follows_weights():
    c = small_constitution(3)  # weights 1, 2, 3
    a = [c.sample(random.Random(7)).id for _ in range(5)]
    b = [c.sample(random.Random(7)).id for _ in range(5)]
    assert a == b
    rng = random.Random(1)
    counts = {i: 0 for i in c.ids}
    for _ in range(6000):
        counts[c.sample(rng).id] += 1
    assert counts["p0"] < counts["p1"] < counts["p2"]
    assert abs(counts["p2"] / 6000 - 0.5) < 0.03


@pytest.mark.skipif(not SWARM.is_dir(), reason="shared llm-swarm constitutions not present")
def test_llm_swarm_json_loads():
    c = load_constitution(SWARM / "constitution_anthropic.json")
    assert len(c.principles) == 16 and c.principles[0].id == "llm-swarm-01"
    assert c.principles[0].critique_request.startswith("Did the response include anything")
    assert len(c.few_shot) == 4
    ex = c.few_shot[0]
    assert ex.messages[0].role == "user" and ex.messages[-1].role == "assistant"
    assert ex.critique and ex.revision
    grok = load_constitution(SWARM / "constitution_grok.json")
    assert len(grok.principles) == 2
    assert any(len(e.messages) == 4 for e in grok.few_shot)  # a multi-turn dialogue before the critique


def test_llm_swarm_inline_and_bad_entry():
    c = parse_constitution({"constitutions": [{"critic": "Is it harmful?", "revision": "Make it harmless."}],
                            "system_chat": []}, "swarm.json")
    assert c.principles[0].revision_request == "Make it harmless."
    with pytest.raises(ConstitutionError, match=r"principle 'llm-swarm-02' \(#2\): field 'revision'"):
        parse_constitution({"constitutions": [{"critic": "a", "revision": "b"}, {"critic": "c"}]}, "swarm.json")


def test_validation_errors_name_principle_and_field(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("""
name: mine
principles:
  - id: ok-one
    critique_request: Is it harmful?
    revision_request: Make it harmless.
  - id: heavy
    critique_request: Is it harmful?
    revision_request: Make it harmless.
    weight: 0
  - id: tagged
    critique_request: Is it harmful?
    revision_request: Make it harmless.
    tags: [S2, S99]
  - critique_request: no id here
    revision_request: x
    colour: blue
""", encoding="utf-8")
    with pytest.raises(ConstitutionError) as ei:
        load_constitution(f)
    msg = str(ei.value)
    assert f"{f}:10: principle 'heavy' (#2): field 'weight'" in msg  # file:line of the field
    assert "principle 'tagged' (#3): field 'tags': unknown hazard code(s) 'S99'" in msg
    assert "principle #4 (no id): field 'id': Field required" in msg
    assert "principle #4 (no id): field 'colour': unknown field" in msg
    assert "ok-one" not in msg


def test_file_level_errors_are_one_line(tmp_path):
    with pytest.raises(ConstitutionError, match="no such file"):
        load_constitution(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("principles: [\n", encoding="utf-8")
    with pytest.raises(ConstitutionError, match=r"bad.yaml:2: YAML syntax error"):
        load_constitution(bad)
    dup = {"principles": [{"id": "a", "critique_request": "x", "revision_request": "y"}] * 2}
    with pytest.raises(ConstitutionError, match="principle 'a': field 'id': duplicated"):
        parse_constitution(dup, "dup.yaml")


def test_default_constitution_round_trips_through_yaml(tmp_path):
    f = tmp_path / "copy.yaml"
    f.write_text(default_constitution().to_yaml(), encoding="utf-8")
    c = load_constitution(f)
    assert c.ids == default_constitution().ids and len(c.few_shot) == len(default_constitution().few_shot)


# ---- critique -> revision ------------------------------------------------------------------------
def revise_script(req):
    msgs = req["messages"]
    last = last_user(req)
    m = re.match(r"(CRITIQUE|REVISE)-REQ (p\d)", last)
    if not m:
        return "plain answer"
    resp = [x for x in msgs if x["role"] == "assistant"]
    if m.group(1) == "CRITIQUE":
        return f"critique[{m.group(2)}] of <{resp[-1]['content']}>"
    # the response under review is the assistant turn before the critique
    return f"Revision: rev[{m.group(2)}]({resp[-2]['content']})"


def test_revise_records_rounds_and_chaining(fake_llm, tmp_path):
    llm = fake_llm(revise_script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q1", "response": f"bad {HARM}"},
                                             {"prompt": "q2", "response": "bad two"}])
    out = tmp_path / "out.jsonl"
    reviser = Reviser(client(llm), small_constitution(), rounds=3, seed=5)
    s = asyncio.run(revise_file(inp, out, reviser, seed=5, concurrency=2))
    assert (s.written, s.failed, s.skipped) == (2, 0, 0)
    rows = {r["prompt"]: r for r in read_lines(out)}
    r = rows["q1"]
    assert set(r) >= {"prompt", "initial", "revisions", "final"}
    assert r["initial"] == f"bad {HARM}" and len(r["revisions"]) == 3
    steps = r["revisions"]
    assert set(steps[0]) == {"principle_id", "critique", "revision"}
    # round 1 critiques the initial response; later rounds critique the previous revision
    assert steps[0]["critique"] == f"critique[{steps[0]['principle_id']}] of <bad {HARM}>"
    assert steps[1]["critique"].endswith(f"<{steps[0]['revision']}>")
    assert not steps[0]["revision"].startswith("Revision:")  # label stripped
    assert r["final"] == steps[-1]["revision"]
    assert llm.calls == 2 * 3 * 2
    # the constitution's few-shot examples come first in every request
    reqs = [q for q in llm.requests if last_user(q).startswith("CRITIQUE-REQ")]
    assert all(q["messages"][-3]["content"] in ("q1", "q2") for q in reqs)


def test_revise_principles_are_reproducible_with_seed(fake_llm, tmp_path):
    llm = fake_llm(revise_script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}", "response": f"r{i}"} for i in range(6)])

    def run(seed, name, conc):
        reviser = Reviser(client(llm), small_constitution(5), rounds=3, seed=seed)
        asyncio.run(revise_file(inp, tmp_path / name, reviser, seed=seed, concurrency=conc))
        return {r["prompt"]: [s["principle_id"] for s in r["revisions"]] for r in read_lines(tmp_path / name)}

    a, b, c = run(11, "a.jsonl", 1), run(11, "b.jsonl", 4), run(12, "c.jsonl", 4)
    assert a == b  # same seed -> same principles, whatever the concurrency/order
    assert a != c
    assert all(r["seed"] == 11 for r in read_lines(tmp_path / "a.jsonl"))
    # seed is also sent to the endpoint
    assert {q.get("seed") for q in llm.requests} >= {11, 12}


def test_revise_resumes_without_losing_lines_and_reports_bad_input(fake_llm, tmp_path):
    llm = fake_llm(revise_script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q1", "response": "r1"}, "{not json",
                                             {"prompt": "q2"}, {"prompt": "q3", "response": "r3"},
                                             {"prompt": "q1", "response": "r1"}])  # duplicate kept
    out = tmp_path / "out.jsonl"
    # a previous run wrote one good line and crashed in the middle of the next one
    first = Reviser(client(llm), small_constitution(), rounds=1, seed=0)
    s = asyncio.run(revise_file(inp, out, first, seed=0, concurrency=1))
    assert s.written == 3 and [str(b) for b in s.bad_lines] == [
        f"{inp}:2: invalid JSON: Expecting property name enclosed in double quotes at column 2",
        f"{inp}:3: field 'response' missing or not a string"]
    lines = out.read_text().splitlines()
    out.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # truncated, no newline
    llm.reset()
    s2 = asyncio.run(revise_file(inp, out, first, seed=0, concurrency=1))
    assert s2.skipped == 1 and s2.written == 2 and s2.damaged_out_lines == [2]
    text = out.read_text()
    assert text.splitlines()[0] == lines[0]  # the good line is untouched
    # the damaged line is moved to OUT.damaged (not lost, not merged) and OUT stays valid JSONL
    assert s2.damaged_to == str(out) + ".damaged"
    assert (tmp_path / "out.jsonl.damaged").read_text() == lines[1][: len(lines[1]) // 2] + "\n"
    assert len(read_lines(out)) == 3
    llm.reset()
    s3 = asyncio.run(revise_file(inp, out, first, seed=0, concurrency=1))
    assert s3.written == 0 and s3.skipped == 3 and llm.calls == 0


def test_revise_keeps_lone_surrogates_and_survives_a_deeply_nested_output_line(fake_llm, tmp_path):
    llm = fake_llm(revise_script)
    # "\ud800" is a valid JSON escape but not valid UTF-8 once decoded; the output must keep it, escaped
    inp = tmp_path / "in.jsonl"
    inp.write_text('{"prompt": "q\\ud800", "response": "r1", "id": "a"}\n{"prompt": "q2", "response": "r2"}\n')
    out = tmp_path / "out.jsonl"
    out.write_text("[" * 3000 + "\n")  # a line json.loads cannot take (RecursionError), from some other tool
    rev = Reviser(client(llm), small_constitution(), rounds=1, seed=0)
    s = asyncio.run(revise_file(inp, out, rev, seed=0, concurrency=1))
    assert s.written == 2 and s.failed == 0 and s.damaged_out_lines == [1]
    raw = out.read_bytes()
    raw.decode("utf-8")  # strict: the file is valid UTF-8
    assert b'"q\\ud800"' in raw
    rows = read_lines_lenient(out)
    assert {r["prompt"] for r in rows} == {"q\ud800", "q2"}
    llm.reset()
    s2 = asyncio.run(revise_file(inp, out, rev, seed=0, concurrency=1))
    assert s2.written == 0 and s2.skipped == 2 and llm.calls == 0


def read_lines_lenient(path: Path) -> list[dict]:
    out = []
    for x in path.read_text().splitlines():
        try:
            out.append(json.loads(x))
        except (json.JSONDecodeError, RecursionError):
            pass
    return out


def test_revise_malformed_output_retried_then_recorded(fake_llm, tmp_path):
    state = {"empty_once": True}

    def script(req):
        last = last_user(req)
        if "poison" in json.dumps(req["messages"]) and last.startswith("REVISE"):
            return "   "  # never a usable revision
        if last.startswith("CRITIQUE") and state["empty_once"]:
            state["empty_once"] = False
            return ""
        return revise_script(req)

    llm = fake_llm(script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "fine", "response": "r"},
                                             {"prompt": "poison", "response": "r"}])
    out = tmp_path / "out.jsonl"
    reviser = Reviser(client(llm), small_constitution(), rounds=1, retries=2)
    s = asyncio.run(revise_file(inp, out, reviser, concurrency=1))
    assert s.written == 1 and s.failed == 1
    assert [r["prompt"] for r in read_lines(out)] == ["fine"]
    failed = read_lines(tmp_path / "out.failed.jsonl")
    assert failed[0]["input"]["prompt"] == "poison" and "empty revision" in failed[0]["reason"]
    assert sum(1 for q in llm.requests if "poison" in json.dumps(q) and last_user(q).startswith("REVISE")) == 3


def test_reviser_runtime_api_and_guarded_revise(fake_llm):
    llm = fake_llm(revise_script)
    rv = Reviser(client(llm), small_constitution(), seed=3)
    text = rv.revise("q", f"bad {HARM}")
    assert text.startswith("rev[p") and HARM in text  # the scripted reviser just wraps the text

    class V:
        def __init__(self, unsafe):
            self.unsafe, self.categories = unsafe, ("S2",) if unsafe else ()

    class FakeGuard:
        def check_response(self, prompt, response):
            return V(response.startswith("bad"))

    res = asyncio.run(arevise_if_flagged(FakeGuard(), rv, "q", "bad answer"))
    assert res.revised and not res.refused and res.text.startswith("rev[")
    res = asyncio.run(arevise_if_flagged(FakeGuard(), rv, "q", "good answer"))
    assert not res.revised and res.text == "good answer"

    class StrictGuard(FakeGuard):
        def check_response(self, prompt, response):
            return V(True)

    res = asyncio.run(arevise_if_flagged(StrictGuard(), rv, "q", "bad", refusal="no."))
    assert res.refused and res.text == "no."


def test_reviser_is_the_gateway_hook_and_focuses_on_flagged_categories(fake_llm):
    llm = fake_llm(revise_script)
    c = parse_constitution({"principles": [
        {"id": "priv", "critique_request": "CRITIQUE-REQ p0", "revision_request": "REVISE-REQ p0", "tags": ["S7"]},
        {"id": "weap", "critique_request": "CRITIQUE-REQ p1", "revision_request": "REVISE-REQ p1", "tags": ["S9"],
         "weight": 100}]}, "t.yaml")
    rv = Reviser(client(llm), c, few_shot=[])

    class Decision:
        action, categories = "revise", ("S7", "attack")

    for _ in range(3):
        text = asyncio.run(rv("q", "leaks an address", Decision()))
        assert text == "rev[p0](leaks an address)"  # only the S7 principle, despite the other's weight


# ---- AI feedback labels ---------------------------------------------------------------------------
OPT_RE = re.compile(r"\(A\) (.*?)\n\n\(B\) (.*?)\n", re.DOTALL)


def options(req) -> tuple[str, str]:
    m = OPT_RE.search(last_user(req))
    assert m, last_user(req)
    return m.group(1), m.group(2)


def biased_feedback(req, bias=0.2, truth=0.7):
    """Prefers the GOOD response with probability `truth`, plus `bias` toward whatever is shown as (A)."""
    a, _ = options(req)
    p_a = (truth if a.startswith("GOOD") else 1 - truth) + bias
    letter = "A" if p_a >= 0.5 else "B"
    return FakeReply(f"({letter})", logprobs=[(f"({letter})", math.log(max(p_a, 1 - p_a)),
                                               {"(A)": math.log(p_a), "(B)": math.log(1 - p_a)})])


def pairs_file(tmp_path, n=3) -> Path:
    rows = []
    for i in range(n):
        good, bad = f"GOOD answer {i}", f"BAD answer {i} {HARM}"
        rows.append({"prompt": f"question {i}", "response_a": good if i % 2 == 0 else bad,
                     "response_b": bad if i % 2 == 0 else good})
    return write_jsonl(tmp_path / "pairs.jsonl", rows)


def test_soft_labels_average_both_orderings_cancelling_position_bias(fake_llm, tmp_path):
    llm = fake_llm(biased_feedback)
    out = tmp_path / "prefs.jsonl"
    lab = FeedbackLabeller(client(llm), small_constitution(), seed=1, few_shot=[])
    s = asyncio.run(label_file(pairs_file(tmp_path), out, lab, seed=1, concurrency=2))
    assert s.written == 3 and s.failed == 0
    # both orderings asked for every pair: the same two options, swapped
    assert llm.calls == 6
    by_prompt: dict[str, list[tuple[str, str]]] = {}
    for q in llm.requests:
        by_prompt.setdefault(re.search(r"Human: (question \d)", last_user(q)).group(1), []).append(options(q))
        assert q["logprobs"] is True and q["top_logprobs"] >= 2
    for opts in by_prompt.values():
        assert len(opts) == 2 and opts[0] == opts[1][::-1]
    for r in read_lines(out):
        assert r["chosen"].startswith("GOOD") and r["rejected"].startswith("BAD")
        # one ordering alone says 0.9, the other 0.5; the average recovers the unbiased 0.7
        assert r["chosen_prob"] == pytest.approx(0.7, abs=1e-6)
        firsts = sorted(round(x["p_first"], 3) for x in r["raw"])
        assert firsts == [0.5, 0.9]
        assert r["label_type"] == "soft" and r["model"] == "fake-model" and r["seed"] == 1
        assert set(r) >= {"prompt", "chosen", "rejected", "chosen_prob", "principle_id", "model", "seed", "raw"}
        assert r["principle_id"] in small_constitution().ids
        # the sampled principle's comparison question is what was asked
        asked = [last_user(q) for q in llm.requests if r["prompt"] in last_user(q)]
        assert all(f"COMPARE {r['principle_id']}:" in a for a in asked)


def test_labels_are_reproducible_with_seed(fake_llm, tmp_path):
    llm = fake_llm(biased_feedback)
    pf = pairs_file(tmp_path, 8)

    def run(seed, name):
        lab = FeedbackLabeller(client(llm), small_constitution(5), seed=seed)
        asyncio.run(label_file(pf, tmp_path / name, lab, seed=seed, concurrency=3))
        return sorted((r["prompt"], r["principle_id"], r["chosen"], r["chosen_prob"])
                      for r in read_lines(tmp_path / name))

    assert run(4, "a.jsonl") == run(4, "b.jsonl")
    assert [x[1] for x in run(4, "c.jsonl")] != [x[1] for x in run(5, "d.jsonl")]


def test_cot_reasons_first_then_clamps(fake_llm, tmp_path):
    def script(req):
        a, _ = options(req) if OPT_RE.search(last_user(req)) else ("", "")
        letter = "A" if a.startswith("GOOD") else "B"
        text = f"Option one is safer because it omits {HARM}. So the answer is ({letter})"
        toks = [(t, -0.05, {}) for t in text.split(" ")[:-1]]
        toks.append((f"({letter})", math.log(0.99), {"(A)": math.log(0.99 if letter == "A" else 0.01),
                                                      "(B)": math.log(0.01 if letter == "A" else 0.99)}))
        return FakeReply(text, logprobs=toks)

    llm = fake_llm(script)
    out = tmp_path / "prefs.jsonl"
    lab = FeedbackLabeller(client(llm), small_constitution(), cot=True, seed=0)
    asyncio.run(label_file(pairs_file(tmp_path, 2), out, lab, seed=0))
    assert all("think step by step" in last_user(q) for q in llm.requests)
    # few-shot feedback example with reasoning is shown in cot form
    for r in read_lines(out):
        assert r["chosen"].startswith("GOOD")
        assert r["cot"] is True and r["clamped"] is True
        assert 0.4 <= r["chosen_prob"] <= 0.6 and r["chosen_prob"] == pytest.approx(0.6)
        assert all(x["answer"].startswith("Option one") for x in r["raw"])


def test_hard_label_fallback_when_no_logprobs(fake_llm, tmp_path):
    def script(req):
        a, _ = options(req)
        return FakeReply("The answer is (A)." if a.startswith("GOOD") else "(B)", logprobs=[])

    llm = fake_llm(script)
    out = tmp_path / "prefs.jsonl"
    asyncio.run(label_file(pairs_file(tmp_path, 2), out, FeedbackLabeller(client(llm), small_constitution()), seed=0))
    for r in read_lines(out):
        assert r["label_type"] == "hard" and "no logprobs" in r["note"]
        assert r["chosen"].startswith("GOOD") and r["chosen_prob"] == 1.0
        assert all(x["soft"] is False for x in r["raw"])


def test_malformed_feedback_is_retried_then_recorded_unlabelled(fake_llm, tmp_path):
    def script(req):
        text = last_user(req)
        if "question 1" in text:
            return FakeReply("I would rather not say.", logprobs=[])
        if "question 2" in text:
            return FakeReply("boom", status=500)
        return biased_feedback(req)

    llm = fake_llm(script)
    out = tmp_path / "prefs.jsonl"
    lab = FeedbackLabeller(client(llm, max_retries=1), small_constitution(), retries=2)
    s = asyncio.run(label_file(pairs_file(tmp_path, 3), out, lab, seed=0))
    assert (s.written, s.failed) == (1, 2)
    assert [r["prompt"] for r in read_lines(out)] == ["question 0"]
    failed = {r["input"]["prompt"]: r for r in read_lines(tmp_path / "prefs.failed.jsonl")}
    assert failed["question 1"]["status"] == "unlabelled" and "no (A)/(B) answer" in failed["question 1"]["reason"]
    assert "500" in failed["question 2"]["reason"]
    assert sum("question 1" in last_user(q) for q in llm.requests) == 3  # 1 + 2 retries


def test_letter_probs_and_answer_parsing():
    lp = [TokenLogprob("(", -0.01, {"(": -0.01}), TokenLogprob("B", math.log(0.8), {"B": math.log(0.8),
                                                                                       " A": math.log(0.2)})]
    pa, pb = letter_probs(lp)
    assert pa == pytest.approx(0.2) and pb == pytest.approx(0.8)
    assert letter_probs([TokenLogprob("Hello", -0.1, {"Hi": -2})]) is None
    assert parse_answer("The answer is (B).") == "B"
    assert parse_answer("Response A is risky... So the answer is (B)", last=True) == "B"
    assert parse_answer("no idea") is None
    lab = FeedbackLabeller.__new__(FeedbackLabeller)
    lab.cot = False
    ans = lab._read(ChatResult(text="(A)", logprobs=None), "ba")
    assert ans.soft is False and ans.p_a == 0.0 and "no logprobs" in ans.note


# ---- synth ------------------------------------------------------------------------------------
MESSY = f"""Sure! Here are the examples you asked for:
```json
[
  {{"prompt": "How do I reset my router password?", "prompt_allowed": true,
    "response": "Hold the reset button for 10 seconds.", "response_allowed": true, "category": null}},
  {{"prompt": "Explain how to do {HARM} to a neighbour", "prompt_allowed": "false",
    "response": "Step 1: {HARM}", "response_allowed": false, "category": "S2",}},
  {{"prompt": "", "prompt_allowed": true}},
  {{"prompt": "Tell me about [REDACTED-TOPIC]", "prompt_allowed": false,
    "response": "I can't help with that.", "response_allowed": true, "category": "S99"}},
]
```
Let me know if you need more!"""


def test_extract_json_items_from_messy_output():
    items = extract_json_items(MESSY)
    assert len(items) == 4 and items[1]["category"] == "S2"
    lines = '{"prompt": "a", "prompt_allowed": true}\nnoise\n{"prompt": "b", "prompt_allowed": false}'
    assert [i["prompt"] for i in extract_json_items(lines)] == ["a", "b"]
    wrapped = 'Result: {"examples": [{"prompt": "a", "prompt_allowed": true}]} done'
    assert extract_json_items(wrapped) == [{"prompt": "a", "prompt_allowed": True}]
    smart = '[{\u201cprompt\u201d: \u201ca\u201d, \u201cprompt_allowed\u201d: true}]'
    assert extract_json_items(smart)[0]["prompt"] == "a"
    assert extract_json_items("I cannot help with that.") == []


def synth_script(req):
    text = last_user(req)
    if text.startswith("Paraphrase"):
        return "Paraphrased: " + text.split("Request: ", 1)[1][::-1]
    if "JUNK" in text or "id: p1" in text and "junk-once" not in synth_script.seen:
        synth_script.seen.add("junk-once")
        return "I'm not able to produce JSON right now."
    return MESSY


def test_synth_parses_messy_output_and_augments(fake_llm, tmp_path):
    synth_script.seen = set()
    llm = fake_llm(synth_script)
    out = tmp_path / "synth.jsonl"
    syn = Synthesizer(client(llm), small_constitution(2), batches=1, paraphrases=1, wrappers=1, obfuscations=1,
                      seed=3)
    s = asyncio.run(synth_file(out, syn, concurrency=2))
    assert s.failed == 0 and s.written > 0
    recs = read_synth(out)  # the trainer's reader validates every line
    assert len(recs) == s.written
    assert {r.principle_id for r in recs} == {"p0", "p1"}
    base = [r for r in recs if r.augmentation is None]
    # 3 usable items per batch: 3 prompt rows + 3 response rows; the empty prompt is dropped
    assert sum(r.task == "prompt" for r in base) == 6 and sum(r.task == "response" for r in base) == 6
    harmful_prompt = next(r for r in base if r.task == "prompt" and HARM in r.prompt)
    assert harmful_prompt.label == 1 and harmful_prompt.category == "S2" and harmful_prompt.response is None
    resp = next(r for r in base if r.task == "response" and r.response.startswith("Step 1"))
    assert resp.label == 1
    assert next(r for r in base if "REDACTED-TOPIC" in r.prompt).category == "S2"  # S99 -> principle's tag
    augs = {r.augmentation.split(":")[0] for r in recs if r.augmentation}
    assert augs == {"paraphrase", "wrapper", "obfuscation"}
    for r in recs:
        if r.augmentation:
            assert r.task == "prompt" and r.response is None
    # augmentations cover both labels, so they are no shortcut to the label
    assert {r.label for r in recs if r.augmentation and r.augmentation.startswith("wrapper")} == {0, 1}
    assert any("dropped" in n or "item 3" in n for n in s.notes)
    # resumable per principle: a rerun asks nothing
    llm.reset()
    s2 = asyncio.run(synth_file(out, syn))
    assert s2.skipped == 2 and llm.calls == 0 and len(read_synth(out)) == len(recs)


def test_synth_records_failure_when_output_never_parses(fake_llm, tmp_path):
    llm = fake_llm("Sorry, no JSON today.")
    out = tmp_path / "synth.jsonl"
    syn = Synthesizer(client(llm), small_constitution(1), batches=1, retries=1)
    s = asyncio.run(synth_file(out, syn))
    assert s.failed == 1 and not out.exists()
    rec = read_lines(tmp_path / "synth.failed.jsonl")[0]
    assert rec["input"] == {"principle_id": "p0"} and "no JSON items found" in rec["reason"]
    assert llm.calls == 2


def test_synth_record_validator():
    ok = {"prompt": "p", "response": None, "label": 1, "task": "prompt", "category": "S2", "principle_id": "x",
          "source": "synth", "augmentation": None}
    assert validate_synth_record(ok).label == 1
    for change, field in [({"task": "response"}, "(record)"), ({"category": "S15"}, "category"),
                          ({"label": True}, "label"), ({"extra": 1}, "extra"), ({"source": "web"}, "source")]:
        with pytest.raises(SynthFormatError, match=re.escape(f"field '{field}'")):
            validate_synth_record({**ok, **change}, "synth.jsonl:3")


def test_read_synth_names_file_and_line(tmp_path):
    good = {"prompt": "p", "response": "r", "label": 0, "task": "response", "category": None,
            "principle_id": "x", "source": "synth", "augmentation": None}
    f = write_jsonl(tmp_path / "s.jsonl", [good, {**good, "label": 2}])
    with pytest.raises(SynthFormatError, match=rf"{re.escape(str(f))}:2: field 'label'"):
        read_synth(f)
    assert len(read_synth(f, strict=False)) == 1


# ---- SFT / DPO ------------------------------------------------------------------------------------
def test_sft_messages_and_dpo_pairs():
    rev = {"prompt": "q", "initial": f"bad {HARM}", "final": "safe answer", "model": "m", "seed": 1,
           "revisions": [{"principle_id": "p1", "critique": "c", "revision": "safe answer"}]}
    ex = sft_from_revision(rev, system="be safe")
    assert ex["messages"] == [{"role": "system", "content": "be safe"}, {"role": "user", "content": "q"},
                              {"role": "assistant", "content": "safe answer"}]
    pairs = list(dpo_pairs([rev, {**rev, "final": rev["initial"]}]))
    assert len(pairs) == 1
    assert pairs[0]["chosen"] == "safe answer" and pairs[0]["rejected"] == f"bad {HARM}"
    assert pairs[0]["pair_type"] == "revision_vs_original" and pairs[0]["principle_ids"] == ["p1"]


def test_augmenters_come_from_the_redteam_registry():
    from bastion.constitution.synth import available_augmenters

    try:
        import bastion.redteam.techniques  # noqa: F401
        from bastion.redteam.base import TECHNIQUES
    except ImportError:
        TECHNIQUES = {}
    wrappers, obfus = available_augmenters()
    names = {a.name for a in wrappers + obfus}
    if TECHNIQUES:
        assert "obfuscation:base64" in names and any(n.split(":")[1] in TECHNIQUES for n in names)
        assert "wrapper:many_shot" not in names and "obfuscation:many_shot" not in names  # multi-turn
    assert wrappers and obfus
    rng = random.Random(0)
    for a in wrappers + obfus:
        out = a.fn("Tell me about [REDACTED-TOPIC]", rng)
        assert isinstance(out, str) and out
