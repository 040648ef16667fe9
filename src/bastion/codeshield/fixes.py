"""Verified patches. A fixer (registered by name, referenced by a rule's `fix:`) proposes a rewrite of one
finding; the patch is kept only when the patched code parses, that finding no longer fires and no other
finding appears. The result is shown as a unified diff."""

from __future__ import annotations

import ast
import difflib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import tree_sitter as ts

from . import languages
from .rules import all_rules
from .scanner import CodeBlock, Finding, _scan_block, blocks_of

Edit = tuple[int, int, str]  # byte start, byte end, replacement text


@dataclass
class FixCtx:
    code: str
    data: bytes
    lang: str
    node: ts.Node
    finding: Finding

    def text(self, n: ts.Node) -> str:
        # surrogatepass: bytes that are not UTF-8 (kept as lone surrogates) survive a rewrite unchanged
        return self.data[n.start_byte:n.end_byte].decode("utf-8", "surrogatepass")

    def named(self, n: ts.Node) -> list[ts.Node]:
        return [c for c in n.named_children if c.type != "comment"]


Fixer = Callable[[FixCtx], list[Edit] | None]
FIXERS: dict[str, Fixer] = {}


def fixer(name: str) -> Callable[[Fixer], Fixer]:
    """Register a rewrite usable as `fix: <name>` in rule YAML."""
    def deco(fn: Fixer) -> Fixer:
        FIXERS[name] = fn
        return fn
    return deco


@dataclass(frozen=True)
class FixResult:
    original: str
    fixed: str
    applied: tuple[Finding, ...]  # findings removed by a verified patch
    remaining: tuple[Finding, ...]  # findings still present afterwards
    diff: str  # unified diff, "" when nothing changed

    @property
    def changed(self) -> bool:
        return self.fixed != self.original


# ---- the verification loop -------------------------------------------------------------------
def _error_count(lang: str, code: str) -> int:
    tree = languages.parse(languages.grammar_for(lang, code), languages.source_bytes(code))
    if not tree.root_node.has_error:
        return 0
    n = 0
    stack = [tree.root_node]
    while stack:
        x = stack.pop()
        if x.type == "ERROR" or x.is_missing:
            n += 1
        if x.has_error:
            stack.extend(x.children)
    return n


def _parses(lang: str, before: str, after: str) -> bool:
    """The patched code parses: strictly with Python's compiler when the original did; otherwise the
    tree-sitter parse of the patch has no more errors than the original's."""
    if lang == "python":
        try:
            ast.parse(before)
        except (SyntaxError, ValueError):
            pass
        else:
            try:
                ast.parse(after)
                return True
            except (SyntaxError, ValueError):
                return False
    return _error_count(lang, after) <= _error_count(lang, before)


def verify(lang: str, before: str, after: str, target: Finding,
           before_findings: list[Finding] | None = None) -> tuple[bool, list[Finding]]:
    """(ok, findings after the patch). ok: parses, the target's rule fires fewer times, nothing new."""
    if before_findings is None:
        before_findings = _scan_block(CodeBlock(code=before, language=lang))
    after_findings = _scan_block(CodeBlock(code=after, language=lang))
    if not _parses(lang, before, after):
        return False, after_findings
    b = Counter(f.rule_id for f in before_findings)
    a = Counter(f.rule_id for f in after_findings)
    if a[target.rule_id] >= b[target.rule_id]:
        return False, after_findings
    if any(a[r] > b[r] for r in a):
        return False, after_findings
    return True, after_findings


def _rule_fix(rule_id: str) -> str | None:
    return _FIX_OF.get(rule_id) if _FIX_OF else _build_fix_map().get(rule_id)


_FIX_OF: dict[str, str] = {}


def _build_fix_map() -> dict[str, str]:
    _FIX_OF.update({r.id: r.fix for r in all_rules() if r.fix})
    return _FIX_OF


def _find_node(root: ts.Node, start: int, end: int) -> ts.Node | None:
    n = root.descendant_for_byte_range(start, end)
    while n is not None and not (n.start_byte == start and n.end_byte == end):
        n = n.parent
    return n


