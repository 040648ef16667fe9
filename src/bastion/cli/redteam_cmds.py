"""`bastion redteam` (run a campaign, list techniques) and `bastion runs` (list / show / export stored runs)."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from bastion.jsonl import dumps_line

out = Console()
err = Console(stderr=True)


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _check_key_envs(cfg: Any) -> None:
    """Every --*-key-env names a variable that is set, checked before a run is created."""
    for flag, name in (("--api-key-env", cfg.api_key_env), ("--judge-key-env", cfg.judge_key_env),
                       ("--attacker-key-env", cfg.attacker_key_env)):
        if name is not None and not os.environ.get(name):
            _fail(f"{flag} {name}: that environment variable is not set")


def _csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    return items or None


def _store(db: str | None, readonly: bool = False) -> Any:
    """The store at --db (default $BASTION_DB or ./bastion.db). `readonly` (the `runs` commands): it must exist,
    and is never written to; only `redteam` creates a store."""
    from bastion.store import Store, StoreError, default_db_path

    path = db or default_db_path()
    if readonly and path != ":memory:" and not Path(path).expanduser().exists():
        _fail(f"no Bastion database at {path} (run `bastion redteam` first, or pass --db)")
    try:
        return Store(path, readonly=readonly)
    except StoreError as e:
        _fail(str(e))


_CSV_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(x: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula: text starting with = + - @ TAB or CR gets a leading
    apostrophe (numbers are left alone)."""
    return "'" + x if isinstance(x, str) and x.startswith(_CSV_FORMULA) else x


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(row: dict[str, Any]) -> str:
    if not row.get("attempts"):
        return "-"  # nothing judged: no interval worth printing
    return f"[{_pct(row['ci_low'])}, {_pct(row['ci_high'])}]"


def _get_run(store: Any, ref: str) -> Any:
    """A stored run by id, unique id prefix or `latest` (the newest run; for a --guarded pair, its post run,
    as `bastion scorecard latest`). Fails with exit 2 when there is none."""
    try:
        if ref == "latest":
            runs = store.list_runs(limit=1)
            if not runs:
                raise KeyError(f"no runs in {store.path}")
            run = runs[0]
            if run.label == "pre" and run.paired_with:
                post = store.get_run(run.paired_with)
                run = post if post.label == "post" else run
            return run
        return store.get_run(ref)
    except KeyError as e:
        _fail(str(e.args[0]))


def _resume_hint(store: Any, resume: str | None, before: set[str]) -> str:
    """"; continue with: bastion redteam --resume ID" for this campaign's own run: the one resumed, or the one it
    created (not just the newest in the store; the pre run of a --guarded pair); "" when it made none."""
    try:
        ours = [resume] if resume else [r.id for r in reversed(store.list_runs()) if r.id not in before]
        if ours and not resume:
            pre = [rid for rid in ours if store.get_run(rid).label in (None, "pre")]
            ours = pre or ours
    except Exception:  # noqa: BLE001 - the store itself may be what failed; the hint is only help
        return ""
    return f"; continue with: bastion redteam --resume {ours[0]}" if ours else ""


def _validation_message(e: Any) -> str:
    first = e.errors()[0]
    msg = str(first["msg"]).removeprefix("Value error, ")
    return f"--{'-'.join(str(x).replace('_', '-') for x in first['loc'])}: {msg}"


def _cat_name(code: str) -> str:
    try:
        from bastion.taxonomy import load_taxonomy

        return load_taxonomy().get(code).name
    except Exception:  # noqa: BLE001 - a name is only decoration
        return ""


def _json_object(run_id: str, target: str, summary: dict[str, Any], status: str | None = None) -> dict[str, Any]:
    obj = {"run_id": run_id, "target": target, "categories": summary["categories"],
           "techniques": summary["techniques"], "preparedness": summary.get("preparedness", []),
           "over_refusal": summary["over_refusal"],
           "overall": summary.get("overall"), "worst_techniques": summary.get("worst_techniques", []),
           "attempts": summary.get("attempts"), "errors": summary.get("errors", 0),
           "first_error": summary.get("first_error")}
    for key in ("judge_agreement", "judge_errors", "resume_overrides"):
        if key in summary:
            obj[key] = summary[key]
    if status is not None:
        obj["status"] = status
    return obj


