"""Every rule: each `bad` example fires it, each `good` (near-miss) example does not. Examples live with the
rule in its YAML file."""

from __future__ import annotations

import pytest

from bastion.codeshield.languages import LANGS
from bastion.codeshield.rules import RULE_FILES, SEVERITIES, all_rules, compiled_query, load_ruleset
from bastion.codeshield.scanner import scan_code

RULES = all_rules()
_LANG_OF = {"python": "python", "javascript": "javascript", "c": "c", "java": "java", "go": "go", "php": "php"}


def _cases(kind: str) -> list:
    out = []
    for r in RULES:
        for i, ex in enumerate(r.examples_bad if kind == "bad" else r.examples_good):
            out.append(pytest.param(r, ex, id=f"{r.id}-{kind}{i}"))
    return out


def test_rule_inventory() -> None:
    assert len(RULES) >= 50
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for key in RULE_FILES:
        assert load_ruleset(key).rules, key
    for r in RULES:
        assert r.severity in SEVERITIES
        assert r.cwe.startswith("CWE-")
        assert r.hazard in ("S2", "S14")
        assert r.examples_bad and r.examples_good, f"{r.id} needs a positive and a near-miss example"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.id)
def test_queries_compile_for_every_grammar(rule) -> None:
    for lang, spec in LANGS.items():
        if (spec.rules or spec.name) == rule.language:
            compiled_query(lang, rule.id, rule.query)


@pytest.mark.parametrize(("rule", "code"), _cases("bad"))
def test_true_positive(rule, code: str) -> None:
    ids = [f.rule_id for f in scan_code(code, _LANG_OF[rule.language])]
    assert rule.id in ids, f"{rule.id} did not fire on:\n{code}\n(got {ids})"


@pytest.mark.parametrize(("rule", "code"), _cases("good"))
def test_near_miss(rule, code: str) -> None:
    ids = [f.rule_id for f in scan_code(code, _LANG_OF[rule.language])]
    assert rule.id not in ids, f"{rule.id} fired on the near-miss:\n{code}"
