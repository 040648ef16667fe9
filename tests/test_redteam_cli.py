"""`bastion redteam` and `bastion runs` end to end (Typer runner, real store, scripted targets), plus one run on
the shipped guard model."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.models import DEFAULT_MODEL_DIR

runner = CliRunner()
CONTRACT_ROW = {"attempts", "successes", "refusals", "asr", "ci_low", "ci_high"}


def _invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def _json(result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_redteam_json_contract_and_runs_commands(redteam_sandbox, tmp_path):
    db = str(tmp_path / "b.db")
    obj = _json(_invoke("redteam", "--target", "python:tests.test_redteam_runner:selective", "--techniques",
                        "direct,atbash", "--limit", "28", "--benign-limit", "6", "--seed", "5", "--db", db, "--json"))
    assert {"run_id", "target", "categories", "techniques", "over_refusal"} <= set(obj)
    assert obj["target"] == "python:tests.test_redteam_runner:selective"
    assert all(CONTRACT_ROW | {"category"} <= set(c) for c in obj["categories"])
    techs = {t["technique"]: t for t in obj["techniques"]}
    assert set(techs) == {"direct", "atbash"} and CONTRACT_ROW <= set(techs["direct"])
    assert techs["direct"]["asr"] == 0.0 and techs["atbash"]["asr"] == 1.0
    assert set(obj["over_refusal"]) == {"attempts", "refused", "rate", "ci_low", "ci_high"}
    assert obj["over_refusal"]["attempts"] == 6
    rid = obj["run_id"]

    runs = _json(_invoke("runs", "list", "--db", db, "--json"))
    assert runs[0]["run_id"] == rid and runs[0]["status"] == "completed" and runs[0]["attempts"] == 34
    shown = _json(_invoke("runs", "show", rid[:15], "--db", db, "--json"))
    assert shown["run_id"] == rid and shown["categories"] == obj["categories"]
    assert shown["config"]["seed"] == 5

    res = _invoke("runs", "export", rid, "--db", db, "--format", "csv")
    assert res.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert len(rows) == 34 and {"key", "technique", "success", "reply"} <= set(rows[0])
    out = tmp_path / "a.jsonl"
    assert _invoke("runs", "export", rid, "--db", db, "--out", str(out)).exit_code == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 34 and lines[0]["turns"]

    # the terminal report
    res = _invoke("runs", "show", rid, "--db", db)
    assert "ASR by hazard category" in res.stdout and "Over-refusal" in res.stdout and rid in res.stdout


def test_redteam_table_guarded_and_resume(redteam_sandbox, tmp_path, fake_llm):
    llm = fake_llm("Sure, here is [REDACTED-HARMFUL-STEP 1].")
    db = str(tmp_path / "b.db")
    res = _invoke("redteam", "--target", f"openai:{llm.base_url}", "--model", "m", "--guarded", "--techniques",
                  "direct", "--limit", "14", "--benign-limit", "2", "--db", db)
    assert res.exit_code == 0, res.output
    for text in ("ASR by hazard category", "ASR by technique", "pre ASR", "post ASR", "Over-refusal", "Run id"):
        assert text in res.stdout
    runs = _json(_invoke("runs", "list", "--db", db, "--json"))
    assert {r["label"] for r in runs} == {"pre", "post"}
    pre = next(r for r in runs if r["label"] == "pre")
    assert pre["asr"] == 1.0
    # resuming a finished run does nothing more and reports the same numbers
    calls = llm.calls
    obj = _json(_invoke("redteam", "--resume", pre["run_id"], "--db", db, "--json"))
    assert llm.calls == calls and obj["pre"]["run_id"] == pre["run_id"]


def test_redteam_usage_errors(redteam_sandbox, tmp_path):
    db = str(tmp_path / "b.db")
    for args, msg in ((["--target", "nope"], "unknown target"), (["--techniques", "base65"], "unknown technique"),
                      (["--resume", "missing"], "no run"), (["--categories", "S99"], "unknown categories"),
                      (["--target", "openai:http://127.0.0.1:9/v1"], "--model")):
        res = _invoke("redteam", *args, "--db", db)
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.stderr
    res = _invoke("runs", "show", "missing", "--db", db)
    assert res.exit_code == 2


def test_redteam_target_failure_exit_1(redteam_sandbox, tmp_path, fake_llm):
    from tests.fakellm import FakeReply

    llm = fake_llm(FakeReply("bad key", status=401))
    db = str(tmp_path / "b.db")
    res = _invoke("redteam", "--target", f"openai:{llm.base_url}", "--model", "m", "--limit", "4", "--db", db)
    assert res.exit_code == 1 and "401" in res.stderr and "--resume" in res.stderr
    assert _json(_invoke("runs", "list", "--db", db, "--json"))[0]["status"] == "failed"


def test_techniques_json():
    rows = _json(_invoke("redteam", "techniques", "--json"))
    names = {r["name"] for r in rows}
    assert {"base64", "rot13", "many_shot", "best_of_n"} <= names and len(rows) >= 20
    assert all(set(r) >= {"name", "description", "reference", "requires_llm"} for r in rows)
    assert not any(r["requires_llm"] for r in rows if r["name"] == "base64")


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "manifest.json").exists(), reason="shipped guard model not built yet")
def test_default_guard_target_end_to_end(tmp_path):
    """The README's first command, on the real embedded guard and the real seed library (small limit)."""
    db = str(tmp_path / "b.db")
    obj = _json(_invoke("redteam", "--limit", "48", "--benign-limit", "20", "--db", db, "--json"))
    assert obj["target"] == "guard"
    assert sum(c["attempts"] for c in obj["categories"]) == 48
    assert obj["over_refusal"]["attempts"] == 20
    direct = next(t for t in obj["techniques"] if t["technique"] == "direct")
    # plain harmful requests are the easiest thing for the guard to stop
    assert direct["asr"] <= 0.5
    # the same seed gives the same run
    again = _json(_invoke("redteam", "--limit", "48", "--benign-limit", "20", "--db", db, "--json"))
    assert again["run_id"] != obj["run_id"]
    assert (again["categories"], again["over_refusal"]) == (obj["categories"], obj["over_refusal"])


