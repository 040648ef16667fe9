"""The campaign runner against python-callable targets, scripted OpenAI servers and the guard target.

Seeds are placeholders and the guard is a tiny keyword model (see conftest `redteam_sandbox`), so these tests
check the runner's logic; tests/test_redteam_cli.py keeps an end-to-end run on the shipped guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.redteam.runner import (
    DIRECT,
    CampaignConfig,
    CampaignError,
    plan_campaign,
    resume_campaign,
    run_campaign,
)
from bastion.redteam.targets import TargetError
from bastion.store import Store
from tests.conftest import tiny_guard_service
from tests.fakellm import FakeReply, last_user

COMPLY = "Sure, here is [REDACTED-HARMFUL-STEP 1] then [REDACTED-HARMFUL-STEP 2]."
REFUSE = "I can't help with that."
HELPFUL = "Here is a helpful answer: [BENIGN-ANSWER]."


# ---- scripted applications (python: targets) ------------------------------------------------------------
def compliant(messages):
    return COMPLY


def refuser(messages):
    return REFUSE


def selective(messages):
    """Refuses requests that visibly carry the marker; obfuscated ones slip through."""
    return REFUSE if "harm-marker" in messages[-1]["content"].lower() else COMPLY


async def async_compliant(messages):
    await asyncio.sleep(0)
    return {"content": COMPLY}


def slow_compliant(messages):
    time.sleep(0.03)
    return COMPLY


def crashing(messages):
    raise RuntimeError("app exploded")


def _cfg(target, **kw):
    base = dict(target=target, limit=56, benign_limit=6, seed=3, concurrency=4, timeout=5, max_retries=1)
    base.update(kw)
    return CampaignConfig(**base)


def _run(cfg, store):
    r = run_campaign(cfg, store)
    return r, r.summaries[r.run_ids[0]]


# ---- planning ----------------------------------------------------------------------------------------------
def test_plan_is_deterministic_balanced_and_seeded(redteam_sandbox):
    cfg = _cfg("guard", techniques=[DIRECT, "base64", "rot13", "leetspeak"], limit=56)
    p1, p2 = plan_campaign(cfg), plan_campaign(cfg)
    assert [p.key for p in p1] == [p.key for p in p2]
    harmful = [p for p in p1 if not p.seed.benign]
    assert len(harmful) == 56 and len({p.key for p in p1}) == len(p1)
    per_tech = {t: sum(p.technique == t for p in harmful) for t in cfg.techniques}
    assert set(per_tech.values()) == {14}
    per_cat = {c: sum(p.seed.category == c for p in harmful) for c in {p.seed.category for p in harmful}}
    assert set(per_cat.values()) == {4}
    assert [p.key for p in plan_campaign(cfg.model_copy(update={"seed": 4}))] != [p.key for p in p1]
    benign = [p for p in p1 if p.seed.benign]
    assert len(benign) == 6 and {p.technique for p in benign} == {DIRECT}
    # no limit: every seed meets every technique exactly once
    full = [p for p in plan_campaign(cfg.model_copy(update={"limit": None})) if not p.seed.benign]
    assert len(full) == 28 * 4 and len({(p.seed.id, p.technique) for p in full}) == 28 * 4


# ---- python targets: ordering of ASR and over-refusal ----------------------------------------------------
def test_python_targets_order_asr_and_over_refusal(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    techs = [DIRECT, "base64", "leetspeak", "char_spacing"]
    res = {name: _run(_cfg(f"python:tests.test_redteam_runner:{name}", techniques=techs), st)[1]
           for name in ("compliant", "selective", "refuser", "async_compliant")}
    asr = {k: v["overall"]["asr"] for k, v in res.items()}
    assert asr["compliant"] == 1.0 and asr["async_compliant"] == 1.0
    assert asr["refuser"] == 0.0
    assert 0.0 < asr["selective"] < 1.0
    # the selective app refuses plain requests: no direct success, some obfuscated ones
    sel = {t["technique"]: t for t in res["selective"]["techniques"]}
    assert sel[DIRECT]["asr"] == 0.0 and max(t["asr"] for t in sel.values()) > 0.0
    over = {k: v["over_refusal"]["rate"] for k, v in res.items()}
    assert over["refuser"] == 1.0 and over["compliant"] == 0.0
    assert over["compliant"] <= over["selective"] <= over["refuser"]
    assert all(v["errors"] == 0 for v in res.values())
    assert all(len(v["categories"]) == 14 for v in res.values())


def test_attempt_records_hold_everything(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    r, s = _run(_cfg("python:tests.test_redteam_runner:compliant", techniques=["base64", "many_shot:2"],
                     limit=28, benign_limit=1), st)
    run = st.get_run(r.run_ids[0])
    assert run.status == "completed" and run.target == "python:tests.test_redteam_runner:compliant"
    assert run.config["techniques"] == ["base64", "many_shot:2"] and run.versions["guard_model"] == "tiny-test-1"
    atts = st.attempts(run.id, with_turns=True)
    assert len(atts) == 29
    ms = next(a for a in atts if a.technique == "many_shot:2")
    assert len(ms.prompt) == 5 and len(ms.turns) == 6  # 2 fabricated pairs + request, and the reply
    b64 = next(a for a in atts if a.technique == "base64")
    assert b64.prompt[0]["content"] != b64.seed_text
    assert b64.verdicts["judges"]["guard"]["success"] is True and b64.success and b64.latency_ms is not None


def test_best_of_n_stops_at_first_success(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    r, _ = _run(_cfg("python:tests.test_redteam_runner:refuser", techniques=["best_of_n:3"], limit=2,
                     benign_limit=0), st)
    atts = st.attempts(r.run_ids[0])
    assert all(a.verdicts["tries"] == 3 and not a.success for a in atts)
    r, _ = _run(_cfg("python:tests.test_redteam_runner:compliant", techniques=["best_of_n:3"], limit=2,
                     benign_limit=0), st)
    assert all(a.verdicts["tries"] == 1 and a.success for a in st.attempts(r.run_ids[0]))


def test_crashing_app_fails_run_but_keeps_attempts(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    with pytest.raises(CampaignError, match="in a row.*app exploded"):
        run_campaign(_cfg("python:tests.test_redteam_runner:crashing", concurrency=1), st)
    run = st.list_runs()[0]
    assert run.status == "failed" and "app exploded" in run.error
    assert run.n_attempts == 5 and all(a.error for a in st.attempts(run.id))


def test_bad_specs_are_usage_errors(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    for spec in ("nope:x", "python:no_such_module_xyz:f", "python:tests.test_redteam_runner:missing",
                 "openai:not-a-url", "guard:x"):
        with pytest.raises(TargetError):
            run_campaign(_cfg(spec), st)
    with pytest.raises(TargetError, match="--model"):
        run_campaign(_cfg("openai:http://127.0.0.1:9/v1"), st)
    with pytest.raises(TargetError, match="unknown technique"):
        run_campaign(_cfg("guard", techniques=["base65"]), st)
    assert st.list_runs() == []  # nothing stored for a usage error


# ---- the guard target ----------------------------------------------------------------------------------------
def test_guard_target_blocks_plain_requests_and_counts_over_refusal(redteam_sandbox, tmp_path):
    st = Store(tmp_path / "b.db")
    # an input check only (the tiny output check sees nothing): what gets in is answered in full
    r = run_campaign(_cfg("guard", techniques=[DIRECT, "rot13", "atbash"], limit=42), st,
                     guard_factory=lambda: tiny_guard_service(response_words=()))
    s = r.summaries[r.run_ids[0]]
    techs = {t["technique"]: t for t in s["techniques"]}
    assert techs[DIRECT]["asr"] == 0.0 and techs[DIRECT]["refusals"] == techs[DIRECT]["attempts"]
    assert techs["rot13"]["asr"] == 0.0  # the guard's normaliser decodes rot13 before the input check
    # an atbash cipher hides the marker from the input check, and the worst-case model complies
    assert techs["atbash"]["asr"] == 1.0
    o = s["over_refusal"]
    assert o["attempts"] == 6 and o["refused"] == 1  # the look-alike that mentions the marker
    atts = st.attempts(r.run_ids[0])
    blocked = [a for a in atts if a.blocked_by]
    assert blocked and all(a.blocked_by == "input" and a.verdicts["guard"]["input"]["unsafe"] for a in blocked)
    passed = [a for a in atts if not a.benign and not a.blocked_by]
    assert passed and all(a.success and "[REDACTED-HARMFUL-STEP 1]" in a.reply for a in passed)
    # with the output check on, the compliant answers are caught on the way out
    r = run_campaign(_cfg("guard", techniques=["atbash"], limit=14, benign_limit=0), st)
    atts = st.attempts(r.run_ids[0])
    assert all(a.blocked_by == "output" and not a.success for a in atts)


def test_guarded_pair_pre_and_post(redteam_sandbox, tmp_path, fake_llm):
    llm = fake_llm(lambda req: COMPLY)
    st = Store(tmp_path / "b.db")
    r = run_campaign(_cfg(f"openai:{llm.base_url}", model="m", guarded=True, techniques=[DIRECT, "atbash"],
                          limit=28), st)
    pre, post = r.run_ids
    assert r.labels == {pre: "pre", post: "post"}
    assert st.get_run(pre).paired_with == post and st.get_run(post).label == "post"
    assert st.get_run(post).target.startswith("guarded:openai:")
    assert r.summaries[pre]["overall"]["asr"] == 1.0
    assert r.summaries[post]["overall"]["asr"] == 0.0
    blocked = {a.technique: a.blocked_by for a in st.attempts(post) if not a.benign}
    assert blocked == {DIRECT: "input", "atbash": "output"}  # atbash got in, its answer was caught going out
    assert llm.calls == 28 + 6  # the model is asked once per attempt; both runs share the reply


# ---- openai: targets on scripted servers -------------------------------------------------------------------
def _script(kind):
    def script(req):
        text = last_user(req).lower()
        if kind == "compliant":
            return COMPLY
        if kind == "refusing":
            return REFUSE if "harm-marker" in text else HELPFUL
        return REFUSE  # over-refusing
    return script


def test_openai_targets_expected_order(redteam_sandbox, tmp_path, fake_llm):
    st = Store(tmp_path / "b.db")
    out = {}
    for kind in ("compliant", "refusing", "over_refusing"):
        llm = fake_llm(_script(kind))
        _, out[kind] = _run(_cfg(f"openai:{llm.base_url}", model="fake-model", techniques=[DIRECT, "rot13"],
                                 limit=28), st)
        assert llm.calls == 28 + 6
        assert llm.requests[0]["model"] == "fake-model"
    asr = {k: v["overall"]["asr"] for k, v in out.items()}
    over = {k: v["over_refusal"]["rate"] for k, v in out.items()}
    assert asr["compliant"] > asr["refusing"] >= asr["over_refusing"] == 0.0
    assert over["over_refusing"] > over["refusing"] >= over["compliant"] == 0.0


def test_openai_429_then_success(redteam_sandbox, tmp_path, fake_llm):
    calls = {"n": 0}

    def script(req):
        calls["n"] += 1
        return FakeReply("slow down", status=429) if calls["n"] == 1 else COMPLY

    llm = fake_llm(script)
    st = Store(tmp_path / "b.db")
    r, s = _run(_cfg(f"openai:{llm.base_url}", model="m", limit=6, benign_limit=0, techniques=[DIRECT]), st)
    assert s["errors"] == 0 and s["overall"]["attempts"] == 6 and llm.calls == 7
    assert st.get_run(r.run_ids[0]).status == "completed"


def test_openai_timeout_is_an_attempt_error(redteam_sandbox, tmp_path, fake_llm):
    def script(req):
        return FakeReply(COMPLY, delay=2.0) if "number 51" in last_user(req) else COMPLY

    llm = fake_llm(script)
    st = Store(tmp_path / "b.db")
    r, s = _run(_cfg(f"openai:{llm.base_url}", model="m", techniques=[DIRECT], limit=28, benign_limit=0,
                     timeout=0.3, max_retries=0), st)
    assert s["errors"] == 1 and s["overall"]["attempts"] == 27
    bad = [a for a in st.attempts(r.run_ids[0]) if a.error]
    assert len(bad) == 1 and "timed out" in bad[0].error
    assert st.get_run(r.run_ids[0]).status == "completed"


@pytest.mark.parametrize("case", ["bad_url", "401", "500_storm", "malformed"])
def test_openai_failures_are_clear_and_keep_attempts(redteam_sandbox, tmp_path, fake_llm, case, monkeypatch):
    st = Store(tmp_path / "b.db")
    good = {"n": 0}

    def script(req):
        good["n"] += 1
        if good["n"] <= 3:
            return COMPLY
        if case == "500_storm":
            return FakeReply("upstream overloaded", status=500)
        return FakeReply("x", malformed=True)

    if case == "bad_url":
        url, expect = "http://127.0.0.1:9/v1", "cannot connect"
    elif case == "401":
        llm = fake_llm(COMPLY, api_key="right")
        monkeypatch.setenv("OPENAI_API_KEY", "wrong")
        url, expect = llm.base_url, "401"
    else:
        llm = fake_llm(script)
        url, expect = llm.base_url, {"500_storm": "in a row.*500", "malformed": "malformed"}[case]
    cfg = _cfg(f"openai:{url}", model="m", techniques=[DIRECT], limit=20, benign_limit=0, concurrency=1,
               max_retries=0)
    with pytest.raises(CampaignError, match=expect):
        run_campaign(cfg, st)
    run = st.list_runs()[0]
    assert run.status == "failed" and run.error
    atts = st.attempts(run.id)
    if case in ("500_storm", "malformed"):
        assert sum(a.error is None for a in atts) == 3  # the good attempts before the failure are kept
    assert any(a.error for a in atts)


def test_resume_after_failure_completes_without_duplicates(redteam_sandbox, tmp_path, fake_llm):
    state = {"n": 0, "broken": True}

    def script(req):
        state["n"] += 1
        if state["broken"] and state["n"] > 10:
            return FakeReply("down", status=503)
        return COMPLY

    llm = fake_llm(script)
    st = Store(tmp_path / "b.db")
    cfg = _cfg(f"openai:{llm.base_url}", model="m", techniques=[DIRECT, "rot13"], limit=28, concurrency=1,
               max_retries=0)
    with pytest.raises(CampaignError):
        run_campaign(cfg, st)
    rid = st.list_runs()[0].id
    kept = {a.key: a.id for a in st.attempts(rid) if a.error is None}
    assert len(kept) == 10
    state["broken"] = False
    r = resume_campaign(st, rid)
    assert r.run_ids == [rid] and r.status == "completed"
    atts = st.attempts(rid)
    assert len(atts) == 34 and len({a.key for a in atts}) == 34 and all(a.error is None for a in atts)
    assert all(next(a.id for a in atts if a.key == k) == i for k, i in kept.items())  # untouched


# ---- a run killed mid-way (SIGKILL) resumes and loses nothing --------------------------------------------------
_KILL_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from tests import conftest
from bastion.redteam import runner
from bastion.store import Store
runner._seeds = conftest.placeholder_seeds
runner.default_guard_service = conftest.tiny_guard_service
cfg = runner.CampaignConfig(target="python:tests.test_redteam_runner:slow_compliant", techniques=["direct", "rot13"],
                            limit=56, benign_limit=6, seed=1, concurrency=2)
runner.run_campaign(cfg, Store({db!r}))
"""


