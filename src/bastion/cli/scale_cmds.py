"""CLI commands (registered by bastion.cli.main): `bastion filter`."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("filter")(filter_cmd)


def filter_cmd(
    input: Path = typer.Argument(..., help="Corpus to filter: .jsonl or .parquet."),
    out: Path = typer.Option(..., "--out", help="Kept documents (.jsonl or .parquet)."),
    quarantine: Path = typer.Option(..., "--quarantine", help="Removed documents with verdicts or errors."),
    text_field: str = typer.Option("text", "--text-field", help="Field holding the document text."),
    id_field: str = typer.Option("id", "--id-field", help="Field holding the document id (reported)."),
    engine: str = typer.Option("local", "--engine", help="local (multiprocessing) or ray (Ray Data)."),
    workers: int = typer.Option(None, "--workers", min=1, help="Worker processes / Ray actors [cores]."),
    address: str = typer.Option(None, "--address", help="Existing Ray cluster (e.g. auto, ray://head:10001)."),
    threshold: float = typer.Option(None, "--threshold", min=0.0, max=1.0,
                                    help="Harm score at or above which a document is removed [model default]."),
    model: Path = typer.Option(None, "--model", help="Guard model directory [embedded default]."),
    guard_factory: str = typer.Option(None, "--guard-factory",
                                      help="Advanced: importable 'module:function' returning a Guard."),
    split_mb: float = typer.Option(4.0, "--split-mb", min=0.001, help="JSONL split size (unit of work, resume)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs and checkpoint."),
    summary_json: Path = typer.Option(None, "--summary-json", help="Also write the summary as JSON."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Filter hazardous documents out of a training corpus (resumable; rerun the same command after a crash)."""
    from rich.console import Console

    from bastion.scale import UsageError, filter_corpus

    console = Console(stderr=True)
    if address and engine != "ray":
        typer.echo("error: --address needs --engine ray", err=True)
        raise typer.Exit(2)
    try:
        s = filter_corpus(input, out, quarantine, text_field=text_field, id_field=id_field, engine=engine,
                          workers=workers, address=address, threshold=threshold,
                          model=str(model) if model else None, guard_factory=guard_factory,
                          split_bytes=int(split_mb * (1 << 20)), overwrite=overwrite, progress=progress)
    except UsageError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted; rerun the same command to resume", err=True)
        raise typer.Exit(130) from None
    except Exception as e:  # model missing, worker failure, cluster unreachable: one line, not a traceback
        typer.echo(f"error: {_one_line(e)}", err=True)
        raise typer.Exit(1) from None
    _print_summary(console, s, out, quarantine)
    if summary_json:
        summary_json.write_text(json.dumps(s.to_dict(), indent=2) + "\n", encoding="utf-8")
    if s.docs and s.errors == s.docs:
        typer.echo(f"error: all {s.docs} documents were malformed (see {quarantine}): "
                   f"{_malformed_hint(input, text_field)}", err=True)
        raise typer.Exit(1)


def _malformed_hint(input: Path, text_field: str) -> str:
    """What to check when no document could be read: the Parquet column's type, or the JSONL shape."""
    from bastion.scale.sources import detect_format

    if detect_format(input) == "parquet":
        try:
            import pyarrow.parquet as pq

            typ = pq.ParquetFile(input).schema_arrow.field(text_field).type
        except Exception:  # noqa: BLE001 - only a hint
            return f"is the Parquet column {text_field!r} a string column? (--text-field)"
        if str(typ) in ("string", "large_string", "string_view"):
            return f"the Parquet column {text_field!r} is null in every row; choose another with --text-field"
        return f"the Parquet column {text_field!r} is {typ}, not a string column; choose one with --text-field"
    return f"is the input JSON Lines with a {text_field!r} text field? (--text-field)"


def _one_line(e: BaseException) -> str:
    """`Type: message` on one line (the innermost error line of a multi-line message, e.g. from Ray)."""
    text = str(e).strip()
    if "\n" not in text:
        return f"{type(e).__name__}: {text}" if text else type(e).__name__
    from bastion.scale.ray_engine import root_cause

    return root_cause(e)


def _print_summary(console, s, out: Path, quarantine: Path) -> None:  # noqa: ANN001
    from rich.table import Table

    from bastion.taxonomy import load_taxonomy

    tax = load_taxonomy()
    if s.already_complete:
        console.print(f"already complete (use --overwrite to redo): {out}", soft_wrap=True)
    elif s.resumed:
        console.print("resumed from checkpoint", soft_wrap=True)
    rate = s.docs / s.seconds if s.seconds else 0.0
    console.print(f"{s.docs} documents: {s.kept} kept -> {out}, {s.quarantined} quarantined -> {quarantine} "
                  f"({s.unsafe} unsafe, {s.errors} malformed); {s.blank} blank lines; "
                  f"{s.seconds:.1f}s, {rate:.1f} docs/s", soft_wrap=True, highlight=False)
    if s.categories:
        t = Table(title="Quarantined by category")
        t.add_column("category")
        t.add_column("name")
        t.add_column("documents", justify="right")
        for code, n in s.categories.items():
            try:
                name = tax.get(code).name
            except KeyError:
                name = ""
            t.add_row(code, name, str(n))
        console.print(t)
