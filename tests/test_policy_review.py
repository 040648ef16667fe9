"""Policy and gateway fixes from review 26: session category threshold, refusal of the deciding category,
per-key error locations, rejected values, empty policy files, the input decision on unchecked output, and
`checks.input: false` with multi-message requests. Markers only (no real harmful text)."""

from __future__ import annotations

import httpx
import pytest

from bastion.gateway import GatewayConfig, create_app
from bastion.gateway.app import _redact_as_block
from bastion.guard import Guard
from bastion.guard.policy import Policy, PolicyError
from bastion.guard.verdict import Verdict
from bastion.taxonomy import HAZARD_CODES
from tests.test_gateway_support import HARM, MarkerModel, chat, gateway_fixture  # noqa: F401


def verdict(score: float, cats: dict[str, float], attack: float | None = None) -> Verdict:
    scores = {c: 0.0 for c in HAZARD_CODES}
    scores.update(cats)
    return Verdict(kind="prompt", unsafe=score >= 0.5, score=score, category_scores=scores, attack_score=attack,
                   attack=None if attack is None else attack >= 0.5)


def load_error(text: str) -> str:
    with pytest.raises(PolicyError) as e:
        Policy.from_yaml(text, "pol.yaml")
    return str(e.value)


# ---- finding 2: categories.session ------------------------------------------------------------------
def test_session_category_threshold_wins_over_session_threshold():
    p = Policy.from_yaml("categories:\n  session:\n    threshold: 0.1\nsession:\n  threshold: 1.0\n")
    d = p.decide_session(0.5)
    assert d.action == "block" and d.categories == ("session",)
    assert d.reasons == ("session risk 0.50 >= 0.10",)
    assert p.decide_session(0.05).action == "allow"
    # the category's action wins over session.action, as documented
    p = Policy.from_yaml("categories:\n  session:\n    action: flag\nsession:\n  action: block\n")
    assert p.decide_session(2.0).action == "flag"


def test_session_category_threshold_must_be_positive_and_reachable():
    assert load_error("categories:\n  session:\n    threshold: 0\n") == (
        "pol.yaml:3: categories.session.threshold: the session threshold must be greater than 0 "
        "(0 would block every request)")
    msg = load_error("session: {floor: 0.9, decay: 0}\ncategories:\n  session: {threshold: 0.5}\n")
    assert msg.startswith("pol.yaml:3: categories.session.threshold: 0.5 can never be reached")
    assert "stays below 0.1 " in msg


def test_session_threshold_in_force_is_checked_defaults_included():
    # a category threshold above 1 is fine for the session (risk accumulates) and wins over session.threshold
    assert Policy.from_yaml("categories:\n  session:\n    threshold: 2.0\n").categories["session"].threshold == 2.0
    # the overridden session.threshold is not the one in force, so it is not checked
    Policy.from_yaml("session: {decay: 0.0, floor: 0.5, threshold: 1.0}\ncategories: {session: {threshold: 0.4}}\n")
    # the default threshold (1.0) under a floor and decay that cap the risk at 0.5 is a dead check: refused
    assert "session.threshold: 1 can never be reached" in load_error("session: {decay: 0.0, floor: 0.5}\n")
    assert "stays below 0 " in load_error("session: {floor: 1.0}\n")
    # ... unless the session check is off; and per key, on the merged values
    Policy.from_yaml("checks: {session: false}\nsession: {floor: 1.0}\n")
    Policy.from_yaml("keys:\n  team:\n    session: {decay: 0.0, floor: 0.5}\n    categories: {session: {threshold: 0.4}}\n")
    # the bound itself is only approached, never reached
    assert "4 can never be reached" in load_error("session:\n  threshold: 4\n")
    # other categories keep [0, 1]
    assert "categories.S1.threshold: Input should be less than or equal to 1" in load_error(
        "categories:\n  S1:\n    threshold: 2\n")


# ---- finding 6: the refusal comes from a category that decided the action ---------------------------
def test_refusal_is_not_taken_from_a_category_with_a_milder_action():
    p = Policy.from_yaml("categories:\n  S6: {action: flag, refusal: 'S6-REFUSAL'}\n  S1: {action: block}\n")
    d = p.decide(verdict(0.8, {"S6": 0.9, "S1": 0.4}))
    assert d.action == "block" and set(d.categories) == {"S1", "S6"}
    assert d.refusal == "I can't help with that request."
    p = Policy.from_yaml("categories:\n  S6: {action: flag, refusal: 'S6-REFUSAL'}\n"
                         "  S1: {action: block, refusal: 'S1-REFUSAL'}\n")
    assert p.decide(verdict(0.8, {"S6": 0.9, "S1": 0.4})).refusal == "S1-REFUSAL"
    # two blocking categories: the first (highest-scoring) one's refusal, as before
    p = Policy.from_yaml("categories:\n  S11: {refusal: 'S11-REF'}\n  attack: {refusal: 'ATTACK-REF'}\n")
    assert p.decide(verdict(0.8, {"S11": 0.9}, attack=0.9)).refusal == "S11-REF"


def test_redact_acting_as_block_uses_the_redacting_category_refusal():
    p = Policy.from_yaml("categories:\n  S7: {action: redact}\n  S6: {action: flag, refusal: 'S6-REFUSAL'}\n")
    d = p.decide(verdict(0.9, {"S7": 0.9, "S6": 0.5}))
    assert d.action == "redact" and d.categories == ("S7", "S6")
    b = _redact_as_block(p, d, "conversation")
    assert b.action == "block" and b.refusal == "I can't help with that request."


