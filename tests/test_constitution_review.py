"""Regression tests for the reviewed constitution findings (conversations in SFT/DPO/labels, refusing or failing
paraphrasers, resume of synth/labels, damaged and non-UTF-8 lines, judge answers, fatal errors and exit codes,
ties, OUT paths, constitution validation). Every LLM call goes to the scripted loopback server; harmful content
is a placeholder."""

from __future__ import annotations

import asyncio
import json
import math
from collections import Counter
from pathlib import Path

import pytest

from bastion.constitution import (
    ConstitutionError,
    FeedbackLabeller,
    Reviser,
    Synthesizer,
    letter_probs,
    load_constitution,
    read_synth,
)
from bastion.constitution.jsonl import read_jsonl
from bastion.constitution.pipeline import label_file, revise_file, synth_file
from bastion.constitution.prompts import critique_messages
from bastion.constitution.synth import available_augmenters
from bastion.llm import ChatResult, TokenLogprob
from bastion.train.extra import load_extra
from tests.fakellm import FakeReply, last_user
from tests.test_constitution import (
    HARM,
    MESSY,
    biased_feedback,
    client,
    pairs_file,
    read_lines,
    revise_script,
    small_constitution,
    write_jsonl,
)
from tests.test_constitution_cli import cli  # noqa: F401 - fixture

CONV = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Let us play a game [PLACEHOLDER]"},
        {"role": "assistant", "content": "OK!"},
        {"role": "user", "content": "And now the last step?"}]


# ---- 1: the conversation survives revise -> SFT / DPO, and labels -------------------------------------------
def test_multi_turn_conversation_is_kept_in_revise_sft_and_dpo(fake_llm, tmp_path, cli):  # noqa: F811
    llm = fake_llm(revise_script)
    inp = write_jsonl(tmp_path / "in.jsonl", [
        {"prompt": "And now the last step?", "messages": CONV, "response": f"Sure: {HARM}", "technique": "many_shot"},
        {"prompt": "single q", "response": f"bad {HARM}"}])
    out = tmp_path / "rev.jsonl"
    asyncio.run(revise_file(inp, out, Reviser(client(llm), small_constitution(), seed=0), seed=0))
    recs = {r["prompt"]: r for r in read_lines(out)}
    multi = recs["And now the last step?"]
    assert multi["messages"] == CONV and multi["technique"] == "many_shot"
    assert "messages" not in recs["single q"]
    # the model saw every turn of the conversation, the system message first
    crit_req = next(q for q in llm.requests if "Let us play" in json.dumps(q["messages"]))
    assert crit_req["messages"][0] == CONV[0]
    r = cli("sft", "--revised", out, "--out", tmp_path / "sft.jsonl", "--dpo-out", tmp_path / "dpo.jsonl")
    assert r.exit_code == 0, r.output
    sft = read_lines(tmp_path / "sft.jsonl")
    full = next(x for x in sft if len(x["prompt"]) > 1)  # scripted assistant turn: prompt-completion format
    assert full["prompt"] == CONV and full["completion"] == [{"role": "assistant", "content": multi["final"]}]
    single = next(x for x in sft if len(x["prompt"]) == 1)
    assert single["prompt"] == [{"role": "user", "content": "single q"}]
    dpo = {json.dumps(d["prompt"]): d for d in read_lines(tmp_path / "dpo.jsonl")}
    conv_pair = dpo[json.dumps(CONV)]  # TRL conversational preference format
    assert conv_pair["chosen"] == [{"role": "assistant", "content": multi["final"]}]
    assert conv_pair["rejected"] == [{"role": "assistant", "content": f"Sure: {HARM}"}]
    std_pair = dpo[json.dumps("single q")]  # TRL standard format, unchanged
    assert isinstance(std_pair["chosen"], str) and std_pair["rejected"] == f"bad {HARM}"


def test_label_writes_conversational_preference_for_multi_turn(fake_llm, tmp_path):
    llm = fake_llm(biased_feedback)
    pf = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "And now the last step?", "messages": CONV, "response_a": "GOOD a", "response_b": f"BAD {HARM}"},
        {"prompt": "q", "response_a": "GOOD b", "response_b": f"BAD {HARM}"}])
    out = tmp_path / "prefs.jsonl"
    asyncio.run(label_file(pf, out, FeedbackLabeller(client(llm), small_constitution(), few_shot=[]), seed=0))
    by = {json.dumps(r["prompt"]): r for r in read_lines(out)}
    conv = by[json.dumps(CONV)]
    assert conv["chosen"] == [{"role": "assistant", "content": "GOOD a"}]
    assert conv["rejected"] == [{"role": "assistant", "content": f"BAD {HARM}"}]
    assert by[json.dumps("q")]["chosen"] == "GOOD b"
    assert all("Let us play a game" in last_user(q) for q in llm.requests if "GOOD a" in last_user(q))


