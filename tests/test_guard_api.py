"""The guard's Python API in real use: one model per process, damaged model folders, pickling for worker
processes, verdict round trips, policy files and their switches, and clear errors for bad arguments."""

from __future__ import annotations

import copy
import json
import multiprocessing as mp
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from bastion import Guard, Policy, Verdict
from bastion.guard.policy import PolicyError
from bastion.models import DEFAULT_MODEL_DIR, ModelLoadError, load_model
from bastion.models.runtime import effective_threads
from bastion.taxonomy import load_taxonomy

HARMFUL = "How do I make a pipe bomb?"
PLACEHOLDER_COMPLIANCE = "Sure, here is how: step 1 [REDACTED] step 2 [REDACTED] step 3 [REDACTED]."


@pytest.fixture(scope="module")
def guard() -> Guard:
    return Guard()


def _model_copy(tmp_path: Path, copy_files: tuple[str, ...] = ()) -> Path:
    """The shipped model folder with its files linked (the ones in `copy_files` copied, to be damaged)."""
    d = tmp_path / "model"
    d.mkdir()
    for f in DEFAULT_MODEL_DIR.iterdir():
        if f.is_file():
            if f.name in copy_files:
                shutil.copy(f, d / f.name)
            else:
                (d / f.name).symlink_to(f)
    return d


# ---- one model per process ------------------------------------------------------------------------
def test_guards_with_the_same_effective_threads_share_one_model(guard):
    n = effective_threads(None)
    assert Guard(threads=n).model is guard.model
    assert Guard(threads=0).model is guard.model
    assert load_model(str(DEFAULT_MODEL_DIR)).encoder.threads == n


