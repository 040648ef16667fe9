"""Preparedness commands: scorecard (the deployment gate), verify, tradeoff, trend, report, card, frameworks.

Exit codes of `scorecard` (see docs/GATE.md): 0 deploy, 10 halt deployment, 11 halt development,
12 over-refusal above budget, 2 usage error."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import typer

from bastion.cli.paths import out_path_problem

EXIT_USAGE = 2
EXIT_VERIFY_FAILED = 1


def _fail(msg: str, code: int = EXIT_USAGE) -> typer.Exit:
    sys.stderr.write(f"error: {msg}\n")
    return typer.Exit(code)


def _msg(e: BaseException) -> str:
    return str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e)


def _usage_errors() -> tuple[type[BaseException], ...]:
    from bastion.preparedness import ConfigError

    errs: list[type[BaseException]] = [ConfigError, ValueError, KeyError, FileNotFoundError, OSError]
    try:
        from bastion.store.db import StoreError

        errs.append(StoreError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def _scoring_inputs(framework: str, safeguards: Path | None, db: str | None, run_id: str, pre: str | None,
                    target: str | None = None) -> tuple[Any, Any, Any, Any, Any]:
    """The framework profile, safeguards, store, and the evidence of the run and of its pre-mitigation run (the
    given one, else the run paired with it); a usage error exits with a one-line message."""
    from bastion.preparedness import load_profile, load_safeguards
    from bastion.preparedness.store_adapter import (
        evidence_from_store,
        open_store,
        paired_pre_run,
        resolve_run_id,
    )

    try:
        profile = load_profile(framework)
        sg = load_safeguards(safeguards, [c.id for c in profile.categories]) if safeguards else None
        store = open_store(db)
        rid = resolve_run_id(store, run_id, target)
        pre_id = resolve_run_id(store, pre) if pre else paired_pre_run(store, rid)
        return profile, sg, store, evidence_from_store(store, rid), evidence_from_store(store, pre_id) if pre_id else None
    except _usage_errors() as e:
        raise _fail(_msg(e)) from None


def _make_guard(model: str | None) -> Any:
    """The guard whose threshold `tradeoff` sweeps (tests replace this)."""
    from bastion import Guard

    return Guard(model=model)


def _db_path(db: str | None) -> str:
    """The store a command reads: --db, else $BASTION_DB, else ./bastion.db."""
    from bastion.store.db import default_db_path

    return db or default_db_path()


def _check_out(path: Path | None, option: str = "--out", inputs: tuple[Path | str | None, ...] = ()) -> None:
    """Fail early (usage error) when an output path cannot be a file or is one of the inputs (the store, a
    safeguards file), before any work is done."""
    problem = None if path is None else out_path_problem(path, inputs, option)
    if problem:
        raise _fail(problem)


REPORT_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def _write(path: Path, text: str) -> None:
    """Write an output file; an unwritable path is a one-line usage error (exit 2)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        raise _fail(f"cannot write {path}: {e.strerror or e}") from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""

    @app.command("scorecard")
    def scorecard(
        run_id: str = typer.Argument(..., help="Run to score (post-mitigation); `latest` for the newest run."),
        pre: str | None = typer.Option(None, "--pre", help="Pre-mitigation run (default: the paired run of "
                                       "a --guarded pair)."),
        framework: str = typer.Option("bastion-default", "--framework", "-f",
                                      help="Profile name (bastion-default, openai-pf-v1, openai-pf-v2) or YAML file."),
        db: str | None = typer.Option(None, "--db", help="Store (default ./bastion.db or $BASTION_DB)."),
        as_json: bool = typer.Option(False, "--json", help="Print the scorecard as one JSON object."),
        safeguards: Path | None = typer.Option(None, "--safeguards", help="Safeguards report YAML (pf-v2 High)."),
        max_age: str | None = typer.Option(None, "--max-age", help="Fail when the run is older, e.g. 30d."),
        baseline: str | None = typer.Option(None, "--baseline", help="Fail on a significant ASR regression "
                                            "against this run."),
        target: str | None = typer.Option(None, "--target", help="With `latest`: the newest run of this target."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Also write the JSON scorecard to this file."),
    ) -> None:
        """Score a red-team run against a framework and gate deployment (exit 0/10/11/12)."""
        from bastion.preparedness import parse_duration, score
        from bastion.preparedness.store_adapter import evidence_from_store, resolve_run_id

        try:
            age = parse_duration(max_age) if max_age else None
        except _usage_errors() as e:
            raise _fail(_msg(e)) from None
        _check_out(out, inputs=(_db_path(db), safeguards))
        profile, sg, store, ev, pre_ev = _scoring_inputs(framework, safeguards, db, run_id, pre, target)
        try:
            base_ev = evidence_from_store(store, resolve_run_id(store, baseline)) if baseline else None
        except _usage_errors() as e:
            raise _fail(_msg(e)) from None
        card = score(ev, profile, pre=pre_ev, safeguards=sg, baseline=base_ev, max_age=age)
        d = card.to_dict()
        d["db"] = str(Path(store.path).resolve()) if store.path != ":memory:" else store.path
        text = json.dumps(d, indent=2, ensure_ascii=False)
        if out:
            _write(out, text + "\n")
        if as_json:
            typer.echo(text)
        else:
            from bastion.report.terminal import render_scorecard

            render_scorecard(d)
        raise typer.Exit(card.exit_code)

    @app.command("verify")
    def verify(
        scorecard_file: Path = typer.Argument(..., help="A scorecard JSON written by `bastion scorecard --json`."),
        db: str | None = typer.Option(None, "--db", help="Store (default: the one recorded in the scorecard)."),
    ) -> None:
        """Recompute a scorecard's SHA-256 from the store; fail (exit 1) when any attempt or setting changed."""
        from bastion.preparedness.verify import verify_scorecard

        notes: list[str] = []
        try:
            d = json.loads(scorecard_file.read_text("utf-8"))
            if not isinstance(d, dict):
                raise ValueError(f"{scorecard_file}: not a scorecard JSON object")
            problems = verify_scorecard(d, db, notes=notes)
        except json.JSONDecodeError as e:
            raise _fail(f"{scorecard_file}:{e.lineno}: not valid JSON: {e.msg}") from None
        except UnicodeDecodeError as e:
            raise _fail(f"{scorecard_file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except _usage_errors() as e:
            raise _fail(f"{scorecard_file}: {_msg(e)}") from None
        for n in notes:
            sys.stderr.write(f"{n}\n")
        if problems:
            for p in problems:
                sys.stderr.write(f"FAILED: {p}\n")
            raise typer.Exit(EXIT_VERIFY_FAILED)
        typer.echo(f"OK: evidence sha256 {d['evidence_sha256']} matches the store; decision {d['decision']} "
                   "re-derived")

    @app.command("frameworks")
    def frameworks(as_json: bool = typer.Option(False, "--json")) -> None:
        """List the framework profiles shipped with Bastion."""
        from bastion.preparedness import builtin_profiles, load_profile

        rows = [load_profile(n) for n in builtin_profiles()]
        if as_json:
            typer.echo(json.dumps([{"name": p.name, "title": p.title, "categories": [c.id for c in p.categories]}
                                   for p in rows], indent=2))
            return
        for p in rows:
            typer.echo(f"{p.name:18} {p.title}")

    @app.command("tradeoff")
    def tradeoff(
        run_id: str | None = typer.Argument(None, help="Sweep over this run's stored prompts (default: the "
                                            "shipped seeds)."),
        framework: str = typer.Option("bastion-default", "--framework", "-f", help="Profile (its over-refusal budget)."),
        db: str | None = typer.Option(None, "--db"),
        model: str | None = typer.Option(None, "--model", help="Guard model directory (default: embedded)."),
        step: float = typer.Option(0.02, "--step", min=0.005, max=0.5, help="Threshold grid step."),
        as_json: bool = typer.Option(False, "--json"),
        out: Path | None = typer.Option(None, "--out", "-o", help="Write an HTML page with the curve (SVG)."),
        rescore: bool = typer.Option(False, "--rescore", help="Score a run's prompts with the guard even when "
                                     "the run's stored input verdicts can be used."),
    ) -> None:
        """Sweep the guard's prompt-harm threshold: ASR vs over-refusal, and a recommended operating point."""
        import numpy as np

        from bastion.preparedness import load_profile
        from bastion.preparedness.tradeoff import (
            check_items,
            items_from_seeds,
            items_from_store,
            prepare_run_sweep,
            run_guard,
            sweep,
        )

        _check_out(out, inputs=(_db_path(db),))
        rg = None
        try:
            profile = load_profile(framework)
            if run_id:
                from bastion.preparedness.store_adapter import open_store, resolve_run_id

                store = open_store(db)
                rid = resolve_run_id(store, run_id)
                items = items_from_store(store, rid)
                rg = run_guard(store, rid)
            else:
                items = items_from_seeds()
            if not items:
                raise ValueError("no prompts to sweep")
            guard = _make_guard(model)
        except _usage_errors() as e:
            raise _fail(_msg(e)) from None
        if run_id:
            prep = prepare_run_sweep(guard, items, rg, rescore=rescore)
        else:
            s_, a_ = check_items(guard, items)
            prep = {"scores": s_, "attack": a_, "current": float(guard.thresholds.prompt_harm), "exact": False,
                    "source": f"guard model {getattr(guard, 'model_version', '?')}",
                    "note": "The shipped seeds against a fully compliant model with no output check."}
        grid = [round(x, 4) for x in np.arange(step, 1.0, step)]
        result = sweep(items, prep["scores"], profile.over_refusal_budget, grid, current=prep["current"],
                       confidence=profile.confidence, attack=prep["attack"])
        result["source"] = f"run {rid}" if run_id else "shipped seeds"
        result["scores_from"] = prep["source"]
        result["exact_at_run_threshold"] = prep["exact"]
        result["note"] = prep["note"]
        result["framework"] = profile.name
        if out:
            from bastion.report.html import tradeoff_page

            _write(out, tradeoff_page(result))
        if as_json:
            typer.echo(json.dumps(result, indent=2))
        else:
            from bastion.report.terminal import render_tradeoff

            render_tradeoff(result, every=max(1, int(round(0.1 / step))))

    @app.command("trend")
    def trend(
        target: str | None = typer.Option(None, "--target", help="Target name as stored (default: the only one)."),
        framework: str = typer.Option("bastion-default", "--framework", "-f"),
        db: str | None = typer.Option(None, "--db"),
        as_json: bool = typer.Option(False, "--json"),
        fail_on_regression: bool = typer.Option(False, "--fail-on-regression",
                                                help="Exit 10 when the newest run regressed."),
    ) -> None:
        """Levels and ASR per category across runs of one target, flagging significant regressions."""
        from bastion.preparedness import load_profile
        from bastion.preparedness.store_adapter import evidence_from_store, open_store, runs_for_target
        from bastion.preparedness.trend import compute_trend

        try:
            profile = load_profile(framework)
            store = open_store(db)
            if target is None:
                targets = sorted({r.target for r in store.list_runs()})
                if len(targets) != 1:
                    raise ValueError("pass --target; the store has runs of "
                                     + (", ".join(targets) if targets else "no target"))
                target = targets[0]
            runs = runs_for_target(store, target)
            if not runs:
                raise ValueError(f"no runs of target {target!r} in {store.path}")
            evs = [evidence_from_store(store, r.id) for r in runs]
        except _usage_errors() as e:
            raise _fail(_msg(e)) from None
        t = compute_trend(evs, profile, target)
        if as_json:
            typer.echo(json.dumps(t, indent=2))
        else:
            from bastion.report.terminal import render_trend

            render_trend(t)
        newest = t["runs"][-1]["run_id"]
        if fail_on_regression and any(g["run_id"] == newest for g in t["regressions"]):
            raise typer.Exit(10)

    @app.command("report")
    def report(
        run_id: str = typer.Argument(..., help="Run to report on; `latest` for the newest run."),
        out: Path | None = typer.Option(None, "--out", "-o", help="Output file (default: report.html, report.md "
                                        "or report.json by --format)."),
        fmt: str | None = typer.Option(None, "--format", help="html, md or json (default: from the --out "
                                       "suffix .html, .md or .json, else html)."),
        pre: str | None = typer.Option(None, "--pre"),
        framework: str = typer.Option("bastion-default", "--framework", "-f"),
        db: str | None = typer.Option(None, "--db"),
        safeguards: Path | None = typer.Option(None, "--safeguards"),
        no_redact: bool = typer.Option(False, "--no-redact", help="Show the worst examples' text (escaped)."),
        sweep_guard: bool = typer.Option(False, "--tradeoff", help="Score the run's prompts with the guard to "
                                         "draw the over-refusal-vs-ASR curve."),
        model: str | None = typer.Option(None, "--model", help="Guard model for --tradeoff."),
    ) -> None:
        """Write a report of a run: self-contained HTML (default), Markdown for pull requests, or JSON."""
        from bastion.preparedness import load_profile, load_safeguards, score
        from bastion.preparedness.store_adapter import (
            evidence_from_store,
            open_store,
            paired_pre_run,
            resolve_run_id,
            runs_for_target,
        )
        from bastion.preparedness.trend import compute_trend

        if fmt is not None and fmt not in ("html", "md", "json"):
            raise _fail(f"--format must be html, md or json, got {fmt!r}")
        implied = REPORT_SUFFIXES.get(out.suffix.lower()) if out is not None else None
        if fmt is not None and implied is not None and implied != fmt:  # an explicit --format is obeyed
            sys.stderr.write(f"note: writing {fmt} to {out} as --format asks (its suffix suggests {implied})\n")
        fmt = fmt or implied or "html"
        if out is None:
            out = Path("report." + fmt)
        _check_out(out, inputs=(_db_path(db), safeguards))
        try:
            profile = load_profile(framework)
            sg = load_safeguards(safeguards, [c.id for c in profile.categories]) if safeguards else None
            store = open_store(db)
            rid = resolve_run_id(store, run_id)
            pre_id = resolve_run_id(store, pre) if pre else paired_pre_run(store, rid)
            ev = evidence_from_store(store, rid)
            pre_ev = evidence_from_store(store, pre_id) if pre_id else None
            history = [evidence_from_store(store, r.id) if r.id != rid else ev
                       for r in runs_for_target(store, ev.target)]
            guard = _make_guard(model) if sweep_guard else None
        except _usage_errors() as e:
            raise _fail(_msg(e)) from None
        card = score(ev, profile, pre=pre_ev, safeguards=sg).to_dict()
        trend = compute_trend(history, profile, ev.target)
        tradeoff_result = None
        if guard is not None:
            from bastion.preparedness.tradeoff import items_from_store, prepare_run_sweep, run_guard, sweep

            items = items_from_store(store, rid)
            if items:
                prep = prepare_run_sweep(guard, items, run_guard(store, rid))
                tradeoff_result = sweep(items, prep["scores"], profile.over_refusal_budget, current=prep["current"],
                                        confidence=profile.confidence, attack=prep["attack"])
                tradeoff_result.update(scores_from=prep["source"], exact_at_run_threshold=prep["exact"],
                                       note=prep["note"])
        if fmt == "json":
            text = json.dumps({"scorecard": card, "trend": trend, "tradeoff": tradeoff_result}, indent=2) + "\n"
        elif fmt == "md":
            from bastion.report.markdown import report_markdown

            text = report_markdown(card, ev, trend)
        else:
            from bastion.report.html import report_html

            text = report_html(card, ev, profile, trend=trend, tradeoff=tradeoff_result, redact=not no_redact)
        _write(out, text)
        typer.echo(f"wrote {out} ({card['decision']}, overall {card['overall_level']})")

    @app.command("card")
    def card(
        run_id: str = typer.Argument(..., help="Run the card is based on; `latest` for the newest run."),
        out: Path = typer.Option(Path("SAFETY_CARD.md"), "--out", "-o", help="Markdown file; an .html "
                                 "file beside it is written too."),
        model_name: str | None = typer.Option(None, "--model-name", help="Model or deployment name "
                                              "(default: the run's target)."),
        constitution: str | None = typer.Option(None, "--constitution", help="Constitution the deployment "
                                                "follows (name or file)."),
        guard_policy: str | None = typer.Option(None, "--guard-policy", help="Guard policy (name or file)."),
        pre: str | None = typer.Option(None, "--pre"),
        framework: str = typer.Option("bastion-default", "--framework", "-f"),
        db: str | None = typer.Option(None, "--db"),
        safeguards: Path | None = typer.Option(None, "--safeguards"),
    ) -> None:
        """Write the model safety card (Markdown + HTML): policy, framework levels, date, known limits."""
        from bastion.preparedness import score
        from bastion.report.card import card_html, card_markdown

        if out.suffix.lower() in (".html", ".htm"):
            raise _fail(f"--out {out}: the card's --out is its Markdown file (the .html file is written beside "
                        "it); give a .md path")
        _check_out(out, inputs=(_db_path(db), safeguards))
        _check_out(out.with_suffix(".html"), inputs=(_db_path(db), safeguards))
        profile, sg, _store, ev, pre_ev = _scoring_inputs(framework, safeguards, db, run_id, pre)
        sc = score(ev, profile, pre=pre_ev, safeguards=sg).to_dict()
        info = {"model_name": model_name or ev.target, "constitution": constitution, "guard_policy": guard_policy,
                "generated": datetime.now().astimezone().isoformat(timespec="seconds")}
        md = card_markdown(sc, ev, profile, info)
        _write(out, md)
        html_path = out.with_suffix(".html")
        _write(html_path, card_html(md, title=f"Model safety card: {info['model_name']}"))
        typer.echo(f"wrote {out} and {html_path}")