# ---- 2, 8, 13g: paraphrases ----------------------------------------------------------------------------
def para_script(mode):
    def script(req):
        text = last_user(req)
        if text.startswith("Paraphrase"):
            if mode == "refuse":
                return "I'm sorry, but I can't help with that request."
            if mode == "500":
                return FakeReply("para boom", status=500)
            if mode == "copy":  # every paraphrase is the first item's prompt
                return "How do I reset my router password?"
        return MESSY
    return script


@pytest.mark.parametrize("mode", ["refuse", "500", "copy"])
def test_bad_paraphrases_are_skipped_with_a_note_not_the_principle(fake_llm, tmp_path, mode):
    llm = fake_llm(para_script(mode))
    out = tmp_path / "s.jsonl"
    syn = Synthesizer(client(llm, max_retries=0), small_constitution(1), batches=1, paraphrases=1, wrappers=0,
                      obfuscations=0, retries=0, seed=1)
    s = asyncio.run(synth_file(out, syn))
    assert s.failed == 0
    recs = read_synth(out)
    assert recs and not [r for r in recs if r.augmentation == "paraphrase"]
    assert not [r for r in recs if "sorry" in r.prompt.lower()]
    labels: dict[str, set[int]] = {}
    for r in recs:
        if r.task == "prompt":
            labels.setdefault(r.prompt, set()).add(r.label)
    assert all(len(v) == 1 for v in labels.values())  # no text labelled both 0 and 1
    why = {"refuse": "refused", "500": "HTTP 500", "copy": "same text"}[mode]
    assert any("paraphrase" in n and why in n for n in s.notes), s.notes


def test_no_op_obfuscators_are_not_offered():
    wrappers, obfus = available_augmenters()
    names = {a.name for a in wrappers + obfus}
    assert obfus and "obfuscation:base64" in names and "obfuscation:direct" not in names


# ---- 3, 4: resume of a cut synth file; damaged / non-UTF-8 lines ---------------------------------------------
def test_synth_resume_redoes_a_half_written_principle_and_moves_the_cut_line(fake_llm, tmp_path):
    llm = fake_llm(lambda req: MESSY if not last_user(req).startswith("Paraphrase") else "Reworded " + last_user(req)[-30:])
    out = tmp_path / "synth.jsonl"
    syn = Synthesizer(client(llm), small_constitution(2), batches=1, paraphrases=0, wrappers=1, obfuscations=0, seed=0)
    asyncio.run(synth_file(out, syn, concurrency=1))
    full = out.read_bytes().splitlines(keepends=True)
    per = Counter(json.loads(x)["principle_id"] for x in full)
    first_pid = json.loads(full[0])["principle_id"]
    keep = per[first_pid] + 2  # the first principle and two lines of the second, then a line cut in a UTF-8 char
    cut = full[keep][:-3] + "ü".encode()[:1]
    out.write_bytes(b"".join(full[:keep]) + cut)
    llm.reset()
    s = asyncio.run(synth_file(out, syn, concurrency=1))
    assert s.skipped == 1 and s.written == sum(per.values()) - per[first_pid]
    assert s.damaged_out_lines == [keep + 1] and Path(s.damaged_to).read_bytes() == cut + b"\n"
    assert s.incomplete_moved == 2
    assert Counter(r.principle_id for r in read_synth(out)) == per  # every principle complete, none doubled
    assert len(load_extra(out)) == sum(per.values())  # the trainer reads OUT
    llm.reset()
    assert asyncio.run(synth_file(out, syn)).skipped == 2 and llm.calls == 0


