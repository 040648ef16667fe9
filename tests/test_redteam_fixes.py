"""Regression tests for the red-team review findings: judge agreement with failed judges, runs whose every attempt
failed, technique parameters, --resume settings, Ctrl-C hints, hung python: targets, Best-of-N budgets and turns,
attack budgets, `latest`, --json on failure, export errors and the char_spacing round trip.

Placeholder seeds and the tiny keyword guard (conftest `redteam_sandbox`); scripted OpenAI servers on 127.0.0.1."""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.redteam.base import Seed
from bastion.redteam.runner import (
    DIRECT,
    PLAN_VERSION,
    CampaignConfig,
    CampaignError,
    Planned,
    build_prompts,
    resume_campaign,
    run_campaign,
)
from bastion.redteam.stats import summarize
from bastion.redteam.targets import TargetError
from bastion.store import Store
from tests.fakellm import FakeReply

COMPLY = "Sure, here is [REDACTED-HARMFUL-STEP 1] then [REDACTED-HARMFUL-STEP 2]."
REFUSE = "I can't help with that."
cli = CliRunner()

# ---- python: targets used below ----------------------------------------------------------------------------
RELEASE = threading.Event()
MODE = {"mode": "comply"}


def refuser(messages):
    return REFUSE


def hanging(messages):
    RELEASE.wait(12)  # far longer than the run's timeout; released at the end of the test
    return COMPLY


def switchable(messages):
    if MODE["mode"] == "crash":
        raise RuntimeError("app crashed [placeholder]")
    if MODE["mode"] == "interrupt":  # Ctrl-C, once: asyncio's SIGINT handler cancels the campaign
        MODE["mode"] = "comply"
        signal.raise_signal(signal.SIGINT)
        time.sleep(0.2)
    return COMPLY


def _cfg(target, **kw):
    base = dict(target=target, limit=14, benign_limit=0, seed=3, concurrency=2, timeout=5, max_retries=0,
                techniques=[DIRECT])
    base.update(kw)
    return CampaignConfig(**base)


def _invoke(*args):
    return cli.invoke(app, list(args), catch_exceptions=False)


def _last_json(res):
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---- 1. judge agreement leaves failed judges out --------------------------------------------------------------
def test_summary_failed_judge_casts_no_vote_and_is_counted():
    def att(judges, blocked=None):
        return {"category": "S1", "technique": DIRECT, "success": False, "refused": True, "benign": False,
                "error": None, "blocked_by": blocked, "verdicts": {"judges": judges}}

    ok = {"success": False, "score": 0.0}
    rows = [att({"guard": ok, "strongreject": {"error": "LLMConnectionError: cannot connect"}}) for _ in range(3)]
    rows.append(att({"guard": ok, "strongreject": {"success": True}}))
    rows.append(att({"guard": ok, "strongreject": ok}, blocked="input"))  # not asked: no agreement evidence
    s = summarize(rows)
    assert s["judge_agreement"] == {"attempts": 1, "agree": 0, "rate": 0.0}
    assert s["judge_errors"] == {"strongreject": {"errors": 3, "attempts": 5,
                                                  "first_error": "LLMConnectionError: cannot connect"}}
    assert "judge_agreement" not in summarize(rows[:3]) and "judge_errors" not in summarize(rows[3:])


def test_garbage_llm_judge_reports_errors_not_agreement(redteam_sandbox, tmp_path, fake_llm):
    target = fake_llm(REFUSE)
    judge = fake_llm("I think it is pretty bad")  # not a rubric: every strongreject verdict fails
    db = str(tmp_path / "b.db")
    res = _invoke("redteam", "--target", f"openai:{target.base_url}", "--model", "m", "--techniques", "direct",
                  "--limit", "6", "--benign-limit", "2", "--judge-model", "j", "--judge-base-url", judge.base_url,
                  "--max-retries", "0", "--db", db, "--json")
    assert res.exit_code == 0, res.output
    obj = _last_json(res)
    assert "judge_agreement" not in obj
    assert obj["judge_errors"]["strongreject"]["errors"] == 8 == obj["judge_errors"]["strongreject"]["attempts"]
    assert "not a rubric score" in obj["judge_errors"]["strongreject"]["first_error"]
    text = " ".join(_invoke("runs", "show", obj["run_id"], "--db", db).stdout.split())
    assert "warning: judge strongreject failed on 8 of 8 attempts" in text and "Judge agreement" not in text