def _apply(data: bytes, edits: list[Edit]) -> str:
    out = data
    for s, e, rep in sorted(edits, key=lambda x: -x[0]):
        out = out[:s] + rep.encode("utf-8", "surrogatepass") + out[e:]
    return out.decode("utf-8", "surrogatepass")


def _propose(code: str, lang: str, f: Finding) -> str | None:
    name = _rule_fix(f.rule_id)
    fn = FIXERS.get(name or "")
    if fn is None:
        return None
    data = code.encode("utf-8", "surrogatepass")  # edited by the fixer; parsed as source_bytes (same offsets)
    tree = languages.parse(languages.grammar_for(lang, code), languages.source_bytes(code))
    node = _find_node(tree.root_node, f.start_byte, f.end_byte)
    if node is None:
        return None
    try:
        edits = fn(FixCtx(code=code, data=data, lang=lang, node=node, finding=f))
    except (ValueError, SyntaxError, IndexError, KeyError):
        return None  # a fixer that cannot handle this shape offers nothing
    if not edits:
        return None
    return _apply(data, edits)


def fix_code(code: str, language: str | None = None, *, path: str = "code") -> FixResult:
    """Apply every verified patch to one piece of code."""
    lang = languages.canonical(language) if language else languages.detect(code)
    if lang is None:
        return FixResult(code, code, (), (), "")
    current = code
    findings = _scan_block(CodeBlock(code=current, language=lang))
    applied: list[Finding] = []
    tried: set[tuple[str, str]] = set()
    for _ in range(200):  # every success removes a finding; the bound is only a guard
        todo = None
        for f in findings:
            if not f.fixable:
                continue
            key = (f.rule_id, current.encode("utf-8", "surrogatepass")[f.start_byte:f.end_byte].decode("utf-8", "replace"))
            if key not in tried:
                todo = (f, key)
                break
        if todo is None:
            break
        f, key = todo
        tried.add(key)
        patched = _propose(current, lang, f)
        if patched is None or patched == current:
            continue
        ok, after = verify(lang, current, patched, f, findings)
        if ok:
            current, findings = patched, after
            applied.append(f)
    return FixResult(code, current, tuple(applied), tuple(findings), unified_diff(code, current, path))


def unified_diff(before: str, after: str, path: str = "code") -> str:
    if before == after:
        return ""
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 fromfile=f"a/{path}", tofile=f"b/{path}")
    return "".join(ln if ln.endswith("\n") else ln + "\n\\ No newline at end of file\n" for ln in lines)


@dataclass(frozen=True)
class TextFix:
    original: str
    fixed: str
    blocks: tuple[FixResult, ...] = field(default_factory=tuple)
    diff: str = ""

    @property
    def changed(self) -> bool:
        return self.fixed != self.original

    @property
    def applied(self) -> tuple[Finding, ...]:
        return tuple(f for b in self.blocks for f in b.applied)


def fix_text(text: str, language: str | None = None, *, path: str = "response") -> TextFix:
    """Fix every code block of a response (or a whole source file) and return the patched text."""
    blocks = blocks_of(text, language)
    results = []
    pieces = []
    pos = 0
    for b in blocks:
        r = fix_code(b.code, b.language, path=path) if b.language else FixResult(b.code, b.code, (), (), "")
        results.append(r)
        pieces.append(text[pos:b.start])
        pieces.append(r.fixed)
        pos = b.end
    pieces.append(text[pos:])
    fixed = "".join(pieces)
    return TextFix(text, fixed, tuple(results), unified_diff(text, fixed, path))


# ---- helpers for the fixers ------------------------------------------------------------------
def _line_start(data: bytes, pos: int) -> int:
    return data.rfind(b"\n", 0, pos) + 1


def _indent_at(data: bytes, pos: int) -> str:
    ls = _line_start(data, pos)
    m = re.match(rb"[ \t]*", data[ls:])
    return m.group(0).decode() if m else ""


def _ensure_import(ctx: FixCtx, module: str) -> list[Edit]:
    """An edit adding `import module` to Python code that lacks it (after a leading shebang/docstring)."""
    if re.search(rf"^\s*import\s+([\w.]+\s*,\s*)*{module}\b|^\s*from\s+{module}\b", ctx.code, re.M):
        return []
    m = re.search(rb"^(import|from)\s", ctx.data, re.M)
    at = m.start() if m else 0
    if not m and ctx.data.startswith(b"#!"):
        at = ctx.data.find(b"\n") + 1
    return [(at, at, f"import {module}\n")]