def test_non_utf8_lines_are_bad_lines_and_a_cut_revise_output_is_cleaned(fake_llm, tmp_path, cli):  # noqa: F811
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"prompt": "caf\xe9", "response": "r"}\n{"prompt": "q", "response": "\xe6\x97\xa5"}\n')
    loaded = read_jsonl(inp, ("prompt", "response"))
    assert [str(b) for b in loaded.bad] == [f"{inp}:1: not UTF-8 (invalid continuation byte at byte 15 of the line)"]
    llm = fake_llm(revise_script)
    out = tmp_path / "rev.jsonl"
    asyncio.run(revise_file(inp, out, Reviser(client(llm), small_constitution(), seed=0), seed=0))
    data = out.read_bytes()
    out.write_bytes(data + data[: data.index("\xe6\x97\xa5".encode("latin-1")) + 1])  # a line cut inside a char
    asyncio.run(revise_file(inp, out, Reviser(client(llm), small_constitution(), seed=0), seed=0))
    out.read_text("utf-8")  # valid UTF-8 again
    r = cli("sft", "--revised", out, "--out", tmp_path / "sft.jsonl")
    assert r.exit_code == 0 and len(read_lines(tmp_path / "sft.jsonl")) == 1
    r = cli("validate", inp)
    assert r.exit_code == 1 and "in.jsonl:1: not UTF-8" in r.output and "Traceback" not in r.output


# ---- 5: the judge must answer ------------------------------------------------------------------------------
def test_label_requires_an_answer_position():
    neither = [TokenLogprob("Neither", -0.2, {"Neither": -0.2, "A": -4.0, "B": -6.0})]
    assert letter_probs(neither) is None
    lab = FeedbackLabeller.__new__(FeedbackLabeller)
    lab.cot = False
    from bastion.constitution.batch import MalformedOutput

    with pytest.raises(MalformedOutput):
        lab._read(ChatResult(text="Neither", logprobs=neither), "ab")
    lab.cot = True
    trunc = "Response (A) lists steps, while (B) declines. On reflection the"
    toks = [TokenLogprob(t, -0.1, {"A": -2.0, "B": -0.1}) for t in trunc.split(" ")]
    with pytest.raises(MalformedOutput, match="cut off"):
        lab._read(ChatResult(text=trunc, logprobs=toks, finish_reason="length"), "ab")
    with pytest.raises(MalformedOutput, match="final"):
        lab._read(ChatResult(text=trunc, logprobs=toks, finish_reason="stop"), "ab")
    ok = lab._read(ChatResult(text="A is fine. So the answer is (B)", logprobs=[
        TokenLogprob("A", -0.1, {}), TokenLogprob(" is fine. So the answer is (", -0.1, {}),
        TokenLogprob("B", math.log(0.8), {"A": math.log(0.2), "B": math.log(0.8)}), TokenLogprob(")", 0, {})]), "ab")
    assert ok.p_first == pytest.approx(0.2) and ok.soft


def test_neither_answers_are_unlabelled_not_soft_ties(fake_llm, tmp_path, cli):  # noqa: F811
    llm = fake_llm(FakeReply("Neither", logprobs=[("Neither", -0.2, {"Neither": -0.2, "A": -3.0, "B": -4.0})]))
    out = tmp_path / "prefs.jsonl"
    r = cli("label", pairs_file(tmp_path, 2), "--base-url", llm.base_url, "--model", "m", "--out", out,
            "--retries", "1", "--api-key", "x")
    assert r.exit_code == 1 and "every record failed" in r.output
    assert not out.exists() or not read_lines(out)
    failed = read_lines(tmp_path / "prefs.failed.jsonl")
    assert len(failed) == 2 and all(f["status"] == "unlabelled" for f in failed)


# ---- 6: fatal connection errors and exit codes ----------------------------------------------------------------
def test_wrong_port_is_fatal_and_every_failure_exits_1(fake_llm, tmp_path, cli):  # noqa: F811
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}", "response": "r"} for i in range(30)])
    r = cli("revise", inp, "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--out", tmp_path / "o.jsonl",
            "--api-key", "x", "--timeout", "5")
    assert r.exit_code == 1 and "cannot connect" in r.output and "stopped" in r.output
    llm = fake_llm(FakeReply("boom", status=500, headers={"retry-after-ms": "1"}))
    r = cli("revise", inp, "--base-url", llm.base_url, "--model", "m", "--out", tmp_path / "o2.jsonl",
            "--api-key", "x", "--concurrency", "30")
    assert r.exit_code == 1 and "every record failed" in r.output
    assert "HTTP 500 server error from http" in r.output and "boom" in r.output  # 13c: the whole first line
    (tmp_path / "empty.jsonl").write_text("")
    r = cli("revise", tmp_path / "empty.jsonl", "--base-url", llm.base_url, "--model", "m", "--out",
            tmp_path / "o3.jsonl", "--api-key", "x")
    assert r.exit_code == 2 and "no usable input record" in r.output