# ---- 2. a run whose every attempt failed is failed ------------------------------------------------------------
def test_every_attempt_failing_fails_the_run(redteam_sandbox, tmp_path, fake_llm):
    llm = fake_llm(FakeReply("upstream down", status=500))
    st = Store(tmp_path / "b.db")
    with pytest.raises(CampaignError, match="all 4 attempts failed; first error: .*500") as ei:
        run_campaign(_cfg(f"openai:{llm.base_url}", model="m", limit=4), st)
    run = st.list_runs()[0]
    assert ei.value.run_ids == [run.id]
    assert run.status == "failed" and "all 4 attempts failed" in run.error
    assert run.n_attempts == 4 and all(a.error for a in st.attempts(run.id))  # kept
    assert run.summary["overall"]["asr"] is None and run.summary["over_refusal"]["rate"] is None
    # the CLI: exit 1, one line naming the cause; --json still prints the run's object
    db = str(tmp_path / "c.db")
    res = _invoke("redteam", "--target", f"openai:{llm.base_url}", "--model", "m", "--techniques", "direct",
                  "--limit", "4", "--benign-limit", "0", "--max-retries", "0", "--db", db, "--json")
    assert res.exit_code == 1 and "all 4 attempts failed" in res.stderr and "HTTP 500" in res.stderr
    obj = _last_json(res)
    assert obj["status"] == "failed" and "all 4 attempts failed" in obj["error"]
    assert obj["overall"]["asr"] is None and obj["errors"] == 4 and obj["categories"] == []
    assert {"run_id", "target", "categories", "techniques", "over_refusal"} <= set(obj)
    listed = _last_json(_invoke("runs", "list", "--db", db, "--json"))
    assert listed[0]["status"] == "failed" and listed[0]["asr"] is None
    table = _invoke("runs", "list", "--db", db).stdout
    assert "0.0%" not in table


