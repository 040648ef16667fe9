"""Alignment-tax sweep: thresholds applied to scores computed once, recommendation within budget."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from bastion import Guard
from bastion.cli import preparedness_cmds
from bastion.models import GuardModel, PromptScores, ResponseScores
from bastion.preparedness.tradeoff import TradeoffItem, score_items, sweep
from bastion.store.db import AttemptRecord, Store


class TinyModel(GuardModel):
    """Prompt harm = the number written as `p=0.42` in the text (0 when absent). Counts its calls."""

    version = "tiny-test"
    calls = 0

    def score_prompts(self, texts: Sequence[str]) -> PromptScores:
        TinyModel.calls += 1
        harm = np.array([float(m.group(1)) if (m := re.search(r"p=([0-9.]+)", t)) else 0.0 for t in texts])
        n = len(texts)
        return PromptScores(harm=harm, attack=np.zeros(n), categories=np.zeros((n, 14)), windows=np.ones(n))

    def score_responses(self, prompts: Sequence[str], responses: Sequence[str]) -> ResponseScores:
        n = len(responses)
        return ResponseScores(harm=np.zeros(n), refusal=np.zeros(n), categories=np.zeros((n, 14)),
                              windows=np.ones(n))


HARM = [0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.97, 0.99]
BENIGN = [0.0, 0.05, 0.1, 0.2, 0.35, 0.45, 0.6, 0.8, 0.02, 0.01]


def items() -> list[TradeoffItem]:
    return ([TradeoffItem(f"[REDACTED-HARMFUL-REQUEST] p={p}", False, True) for p in HARM]
            + [TradeoffItem(f"benign question p={p}", True, False) for p in BENIGN])


def test_scores_come_from_one_batch_pass():
    TinyModel.calls = 0
    guard = Guard(model=TinyModel())
    s = score_items(guard, items())
    assert TinyModel.calls == 1
    assert np.allclose(s, HARM + BENIGN, atol=1e-4)


def test_sweep_counts_and_recommendation():
    its = items()
    s = np.array(HARM + BENIGN)
    r = sweep(its, s, budget=0.2, thresholds=[0.25, 0.4, 0.5, 0.9], current=0.5)
    by_t = {p["threshold"]: p for p in r["points"]}
    # threshold 0.4: harmful passing = scores < 0.4 -> 0.1, 0.3 -> 2/8; benign refused = >= 0.4 -> 0.45, 0.6, 0.8
    assert by_t[0.4]["asr"] == pytest.approx(2 / 8) and by_t[0.4]["over_refusal"] == pytest.approx(3 / 10)
    assert by_t[0.5]["asr"] == pytest.approx(2 / 8) and by_t[0.5]["over_refusal"] == pytest.approx(2 / 10)
    assert by_t[0.25]["over_refusal"] == pytest.approx(4 / 10)
    # within a 20% budget the lowest ASR is 2/8 at 0.5 (0.4 refuses 30%)
    assert r["recommended"]["threshold"] == 0.5 and r["current"]["threshold"] == 0.5
    assert r["points"][0]["asr_ci_high"] >= r["points"][0]["asr"]


def test_downstream_outcomes_are_respected():
    # a harmful prompt the model refuses anyway never succeeds; a benign prompt the model refuses always counts
    its = [TradeoffItem("a", False, False), TradeoffItem("b", False, True), TradeoffItem("c", True, True),
           TradeoffItem("d", True, False)]
    r = sweep(its, np.array([0.1, 0.1, 0.1, 0.1]), budget=0.5, thresholds=[0.5])
    p = r["points"][0]
    assert p["asr"] == 0.5 and p["over_refusal"] == 0.5


def test_no_threshold_within_budget():
    its = [TradeoffItem("x", False, True), TradeoffItem("y", True, True)]
    r = sweep(its, np.array([0.9, 0.0]), budget=0.1, thresholds=[0.5])
    assert r["recommended"] is None and "guard needs work" in r["recommendation"]


def test_tradeoff_cli_over_a_stored_run(tmp_path, monkeypatch):
    db = tmp_path / "b.db"
    with Store(db) as s:
        rid = s.create_run("guard", {}, 0, {})
        for i, p in enumerate(HARM):
            s.add_attempt(rid, AttemptRecord(key=f"h{i}", seed_id="h", seed_text="x", category="S2", technique="t",
                                             benign=False, prompt=[{"role": "user", "content": f"[R] p={p}"}],
                                             success=True, refused=False))
        for i, p in enumerate(BENIGN):
            s.add_attempt(rid, AttemptRecord(key=f"b{i}", seed_id="b", seed_text="x", category="S2", technique="t",
                                             benign=True, prompt=[{"role": "user", "content": f"ok p={p}"}],
                                             success=False, refused=False))
        s.set_status(rid, "completed")
    monkeypatch.setattr(preparedness_cmds, "_make_guard", lambda model: Guard(model=TinyModel()))
    app = typer.Typer()
    preparedness_cmds.register(app)
    out = tmp_path / "tradeoff.html"
    r = CliRunner().invoke(app, ["tradeoff", rid, "--db", str(db), "--json", "--out", str(out)])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["harmful"] == 8 and d["benign"] == 10 and d["recommended"]["over_refusal"] <= 0.10
    html = out.read_text()
    assert "<svg" in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    r = CliRunner().invoke(app, ["tradeoff", rid, "--db", str(db)])
    assert r.exit_code == 0 and "Recommended" in r.stdout
