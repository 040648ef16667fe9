"""`bastion constitution ...`: validate/show constitutions, critique->revise, SFT/DPO export, AI-feedback
labels and synthetic guard data."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bastion.cli.paths import out_path_problem
from bastion.jsonl import dumps_line

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)

cons_app = typer.Typer(name="constitution", no_args_is_help=True,
                       help="Constitutional AI: critique->revise, RLAIF labels, constitution->classifier data.")

CONSTITUTION_OPT = typer.Option("default", "--constitution", "-c",
                                help="Constitution file (YAML, Bastion JSON or llm-swarm JSON), or 'default'.")


def _usage(msg: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(msg)}", highlight=False, markup=True)
    return typer.Exit(2)


def _check_out(out_path: Path, inputs: list[Path | None], opt: str = "--out") -> None:
    """OUT must be a file path that is none of the inputs (symlinks resolved): exit 2 otherwise."""
    problem = out_path_problem(out_path, inputs, opt)
    if problem:
        raise _usage(problem)


def _constitution(path: str, principles: list[str] | None = None, tags: list[str] | None = None) -> Any:
    from bastion.constitution import ConstitutionError, load_constitution

    try:
        c = load_constitution(path)
        if principles or tags:
            c = c.select(principles or None, tags or None)
        return c
    except (ConstitutionError, KeyError) as e:
        raise _usage(str(e).strip("'\"")) from None


def _client(base_url: str | None, model: str | None, api_key: str | None, concurrency: int, timeout: float,
            max_retries: int) -> Any:
    from bastion.llm import LLMClient

    if not base_url or not model:
        raise _usage("--base-url and --model are required (an OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1)")
    try:
        return LLMClient(base_url, model, api_key=api_key or os.environ.get("OPENAI_API_KEY"), timeout=timeout,
                         max_retries=max_retries, concurrency=concurrency)
    except ValueError as e:
        raise _usage(str(e)) from None


def _run_with_progress(label: str, fn: Callable[[Callable[[int], None], Callable[[int], None]], Awaitable[Any]]) -> Any:
    """Run an async pipeline with a Rich progress bar; stop cleanly with a clear message on fatal errors."""
    from bastion.constitution.batch import FatalLLMError
    from bastion.constitution.jsonl import InputError
    from bastion.store import StoreError

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as prog:
        task = prog.add_task(label, total=None)

        def on_total(n: int) -> None:
            prog.update(task, total=n)

        def advance(n: int) -> None:
            prog.advance(task, n)

        try:
            return asyncio.run(fn(advance, on_total))
        except InputError as e:
            raise _usage(str(e)) from None
        except StoreError as e:
            raise _usage(str(e)) from None
        except FatalLLMError as e:
            err.print(f"[red]error:[/red] {e}; stopped (results so far are kept, rerun to resume)", highlight=False)
            raise typer.Exit(1) from None


def _report(s: Any, what: str, source: str | None = None, final: bool = True) -> None:
    """Print a run's summary. Exit 2 when the input had no usable record; exit 1 when records failed and
    nothing was written (nothing done before either)."""
    for b in s.bad_lines[:20]:
        err.print(f"[yellow]skipped bad input line[/yellow] {escape(str(b))}", highlight=False)
    if len(s.bad_lines) > 20:
        err.print(f"[yellow]... and {len(s.bad_lines) - 20} more bad input lines[/yellow]")
    if s.damaged_out_lines:
        err.print(f"[yellow]warning:[/yellow] {s.out} had {len(s.damaged_out_lines)} damaged line(s) "
                  f"(e.g. line {s.damaged_out_lines[0]}, cut short by a crash or not UTF-8): moved to {s.damaged_to}; "
                  "their inputs are redone", highlight=False)
    msg = (f"{what}: {s.written} written to {s.out}, {s.skipped} already done, {s.failed} failed, "
           f"{len(s.bad_lines)} bad input line(s)")
    if what == "label":
        msg += f", {s.ties} tie(s), {s.order_disagree} with the two orderings disagreeing"
    err.print(msg, highlight=False)
    if s.ties_out:
        err.print(f"[yellow]ties and order-disagreeing hard labels[/yellow] (no preference; trainers would read them "
                  f"as one) went to {s.ties_out}, not {s.out}; --keep-ties keeps them in OUT", highlight=False)
    if s.failed:
        reasons = escape("; ".join(f"{k} ({v})" for k, v in sorted(s.reasons.items(), key=lambda kv: -kv[1])[:3]))
        err.print(f"[yellow]{s.failed} failed[/yellow] ({reasons}); recorded with reasons in {s.failed_out}; "
                  "rerun the same command to retry them", highlight=False)
    if s.total == 0 and source is not None:
        err.print(f"[red]error:[/red] {source}: no usable input record"
                  + (f" ({len(s.bad_lines)} bad line(s))" if s.bad_lines else " (the file is empty)"), highlight=False)
        raise typer.Exit(2)
    if final and s.failed and not s.written and not s.skipped:
        err.print(f"[red]error:[/red] every record failed; nothing was written to {s.out}", highlight=False)
        raise typer.Exit(1)


# ---- validate / show ---------------------------------------------------------------------------------
@cons_app.command("validate")
def validate_cmd(files: list[Path] = typer.Argument(..., help="Constitution files, or synth.jsonl files.")) -> None:
    """Check constitution files (or synth.jsonl data); errors name the principle (or line) and the field."""
    from bastion.constitution import ConstitutionError, SynthFormatError, iter_synth, load_constitution

    bad = 0
    for f in files:
        try:
            if f.name.endswith(".jsonl"):
                errors: list[str] = []
                n = sum(1 for _ in iter_synth(f, strict=False, errors=errors))
                if errors:
                    raise SynthFormatError("\n".join(errors))
                out.print(f"{f}: ok ({n} synth records)")
            else:
                c = load_constitution(f)
                out.print(f"{f}: ok ({c.name}, {len(c.principles)} principles, {len(c.few_shot)} few-shot examples)")
        except (ConstitutionError, SynthFormatError, OSError) as e:
            bad += 1
            err.print(f"[red]invalid:[/red] {e}", highlight=False)
    if bad:
        raise typer.Exit(1)


@cons_app.command("show")
def show_cmd(constitution: str = CONSTITUTION_OPT,
             as_yaml: bool = typer.Option(False, "--yaml", help="Print the whole constitution as YAML.")) -> None:
    """List a constitution's principles (or dump it as YAML, e.g. to start your own)."""
    c = _constitution(constitution)
    if as_yaml:
        out.print(c.to_yaml(), markup=False, highlight=False)
        return
    t = Table(title=f"{c.name} v{c.version} ({len(c.principles)} principles)")
    for col in ("id", "tags", "weight", "comparison"):
        t.add_column(col)
    for p in c.principles:
        t.add_row(p.id, ",".join(p.tags), f"{p.weight:g}", p.comparison)
    out.print(t)