def _py_pieces(ctx: FixCtx, n: ts.Node) -> list[tuple[str, str]] | None:
    """Split a string-building expression into ("lit", value) / ("expr", source) pieces: f-strings,
    + concatenation and "..." % (a, b) with %s. None when the shape is anything else."""
    if n.type == "parenthesized_expression" and len(ctx.named(n)) == 1:
        return _py_pieces(ctx, ctx.named(n)[0])
    if n.type == "string":
        prefix = ctx.text(n)[: ctx.text(n).find(ctx.text(n).lstrip("rbuRBUfF")[0])]
        if "f" not in prefix.lower():
            return [("lit", ast.literal_eval(ctx.text(n)))]
        out: list[tuple[str, str]] = []
        for c in n.children:
            if c.type == "string_content":
                out.append(("lit", ast.literal_eval('"' + ctx.text(c).replace('"', '\\"') + '"')
                            if "r" not in prefix.lower() else ctx.text(c)))
                out[-1] = ("lit", out[-1][1].replace("{{", "{").replace("}}", "}"))
            elif c.type == "escape_sequence":
                out.append(("lit", ast.literal_eval('"' + ctx.text(c) + '"')))
            elif c.type == "interpolation":
                inner = [x for x in c.named_children]
                if len(inner) != 1:  # a conversion or format spec
                    return None
                out.append(("expr", ctx.text(inner[0])))
        return out
    if n.type == "concatenated_string":
        out = []
        for c in ctx.named(n):
            p = _py_pieces(ctx, c)
            if p is None:
                return None
            out += p
        return out
    if n.type == "binary_operator":
        op = n.child_by_field_name("operator")
        left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
        if op is None or left is None or right is None:
            return None
        if ctx.text(op) == "+":
            lp = _py_pieces(ctx, left) if left.type in ("string", "binary_operator", "concatenated_string") \
                else [("expr", ctx.text(left))]
            rp = _py_pieces(ctx, right) if right.type in ("string", "binary_operator", "concatenated_string") \
                else [("expr", ctx.text(right))]
            return None if lp is None or rp is None else lp + rp
        if ctx.text(op) == "%" and left.type == "string":
            fmt = ast.literal_eval(ctx.text(left))
            args = ctx.named(right) if right.type == "tuple" else [right]
            parts = re.split(r"(%[sdr])", fmt.replace("%%", "\x00"))
            holes = [p for p in parts if p in ("%s", "%d", "%r")]
            if len(holes) != len(args):
                return None
            out, i = [], 0
            for p in parts:
                if p in ("%s", "%d", "%r"):
                    out.append(("expr", ctx.text(args[i])))
                    i += 1
                elif p:
                    out.append(("lit", p.replace("\x00", "%")))
            return out
    return None


_SHELL_META = re.compile(r"""[|&;<>$`'"*?(){}\[\]~\\!#]""")


def _argv(pieces: list[tuple[str, str]]) -> str | None:
    """A Python list expression for the shell words in pieces, or None when shell syntax is involved."""
    words: list[list[tuple[str, str]]] = [[]]
    for kind, v in pieces:
        if kind == "expr":
            words[-1].append((kind, v))
            continue
        if _SHELL_META.search(v):
            return None
        parts = re.split(r"(\s+)", v)
        for p in parts:
            if not p:
                continue
            if p.isspace():
                if words[-1]:
                    words.append([])
            else:
                words[-1].append(("lit", p))
    items = []
    for w in words:
        if not w:
            continue
        if len(w) == 1:
            items.append(repr(w[0][1]) if w[0][0] == "lit" else w[0][1])
        else:
            body = "".join(v.replace("{", "{{").replace("}", "}}") if k == "lit" else "{" + v + "}" for k, v in w)
            items.append("f" + repr(body))
    return "[" + ", ".join(items) + "]" if items else None


