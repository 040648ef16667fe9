"""`bastion train`: the staged build (a failed or interrupted run leaves --out as it was), the flags that would
replace the fine-tuned encoder, and the argument checks that stop a run in one line before any work.

The heavy steps (data build, export, fine-tuning) are stubbed; every model is a copy of the shipped one under tmp_path.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import bastion.train.data as data
import bastion.train.export as export
import bastion.train.fit as fit
from bastion.cli.main import app
from bastion.cli.train_cmds import TRAIN_MODULES
from bastion.models import DEFAULT_MODEL_DIR
from bastion.train.data import REQUIRED_DATA, Example

needs_train_extra = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in TRAIN_MODULES),
                                       reason="the train extra is not installed")


class Stop(Exception):
    pass


def _digest(d: Path) -> dict[str, str]:
    return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(d.iterdir())}


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


@pytest.fixture
def model(tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, out)
    return out


def make_data_root(root: Path) -> Path:
    """A dataset root holding every file a build reads (empty: the build itself is stubbed)."""
    for f in REQUIRED_DATA:
        p = root / f
        if p.suffix:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.touch()
        else:
            p.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    return make_data_root(tmp_path / "datasets")


@pytest.fixture
def tiny_build(monkeypatch):
    exs = [Example(task="prompt", text=f"benign prompt {i}", label=i % 2, source="s", licence="MIT") for i in range(20)]
    monkeypatch.setattr(fit, "build", lambda root, **kw: [Example(**vars(e)) for e in exs])
    monkeypatch.setattr(fit, "wrapped_contexts", lambda *a, **kw: [])
    monkeypatch.setattr(data, "RECORDED_BUILD", data.RECORDED_BUILD)


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if the CLI starts training or exports an encoder."""
    monkeypatch.setattr(fit, "train", lambda *a, **kw: pytest.fail("training started"))
    monkeypatch.setattr(export, "export_encoder", lambda *a, **kw: pytest.fail("encoder exported"))
    monkeypatch.setattr(data, "RECORDED_BUILD", data.RECORDED_BUILD)


def _invoke(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def _one_line_usage_error(r) -> str:
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and "Traceback" not in r.output, r.output
    return r.output


# ---- 1. the staged build --------------------------------------------------------------------------------------------
def test_a_build_that_fails_after_the_encoder_export_leaves_the_model_untouched(model, tiny_build, monkeypatch):
    """The reviewer's repro: --export-encoder, then a stop. The old model must still be what loads from --out."""
    before = _digest(model)
    exported = []

    def fake_export(out_dir: Path, quantize: bool = True) -> Path:
        exported.append(out_dir)
        (out_dir / "encoder.onnx").write_bytes(b"a base encoder")
        return out_dir / "encoder.onnx"

    monkeypatch.setattr(export, "export_encoder", fake_export)
    monkeypatch.setattr(fit, "Encoder", lambda *a, **kw: (_ for _ in ()).throw(Stop("killed after the export")))
    with pytest.raises(Stop):
        fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model, export_encoder=True), log=lambda s: None)
    assert exported and exported[0] != model and exported[0].parent == model.parent  # into the stage beside it
    assert _digest(model) == before
    assert _leftovers(model) == []  # the stage is gone


@needs_train_extra
def test_the_cli_run_of_that_repro_leaves_the_model_untouched(model, data_root, tiny_build, monkeypatch):
    before = _digest(model)
    monkeypatch.setattr(export, "export_encoder",
                        lambda out_dir, quantize=True: (out_dir / "encoder.onnx").write_bytes(b"a base encoder"))
    monkeypatch.setattr(fit, "Encoder", lambda *a, **kw: (_ for _ in ()).throw(Stop("killed after the export")))
    r = _invoke("--data", str(data_root), "--out", str(model), "--export-encoder")
    assert isinstance(r.exception, Stop), r.output
    assert _digest(model) == before and _leftovers(model) == []


def test_an_interrupted_build_after_partial_writes_leaves_the_model_untouched(model, monkeypatch):
    before = _digest(model)

    def partial(cfg, log):
        (cfg.out_dir / "encoder.onnx").write_bytes(b"new encoder")
        (cfg.out_dir / "heads.npz").write_bytes(b"new heads")
        m = json.loads((cfg.out_dir / "manifest.json").read_text())
        m["thresholds"] = dict.fromkeys(m["thresholds"], 0.5)
        m["cascade"] = {}
        (cfg.out_dir / "manifest.json").write_text(json.dumps(m))  # the placeholder manifest of fit.py
        raise KeyboardInterrupt

    monkeypatch.setattr(fit, "_train_into", partial)
    with pytest.raises(KeyboardInterrupt):
        fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model), log=lambda s: None)
    assert _digest(model) == before and _leftovers(model) == []


