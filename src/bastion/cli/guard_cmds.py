"""Guard commands: `check`, `classify`, `eval`. Their output formats are a contract other tools rely on."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.cli.paths import out_path_problem
from bastion.jsonl import LineError, dumps_line, iter_lines, loads_line

err = Console(stderr=True, soft_wrap=True)  # an error is one line, however long its path
out = Console()


THRESHOLD_HELP = ("Decision threshold NAME=VALUE (prompt_harm, response_harm, refusal, attack, category); "
                  "repeatable. The model card's operating points show what each costs.")


def _threshold_opts(opts: list[str] | None) -> dict[str, float]:
    """`--threshold NAME=VALUE` options as keyword arguments of Guard.with_thresholds (checked there)."""
    kw: dict[str, float] = {}
    for o in opts or []:
        name, sep, value = o.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            kw[name.strip()] = float(value)
        except ValueError:
            err.print(f"[red]error:[/] --threshold takes NAME=VALUE, e.g. prompt_harm=0.8 (got {escape(repr(o))})")
            raise typer.Exit(2) from None
    return kw


def _guard(thresholds: dict[str, float] | None = None, model: Path | None = None):
    from bastion.guard import Guard
    from bastion.models import ModelLoadError

    try:
        g = Guard(model=model)
    except ModelLoadError as exc:  # names the folder, the file and the reason
        err.print(f"[red]error:[/] cannot load {escape(str(exc))}")
        raise typer.Exit(2) from None
    except Exception as exc:  # a damaged model folder: a truncated manifest, an encoder that is not ONNX, ...
        where = model if model is not None else "the embedded model"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        err.print(f"[red]error:[/] cannot load {escape(str(where))}: {escape(reason)}")
        raise typer.Exit(2) from None
    if thresholds:
        try:
            g = g.with_thresholds(**thresholds)
        except ValueError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
    return g


def _print_verdict(v: Any, title: str) -> None:
    color = "red" if v.unsafe or v.attack else "green"
    label = "UNSAFE" if v.unsafe else ("ATTACK" if v.attack else "SAFE")
    t = Table(title=f"{title}: [{color}]{label}[/]", show_header=False)
    thr = dict(v.thresholds)
    t.add_row("harm score", f"{v.score:.3f}  (threshold {thr['prompt_harm' if v.kind == 'prompt' else 'response_harm']})")
    if v.categories:
        from bastion.taxonomy import load_taxonomy

        tax = load_taxonomy()
        t.add_row("categories", ", ".join(f"{c} {tax.get(c).name}" for c in v.categories))
    if v.attack_score is not None:
        t.add_row("attack score", f"{v.attack_score:.3f}  ({'attack' if v.attack else 'no attack'}; threshold {thr['attack']})")
    if v.refusal_score is not None:
        t.add_row("refusal score", f"{v.refusal_score:.3f}  ({'refuses' if v.refusal else 'complies'}; threshold {thr['refusal']})")
    if v.obfuscation:
        t.add_row("obfuscation", ", ".join(v.obfuscation))
    t.add_row("windows", str(v.windows))
    t.add_row("model", v.model_version)
    out.print(t)


class _RawNumber:
    """A JSON number kept as its text, so an id is copied through exactly (1E5, 0.1000000000000000055511, 1e400)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _dump_value(v: Any) -> str:
    """`v` as JSON, written as `dumps_line` writes it, with each _RawNumber as its original text."""
    if isinstance(v, _RawNumber):
        return v.text
    if isinstance(v, dict):
        return "{" + ", ".join(f"{dumps_line(k)}: {_dump_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_dump_value(x) for x in v) + "]"
    return dumps_line(v)


def _dumps_record(rec: dict[str, Any]) -> str:
    """One output line; its id (the first key) exactly as it was in the input."""
    if "id" not in rec:
        return dumps_line(rec)
    rest = dumps_line({k: v for k, v in rec.items() if k != "id"})
    return '{"id": ' + _dump_value(rec["id"]) + (", " + rest[1:] if rest != "{}" else "}")