def _drop_arg(ctx: FixCtx, arg: ts.Node) -> Edit:
    """Remove one argument with its separating comma."""
    prev = arg.prev_named_sibling
    nxt = arg.next_named_sibling
    if prev is not None:
        return (prev.end_byte, arg.end_byte, "")
    if nxt is not None:
        return (arg.start_byte, nxt.start_byte, "")
    return (arg.start_byte, arg.end_byte, "")


def _kwarg(ctx: FixCtx, args: ts.Node, name: str) -> ts.Node | None:
    for a in ctx.named(args):
        if a.type == "keyword_argument" and ctx.text(a.child_by_field_name("name")) == name:
            return a
    return None


# ---- Python fixers ---------------------------------------------------------------------------
@fixer("yaml_safe_load")
def _fx_yaml(ctx: FixCtx) -> list[Edit] | None:
    fn = ctx.node.child_by_field_name("function")
    args = ctx.node.child_by_field_name("arguments")
    attr = fn.child_by_field_name("attribute")
    new = "safe_load_all" if ctx.text(attr).endswith("_all") else "safe_load"
    edits: list[Edit] = [(attr.start_byte, attr.end_byte, new)]
    loader = _kwarg(ctx, args, "Loader")
    if loader is not None:
        edits.append(_drop_arg(ctx, loader))
    elif len(ctx.named(args)) > 1:  # a positional Loader
        edits.append(_drop_arg(ctx, ctx.named(args)[1]))
    return edits


@fixer("shell_to_argv")
def _fx_shell(ctx: FixCtx) -> list[Edit] | None:
    args = ctx.node.child_by_field_name("arguments")
    shell = _kwarg(ctx, args, "shell")
    if shell is None:
        return None
    first = ctx.named(args)[0]
    pieces = _py_pieces(ctx, first)
    argv = _argv(pieces) if pieces else None
    if argv is None:
        return None
    return [(first.start_byte, first.end_byte, argv), _drop_arg(ctx, shell)]


@fixer("os_system_to_run")
def _fx_os_system(ctx: FixCtx) -> list[Edit] | None:
    fn = ctx.node.child_by_field_name("function")
    if ctx.text(fn) != "os.system":
        return None
    first = ctx.named(ctx.node.child_by_field_name("arguments"))[0]
    pieces = _py_pieces(ctx, first)
    argv = _argv(pieces) if pieces else None
    if argv is None:
        return None
    standalone = ctx.node.parent is not None and ctx.node.parent.type == "expression_statement"
    rep = f"subprocess.run({argv})" + ("" if standalone else ".returncode")
    return [(ctx.node.start_byte, ctx.node.end_byte, rep), *_ensure_import(ctx, "subprocess")]


@fixer("eval_literal")
def _fx_eval(ctx: FixCtx) -> list[Edit] | None:
    fn = ctx.node.child_by_field_name("function")
    if ctx.text(fn) != "eval":
        return None
    return [(fn.start_byte, fn.end_byte, "ast.literal_eval"), *_ensure_import(ctx, "ast")]


@fixer("weak_hash_sha256")
def _fx_weak_hash(ctx: FixCtx) -> list[Edit] | None:
    fn = ctx.node.child_by_field_name("function")
    attr = fn.child_by_field_name("attribute")
    if ctx.text(attr) in ("md5", "sha1", "md4"):
        return [(attr.start_byte, attr.end_byte, "sha256")]
    first = ctx.named(ctx.node.child_by_field_name("arguments"))[0]
    q = ctx.text(first)[-1]
    return [(first.start_byte, first.end_byte, f"{q}sha256{q}")]


# Where the hash value is stored, returned or passed on as it is (so salt + hash can take its place).
_PY_BARE_PARENTS = frozenset({"assignment", "return_statement", "argument_list", "keyword_argument",
                              "expression_statement", "expression_list", "list", "tuple", "pair", "augmented_assignment"})


