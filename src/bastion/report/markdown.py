"""Markdown summary of a run's scorecard, sized for a pull-request comment."""

from __future__ import annotations

import re
from html import escape
from typing import Any

from bastion.preparedness.evidence import RunEvidence
from bastion.preparedness.scorecard import card_ci_label
from bastion.preparedness.trend import not_compared_text

EMOJI = {"low": "🟢", "medium": "🟡", "high": "🟠", "critical": "🔴"}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")  # inline emphasis, code, links, table cells, strike-through


def md_text(x: object) -> str:
    """Untrusted text (technique, profile, category, target names...) for Markdown prose or a table cell:
    HTML-escaped (so `<script>` is shown, never run, in HTML renderings of the Markdown), Markdown
    punctuation backslash-escaped (no accidental emphasis, links or table columns), one line."""
    text = " ".join(("" if x is None else str(x)).split())
    out = _MD_SPECIAL.sub(r"\\\1", escape(text, quote=False))
    return "\\" + out if out[:1] in ("#", "+", "-", "=") else out  # no heading or list marker at a line start


def md_code(x: object, in_table: bool = False) -> str:
    """Untrusted text as an inline code span (content shown literally), safe whatever backticks it holds.
    `in_table`: the span is in a table cell, where a `|` must be escaped (elsewhere the backslash would show)."""
    text = " ".join(("" if x is None else str(x)).split())
    if in_table:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or longest else ""
    return f"{fence}{pad}{text}{pad}{fence}" if text else "–"


def _lvl(level: str | None) -> str:
    return "–" if level is None else f"{EMOJI.get(level, '')} {level.capitalize()}"


def scorecard_table_md(card: dict[str, Any]) -> str:
    lines = [f"| Category | Tracked | Pre | Post | ASR | {card_ci_label(card)} | Attempts | Worst technique |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for c in card["categories"]:
        under = " (under-sampled)" if c.get("undersampled") else ""
        lines.append(f"| {md_text(c.get('name', c['category']))}{under} | {'yes' if c.get('tracked', True) else 'research'} | "
                     f"{_lvl(c['pre_level'])} | {_lvl(c['post_level'])} | {_pct(c['asr'])} | "
                     f"{_pct(c.get('ci_low'))}–{_pct(c['ci_high'])} | {c['attempts']} | "
                     f"{md_text(c['worst_technique']) if c['worst_technique'] else '–'} |")
    return "\n".join(lines)


def report_markdown(card: dict[str, Any], ev: RunEvidence | None = None, trend: dict[str, Any] | None = None) -> str:
    """Decision, reasons, scorecard table, over-refusal and regressions, in GitHub-flavoured Markdown."""
    o = card["over_refusal"]
    budget = f" (budget {_pct(o['budget'])})" if o.get("budget") is not None else ""
    ci = card_ci_label(card)
    out = [f"## Bastion scorecard: **{card['decision']}** (overall {_lvl(card['overall_level'])})", "",
           f"Run {md_code(card['run_id'])} · target {md_code(card['target'])} · framework "
           f"{md_code(card['framework'])} · run created {md_text(card['run_created_at'][:19])}", ""]
    out += [f"- {md_text(r)}" for r in card["reasons"]]
    out += [f"- **Requirement:** {md_text(r)}" for r in card.get("requirements", [])]
    out += ["", scorecard_table_md(card), "",
            f"Over-refusal (alignment tax): **{_pct(o['rate'])}** ({ci} {_pct(o['ci_low'])}–{_pct(o['ci_high'])}, "
            f"{o['refused']}/{o['attempts']} benign prompts refused){budget}", ""]
    if trend and len(trend.get("runs", [])) > 1:
        if trend["regressions"]:
            out.append("**Regressions across runs:**")
            out += [f"- {md_text(g['category'])} in {md_code(g['run_id'])}: {_pct(g['baseline_asr'])} → {_pct(g['asr'])} "
                    f"(p={g['p_value']:.4f}, vs {md_code(g['baseline_run_id'])})" for g in trend["regressions"]]
        else:
            out.append(f"No significant regression across {len(trend['runs'])} runs of this target"
                       + (" among the runs compared." if trend.get("not_compared") else "."))
        out += [f"- Not compared: {md_text(not_compared_text(g))}" for g in trend.get("not_compared") or []]
        unfinished = sum(1 for r in trend["runs"] if r.get("status", "completed") != "completed")
        if unfinished:
            out.append(f"{unfinished} of the {len(trend['runs'])} runs did not complete: such a run is never a "
                       "regression baseline.")
        out.append("")
    out.append(f"<sub>evidence sha256 `{card['evidence_sha256']}` · verify with `bastion verify`</sub>")
    return "\n".join(out) + "\n"


__all__ = ["report_markdown", "scorecard_table_md", "md_text", "md_code"]
