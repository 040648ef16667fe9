"""Languages: names and aliases, file extensions, tree-sitter parsers (loaded once), content detection."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import tree_sitter as ts


@dataclass(frozen=True)
class LangSpec:
    name: str
    aliases: tuple[str, ...]
    extensions: tuple[str, ...]
    module: str  # tree-sitter grammar wheel
    func: str = "language"  # function in that module returning the grammar
    rules: str = ""  # which rule file applies (defaults to name)


LANGS: dict[str, LangSpec] = {
    s.name: s
    for s in (
        LangSpec("python", ("py", "python3", "py3", "python2"), (".py", ".pyw"), "tree_sitter_python"),
        LangSpec("javascript", ("js", "jsx", "node", "nodejs", "mjs", "cjs"), (".js", ".jsx", ".mjs", ".cjs"),
                 "tree_sitter_javascript"),
        LangSpec("typescript", ("ts", "tsx"), (".ts", ".tsx", ".mts", ".cts"), "tree_sitter_typescript",
                 "language_tsx", rules="javascript"),
        LangSpec("c", ("h",), (".c", ".h"), "tree_sitter_c"),
        LangSpec("cpp", ("c++", "cc", "cxx", "hpp", "hxx", "cplusplus"), (".cpp", ".cc", ".cxx", ".hpp", ".hh",
                                                                          ".hxx"),
                 "tree_sitter_cpp", rules="c"),
        LangSpec("java", (), (".java",), "tree_sitter_java"),
        LangSpec("go", ("golang",), (".go",), "tree_sitter_go"),
        LangSpec("php", ("php5", "php7", "php8"), (".php", ".phtml"), "tree_sitter_php", "language_php"),
        # PHP without an opening <?php tag (typical of snippets in answers): same node types.
        LangSpec("php_only", (), (), "tree_sitter_php", "language_php_only", rules="php"),
    )
}

_ALIAS: dict[str, str] = {}
for _s in LANGS.values():
    _ALIAS[_s.name] = _s.name
    for _a in _s.aliases:
        _ALIAS[_a] = _s.name
_EXT: dict[str, str] = {e: s.name for s in LANGS.values() for e in s.extensions}


def canonical(name: str | None) -> str | None:
    """Map a fence tag or user-given language name to a canonical language, or None if unsupported."""
    if not name:
        return None
    return _ALIAS.get(name.strip().lower().lstrip("{.").split()[0].rstrip("}"), None) if name.strip() else None


def from_extension(path: str) -> str | None:
    """Language of a file by its extension, or None."""
    dot = path.rfind(".")
    return _EXT.get(path[dot:].lower()) if dot >= 0 else None


def rules_key(lang: str) -> str:
    s = LANGS[lang]
    return s.rules or s.name


@cache
def ts_language(lang: str) -> ts.Language:
    spec = LANGS[lang]
    mod = __import__(spec.module)
    return ts.Language(getattr(mod, spec.func)())


@cache
def parser(lang: str) -> ts.Parser:
    """A cached tree-sitter parser (parsers are cheap to reuse; grammars load once per process)."""
    return ts.Parser(ts_language(lang))


def grammar_for(lang: str, code: str) -> str:
    """The grammar to parse this code with (PHP snippets often lack the opening tag)."""
    if lang == "php" and "<?php" not in code and "<?=" not in code:
        return "php_only"
    return lang


def parse(lang: str, data: bytes) -> Any:
    return parser(lang).parse(data)


_SURROGATE = re.compile("[\ud800-\udfff]")


def source_bytes(code: str) -> bytes:
    """The bytes tree-sitter parses: valid UTF-8 (its query predicates decode node text strictly), with each
    lone surrogate (a byte of a non-UTF-8 file kept by surrogateescape, or a \\ud800 escape) as U+FFFD. Both
    take 3 bytes, so offsets are those of code.encode("utf-8", "surrogatepass"), which the fixers edit."""
    try:
        return code.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", code).encode("utf-8")


# ---- content detection ------------------------------------------------------------------------
# Weighted clues per language. Scores add up; the best language wins if it clears a floor. Only used
# when neither a fence tag nor a file extension names the language.
_CLUES: dict[str, tuple[tuple[str, float], ...]] = {
    "php": ((r"<\?php", 10), (r"\$_(GET|POST|REQUEST|COOKIE|SERVER)\b", 4), (r"\$[a-zA-Z_]\w*\s*=", 1.5),
            (r"\becho\s", 1), (r"->\w+\(", 0.5), (r"\bfunction\s+\w+\s*\(\s*\$", 3)),
    "go": ((r"^\s*package\s+\w+\s*$", 6), (r"\bfunc\s+(\(\w+\s+\*?\w+\)\s*)?\w+\s*\(", 3), (r":=", 1.5),
           (r"\bfmt\.\w+\(", 3), (r"^\s*import\s+\(", 3), (r"\bif\s+err\s*!=\s*nil", 4)),
    "java": ((r"\bpublic\s+(static\s+)?(class|void|final)\b", 4), (r"^\s*import\s+java(x)?\.", 6),
             # a method signature: `public String f(...)`, `... ) throws IOException {`
             (r"^\s*(public|private|protected)\s+(static\s+)?(final\s+)?[A-Z][\w<>\[\], ]*\s+\w+\s*\(", 3),
             (r"\)\s*throws\s+[A-Z]\w*(\s*,\s*[A-Z]\w*)*\s*\{", 4),
             (r"System\.out\.print", 4), (r"\bprivate\s+\w+(<[^>]*>)?\s+\w+\s*[;=]", 2), (r"@Override", 3),
             (r"\bString\[\]\s+args", 4), (r"\bnew\s+[A-Z]\w*(<[^>]*>)?\(", 1)),
    "cpp": ((r"#include\s*<(iostream|string|vector|map|memory|algorithm)>", 8), (r"\bstd::", 5),
            (r"\bcout\s*<<", 4), (r"\btemplate\s*<", 4), (r"\bnamespace\s+\w+", 2)),
    "c": ((r"#include\s*[<\"]\w+\.h[>\"]", 6), (r"\bint\s+main\s*\(", 3), (r"\bprintf\s*\(", 2),
          (r"\bchar\s*\*?\s*\w+\s*(\[\d*\])?\s*[;=]", 2), (r"\b(malloc|free|strcpy|strcat|sprintf|gets|memcpy)\s*\(", 2),
          (r"->\w+", 0.5)),
    "typescript": ((r":\s*(string|number|boolean|any|void)\b", 3), (r"\binterface\s+\w+\s*\{", 4),
                   (r"\b(import|export)\s.*\bfrom\s+['\"]", 1), (r"\btype\s+\w+\s*=", 2)),
    "javascript": ((r"\b(const|let|var)\s+\w+\s*=", 2), (r"\brequire\(\s*['\"]", 4), (r"=>", 1.5),
                   (r"\bconsole\.log\(", 3), (r"\bfunction\s+\w*\s*\([^$)]*\)\s*\{", 2), (r"\bdocument\.", 3),
                   (r"\bmodule\.exports\b", 4), (r"\b(app|router)\.(get|post)\(", 2), (r"\bDate\.now\(\)", 2)),
    "python": ((r"^\s*def\s+\w+\s*\(.*\)\s*(->\s*[^:]+)?:\s*$", 5), (r"^\s*(from\s+[\w.]+\s+)?import\s+\w", 2),
               (r"^\s*(if|for|while|with|try|elif|else|class)\b.*:\s*$", 1.5), (r"\bprint\(", 1),
               (r"\bself\.", 2), (r"^\s*@\w+", 1), (r"\bNone\b|\bTrue\b|\bFalse\b", 1), (r"\belif\b", 3),
               (r"^\s*return\b[^;{]*$", 0.5),
               # short snippets: a bare `import x[, y] [as z]` line (JS/Java/Go imports have from/quotes/;),
               # a lowercase call into a Python-only module, a keyword argument
               (r"^\s*import\s+[\w.]+(\s+as\s+\w+)?(\s*,\s*[\w.]+(\s+as\s+\w+)?)*\s*$", 1),
               (r"\b(os|os\.path|subprocess|pickle|hashlib|sqlite3|shutil|marshal|tempfile|requests|boto3)"
                r"\.[a-z_]\w*\(", 2),
               (r"\(\s*[^()\n]*,\s*[a-z_]\w*=[^=\s]", 1)),
}
_CLUES_RE = {k: tuple((re.compile(p, re.M), w) for p, w in v) for k, v in _CLUES.items()}
_DETECT_FLOOR = 3.0


def detect(text: str) -> str | None:
    """Guess the language of a code snippet from its content; None when it does not look like code."""
    scores: dict[str, float] = {}
    sample = text[:20000]
    for lang, clues in _CLUES_RE.items():
        s = 0.0
        for rx, w in clues:
            n = len(rx.findall(sample))
            if n:
                s += w * min(n, 3)
        scores[lang] = s
    # TypeScript is JavaScript plus types; C++ is (mostly) C plus more.
    scores["typescript"] = scores["typescript"] + scores["javascript"] if scores["typescript"] >= 3 else 0.0
    scores["cpp"] = scores["cpp"] + scores["c"] if scores["cpp"] >= 4 else 0.0
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] >= _DETECT_FLOOR else None