@fixer("password_kdf")
def _fx_kdf(ctx: FixCtx) -> list[Edit] | None:
    """md5(pw).hexdigest() -> a random salt and PBKDF2, returned together so the hash can be verified:
    hexdigest -> "salt_hex$hash_hex" (str); digest -> salt (16 bytes) + hash (bytes). To verify a password:
    split off the salt, recompute pbkdf2_hmac("sha256", pw, salt, 600_000) and compare with
    hmac.compare_digest. No patch when the hash is used in place (compared: a check, whose stored value's
    format is unknown; sliced; concatenated) or when the code already has a `salt` of its own."""
    call = ctx.node
    args = ctx.named(call.child_by_field_name("arguments"))
    if len(args) != 1:
        return None
    p = call.parent
    if p is None or p.type != "attribute" or p.parent is None or p.parent.type != "call":
        return None
    meth = ctx.text(p.child_by_field_name("attribute"))
    if meth not in ("hexdigest", "digest"):
        return None
    outer = p.parent
    if outer.parent is None or outer.parent.type not in _PY_BARE_PARENTS:
        return None  # compared (a check), sliced, concatenated...: the new value would not fit there
    if re.search(r"\bsalt\b", ctx.code):
        return None
    stmt = outer
    while stmt.parent is not None and stmt.parent.type not in ("block", "module"):
        stmt = stmt.parent
    kdf = f'hashlib.pbkdf2_hmac("sha256", {ctx.text(args[0])}, salt, 600_000)'
    if meth == "hexdigest":
        rep, note = f'salt.hex() + "$" + {kdf}.hex()', '"salt_hex$hash_hex"'
    else:
        rep, note = f"salt + {kdf}", "salt (16 bytes) + hash"
    ls = _line_start(ctx.data, stmt.start_byte)
    line = f"{_indent_at(ctx.data, stmt.start_byte)}salt = os.urandom(16)  # kept with the hash: {note}\n"
    return [(ls, ls, line), *_ensure_import(ctx, "os"), (outer.start_byte, outer.end_byte, rep)]


@fixer("remove_verify_false")
def _fx_verify(ctx: FixCtx) -> list[Edit] | None:
    return [_drop_arg(ctx, ctx.node)] if ctx.node.type == "keyword_argument" else None


@fixer("ssl_default_context")
def _fx_ssl(ctx: FixCtx) -> list[Edit] | None:
    n = ctx.node
    if n.type == "call":
        return [(n.start_byte, n.end_byte, "ssl.create_default_context()")]
    if n.type == "attribute":
        return [(n.start_byte, n.end_byte, "ssl.CERT_REQUIRED")]
    if n.type == "assignment":
        r = n.child_by_field_name("right")
        return [(r.start_byte, r.end_byte, "True")]
    return None


@fixer("debug_false")
def _fx_debug(ctx: FixCtx) -> list[Edit] | None:
    kw = _kwarg(ctx, ctx.node.child_by_field_name("arguments"), "debug")
    v = kw.child_by_field_name("value") if kw is not None else None
    return [(v.start_byte, v.end_byte, "False")] if v is not None else None


@fixer("random_to_secrets")
def _fx_random(ctx: FixCtx) -> list[Edit] | None:
    fn = ctx.node.child_by_field_name("function")
    attr = ctx.text(fn.child_by_field_name("attribute"))
    args = ctx.named(ctx.node.child_by_field_name("arguments"))
    if attr == "choice":
        rep = "secrets.choice"
    elif attr == "getrandbits":
        rep = "secrets.randbits"
    elif attr == "randrange" and len(args) == 1:
        rep = "secrets.randbelow"
    else:
        return None
    return [(fn.start_byte, fn.end_byte, rep), *_ensure_import(ctx, "secrets")]


_SQL_IDENT_CTX = re.compile(r"(?i)(\b(from|join|into|update|table|by|as|select)|[.`\"\[])\s*$")


