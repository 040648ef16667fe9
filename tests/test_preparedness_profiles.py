"""Framework profiles: shipped ones load; a user's YAML is validated with file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.preparedness import ConfigError, builtin_profiles, load_profile, load_safeguards


def test_builtin_profiles_load():
    assert {"openai-pf-v1", "openai-pf-v2", "bastion-default"} <= set(builtin_profiles())
    d = load_profile()
    assert d.name == "bastion-default" and d.statistic == "ci_high" and d.min_attempts > 0
    assert d.over_refusal_budget is not None
    # bastion-default's categories are fed by the seeds tracked as each (decided per seed), not whole hazards.
    assert {c.id: d.select(c) for c in d.categories} == {
        "cybersecurity": ((), "cybersecurity"), "cbrn": ((), "cbrn"), "persuasion": ((), "persuasion"),
        "model_autonomy": ((), "model_autonomy")}
    v1 = load_profile("openai-pf-v1")
    assert [c.id for c in v1.categories] == ["cybersecurity", "cbrn", "persuasion", "model_autonomy"]
    v2 = load_profile("openai-pf-v2")
    assert [c.id for c in v2.categories if c.tracked] == ["biological_chemical", "cybersecurity",
                                                          "ai_self_improvement"]
    assert v2.safeguards_level == "high" and any(not c.tracked for c in v2.categories)
    sel = {c.id: v2.select(c) for c in v2.categories}
    assert sel["biological_chemical"] == ((), "cbrn") and sel["ai_self_improvement"] == (("S14",), None)


GOOD = """\
name: my-profile
statistic: ci_high
min_attempts: 10
default_thresholds: {medium: 0.05, high: 0.15, critical: 0.4}
categories:
  - id: cybersecurity
    name: Cyber
  - id: custom
    name: Custom
    hazards: [S1, S10]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "profile.yaml"
    p.write_text(text)
    return p


def test_custom_profile_loads(tmp_path):
    p = load_profile(write(tmp_path, GOOD))
    assert p.name == "my-profile" and p.hazards_for(p.categories[1]) == ("S1", "S10")


def errors_of(tmp_path, text) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        load_profile(write(tmp_path, text))
    return ei.value.problems


def test_error_names_file_line_and_field_for_bad_value(tmp_path):
    probs = errors_of(tmp_path, GOOD.replace("min_attempts: 10", "min_attempts: lots"))
    assert len(probs) == 1
    assert probs[0].startswith(f"{tmp_path / 'profile.yaml'}:3: min_attempts: ")


def test_error_in_nested_list_item(tmp_path):
    probs = errors_of(tmp_path, GOOD.replace("hazards: [S1, S10]", "hazards: [S1, S99]"))
    assert len(probs) == 1
    assert ":10: categories[1].hazards: unknown hazard code(s) 'S99'" in probs[0]


def test_unknown_field_and_bad_level(tmp_path):
    text = GOOD.replace("statistic: ci_high", "statistic: ci_high\ndeploy_max_level: extreme\ncolour: red")
    probs = errors_of(tmp_path, text)
    joined = "\n".join(probs)
    assert ":3: deploy_max_level:" in joined
    assert ":4: colour: Extra inputs are not permitted" in joined


def test_thresholds_must_increase(tmp_path):
    probs = errors_of(tmp_path, GOOD.replace("high: 0.15", "high: 0.5"))
    assert len(probs) == 1 and ":4: default_thresholds: thresholds must increase" in probs[0]


def test_category_without_mapping_needs_hazards(tmp_path):
    probs = errors_of(tmp_path, GOOD.replace("    hazards: [S1, S10]\n", ""))
    # reported at the category's own line and field, not at line 1 as "(document)"
    assert "needs `hazards`" in probs[0] and probs[0].split(":")[1] == "8"
    assert probs[0].split(": ")[1] == "categories[1].hazards"


def test_missing_required_field(tmp_path):
    probs = errors_of(tmp_path, GOOD.replace("    name: Cyber\n", ""))
    assert ":6: categories[0].name: Field required" in probs[0]


def test_yaml_syntax_error_has_line(tmp_path):
    probs = errors_of(tmp_path, GOOD.replace("name: Custom", "name: [Custom"))
    assert probs[0].startswith(f"{tmp_path / 'profile.yaml'}:") and "YAML syntax error" in probs[0]


def test_unknown_framework_name():
    with pytest.raises(ConfigError, match="unknown framework 'nope'"):
        load_profile("nope")


def test_safeguards_file_validated(tmp_path):
    f = tmp_path / "sg.yaml"
    f.write_text("categories:\n  cybersecurity:\n    sufficient: true\n  biology:\n    sufficient: yes\n")
    with pytest.raises(ConfigError) as ei:
        load_safeguards(f, ["cybersecurity", "biological_chemical"])
    assert ei.value.problems[0].startswith(f"{f}:4: categories.biology: unknown category 'biology'")
    f.write_text("categories:\n  cybersecurity:\n    sufficient: maybe\n")
    with pytest.raises(ConfigError) as ei:
        load_safeguards(f, ["cybersecurity"])
    assert ei.value.problems[0].startswith(f"{f}:3: categories.cybersecurity.sufficient:")


# ---- review finding 7: cross-field errors name their field and line; encoding; duplicate keys ----------------
def test_cross_field_errors_name_field_and_line(tmp_path):
    text = """\
name: x
default_thresholds: {medium: 0.1, high: 0.2, critical: 0.3}
deploy_max_level: high
develop_max_level: medium
safeguards_level: low
categories:
  - id: cyber
    name: Cyber
    hazards: [S2]
    tracked: false
  - id: cyber
    name: Cyber again
    hazards: [S2]
    tracked: false
  - id: nomap
    name: No mapping
    tracked: false
"""
    probs = [p.split(": ", 2)[:2] for p in errors_of(tmp_path, text)]
    where = {field: int(loc.rsplit(":", 1)[1]) for loc, field in probs}
    assert where == {"categories[1].id": 11, "categories[2].hazards": 15, "develop_max_level": 4,
                     "safeguards_level": 5, "categories": 6}
    assert not any("(document)" in p for p in errors_of(tmp_path, text))


def test_non_utf8_profile_names_the_file(tmp_path):
    p = tmp_path / "latin1.yaml"
    p.write_bytes(GOOD.replace("name: Cyber", "name: Caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError) as ei:
        load_profile(p)
    assert str(ei.value).startswith(f"{p}:7: not UTF-8 text")
    sg = tmp_path / "sg.yaml"
    sg.write_bytes(b"categories:\n  cybersecurity: {sufficient: true, notes: caf\xe9}\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_safeguards(sg)


def test_duplicate_yaml_keys_are_rejected(tmp_path):
    probs = errors_of(tmp_path, GOOD.replace("min_attempts: 10\n", "min_attempts: 10\nmin_attempts: 1\n"))
    assert probs == [f"{tmp_path / 'profile.yaml'}:4: min_attempts: duplicate key 'min_attempts' (first given on "
                     "line 3)"]
    probs = errors_of(tmp_path, GOOD.replace("    name: Custom\n", "    name: Custom\n    name: Other\n"))
    assert ":10: categories[1].name: duplicate key" in probs[0]
