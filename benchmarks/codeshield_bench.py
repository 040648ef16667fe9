"""Code-shield benchmark: accuracy on the labelled corpus (vs Bandit on the Python part) and speed.

    python benchmarks/codeshield_bench.py [--json out.json]

Bandit is optional (pip install bandit); without it the comparison column is skipped.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.codeshield_corpus import CORPUS  # noqa: E402

from bastion.codeshield import languages, scan_code, scan_response  # noqa: E402


def prf(pred: list[bool], gold: list[int]) -> dict[str, float]:
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    fp = sum(p and not g for p, g in zip(pred, gold, strict=True))
    fn = sum((not p) and g for p, g in zip(pred, gold, strict=True))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"n": len(gold), "tp": tp, "fp": fp, "fn": fn, "precision": round(prec, 3), "recall": round(rec, 3),
            "f1": round(f1, 3)}


def bandit_predictions(snippets: list[str]) -> tuple[list[bool], list[bool], float] | None:
    """Bandit's verdict per snippet (any issue; medium+ severity) and its mean ms per snippet, in-process."""
    try:
        from bandit.core import config as b_config
        from bandit.core import manager as b_manager
    except ImportError:
        return None
    any_hit, med_hit, times = [], [], []
    conf = b_config.BanditConfig()
    with tempfile.TemporaryDirectory() as d:
        for i, code in enumerate(snippets):
            p = os.path.join(d, f"s{i}.py")
            Path(p).write_text(code)
            t0 = time.perf_counter()
            m = b_manager.BanditManager(conf, "file", quiet=True)
            m.discover_files([p])
            m.run_tests()
            times.append((time.perf_counter() - t0) * 1000)
            issues = m.get_issue_list()
            any_hit.append(bool(issues))
            med_hit.append(any(str(x.severity).upper() in ("MEDIUM", "HIGH") for x in issues))
    return any_hit, med_hit, statistics.median(times)


def pad_to(code: str, lang: str, lines: int = 50) -> str:
    """Pad a snippet with ordinary code of the same language up to `lines` lines (a typical answer)."""
    filler = {
        "python": "def helper_{i}(values):\n    total = sum(v * 2 for v in values if v > 0)\n    return total\n\n",
        "javascript": "function helper{i}(values) {{\n  return values.filter(v => v > 0).map(v => v * 2);\n}}\n\n",
        "typescript": "function helper{i}(values: number[]): number[] {{\n  return values.map(v => v * 2);\n}}\n\n",
        "c": "static int helper{i}(const int *v, int n) {{\n    int s = 0; for (int k = 0; k < n; k++) s += v[k];\n    return s;\n}}\n",
        "cpp": "static int helper{i}(const int *v, int n) {{\n    int s = 0; for (int k = 0; k < n; k++) s += v[k];\n    return s;\n}}\n",
        "java": "static int helper{i}(int[] v) {{\n    int s = 0; for (int x : v) s += x;\n    return s;\n}}\n",
        "go": "func helper{i}(v []int) int {{\n\ts := 0\n\tfor _, x := range v {{ s += x }}\n\treturn s\n}}\n",
        "php": "function helper{i}($v) {{\n    return array_sum($v);\n}}\n\n",
    }[lang]
    out, i = code, 0
    while out.count("\n") + filler.format(i=i).count("\n") <= lines:
        out += filler.format(i=i)
        i += 1
    comment = "#" if lang == "python" else "//"
    while out.count("\n") < lines:
        out += f"{comment} end of helpers\n"
    return out