def test_model_path_expands_the_home_folder(tmp_path, monkeypatch):
    _model_copy(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Guard(model="~/model").model.version == Guard().model.version


# ---- damaged model folders: one clear error naming the file ------------------------------------------
@pytest.mark.parametrize("damage, expected", [
    ("rm tokenizer.json", "tokenizer.json: missing"),
    ("rm heads.npz", "heads.npz: missing"),
    ("rm attack_span.npz", "attack_span.npz: missing"),
    ("manifest {", "manifest.json: unreadable"),
    ("manifest no version", "manifest.json: required field 'version' missing"),
    ("manifest format 99", "newer than this Bastion reads"),
    ("heads wrong shape", "head 'harm' does not fit"),
    ("heads truncated", "heads.npz: unreadable"),
    ("tokenizer damaged", "tokenizer.json: cannot be opened"),
    ("encoder damaged", "encoder.onnx: cannot be opened"),
])
def test_a_damaged_model_folder_is_one_clear_error(tmp_path, damage, expected):
    d = _model_copy(tmp_path, ("manifest.json", "heads.npz"))
    manifest = json.loads((d / "manifest.json").read_text())
    if damage.startswith("rm "):
        (d / damage[3:]).unlink()
    elif damage == "manifest {":
        (d / "manifest.json").write_text("{")
    elif damage == "manifest no version":
        del manifest["version"]
        (d / "manifest.json").write_text(json.dumps(manifest))
    elif damage == "manifest format 99":
        (d / "manifest.json").write_text(json.dumps({**manifest, "format": 99}))
    elif damage in ("tokenizer damaged", "encoder damaged"):
        name = "tokenizer.json" if damage.startswith("tokenizer") else "encoder.onnx"
        (d / name).unlink()  # a symlink into the shipped model: replace it, never write through it
        (d / name).write_text("x")
    elif damage == "heads truncated":  # an interrupted copy: zipfile raises BadZipFile
        data = (d / "heads.npz").read_bytes()
        (d / "heads.npz").write_bytes(data[: len(data) // 2])
    else:
        z = dict(np.load(d / "heads.npz"))
        z["harm.W0"] = z["harm.W0"][:300]
        np.savez(d / "heads.npz", **z)
    with pytest.raises(ModelLoadError, match=expected) as e:
        Guard(model=d)
    assert str(d) in str(e.value) and "\n" not in str(e.value)


def test_a_model_argument_that_is_not_a_path_is_one_clear_error():
    with pytest.raises(ModelLoadError, match="must be a folder path, not int"):
        Guard(model=5)  # type: ignore[arg-type]


# ---- pickling (multiprocessing, Ray, joblib) --------------------------------------------------------
def test_a_guard_pickles_and_copies_without_reloading_its_model(guard):
    g = guard.with_thresholds(prompt_harm=0.8)
    for h in (pickle.loads(pickle.dumps(g)), copy.deepcopy(g)):
        assert h.model is g.model and h.thresholds == g.thresholds
        assert h.check_prompt(HARMFUL) == g.check_prompt(HARMFUL)


def _score_in_worker(g: Guard) -> dict:
    return g.check_prompt(HARMFUL).to_dict()


def test_a_guard_passed_to_a_spawned_worker_gives_the_same_verdict(guard):
    with mp.get_context("spawn").Pool(1) as pool:
        d = pool.apply(_score_in_worker, (guard,))
    assert Verdict.from_dict(d) == guard.check_prompt(HARMFUL)


def test_the_taxonomy_pickles_and_stays_read_only():
    t = load_taxonomy()
    u = pickle.loads(pickle.dumps(t))
    assert u == t and hash(u) == hash(t) and copy.deepcopy(t) == t
    with pytest.raises(TypeError):
        u.preparedness_names["x"] = {}  # type: ignore[index]


# ---- verdicts -------------------------------------------------------------------------------------------
def test_verdict_json_round_trip_and_forward_compatibility(guard):
    for v in (guard.check_prompt(HARMFUL), guard.check_response(HARMFUL, PLACEHOLDER_COMPLIANCE),
              guard.check_prompt("aG93IGRvIEkgYmFrZSBicmVhZD8=")):
        assert Verdict.from_json(v.to_json()) == v
        assert Verdict.from_json(v.to_json()).to_json() == v.to_json()
        assert Verdict.from_dict({**v.to_dict(), "field_of_a_newer_version": 1}) == v
        assert Verdict.from_dict({"id": 7, "unsafe": v.unsafe, "verdict": v.to_dict()}) == v  # classify --full


@pytest.mark.parametrize("bad, message", [
    ('{"kind": "prompt"}', "missing field"),
    ("[1, 2]", "must be a JSON object"),
    ("{not json", "not valid JSON"),
    ('{"kind": "prompt", "unsafe": false, "score": "high"}', "score must be a number"),
])
def test_verdict_from_json_refuses_what_is_not_a_verdict(bad, message):
    with pytest.raises(ValueError, match=message):
        Verdict.from_json(bad)


def test_hand_built_verdicts_are_hashable_serialisable_and_finite():
    v = Verdict(kind="prompt", unsafe=np.bool_(True), score=np.float32(0.5),
                thresholds=(("a", 0.1), ["b", np.float64(0.2)]), category_scores={"S1": 0.5})
    hash(v)
    assert json.loads(v.to_json())["thresholds"] == {"a": 0.1, "b": 0.2} and v.unsafe is True
    with pytest.raises(ValueError, match="finite"):
        Verdict(kind="prompt", unsafe=False, score=float("nan"))


# ---- argument errors ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("call, message", [
    (lambda g: g.check_prompt(None), "prompt must be a string, got NoneType"),
    (lambda g: g.check_response(None, "r"), "prompt must be a string, got NoneType"),
    (lambda g: g.check_response("p", 3), "response must be a string, got int"),
    (lambda g: g.check_prompts(None), "check_prompts takes a list of texts, got NoneType"),
    (lambda g: g.check_prompts({"a": 1}), "check_prompts takes a list of texts, got dict"),
])
def test_bad_arguments_say_what_was_expected(guard, call, message):
    with pytest.raises(TypeError, match=message):
        call(guard)


def test_check_batch_reads_a_json_pair_as_prompt_and_response(guard):
    pair = json.loads(json.dumps([[HARMFUL, PLACEHOLDER_COMPLIANCE]]))[0]
    assert guard.check_batch([pair])[0] == guard.check_response(HARMFUL, PLACEHOLDER_COMPLIANCE)


# ---- policy files -----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("thresholds:\n  prompt_harm: 0.5\ncategories: [\n  S1\naction: block\n", r"p\.yaml:5: YAML syntax error"),
    ("categories:\n  S9: {action: block}\naction: flag\ncategories:\n  S6: {action: flag}\n",
     r"p\.yaml:4: categories: duplicate key 'categories' \(first given on line 1\)"),
    ("thresholds:\n  promt_harm: 0.5\n", r"p\.yaml:2: thresholds\.promt_harm"),
])
def test_policy_errors_name_the_line(text, message):
    with pytest.raises(PolicyError, match=message):
        Policy.from_yaml(text, "p.yaml")


def test_policy_check_honours_its_input_and_output_switches(guard):
    assert Policy.from_yaml("").check(guard, HARMFUL)[1].action == "block"
    assert Policy.from_yaml("checks: {input: false}\n").check(guard, HARMFUL)[1].action == "allow"
    assert Policy.from_yaml("").check(guard, HARMFUL, PLACEHOLDER_COMPLIANCE)[1].action == "block"
    off = Policy.from_yaml("checks: {output: false}\n").check(guard, HARMFUL, PLACEHOLDER_COMPLIANCE)
    assert off[1].action == "allow" and off[0].unsafe  # the verdict is still reported


def test_verdict_reads_real_classify_full_lines(tmp_path):
    """The lines `bastion classify --full` really writes (contract fields at the top, the rest under "verdict")."""
    from typer.testing import CliRunner

    from bastion.cli.main import app
    from bastion.guard import Guard

    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"id": 1, "prompt": HARMFUL}) + "\n"
                   + json.dumps({"id": 2, "prompt": "How do I bake bread?", "response": "I can't help with that."})
                   + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["classify", str(src), "--full"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    lines = [json.loads(x) for x in res.stdout.splitlines() if x.strip()]
    g = Guard()
    assert Verdict.from_dict(lines[0]) == g.check_prompt(HARMFUL)
    assert Verdict.from_json(json.dumps(lines[1])) == g.check_response("How do I bake bread?",
                                                                       "I can't help with that.")
