"""Corpus filter regressions from the scale review: non-UTF-8 lines in a Parquet quarantine, JSONL records of
mixed types written to Parquet, runs that stop before their first split, a UTF-8 BOM, a wrong --text-field or
a JSON array, pool workers outliving a killed driver, and one-line engine errors (no Ray needed here)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.scale import UsageError, filter_corpus
from bastion.scale import filter as filter_mod
from bastion.scale.filter import checkpoint_path
from tests.test_scale_support import BROKEN_FACTORY, FACTORY, SLOW_FACTORY, read_jsonl, write_corpus

ROOT = Path(__file__).resolve().parents[1]
SPLIT = 16 << 10


def _run(inp: Path, out: Path, q: Path, **kw):
    return filter_corpus(inp, out, q, **{"guard_factory": FACTORY, "split_bytes": SPLIT, "workers": 1, **kw})


def _lines(tmp: Path, name: str, lines: list[bytes]) -> Path:
    p = tmp / name
    p.write_bytes(b"".join(x + b"\n" for x in lines))
    return p


# ---- finding 2: a Parquet quarantine keeps the bytes of a line that is not UTF-8 ----------------------
def test_parquet_quarantine_keeps_non_utf8_lines(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow")
    bad = b'{"id": 4, "text": "caf\xe9"}'
    inp = _lines(tmp_path, "c.jsonl", [b'{"id": 1, "text": "ok"}', bad, b'{"id": 2, "text": "trunc'])
    s = _run(inp, tmp_path / "k.jsonl", tmp_path / "q.parquet")
    rows = pq.read_table(tmp_path / "q.parquet").to_pylist()
    assert s.errors == 2 and len(rows) == 2
    assert base64.b64decode(rows[0]["raw_base64"]) == bad + b"\n" and "invalid UTF-8" in rows[0]["error"]
    assert rows[1]["raw"] == '{"id": 2, "text": "trunc' and rows[1]["raw_base64"] is None


# ---- finding 3: JSONL records of any shape can be written to Parquet, and the run finishes --------------
def test_jsonl_records_of_mixed_types_to_parquet(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow")
    recs = [{"id": i, "text": f"doc {i}", "x": i, "tags": ["a"]} for i in range(100)]  # x: int in early splits
    recs += [{"id": 100 + i, "text": f"doc {100 + i}", "x": f"s{i}"} for i in range(100)]  # ... a string later
    recs += [{"id": 200, "text": "doc 200", "meta": {}, "mixed": [1, "a"], "x": None},  # within one split too
             {"id": 201, "text": "doc 201", "mixed": [2], "x": 1.5, "nested": {"k": [1, 2]}}]
    inp = tmp_path / "c.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in recs))
    out = tmp_path / "k.parquet"
    s = _run(inp, out, tmp_path / "q.jsonl", split_bytes=2800)
    assert s.kept == len(recs) and json.loads(checkpoint_path(out).read_text())["done"]
    assert not (tmp_path / "k.parquet.parts").exists()
    t = pq.read_table(out)
    assert str(t.schema.field("id").type) == "int64" and str(t.schema.field("text").type) == "string"
    assert t.column("id").to_pylist() == [r["id"] for r in recs]  # consistent fields keep their type
    json_cols = {f.name for f in t.schema if f.metadata and f.metadata.get(b"bastion.encoding") == b"json"}
    assert json_cols == {"x", "meta", "mixed"}
    for name in ("x", "meta", "mixed"):  # nothing lost: each value is its JSON text
        got = [None if v is None else json.loads(v) for v in t.column(name).to_pylist()]
        assert got == [r.get(name) for r in recs]
    assert t.column("tags").to_pylist()[:2] == [["a"], ["a"]]
    assert t.column("nested").to_pylist()[-1] == {"k": [1, 2]}


# ---- finding 4: a run that fails or stops before its first split ---------------------------------------
def test_failed_start_writes_nothing_and_the_correct_command_then_runs(tmp_path):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=20)
    out, q = tmp_path / "k.jsonl", tmp_path / "q.jsonl"
    with pytest.raises(Exception, match="manifest.json"):
        filter_corpus(inp, out, q, model=str(tmp_path / "no-model"), workers=1)
    assert not out.exists() and not q.exists() and not checkpoint_path(out).exists()
    with pytest.raises(RuntimeError, match="could not load the guard.*placeholder guard failure"):
        _run(inp, out, q, guard_factory=BROKEN_FACTORY, workers=2)  # a process pool fails before writing too
    assert not out.exists() and not q.exists()
    s = _run(inp, out, q)
    assert s.docs > 0 and not s.resumed


def test_run_stopped_before_its_first_split_resumes(tmp_path, monkeypatch):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=40)
    _run(inp, tmp_path / "rk.jsonl", tmp_path / "rq.jsonl")
    out, q = tmp_path / "k.jsonl", tmp_path / "q.jsonl"
    real = filter_mod._write_jsonl_split

    def stop(*a, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(filter_mod, "_write_jsonl_split", stop)
    with pytest.raises(KeyboardInterrupt):
        _run(inp, out, q)
    assert out.exists() and checkpoint_path(out).exists()  # empty outputs, recorded at position 0
    monkeypatch.setattr(filter_mod, "_write_jsonl_split", real)
    s = _run(inp, out, q)  # the same command resumes (no "already exists")
    assert out.read_bytes() == (tmp_path / "rk.jsonl").read_bytes()
    assert q.read_bytes() == (tmp_path / "rq.jsonl").read_bytes()
    assert s.docs > 0
    # an empty start with other options is not a different run worth protecting: it simply starts again
    out2, q2 = tmp_path / "k2.jsonl", tmp_path / "q2.jsonl"
    monkeypatch.setattr(filter_mod, "_write_jsonl_split", stop)
    with pytest.raises(KeyboardInterrupt):
        _run(inp, out2, q2, threshold=0.5)
    monkeypatch.setattr(filter_mod, "_write_jsonl_split", real)
    _run(inp, out2, q2)
    assert out2.read_bytes() == (tmp_path / "rk.jsonl").read_bytes()


# ---- finding 5: a UTF-8 byte-order mark ---------------------------------------------------------------
@pytest.mark.parametrize("out_name", ["k.jsonl", "k.parquet"])
def test_utf8_bom_is_not_part_of_the_first_document(tmp_path, out_name):
    if out_name.endswith(".parquet"):
        pytest.importorskip("pyarrow", reason="Parquet needs pyarrow")
    inp = tmp_path / "bom.jsonl"
    inp.write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "hello"}\n{"id": 2, "text": "bye"}\n')
    s = _run(inp, tmp_path / out_name, tmp_path / "q.jsonl")
    assert (s.kept, s.errors) == (2, 0)
    if out_name.endswith(".jsonl"):  # the kept line is the input line without the BOM
        assert (tmp_path / out_name).read_bytes() == b'{"id": 1, "text": "hello"}\n{"id": 2, "text": "bye"}\n'


# ---- finding 6: a wrong --text-field, a JSON array, an input that is all malformed -----------------------
def test_wrong_text_field_and_json_arrays_are_usage_errors(tmp_path):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=30, with_bad=False)
    with pytest.raises(UsageError, match=r"none of the first 30 records has the field 'body'.*--text-field"):
        _run(inp, tmp_path / "k.jsonl", tmp_path / "q.jsonl", text_field="body")
    assert not (tmp_path / "k.jsonl").exists()
    arr = tmp_path / "a.json"
    arr.write_text('[\n  {"id": 1, "text": "a"},\n  {"id": 2, "text": "b"}\n]\n')
    with pytest.raises(UsageError, match="a JSON array, not JSON Lines"):
        _run(arr, tmp_path / "k.jsonl", tmp_path / "q.jsonl")
    one_line = tmp_path / "b.json"
    one_line.write_text('[{"id": 1, "text": "a"}]')
    with pytest.raises(UsageError, match="a JSON array"):
        _run(one_line, tmp_path / "k.jsonl", tmp_path / "q.jsonl")
    pretty = tmp_path / "p.jsonl"
    pretty.write_text(arr.read_text())
    with pytest.raises(UsageError, match="a JSON array"):
        _run(pretty, tmp_path / "k.jsonl", tmp_path / "q.jsonl")
    # JSONL whose records are arrays is still JSONL: they are quarantined as malformed, not refused
    lists = _lines(tmp_path, "l.jsonl", [b"[1, 2]", b'{"id": 1, "text": "ok"}'])
    s = _run(lists, tmp_path / "k.jsonl", tmp_path / "q.jsonl")
    assert (s.kept, s.errors) == (1, 1)


def test_cli_fails_when_every_document_is_malformed(tmp_path):
    inp = _lines(tmp_path, "g.jsonl", [b"not json", b"[1, 2]", b'{"id": 1, "text": 5}'])
    p = subprocess.run([sys.executable, "-m", "bastion", "filter", str(inp), "--out", str(tmp_path / "k.jsonl"),
                        "--quarantine", str(tmp_path / "q.jsonl"), "--guard-factory", FACTORY, "--workers", "1",
                        "--no-progress"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stderr
    assert "error: all 3 documents were malformed" in p.stderr and "Traceback" not in p.stderr
    assert len(read_jsonl(tmp_path / "q.jsonl")) == 3  # nothing dropped


# ---- finding 7: pool workers end with a SIGKILLed driver --------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and process sessions")
def test_pool_workers_do_not_outlive_a_killed_driver(tmp_path):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=150)
    out = tmp_path / "k.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "bastion", "filter", str(inp), "--out", str(out), "--quarantine",
                          str(tmp_path / "q.jsonl"), "--guard-factory", SLOW_FACTORY, "--workers", "2",
                          "--split-mb", str(SPLIT / (1 << 20)), "--no-progress"],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "BASTION_TEST_DELAY": "0.3"},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def session() -> list[int]:
        out_ = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.getsid(int(d)) == p.pid:
                        out_.append(int(d))
                except OSError:
                    pass
        return out_

    try:
        deadline = time.time() + 90
        while time.time() < deadline:  # wait until the workers are classifying
            if checkpoint_path(out).exists() and len(session()) >= 3:
                break
            time.sleep(0.1)
        assert len(session()) >= 3, "the pool did not start"
        p.kill()  # SIGKILL the driver only
        p.wait()
        deadline = time.time() + 10
        while session() and time.time() < deadline:
            time.sleep(0.2)
        assert session() == []
    finally:
        for pid in session():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


# ---- finding 8: one-line errors, the factory checked on the driver, Ray's local start and pool size ---------
def test_guard_factory_is_checked_before_anything_starts(tmp_path):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=5)
    for bad, msg in [("tests.test_scale_support:nonexistent", "has no 'nonexistent'"),
                     ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
                     ("nocolon", "must be 'module:function'")]:
        for engine in ("local", "ray"):
            with pytest.raises(UsageError, match=msg):
                _run(inp, tmp_path / "k.jsonl", tmp_path / "q.jsonl", guard_factory=bad, engine=engine)
    assert not (tmp_path / "k.jsonl").exists()


def test_root_cause_reduces_a_remote_traceback_to_one_line():
    from bastion.scale.ray_engine import root_cause

    class Wrapped(Exception):
        pass

    msg = ("The actor died because of an error raised in its creation task, ray::_MapWorker.__init__()\n"
           "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    raise ValueError('inner')\n"
           "  ...\nbastion.models.ModelLoadError: /m: manifest.json: missing\n")
    assert root_cause(Wrapped(msg)) == "ModelLoadError: /m: manifest.json: missing"
    outer = RuntimeError("task failed")
    outer.cause = KeyError("k")  # Ray's RayTaskError carries the worker's exception as `cause`
    assert root_cause(outer) == "KeyError: 'k'"
    assert root_cause(OSError("plain")) == "OSError: plain"


def test_ray_starts_locally_without_address_and_sizes_the_pool_from_the_cluster(monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    from bastion.scale import ray_engine

    if ray.is_initialized():
        pytest.skip("a Ray instance is already connected in this process")
    calls = []
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # must be ignored without --address
    monkeypatch.setattr(ray, "init", lambda **kw: calls.append(kw))
    monkeypatch.setattr(ray, "shutdown", lambda: calls.append("shutdown"))
    with ray_engine.ray_session(None, num_cpus=3):
        pass
    assert calls[0]["address"] == "local" and calls[0]["num_cpus"] == 3 and calls[-1] == "shutdown"
    calls.clear()
    with ray_engine.ray_session("auto"):
        pass
    assert calls[0]["address"] == "auto" and "num_cpus" not in calls[0]

    def refuse(**kw):
        raise ConnectionError("Could not find any running Ray instance.\nPlease start one first.")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(ray_engine, "check_address", lambda a: None)  # past the reachability probe: ray.init's own error
    with pytest.raises(RuntimeError, match=r"^cannot start Ray at ray://h:1: ConnectionError: Could not find") as e:
        with ray_engine.ray_session("ray://h:1"):
            pass
    assert "\n" not in str(e.value)

    class FakeRay:
        @staticmethod
        def is_initialized():
            return True

        @staticmethod
        def cluster_resources():
            return {"CPU": 48.0, "GPU": 2.0}

    assert ray_engine.default_actors(FakeRay, "auto", None) == 48
    assert ray_engine.default_actors(FakeRay, "auto", 6) == 6


def test_cli_error_is_one_line():
    from bastion.cli.scale_cmds import _one_line

    assert _one_line(RuntimeError("a\nTraceback...\nValueError: inner")) == "ValueError: inner"
    assert _one_line(ValueError("plain")) == "ValueError: plain"