@fixer("sql_params")
def _fx_sql(ctx: FixCtx) -> list[Edit] | None:
    args = ctx.named(ctx.node.child_by_field_name("arguments"))
    if len(args) != 1 or args[0].type == "identifier":
        return None
    first = args[0]
    pieces = _py_pieces(ctx, first)
    if not pieces or not any(k == "expr" for k, _ in pieces):
        return None
    percent = first.type == "binary_operator" and ctx.text(first.child_by_field_name("operator")) == "%"
    style = "%s" if percent or re.search(r"psycopg|pymysql|MySQLdb|mysql\.connector|pg8000", ctx.code) else "?"
    sql, values = "", []
    for i, (k, v) in enumerate(pieces):
        if k == "lit":
            if style == "%s" and "%" in v:
                return None
            sql += v
            continue
        nxt = pieces[i + 1][1] if i + 1 < len(pieces) and pieces[i + 1][0] == "lit" else ""
        if sql.endswith("'") and nxt.startswith("'"):
            sql = sql[:-1]
            if i + 1 < len(pieces):
                pieces[i + 1] = ("lit", nxt[1:])
        elif sql.endswith("'") or nxt.startswith("'") or _SQL_IDENT_CTX.search(sql):
            return None  # inside a larger literal, or an identifier position: no placeholder can stand there
        sql += style
        values.append(v)
    tup = "(" + ", ".join(values) + ("," if len(values) == 1 else "") + ")"
    return [(first.start_byte, first.end_byte, f"{_pystr(sql)}, {tup}")]