# ---- finding 7: per-key errors and the revise error name the file and line ----------------------------
def test_per_key_errors_name_file_line_and_field():
    assert load_error("keys:\n  team:\n    acton: flag\n") == \
        "pol.yaml:3: keys.team.acton: Extra inputs are not permitted"
    assert load_error("action: block\n\n\nkeys:\n  team:\n    thresholds:\n      prompt_harm: 7\n") == \
        "pol.yaml:7: keys.team.thresholds.prompt_harm: Input should be less than or equal to 1"
    msg = load_error("keys:\n  team:\n    categories:\n      S99: {action: flag}\n")
    assert msg.startswith("pol.yaml:3: keys.team.categories: unknown category code(s) ['S99']")
    assert "Value error" not in msg
    assert load_error("keys:\n  team:\n    keys: {}\n") == "pol.yaml:3: keys.team.keys: per-key policies cannot nest `keys`"


def test_revise_without_reviser_names_the_policy_file(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("categories:\n  S2: {action: revise}\n")
    with pytest.raises(PolicyError) as e:
        create_app(GatewayConfig(upstream="http://127.0.0.1:9/v1", policy_path=path, audit_path=None),
                   guard=Guard(model=MarkerModel()))
    assert str(e.value).startswith(f"{path}: action 'revise' needs a reviser")


# ---- finding 8: values that were silently accepted -------------------------------------------------------
@pytest.mark.parametrize("text, expected", [
    ("thresholds:\n  prompt_harm: true\n", "pol.yaml:2: thresholds.prompt_harm: must be a number, not a boolean (true)"),
    ("categories:\n  S1: {threshold: false}\n",
     "pol.yaml:2: categories.S1.threshold: must be a number, not a boolean (false)"),
    ("version: 2\n", "pol.yaml:1: version: unknown policy version 2; this Bastion reads version 1"),
    ("keys:\n  team:\n    version: 2\n",
     "pol.yaml:3: keys.team.version: per-key policies cannot set `version` (it is the file's, at the top level)"),
    ("session: {threshold: .inf}\n", "pol.yaml:1: session.threshold: must be a finite number, got inf"),
    ("session:\n  threshold: 50\n", "pol.yaml:2: session.threshold: 50 can never be reached: the session risk "
                                    "stays below 4 (= (1 - floor) / (1 - decay) with decay 0.8, floor 0.2); lower it, "
                                    "or turn the session check off with checks.session: false"),
])
def test_silently_accepted_values_are_rejected(text, expected):
    assert load_error(text) == expected


def test_accepted_values_still_load():
    p = Policy.from_yaml("version: 1\nthresholds: {prompt_harm: 0.3, attack: 1}\nsession: {threshold: 3.9}\n")
    assert p.thresholds.prompt_harm == 0.3 and p.thresholds.attack == 1.0 and p.session.threshold == 3.9
    assert Policy.from_yaml("session: {decay: 1.0, threshold: 100}\n").session.threshold == 100  # no decay: unbounded


def test_category_threshold_zero_does_not_attribute_zero_scores():
    p = Policy.from_yaml("thresholds: {category: 0.0}\n")
    assert p.decide(verdict(0.8, {"S1": 0.9, "S2": 0.1})).categories == ("S1", "S2")


# ---- finding 10: empty policy files ------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", "# nothing here\n", "\n\n"])
def test_empty_policy_file_is_rejected(tmp_path, text):
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as e:
        Policy.load(path)
    assert str(e.value) == f"{path}:1: the policy file is empty"
    assert Policy.from_yaml(text).action == "block"  # in-memory text: the built-in defaults, as before


# ---- gateway: finding 4 (input decision on unchecked output), finding 5 (checks.input: false) ---------
def test_input_flag_is_reported_when_output_is_not_checked(gateway):
    g = gateway(lambda req: "Mix flour and water.",
                policy="checks: {output: false}\ncode_shield: off\ncategories:\n  S6: {action: flag}\n")
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("[ADVICE] question")).json()
    assert r["choices"][0]["message"]["content"] == "Mix flour and water."
    assert r["bastion"]["input"]["action"] == "flag" and r["bastion"]["input"]["categories"] == ["S6"]
    assert r["bastion"]["action"] == "allow"
    plain = httpx.post(g.url + "/v1/chat/completions", json=chat("bread question")).json()
    assert "bastion" not in plain  # an allowed input with nothing checked: no field, as before


def test_input_checks_off_leaves_the_latest_turn_out_of_the_conversation(gateway):
    g = gateway(lambda req: "ok reply", policy="checks: {input: false, output: false}\ncode_shield: off\n")
    body = {"model": "m", "messages": [{"role": "system", "content": "You are helpful."},
                                       {"role": "user", "content": f"{HARM} please"}]}
    r = httpx.post(g.url + "/v1/chat/completions", json=body).json()
    assert r["choices"][0]["message"]["content"] == "ok reply" and r["choices"][0]["finish_reason"] == "stop"
    # the conversation check still reads the earlier turns
    body = {"model": "m", "messages": [{"role": "user", "content": f"{HARM} please"},
                                       {"role": "assistant", "content": "ok reply"},
                                       {"role": "user", "content": "and then?"}]}
    r = httpx.post(g.url + "/v1/chat/completions", json=body).json()
    assert r["choices"][0]["finish_reason"] == "content_filter" and r["bastion"]["rail"] == "input"


def test_input_checks_off_latest_turn_adds_no_session_risk(gateway):
    g = gateway(lambda req: "ok reply",
                policy="checks: {input: false, output: false, conversation: false}\ncode_shield: off\n"
                       "session: {threshold: 0.3}\n")
    for _ in range(3):
        r = httpx.post(g.url + "/v1/chat/completions", json=chat("[ESCALATE] step"),
                       headers={"x-bastion-session": "s1"}).json()
        assert r["choices"][0]["finish_reason"] == "stop", r.get("bastion")
