"""Self-contained HTML reports: everything inline (CSS, SVG charts); no scripts, no network requests."""

from __future__ import annotations

import math
from html import escape
from typing import Any

from bastion.preparedness.evidence import RunEvidence
from bastion.preparedness.profile import Profile
from bastion.preparedness.scorecard import card_ci_label, ci_label
from bastion.preparedness.trend import not_compared_text

from .svg import LEVEL_COLOURS, heatmap, level_strip, line_chart

CSS = """
body{font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;
font-size:.92em}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
.lvl{color:#fff;font-weight:bold;text-align:center}.decision{display:inline-block;padding:.4em .9em;
border-radius:6px;color:#fff;font-weight:bold;font-size:1.2em}.muted{color:#666}.mono{font-family:monospace}
.redacted{background:#222;color:#eee;padding:0 .4em;border-radius:3px;font-family:monospace;font-size:.9em}
pre{white-space:pre-wrap;background:#f7f7f7;padding:.5em;border:1px solid #e3e3e3;max-height:14em;overflow:auto}
"""

DECISION_COLOURS = {"DEPLOY": "#2e7d32", "DEPLOY_WITH_SAFEGUARDS": "#f9a825", "HALT_DEPLOYMENT": "#ef6c00",
                    "HALT_DEVELOPMENT": "#c62828", "OVER_REFUSAL": "#6a1b9a"}


def _e(x: object) -> str:
    return escape("" if x is None else str(x), quote=True)


def _pct(x: float | None, d: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{d}f}%"


def _lvl_cell(level: str | None) -> str:
    if level is None:
        return '<td class="muted">–</td>'
    return f'<td class="lvl" style="background:{LEVEL_COLOURS.get(level, "#999")}">{_e(level.capitalize())}</td>'


def page(title: str, body: str) -> str:
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def scorecard_table(card: dict[str, Any]) -> str:
    rows = []
    for c in card["categories"]:
        under = ' <span class="muted">(under-sampled)</span>' if c.get("undersampled") else ""
        tracked = "yes" if c.get("tracked", True) else '<span class="muted">research</span>'
        rows.append(f"<tr><td>{_e(c.get('name', c['category']))} <span class='muted mono'>{_e(c['category'])}</span>"
                    f"{under}</td><td>{tracked}</td>{_lvl_cell(c['pre_level'])}{_lvl_cell(c['post_level'])}"
                    f"<td class='num'>{_pct(c['asr'])}</td><td class='num'>{_pct(c.get('ci_low'))}–"
                    f"{_pct(c['ci_high'])}</td><td class='num'>{c['attempts']}</td>"
                    f"<td>{_e(c['worst_technique'] or '–')}</td></tr>")
    return ("<table><tr><th>Category</th><th>Tracked</th><th>Pre-mitigation</th><th>Post-mitigation</th>"
            f"<th>ASR</th><th>{_e(card_ci_label(card))}</th><th>Attempts</th><th>Worst technique</th></tr>" + "".join(rows) + "</table>")


def _decision_block(card: dict[str, Any]) -> str:
    col = DECISION_COLOURS.get(card["decision"], "#555")
    o = card["over_refusal"]
    budget = f" (budget {_pct(o['budget'])})" if o.get("budget") is not None else ""
    reasons = "".join(f"<li>{_e(r)}</li>" for r in card["reasons"])
    reqs = "".join(f"<li><b>Requirement:</b> {_e(r)}</li>" for r in card.get("requirements", []))
    return (f'<p><span class="decision" style="background:{col}">{_e(card["decision"])}</span> '
            f'&nbsp;overall level <b>{_e(card["overall_level"].capitalize())}</b>'
            + (f', pre-mitigation <b>{_e(card["pre_overall_level"].capitalize())}</b>'
               if card.get("pre_overall_level") else "")
            + f"</p><p>Over-refusal (alignment tax): <b>{_pct(o['rate'])}</b> "
            f"({_e(card_ci_label(card))} {_pct(o['ci_low'])}–{_pct(o['ci_high'])}, {o['refused']}/{o['attempts']} "
            "benign prompts "
            f"refused){budget}</p><ul>{reasons}{reqs}</ul>")


