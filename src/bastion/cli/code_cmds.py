"""`bastion code scan|fix`: insecure-code scanner and verified patches."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

_SEVERITIES = ("low", "medium", "high", "critical")


def _fail(msg: str) -> None:
    sys.stderr.write(f"error: {msg}\n")
    raise typer.Exit(2)


def _read_stdin() -> str:
    """stdin as source text: bytes that are not UTF-8 are kept (surrogateescape), never replaced."""
    from bastion.codeshield.scanner import decode_source

    buf = getattr(sys.stdin, "buffer", None)
    return decode_source(buf.read()) if buf is not None else sys.stdin.read()


def _write_out(text: str) -> None:
    """Write to stdout; bytes kept from a non-UTF-8 input are written back as they were."""
    buf = getattr(sys.stdout, "buffer", None)
    if buf is None:
        sys.stdout.write(text.encode("utf-8", "replace").decode("utf-8"))
        return
    sys.stdout.flush()
    try:
        buf.write(text.encode("utf-8", "surrogateescape"))
    except UnicodeEncodeError:
        buf.write(text.encode("utf-8", "replace"))
    buf.flush()


def _check(min_severity: str, language: str | None) -> None:
    from bastion.codeshield import languages

    if min_severity not in _SEVERITIES:
        _fail(f"--min-severity must be one of {', '.join(_SEVERITIES)}")
    if language and languages.canonical(language) is None:
        _fail(f"unsupported language {language!r}")


def register(app: typer.Typer) -> None:
    """Add the `code` command group."""
    code = typer.Typer(name="code", help="Scan code (files, folders, model responses) for insecure patterns.",
                       no_args_is_help=True)

    @code.command("scan")
    def scan(
        target: str = typer.Argument(..., help="File, directory, or - for a model response on stdin."),
        as_json: bool = typer.Option(False, "--json", help="Print findings as JSON."),
        language: str = typer.Option(None, "--lang", help="Language of the input (default: from the file "
                                     "extension, the Markdown fence, or the content)."),
        min_severity: str = typer.Option("low", "--min-severity", help="low | medium | high | critical"),
    ) -> None:
        """Report insecure code. Exit status: 0 clean, 1 findings, 2 usage error."""
        from bastion.codeshield import scan_path, scan_text
        from bastion.codeshield.scanner import SkippedFile

        _check(min_severity, language)
        try:
            if target == "-":
                findings = scan_text(_read_stdin(), language, min_severity=min_severity, path="<stdin>")
            else:
                findings = scan_path(target, language=language, min_severity=min_severity)
        except (FileNotFoundError, SkippedFile) as e:
            _fail(str(e))
        if as_json:
            _write_out(json.dumps({"findings": [f.to_dict() for f in findings], "count": len(findings)},
                                  ensure_ascii=False, indent=2) + "\n")
        else:
            _print_findings(findings)
        raise typer.Exit(1 if findings else 0)

    @code.command("fix")
    def fix(
        target: str = typer.Argument(..., help="File, directory, or - for a model response on stdin."),
        language: str = typer.Option(None, "--lang", help="Language of the input."),
        write: bool = typer.Option(False, "--write", help="Apply the verified patches to the files in place."),
        as_json: bool = typer.Option(False, "--json", help="Print the fixed findings and the diff as JSON."),
    ) -> None:
        """Print a unified diff of the verified patches (patched code parses, the finding is gone, no new
        finding). Exit status: 0 when nothing is left to report, 1 when findings remain, 2 usage error."""
        from bastion.codeshield import fix_text
        from bastion.codeshield.scanner import (
            SkippedFile,
            encode_source,
            iter_files,
            read_named_source,
            read_source,
        )

        _check("low", language)
        items: list[tuple[str, str, Path | None]] = []
        if target == "-":
            if write:
                _fail("--write needs a file or directory, not stdin")
            items.append(("<stdin>", _read_stdin(), None))
        else:
            p = Path(target)
            if not p.exists():
                _fail(f"no such file or directory: {target}")
            if p.is_dir():
                for f in iter_files(p):
                    text = read_source(f)  # binary and oversized files are skipped in a walk
                    if text is not None:
                        items.append((str(f), text, f))
            else:
                try:
                    items.append((str(p), read_named_source(p), p))
                except SkippedFile as e:
                    _fail(str(e))
        from bastion.codeshield import languages

        remaining = 0
        out = []
        for name, text, path in items:
            lang = language or (languages.from_extension(name) if path is not None else None)
            tf = fix_text(text, lang, path=name)
            remaining += sum(len(b.remaining) for b in tf.blocks)
            if tf.changed:
                out.append({"path": name, "diff": tf.diff, "fixed": [f.to_dict() for f in tf.applied]})
                if write and path is not None:
                    # bytes, not text: the bytes outside the patches are written back exactly as read
                    path.write_bytes(encode_source(tf.fixed))
        if as_json:
            _write_out(json.dumps({"patches": out, "remaining": remaining}, ensure_ascii=False, indent=2) + "\n")
        else:
            for o in out:
                _write_out(o["diff"])
            if not out:
                sys.stderr.write("no verified patch applies\n")
        raise typer.Exit(1 if remaining else 0)

    app.add_typer(code, name="code")


def _print_findings(findings: list) -> None:
    from rich.console import Console

    con = Console(highlight=False, soft_wrap=True)
    if not findings:
        con.print("no insecure code found")
        return
    colour = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan"}
    for f in findings:
        where = f"{f.path or '<input>'}:{f.line}:{f.column}"
        con.print(f"{where}  [{colour[f.severity]}]{f.severity}[/]  {f.rule_id} ({f.cwe}, {f.hazard})  {f.title}")
        con.print(f"    {f.snippet}", markup=False)
        con.print(f"    {f.message}", markup=False)
        con.print(f"    fix: {f.fix_hint}" + ("  [green](auto-fix available: bastion code fix)[/]" if f.fixable else ""))
    con.print(f"{len(findings)} finding(s)")
