"""Report rendering: inline SVG is well-formed, text is escaped, pages are self-contained."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime, timezone

from bastion.preparedness import CategoryEvidence, Example, RunEvidence, load_profile, score
from bastion.preparedness.trend import compute_trend
from bastion.report.card import card_html, card_markdown
from bastion.report.html import report_html
from bastion.report.markdown import report_markdown
from bastion.report.svg import heatmap, line_chart

EXTERNAL = re.compile(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)


def evidence(run_id="r1", month=11, k=3) -> RunEvidence:
    cats = {c: CategoryEvidence(c, 100, k, 100 - k, {"base64": (50, k), "dan<script>": (50, 0)})
            for c in ("S2", "S5", "S9", "S13", "S14")}
    return RunEvidence(run_id, "guard", datetime(2026, month, 1, tzinfo=timezone.utc), cats, 120, 6,
                       examples=[Example("S2", "base64", "<b>[REDACTED-HARMFUL-REQUEST]</b>", "[REDACTED-HARMFUL-STEP]",
                                         0.97, "h-s2-1", "17")])


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg.*?</svg>", html, re.S)


def test_svg_charts_parse_as_xml():
    for s in (heatmap(["S2 <x>", "S9"], ["a&b", "c"], {("S2 <x>", "a&b"): (10, 3)}, "t"),
              line_chart([("s", [(0.0, 0.1), (0.5, 0.2)])], "x", "y", vline=(0.1, "budget"),
                         marks=[(0.5, 0.2, "rec")])):
        ET.fromstring(s)


def test_report_html_self_contained_and_escaped():
    ev = evidence()
    p = load_profile()
    card = score(ev, p).to_dict()
    trend = compute_trend([evidence("r0", 10, 1), ev], p)
    html = report_html(card, ev, p, trend=trend)
    assert not EXTERNAL.search(html) and "<script" not in html
    assert "dan&lt;script&gt;" in html
    parts = svgs(html)
    assert len(parts) >= 4
    for s in parts:
        ET.fromstring(s)
    assert "[REDACTED-HARMFUL-STEP]" not in html
    html = report_html(card, ev, p, trend=trend, redact=False)
    assert "&lt;b&gt;[REDACTED-HARMFUL-REQUEST]&lt;/b&gt;" in html


def test_markdown_and_card():
    ev = evidence()
    p = load_profile("openai-pf-v2")
    card = score(ev, p).to_dict()
    md = report_markdown(card, ev)
    assert "DEPLOY" in md and "| Category |" in md
    c = card_markdown(card, ev, p, {"model_name": "m", "constitution": "c.yaml", "guard_policy": "default"})
    assert "Research categories" in c and "2026-11-01" in c
    html = card_html(c)
    assert not EXTERNAL.search(html) and "<table>" in html
