"""Rules are data: one YAML file per language under `rules/`. This module loads them, compiles the
regex pre-filters and tree-sitter queries (lazily, once), and holds the `where:` checks they refer to."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import tree_sitter as ts
import yaml

from . import languages

SEVERITIES = ("low", "medium", "high", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

# Types that contain statements: the statement around a hit is the ancestor just below one of these.
_BLOCKISH = frozenset({
    "module", "block", "program", "statement_block", "compound_statement", "translation_unit", "source_file",
    "class_body", "declaration_list", "field_declaration_list", "constructor_body", "switch_block",
    "switch_body", "expression_switch_statement", "text_interpolation", "class_definition",
})
_FUNCTIONISH = frozenset({
    "function_definition", "function_declaration", "function_expression", "arrow_function", "lambda",
    "method_definition", "method_declaration", "constructor_declaration", "func_literal", "generator_function",
    "generator_function_declaration", "anonymous_function", "anonymous_function_creation_expression",
    "lambda_expression", "decorated_definition",
})


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    language: str  # rule file key: python, javascript, c, java, go, php
    cwe: str
    severity: str
    regex: str
    query: str
    message: str
    fix_hint: str
    hazard: str = "S2"
    where: tuple[tuple[str, Any], ...] = ()
    fix: str | None = None
    supersedes: tuple[str, ...] = ()
    examples_bad: tuple[str, ...] = ()
    examples_good: tuple[str, ...] = ()

    @property
    def prefilter(self) -> re.Pattern[str]:
        return _compile_re(self.regex)

    @property
    def lower_prefilter(self) -> re.Pattern[str] | None:
        """For a case-insensitive pre-filter written in lower case: the same regex without the flag, to run
        on lower-cased text (Python's re is several times slower with (?i))."""
        return _lowered(self.regex)

    def prefilter_hits(self, text: str, lowered: str) -> bool:
        lp = self.lower_prefilter
        return bool(lp.search(lowered)) if lp is not None else bool(self.prefilter.search(text))


@dataclass(frozen=True)
class RuleSet:
    language: str
    rules: tuple[Rule, ...]
    dynamic_types: frozenset[str]
    sources: tuple[str, ...]
    sanitizers: tuple[str, ...]
    assign_re: str
    any_prefilter: re.Pattern[str] = field(repr=False, default=re.compile(r"(?!x)x"))
    any_lower_prefilter: re.Pattern[str] = field(repr=False, default=re.compile(r"(?!x)x"))

    def may_fire(self, text: str, lowered: str) -> bool:
        """Cheap early-out: can any rule of this set fire on this text?"""
        return bool(self.any_lower_prefilter.search(lowered) or self.any_prefilter.search(text))


@cache
def _compile_re(p: str) -> re.Pattern[str]:
    return re.compile(p)


@cache
def _lowered(rx: str) -> re.Pattern[str] | None:
    if not rx.startswith("(?i)"):
        return None
    body = rx[4:]
    if re.search(r"[A-Z]", re.sub(r"\\[wsdbWSDB]", "", body)) or re.search(r"\\[WSDBAZ]", body):
        return None
    return re.compile(body)


def _scoped(rx: str) -> str:
    """A regex as a group that can be joined with others (a leading global flag becomes a scoped one)."""
    m = re.match(r"\(\?([aiLmsux]+)\)", rx)
    return f"(?{m.group(1)}:{rx[m.end():]})" if m else f"(?:{rx})"


RULE_FILES = ("python", "javascript", "c", "java", "go", "php")


@lru_cache(maxsize=1)
def _meta() -> dict[str, Any]:
    return yaml.safe_load(resources.files(__package__).joinpath("rules/_meta.yaml").read_text("utf-8"))


def hazard_for(cwe: str) -> str:
    return "S14" if cwe in set(_meta()["s14_cwes"]) else "S2"


@cache
def load_ruleset(key: str) -> RuleSet:
    """Load and validate one rule file (cached per process)."""
    data = yaml.safe_load(resources.files(__package__).joinpath(f"rules/{key}.yaml").read_text("utf-8"))
    out = []
    seen = set()
    for r in data["rules"]:
        if r["id"] in seen:
            raise ValueError(f"duplicate rule id {r['id']} in {key}.yaml")
        seen.add(r["id"])
        if r["severity"] not in SEVERITY_RANK:
            raise ValueError(f"rule {r['id']}: bad severity {r['severity']!r}")
        where = []
        for w in r.get("where", []) or []:
            (name, arg), = w.items()
            if name not in WHERE:
                raise ValueError(f"rule {r['id']}: unknown where-check {name!r}")
            where.append((name, arg if not isinstance(arg, dict) else tuple(sorted(arg.items()))))
        ex = r.get("examples", {}) or {}
        out.append(Rule(
            id=r["id"], title=r["title"], language=key, cwe=r["cwe"], severity=r["severity"],
            regex=r["regex"], query=r["query"], message=" ".join(r["message"].split()),
            fix_hint=" ".join(r["fix_hint"].split()), hazard=r.get("hazard") or hazard_for(r["cwe"]),
            where=tuple(where), fix=r.get("fix"), supersedes=tuple(r.get("supersedes", ()) or ()),
            examples_bad=tuple(ex.get("bad", ()) or ()), examples_good=tuple(ex.get("good", ()) or ()),
        ))
    any_re = re.compile("|".join(_scoped(r.regex) for r in out if _lowered(r.regex) is None) or r"(?!x)x")
    any_low = re.compile("|".join(f"(?:{r.regex[4:]})" for r in out if _lowered(r.regex) is not None) or r"(?!x)x")
    return RuleSet(language=key, rules=tuple(out), dynamic_types=frozenset(data.get("dynamic_types", ())),
                   sources=tuple(data.get("sources", ())), sanitizers=tuple(data.get("sanitizers", ())),
                   assign_re=data.get("assign_re", ""),
                   any_prefilter=any_re, any_lower_prefilter=any_low)


def all_rules() -> list[Rule]:
    return [r for k in RULE_FILES for r in load_ruleset(k).rules]


@lru_cache(maxsize=1)
def supersedes_map() -> dict[str, frozenset[str]]:
    return {r.id: frozenset(r.supersedes) for r in all_rules() if r.supersedes}


@cache
def compiled_query(lang: str, rule_id: str, query: str) -> ts.Query:
    """The rule's query compiled for one grammar (TypeScript and C++ reuse the JS and C rules)."""
    try:
        return ts.Query(languages.ts_language(lang), query)
    except Exception as e:  # QueryError: make the rule id visible
        raise ValueError(f"rule {rule_id}: query does not compile for {lang}: {e}") from None


@cache
def any_prefilter(lang: str) -> re.Pattern[str]:
    return load_ruleset(languages.rules_key(lang)).any_prefilter


# ---- where-checks -----------------------------------------------------------------------------
class Ctx:
    """Per-block state shared by the where-checks: source bytes, rule set, lazily computed taint."""

    def __init__(self, data: bytes, text: str, ruleset: RuleSet) -> None:
        self.data = data
        self.text = text
        self.ruleset = ruleset
        self._tainted: frozenset[str] | None = None
        self._sources: re.Pattern[str] | None = None
        self.sanitizer_re = re.compile("|".join(f"(?:{s})" for s in ruleset.sanitizers) or r"(?!x)x")

    def node_text(self, node: ts.Node) -> str:
        return self.data[node.start_byte:node.end_byte].decode("utf-8", "replace")

    @property
    def source_re(self) -> re.Pattern[str]:
        if self._sources is None:
            self._sources = re.compile("|".join(f"(?:{s})" for s in self.ruleset.sources) or r"(?!x)x")
        return self._sources

    @property
    def tainted_names(self) -> frozenset[str]:
        """Names assigned (directly or through one other name) from a request source. Deliberately light."""
        if self._tainted is None:
            names: set[str] = set()
            if self.ruleset.assign_re:
                # A destructuring target ({ a, b } = req.query) taints each name in it.
                assigns = [(n, m.group("rhs")) for m in re.finditer(self.ruleset.assign_re, self.text, re.M)
                           for n in re.findall(r"\$?[A-Za-z_][\w$]*", m.group("name"))]
                for _ in range(3):
                    before = len(names)
                    for name, rhs in assigns:
                        if name in names or self.sanitizer_re.search(rhs):
                            continue
                        if self.source_re.search(rhs) or _uses(rhs, names):
                            names.add(name)
                    if len(names) == before:
                        break
            self._tainted = frozenset(names)
        return self._tainted


def _uses(text: str, names: set[str]) -> bool:
    if not names:
        return False
    return any(re.search(r"(?<![\w$])" + re.escape(n) + r"(?!\w)", text) for n in names)


WhereFn = Callable[[Ctx, dict[str, list[ts.Node]], Any], bool]
WHERE: dict[str, WhereFn] = {}


def where_check(name: str) -> Callable[[WhereFn], WhereFn]:
    """Register a `where:` check usable from rule YAML."""
    def deco(fn: WhereFn) -> WhereFn:
        WHERE[name] = fn
        return fn
    return deco


def _first(caps: dict[str, list[ts.Node]], name: str) -> ts.Node | None:
    nodes = caps.get(name)
    return nodes[0] if nodes else None


def is_dynamic(ctx: Ctx, node: ts.Node) -> bool:
    """True when the node's value is not fixed in the source: it contains a name, call or interpolation."""
    if node.type in ctx.ruleset.dynamic_types:
        return True
    stack = list(node.children)
    while stack:
        n = stack.pop()
        if n.type in ctx.ruleset.dynamic_types:
            return True
        stack.extend(n.children)
    return False


@where_check("dynamic")
def _w_dynamic(ctx: Ctx, caps: dict[str, list[ts.Node]], arg: Any) -> bool:
    n = _first(caps, arg)
    return n is not None and is_dynamic(ctx, n)


@where_check("literal")
def _w_literal(ctx: Ctx, caps: dict[str, list[ts.Node]], arg: Any) -> bool:
    n = _first(caps, arg)
    return n is not None and not is_dynamic(ctx, n)


@where_check("tainted")
def _w_tainted(ctx: Ctx, caps: dict[str, list[ts.Node]], arg: Any) -> bool:
    n = _first(caps, arg)
    if n is None:
        return False
    t = ctx.node_text(n)
    if ctx.sanitizer_re.search(t):
        return False
    return bool(ctx.source_re.search(t)) or _uses(t, set(ctx.tainted_names))


def _scope_text(ctx: Ctx, node: ts.Node, scope: str) -> str:
    if scope == "file":
        return ctx.text
    n = node
    if scope == "function":
        n = n.parent or n
        while n.parent is not None and n.type not in _FUNCTIONISH:
            n = n.parent
        return ctx.node_text(n)
    while n.parent is not None and n.parent.type not in _BLOCKISH:
        n = n.parent
    return ctx.node_text(n)


def _ctx_args(caps: dict[str, list[ts.Node]], arg: Any) -> tuple[ts.Node | None, str, str]:
    d = dict(arg) if isinstance(arg, tuple) else {"regex": arg}
    return _first(caps, d.get("capture", "hit")), d.get("scope", "statement"), d["regex"]


@where_check("context")
def _w_context(ctx: Ctx, caps: dict[str, list[ts.Node]], arg: Any) -> bool:
    node, scope, rx = _ctx_args(caps, arg)
    return node is not None and _compile_re(rx).search(_scope_text(ctx, node, scope)) is not None


@where_check("not_context")
def _w_not_context(ctx: Ctx, caps: dict[str, list[ts.Node]], arg: Any) -> bool:
    node, scope, rx = _ctx_args(caps, arg)
    return node is None or _compile_re(rx).search(_scope_text(ctx, node, scope)) is None


def _resolved(ctx: Ctx, node: ts.Node, resolve: bool) -> str:
    """The node's text; with `resolve`, a bare name also brings the right-hand sides assigned to it."""
    t = ctx.node_text(node)
    if resolve and ctx.ruleset.assign_re and re.fullmatch(r"\$?[A-Za-z_]\w*", t):
        rhs = [m.group("rhs") for m in re.finditer(ctx.ruleset.assign_re, ctx.text, re.M) if m.group("name") == t]
        t = "\n".join([t, *rhs])
    return t


@where_check("match")
def _w_match(ctx: Ctx, caps: dict[str, list[ts.Node]], arg: Any) -> bool:
    d = dict(arg)
    n = _first(caps, d["capture"])
    return n is not None and _compile_re(d["regex"]).search(_resolved(ctx, n, d.get("resolve", False))) is not None


@where_check("not_match")
def _w_not_match(ctx: Ctx, caps: dict[str, list[ts.Node]], arg: Any) -> bool:
    d = dict(arg)
    n = _first(caps, d["capture"])
    return n is None or _compile_re(d["regex"]).search(_resolved(ctx, n, d.get("resolve", False))) is None