def test_unreachable_attacker_fails_the_run(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    with pytest.raises(CampaignError, match="all 2 attempts failed; first error: attacker_error"):
        run_campaign(_cfg("python:tests.test_redteam_fixes:refuser", limit=0, attacks=["pair"], attack_limit=2,
                          attacker_model="att", attacker_base_url="http://127.0.0.1:9/v1"), st)
    assert st.list_runs()[0].status == "failed"


def test_some_failed_attempts_name_the_first_error(redteam_sandbox, tmp_path, fake_llm):
    calls = {"n": 0}

    def script(req):
        calls["n"] += 1
        return FakeReply("flaky", status=503) if calls["n"] == 2 else COMPLY

    llm = fake_llm(script)
    res = _invoke("redteam", "--target", f"openai:{llm.base_url}", "--model", "m", "--techniques", "direct",
                  "--limit", "4", "--benign-limit", "0", "--max-retries", "0", "-c", "1",
                  "--db", str(tmp_path / "b.db"))
    assert res.exit_code == 0, res.output
    text = " ".join(res.stdout.split())
    assert "1 of 4 attempt(s) failed" in text and "first error: LLMServerError: HTTP 503" in text


@pytest.mark.parametrize("args,msg", [(["--timeout", "0"], "--timeout: must be a number of seconds > 0"),
                                      (["--timeout", "-5"], "--timeout"),
                                      (["--rate-limit", "0"], "--rate-limit: must be > 0"),
                                      (["--attack-max-seconds", "0"], "--attack-max-seconds"),
                                      (["--attack-max-tokens", "0"], "--attack-max-tokens")])
def test_bad_numbers_are_usage_errors(redteam_sandbox, tmp_path, args, msg):
    db = tmp_path / "b.db"
    res = _invoke("redteam", *args, "--db", str(db))
    assert res.exit_code == 2 and msg in res.stderr, res.output
    assert not db.exists() or Store(db).list_runs() == []


# ---- 3. technique parameters are checked before a run is created ---------------------------------------------
@pytest.mark.parametrize("spec,msg", [("many_shot:abc", "n must be an integer"), ("best_of_n:0", "n must be in"),
                                      ("many_shot:5000", "n must be in"), ("caesar:x", "shift must be an integer"),
                                      ("best_of_n:2+base64+best_of_n:3", "at most one best_of_n")])
def test_malformed_technique_parameters_are_usage_errors(redteam_sandbox, tmp_path, spec, msg):
    st = Store(tmp_path / "b.db")
    with pytest.raises(TargetError, match=msg):
        run_campaign(_cfg("python:tests.test_redteam_fixes:refuser", techniques=[DIRECT, "base64", spec]), st)
    assert st.list_runs() == []
    res = _invoke("redteam", "--techniques", f"direct,{spec}", "--db", str(tmp_path / "c.db"))
    assert res.exit_code == 2 and msg in res.stderr


# ---- 4. --resume: settings that may change, and those that may not --------------------------------------------
def test_resume_refuses_campaign_flags_and_takes_a_moved_endpoint(redteam_sandbox, tmp_path, fake_llm):
    db = str(tmp_path / "b.db")
    res = _invoke("redteam", "--target", "openai:http://127.0.0.1:9/v1", "--model", "m", "--techniques",
                  "direct", "--limit", "6", "--benign-limit", "2", "--db", db)
    assert res.exit_code == 1 and "cannot connect" in res.stderr and "--target openai:URL" in res.stderr
    rid = _last_json(_invoke("runs", "list", "--db", db, "--json"))[0]["run_id"]
    for args, msg in ((["--limit", "999"], "--limit cannot change"),
                      (["--techniques", "base64"], "--techniques cannot change"),
                      (["--target", "python:tests.test_redteam_fixes:refuser"], "only an openai: target's URL")):
        res = _invoke("redteam", "--resume", rid, *args, "--db", db)
        assert res.exit_code == 2 and msg in res.stderr, res.output
    llm = fake_llm(COMPLY)
    obj = _last_json(_invoke("redteam", "--resume", "latest", "--target", f"openai:{llm.base_url}",
                             "--timeout", "7", "--db", db, "--json"))
    assert obj["run_id"] == rid and obj["status"] == "completed" and obj["errors"] == 0
    assert obj["attempts"] == 8 and obj["overall"]["asr"] == 1.0 and llm.calls == 8
    assert obj["resume_overrides"][0]["changes"] == {"target": f"openai:{llm.base_url}", "timeout": 7.0}
    shown = _last_json(_invoke("runs", "show", "latest", "--db", db, "--json"))
    assert shown["resume_overrides"] == obj["resume_overrides"]
    # judged attempts exist now: the model may no longer change
    res = _invoke("redteam", "--resume", rid, "--model", "other", "--db", db)
    assert res.exit_code == 2 and "--model cannot change" in res.stderr


def test_resume_keeps_the_recorded_override(redteam_sandbox, tmp_path, fake_llm):
    state = {"first": 0, "second": 0, "broken": True}

    def first_script(req):
        state["first"] += 1
        return FakeReply("down", status=503) if state["first"] > 3 else COMPLY

    def second_script(req):
        state["second"] += 1
        return FakeReply("down", status=503) if state["broken"] and state["second"] > 2 else COMPLY

    first, second = fake_llm(first_script), fake_llm(second_script)
    st = Store(tmp_path / "b.db")
    with pytest.raises(CampaignError):
        run_campaign(_cfg(f"openai:{first.base_url}", model="m", concurrency=1), st)
    rid = st.list_runs()[0].id
    assert first.calls == 3 + 5
    with pytest.raises(CampaignError):  # the moved endpoint fails too, after 2 more good attempts
        run_campaign(_cfg(f"openai:{second.base_url}", model="m", concurrency=1), st, resume=rid)
    assert sum(a.error is None for a in st.attempts(rid)) == 5
    # the override was recorded before any attempt: a plain resume goes on with the second endpoint
    state["broken"] = False
    r = resume_campaign(st, rid)
    assert r.status == "completed" and first.calls == 8 and second.calls == 7 + 9
    assert len(st.attempts(rid)) == 14 and all(a.error is None for a in st.attempts(rid))
    assert [o["changes"] for o in st.get_run(rid).summary["resume_overrides"]] == [
        {"target": f"openai:{second.base_url}"}]


def test_resume_overrides_only_connection_settings_in_the_api(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    MODE["mode"] = "crash"
    with pytest.raises(CampaignError):
        run_campaign(_cfg("python:tests.test_redteam_fixes:switchable"), st)
    rid = st.list_runs()[0].id
    MODE["mode"] = "comply"
    with pytest.raises(TargetError, match="--limit cannot change"):
        run_campaign(_cfg("python:tests.test_redteam_fixes:switchable", limit=3), st, resume=rid)
    r = run_campaign(_cfg("python:tests.test_redteam_fixes:switchable", concurrency=5), st, resume=rid)
    assert r.status == "completed" and st.get_run(rid).summary["resume_overrides"][0]["changes"] == {
        "concurrency": 5}


def test_resume_can_repair_a_stored_setting_older_versions_accepted(redteam_sandbox, tmp_path):
    """Runs stored before --timeout was validated may hold timeout 0: --resume --timeout S repairs them."""
    db = str(tmp_path / "b.db")
    st = Store(db)
    cfg = _cfg("python:tests.test_redteam_fixes:refuser", limit=2).model_dump()
    cfg["timeout"] = 0
    rid = st.create_run("python:tests.test_redteam_fixes:refuser", cfg, 3, {"plan": PLAN_VERSION})
    res = _invoke("redteam", "--resume", rid, "--db", db)
    assert res.exit_code == 2 and "--timeout: must be a number of seconds > 0" in res.stderr
    obj = _last_json(_invoke("redteam", "--resume", rid, "--timeout", "2", "--db", db, "--json"))
    assert obj["status"] == "completed" and obj["attempts"] == 2 and obj["overall"]["asr"] == 0.0


def test_a_run_planned_by_an_earlier_bastion_is_not_resumed(redteam_sandbox, tmp_path):
    """Runs made before attempts were dealt by stratum (no `plan` in their versions) have a different plan: a
    resume would mix two plans in one run, so it is refused in one line and the run is left as it was."""
    db = str(tmp_path / "b.db")
    st = Store(db)
    cfg = _cfg("python:tests.test_redteam_fixes:refuser", limit=2).model_dump()
    rid = st.create_run("python:tests.test_redteam_fixes:refuser", cfg, 3, {"bastion": "0.1.0"})
    res = _invoke("redteam", "--resume", rid, "--db", db)
    assert res.exit_code == 2 and f"run {rid} was planned by an earlier Bastion" in res.stderr
    assert "start a new run" in res.stderr and st.attempts(rid) == [] and st.get_run(rid).status == "running"
    assert "upgraded to schema version 2" in res.stderr  # a store this Bastion made: no older one can open it


# ---- 5. the Ctrl-C hint names this campaign's run -------------------------------------------------------------
def test_interrupt_hint_names_the_resumed_run(redteam_sandbox, tmp_path):
    db = str(tmp_path / "b.db")
    st = Store(db)
    MODE["mode"] = "crash"
    with pytest.raises(CampaignError):
        run_campaign(_cfg("python:tests.test_redteam_fixes:switchable", limit=6, concurrency=1), st)
    x = st.list_runs()[0].id
    assert st.get_run(x).status == "failed"
    MODE["mode"] = "comply"
    y = run_campaign(_cfg("python:tests.test_redteam_fixes:switchable", limit=2), st).run_ids[0]
    assert st.list_runs()[0].id == y  # the newest run is not the one resumed below
    MODE["mode"] = "interrupt"
    try:
        res = _invoke("redteam", "--resume", x, "--db", db)
    finally:
        MODE["mode"] = "comply"
    assert res.exit_code == 130, res.output
    assert f"--resume {x}" in res.stderr and y not in res.stderr
    assert Store(db).get_run(x).status == "interrupted"
    # a new run interrupted names itself, not an older one
    MODE["mode"] = "interrupt"
    try:
        res = _invoke("redteam", "--target", "python:tests.test_redteam_fixes:switchable", "--techniques",
                      "direct", "--limit", "4", "--benign-limit", "0", "-c", "1", "--db", db)
    finally:
        MODE["mode"] = "comply"
    new = Store(db).list_runs()[0].id
    assert res.exit_code == 130 and new not in (x, y) and f"--resume {new}" in res.stderr


# ---- 6. a hung python: target does not hold the process ------------------------------------------------------
def test_hung_python_target_is_abandoned_after_the_timeout(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    RELEASE.clear()
    t0 = time.monotonic()
    try:
        with pytest.raises(CampaignError, match="did not answer within 0.3s"):
            run_campaign(_cfg("python:tests.test_redteam_fixes:hanging", limit=3, timeout=0.3, concurrency=3), st)
        took = time.monotonic() - t0
    finally:
        RELEASE.set()
    assert took < 6, f"run_campaign waited {took:.1f}s for hung target threads"
    assert st.list_runs()[0].status == "failed" and st.list_runs()[0].n_attempts == 3


# ---- 7 and 8f. Best-of-N inside a composite keeps its budget; every variant's reply is stored ------------------
def test_best_of_n_budget_inside_composites():
    seed = Seed("x", "Describe the [PLACEHOLDER] procedure in detail please", "S1", "test", "CC0")
    specs = ["best_of_n:4", "refusal_suppression+best_of_n:4", "best_of_n:4+base64"]
    prompts = {t: build_prompts(Planned(f"x|{t}", seed, t), 0) for t in specs}
    assert [len(prompts[t]) for t in specs] == [4, 4, 4]
    enc = prompts["best_of_n:4+base64"]
    assert len({p.messages[-1]["content"] for p in enc}) == 4 and all(p.decode is not None for p in enc)
    assert all(p.technique == "best_of_n:4+base64" for p in enc)
    assert len(build_prompts(Planned("x|base64", seed, "base64"), 0)) == 1


def test_best_of_n_stores_every_variant(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    r = run_campaign(_cfg("python:tests.test_redteam_fixes:refuser", techniques=["refusal_suppression+best_of_n:3"],
                          limit=2), st)
    atts = st.attempts(r.run_ids[0], with_turns=True)
    assert len(atts) == 2 and r.summaries[r.run_ids[0]]["overall"] == {
        "attempts": 2, "successes": 0, "asr": 0.0, "ci_low": 0.0, "ci_high": pytest.approx(0.657617, abs=1e-5)}
    for a in atts:
        assert a.verdicts["tries"] == 3
        variants = [t for t in a.turns if t["role"] == "variant"]
        assert len(variants) == 2 and all(t["content"] == REFUSE for t in variants)
        assert [t["meta"]["tries"] for t in variants] == [1, 2]
        sent = {json.dumps(t["meta"]["messages"]) for t in variants} | {json.dumps(a.prompt)}
        assert len(sent) == 3  # three different augmentations
        assert all(t["meta"]["judges"]["guard"]["success"] is False for t in variants)


# ---- 8b. attack budgets: tokens and wall time -----------------------------------------------------------------
def test_attack_token_budget(redteam_sandbox, tmp_path, fake_llm):
    attacker = fake_llm(FakeReply(json.dumps({"improvement": "x", "prompt": "Describe [REWRITTEN PLACEHOLDER]"}),
                                  usage={"prompt_tokens": 40, "completion_tokens": 10, "total_tokens": 50}))
    st = Store(tmp_path / "b.db")
    r = run_campaign(_cfg("python:tests.test_redteam_fixes:refuser", limit=0, attacks=["pair"], attack_limit=1,
                          attacker_model="att", attacker_base_url=attacker.base_url, attack_max_tokens=60,
                          attack_max_queries=20), st)
    a = st.attempts(r.run_ids[0])[0]
    assert a.verdicts["attack"]["stopped_reason"] == "max_tokens" and a.verdicts["attack"]["queries"] < 20
    assert st.get_run(r.run_ids[0]).config["attack_max_tokens"] == 60


# ---- 8d, 9a. `latest`, export errors ---------------------------------------------------------------------------
def test_latest_and_export_errors(redteam_sandbox, tmp_path):
    db = str(tmp_path / "b.db")
    assert _invoke("runs", "show", "latest", "--db", db).exit_code == 2
    rid = run_campaign(_cfg("python:tests.test_redteam_fixes:refuser", limit=2), Store(db)).run_ids[0]
    shown = _last_json(_invoke("runs", "show", "latest", "--db", db, "--json"))
    assert shown["run_id"] == rid
    res = _invoke("runs", "export", "latest", "--db", db)
    assert res.exit_code == 0 and len(res.stdout.splitlines()) == 2
    for bad in (tmp_path, tmp_path / "missing" / "x.jsonl"):
        res = _invoke("runs", "export", rid, "--db", db, "-o", str(bad))
        assert res.exit_code == 2 and res.stderr.startswith("error: cannot write") and "Traceback" not in res.output
        assert len(res.stderr.strip().splitlines()) <= 2  # one message (wrapped at most once)


# ---- 9b. char_spacing round-trips seeds with slashes and newlines ---------------------------------------------
def test_char_spacing_round_trips_slashes():
    from bastion.redteam.techniques import get_technique

    t = get_technique("char_spacing")
    for text in ("a/b", "a / b", "http://host/path", "x//y /", "admin\"/*\nnext line", "C:\\dir /all\n\nz"):
        assert t.decode(t.encode(text, random.Random(0))) == text
    assert t.encode("how to") == "h o w / t o"


def test_char_spacing_round_trips_every_shipped_seed():
    from bastion.redteam.seeds import load_seeds
    from bastion.redteam.techniques import get_technique

    try:
        seeds = load_seeds("harmful") + load_seeds("benign")
    except Exception as e:  # noqa: BLE001 - the dataset pool may be missing on a bare checkout
        pytest.skip(f"seed library unavailable: {e}")
    t = get_technique("char_spacing")
    assert [s.id for s in seeds if t.decode(t.encode(s.text)) != s.text] == []
    assert any("/" in s.text for s in seeds)
