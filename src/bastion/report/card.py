"""The model safety card: what a buyer's security review asks for, in Markdown and self-contained HTML."""

from __future__ import annotations

from typing import Any

from bastion.preparedness.evidence import RunEvidence
from bastion.preparedness.profile import Profile
from bastion.preparedness.scorecard import ci_label

from .html import page
from .markdown import _pct, md_code, md_text, scorecard_table_md


def is_guarded_target(target: str) -> bool:
    """Whether a run's target had the Bastion guard in front: `guard`, or `guarded:*` (`--guarded`)."""
    return target == "guard" or target.startswith("guarded:")


def _limits(card: dict[str, Any], ev: RunEvidence, profile: Profile) -> list[str]:
    out = [
        "Red teaming shows the presence of weaknesses, not their absence: the seeds and techniques cover known "
        "attack families only, and new jailbreaks appear continually.",
        "Success is decided by an automated judge, which errs in both directions.",
    ]
    if ev.target == "guard":
        out.append("The `guard` target puts the guard in front of a fully compliant model: the figures are the "
                   "residual risk if the underlying model were uncensored, not the behaviour of a specific model.")
    under = [c["category"] for c in card["categories"] if c.get("tracked", True) and c.get("undersampled")]
    if under:
        out.append(f"Under-sampled categories ({', '.join(under)}) could not be ruled out and are reported at "
                   f"the {profile.undersampled_level.capitalize()} threshold.")
    research = [c["category"] for c in card["categories"] if not c.get("tracked", True)]
    if research:
        out.append(f"Research categories ({', '.join(research)}) are reported but do not gate deployment.")
    out.append("Preparedness levels here are inferred from jailbreak success on the prompts tracked as each category; "
               "they are not capability evaluations (uplift studies, CTFs, autonomy tasks).")
    if ev.tracked_by_hazard and any(c.get("preparedness") for c in card["categories"]):
        out.append(f"{ev.tracked_by_hazard} attempt(s) were stored before prompts were tracked one by one: they count "
                   "for the category their whole hazard maps to (all S9 to CBRN, all S2 to cybersecurity).")
    if card.get("over_refusal", {}).get("attempts", 0) == 0:
        out.append("Over-refusal was not measured in this run.")
    return out


def card_markdown(card: dict[str, Any], ev: RunEvidence, profile: Profile, info: dict[str, Any]) -> str:
    """The safety card as Markdown. `info`: model_name, constitution, guard_policy, generated."""
    o = card["over_refusal"]
    run_cfg = (ev.config or {}).get("run_config") or {}
    versions = (ev.config or {}).get("versions") or {}
    constitution = info.get("constitution") or run_cfg.get("constitution") or "not stated"
    guarded = is_guarded_target(ev.target)
    policy = (info.get("guard_policy") or run_cfg.get("guard_policy") or run_cfg.get("policy")
              or ("Bastion default" if guarded else "none (the evaluated target has no Bastion guard in front)"))
    guard_ver = ((versions.get("guard_model") or versions.get("model") or versions.get("bastion") or "n/a")
                 if guarded or info.get("guard_policy") else "n/a (no guard)")
    ci = ci_label(profile.confidence)
    name = info.get("model_name") or ev.target
    lines = [
        f"# Model safety card: {md_text(name)}", "",
        "| | |", "|---|---|",
        f"| Deployment | {md_code(name, in_table=True)} |",
        f"| Constitution | {md_text(constitution)} |",
        f"| Guard policy | {md_text(policy)} |",
        f"| Guard model version | {md_text(guard_ver)} |",
        f"| Framework | {md_text(profile.title or profile.name)} ({md_code(profile.name, in_table=True)}) |",
        f"| Evaluation date | {ev.created_at.date().isoformat()} (run {md_code(ev.run_id, in_table=True)}) |",
        f"| Overall level | **{card['overall_level'].capitalize()}** |",
        f"| Decision | **{card['decision']}** |",
        f"| Over-refusal | {_pct(o['rate'])} ({ci} {_pct(o['ci_low'])}–{_pct(o['ci_high'])})"
        + (f", budget {_pct(o['budget'])}" if o.get("budget") is not None else "") + " |",
        f"| Card generated | {info.get('generated', '')} |", "",
        "## Framework levels", "", scorecard_table_md(card), "",
        "## Decision and reasons", "",
        *[f"- {md_text(r)}" for r in card["reasons"]],
        *[f"- **Requirement:** {md_text(r)}" for r in card.get("requirements", [])], "",
        "## How this was evaluated", "",
        f"Bastion red-teamed {md_code(ev.target)} with {sum(c.attempts for c in ev.categories.values())} attack attempts "
        f"across {len(ev.categories)} hazard categories and {len(ev.techniques())} techniques, and "
        f"{ev.benign_attempts} benign look-alike prompts for over-refusal. Levels use "
        + (f"the upper bound of the {ci.removesuffix(' CI')} Wilson interval of the attack success rate"
           if profile.statistic == "ci_high" else "the attack success rate")
        + f"; categories with fewer than {max(1, profile.min_attempts)} attempts are not ruled out.", "",
        "## Known limits", "", *[f"- {x}" for x in _limits(card, ev, profile)], "",
        "## Integrity", "",
        f"Evidence SHA-256 `{card['evidence_sha256']}` covers the run's stored attempts and this configuration; "
        "`bastion verify SCORECARD.json` recomputes it from the store.", "",
    ]
    return "\n".join(lines)


def card_html(markdown: str, title: str = "Model safety card") -> str:
    """Render the card's Markdown into a self-contained HTML page."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    return page(title, md.render(markdown))


__all__ = ["card_markdown", "card_html", "is_guarded_target"]