def _heatmap_section(ev: RunEvidence) -> str:
    from bastion.taxonomy import load_taxonomy

    tax = load_taxonomy()
    rows, cells = [], {}
    for code, ce in sorted(ev.categories.items(), key=lambda kv: (tax.codes.index(kv[0])
                                                                   if kv[0] in tax.codes else 99, kv[0])):
        label = code
        if code in tax.codes and code != "attack":
            label = f"{code} {tax.get(code).name[:18]}"
        rows.append(label)
        for t, (n, k) in ce.per_technique.items():
            cells[(label, t)] = (n, k)
    cols = ev.techniques()
    if not rows or not cols:
        return "<p class='muted'>No harmful attempts in this run.</p>"
    return ("<div style='overflow-x:auto'>" + heatmap(rows, cols, cells, "ASR by hazard category × technique")
            + "</div>")


def _tradeoff_svg(tradeoff: dict[str, Any] | None, trend: dict[str, Any] | None, card: dict[str, Any]) -> str:
    if tradeoff and tradeoff.get("points"):
        # A run with no benign (or no harmful) prompts has no over-refusal (or ASR) axis: no curve to draw.
        pts = sorted((p["over_refusal"], p["asr"]) for p in tradeoff["points"]
                     if p["asr"] is not None and p["over_refusal"] is not None)
        if not pts:
            return (f"<p class='muted'>No trade-off curve: {_e(tradeoff.get('harmful', 0))} harmful and "
                    f"{_e(tradeoff.get('benign', 0))} benign prompts (the curve needs both).</p>")
        marks = []
        if tradeoff.get("current") and tradeoff["current"].get("over_refusal") is not None \
                and tradeoff["current"].get("asr") is not None:
            c = tradeoff["current"]
            marks.append((c["over_refusal"], c["asr"], f"current t={c['threshold']:.2f}"))
        if tradeoff.get("recommended"):
            r = tradeoff["recommended"]
            marks.append((r["over_refusal"], r["asr"], f"recommended t={r['threshold']:.2f}"))
        budget = tradeoff.get("budget")
        return line_chart([("guard prompt-harm threshold sweep", pts)], "over-refusal (benign prompts refused)",
                          "attack success rate", title="Alignment tax: ASR vs over-refusal",
                          vline=(budget, f"budget {_pct(budget)}") if budget is not None else None, marks=marks)
    # Without a sweep: each run of this target is one point.
    pts = []
    for r in (trend or {}).get("runs", []):
        if r.get("over_refusal") is not None and r.get("asr_all") is not None:
            pts.append((r["over_refusal"], r["asr_all"]))
    budget = card["over_refusal"].get("budget")
    o = card["over_refusal"]
    # The reported run's own point (not the newest run's: the report may be of an older run).
    row = next((r for r in (trend or {}).get("runs", []) if r.get("run_id") == card.get("run_id")), None)
    this = [(o["rate"], row.get("asr_all") or 0.0, "this run")] \
        if o.get("rate") is not None and row is not None and row.get("asr_all") is not None else []
    return line_chart([("runs of this target", sorted(pts))], "over-refusal (benign prompts refused)",
                      "attack success rate (all harmful attempts)", title="ASR vs over-refusal",
                      vline=(budget, f"budget {_pct(budget)}") if budget is not None else None, marks=this) + \
        "<p class='muted'>Run <span class='mono'>bastion report --tradeoff</span> or " \
        "<span class='mono'>bastion tradeoff</span> to sweep the guard threshold for the full curve.</p>"


TREND_PLOT_WIDTH = 408  # px: line_chart's default width less its margins
MIN_TICK_GAP_PX = 70  # a YYYY-MM-DD label is about 60 px wide at 11 px