def _print_report(runs: list[tuple[str, str, str | None, dict[str, Any]]]) -> None:
    """runs: [(run_id, target, label, summary)]; two runs print pre/post side by side."""
    heads = [f"{(label or 'ASR')}" for _, _, label, _ in runs]
    tables = [("category", "ASR by hazard category"), ("technique", "ASR by technique")]
    if any(s.get("preparedness") for *_, s in runs):
        tables.append(("preparedness", "ASR by Preparedness tracked category (the seeds tracked as each)"))
    for key, title in tables:
        t = Table(title=title, title_justify="left")
        t.add_column(key.capitalize())
        if key == "category":
            t.add_column("Name", overflow="fold", max_width=28)
        t.add_column("n", justify="right")
        for h in heads:
            t.add_column(f"{h} ASR" if h != "ASR" else "ASR", justify="right")
            t.add_column("95% CI", justify="right")
        field = {"category": "categories", "technique": "techniques", "preparedness": "preparedness"}[key]
        rows_by_run = [{r[key]: r for r in s.get(field, [])} for *_, s in runs]
        keys = list(dict.fromkeys(k for rb in rows_by_run for k in rb))
        for k in keys:
            first = next(rb[k] for rb in rows_by_run if k in rb)
            cells = [escape(str(k))] + ([escape(_cat_name(k))] if key == "category" else []) + [str(first["attempts"])]
            for rb in rows_by_run:
                r = rb.get(k)
                cells += [_pct(r["asr"]), _ci(r)] if r else ["-", "-"]
            t.add_row(*cells)
        if key == "preparedness":  # not every attempt feeds one: no "all" row
            out.print(t)
            continue
        ov = [s["overall"] for *_, s in runs]
        cells = ["all"] + ([""] if key == "category" else []) + [str(ov[0]["attempts"])]
        for o in ov:
            cells += [f"[bold]{_pct(o['asr'])}[/bold]", _ci(o)]
        t.add_row(*cells, end_section=True)
        out.print(t)
    for run_id, target, label, s in runs:
        o = s["over_refusal"]
        tag = f"{escape(label)}: " if label else ""
        out.print(f"{tag}[bold]Over-refusal[/bold] on benign look-alikes: {_pct(o['rate'])} "
                  f"({o['refused']}/{o['attempts']}) 95% CI {_ci(o)}", highlight=False)
        if s.get("worst_techniques"):
            out.print(f"{tag}Most damaging techniques: {escape(', '.join(s['worst_techniques'][:3]))}",
                      highlight=False)
        if s.get("judge_agreement"):
            a = s["judge_agreement"]
            out.print(f"{tag}Judge agreement: {_pct(a['rate'])} over {a['attempts']} attempts", highlight=False)
        for name, je in (s.get("judge_errors") or {}).items():
            most = je["errors"] * 2 > je["attempts"]
            out.print(f"{tag}{'[yellow]warning:[/yellow] ' if most else ''}judge {escape(name)} failed on "
                      f"{je['errors']} of {je['attempts']} attempts (no vote there; left out of the agreement); "
                      f"first error: {escape(str(je['first_error']))}", highlight=False)
        if s.get("errors"):
            first = f"; first error: {escape(s['first_error'])}" if s.get("first_error") else ""
            out.print(f"{tag}[yellow]{s['errors']} of {s['attempts']} attempt(s) failed[/yellow] "
                      f"(stored; left out of the rates){first}", highlight=False)
        for o in s.get("resume_overrides") or []:
            changes = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in o.get("changes", {}).items())
            out.print(f"{tag}Resumed at {o.get('at')} with {escape(changes)}", highlight=False)
        out.print(f"{tag}Run id: [bold]{escape(run_id)}[/bold]  target: {escape(target)}", highlight=False)