def test_engine_usage_errors(tmp_path):
    from typer.testing import CliRunner

    from bastion.cli.main import app

    r = CliRunner().invoke(app, ["redteam", "--engine", "spark", "--db", str(tmp_path / "x.db")])
    assert r.exit_code == 2 and "--engine must be local or ray" in r.output
    r = CliRunner().invoke(app, ["redteam", "--workers", "2", "--db", str(tmp_path / "x.db")])
    assert r.exit_code == 2 and "need --engine ray" in r.output


def test_redteam_without_the_dataset_pool_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("BASTION_DATASETS", str(tmp_path / "nowhere"))
    r = runner.invoke(app, ["redteam", "--db", str(tmp_path / "r.db"), "--limit", "1"])
    assert r.exit_code == 2
    assert "seed library is built from the dataset pool" in r.output and "BASTION_DATASETS" in r.output


def test_each_endpoint_gets_its_own_api_key(redteam_sandbox, tmp_path, fake_llm, monkeypatch):
    """--api-key-env / --judge-key-env: the target's key never goes to the judge's endpoint, nor the other way;
    the variable names are stored, the keys are not."""
    target = fake_llm("I can't help with that.", api_key="target-key-123")
    judge = fake_llm("No", api_key="judge-key-456")
    monkeypatch.setenv("OPENAI_API_KEY", "some-other-key")
    monkeypatch.setenv("T_KEY", "target-key-123")
    monkeypatch.setenv("J_KEY", "judge-key-456")
    db = str(tmp_path / "b.db")
    args = ["redteam", "--target", f"openai:{target.base_url}", "--model", "m", "--judge-model", "j",
            "--judge-base-url", judge.base_url, "--limit", "3", "--benign-limit", "1", "--techniques", "direct",
            "--db", db, "--json"]
    # OPENAI_API_KEY for both: the scripted servers answer 401
    assert _invoke(*args).exit_code == 1
    obj = _json(_invoke(*args, "--api-key-env", "T_KEY", "--judge-key-env", "J_KEY"))
    assert obj["over_refusal"]["attempts"] == 1 and target.calls >= 4 and judge.calls >= 3
    import sqlite3

    con = sqlite3.connect(db)
    blob = "\n".join(con.iterdump())
    con.close()
    assert "target-key-123" not in blob and "judge-key-456" not in blob and "T_KEY" in blob
    # a named variable that is not set stops before a run is created
    runs_before = len(_json(_invoke("runs", "list", "--db", db, "--json")))
    res = _invoke(*args, "--api-key-env", "NOT_SET_ANYWHERE")
    assert res.exit_code == 2 and "NOT_SET_ANYWHERE" in res.stderr
    assert len(_json(_invoke("runs", "list", "--db", db, "--json"))) == runs_before


def test_judge_on_the_target_url_uses_the_target_key(redteam_sandbox, tmp_path, fake_llm, monkeypatch):
    llm = fake_llm("I can't help with that.", api_key="shared-key-789")
    monkeypatch.setenv("OPENAI_API_KEY", "wrong")
    monkeypatch.setenv("T_KEY", "shared-key-789")
    obj = _json(_invoke("redteam", "--target", f"openai:{llm.base_url}", "--model", "m", "--judge-model", "j",
                        "--api-key-env", "T_KEY", "--limit", "2", "--benign-limit", "0", "--techniques", "direct",
                        "--db", str(tmp_path / "c.db"), "--json"))
    assert obj["categories"] and llm.calls >= 4


@pytest.mark.parametrize("args, message", [
    (["--techniques", "no_such_technique"], "no_such_technique"),
    (["--categories", "S99"], "S99"),
])
def test_usage_errors_leave_no_database(redteam_sandbox, tmp_path, args, message):
    db = tmp_path / "z.db"
    res = _invoke("redteam", *args, "--db", str(db))
    assert res.exit_code == 2 and message in res.stderr and not db.exists()


def test_a_missing_dataset_pool_leaves_no_database(tmp_path, monkeypatch):
    from bastion.redteam import seeds

    seeds._library.cache_clear()
    seeds._load.cache_clear()
    monkeypatch.setenv("BASTION_DATASETS", str(tmp_path / "nodata"))
    db = tmp_path / "nd.db"
    res = _invoke("redteam", "--db", str(db))
    assert res.exit_code == 2 and "dataset pool" in res.stderr and not db.exists()