def test_a_finished_build_replaces_the_model_whole_and_leaves_nothing_beside_it(model, monkeypatch):
    enc = hashlib.md5((model / "encoder.onnx").read_bytes()).hexdigest()
    seen = {}

    def finish(cfg, log):
        seen["stage"] = cfg.out_dir
        seen["copied"] = _digest(cfg.out_dir) == _digest(model)  # the stage starts as a copy (--heads-only keeps it)
        m = json.loads((cfg.out_dir / "manifest.json").read_text())
        m["version"] = "bastion-guard-test-staged"
        (cfg.out_dir / "manifest.json").write_text(json.dumps(m))
        return m

    monkeypatch.setattr(fit, "_train_into", finish)
    m = fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model, heads_only=True), log=lambda s: None)
    assert m["version"] == "bastion-guard-test-staged"
    assert seen["stage"] != model and seen["copied"]
    assert json.loads((model / "manifest.json").read_text())["version"] == "bastion-guard-test-staged"
    assert hashlib.md5((model / "encoder.onnx").read_bytes()).hexdigest() == enc
    assert _leftovers(model) == []
    from bastion.models.runtime import CascadeModel

    assert CascadeModel(model, threads=1).version == "bastion-guard-test-staged"


def test_a_new_out_folder_appears_only_when_the_build_is_complete(tmp_path, monkeypatch):
    out = tmp_path / "sub" / "new-model"
    states = []

    def finish(cfg, log):
        states.append(out.exists())
        (cfg.out_dir / "manifest.json").write_text("{}")
        return {}

    monkeypatch.setattr(fit, "_train_into", finish)
    fit.train(fit.TrainConfig(data_root=tmp_path, out_dir=out), log=lambda s: None)
    assert states == [False] and (out / "manifest.json").read_text() == "{}" and _leftovers(out) == []


def test_a_stale_stage_of_a_killed_run_is_neither_read_nor_mistaken_for_the_new_one(model, monkeypatch):
    stale = model.parent / f".{model.name}.stage-killed"
    stale.mkdir()
    (stale / "manifest.json").write_text('{"version": "half-built"}')
    seen, logs = {}, []

    def finish(cfg, log):
        seen["stage"] = cfg.out_dir
        return json.loads((cfg.out_dir / "manifest.json").read_text())

    monkeypatch.setattr(fit, "_train_into", finish)
    m = fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model), log=logs.append)
    assert seen["stage"] != stale and m["version"] == json.loads((DEFAULT_MODEL_DIR / "manifest.json").read_text())[
        "version"]
    assert any(str(stale) in line and "interrupted" in line for line in logs)
    assert (stale / "manifest.json").exists()  # not ours to delete: it is named in the log


def test_continuing_from_the_out_folder_reads_the_untouched_original(model, tiny_build, monkeypatch):
    import bastion.train.finetune as ft

    before = _digest(model)
    seen = {}

    def stop(exs, enc, base, out_dir, init=None, **kw):
        seen.update(init=init, out_dir=out_dir, init_files=_digest(init))
        (out_dir / "encoder.onnx").write_bytes(b"half-written export")
        raise Stop

    monkeypatch.setattr(ft, "finetune", stop)
    monkeypatch.setattr(export, "base_model_path", lambda: model.parent / "minilm")
    with pytest.raises(Stop):
        fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model, continue_from=model), log=lambda s: None)
    assert seen["init"] == model and seen["out_dir"] != model and seen["init_files"] == before
    assert _digest(model) == before and _leftovers(model) == []


def test_a_failed_swap_puts_the_old_model_back(model):
    before = _digest(model)
    with pytest.raises(FileNotFoundError):
        fit._swap_in(model.parent / "no-such-stage", model)
    assert _digest(model) == before and _leftovers(model) == []