def _trend_section(trend: dict[str, Any] | None) -> str:
    if not trend or len(trend.get("runs", [])) < 2:
        return "<p class='muted'>Only one run of this target so far: the trend starts with the next scheduled run.</p>"
    runs = trend["runs"]
    series = []
    for c in trend["categories"]:
        pts = [(i, r["categories"][c]["asr"]) for i, r in enumerate(runs) if r["categories"][c]["asr"] is not None]
        if pts and any(r["categories"][c]["tracked"] for r in runs):
            series.append((c, pts))
    last = len(runs) - 1
    every = max(1, math.ceil(last * MIN_TICK_GAP_PX / TREND_PLOT_WIDTH))  # date labels at least a label apart
    ticks = [(i, r["created_at"][:10]) for i, r in enumerate(runs) if i % every == 0]
    if ticks[-1][0] != last:  # the newest run is always labelled; a regular label too close before it goes
        if (last - ticks[-1][0]) / last * TREND_PLOT_WIDTH < MIN_TICK_GAP_PX and len(ticks) > 1:
            ticks.pop()
        ticks.append((last, runs[last]["created_at"][:10]))
    svg = line_chart(series, "run date", "ASR", title=f"ASR per category across {len(runs)} runs",
                     x_ticks=ticks, x_max=max(len(runs) - 1, 1))
    rows = "".join(f"<tr><td class='mono'>{_e(r['run_id'])}</td><td>{_e(r['created_at'][:19])}</td>"
                   f"<td>{_e(r.get('status', 'completed'))}</td>"
                   f"{_lvl_cell(r['overall_level'])}<td>{_e(r['decision'])}</td>"
                   f"<td class='num'>{_pct(r['over_refusal'])}</td></tr>" for r in runs)
    regs = "".join(f"<li><b>{_e(g['category'])}</b> regressed in run <span class='mono'>{_e(g['run_id'])}</span>: "
                   f"{_pct(g['baseline_asr'])} → {_pct(g['asr'])} (p={g['p_value']:.4f}, vs run "
                   f"<span class='mono'>{_e(g['baseline_run_id'])}</span>)</li>"
                   for g in trend["regressions"]) or ("<li>No significant regression against the previous completed "
                                                      "run of each category" + (" among the runs compared" if
                                                      trend.get("not_compared") else "") + ".</li>")
    regs += "".join(f"<li><b>Not compared:</b> {_e(not_compared_text(g))}</li>" for g in trend.get("not_compared") or [])
    return (svg + "<table><tr><th>Run</th><th>Created</th><th>Status</th><th>Overall</th><th>Decision</th>"
            f"<th>Over-refusal</th></tr>{rows}</table><ul>{regs}</ul>"
            "<p class='muted'>A run that did not complete is never a regression baseline.</p>")


EXAMPLE_CHARS = 1500  # of an unredacted example's prompt or reply shown in the report


def _clip(text: str, limit: int = EXAMPLE_CHARS) -> str:
    """Escaped text, cut at `limit` characters with a note of how many more there were."""
    if len(text) <= limit:
        return _e(text)
    return f"{_e(text[:limit])}<span class='muted'>… [{len(text) - limit:,} more characters]</span>"


def _examples_section(ev: RunEvidence, redact: bool) -> str:
    if not ev.examples:
        return "<p class='muted'>No successful attacks were stored in this run.</p>"
    items = []
    for x in ev.examples:
        if redact:
            prompt = f"<span class='redacted'>[redacted prompt: {len(x.prompt)} characters]</span>"
            reply = f"<span class='redacted'>[redacted reply: {len(x.reply)} characters]</span>"
        else:
            prompt = f"<pre>{_clip(x.prompt)}</pre>"
            reply = f"<pre>{_clip(x.reply)}</pre>"
        items.append(f"<tr><td class='mono'>{_e(x.attempt_id)}</td><td>{_e(x.category)}</td><td>{_e(x.technique)}</td>"
                     f"<td class='mono'>{_e(x.seed_id)}</td><td class='num'>{x.score:.2f}</td>"
                     f"<td>{prompt}</td><td>{reply}</td></tr>")
    note = ("Harmful text is redacted; <span class='mono'>bastion report --no-redact</span> shows it, escaped."
            if redact else "Text shown unredacted at the author's request.")
    return (f"<p class='muted'>{note}</p><table><tr><th>Attempt</th><th>Category</th><th>Technique</th>"
            "<th>Seed</th><th>Judge score</th><th>Prompt</th><th>Reply</th></tr>" + "".join(items) + "</table>")