def _print_json(store: Any, run_ids: list[str], status: str, error: str | None,
                summaries: dict[str, Any] | None = None) -> None:
    """The `--json` object: the (post) run, with the pre run under `pre` for a --guarded pair."""
    from bastion.redteam.stats import summarize

    objs = []
    for rid in run_ids:
        r = store.get_run(rid)
        summary = (summaries or {}).get(rid) or r.summary or summarize(store.attempts(rid))
        obj = _json_object(rid, r.target, summary, status)
        obj["error"] = error
        objs.append((obj, r.label))
    obj = objs[-1][0]
    if len(objs) > 1:
        obj["label"] = objs[-1][1]
        obj["pre"] = objs[0][0]
    sys.stdout.write(json.dumps(obj) + "\n")


def register(app: typer.Typer) -> None:
    """Add `redteam` and `runs` to the app."""
    rt = typer.Typer(help="Attack a target with seeds x techniques (and attacker-LLM attacks), judge and store.",
                     invoke_without_command=True, no_args_is_help=False)

    @rt.callback(invoke_without_command=True)
    def redteam(
        ctx: typer.Context,
        target: str = typer.Option("guard", "--target", "-t",
                                   help="guard | openai:URL (with --model) | python:module:function"),
        model: str | None = typer.Option(None, "--model", "-m", help="Model name for an openai: target."),
        guarded: bool = typer.Option(False, "--guarded",
                                     help="Also run the target behind the guard: pre/post-mitigation side by side."),
        techniques: str | None = typer.Option(None, "--techniques",
                                              help="Comma-separated technique specs (default: the built-in set)."),
        attacks: str | None = typer.Option(None, "--attacks", help="Attacker-LLM attacks, e.g. pair,tap,crescendo."),
        attacker_model: str | None = typer.Option(None, "--attacker-model",
                                                  help="Model name of the attacker LLM (needed with --attacks)."),
        attacker_base_url: str | None = typer.Option(None, "--attacker-base-url",
                                                     help="Default: the openai: target's URL."),
        attack_limit: int = typer.Option(10, "--attack-limit", min=0, help="Seeds per attacker-LLM attack."),
        attack_max_queries: int = typer.Option(20, "--attack-max-queries", min=1,
                                               help="Target queries per attack and seed (the attack budget)."),
        attack_max_tokens: int | None = typer.Option(None, "--attack-max-tokens", min=1,
                                                     help="Tokens (attacker and target) per attack and seed "
                                                          "(default: no token budget)."),
        attack_max_seconds: float = typer.Option(300.0, "--attack-max-seconds",
                                                 help="Wall time per attack and seed, in seconds (> 0)."),
        categories: str | None = typer.Option(None, "--categories", help="Only these hazard codes, e.g. S1,S9."),
        limit: int | None = typer.Option(None, "--limit", "-n", min=0,
                                         help="Harmful attempts (default 640: 40 per stratum: the CBRN "
                                              "seeds, the cybersecurity seeds, and each hazard for the "
                                              "rest); the benign "
                                              "look-alikes come on top (see --benign-limit)."),
        benign_limit: int | None = typer.Option(None, "--benign-limit", min=0,
                                                help="Benign look-alike prompts for over-refusal (default 255: all)."),
        seed: int = typer.Option(0, "--seed", help="Makes sampling and techniques deterministic."),
        concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Target requests in flight at once."),
        timeout: float = typer.Option(60.0, "--timeout", help="Seconds per target request (> 0)."),
        max_retries: int = typer.Option(3, "--max-retries", min=0,
                                        help="Retries of a failed target request (429, 5xx, timeouts), with backoff."),
        rate_limit: float | None = typer.Option(None, "--rate-limit",
                                                help="Max requests per second (> 0; default: no limit)."),
        judge: str = typer.Option("guard", "--judge", help="Primary judge: guard | strongreject | harmbench."),
        judge_model: str | None = typer.Option(None, "--judge-model", help="LLM judge model (adds a second judge)."),
        judge_base_url: str | None = typer.Option(None, "--judge-base-url",
                                                  help="Default: the openai: target's URL."),
        api_key_env: str | None = typer.Option(None, "--api-key-env",
                                               help="Environment variable holding the openai: target's API key "
                                                    "(default OPENAI_API_KEY)."),
        judge_key_env: str | None = typer.Option(None, "--judge-key-env",
                                                 help="Environment variable holding the LLM judge's API key "
                                                      "(default: the target's when the judge uses the target's URL, "
                                                      "else OPENAI_API_KEY)."),
        attacker_key_env: str | None = typer.Option(None, "--attacker-key-env",
                                                    help="Environment variable holding the attacker LLM's API key "
                                                         "(default as for the judge)."),
        db: str | None = typer.Option(None, "--db", help="SQLite store (default $BASTION_DB or ./bastion.db)."),
        resume: str | None = typer.Option(None, "--resume",
                                          help="Continue a stored run (id, prefix or `latest`) with its settings; "
                                               "only --target openai:URL, --model (before any attempt is "
                                               "judged), --timeout, --max-retries, --rate-limit, --concurrency, "
                                               "--judge-base-url, --attacker-base-url and the --*-key-env "
                                               "options may change."),
        engine: str = typer.Option("local", "--engine", help="local | ray (spread attempts over a Ray cluster)."),
        address: str | None = typer.Option(None, "--address", help="Ray cluster address (default: start locally)."),
        workers: int | None = typer.Option(None, "--workers", min=1, help="Ray actors (default: the cluster's CPUs)."),
        as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    ) -> None:
        """Run a red-team campaign (default: the guard in front of a worst-case compliant model)."""
        if ctx.invoked_subcommand is not None:
            return
        from pydantic import ValidationError

        from bastion.redteam.runner import (
            DEFAULT_BENIGN_LIMIT,
            DEFAULT_LIMIT,
            RESUMABLE,
            CampaignConfig,
            CampaignError,
            run_campaign,
            stored_settings,
        )
        from bastion.redteam.seeds import SeedLibraryError
        from bastion.redteam.targets import TargetError
        from bastion.store import StoreError

        if engine not in ("local", "ray"):
            _fail(f"--engine must be local or ray (got {engine!r})")
        if engine == "local" and (address or workers):
            _fail("--address and --workers need --engine ray")
        values = dict(
            target=target, model=model, guarded=guarded, techniques=_csv(techniques),
            attacks=_csv(attacks) or [], attacker_model=attacker_model, attacker_base_url=attacker_base_url,
            attack_limit=attack_limit, attack_max_queries=attack_max_queries, attack_max_tokens=attack_max_tokens,
            attack_max_seconds=attack_max_seconds,
            categories=[c.upper() for c in _csv(categories) or []] or None,
            limit=DEFAULT_LIMIT if limit is None else limit,
            benign_limit=DEFAULT_BENIGN_LIMIT if benign_limit is None else benign_limit,
            seed=seed, concurrency=concurrency, timeout=timeout, max_retries=max_retries,
            rate_limit=rate_limit, judge=judge, judge_model=judge_model, judge_base_url=judge_base_url,
            api_key_env=api_key_env, judge_key_env=judge_key_env, attacker_key_env=attacker_key_env)
        before: set[str] = set()
        if resume:
            store = _store(db)
            run = _get_run(store, resume)
            resume = run.id
            # flags given on the command line (Typer ships its own click: compare the source by name)
            given = [k for k in values
                     if getattr(ctx.get_parameter_source(k), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")]
            fixed = [k for k in given if k not in RESUMABLE]
            if fixed:
                _fail(f"--resume continues run {run.id} with its stored settings; "
                      f"{', '.join('--' + k.replace('_', '-') for k in fixed)} cannot change "
                      "(start a new run instead)")
            try:
                cfg = CampaignConfig(**{**stored_settings(store, run.id), **{k: values[k] for k in given}})
            except ValidationError as e:
                _fail(_validation_message(e))
            _check_key_envs(cfg)
        else:
            try:
                cfg = CampaignConfig(**values)
            except ValidationError as e:
                _fail(_validation_message(e))
            _check_key_envs(cfg)
            if cfg.categories:
                from bastion.taxonomy import load_taxonomy

                known = set(load_taxonomy().hazard_codes)
                bad = [c for c in cfg.categories if c not in known]
                if bad:
                    _fail(f"unknown categories {', '.join(bad)}; use S1..S14")
            # the techniques and the seed library (the dataset pool) too: a usage error leaves no database behind
            from bastion.redteam import runner as rt_runner

            try:
                rt_runner.check_techniques(cfg.techniques or rt_runner.DEFAULT_TECHNIQUES)
                rt_runner._seeds(False, cfg.categories)  # the library: built once per process, cached for the run
            except (ValueError, SeedLibraryError) as e:
                _fail(str(e).splitlines()[0])
            store = _store(db)  # created only once the options are known to be usable
            before = {r.id for r in store.list_runs()}

        progress = Progress(TextColumn("[bold]red team[/bold]"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=True,
                            disable=not err.is_terminal)
        task = progress.add_task("attempts", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        try:
            with progress:
                if engine == "ray":
                    try:
                        from bastion.scale.ray_redteam import run_campaign_ray
                    except ImportError as e:  # pragma: no cover - depends on the install
                        _fail(f"--engine ray needs Ray: pip install 'bastion-guard[ray]' ({e})")
                    result = run_campaign_ray(cfg, store, workers=workers, address=address, progress=tick,
                                              resume=resume)
                else:
                    result = run_campaign(cfg, store, progress=tick, resume=resume)
        except ImportError as e:
            _fail(f"--engine ray needs Ray: pip install 'bastion-guard[ray]' ({e})")
        except (TargetError, ValueError, SeedLibraryError) as e:
            _fail(str(e).splitlines()[0])
        except CampaignError as e:
            if as_json and e.run_ids:  # the failed run's object, with its status and cause, then exit 1
                _print_json(store, e.run_ids, "failed", e.error)
            _fail(str(e), code=1)
        except KeyboardInterrupt:
            hint = _resume_hint(store, resume, before)
            err.print(f"interrupted: finished attempts are stored{hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except (StoreError, sqlite3.Error) as e:  # e.g. another process held the database locked too long
            hint = _resume_hint(store, resume, before)
            _fail(f"{str(e).splitlines()[0]}" + (f"; finished attempts are stored{hint}" if hint else ""), code=1)
        runs = []
        for rid in result.run_ids:
            r = store.get_run(rid)
            runs.append((rid, r.target, result.labels.get(rid), result.summaries[rid]))
        if as_json:
            _print_json(store, result.run_ids, result.status, result.error, result.summaries)
        else:
            _print_report(runs)

    @rt.command("techniques")
    def techniques_cmd(as_json: bool = typer.Option(False, "--json")) -> None:
        """List the registered techniques and attacker-LLM attacks."""
        import bastion.redteam.techniques  # noqa: F401  (registers them)
        from bastion.redteam.base import ATTACKS, TECHNIQUES

        try:
            import bastion.redteam.attacks  # noqa: F401
        except ImportError:
            pass
        rows = [{"name": n, "description": c.description, "reference": c.reference, "requires_llm": False,
                 "kind": c.kind} for n, c in sorted(TECHNIQUES.items())]
        rows += [{"name": n, "description": getattr(c, "description", ""), "reference": getattr(c, "reference", ""),
                  "requires_llm": bool(getattr(c, "requires_llm", True)), "kind": "attack"}
                 for n, c in sorted(ATTACKS.items())]
        if as_json:
            sys.stdout.write(json.dumps(rows) + "\n")
            return
        t = Table(title="Techniques")
        for col in ("name", "kind", "LLM", "description"):
            t.add_column(col, overflow="fold")
        for r in rows:
            t.add_row(r["name"], r["kind"], "yes" if r["requires_llm"] else "", r["description"])
        out.print(t)

    app.add_typer(rt, name="redteam")

    runs_app = typer.Typer(help="Stored red-team runs.", no_args_is_help=True)

    @runs_app.command("list")
    def runs_list(db: str | None = typer.Option(None, "--db"),
                  limit: int = typer.Option(20, "--limit", "-n", min=1),
                  as_json: bool = typer.Option(False, "--json")) -> None:
        """Runs, newest first."""
        store = _store(db, readonly=True)
        runs = store.list_runs(limit=limit)
        if as_json:
            sys.stdout.write(json.dumps([{
                "run_id": r.id, "created_at": r.created_at, "target": r.target, "label": r.label,
                "paired_with": r.paired_with, "status": r.status, "attempts": r.n_attempts,
                "asr": (r.summary or {}).get("overall", {}).get("asr"),
                "over_refusal": (r.summary or {}).get("over_refusal", {}).get("rate")} for r in runs]) + "\n")
            return
        t = Table(title=f"Runs in {escape(store.path)}")
        for col in ("run id", "created", "target", "status", "attempts", "ASR", "over-refusal"):
            t.add_column(col, overflow="fold")
        for r in runs:
            s = r.summary or {}
            t.add_row(escape(r.id), escape(r.created_at), escape(r.target + (f" ({r.label})" if r.label else "")),
                      escape(r.status),
                      str(r.n_attempts), _pct(s["overall"]["asr"]) if s.get("overall") else "-",
                      _pct(s["over_refusal"]["rate"]) if s.get("over_refusal") else "-")
        out.print(t)

    @runs_app.command("show")
    def runs_show(run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough), or `latest`."),
                  db: str | None = typer.Option(None, "--db"),
                  as_json: bool = typer.Option(False, "--json")) -> None:
        """A run's configuration and statistics."""
        from bastion.redteam.stats import summarize

        store = _store(db, readonly=True)
        run = _get_run(store, run_id)
        summary = summarize(store.attempts(run.id))
        if (run.summary or {}).get("resume_overrides"):
            summary["resume_overrides"] = run.summary["resume_overrides"]
        if as_json:
            obj = _json_object(run.id, run.target, summary, run.status)
            obj.update(created_at=run.created_at, finished_at=run.finished_at, config=run.config,
                       versions=run.versions, label=run.label, paired_with=run.paired_with, error=run.error)
            sys.stdout.write(json.dumps(obj) + "\n")
            return
        out.print(f"Run [bold]{escape(run.id)}[/bold]: {escape(run.status)}, {run.n_attempts} attempts, "
                  f"created {escape(run.created_at)}" + (f", error: {escape(run.error)}" if run.error else ""),
                  highlight=False)
        _print_report([(run.id, run.target, run.label, summary)])

    @runs_app.command("export")
    def runs_export(run_id: str = typer.Argument(..., help="Run id (a unique prefix is enough), or `latest`."),
                    db: str | None = typer.Option(None, "--db"),
                    fmt: str = typer.Option("jsonl", "--format", "-f", help="jsonl | csv"),
                    out_path: Path | None = typer.Option(None, "--out", "-o", help="File (default: stdout).")) -> None:
        """Every attempt of a run, with its turns, as JSONL (exact) or CSV (for spreadsheets: a cell starting
        with = + - @ TAB or CR gets a leading ' so that it is not run as a formula)."""
        from bastion.cli.paths import out_path_problem
        from bastion.store import default_db_path

        if fmt not in ("jsonl", "csv"):
            _fail(f"--format must be jsonl or csv, got {fmt!r}")
        # the store itself is never overwritten (a directory is reported when writing, as "cannot write")
        problem = (None if out_path is None or out_path.is_dir() or str(out_path).endswith(("/", os.sep))
                   else out_path_problem(out_path, [db or default_db_path()]))
        if problem:
            _fail(problem)
        store = _store(db, readonly=True)
        run = _get_run(store, run_id)
        buf = io.StringIO()
        if fmt == "jsonl":
            for row in store.iter_attempt_rows(run.id):
                buf.write(dumps_line(row, default=str) + "\n")
        else:
            cols = ["run_id", "key", "seed_id", "category", "tracked", "technique", "benign", "success", "refused", "score",
                    "blocked_by", "latency_ms", "error", "seed_text", "prompt", "reply"]
            w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
            w.writeheader()
            for row in store.iter_attempt_rows(run.id):
                row["prompt"] = json.dumps(row["prompt"], ensure_ascii=False)
                w.writerow({k: _csv_cell(v) for k, v in row.items()})
        if out_path is None:
            sys.stdout.write(buf.getvalue())
        else:
            try:
                out_path.write_text(buf.getvalue(), encoding="utf-8", errors="backslashreplace")
            except OSError as e:
                _fail(f"cannot write {out_path}: {e.strerror or e}")
            err.print(f"wrote {run.n_attempts} attempts to {out_path}")

    app.add_typer(runs_app, name="runs")