# ---- 2. flags that would replace the fine-tuned encoder -------------------------------------------------------------
def test_heads_only_never_exports_over_the_encoder_it_keeps(model, monkeypatch):
    monkeypatch.setattr(export, "export_encoder", lambda *a, **kw: pytest.fail("encoder exported"))
    (model / "tokenizer.json").unlink()
    before = _digest(model)
    with pytest.raises(ValueError, match="tokenizer.json missing"):
        fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model, heads_only=True), log=lambda s: None)
    shutil.copy(DEFAULT_MODEL_DIR / "tokenizer.json", model / "tokenizer.json")
    with pytest.raises(ValueError, match="--heads-only keeps the fine-tuned one"):
        fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model, heads_only=True, export_encoder=True))
    with pytest.raises(ValueError, match="--continue-from starts from a trained model"):
        fit.train(fit.TrainConfig(data_root=model.parent, out_dir=model, export_encoder=True, continue_from=model))
    assert _digest(model) == {**before, "tokenizer.json": _digest(DEFAULT_MODEL_DIR)["tokenizer.json"]}
    assert _leftovers(model) == []


@pytest.mark.parametrize("flags, message", [
    (["--export-encoder", "--heads-only"], "--heads-only keeps the fine-tuned one"),
    (["--export-encoder", "--continue-from", "MODEL"], "--continue-from starts from a trained model"),
    (["--heads-only", "--steps", "10"], "--steps sets the fine-tuning; --heads-only fine-tunes nothing"),
    (["--heads-only", "--epochs", "1"], "--epochs sets the fine-tuning"),
    (["--heads-only", "--minutes", "5"], "--minutes sets the fine-tuning"),
    (["--heads-only", "--device", "cpu"], "--device sets the fine-tuning"),
    (["--steps", "10", "--epochs", "1"], "--steps and --epochs are alternatives"),
    (["--device", "meta"], "'meta' is not available for training"),
])
def test_conflicting_or_ignored_flags_are_usage_errors(model, data_root, no_work, flags, message):
    before = _digest(model)
    flags = [str(model) if f == "MODEL" else f for f in flags]
    out = _one_line_usage_error(_invoke("--data", str(data_root), "--out", str(model), *flags))
    assert message in out
    assert _digest(model) == before


def test_heads_only_on_a_folder_without_a_tokenizer_is_a_usage_error(model, data_root, no_work):
    (model / "tokenizer.json").unlink()
    out = _one_line_usage_error(_invoke("--data", str(data_root), "--out", str(model), "--heads-only"))
    assert "tokenizer.json missing" in out


# ---- 3. --extra, read before any work -------------------------------------------------------------------------------
_ROW = {"prompt": "[PLACEHOLDER-REQUEST]", "response": None, "label": 0, "task": "prompt", "category": None,
        "principle_id": "p1"}