# ---- revise ------------------------------------------------------------------------------------
@cons_app.command("revise")
def revise_cmd(
    in_path: Path = typer.Argument(..., metavar="IN.jsonl", help="Lines of {prompt, response}."),
    out_path: Path = typer.Option(..., "--out", "-o", help="Output JSONL; appended to and resumed if it exists."),
    base_url: str = typer.Option(None, "--base-url", envvar="BASTION_BASE_URL"),
    model: str = typer.Option(None, "--model", "-m"),
    rounds: int = typer.Option(1, "--rounds", "-n", min=1, help="Critique->revision rounds per record."),
    seed: int = typer.Option(0, "--seed", help="Seeds the principle sampling (and the endpoint, if it honours it)."),
    constitution: str = CONSTITUTION_OPT,
    principle: list[str] = typer.Option(None, "--principle", help="Only these principle ids (repeatable)."),
    tag: list[str] = typer.Option(None, "--tag", help="Only principles with these hazard tags (repeatable)."),
    few_shot: Path = typer.Option(None, "--few-shot", help="Few-shot examples file (replaces the constitution's)."),
    shots: int = typer.Option(None, "--shots", min=0, help="Use only the first N few-shot examples (0: none)."),
    temperature: float = typer.Option(0.7, "--temperature"),
    concurrency: int = typer.Option(8, "--concurrency", min=1),
    retries: int = typer.Option(2, "--retries", min=0, help="Retries of malformed model output."),
    timeout: float = typer.Option(60.0, "--timeout"),
    api_key: str = typer.Option(None, "--api-key", help="Default: $OPENAI_API_KEY."),
) -> None:
    """Critique and revise responses under sampled principles (SL-CAI)."""
    from bastion.constitution import ConstitutionError, Reviser, load_few_shot
    from bastion.constitution.pipeline import revise_file

    c = _constitution(constitution, principle, tag)
    try:
        shots_list = load_few_shot(few_shot) if few_shot else list(c.few_shot)
    except ConstitutionError as e:
        raise _usage(str(e)) from None
    if shots is not None:
        shots_list = shots_list[:shots]
    if not in_path.is_file():
        raise _usage(f"{in_path}: no such file")
    _check_out(out_path, [in_path])
    client = _client(base_url, model, api_key, concurrency, timeout, 3)
    reviser = Reviser(client, c, rounds=rounds, few_shot=shots_list, temperature=temperature, retries=retries,
                      seed=seed)
    s = _run_with_progress("revising", lambda adv, tot: revise_file(
        in_path, out_path, reviser, seed=seed, concurrency=concurrency, progress=adv, on_total=tot))
    _report(s, "revise", str(in_path))