def _pystr(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"' if "'" in s else repr(s)


# ---- C / C++ fixers --------------------------------------------------------------------------
def _c_args(ctx: FixCtx) -> list[ts.Node]:
    return ctx.named(ctx.node.child_by_field_name("arguments"))


def _c_is_array(ctx: FixCtx, name: str) -> bool:
    """Declared as a fixed-size array in this code, so sizeof gives its capacity."""
    return re.fullmatch(r"[A-Za-z_]\w*", name) is not None and \
        re.search(rf"\b(char|wchar_t|unsigned\s+char|signed\s+char)\s+{re.escape(name)}\s*\[\s*\w+\s*\]", ctx.code) is not None


@fixer("gets_fgets")
def _fx_gets(ctx: FixCtx) -> list[Edit] | None:
    a = _c_args(ctx)
    if len(a) != 1 or not _c_is_array(ctx, ctx.text(a[0])):
        return None
    b = ctx.text(a[0])
    return [(ctx.node.start_byte, ctx.node.end_byte, f"fgets({b}, sizeof({b}), stdin)")]


@fixer("strcpy_bounded")
def _fx_strcpy(ctx: FixCtx) -> list[Edit] | None:
    a = _c_args(ctx)
    if len(a) != 2 or ctx.text(ctx.node.child_by_field_name("function")) != "strcpy" or not _c_is_array(ctx, ctx.text(a[0])):
        return None
    d, s = ctx.text(a[0]), ctx.text(a[1])
    return [(ctx.node.start_byte, ctx.node.end_byte, f'snprintf({d}, sizeof({d}), "%s", {s})')]


@fixer("strcat_bounded")
def _fx_strcat(ctx: FixCtx) -> list[Edit] | None:
    a = _c_args(ctx)
    if len(a) != 2 or ctx.text(ctx.node.child_by_field_name("function")) != "strcat" or not _c_is_array(ctx, ctx.text(a[0])):
        return None
    d, s = ctx.text(a[0]), ctx.text(a[1])
    return [(ctx.node.start_byte, ctx.node.end_byte, f"strncat({d}, {s}, sizeof({d}) - strlen({d}) - 1)")]


@fixer("sprintf_snprintf")
def _fx_sprintf(ctx: FixCtx) -> list[Edit] | None:
    a = _c_args(ctx)
    fn = ctx.node.child_by_field_name("function")
    if not a or not _c_is_array(ctx, ctx.text(a[0])):
        return None
    d = ctx.text(a[0])
    new = "snprintf" if ctx.text(fn) == "sprintf" else "vsnprintf"
    return [(fn.start_byte, fn.end_byte, new), (a[0].end_byte, a[0].end_byte, f", sizeof({d})")]


@fixer("format_literal")
def _fx_format(ctx: FixCtx) -> list[Edit] | None:
    a = _c_args(ctx)
    fn = ctx.text(ctx.node.child_by_field_name("function"))
    i = 0 if fn in ("printf",) else 1 if fn in ("fprintf", "dprintf", "syslog") else None
    if i is None or len(a) != i + 1:
        return None
    return [(a[i].start_byte, a[i].start_byte, '"%s", ')]


# ---- JavaScript / Java / Go / PHP fixers ------------------------------------------------------
@fixer("innerhtml_to_textcontent")
def _fx_innerhtml(ctx: FixCtx) -> list[Edit] | None:
    n = ctx.node
    if n.type != "assignment_expression":
        return None
    left, right = n.child_by_field_name("left"), n.child_by_field_name("right")
    if "<" in ctx.text(right):  # markup is intended: textContent would show it as text
        return None
    prop = left.child_by_field_name("property")
    if ctx.text(prop) != "innerHTML":
        return None
    return [(prop.start_byte, prop.end_byte, "textContent")]


@fixer("js_weak_hash_sha256")
def _fx_js_hash(ctx: FixCtx) -> list[Edit] | None:
    args = ctx.named(ctx.node.child_by_field_name("arguments"))
    if not args or args[0].type != "string":
        return None
    q = ctx.text(args[0])[0]
    return [(args[0].start_byte, args[0].end_byte, f"{q}sha256{q}")]


@fixer("js_reject_unauthorized")
def _fx_js_tls(ctx: FixCtx) -> list[Edit] | None:
    n = ctx.node
    if n.type == "pair":
        v = n.child_by_field_name("value")
        return [(v.start_byte, v.end_byte, "true")]
    r = n.child_by_field_name("right")
    q = ctx.text(r)[0]
    return [(r.start_byte, r.end_byte, f"{q}1{q}")]


@fixer("java_weak_hash_sha256")
def _fx_java_hash(ctx: FixCtx) -> list[Edit] | None:
    if ctx.text(ctx.node.child_by_field_name("object")) != "MessageDigest":
        return None
    a = ctx.named(ctx.node.child_by_field_name("arguments"))[0]
    return [(a.start_byte, a.end_byte, '"SHA-256"')]


@fixer("java_secure_random")
def _fx_java_random(ctx: FixCtx) -> list[Edit] | None:
    if ctx.node.type != "object_creation_expression":
        return None
    t = ctx.node.child_by_field_name("type")
    # SecureRandom extends Random, so a `Random r = ...` declaration still compiles.
    return [(t.start_byte, t.end_byte, "java.security.SecureRandom")]


@fixer("go_insecure_skip_verify")
def _fx_go_tls(ctx: FixCtx) -> list[Edit] | None:
    n = ctx.node
    v = n.child_by_field_name("value") if n.type == "keyed_element" else n.child_by_field_name("right")
    if v is None:
        return None
    return [(v.start_byte, v.end_byte, "false")]


@fixer("php_password_hash")
def _fx_php_pw(ctx: FixCtx) -> list[Edit] | None:
    fn = ctx.node.child_by_field_name("function")
    args = ctx.named(ctx.node.child_by_field_name("arguments"))
    if ctx.text(fn) not in ("md5", "sha1") or len(args) != 1:
        return None
    return [(ctx.node.start_byte, ctx.node.end_byte, f"password_hash({ctx.text(args[0])}, PASSWORD_DEFAULT)")]


_PHP_SRC = re.compile(r"^\$_(GET|POST|REQUEST|COOKIE|SERVER)\b")


@fixer("php_htmlspecialchars")
def _fx_php_xss(ctx: FixCtx) -> list[Edit] | None:
    """Escape each request value (or variable holding one) inside the echoed expression."""
    from .rules import Ctx, load_ruleset

    tainted = Ctx(ctx.data, ctx.code, load_ruleset("php")).tainted_names
    edits: list[Edit] = []
    stack = list(ctx.named(ctx.node))
    while stack:
        n = stack.pop()
        t = ctx.text(n)
        is_src = (n.type == "subscript_expression" and _PHP_SRC.match(t)) or (n.type == "variable_name" and t in tainted)
        if is_src:
            wrapped = f"htmlspecialchars({t}, ENT_QUOTES, 'UTF-8')"
            if n.parent is not None and n.parent.type == "encapsed_string":
                q = ctx.text(n.parent)[0]
                edits.append((n.start_byte, n.end_byte, f"{q} . {wrapped} . {q}"))
            else:
                edits.append((n.start_byte, n.end_byte, wrapped))
            continue
        if n.type in ("function_call_expression",) and ctx.text(n).startswith(("htmlspecialchars", "htmlentities")):
            continue
        stack.extend(n.named_children)
    return edits or None
