"""`bastion constitution ...` end to end against the scripted loopback server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bastion.cli import constitution_cmds
from bastion.constitution import read_synth
from tests.fakellm import last_user
from tests.test_constitution import MESSY, biased_feedback, revise_script, small_constitution

HARM = "[REDACTED-HARMFUL-STEP]"


@pytest.fixture
def cli():
    app = typer.Typer()
    constitution_cmds.register(app)

    @app.callback()
    def _root() -> None:  # keep `constitution` as a sub-command
        pass

    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, ["constitution", *map(str, args)])

    return invoke


@pytest.fixture
def const_file(tmp_path) -> Path:
    f = tmp_path / "c.yaml"
    f.write_text(small_constitution(3).to_yaml(), encoding="utf-8")
    return f


def jl(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_validate_and_show(cli, tmp_path, const_file):
    r = cli("validate", const_file)
    assert r.exit_code == 0 and "ok (test, 3 principles" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("principles:\n  - id: x\n    critique_request: a\n    revision_request: b\n    weight: -2\n")
    r = cli("validate", bad)
    assert r.exit_code == 1 and "principle 'x' (#1): field 'weight'" in r.output
    r = cli("show")
    assert r.exit_code == 0 and "no-mass-casualty-weapons" in r.output


def test_revise_cli_resumes_and_reports_bad_lines(cli, fake_llm, tmp_path, const_file):
    llm = fake_llm(revise_script)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"prompt": "q1", "response": f"bad {HARM}"}) + "\n{oops\n"
                   + json.dumps({"prompt": "q2", "response": "x"}) + "\n")
    out = tmp_path / "out.jsonl"
    args = ["revise", inp, "--base-url", llm.base_url, "--model", "fake-model", "--rounds", "2", "--out", out,
            "--seed", "3", "-c", const_file, "--shots", "0"]
    r = cli(*args)
    assert r.exit_code == 0, r.output
    assert f"{inp}:2: invalid JSON" in r.output and "2 written" in r.output
    rows = jl(out)
    assert len(rows) == 2 and all(len(x["revisions"]) == 2 for x in rows)
    r = cli(*args)
    assert r.exit_code == 0 and "0 written" in r.output and "2 already done" in r.output
    assert len(jl(out)) == 2


def test_cli_usage_errors_exit_2(cli, tmp_path, const_file):
    inp = tmp_path / "in.jsonl"
    inp.write_text("{}\n")
    r = cli("revise", inp, "--out", tmp_path / "o.jsonl", "-c", const_file)
    assert r.exit_code == 2 and "--base-url and --model are required" in r.output
    r = cli("label", tmp_path / "missing.jsonl", "--out", tmp_path / "o.jsonl", "--base-url", "http://x/v1",
            "--model", "m")
    assert r.exit_code == 2 and "no such file" in r.output
    r = cli("revise", inp, "--out", tmp_path / "o.jsonl", "-c", tmp_path / "nope.yaml", "--model", "m",
            "--base-url", "http://x/v1")
    assert r.exit_code == 2 and "nope.yaml: no such file" in r.output


def test_label_cli_writes_trl_preferences(cli, fake_llm, tmp_path, const_file):
    llm = fake_llm(biased_feedback)
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps({"prompt": "question 0", "response_a": f"BAD {HARM}", "response_b": "GOOD one"})
                     + "\n" + json.dumps({"prompt": "same", "response_a": "x", "response_b": "x"}) + "\n")
    out = tmp_path / "prefs.jsonl"
    r = cli("label", pairs, "--base-url", llm.base_url, "--model", "fake-model", "--out", out, "--seed", "9",
            "-c", const_file)
    assert r.exit_code == 0, r.output
    assert "identical" in r.output
    (row,) = jl(out)
    assert row["chosen"] == "GOOD one" and row["chosen_prob"] == pytest.approx(0.7)
    assert row["seed"] == 9 and row["model"] == "fake-model"


def test_synth_cli_output_validates(cli, fake_llm, tmp_path, const_file):
    def script(req):
        t = last_user(req)
        return "Paraphrase: something else" if t.startswith("Paraphrase") else MESSY

    llm = fake_llm(script)
    out = tmp_path / "synth.jsonl"
    r = cli("synth", "--base-url", llm.base_url, "--model", "fake-model", "--out", out, "-c", const_file,
            "--batches", "1", "--principle", "p0", "--principle", "p2")
    assert r.exit_code == 0, r.output
    recs = read_synth(out)
    assert {x.principle_id for x in recs} == {"p0", "p2"}
    assert cli("validate", out).exit_code == 0


def test_sft_from_run_takes_successful_attacks(cli, fake_llm, tmp_path, const_file):
    from bastion.store import AttemptRecord, Store

    db = tmp_path / "rt.db"
    with Store(db) as st:
        rid = st.create_run("target", {}, 0, {})
        for i, ok in enumerate([True, False, True]):
            st.add_attempt(rid, AttemptRecord(
                key=f"k{i}", seed_id=f"s{i}", seed_text=f"seed {i}", category="S2", technique="base64",
                benign=False, prompt=[{"role": "user", "content": f"attack {i}"}], reply=f"reply {i} {HARM}",
                success=ok))
        st.add_attempt(rid, AttemptRecord(key="b", seed_id="b", seed_text="benign", category="S2",
                                          technique="none", benign=True,
                                          prompt=[{"role": "user", "content": "benign"}], reply="ok", success=True))
    llm = fake_llm(revise_script)
    helpful = tmp_path / "helpful.jsonl"
    helpful.write_text(json.dumps({"prompt": "bake bread?", "response": "Mix flour and water."}) + "\n")
    out, dpo = tmp_path / "sft.jsonl", tmp_path / "dpo.jsonl"
    r = cli("sft", "--from-run", rid, "--db", db, "--helpful", helpful, "--out", out, "--dpo-out", dpo,
            "--base-url", llm.base_url, "--model", "fake-model", "-c", const_file)
    assert r.exit_code == 0, r.output
    rows = jl(out)
    red = [x for x in rows if x["source"] == "redteam"]
    assert sorted(x["messages"][0]["content"] for x in red) == ["attack 0", "attack 2"]
    assert all(x["messages"][-1]["role"] == "assistant" and x["messages"][-1]["content"].startswith("rev[")
               for x in red)
    assert [x["messages"] for x in rows if x["source"] == "helpful"] == [
        [{"role": "user", "content": "bake bread?"}, {"role": "assistant", "content": "Mix flour and water."}]]
    pairs = jl(dpo)
    assert len(pairs) == 2 and all(p["pair_type"] == "revision_vs_original" for p in pairs)
    assert all(HARM in p["rejected"] for p in pairs)
    r = cli("sft", "--from-run", "nope", "--db", db, "--out", out, "--base-url", llm.base_url, "--model", "m")
    assert r.exit_code == 2 and "nope" in r.output


def test_auth_failure_stops_the_batch_with_a_clear_error(cli, fake_llm, tmp_path, const_file):
    llm = fake_llm(revise_script, api_key="right")
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"prompt": f"q{i}", "response": "r"}) + "\n" for i in range(5)))
    r = cli("revise", inp, "--out", tmp_path / "o.jsonl", "--base-url", llm.base_url, "--model", "fake-model",
            "--api-key", "wrong", "-c", const_file, "--concurrency", "1")
    assert r.exit_code == 1 and "HTTP 401" in r.output and "rerun to resume" in r.output
    assert llm.calls < 5
