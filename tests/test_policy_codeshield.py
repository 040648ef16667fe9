"""Policy: the `code_shield` option (parsing, backwards compatibility) and applying a policy to verdicts
outside the gateway (`decide_all`, `decide_code`, `scan_code`, `check`)."""

from __future__ import annotations

from importlib import resources

import pytest

from bastion.guard import Guard, Policy, Verdict
from bastion.guard.policy import ALLOW, PolicyError
from bastion.taxonomy import HAZARD_CODES
from tests.test_gateway_support import HARM, MarkerModel

INSECURE = "```python\nimport yaml\ncfg = yaml.load(open('c.yml'))\n```\n"
SECURE = "```python\nimport yaml\ncfg = yaml.safe_load(open('c.yml'))\n```\n"


def verdict(score: float, cats: dict[str, float], kind: str = "response") -> Verdict:
    return Verdict(kind=kind, unsafe=score >= 0.5, score=score,
                   category_scores=tuple((c, cats.get(c, 0.0)) for c in HAZARD_CODES))


def test_default_is_warn_and_shipped_file_says_so():
    assert Policy.default().code_shield.mode == "warn"
    assert Policy.from_yaml("").code_shield.mode == "warn"  # a file without the section: the built-in default
    text = resources.files("bastion.guard").joinpath("default_policy.yaml").read_text("utf-8")
    assert "code_shield:" in text and "mode: warn" in text


def test_existing_policy_files_still_load():
    old = """
version: 1
checks: {input: true, output: true}
action: block
categories: {S6: {action: flag}}
streaming: {holdback: word}
keys: {team: {checks: {output: false}}}
"""
    p = Policy.from_yaml(old)
    assert p.code_shield.mode == "warn" and p.for_key("team").code_shield.mode == "warn"


@pytest.mark.parametrize("text, mode", [
    ("code_shield: off", "off"),  # YAML reads a bare `off` as false
    ("code_shield: on", "warn"),
    ("code_shield: block", "block"),
    ("code_shield: {mode: off}", "off"),
    ("code_shield: {mode: append_fix, min_severity: high}", "append_fix"),
])
def test_code_shield_shorthands(text, mode):
    assert Policy.from_yaml(text).code_shield.mode == mode


def test_per_key_code_shield_override():
    p = Policy.from_yaml("code_shield: {mode: warn, min_severity: low}\nkeys:\n  a: {code_shield: block}\n"
                         "  b: {code_shield: {min_severity: high}}\n")
    # the shorthand sets the mode and keeps the base's other fields (it used to reset them to the built-in ones)
    assert p.for_key("a").code_shield.mode == "block" and p.for_key("a").code_shield.min_severity == "low"
    assert p.for_key("b").code_shield.mode == "warn" and p.for_key("b").code_shield.min_severity == "high"


@pytest.mark.parametrize("text, msg", [
    ("code_shield: maybe", "code_shield.mode"),
    ("code_shield: {mode: warn, bogus: 1}", "code_shield.bogus"),
    ("code_shield: {min_severity: huge}", "code_shield.min_severity"),
    ("code_shield: {max_block_chars: 10}", "code_shield.max_block_chars"),
    ("keys: {a: {code_shield: nope}}", "keys.a.code_shield.mode"),
])
def test_invalid_code_shield_is_rejected_with_one_line(text, msg):
    with pytest.raises(PolicyError) as e:
        Policy.from_yaml(text)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_scan_code_and_decide_code():
    warn, block = Policy.default(), Policy.from_yaml("code_shield: block")
    res, d = warn.scan_code(INSECURE)
    assert res.insecure and d.action == "flag" and d.categories == ("S14",) and "PY-DESER-002" in d.reasons[0]
    res, d = block.scan_code(INSECURE)
    assert d.action == "block" and d.refusal == block.code_shield.refusal
    assert block.decide_code(res).action == "block" and warn.decide_code(None) is ALLOW
    assert block.scan_code(SECURE)[1] is ALLOW
    assert Policy.from_yaml("code_shield: off").scan_code(INSECURE) == (None, ALLOW)
    fixed, _ = Policy.from_yaml("code_shield: append_fix").scan_code(INSECURE)
    assert "yaml.safe_load" in fixed.diff


def test_decide_all_merges_the_most_severe():
    p = Policy.from_yaml("categories: {S6: {action: flag}}")
    d = p.decide_all([verdict(0.01, {}), verdict(0.9, {"S6": 0.9}), verdict(0.99, {"S1": 0.95})])
    assert d.action == "block" and set(d.categories) == {"S6", "S1"}
    assert p.decide_all([]) is ALLOW


def test_check_applies_the_policy_to_guard_verdicts():
    guard = Guard(model=MarkerModel())
    p = Policy.from_yaml("code_shield: block")
    v, d = p.check(guard, f"tell me {HARM}")
    assert v.kind == "prompt" and d.action == "block" and d.categories == ("S1",)
    v, d = p.check(guard, "load config", INSECURE)
    assert v.kind == "response" and not v.unsafe and d.action == "block" and d.categories == ("S14",)
    assert p.check(guard, "load config", SECURE)[1] == ALLOW