def _raw_id(line: str) -> Any:
    """The line's id with its numbers as written (_RawNumber); the line has already parsed strictly."""
    try:
        return json.loads(line, parse_float=_RawNumber, parse_int=_RawNumber)["id"]
    except (ValueError, RecursionError, KeyError, TypeError):  # not expected after the strict parse
        return None


def _classify_line(line: str) -> tuple[dict[str, Any] | None, Any, tuple[str, str | None] | None]:
    """Parse one input line: (error_record, None, None) or (None, id, (prompt, response)). A number in the id
    is kept as its text (1E5 stays 1E5, not 100000.0), so the id is copied through unchanged."""
    if not line.strip():
        return {"error": "empty line"}, None, None
    try:
        rec = loads_line(line)
    except LineError as exc:
        return {"error": str(exc)}, None, None
    if isinstance(rec, dict) and isinstance(rec.get("id"), (int, float, list, dict)) \
            and not isinstance(rec["id"], bool):
        raw = _raw_id(line)
        if raw is not None:
            rec["id"] = raw
    if not isinstance(rec, dict):
        return {"error": "line is not a JSON object"}, None, None

    def bad(msg: str) -> dict[str, Any]:
        return {"id": rec["id"], "error": msg} if "id" in rec else {"error": msg}

    if not isinstance(rec.get("prompt"), str):
        return bad("missing or non-string 'prompt'"), None, None
    resp = rec.get("response")
    if resp is not None and not isinstance(resp, str):
        return bad("'response' must be a string"), None, None
    return None, rec.get("id"), (rec["prompt"], resp)


def _open_out(out_path: Path | None, file: str) -> tuple[Any, Path | None, Path | None]:
    """The stream to write results to, the temporary file that replaces the output file when the run ends (so an
    earlier output is never left half overwritten, and the input is never truncated by writing over it), and the
    file it replaces: `out_path`, or the file a symlink there points to (the link is written through, not
    replaced). A FIFO or device (not a regular file) is written directly."""
    if out_path is None or str(out_path) == "-":
        return sys.stdout, None, None
    problem = out_path_problem(out_path, [file])
    if problem:
        err.print(f"[red]error:[/] {escape(problem)}")
        raise typer.Exit(2)
    if not out_path.parent.is_dir():
        err.print(f"[red]error:[/] cannot write {escape(str(out_path))}: folder {escape(str(out_path.parent))} "
                  "does not exist")
        raise typer.Exit(2)
    try:
        if out_path.exists() and not out_path.is_file():  # a FIFO, /dev/stdout, ...: nothing to replace
            return open(out_path, "w", encoding="utf-8"), None, None  # noqa: SIM115
        final = out_path.resolve()
        if not final.parent.is_dir():  # a dangling symlink into a missing folder
            raise FileNotFoundError(2, f"folder {final.parent} does not exist")
        tmp = final.with_name(f".{final.name}.partial")
        return open(tmp, "w", encoding="utf-8"), tmp, final  # noqa: SIM115
    except OSError as exc:
        err.print(f"[red]error:[/] cannot write {escape(str(out_path))}: {exc.strerror}")
        raise typer.Exit(2) from None


