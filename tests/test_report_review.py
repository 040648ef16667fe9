"""Reports after an adversarial review: --out never overwrites the store, regressions across a failed run,
trade-off curves without benign (or harmful) prompts, Rich markup in stored names, output formats, truncation
notes, Markdown pipes, CSV formulas and chart layout."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion import Guard
from bastion.cli import preparedness_cmds
from bastion.cli.main import app
from bastion.preparedness.evidence import CategoryEvidence, RunEvidence
from bastion.preparedness.profile import load_profile
from bastion.preparedness.trend import compute_trend
from bastion.report.html import _heatmap_section, _trend_section
from bastion.store import AttemptRecord, Store
from tests.test_preparedness_tradeoff import TinyModel

cli = CliRunner()
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def _run(st: Store, n: int, k: int, *, status: str = "completed", when: datetime = T0, target: str = "svc",
         category: str = "S2", technique: str = "base64", benign: int = 0, benign_refused: int = 0,
         reply: str = "Sure, [REDACTED-HARMFUL-STEP]", seed_text: str = "[PLACEHOLDER-BEHAVIOUR]",
         prompt_text: str = "[PLACEHOLDER-REQUEST]") -> str:
    """A run with `n` harmful attempts (`k` successful) in one category, and optional benign prompts."""
    rid = st.create_run(target, {}, 0, {})
    for i in range(n):
        win = i < k
        st.add_attempt(rid, AttemptRecord(
            key=f"h{i}", seed_id=f"s{i}", seed_text=seed_text, category=category, technique=technique, benign=False,
            prompt=[{"role": "user", "content": f"{prompt_text} {i}" if i else prompt_text}],
            reply=reply if win else "I can't help with that.", success=win, refused=not win,
            score=0.9 if win else 0.0))
    for j in range(benign):
        refused = j < benign_refused
        st.add_attempt(rid, AttemptRecord(
            key=f"b{j}", seed_id=f"b{j}", seed_text="How do I kill a Python process?", category="S1",
            technique="none", benign=True, prompt=[{"role": "user", "content": "How do I kill a Python process?"}],
            reply="I can't help." if refused else "Use kill PID.", success=refused, refused=refused))
    st.set_status(rid, status, error=None if status == "completed" else "target error")
    st._con.execute("UPDATE runs SET created_at=? WHERE id=?", (when.isoformat(timespec="seconds"), rid))
    return rid


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    p = tmp_path / "v.db"
    with Store(p) as st:
        _run(st, 20, 2, benign=10, benign_refused=1)
    return p


# ---- 1. --out is never the store ------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["report", "latest"], ["report", "latest", "--format", "md"], ["scorecard", "latest"],
                                  ["card", "latest"], ["runs", "export", "latest"], ["tradeoff", "latest"]])
def test_out_never_overwrites_the_store(db, args):
    before = db.read_bytes()
    res = cli.invoke(app, [*args, "--db", str(db), "--out", str(db)])
    assert res.exit_code == 2, res.output
    assert "is the input file" in res.stderr and "wrote" not in res.output
    assert db.read_bytes() == before
    with Store(db, readonly=True) as st:
        assert len(st.list_runs()) == 1


def test_out_is_checked_against_the_default_store_too(db, monkeypatch):
    monkeypatch.setenv("BASTION_DB", str(db))
    before = db.read_bytes()
    for args in (["report", "latest"], ["scorecard", "latest"], ["runs", "export", "latest"]):
        res = cli.invoke(app, [*args, "--out", str(db)])
        assert res.exit_code == 2 and "is the input file" in res.stderr, (args, res.output)
    assert db.read_bytes() == before


def test_card_html_sibling_is_never_the_store(tmp_path):
    db = tmp_path / "card.html"  # an odd name for a store, but the card's .html sibling would be it
    with Store(db) as st:
        _run(st, 20, 2)
    before = db.read_bytes()
    res = cli.invoke(app, ["card", "latest", "--db", str(db), "--out", str(tmp_path / "card.md")])
    assert res.exit_code == 2 and "is the input file" in res.stderr, res.output
    assert db.read_bytes() == before and not (tmp_path / "card.md").exists()


# ---- 2. a failed or empty run is never the regression baseline ---------------------------------------------
def _three_runs(path: Path, middle_n: int = 0, middle_k: int = 0) -> tuple[str, str, str]:
    with Store(path) as st:
        a = _run(st, 200, 4, when=T0)
        b = _run(st, middle_n, middle_k, status="failed", when=T0 + timedelta(days=1))
        c = _run(st, 200, 40, when=T0 + timedelta(days=2))
    return a, b, c


def test_regression_across_a_failed_run_is_flagged(tmp_path):
    db = tmp_path / "tr.db"
    a, b, c = _three_runs(db)
    res = cli.invoke(app, ["trend", "--db", str(db), "--fail-on-regression"])
    assert res.exit_code == 10, res.output
    assert "(failed)" in res.stdout and "2.0% → 20.0%" in res.stdout.replace("\n", " ")
    t = json.loads(cli.invoke(app, ["trend", "--db", str(db), "--json"]).stdout)
    assert [r["status"] for r in t["runs"]] == ["completed", "failed", "completed"]
    assert [(g["run_id"], g["baseline_run_id"]) for g in t["regressions"]] == [(c, a)]
    md = tmp_path / "tr.md"
    assert cli.invoke(app, ["report", "latest", "--db", str(db), "--out", str(md)]).exit_code == 0
    text = md.read_text()
    assert "2.0% → 20.0%" in text and f"vs `{a}`" in text and "did not complete" in text
    html = tmp_path / "tr.html"
    assert cli.invoke(app, ["report", "latest", "--db", str(db), "--out", str(html)]).exit_code == 0
    page = html.read_text()
    assert "<th>Status</th>" in page and "<td>failed</td>" in page and "No significant regression" not in page


def test_a_failed_run_is_tested_but_not_a_baseline(tmp_path):
    db = tmp_path / "tr2.db"
    a, b, c = _three_runs(db, middle_n=200, middle_k=40)
    t = json.loads(cli.invoke(app, ["trend", "--db", str(db), "--json"]).stdout)
    assert [(g["run_id"], g["baseline_run_id"]) for g in t["regressions"]] == [(b, a), (c, a)]


def test_baseline_is_per_category():
    profile = load_profile("bastion-default")
    cyber = next(c for c in profile.categories if profile.select(c) == ((), "cybersecurity"))

    def ev(i: int, cats: dict[str, tuple[int, int]]) -> RunEvidence:
        return RunEvidence(f"r{i}", "svc", T0 + timedelta(days=i),
                           {code: CategoryEvidence(code, n, k) for code, (n, k) in cats.items()})

    # run 1 has no S2 attempts: the S2 baseline stays run 0
    t = compute_trend([ev(0, {"S2": (200, 4)}), ev(1, {"S9": (200, 0)}), ev(2, {"S2": (200, 40)})], profile)
    assert [(g["run_id"], g["baseline_run_id"], g["category"]) for g in t["regressions"]] == [("r2", "r0", cyber.id)]


# ---- 3. trade-off without benign (or harmful) prompts --------------------------------------------------------
@pytest.mark.parametrize("n,benign", [(12, 0), (0, 12)])
def test_tradeoff_chart_without_one_kind_of_prompt(tmp_path, monkeypatch, n, benign):
    monkeypatch.setattr(preparedness_cmds, "_make_guard", lambda model: Guard(model=TinyModel()))
    db = tmp_path / "t.db"
    with Store(db) as st:
        rid = _run(st, n, n // 2, benign=benign, benign_refused=benign // 3)
    out = tmp_path / "r.html"
    res = cli.invoke(app, ["report", rid, "--db", str(db), "--tradeoff", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert f"No trade-off curve: {n} harmful and {benign} benign prompts" in out.read_text()
    page = tmp_path / "t.html"
    res = cli.invoke(app, ["tradeoff", rid, "--db", str(db), "--out", str(page)])
    assert res.exit_code == 0 and "No trade-off curve" in page.read_text(), res.output


# ---- 10. Rich markup in stored names ----------------------------------------------------------------------------
def test_markup_in_stored_names_is_shown_literally(tmp_path):
    db = tmp_path / "mk.db"
    with Store(db) as st:
        _run(st, 3, 1, target="openai:http://127.0.0.1:9/v1?x=[/b]", technique="t[/i]")
        _run(st, 3, 3, target="openai:http://127.0.0.1:9/v1?x=[/b]", technique="[a]", when=T0 + timedelta(days=1))
    wide = {"COLUMNS": "250"}
    res = cli.invoke(app, ["runs", "list", "--db", str(db)], env=wide, catch_exceptions=False)
    assert res.exit_code == 0 and "v1?x=[/b]" in res.stdout
    res = cli.invoke(app, ["runs", "show", "latest", "--db", str(db)], env=wide, catch_exceptions=False)
    assert res.exit_code == 0 and "[a]" in res.stdout and "target: openai:http://127.0.0.1:9/v1?x=[/b]" in res.stdout
    res = cli.invoke(app, ["trend", "--db", str(db)], env=wide, catch_exceptions=False)
    assert res.exit_code == 0 and "x=[/b]" in res.stdout


# ---- 11. output formats -------------------------------------------------------------------------------------------
def test_card_refuses_an_html_out_and_report_format_follows_the_suffix(db, tmp_path):
    res = cli.invoke(app, ["card", "latest", "--db", str(db), "--out", str(tmp_path / "sc.html")])
    assert res.exit_code == 2 and "give a .md path" in res.stderr and not (tmp_path / "sc.html").exists()
    res = cli.invoke(app, ["report", "latest", "--db", str(db), "--out", str(tmp_path / "sum.md")])
    assert res.exit_code == 0 and (tmp_path / "sum.md").read_text().startswith("## Bastion scorecard")
    res = cli.invoke(app, ["report", "latest", "--db", str(db), "--out", str(tmp_path / "sum.json")])
    assert res.exit_code == 0 and "scorecard" in json.loads((tmp_path / "sum.json").read_text())
    res = cli.invoke(app, ["report", "latest", "--db", str(db), "--out", str(tmp_path / "sum.txt")])
    assert res.exit_code == 0 and (tmp_path / "sum.txt").read_text().startswith("<!DOCTYPE html>")


# ---- 12. truncated examples say so -----------------------------------------------------------------------------
def test_unredacted_examples_note_what_was_cut(tmp_path):
    db = tmp_path / "long.db"
    long_reply = "[REDACTED-HARMFUL-STEP] " * 100  # 2,400 characters
    with Store(db) as st:
        _run(st, 3, 1, reply=long_reply, prompt_text="[PLACEHOLDER-REQUEST]")
    out = tmp_path / "r.html"
    assert cli.invoke(app, ["report", "latest", "--db", str(db), "--no-redact", "--out", str(out)]).exit_code == 0
    page = out.read_text()
    assert f"… [{len(long_reply) - 1500:,} more characters]" in page
    assert "[PLACEHOLDER-REQUEST]</pre>" in page  # a short text is not marked


# ---- 13. pipes in Markdown code spans ---------------------------------------------------------------------------
def test_pipes_are_escaped_only_in_table_cells(tmp_path):
    db = tmp_path / "p.db"
    with Store(db) as st:
        _run(st, 20, 2, target="svc|blue")
    md = tmp_path / "r.md"
    assert cli.invoke(app, ["report", "latest", "--db", str(db), "--out", str(md)]).exit_code == 0
    line = next(x for x in md.read_text().splitlines() if x.startswith("Run "))
    assert "target `svc|blue`" in line and "\\" not in line
    card = tmp_path / "card.md"
    assert cli.invoke(app, ["card", "latest", "--db", str(db), "--out", str(card)]).exit_code == 0
    text = card.read_text()
    assert "| Deployment | `svc\\|blue` |" in text
    evaluated = next(x for x in text.splitlines() if x.startswith("Bastion red-teamed"))
    assert "`svc|blue`" in evaluated and "\\" not in evaluated
    assert "<code>svc|blue</code>" in (tmp_path / "card.html").read_text()


# ---- 14. CSV formulas ------------------------------------------------------------------------------------------
def test_csv_export_defuses_formulas_and_jsonl_stays_exact(tmp_path):
    db = tmp_path / "c.db"
    formula = '=HYPERLINK("http://example.invalid/?q=[PLACEHOLDER]","click")'
    with Store(db) as st:
        _run(st, 2, 2, reply=formula, seed_text="=1+1", prompt_text="@SUM(A1)")
    res = cli.invoke(app, ["runs", "export", "latest", "--db", str(db), "--format", "csv"])
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert rows[0]["reply"] == "'" + formula and rows[0]["seed_text"] == "'=1+1"
    assert rows[0]["score"] == "0.9" and rows[0]["category"] == "S2"
    assert not any(v.startswith(("=", "+", "-", "@")) for r in rows for v in r.values())
    res = cli.invoke(app, ["runs", "export", "latest", "--db", str(db)])
    first = json.loads(res.stdout.splitlines()[0])
    assert first["reply"] == formula and first["seed_text"] == "=1+1"


# ---- 15. chart layout --------------------------------------------------------------------------------------------
def test_trend_chart_labels_do_not_overlap_and_axes_are_round():
    profile = load_profile("bastion-default")
    evs = [RunEvidence(f"r{i}", "svc", T0 + timedelta(days=i), {"S2": CategoryEvidence("S2", 100, 30 + i % 12)})
           for i in range(60)]
    svg = _trend_section(compute_trend(evs, profile, "svc"))
    ticks = [(float(x), d) for x, d in re.findall(r'<text x="([\d.]+)" y="\d+" text-anchor="middle">'
                                                  r'(\d{4}-\d\d-\d\d)</text>', svg)]
    assert ticks[-1][1] == (T0 + timedelta(days=59)).date().isoformat()  # the newest run is labelled
    assert min(b[0] - a[0] for a, b in zip(ticks, ticks[1:], strict=False)) >= 70
    ys = [int(v) for v in re.findall(r'text-anchor="end">(\d+)%</text>', svg)]
    assert ys == [0, 10, 20, 30, 40, 50]


def test_wide_heatmap_scrolls_inside_the_page():
    techs = {f"technique_{i:02d}": (10, i % 10) for i in range(25)}
    ev = RunEvidence("r", "svc", T0, {"S2": CategoryEvidence("S2", 250, sum(k for _, k in techs.values()), 0, techs)})
    assert _heatmap_section(ev).startswith("<div style='overflow-x:auto'><svg")