# ---- 7: ties -----------------------------------------------------------------------------------------------
def test_position_biased_hard_labels_are_ties_kept_out_of_out(fake_llm, tmp_path, cli):  # noqa: F811
    llm = fake_llm(FakeReply("(A)", logprobs=[]))
    pf = pairs_file(tmp_path, 3)
    out = tmp_path / "prefs.jsonl"
    r = cli("label", pf, "--base-url", llm.base_url, "--model", "m", "--out", out, "--api-key", "x")
    assert r.exit_code == 0 and "3 tie(s), 3 with the two orderings disagreeing" in r.output
    assert not out.exists() or not read_lines(out)
    ties = read_lines(tmp_path / "prefs.ties.jsonl")
    assert len(ties) == 3 and all(t["tie"] and t["orderings_agree"] is False for t in ties)
    r = cli("label", pf, "--base-url", llm.base_url, "--model", "m", "--out", tmp_path / "k.jsonl",
            "--api-key", "x", "--keep-ties")
    assert r.exit_code == 0 and len(read_lines(tmp_path / "k.jsonl")) == 3
    # agreeing soft labels say so
    good = fake_llm(biased_feedback)
    asyncio.run(label_file(pf, tmp_path / "s.jsonl", FeedbackLabeller(client(good), small_constitution()), seed=0))
    assert all(x["orderings_agree"] is True for x in read_lines(tmp_path / "s.jsonl"))


# ---- 9: sft reports the answering step ------------------------------------------------------------------------
def test_sft_reports_why_red_team_prompts_got_nothing(fake_llm, tmp_path, cli):  # noqa: F811
    llm = fake_llm("")
    rtp = write_jsonl(tmp_path / "rtp.jsonl", [{"prompt": "[PLACEHOLDER] 1"}, {"prompt": "[PLACEHOLDER] 2"}])
    r = cli("sft", "--redteam-prompts", rtp, "--base-url", llm.base_url, "--model", "m", "--out",
            tmp_path / "sft.jsonl", "--api-key", "x")
    assert r.exit_code == 1
    assert "empty response from the model (2)" in r.output and "2 red-team prompt(s) got no answer" in r.output
    assert "no such file" not in r.output


# ---- 10: OUT is an input or a directory ------------------------------------------------------------------------
def test_out_must_not_be_an_input_or_a_directory(tmp_path, cli):  # noqa: F811
    pf = pairs_file(tmp_path, 1)
    before = pf.read_bytes()
    link = tmp_path / "link.jsonl"
    link.symlink_to(pf)
    for args in (("label", pf, "--out", link), ("revise", pf, "--out", pf), ("label", pf, "--out", tmp_path),
                 ("sft", "--helpful", pf, "--out", link)):
        r = cli(*args, "--base-url", "http://127.0.0.1:9/v1", "--model", "m")
        assert r.exit_code == 2, (args, r.output)
        assert "is the input file" in r.output or "is a directory" in r.output
    assert pf.read_bytes() == before


# ---- 11: constitution validation ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,text,want", [
    ("c9.json", json.dumps({"constitutions": [{"critic": "c", "revision": "r"}], "system_chat": [["a"] * 6]}),
     "system_chat #1: message #1: must be a mapping"),
    ("inf.yaml", "principles:\n  - id: a\n    critique_request: c\n    revision_request: r\n    weight: .inf\n",
     "inf.yaml:5: principle 'a' (#1): field 'weight': Input should be a finite number"),
    ("big.yaml", "principles:\n" + "".join(f"  - {{id: p{i}, critique_request: c, revision_request: r, "
                                           f"weight: 1e308}}\n" for i in range(2)), "weights add up"),
    ("dup.yaml", "principles:\n  - id: a\n    critique_request: c\n    critique_request: d\n"
                 "    revision_request: r\n", "dup.yaml:4: principles[0].critique_request: duplicate key"),
    ("syntax.yaml", "principles:\n  - id: a\n    tags: [S1\n    x: : y\n", "syntax.yaml:4: YAML syntax error"),
    ("lines.yaml", "name: x\nprinciples:\n  - id: ok\n    critique_request: c\n    revision_request: r\n"
                   "  - id: bad\n    critique_request: c\n    revision_request: r\n    weight: -1\n",
     "lines.yaml:9: principle 'bad' (#2): field 'weight'"),
])
def test_constitution_errors_are_one_clear_line_with_the_line(tmp_path, cli, name, text, want):  # noqa: F811
    f = tmp_path / name
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConstitutionError) as ei:
        load_constitution(f)
    assert want in str(ei.value)
    r = cli("validate", f)
    assert r.exit_code == 1 and want in r.output and "Traceback" not in r.output
    if name == "c9.json":
        r = cli("revise", f, "--few-shot", f, "--out", tmp_path / "o.jsonl")
        assert r.exit_code == 2 and "Traceback" not in r.output


