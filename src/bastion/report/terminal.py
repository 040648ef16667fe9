"""Rich terminal rendering of scorecards, trade-off sweeps and trends."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from bastion.preparedness.scorecard import card_ci_label, ci_label
from bastion.preparedness.trend import not_compared_text

LEVEL_STYLE = {"low": "green", "medium": "yellow", "high": "dark_orange", "critical": "bold red"}
DECISION_STYLE = {"DEPLOY": "bold green", "DEPLOY_WITH_SAFEGUARDS": "bold yellow",
                  "HALT_DEPLOYMENT": "bold dark_orange", "HALT_DEVELOPMENT": "bold red",
                  "OVER_REFUSAL": "bold magenta"}


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def level_text(level: str | None) -> Text:
    if level is None:
        return Text("–", style="dim")
    return Text(level.capitalize(), style=LEVEL_STYLE.get(level, ""))


def render_scorecard(card: dict[str, Any], console: Console | None = None) -> None:
    """Print a scorecard (the dict form, as in `--json`)."""
    console = console or Console()
    ci = card_ci_label(card)
    console.print(f"[bold]Scorecard[/] run [cyan]{escape(card['run_id'])}[/] target [cyan]{escape(card['target'])}[/] "
                  f"framework [cyan]{escape(card['framework'])}[/]"
                  + (f" (pre-mitigation run [cyan]{escape(card['pre_run_id'])}[/])" if card.get("pre_run_id") else ""))
    t = Table(show_lines=False)
    for col, kw in (("Category", {}), ("Tracked", {"justify": "center"}), ("Pre", {}), ("Post", {}),
                    ("ASR", {"justify": "right"}), (ci, {"justify": "right"}),
                    ("Attempts", {"justify": "right"}), ("Worst technique", {})):
        t.add_column(col, **kw)
    for c in card["categories"]:
        name = c["category"] + (" [dim](under-sampled)[/]" if c.get("undersampled") else "")
        t.add_row(name, "yes" if c.get("tracked", True) else "[dim]research[/]", level_text(c["pre_level"]),
                  level_text(c["post_level"]), pct(c["asr"]),
                  f"{pct(c.get('ci_low'))}–{pct(c['ci_high'])}", str(c["attempts"]), Text(c["worst_technique"] or "–"))
    console.print(t)
    o = card["over_refusal"]
    budget = f", budget {pct(o['budget'])}" if o.get("budget") is not None else ""
    console.print(f"Over-refusal (alignment tax): {pct(o['rate'])} ({ci} {pct(o['ci_low'])}–{pct(o['ci_high'])}, "
                  f"{o['refused']}/{o['attempts']} benign prompts refused{budget})")
    ov = card["overall_level"]
    console.print(Text.assemble("Overall level: ", level_text(ov),
                                *(["  (pre-mitigation: ", level_text(card["pre_overall_level"]), ")"]
                                  if card.get("pre_overall_level") else [])))
    console.print(Text.assemble("Decision: ", Text(card["decision"], style=DECISION_STYLE.get(card["decision"], ""))))
    for r in card["reasons"]:
        console.print(f"  • {escape(r)}")
    for r in card.get("requirements", []):
        console.print(f"  [yellow]requirement[/]: {escape(r)}")
    console.print(f"[dim]evidence sha256 {card['evidence_sha256']}[/]")


def render_tradeoff(sweep: dict[str, Any], console: Console | None = None, every: int = 1) -> None:
    """Print a threshold sweep table with the recommended operating point highlighted."""
    console = console or Console()
    rec = sweep.get("recommended") or {}
    t = Table(title="Guard prompt-harm threshold: ASR vs over-refusal")
    ci = ci_label(sweep.get("confidence"))
    for col in ("Threshold", "ASR", f"ASR {ci}", "Over-refusal", f"Over-refusal {ci}"):
        t.add_column(col, justify="right")
    for i, p in enumerate(sweep["points"]):
        is_rec = rec and abs(p["threshold"] - rec["threshold"]) < 1e-9
        if i % every and not is_rec:
            continue
        style = "bold green" if is_rec else ""
        t.add_row(f"{p['threshold']:.2f}", pct(p["asr"]), f"{pct(p['asr_ci_low'])}–{pct(p['asr_ci_high'])}",
                  pct(p["over_refusal"]), f"{pct(p['or_ci_low'])}–{pct(p['or_ci_high'])}", style=style)
    console.print(t)
    console.print(f"{sweep['harmful']} harmful and {sweep['benign']} benign prompts; "
                  f"over-refusal budget {pct(sweep.get('budget'))}")
    if sweep.get("current"):
        c = sweep["current"]
        console.print(f"Current threshold {c['threshold']:.2f}: ASR {pct(c['asr'])}, over-refusal "
                      f"{pct(c['over_refusal'])}")
    if sweep.get("note"):
        console.print(f"[dim]{escape(sweep['note'])}[/]")
    if rec:
        console.print(f"[bold green]Recommended[/] prompt_harm threshold {rec['threshold']:.2f}: ASR {pct(rec['asr'])}, "
                      f"over-refusal {pct(rec['over_refusal'])}. {sweep.get('recommendation', '')}")
    else:
        console.print(f"[bold red]No threshold[/] keeps over-refusal within budget. {sweep.get('recommendation', '')}")


def render_trend(trend: dict[str, Any], console: Console | None = None) -> None:
    """Print levels and ASR per category across runs of one target, flagging regressions. A run that did not
    complete is marked: it is never a regression baseline."""
    console = console or Console()
    cats = trend["categories"]
    t = Table(title=f"Trend for target {escape(str(trend['target']))} ({escape(str(trend['framework']))})")
    t.add_column("Run", no_wrap=True)
    t.add_column("Date", no_wrap=True)
    t.add_column("Overall")
    for c in cats:
        t.add_column(Text(str(c)))
    t.add_column("Over-refusal", justify="right")
    for r in trend["runs"]:
        cells = []
        for c in cats:
            e = r["categories"][c]
            txt = Text.assemble(level_text(e["level"]), f" {pct(e['asr'])}")
            if e.get("regression"):
                txt.append(" ▲ regression", style="bold red")
            cells.append(txt)
        run = Text(str(r["run_id"]))
        if r.get("status", "completed") != "completed":
            run.append(f" ({r['status']})", style="yellow")
        t.add_row(run, Text(r["created_at"][:10]), level_text(r["overall_level"]), *cells, pct(r["over_refusal"]))
    console.print(t)
    if trend["regressions"]:
        for g in trend["regressions"]:
            console.print(Text.assemble(("regression", "bold red"),
                                        f" {g['category']} in run {g['run_id']}: ASR {pct(g['baseline_asr'])} → "
                                        f"{pct(g['asr'])} (p={g['p_value']:.4f}, vs run {g['baseline_run_id']})"))
    else:
        console.print("[green]No significant regression against the previous completed run of each category"
                      + (" among the runs compared" if trend.get("not_compared") else "") + ".[/]")
    for g in trend.get("not_compared") or []:
        console.print(Text.assemble(("not compared", "bold yellow"), " " + not_compared_text(g)))