# ---- sft / dpo ---------------------------------------------------------------------------------
@cons_app.command("sft")
def sft_cmd(
    out_path: Path = typer.Option(..., "--out", "-o", help="SFT JSONL in TRL `messages` format, or prompt-completion "
                                                           "when attacks scripted assistant turns (rebuilt)."),
    revised: list[Path] = typer.Option(None, "--revised", help="Outputs of `constitution revise` (repeatable)."),
    from_run: str = typer.Option(None, "--from-run", help="Take the successful attacks of this red-team run."),
    db: str = typer.Option(None, "--db", help="Red-team database (default $BASTION_DB or ./bastion.db)."),
    redteam_prompts: Path = typer.Option(None, "--redteam-prompts",
                                         help="JSONL of {prompt[, response]} red-team prompts to revise."),
    helpful: Path = typer.Option(None, "--helpful", help="JSONL of helpfulness {prompt[, response]} or {messages}."),
    dpo_out: Path = typer.Option(None, "--dpo-out", help="Also write revision-vs-original DPO pairs here."),
    base_url: str = typer.Option(None, "--base-url", envvar="BASTION_BASE_URL"),
    model: str = typer.Option(None, "--model", "-m", help="Model that answers and revises (needed for red-team "
                                                          "prompts and prompts without responses)."),
    rounds: int = typer.Option(1, "--rounds", "-n", min=1),
    seed: int = typer.Option(0, "--seed"),
    constitution: str = CONSTITUTION_OPT,
    system: str = typer.Option(None, "--system", help="System message to prepend to every example that has "
                                                      "none of its own."),
    concurrency: int = typer.Option(8, "--concurrency", min=1),
    timeout: float = typer.Option(60.0, "--timeout"),
    api_key: str = typer.Option(None, "--api-key"),
) -> None:
    """Build SL-CAI SFT data: revised red-team answers plus helpfulness examples (and DPO pairs)."""
    from bastion.constitution import Reviser, dpo_pairs, sft_from_helpful, sft_from_revision
    from bastion.constitution.jsonl import read_jsonl
    from bastion.constitution.pipeline import fill_responses, revise_items
    from bastion.constitution.sft import redteam_items_from_run, uniform_sft

    if not (revised or from_run or redteam_prompts or helpful):
        raise _usage("nothing to build from: give --revised, --from-run, --redteam-prompts and/or --helpful")
    inputs = [*(revised or []), redteam_prompts, helpful]
    _check_out(out_path, inputs)
    if dpo_out:
        _check_out(dpo_out, [*inputs, out_path], "--dpo-out")
    c = _constitution(constitution)
    stem = out_path.with_name(out_path.name.removesuffix(".jsonl"))
    redteam: list[dict[str, Any]] = []
    if from_run:
        from bastion.store import StoreError

        try:
            redteam += redteam_items_from_run(from_run, db)
        except (StoreError, KeyError) as e:
            raise _usage(str(e.args[0] if isinstance(e, KeyError) and e.args else e)) from None
        err.print(f"run {from_run}: {len(redteam)} successful attack(s)")
    def _prompts(path: Path, source: str) -> list[dict[str, Any]]:
        if not path.is_file():
            raise _usage(f"{path}: no such file")
        loaded = read_jsonl(path, check=lambda r: None if isinstance(r.get("prompt"), str) or
                            isinstance(r.get("messages"), list) else "needs 'prompt' (string) or 'messages' (list)")
        for b in loaded.bad:
            err.print(f"[yellow]skipped bad input line[/yellow] {escape(str(b))}", highlight=False)
        from bastion.constitution.sft import last_user

        recs = [{"source": source, **r} for _, r in loaded.records]
        for r in recs:
            if not isinstance(r.get("prompt"), str):
                r["prompt"] = last_user(r["messages"])
        return recs

    if redteam_prompts:
        redteam += _prompts(redteam_prompts, "redteam")
    helpful_items = _prompts(helpful, "helpful") if helpful else []
    revision_files = list(revised or [])
    need_model = bool(redteam) or any(not isinstance(h.get("response"), str) and
                                      (h.get("messages") or [{}])[-1].get("role") != "assistant"
                                      for h in helpful_items)
    problems: list[str] = []
    if need_model:
        client = _client(base_url, model, api_key, concurrency, timeout, 3)
        if redteam:
            redteam, ans = _run_with_progress("answering", lambda adv, tot: fill_responses(
                redteam, client, f"{stem}.responses.jsonl", concurrency=concurrency, progress=adv, on_total=tot))
            if ans.total:
                _report(ans, "answer red-team prompts", final=False)
            if ans.failed:
                problems.append(f"{ans.failed} red-team prompt(s) got no answer (see {ans.failed_out})")
            rev_out = Path(f"{stem}.revisions.jsonl")
            if redteam:
                reviser = Reviser(client, c, rounds=rounds, seed=seed)
                s = _run_with_progress("revising", lambda adv, tot: revise_items(
                    redteam, rev_out, reviser, seed=seed, concurrency=concurrency, progress=adv, on_total=tot))
                _report(s, "revise", final=False)
                if s.failed:
                    problems.append(f"{s.failed} red-team item(s) could not be revised (see {s.failed_out})")
            if rev_out.is_file():
                revision_files.append(rev_out)
        gen = [h for h in helpful_items if not isinstance(h.get("response"), str)
               and (h.get("messages") or [{}])[-1].get("role") != "assistant"]
        if gen:
            filled, hs = _run_with_progress("answering helpful", lambda adv, tot: fill_responses(
                gen, client, f"{stem}.helpful-responses.jsonl", concurrency=concurrency, progress=adv, on_total=tot))
            _report(hs, "answer helpful prompts", final=False)
            if hs.failed:
                problems.append(f"{hs.failed} helpful prompt(s) got no answer (see {hs.failed_out})")
            helpful_items = [h for h in helpful_items if h not in gen] + filled
    revisions: list[dict[str, Any]] = []
    for f in revision_files:
        if not f.is_file():
            raise _usage(f"{f}: no such file")
        loaded = read_jsonl(f, ("prompt", "initial", "final"))
        for b in loaded.bad:
            err.print(f"[yellow]skipped bad revision line[/yellow] {b}", highlight=False)
        revisions += [r for _, r in loaded.records]
    records = [sft_from_revision(r, system) for r in revisions] + [sft_from_helpful(h, system) for h in helpful_items]
    scripted = sum("completion" in x for x in records)
    records = uniform_sft(records)
    for msg in problems:
        err.print(f"[yellow]warning:[/yellow] {escape(msg)}; rerun the same command to retry", highlight=False)
    if not records:
        err.print(f"[red]error:[/red] no SFT example to write; {out_path} left as it was"
                  + (f" ({'; '.join(problems)})" if problems else ""), highlight=False)
        raise typer.Exit(1)
    _atomic_write(out_path, records)
    err.print(f"sft: {len(records)} examples ({len(revisions)} revised, {len(helpful_items)} helpful) -> {out_path}")
    if scripted:
        err.print(f"{scripted} revised conversation(s) hold assistant turns scripted by the attack: {out_path} is in "
                  "TRL's prompt-completion format, so only the final replies are training targets", highlight=False)
    if dpo_out:
        pairs = list(dpo_pairs(revisions))
        _atomic_write(dpo_out, pairs)
        err.print(f"dpo: {len(pairs)} revision-vs-original pairs -> {dpo_out}")


