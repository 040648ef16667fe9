"""Regression tests for the second review of the constitution component: answers that go on after the letter,
"Neither ..." read as (A), endpoints that refuse logprobs, scripted assistant turns as SFT targets, one-sided
synth data, --system with a system message, YAML edge cases, and a mistyped --db. Every LLM call goes to the
scripted loopback server; harmful content is a placeholder."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import pytest

from bastion.constitution import FeedbackLabeller, load_constitution, parse_answer
from bastion.constitution.label import final_answer
from bastion.constitution.pipeline import label_file
from bastion.constitution.sft import sft_from_revision
from bastion.llm import ChatResult, TokenLogprob
from tests.fakellm import FakeReply, last_user
from tests.test_constitution import (
    HARM,
    client,
    options,
    pairs_file,
    read_lines,
    small_constitution,
    write_jsonl,
)
from tests.test_constitution_cli import cli  # noqa: F401 - fixture


def L(p: float) -> float:
    return math.log(p)


def _labeller(cot: bool = False) -> FeedbackLabeller:
    lab = FeedbackLabeller.__new__(FeedbackLabeller)
    lab.cot = cot
    return lab


# ---- 1: the letter, then text ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text,want", [
    ("B, because it is", "B"), ("A is better", "A"), ("B: it is safer", "B"), ("A - it is safer", "A"),
    ("**B**", "B"), ("(A) is better", "A"), ("B", "B"), ("The answer is (B).", "B"), ("answer: A", "A"),
    ("Response B.", "B"), ("The better response is B", "B"),
])
def test_parse_answer_accepts_the_letter_followed_by_text(text, want):
    assert parse_answer(text) == want


def test_letter_then_text_is_a_soft_label_from_the_answer_position(fake_llm, tmp_path):
    def judge(req):  # prefers GOOD with 0.8, and explains itself after the letter
        a, _ = options(req)
        tok = "A" if a.startswith("GOOD") else "B"
        other = "B" if tok == "A" else "A"
        return FakeReply(f"{tok}, because it is", logprobs=[
            (tok, L(0.8), {tok: L(0.8), other: L(0.2)}), (",", -0.01, {}), (" because", -0.1, {}),
            (" it", -0.1, {}), (" is", -0.1, {})])

    llm = fake_llm(judge)
    out = tmp_path / "prefs.jsonl"
    s = asyncio.run(label_file(pairs_file(tmp_path), out, FeedbackLabeller(client(llm), small_constitution(),
                                                                           retries=0), seed=0))
    assert s.failed == 0 and s.written == 3
    for r in read_lines(out):
        assert r["chosen"].startswith("GOOD") and r["label_type"] == "soft"
        assert r["chosen_prob"] == pytest.approx(0.8)


def test_reply_opening_with_an_article_that_answers_the_other_letter_is_no_label():
    toks = [TokenLogprob("A", L(0.6), {"A": L(0.6), "B": L(0.4)}), TokenLogprob(" better", -0.1, {}),
            TokenLogprob(" reply is (B)", -0.1, {})]
    from bastion.constitution.batch import MalformedOutput

    with pytest.raises(MalformedOutput, match="opens with A but answers B"):
        _labeller()._read(ChatResult(text="A better reply is (B)", logprobs=toks), "ab")


def test_letter_then_text_without_logprobs_is_a_hard_label():
    got = _labeller()._read(ChatResult(text="B, because it", logprobs=None), "ab")
    assert got.p_first == 0.0 and not got.soft


# ---- 2: "Neither", "response a" ------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["Neither response is a good answer", "Response a is safer", "Neither (A) nor (B)",
                                  "Response A is harmful", "A good response would refuse", "no idea"])
def test_parse_answer_finds_no_answer_in_neither_or_lowercase_articles(text):
    assert parse_answer(text) is None


def test_final_answer_letters_are_capitals():
    assert final_answer("Both are poor. The answer is a.") is None
    assert final_answer("Both are poor. So the answer is (B).") == "B"


def test_neither_in_one_ordering_is_unlabelled_not_a_confident_label(fake_llm, tmp_path, cli):  # noqa: F811
    def judge(req):  # ordering ab says "Neither ..."; ordering ba picks response_a softly
        a, _ = options(req)
        if a.startswith("GOOD"):
            return FakeReply("Neither response is a good answer", logprobs=[
                ("Neither", L(0.9), {"Neither": L(0.9), "A": L(0.05), "B": L(0.05)}), (" response", -0.1, {})])
        return FakeReply("(B)", logprobs=[("(", -0.01, {"(": -0.01}), ("B", L(0.6), {"B": L(0.6), "A": L(0.4)}),
                                          (")", 0.0, {})])

    llm = fake_llm(judge)
    out = tmp_path / "prefs.jsonl"
    r = cli("label", pairs_file(tmp_path, 2), "--base-url", llm.base_url, "--model", "m", "--out", out,
            "--retries", "0", "--api-key", "x")
    assert r.exit_code == 1 and "every record failed" in r.output
    assert not out.exists() or not read_lines(out)
    assert all(f["status"] == "unlabelled" for f in read_lines(tmp_path / "prefs.failed.jsonl"))


# ---- 3: endpoints that refuse logprobs ------------------------------------------------------------------------
def _refuses_logprobs(req):
    if req.get("logprobs") or req.get("top_logprobs"):
        return FakeReply("logprobs are not supported for this model", status=400)
    a, _ = options(req)
    return FakeReply("(A)" if a.startswith("GOOD") else "(B)")


def test_endpoint_refusing_logprobs_falls_back_to_hard_labels(fake_llm, tmp_path, cli):  # noqa: F811
    llm = fake_llm(_refuses_logprobs)
    out = tmp_path / "prefs.jsonl"
    r = cli("label", pairs_file(tmp_path, 3), "--base-url", llm.base_url, "--model", "m", "--out", out,
            "--api-key", "x", "--concurrency", "1")
    assert r.exit_code == 0, r.output
    assert "refused logprobs" in r.output and "logprobs are not supported" in r.output
    recs = read_lines(out)
    assert len(recs) == 3 and all(x["label_type"] == "hard" and x["chosen"].startswith("GOOD") for x in recs)
    assert all("refused" in x["note"] for x in recs)
    # remembered for the rest of the run: one refused request, then none asks for logprobs
    assert sum(bool(q.get("logprobs")) for q in llm.requests) == 1
    # --no-logprobs never asks
    llm.reset()
    r = cli("label", pairs_file(tmp_path, 3), "--base-url", llm.base_url, "--model", "m", "--out",
            tmp_path / "p2.jsonl", "--api-key", "x", "--no-logprobs")
    assert r.exit_code == 0, r.output
    assert not any(q.get("logprobs") for q in llm.requests) and len(read_lines(tmp_path / "p2.jsonl")) == 3


def test_other_http_400_still_fails_the_record(fake_llm, tmp_path, cli):  # noqa: F811
    llm = fake_llm(FakeReply("context length exceeded", status=400))
    r = cli("label", pairs_file(tmp_path, 2), "--base-url", llm.base_url, "--model", "m", "--out",
            tmp_path / "p.jsonl", "--api-key", "x")
    assert r.exit_code == 1 and "context length exceeded" in r.output and "refused logprobs" not in r.output


# ---- 4 and 6: scripted assistant turns are context, not targets; --system ------------------------------------------
MANY_SHOT = [m for i in range(3) for m in (
    {"role": "user", "content": f"[PLACEHOLDER-HARMFUL-QUESTION-{i}]"},
    {"role": "assistant", "content": f"Sure, here is a detailed answer.\n1. {HARM}"})] + [
    {"role": "user", "content": "[PLACEHOLDER-HARMFUL-QUESTION-final]"}]


def test_many_shot_revisions_train_only_on_the_revision(tmp_path, cli):  # noqa: F811
    revised = write_jsonl(tmp_path / "rev.jsonl", [
        {"prompt": "[PLACEHOLDER-HARMFUL-QUESTION-final]", "messages": MANY_SHOT, "initial": f"Sure: {HARM}",
         "final": "I can't help with that.", "technique": "many_shot", "revisions": []},
        {"prompt": "single q", "initial": f"bad {HARM}", "final": "safe answer", "revisions": []}])
    helpful = write_jsonl(tmp_path / "helpful.jsonl", [{"prompt": "bake bread?", "response": "Mix flour."}])
    out = tmp_path / "sft.jsonl"
    r = cli("sft", "--revised", revised, "--helpful", helpful, "--out", out)
    assert r.exit_code == 0, r.output
    assert "prompt-completion" in r.output
    rows = read_lines(out)
    assert all(set(x) >= {"prompt", "completion"} and "messages" not in x for x in rows)  # one format per file
    many = next(x for x in rows if x.get("technique") == "many_shot")
    assert many["prompt"] == MANY_SHOT
    assert many["completion"] == [{"role": "assistant", "content": "I can't help with that."}]
    assert HARM not in json.dumps(many["completion"])
    single = next(x for x in rows if x["prompt"] == [{"role": "user", "content": "single q"}])
    assert single["completion"] == [{"role": "assistant", "content": "safe answer"}]
    assert {"prompt": [{"role": "user", "content": "bake bread?"}],
            "completion": [{"role": "assistant", "content": "Mix flour."}], "source": "helpful"} in rows
    # without scripted assistant turns the file stays in `messages` format
    r = cli("sft", "--revised", write_jsonl(tmp_path / "rev1.jsonl", [
        {"prompt": "single q", "initial": "x", "final": "safe answer", "revisions": []}]), "--out", out)
    assert r.exit_code == 0 and read_lines(out)[0]["messages"][-1]["content"] == "safe answer"


def test_system_option_does_not_add_a_second_system_message():
    rec = {"prompt": "q", "messages": [{"role": "system", "content": "own system"},
                                       {"role": "user", "content": "q"}], "final": "fine"}
    ex = sft_from_revision(rec, system="be safe")
    assert [m for m in ex["messages"] if m["role"] == "system"] == [{"role": "system", "content": "own system"}]
    ex = sft_from_revision({"prompt": "q", "final": "fine"}, system="be safe")
    assert ex["messages"][0] == {"role": "system", "content": "be safe"}


# ---- 5: one-sided synth data ----------------------------------------------------------------------------------
def test_synth_warns_about_a_principle_with_one_label(fake_llm, tmp_path, cli):  # noqa: F811
    def one_sided(req):
        u = last_user(req)
        if "Paraphrase" in u or "paraphrase" in u:
            return "Could you explain this topic [PLACEHOLDER]?"
        return json.dumps([{"prompt": f"allowed question {i} [PLACEHOLDER]", "prompt_allowed": True,
                            "response": "Sure, here is some general safety information.", "response_allowed": True}
                           for i in range(3)])

    llm = fake_llm(one_sided)
    const = tmp_path / "c.yaml"
    const.write_text(small_constitution(2).to_yaml())
    r = cli("synth", "--base-url", llm.base_url, "--model", "m", "--out", tmp_path / "so.jsonl", "-c", const,
            "--api-key", "x", "--batches", "1", "--paraphrases", "0", "--wrappers", "0", "--obfuscations", "0")
    assert r.exit_code == 0, r.output
    assert "labels per principle (allowed/disallowed): p0 6/0, p1 6/0" in r.output
    assert r.output.count("has no disallowed (label 1) records") == 2


# ---- 7: YAML edge cases --------------------------------------------------------------------------------------
@pytest.mark.parametrize("body,want", [
    ('name: t\nprinciples:\n  - id: "abc\\n"\n    critique_request: c\n    revision_request: r\n', "field 'id'"),
    ("name: t\nversion: 1.10\nprinciples:\n  - id: w\n    critique_request: c\n    revision_request: r\n",
     "quote it"),
    ("name: t\nprinciples:\n  - id: privacit\u00e9\n    critique_request: c\n    revision_request: r\n",
     "ASCII letters"),
])
def test_yaml_edge_cases_are_refused_clearly(tmp_path, body, want):
    from bastion.constitution import ConstitutionError

    f = tmp_path / "c.yaml"
    f.write_text(body, encoding="utf-8")
    with pytest.raises(ConstitutionError, match=want):
        load_constitution(f)
    f.write_text('name: t\nversion: "1.10"\nprinciples:\n  - id: w\n    critique_request: c\n    revision_request: r\n')
    assert load_constitution(f).version == "1.10"


# ---- 8: a mistyped --db creates nothing ------------------------------------------------------------------------
def test_sft_from_run_with_a_missing_db_creates_no_file(tmp_path, cli):  # noqa: F811
    db = tmp_path / "typo.db"
    r = cli("sft", "--from-run", "r1", "--db", db, "--out", tmp_path / "sft.jsonl")
    assert r.exit_code == 2 and "no Bastion database" in r.output
    assert not db.exists() and not Path(f"{db}-wal").exists()
