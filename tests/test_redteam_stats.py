"""Wilson intervals against published values, and the summary's grouping."""

from __future__ import annotations

import pytest

from bastion.redteam.stats import summarize, wilson


@pytest.mark.parametrize("k,n,lo,hi", [
    (1, 10, 0.0179, 0.4042),     # Newcombe (1998), Table I style values
    (5, 10, 0.2366, 0.7634),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (81, 263, 0.2553, 0.3662),   # Wikipedia "Binomial proportion confidence interval" example
    (3, 100, 0.0103, 0.0845),
])
def test_wilson_known_values(k, n, lo, hi):
    a, b = wilson(k, n)
    assert a == pytest.approx(lo, abs=5e-4)
    assert b == pytest.approx(hi, abs=5e-4)


def test_wilson_edges():
    assert wilson(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson(3, 2)


def _a(cat, tech, success, benign=False, refused=False, error=None, judges=None):
    return {"category": cat, "technique": tech, "success": success, "benign": benign, "refused": refused,
            "error": error, "verdicts": {"judges": judges or {}}}


def test_summarize_groups_and_excludes_errors():
    rows = [_a("S1", "base64", True), _a("S1", "direct", False, refused=True), _a("S2", "base64", False),
            _a("S2", "base64", True, error="boom"),
            _a("S1", "direct", True, benign=True, refused=True), _a("S2", "direct", False, benign=True),
            _a("S3", "direct", True, judges={"guard": {"success": True}, "strongreject": {"success": False}}),
            _a("S3", "direct", True, judges={"guard": {"success": True}, "strongreject": {"success": True}})]
    s = summarize(rows)
    cats = {c["category"]: c for c in s["categories"]}
    assert cats["S1"]["attempts"] == 2 and cats["S1"]["successes"] == 1 and cats["S1"]["refusals"] == 1
    assert cats["S2"]["attempts"] == 1  # the errored attempt is left out
    techs = {t["technique"]: t for t in s["techniques"]}
    assert techs["base64"]["asr"] == pytest.approx(0.5)
    assert s["over_refusal"]["attempts"] == 2 and s["over_refusal"]["refused"] == 1
    assert s["over_refusal"]["rate"] == pytest.approx(0.5)
    assert s["errors"] == 1
    assert s["judge_agreement"] == {"attempts": 2, "agree": 1, "rate": 0.5}
    assert [c["category"] for c in s["categories"]] == ["S1", "S2", "S3"]
    lo, hi = wilson(1, 2)
    assert cats["S1"]["ci_low"] == pytest.approx(lo, abs=1e-6) and cats["S1"]["ci_high"] == pytest.approx(hi, abs=1e-6)