def _atomic_write(path: Path, records: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(dumps_line(r) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


# ---- label -------------------------------------------------------------------------------------
@cons_app.command("label")
def label_cmd(
    pairs: Path = typer.Argument(..., metavar="PAIRS.jsonl", help="Lines of {prompt, response_a, response_b}."),
    out_path: Path = typer.Option(..., "--out", "-o", help="TRL preference JSONL; appended to and resumed."),
    base_url: str = typer.Option(None, "--base-url", envvar="BASTION_BASE_URL"),
    model: str = typer.Option(None, "--model", "-m", help="The feedback model."),
    seed: int = typer.Option(0, "--seed"),
    cot: bool = typer.Option(False, "--cot", help="Reason first; probabilities clamped to [0.4, 0.6]."),
    constitution: str = CONSTITUTION_OPT,
    principle: list[str] = typer.Option(None, "--principle"),
    tag: list[str] = typer.Option(None, "--tag"),
    top_logprobs: int = typer.Option(5, "--top-logprobs", min=1, max=20),
    no_logprobs: bool = typer.Option(False, "--no-logprobs", help="Do not ask for logprobs (for endpoints that "
                                                                  "refuse them): hard labels from the answer text."),
    no_few_shot: bool = typer.Option(False, "--no-few-shot", help="Do not show the feedback examples."),
    keep_ties: bool = typer.Option(False, "--keep-ties", help="Keep ties and order-disagreeing hard labels in OUT "
                                                              "(default: OUT.ties.jsonl)."),
    concurrency: int = typer.Option(8, "--concurrency", min=1),
    retries: int = typer.Option(2, "--retries", min=0),
    timeout: float = typer.Option(60.0, "--timeout"),
    api_key: str = typer.Option(None, "--api-key"),
) -> None:
    """AI-feedback preference labels (soft, position-debiased) under sampled principles."""
    from bastion.constitution import FeedbackLabeller
    from bastion.constitution.pipeline import label_file

    c = _constitution(constitution, principle, tag)
    if not pairs.is_file():
        raise _usage(f"{pairs}: no such file")
    _check_out(out_path, [pairs])
    client = _client(base_url, model, api_key, concurrency, timeout, 3)
    labeller = FeedbackLabeller(client, c, cot=cot, top_logprobs=top_logprobs, retries=retries, seed=seed,
                                few_shot=[] if no_few_shot else None, logprobs=not no_logprobs)
    try:
        s = _run_with_progress("labelling", lambda adv, tot: label_file(
            pairs, out_path, labeller, seed=seed, concurrency=concurrency, progress=adv, on_total=tot,
            keep_ties=keep_ties))
    finally:
        if labeller.logprobs_refused:
            err.print(f"[yellow]note:[/yellow] the endpoint refused logprobs ({escape(labeller.logprobs_refused)}); "
                      "the run went on without them: hard labels from the answer text (label_type \"hard\"); "
                      "--no-logprobs skips the refused request", highlight=False)
    _report(s, "label", str(pairs))


# ---- synth -------------------------------------------------------------------------------------
@cons_app.command("synth")
def synth_cmd(
    out_path: Path = typer.Option(..., "--out", "-o", help="synth.jsonl for `bastion train --extra`; resumed."),
    base_url: str = typer.Option(None, "--base-url", envvar="BASTION_BASE_URL"),
    model: str = typer.Option(None, "--model", "-m"),
    constitution: str = CONSTITUTION_OPT,
    principle: list[str] = typer.Option(None, "--principle"),
    tag: list[str] = typer.Option(None, "--tag"),
    per_batch: int = typer.Option(8, "--per-batch", min=1, help="Examples asked for per request."),
    batches: int = typer.Option(2, "--batches", min=1, help="Requests (each in a different style) per principle."),
    paraphrases: int = typer.Option(1, "--paraphrases", min=0, help="LLM paraphrases per prompt."),
    wrappers: int = typer.Option(1, "--wrappers", min=0, help="Jailbreak-style wrappers per prompt."),
    obfuscations: int = typer.Option(1, "--obfuscations", min=0, help="Obfuscation converters per prompt."),
    seed: int = typer.Option(0, "--seed"),
    concurrency: int = typer.Option(4, "--concurrency", min=1, help="Principles in flight."),
    retries: int = typer.Option(2, "--retries", min=0),
    timeout: float = typer.Option(120.0, "--timeout"),
    api_key: str = typer.Option(None, "--api-key"),
) -> None:
    """Synthesise allowed/disallowed prompts and responses per principle, with augmentations."""
    from bastion.constitution import Synthesizer
    from bastion.constitution.pipeline import synth_file

    c = _constitution(constitution, principle, tag)
    _check_out(out_path, [])
    client = _client(base_url, model, api_key, concurrency * 2, timeout, 3)
    synth = Synthesizer(client, c, per_batch=per_batch, batches=batches, paraphrases=paraphrases,
                        wrappers=wrappers, obfuscations=obfuscations, retries=retries, seed=seed)
    s = _run_with_progress("synthesising", lambda adv, tot: synth_file(
        out_path, synth, concurrency=concurrency, progress=adv, on_total=tot))
    if s.damaged_out_lines:
        err.print(f"[yellow]warning:[/yellow] {out_path} had {len(s.damaged_out_lines)} damaged line(s) "
                  f"(e.g. line {s.damaged_out_lines[0]}): moved to {s.damaged_to}, so OUT stays valid JSONL",
                  highlight=False)
    for note in s.notes[:10]:
        err.print(f"[dim]{escape(note)}[/dim]", highlight=False)
    err.print(f"synth: {s.written} records for {s.total - s.skipped - s.failed} principle(s) -> {out_path}; "
              f"{s.skipped} principle(s) already done, {s.failed} failed"
              + (f" (reasons in {s.failed_out}; rerun to retry)" if s.failed else ""), highlight=False)
    labels = [(p.id, s.labels[p.id]) for p in c.principles if p.id in s.labels]
    if labels:
        err.print("labels per principle (allowed/disallowed): "
                  + ", ".join(f"{pid} {n[0]}/{n[1]}" for pid, n in labels), highlight=False)
    for pid, n in labels:
        if not (n[0] and n[1]):
            missing = "disallowed (label 1)" if n[0] else "allowed (label 0)"
            err.print(f"[yellow]warning:[/yellow] principle {escape(pid)!r} has no {missing} records in {out_path}: "
                      "its data is one-sided (the model may have refused to write them); a classifier trained on it "
                      "learns the principle's topic, not the line it draws", highlight=False)
    augs = ", ".join(a.name for a in synth.wrapper_augs + synth.obfus_augs)
    err.print(f"augmentations: paraphrase, {augs}", highlight=False)
    if s.failed and not s.written and not s.skipped:
        err.print(f"[red]error:[/red] every principle failed; nothing was written to {out_path}", highlight=False)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the `constitution` command group to the app."""
    app.add_typer(cons_app, name="constitution")
