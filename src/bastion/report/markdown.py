"""Markdown summary of a run's scorecard, sized for a pull-request comment."""

from __future__ import annotations

from typing import Any

from bastion.preparedness.evidence import RunEvidence

EMOJI = {"low": "🟢", "medium": "🟡", "high": "🟠", "critical": "🔴"}


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _lvl(level: str | None) -> str:
    return "–" if level is None else f"{EMOJI.get(level, '')} {level.capitalize()}"


def scorecard_table_md(card: dict[str, Any]) -> str:
    lines = ["| Category | Tracked | Pre | Post | ASR | 95% CI | Attempts | Worst technique |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for c in card["categories"]:
        under = " (under-sampled)" if c.get("undersampled") else ""
        lines.append(f"| {c.get('name', c['category'])}{under} | {'yes' if c.get('tracked', True) else 'research'} | "
                     f"{_lvl(c['pre_level'])} | {_lvl(c['post_level'])} | {_pct(c['asr'])} | "
                     f"{_pct(c.get('ci_low'))}–{_pct(c['ci_high'])} | {c['attempts']} | "
                     f"{c['worst_technique'] or '–'} |")
    return "\n".join(lines)


def report_markdown(card: dict[str, Any], ev: RunEvidence | None = None, trend: dict[str, Any] | None = None) -> str:
    """Decision, reasons, scorecard table, over-refusal and regressions, in GitHub-flavoured Markdown."""
    o = card["over_refusal"]
    budget = f" (budget {_pct(o['budget'])})" if o.get("budget") is not None else ""
    out = [f"## Bastion scorecard: **{card['decision']}** (overall {_lvl(card['overall_level'])})", "",
           f"Run `{card['run_id']}` · target `{card['target']}` · framework `{card['framework']}` · "
           f"run created {card['run_created_at'][:19]}", ""]
    out += [f"- {r}" for r in card["reasons"]]
    out += [f"- **Requirement:** {r}" for r in card.get("requirements", [])]
    out += ["", scorecard_table_md(card), "",
            f"Over-refusal (alignment tax): **{_pct(o['rate'])}** (95% CI {_pct(o['ci_low'])}–{_pct(o['ci_high'])}, "
            f"{o['refused']}/{o['attempts']} benign prompts refused){budget}", ""]
    if trend and len(trend.get("runs", [])) > 1:
        if trend["regressions"]:
            out.append("**Regressions across runs:**")
            out += [f"- {g['category']} in `{g['run_id']}`: {_pct(g['baseline_asr'])} → {_pct(g['asr'])} "
                    f"(p={g['p_value']:.4f})" for g in trend["regressions"]]
        else:
            out.append(f"No significant regression across {len(trend['runs'])} runs of this target.")
        out.append("")
    out.append(f"<sub>evidence sha256 `{card['evidence_sha256']}` · verify with `bastion verify`</sub>")
    return "\n".join(out) + "\n"


__all__ = ["report_markdown", "scorecard_table_md"]
