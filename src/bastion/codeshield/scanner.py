"""Scan code, files, directories and model responses (fenced Markdown blocks) for insecure patterns."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import tree_sitter as ts

from . import languages
from .rules import SEVERITY_RANK, WHERE, Ctx, Rule, compiled_query, load_ruleset


@dataclass(frozen=True)
class Finding:
    """One insecure pattern. Lines and columns are 1-based, relative to the scanned text (the whole
    response or file, not the code block)."""

    rule_id: str
    title: str
    cwe: str
    severity: str
    hazard: str  # taxonomy code: S14 (code execution) or S2 (other exploitable flaws)
    language: str
    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    fix_hint: str
    snippet: str
    fixable: bool = False
    block: int | None = None  # index of the fenced block in a response
    path: str | None = None
    start_byte: int = 0  # byte offsets inside the code block (used by the fixers)
    end_byte: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("start_byte")
        d.pop("end_byte")
        return d


@dataclass(frozen=True)
class CodeBlock:
    """A piece of code inside a larger text. `line_offset` is the 0-based line of its first line."""

    code: str
    language: str | None
    line_offset: int = 0
    start: int = 0  # character offsets of the code inside the text
    end: int = 0
    fence_lang: str | None = None


# ``` or ~~~ fences, up to 3 spaces of indent; the closing fence must use the same character, at least as long.
_FENCE_RE = re.compile(r"^(?P<ind> {0,3})(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^\n`]*)\n", re.M)


def extract_blocks(text: str) -> list[CodeBlock]:
    """Fenced code blocks of a Markdown text, with the language from the fence tag or the content.
    An unclosed final fence runs to the end of the text (a truncated model response)."""
    out: list[CodeBlock] = []
    pos = 0
    while True:
        m = _FENCE_RE.search(text, pos)
        if not m:
            break
        fence = m.group("fence")
        close = re.compile(r"^ {0,3}" + re.escape(fence[0]) + "{" + str(len(fence)) + r",}[ \t]*$", re.M)
        c = close.search(text, m.end())
        start = m.end()
        end = c.start() if c else len(text)
        code = text[start:end]
        tag = m.group("info").strip()
        lang = languages.canonical(tag) if tag else None
        if lang is None and not _KNOWN_NON_CODE.match(tag or ""):
            lang = languages.detect(code)
        out.append(CodeBlock(code=code, language=lang, line_offset=text.count("\n", 0, start), start=start,
                             end=end, fence_lang=tag or None))
        pos = c.end() if c else len(text)
    return out


# Fence tags that are certainly not one of our languages (skip detection for them).
_KNOWN_NON_CODE = re.compile(r"^(text|txt|plain|plaintext|output|console|log|json|yaml|yml|toml|ini|csv|"
                             r"markdown|md|diff|sql|bash|sh|shell|zsh|powershell|ps1|html|xml|css)\b", re.I)


def scan_code(code: str, language: str | None = None, *, min_severity: str = "low") -> list[Finding]:
    """Scan one piece of source code. `language` is a name or alias; when None it is detected."""
    lang = languages.canonical(language) if language else languages.detect(code)
    if language and lang is None:
        raise ValueError(f"unsupported language: {language!r} (supported: {', '.join(languages.LANGS)})")
    if lang is None:
        return []
    return _scan_block(CodeBlock(code=code, language=lang), min_severity=min_severity)


def _scan_block(block: CodeBlock, *, min_severity: str = "low", path: str | None = None,
                index: int | None = None) -> list[Finding]:
    lang = block.language
    if lang is None:
        return []
    ruleset = load_ruleset(languages.rules_key(lang))
    code = block.code
    lowered = code.lower()
    if not ruleset.may_fire(code, lowered):  # early out: no rule can fire
        return []
    floor = SEVERITY_RANK[min_severity]
    candidates = [r for r in ruleset.rules if SEVERITY_RANK[r.severity] >= floor and r.prefilter_hits(code, lowered)]
    if not candidates:
        return []
    data = languages.source_bytes(code)
    grammar = languages.grammar_for(lang, code)
    tree = languages.parse(grammar, data)
    ctx = Ctx(data, code, ruleset)
    lines = data.split(b"\n")
    found: list[Finding] = []
    for rule in candidates:
        for node in _rule_hits(rule, grammar, tree.root_node, ctx):
            found.append(_finding(rule, lang, node, lines, block, path, index))
    return _dedupe(found)


def _rule_hits(rule: Rule, lang: str, root: ts.Node, ctx: Ctx) -> Iterator[ts.Node]:
    q = compiled_query(lang, rule.id, rule.query)
    seen: set[tuple[int, int]] = set()
    for _pattern, caps in ts.QueryCursor(q).matches(root):
        hit = caps.get("hit")
        if not hit:
            continue
        if not all(WHERE[name](ctx, caps, arg) for name, arg in rule.where):
            continue
        key = (hit[0].start_byte, hit[0].end_byte)
        if key in seen:
            continue
        seen.add(key)
        yield hit[0]


def _col(line: bytes, byte_col: int) -> int:
    return len(line[:byte_col].decode("utf-8", "replace")) + 1


def _finding(rule: Rule, lang: str, node: ts.Node, lines: list[bytes], block: CodeBlock, path: str | None,
             index: int | None) -> Finding:
    (r0, c0), (r1, c1) = node.start_point, node.end_point
    line_b = lines[r0] if r0 < len(lines) else b""
    end_b = lines[r1] if r1 < len(lines) else b""
    return Finding(
        rule_id=rule.id, title=rule.title, cwe=rule.cwe, severity=rule.severity, hazard=rule.hazard,
        language=lang, line=block.line_offset + r0 + 1, column=_col(line_b, c0),
        end_line=block.line_offset + r1 + 1, end_column=_col(end_b, c1), message=rule.message,
        fix_hint=rule.fix_hint, snippet=line_b.decode("utf-8", "replace").strip()[:200],
        fixable=rule.fix is not None, block=index, path=path, start_byte=node.start_byte, end_byte=node.end_byte,
    )


def _dedupe(found: list[Finding]) -> list[Finding]:
    """Drop findings superseded by a more specific rule on an overlapping node; sort by position."""
    if len(found) < 2:
        return found
    from .rules import supersedes_map  # local: avoids loading every rule file for a single-language scan

    sup = supersedes_map()
    out = []
    for f in found:
        shadowed = any(
            f.rule_id in sup.get(g.rule_id, ()) and g.start_byte <= f.end_byte and f.start_byte <= g.end_byte
            for g in found if g is not f
        )
        if not shadowed:
            out.append(f)
    out.sort(key=lambda f: (f.line, f.column, f.rule_id))
    return out


# ---- responses, files and directories ---------------------------------------------------------
def blocks_of(text: str, language: str | None = None) -> list[CodeBlock]:
    """The code blocks to scan in a text: fenced blocks if any; otherwise the whole text, when it looks like
    code (or when `language` is given)."""
    if language:
        lang = languages.canonical(language)
        if lang is None:
            raise ValueError(f"unsupported language: {language!r}")
        return [CodeBlock(code=text, language=lang, end=len(text))]
    if "```" in text or "~~~" in text:
        blocks = extract_blocks(text)
        if blocks:
            return blocks
    if not looks_like_code(text):
        return []
    lang = languages.detect(text)
    return [CodeBlock(code=text, language=lang, end=len(text))] if lang else []


_CODE_CHARS = "{}();=[]<>$"


def looks_like_code(text: str) -> bool:
    """Cheap gate for unfenced text: prose has few brackets, semicolons and equals signs."""
    if not text:
        return False
    n = sum(text.count(c) for c in _CODE_CHARS)
    return n >= 2 and n / len(text) >= 0.015


def scan_text(text: str, language: str | None = None, *, min_severity: str = "low",
              path: str | None = None) -> list[Finding]:
    """Scan a model response or any text: each code block is scanned in its own language."""
    out: list[Finding] = []
    blocks = blocks_of(text, language)
    fenced = len(blocks) > 1 or (blocks and blocks[0].end - blocks[0].start != len(text))
    for i, b in enumerate(blocks):
        out.extend(_scan_block(b, min_severity=min_severity, path=path, index=i if fenced else None))
    return out


SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox",
                       "vendor", "dist", "build", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
MAX_FILE_BYTES = 2_000_000
RESPONSE_EXTS = (".md", ".markdown", ".txt")


def iter_files(root: Path) -> Iterator[Path]:
    """Source files under a directory that the scanner understands (plus Markdown/text responses)."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for fn in sorted(filenames):
            if languages.from_extension(fn) or fn.lower().endswith(RESPONSE_EXTS):
                yield Path(dirpath) / fn