@pytest.mark.parametrize("content, message", [
    (b'{"prompt":"hi"\n', "bad.jsonl:1: invalid JSON"),
    (b'{"prompt":"h\xff\xfei","response":null,"label":0,"task":"prompt","category":null,"principle_id":"p"}\n',
     "bad.jsonl:1: not UTF-8"),
    (b'{"text":"hi","label":1}\n', "field 'prompt': Field required"),
    (json.dumps({**_ROW, "label": "1"}).encode() + b"\n", "must be the integer 0 or 1, not '1'"),
    (json.dumps({**_ROW, "label": 1.0}).encode() + b"\n", "must be the integer 0 or 1, not 1.0"),
    (json.dumps({**_ROW, "label": True}).encode() + b"\n", "must be the integer 0 or 1, not True"),
    (json.dumps({k: v for k, v in _ROW.items() if k != "principle_id"}).encode() + b"\n",
     "field 'principle_id': Field required"),
    (b"", "no training rows"),
    (b"\n\n", "no training rows"),
    (json.dumps(_ROW).encode() + b"\n" + json.dumps({**_ROW, "label": 2}).encode() + b"\n", "bad.jsonl:2"),
])
def test_a_bad_extra_file_stops_the_run_in_one_line_before_any_export(tmp_path, data_root, no_work, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(content)
    out = tmp_path / "new-model"
    r = _invoke("--data", str(data_root), "--out", str(out), "--export-encoder", "--extra", str(bad))
    assert message in " ".join(_one_line_usage_error(r).split())
    assert not out.exists()


def test_load_extra_accepts_integer_labels_and_names_the_source(tmp_path):
    from bastion.train.extra import load_extra

    f = tmp_path / "ok.jsonl"
    f.write_text(json.dumps(_ROW) + "\n\n" + json.dumps({**_ROW, "label": 1, "category": "S2"}) + "\n")
    ex = load_extra(f)
    assert [(e.label, e.category, e.source) for e in ex] == [(0, None, "extra:ok.jsonl"), (1, "S2", "extra:ok.jsonl")]
    assert all(type(e.label) is int for e in ex)


# ---- 4. other bad arguments -----------------------------------------------------------------------------------------
def test_bad_data_out_seed_and_threads_are_one_line_usage_errors(tmp_path, data_root, no_work):
    afile = tmp_path / "afile"
    afile.write_text("x")
    new = tmp_path / "new-model"
    cases = [
        (["--data", str(tmp_path), "--out", str(new)], "lacks harmful_prompts_permissive/prompts.jsonl.gz and"),
        (["--data", str(afile), "--out", str(new)], "is a file, not a folder"),
        (["--data", str(tmp_path / "nowhere"), "--out", str(new)], "not found"),
        (["--data", str(data_root), "--out", str(afile)], f"--out {afile} is a file, not a model folder"),
        (["--data", str(data_root), "--out", str(new), "--heads-only"], "encoder.onnx missing"),
    ]
    for args, message in cases:
        assert message in " ".join(_one_line_usage_error(_invoke(*args)).split()), args
        assert not new.exists()
    for flag in ("--seed", "--threads"):
        r = _invoke("--data", str(data_root), "--out", str(new), flag, "-1")
        assert r.exit_code == 2 and "Traceback" not in r.output and flag in r.output
    empty = tmp_path / "empty-model"
    empty.mkdir()
    _one_line_usage_error(_invoke("--data", str(data_root), "--out", str(empty), "--heads-only"))
    assert list(empty.iterdir()) == []


def test_a_damaged_continue_from_model_is_refused_before_the_data_build(model, data_root, tmp_path, no_work):
    with (model / "heads.npz").open("r+b") as f:
        f.truncate(200)
    out = _one_line_usage_error(_invoke("--data", str(data_root), "--out", str(tmp_path / "new"),
                                        "--continue-from", str(model)))
    assert "--continue-from:" in out and "heads.npz" in out and ("cannot be opened" in out or "unreadable" in out)
    import numpy as np

    np.savez(model / "heads.npz", other=np.zeros(1))  # a readable file without the heads (was: KeyError 'harm.W0')
    out = _one_line_usage_error(_invoke("--data", str(data_root), "--out", str(tmp_path / "new"),
                                        "--continue-from", str(model)))
    assert "heads.npz" in out and "harm" in out
    (model / "manifest.json").write_text("{}")
    out = _one_line_usage_error(_invoke("--data", str(data_root), "--out", str(tmp_path / "new"),
                                        "--continue-from", str(model)))
    assert "manifest.json" in out and not (tmp_path / "new").exists()


# ---- 9. what reaches the build, and the budget warning ---------------------------------------------------------------
@pytest.fixture
def recorded_config(monkeypatch):
    seen = {}

    def fake_train(cfg, log=print):
        seen["cfg"] = cfg
        return {"version": "v", "report": {"tasks": {}}}

    monkeypatch.setattr(fit, "train", fake_train)
    monkeypatch.setattr(export, "export_encoder", lambda *a, **kw: pytest.fail("the CLI exported an encoder"))
    monkeypatch.setattr(data, "RECORDED_BUILD", data.RECORDED_BUILD)
    return seen


@needs_train_extra
def test_defaults_reach_the_build_without_a_warning(tmp_path, data_root, recorded_config):
    r = _invoke("--data", str(data_root), "--out", str(tmp_path / "m"), "--threads", "0", "--export-encoder")
    assert r.exit_code == 0, r.output
    cfg = recorded_config["cfg"]
    assert (cfg.steps, cfg.epochs, cfg.minutes, cfg.device, cfg.threads) == (1250, None, 52.0, "cpu", None)
    assert cfg.export_encoder and cfg.out_dir == tmp_path / "m" and "warning" not in r.output


@needs_train_extra
def test_a_cpu_plan_that_cannot_fit_the_budget_is_warned_about_before_the_build(tmp_path, data_root, recorded_config):
    r = _invoke("--data", str(data_root), "--out", str(tmp_path / "m"), "--epochs", "3")
    assert r.exit_code == 0, r.output
    assert "warning: about 6,693 steps may not fit --minutes 52" in " ".join(r.output.split())
    assert recorded_config["cfg"].epochs == 3.0
    r = _invoke("--data", str(data_root), "--out", str(tmp_path / "m"), "--steps", "100", "--minutes", "1")
    assert "warning: about 100 steps may not fit --minutes 1" in " ".join(r.output.split())
    r = _invoke("--data", str(data_root), "--out", str(tmp_path / "m"), "--steps", "20", "--minutes", "1")
    assert "warning" not in r.output