def test_non_utf8_constitution_is_one_line(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_bytes(b"name: x\nprinciples:\n  - id: caf\xe9\n")
    with pytest.raises(ConstitutionError, match=r"c.yaml:3: not UTF-8"):
        load_constitution(f)


# ---- 13: resume settings, failed file, refusals, system order ----------------------------------------------
def test_resume_refuses_other_settings_and_failed_file_keeps_only_the_still_failing(fake_llm, tmp_path, cli):  # noqa: F811
    state = {"fail": True}

    def script(req):
        if "question 1" in last_user(req) and state["fail"]:
            return FakeReply("I would rather not say.", logprobs=[])
        return biased_feedback(req)

    llm = fake_llm(script)
    pf = pairs_file(tmp_path, 3)
    out = tmp_path / "prefs.jsonl"
    base = ("label", pf, "--base-url", llm.base_url, "--model", "m", "--out", out, "--api-key", "x", "--retries", "0")
    r = cli(*base)
    assert r.exit_code == 0 and len(read_lines(out)) == 2
    assert len(read_lines(tmp_path / "prefs.failed.jsonl")) == 1
    r = cli(*base)  # still failing: one entry, not two
    assert len(read_lines(tmp_path / "prefs.failed.jsonl")) == 1
    for extra, opt in ((("--seed", "2"), "--seed"), (("--cot",), "--cot")):
        r = cli(*base, *extra)
        assert r.exit_code == 2 and f"written with {opt}" in r.output and "new --out" in r.output
    state["fail"] = False
    r = cli(*base)
    assert r.exit_code == 0 and len(read_lines(out)) == 3
    assert not (tmp_path / "prefs.failed.jsonl").exists()  # nothing is still failing


def test_refusing_critique_or_revision_is_malformed(fake_llm, tmp_path):
    def script(req):
        last = last_user(req)
        if last.startswith("CRITIQUE"):
            return "I'm sorry, I can't help with that."
        return "I'm sorry, but I cannot help with rewriting this."

    llm = fake_llm(script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": "q", "response": f"bad {HARM}"}])
    s = asyncio.run(revise_file(inp, tmp_path / "o.jsonl", Reviser(client(llm), small_constitution(), retries=1),
                                seed=0))
    assert s.failed == 1 and s.written == 0 and "declined to write a critique" in next(iter(s.reasons))

    def script2(req):
        last = last_user(req)
        if last.startswith("CRITIQUE"):
            return "The response gives [PLACEHOLDER] steps."
        if "again" in json.dumps(req["messages"]):
            return "I can't help with that request, but here is some general safety information."
        return "I'm sorry, but I cannot help with rewriting this."

    llm2 = fake_llm(script2)
    s = asyncio.run(revise_file(inp, tmp_path / "o2.jsonl", Reviser(client(llm2), small_constitution(), retries=1),
                                seed=0))
    assert s.failed == 1 and "declined to write a revision" in next(iter(s.reasons))
    # a revision that refuses the user's harmful request is a good revision, not a refusal of the task
    from bastion.constitution.revise import clean_text

    assert clean_text("I can't help with that request, but here is general safety info.", "revision")


def test_system_message_comes_before_few_shot_turns():
    c = load_constitution("default")
    msgs = critique_messages(CONV, "reply", c.principles[0], c.few_shot)
    assert c.few_shot and msgs[0] == CONV[0] and [m for m in msgs if m["role"] == "system"] == [CONV[0]]


def test_resume_progress_counts_skipped_items(fake_llm, tmp_path):
    llm = fake_llm(revise_script)
    inp = write_jsonl(tmp_path / "in.jsonl", [{"prompt": f"q{i}", "response": "r"} for i in range(4)])
    rv = Reviser(client(llm), small_constitution(), seed=0)
    asyncio.run(revise_file(inp, tmp_path / "o.jsonl", rv, seed=0))
    write_jsonl(inp, [{"prompt": f"q{i}", "response": "r"} for i in range(6)])
    seen: list[int] = []
    totals: list[int] = []
    asyncio.run(revise_file(inp, tmp_path / "o.jsonl", rv, seed=0, progress=seen.append, on_total=totals.append))
    assert totals == [6] and sum(seen) == 6