class SkippedFile(ValueError):
    """A file named explicitly that the scanner does not read (too large, binary or unreadable)."""


def decode_source(raw: bytes) -> str:
    """Source text from bytes: UTF-8, with any other byte kept as a lone surrogate (surrogateescape), so
    `encode_source(decode_source(b)) == b` and a patched file changes nowhere but in its patches."""
    return raw.decode("utf-8", "surrogateescape")


def encode_source(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def load_source(path: Path) -> tuple[str | None, str | None]:
    """(text, None), or (None, why the file is skipped)."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, f"larger than {MAX_FILE_BYTES // 1_000_000} MB ({size:,} bytes)"
        raw = path.read_bytes()
    except OSError as e:
        return None, f"unreadable: {e.strerror or e}"
    if b"\x00" in raw[:8192]:
        return None, "binary, or a text encoding other than UTF-8 (e.g. UTF-16)"
    return decode_source(raw), None


def read_source(path: Path) -> str | None:
    """File text, or None for binary or oversized files (scanned as nothing, never a crash)."""
    return load_source(path)[0]


def read_named_source(path: Path) -> str:
    """The text of a file the user named: SkippedFile (with the reason) instead of None."""
    text, why = load_source(path)
    if text is None:
        raise SkippedFile(f"{path}: skipped, not scanned: {why}")
    return text


def scan_file(path: Path, *, language: str | None = None, min_severity: str = "low") -> list[Finding]:
    text = read_source(path)
    if text is None:
        return []
    lang = language or languages.from_extension(path.name)
    return scan_text(text, lang, min_severity=min_severity, path=str(path))


def scan_path(path: str | Path, *, language: str | None = None, min_severity: str = "low") -> list[Finding]:
    """Scan a file or every supported file under a directory. In a directory, binary and oversized files
    are skipped; a file named explicitly that cannot be scanned raises SkippedFile (a ValueError)."""
    p = Path(path)
    if p.is_dir():
        out: list[Finding] = []
        for f in iter_files(p):
            out.extend(scan_file(f, min_severity=min_severity))
        return out
    if not p.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    text = read_named_source(p)
    return scan_text(text, language or languages.from_extension(p.name), min_severity=min_severity, path=str(p))