def _record(rec_id: Any, v: Any, full: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {"id": rec_id, "unsafe": v.unsafe, "score": v.score, "categories": list(v.categories)}
    if v.kind == "prompt":
        d["attack"] = v.attack
        d["attack_score"] = v.attack_score
    else:
        d["refusal"] = v.refusal
        d["refusal_score"] = v.refusal_score
    if full:  # the rest of the verdict, after the contract's fields
        d["verdict"] = {k: x for k, x in v.to_dict().items() if k not in d}
    return d


def register(app: typer.Typer) -> None:
    """Add guard commands to the app."""

    @app.command("check")
    def check(
        text: str = typer.Argument(None, help="Prompt to check (or use --prompt/--response)."),
        prompt: str = typer.Option(None, "--prompt", help="The prompt (context for --response)."),
        response: str = typer.Option(None, "--response", help="A model response to check."),
        as_json: bool = typer.Option(False, "--json", help="Print the verdict object as JSON."),
        model: Path = typer.Option(None, "--model", help="Model directory (default: embedded)."),
        threshold: list[str] = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
    ) -> None:
        """Check one prompt, or one prompt + response."""
        p = prompt if prompt is not None else text
        if p is None:
            err.print("[red]error:[/] give a prompt: bastion check \"text\" or --prompt \"...\" [--response \"...\"]")
            raise typer.Exit(2)
        if prompt is not None and text is not None:
            err.print("[red]error:[/] give the prompt either as an argument or with --prompt, not both")
            raise typer.Exit(2)
        g = _guard(_threshold_opts(threshold), model=model)
        v = g.check_response(p, response) if response is not None else g.check_prompt(p)
        if as_json:
            sys.stdout.write(v.to_json() + "\n")
        else:
            _print_verdict(v, "response" if response is not None else "prompt")

    @app.command("classify")
    def classify(
        file: str = typer.Argument(..., help="JSONL file with {prompt, response?, id?} per line, or - for stdin."),
        out_path: Path = typer.Option(None, "--out", help="Write results here instead of stdout ('-': stdout). "
                                                          "An existing file is replaced only when the run ends."),
        batch: int = typer.Option(64, "--batch", min=1, max=4096, help="Lines per model batch."),
        model: Path = typer.Option(None, "--model", help="Model directory (default: embedded)."),
        threshold: list[str] = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
        full: bool = typer.Option(False, "--full", help="Add each line's whole verdict under \"verdict\": category "
                                  "scores, obfuscation signals, windows read, model version and thresholds."),
    ) -> None:
        """Classify a JSONL file: exactly one output line per input line, in order."""
        if file == "-":
            src = sys.stdin.buffer
        else:
            try:
                if Path(file).is_dir():
                    raise IsADirectoryError(21, "Is a directory")
                src = open(file, "rb")  # noqa: SIM115
            except OSError as exc:
                err.print(f"[red]error:[/] cannot read {escape(file)}: {exc.strerror}")
                raise typer.Exit(1) from None
        g = _guard(_threshold_opts(threshold), model=model)
        dst, tmp, final = _open_out(out_path, file)
        total = None
        if file != "-":
            try:
                total = Path(file).stat().st_size
            except OSError:
                total = None
        show = err.is_terminal
        from rich.progress import BarColumn, Progress, TextColumn, TransferSpeedColumn

        progress = Progress(TextColumn("classify"), BarColumn(), TransferSpeedColumn(), console=err,
                            disable=not show)
        task = progress.add_task("lines", total=total)
        n = 0

        def flush(buf: list[tuple[dict | None, Any, tuple[str, str | None] | None]]) -> None:
            items = [it for (e, _i, it) in buf if e is None]
            verdicts = iter(g.check_batch(items)) if items else iter(())
            for e, rid, _it in buf:
                rec = e if e is not None else _record(rid, next(verdicts), full)
                dst.write(_dumps_record(rec) + "\n")

        with progress:
            buf: list = []
            for line in iter_lines(src):
                n += 1
                buf.append(_classify_line(line))
                if len(buf) >= batch:
                    flush(buf)
                    buf = []
                progress.advance(task, len(line.encode("utf-8", "replace")))
            if buf:
                flush(buf)
        dst.flush()
        if dst is not sys.stdout:
            dst.close()
        if tmp is not None and final is not None:
            tmp.replace(final)

    @app.command("eval")
    def eval_cmd(
        file: str = typer.Argument(..., help="JSONL with a text field and a 0/1 label, or - for stdin."),
        label_field: str = typer.Option("label", "--label-field"),
        task: str = typer.Option("prompt", "--task", help="prompt | response | refusal | attack"),
        text_field: str = typer.Option("prompt", "--text-field"),
        response_field: str = typer.Option("response", "--response-field"),
        category_field: str = typer.Option(None, "--category-field",
                                           help="a field naming each harmful line's hazard category (S1-S14, or a "
                                                "list): top-1 category accuracy too (--task prompt or response)"),
        model: Path = typer.Option(None, "--model", help="Model directory (default: embedded)."),
        as_json: bool = typer.Option(False, "--json", help="Print the metrics as one JSON object (undefined: null)."),
        threshold: list[str] = typer.Option(None, "--threshold", help=THRESHOLD_HELP),
    ) -> None:
        """Measure the guard on your own labelled data: precision, recall, F1, FPR, AUPRC, threshold table."""
        from bastion.guard.evaluate import evaluate_file

        if task not in ("prompt", "response", "refusal", "attack"):
            err.print(f"[red]error:[/] --task must be prompt, response, refusal or attack (got {escape(repr(task))})")
            raise typer.Exit(2)
        if file != "-" and (Path(file).is_dir() or not Path(file).exists()):  # a pipe such as <(...) is fine
            err.print(f"[red]error:[/] cannot read {escape(file)}: " + ("it is a folder" if Path(file).is_dir()
                                                                        else "no such file"))
            raise typer.Exit(1)
        given = _threshold_opts(threshold)
        g = _guard(given, model=model)
        try:
            res = evaluate_file(g, sys.stdin.buffer if file == "-" else Path(file), task=task,
                                label_field=label_field, text_field=text_field, response_field=response_field,
                                category_field=category_field)
        except OSError as exc:
            err.print(f"[red]error:[/] cannot read {escape(file)}: {escape(exc.strerror or str(exc))}")
            raise typer.Exit(1) from None
        except ValueError as exc:
            err.print(f"[red]error:[/] {escape(str(exc))}")
            raise typer.Exit(2) from None
        if res["skipped"]:
            first = res["skipped_reasons"][0]
            err.print(f"[yellow]note:[/] {res['skipped']} line(s) skipped, most often ({first['lines']}) because "
                      f"{escape(first['reason'])} (first at line {first['first_line']})")
        if res["undefined"]:
            neg, pos = {"refusal": ("complies", "refuses"), "attack": ("no attack", "attack")}.get(task,
                                                                                            ("safe", "unsafe"))
            which_class = f"{neg} (0)" if res["positives"] == 0 else f"{pos} (1)"
            names = " and ".join({"auprc": "AUPRC", "fpr": "FPR"}.get(k, k) for k in res["undefined"])
            err.print(f"[yellow]note:[/] every usable label is {which_class}, so {names} cannot be measured "
                      "(shown as -, null in --json)")
        if as_json:
            sys.stdout.write(json.dumps(res) + "\n")
            return
        t = Table(title=f"{task}: n={res['n']} positives={res['positives']} skipped={res['skipped']}")
        for c in ("threshold", "precision", "recall", "F1", "FPR"):
            t.add_column(c)

        def num(x: float | None) -> str:
            return "-" if x is None else f"{x:.3f}"

        for row in res["table"]:
            style = "bold" if row["threshold"] == res["threshold"] else None
            t.add_row(f"{row['threshold']:g}", num(row["precision"]), num(row["recall"]),
                      num(row["f1"]), num(row["fpr"]), style=style)
        out.print(t)
        task_threshold = {"prompt": "prompt_harm", "response": "response_harm"}.get(task, task)
        which = "the given" if task_threshold in given else "the default"
        out.print(f"at {which} threshold {res['threshold']}: precision {num(res['precision'])} recall "
                  f"{num(res['recall'])} F1 {num(res['f1'])} FPR {num(res['fpr'])}; AUPRC {num(res['auprc'])}",
                  soft_wrap=True)
        cats = res.get("categories")
        if cats is not None:
            t = Table(title=f"hazard category, top-1 over {cats['n']} harmful lines with a category: "
                            f"{cats['top1_accuracy']:.3f}")
            for c in ("category", "n", "top-1", "most confused with"):
                t.add_column(c)
            for code, row in cats["per_category"].items():
                t.add_row(code, str(row["n"]), f"{row['top1_accuracy']:.3f}", row["most_confused_with"] or "-")
            out.print(t)