def methodology(profile: Profile, card: dict[str, Any]) -> str:
    stat = (f"the upper bound of the {ci_label(profile.confidence).removesuffix(' CI')} Wilson score interval of ASR"
            if profile.statistic == "ci_high" else "the ASR point estimate")
    th_rows = "".join(
        f"<tr><td>{_e(c.id)}</td><td>{'yes' if c.tracked else 'research'}</td>"
        f"<td>{_e(profile.describe_source(c))}</td>"
        + "".join(f"<td class='num'>{_pct(profile.thresholds_for(c).get(lv))}</td>"
                  for lv in ("medium", "high", "critical")) + "</tr>" for c in profile.categories)
    budget = (f"Over-refusal on benign look-alike prompts may be at most {_pct(profile.over_refusal_budget)} "
              f"({profile.over_refusal_statistic})." if profile.over_refusal_budget is not None
              else "This framework sets no over-refusal budget; over-refusal is reported only.")
    return f"""
<p>Each attempt sends one attack (a seed behaviour transformed by a technique, or an attacker-LLM attack) to the
target; a judge decides whether the reply achieves the harmful behaviour. <b>Attack success rate (ASR)</b> is
successes over attempts, with a {ci_label(profile.confidence).removesuffix(' CI')} Wilson score interval. Attempts that errored are excluded.
Benign look-alike prompts measure <b>over-refusal</b>, the alignment tax.</p>
<p>Framework <b>{_e(profile.name)}</b> ({_e(profile.title)}). A category's level is the highest whose threshold
{stat} reaches. A category with fewer than {max(1, profile.min_attempts)} attempt(s) cannot be ruled out and is treated as
at the {profile.undersampled_level.capitalize()} threshold. Deployment needs every tracked category at
{profile.deploy_max_level.capitalize()} or below{'' if profile.safeguards_level is None else
f" ({profile.safeguards_level.capitalize()} with a safeguards report judged sufficient)"}; a level above
{profile.develop_max_level.capitalize()} halts development. The overall level is the maximum over tracked
categories. {budget}</p>
<table><tr><th>Category</th><th>Tracked</th><th>Evidence</th><th>Medium from</th><th>High from</th>
<th>Critical from</th></tr>{th_rows}</table>
<p class="muted">Reference: {_e(profile.reference or 'n/a')}. Evidence SHA-256
<span class="mono">{_e(card['evidence_sha256'])}</span>; <span class="mono">bastion verify</span> recomputes it
from the store.</p>
<p class="muted">Limits: automated judges err in both directions; seeds and techniques cover known attacks only;
the <span class="mono">guard</span> target measures residual risk assuming a fully compliant model.</p>"""


def report_html(card: dict[str, Any], ev: RunEvidence, profile: Profile, trend: dict[str, Any] | None = None,
                tradeoff: dict[str, Any] | None = None, redact: bool = True) -> str:
    """The full run report as one self-contained HTML document."""
    tracked = [(c["category"], c["post_level"]) for c in card["categories"] if c.get("tracked", True)]
    body = f"""<h1>Bastion red-team report</h1>
<p class="muted">Run <span class="mono">{_e(card['run_id'])}</span> · target <b>{_e(card['target'])}</b> · run
created {_e(card['run_created_at'])} · framework <b>{_e(card['framework'])}</b> · report generated
{_e(card['created_at'])}</p>
{level_strip(tracked)}
<h2>Decision</h2>{_decision_block(card)}
<h2>Scorecard</h2>{scorecard_table(card)}
<h2>ASR by category and technique</h2>{_heatmap_section(ev)}
<h2>Alignment tax: over-refusal versus ASR</h2>{_tradeoff_svg(tradeoff, trend, card)}
<h2>Trend across runs</h2>{_trend_section(trend)}
<h2>Worst examples</h2>{_examples_section(ev, redact)}
<h2>Methodology</h2>{methodology(profile, card)}"""
    return page(f"Bastion report {card['run_id']}", body)


def tradeoff_page(result: dict[str, Any]) -> str:
    """A standalone page for `bastion tradeoff --out`."""
    rec_t = (result.get("recommended") or {}).get("threshold")
    hl = ' style="background:#e8f5e9;font-weight:bold"'
    rows = "".join(
        f"<tr{hl if rec_t is not None and p['threshold'] == rec_t else ''}>"
        f"<td class='num'>{p['threshold']:.2f}</td><td class='num'>{_pct(p['asr'])}</td>"
        f"<td class='num'>{_pct(p['asr_ci_low'])}–{_pct(p['asr_ci_high'])}</td>"
        f"<td class='num'>{_pct(p['over_refusal'])}</td>"
        f"<td class='num'>{_pct(p['or_ci_low'])}–{_pct(p['or_ci_high'])}</td></tr>" for p in result["points"])
    ci = _e(ci_label(result.get("confidence")))
    body = (f"<h1>Guard threshold trade-off</h1><p class='muted'>{result['harmful']} harmful and {result['benign']} "
            f"benign prompts from {_e(result.get('source', ''))}</p>"
            + (f"<p class='muted'>{_e(result['note'])}</p>" if result.get("note") else "")
            + _tradeoff_svg(result, None, {"over_refusal": {"budget": result.get("budget")}})
            + f"<p>{_e(result.get('recommendation', ''))}</p><table><tr><th>prompt_harm threshold</th><th>ASR</th>"
            f"<th>{ci}</th><th>Over-refusal</th><th>{ci}</th></tr>{rows}</table>")
    return page("Bastion guard threshold trade-off", body)


__all__ = ["report_html", "tradeoff_page", "page", "scorecard_table", "methodology"]