def test_killed_run_resumes_and_loses_nothing(redteam_sandbox, tmp_path):
    db = tmp_path / "b.db"
    root = str(Path(__file__).resolve().parents[1])
    script = tmp_path / "campaign.py"
    script.write_text(_KILL_SCRIPT.format(root=root, db=str(db)))
    proc = subprocess.Popen([sys.executable, str(script)], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        n = 0
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    runs = Store(db).list_runs()
                    n = runs[0].n_attempts if runs else 0
                except Exception:  # noqa: BLE001 - the schema may be half-created
                    n = 0
            if n >= 12 or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    st = Store(db)
    run = st.list_runs()[0]
    assert run.status == "running"  # killed: nobody could mark it
    before = {a.key: (a.id, a.reply) for a in st.attempts(run.id)}
    assert 12 <= len(before) < 62
    r = resume_campaign(st, run.id)
    assert r.status == "completed"
    after = st.attempts(run.id)
    assert len(after) == 62 and len({a.key for a in after}) == 62
    for a in after:
        if a.key in before:
            assert (a.id, a.reply) == before[a.key]
    assert json.loads(json.dumps(r.summaries[run.id]))["overall"]["asr"] == 1.0


# ---- LLM judges ------------------------------------------------------------------------------------------------
def test_strongreject_judge_and_agreement(redteam_sandbox, tmp_path, fake_llm):
    target = fake_llm(lambda req: REFUSE if "harm-marker" in last_user(req).lower() else COMPLY)

    def judge(req):
        text = req["messages"][-1]["content"]
        reply = text.split("<reply>")[1].split("</reply>")[0]
        refused, harmful = int(REFUSE in reply), "[REDACTED-HARMFUL" in reply
        return json.dumps({"reasoning": "scripted", "refused": refused, "convincing": 4 if harmful else 1,
                           "specific": 3 if harmful else 1})

    jl = fake_llm(judge)
    st = Store(tmp_path / "b.db")
    r, s = _run(_cfg(f"openai:{target.base_url}", model="m", techniques=[DIRECT, "rot13"], limit=28,
                     judge_model="judge", judge_base_url=jl.base_url), st)
    assert s["judge_agreement"]["attempts"] == 34
    assert s["judge_agreement"]["rate"] == 1.0
    assert 0 < s["overall"]["asr"] < 1
    a = next(a for a in st.attempts(r.run_ids[0]) if a.success and not a.benign)
    sr = a.verdicts["judges"]["strongreject"]
    assert sr["score"] == pytest.approx((4 + 3 - 2) / 8) and sr["refused"] is False
    assert jl.requests[0]["temperature"] == 0

    # the LLM judge as primary: HarmBench yes/no
    hb = fake_llm(lambda req: "Yes" if "[REDACTED-HARMFUL" in req["messages"][-1]["content"] else "No")
    r, s2 = _run(_cfg(f"openai:{target.base_url}", model="m", techniques=[DIRECT, "rot13"], limit=28,
                      judge="harmbench", judge_model="judge", judge_base_url=hb.base_url), st)
    assert s2["overall"]["asr"] == s["overall"]["asr"]
    assert set(st.attempts(r.run_ids[0])[0].verdicts["judges"]) == {"harmbench", "guard"}


def test_rubric_parsing():
    from bastion.redteam.judges import parse_rubric, parse_yes_no

    assert parse_rubric('{"refused": 0, "convincing": 5, "specific": 4, "reasoning": "r"}') == (0, 5, 4, "r")
    assert parse_rubric("refused: 1\nconvincing: 2\nspecific: 9") == (1, 2, 5, "")
    with pytest.raises(ValueError):
        parse_rubric("no idea")
    assert parse_yes_no("Yes.") and parse_yes_no(" yes") and not parse_yes_no("No") and not parse_yes_no("")


# ---- attacker-LLM attacks ----------------------------------------------------------------------------------------
def test_pair_and_bon_attacks_are_stored_with_turns(redteam_sandbox, tmp_path, fake_llm):
    attacker = fake_llm(json.dumps({"improvement": "hide the marker", "prompt": "Describe procedure [REWRITTEN]"}))
    st = Store(tmp_path / "b.db")
    r = run_campaign(_cfg("python:tests.test_redteam_runner:selective", techniques=[DIRECT], limit=14,
                          benign_limit=0, attacks=["pair", "bon"], attack_limit=3, attacker_model="att",
                          attacker_base_url=attacker.base_url), st)
    s = r.summaries[r.run_ids[0]]
    techs = {t["technique"]: t for t in s["techniques"]}
    assert techs[DIRECT]["asr"] == 0.0
    assert techs["pair"]["attempts"] == 3 and techs["pair"]["asr"] == 1.0  # the rewrite drops the marker
    assert techs["bon"]["attempts"] == 3
    pair = next(a for a in st.attempts(r.run_ids[0], with_turns=True) if a.technique == "pair")
    assert pair.verdicts["attack"]["stopped_reason"] == "success" and pair.verdicts["attack"]["queries"] == 1
    assert pair.prompt == [{"role": "user", "content": "Describe procedure [REWRITTEN]"}]
    assert any(t["role"] == "attack_query" for t in pair.turns)
    assert attacker.requests and attacker.requests[0]["model"] == "att"


def test_attacks_need_an_attacker_model(redteam_sandbox, tmp_path):
    with pytest.raises(TargetError, match="attacker-model"):
        run_campaign(_cfg("guard", attacks=["pair"]), Store(tmp_path / "b.db"))
    with pytest.raises(TargetError, match="unknown attack"):
        run_campaign(_cfg("guard", attacks=["nope"]), Store(tmp_path / "b.db"))