def timeit(fn, arg, reps: int) -> list[float]:
    fn(arg)  # warm (grammar load, query compile)
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(arg)
        ts.append((time.perf_counter() - t0) * 1000)
    return ts


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--reps", type=int, default=30)
    args = ap.parse_args()
    out: dict = {"date": date.today().isoformat(), "machine": f"{platform.machine()} {os.cpu_count()} CPU cores, "
                 f"Python {platform.python_version()}", "corpus": len(CORPUS)}

    # ---- accuracy --------------------------------------------------------------------------
    gold = [lab for _, lab, _, _ in CORPUS]
    pred = [bool(scan_code(code, lang)) for lang, _, _, code in CORPUS]
    out["codeshield_all"] = prf(pred, gold)
    by_lang = {}
    for lang in sorted({x[0] for x in CORPUS}):
        idx = [i for i, x in enumerate(CORPUS) if x[0] == lang]
        by_lang[lang] = prf([pred[i] for i in idx], [gold[i] for i in idx])
    out["codeshield_by_language"] = by_lang
    py = [i for i, x in enumerate(CORPUS) if x[0] == "python"]
    out["python"] = {"codeshield": prf([pred[i] for i in py], [gold[i] for i in py])}
    b = bandit_predictions([CORPUS[i][3] for i in py])
    if b is not None:
        any_hit, med_hit, b_ms = b
        out["python"]["bandit_any"] = prf(any_hit, [gold[i] for i in py])
        out["python"]["bandit_medium_plus"] = prf(med_hit, [gold[i] for i in py])
        out["python"]["bandit_ms_per_snippet_p50"] = round(b_ms, 2)
    out["misses"] = [f"{x[0]} {x[2]}" for i, x in enumerate(CORPUS) if x[1] and not pred[i]]
    out["false_alarms"] = [f"{x[0]} #{i}: {[f.rule_id for f in scan_code(x[3], x[0])]}"
                           for i, x in enumerate(CORPUS) if pred[i] and not x[1]]

    # ---- speed -----------------------------------------------------------------------------
    snippets = [(lang, pad_to(code, lang)) for lang, _, _, code in CORPUS]
    per = []
    for lang, code in snippets:
        per += timeit(lambda c, lang=lang: scan_code(c, lang), code, max(3, args.reps // 5))
    out["scan_code_50_lines_ms"] = {"p50": pct(per, 0.5), "p95": pct(per, 0.95), "samples": len(per)}
    resp = [f"Here is the code:\n\n```{lang}\n{code}```\n\nHope this helps." for lang, code in snippets]
    per = []
    for r in resp:
        per += timeit(lambda t: scan_response(t, fix=False), r, max(3, args.reps // 5))
    out["scan_response_50_lines_ms"] = {"p50": pct(per, 0.5), "p95": pct(per, 0.95), "samples": len(per)}
    per = []
    for r in resp[:20]:
        per += timeit(lambda t: scan_response(t, fix=True), r, 3)
    out["scan_response_with_fix_ms"] = {"p50": pct(per, 0.5), "p95": pct(per, 0.95), "samples": len(per)}
    prose = ("Paris is the capital of France. It is known for the Eiffel Tower, museums such as the Louvre, "
             "and its cafes. The city has about two million inhabitants. ") * 8
    per = timeit(lambda t: scan_response(t), prose, args.reps * 10)
    out["prose_no_code_ms"] = {"p50": pct(per, 0.5), "p95": pct(per, 0.95), "chars": len(prose)}

    # ---- parser choice for Python: CPython ast vs tree-sitter ---------------------------------
    pys = [code for lang, code in snippets if lang == "python"]
    a = [t for c in pys for t in timeit(ast.parse, c, 10)]
    t = [t for c in pys for t in timeit(lambda s: languages.parse("python", s.encode()), c, 10)]
    partial = [c.replace("\n    ", "\n  ", 1) + "\n  ...\n def broken(:\n" for c in pys]
    ast_fail = sum(1 for c in partial if _ast_fails(c))
    ts_hits = sum(1 for c, (_, lab, _, _) in zip(partial, [x for x in CORPUS if x[0] == "python"], strict=True)
                  if lab and scan_code(c, "python"))
    out["python_parser"] = {"ast_parse_ms_p50": pct(a, 0.5), "tree_sitter_parse_ms_p50": pct(t, 0.5),
                            "broken_snippets": len(partial), "ast_cannot_parse": ast_fail,
                            "tree_sitter_still_flags_insecure": ts_hits,
                            "insecure_in_broken": sum(1 for x in CORPUS if x[0] == "python" and x[1])}

    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def _ast_fails(code: str) -> bool:
    try:
        ast.parse(code)
        return False
    except SyntaxError:
        return True


if __name__ == "__main__":
    main()
