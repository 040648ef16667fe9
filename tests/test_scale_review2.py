"""Second review of the corpus filter: lone surrogates in Parquet outputs, a crash during the final merge,
unreachable Ray addresses, one writer per output, deleted outputs of a finished run, one-line errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.scale import UsageError, filter_corpus, sinks
from bastion.scale.filter import checkpoint_path, lock_path
from tests.test_scale_support import FACTORY, HARMFUL, write_corpus

ROOT = Path(__file__).resolve().parents[1]
SPLIT = 16 << 10
cli = CliRunner()


def _run(inp: Path, out: Path, q: Path, **kw):
    return filter_corpus(inp, out, q, **{"guard_factory": FACTORY, "split_bytes": SPLIT, "workers": 1, **kw})


def _filter_cli(*args: str):
    return cli.invoke(app, ["filter", *args, "--guard-factory", FACTORY, "--workers", "1", "--no-progress"])


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: a connect is refused at once
    return port


# ---- finding 1: a lone surrogate escape in JSONL input can be written to Parquet -----------------------
def test_lone_surrogates_are_written_to_parquet_outputs(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="Parquet needs pyarrow")
    lines = [
        r'{"id": "1", "text": "hello \ud800 world", "tags": ["a\udfff"]}',
        r'{"id": "x\ud800", "text": "ok \ud83d\ude00"}',  # a lone surrogate in the id; a valid pair in the text
        json.dumps({"id": "3", "text": HARMFUL})[:-1] + r', "note": "bad \udc00"}',  # quarantined
        r'{"id": "q\ud801", "text": "' + HARMFUL + '"}',  # quarantined, surrogate in the id
        r'{"id": "5", "text": "mixed", "v": "s\ud800"}',
        r'{"id": "6", "text": "mixed", "v": 7}',  # v cannot share one type: a JSON text column
    ]
    inp = tmp_path / "c.jsonl"
    inp.write_text("".join(x + "\n" for x in lines), encoding="ascii")
    s = _run(inp, tmp_path / "k.parquet", tmp_path / "q.parquet")
    assert (s.kept, s.unsafe, s.errors) == (4, 2, 0)
    kept = pq.read_table(tmp_path / "k.parquet").to_pylist()
    assert [r["text"] for r in kept] == ["hello \ufffd world", "ok \U0001F600", "mixed", "mixed"]
    assert kept[0]["tags"] == ["a\ufffd"] and kept[1]["id"] == "x\ufffd"
    assert [json.loads(r["v"]) for r in kept[2:]] == ["s\ufffd", 7]
    q = pq.read_table(tmp_path / "q.parquet").to_pylist()
    # the quarantine's record is the exact original (the lone surrogate escaped in the JSON text)
    assert [json.loads(r["record"]) for r in q] == [json.loads(lines[2]), json.loads(lines[3])]
    assert q[1]["id"] == "q\ufffd"
    # a rerun is complete, and JSONL outputs still keep the input lines byte for byte
    assert _run(inp, tmp_path / "k.parquet", tmp_path / "q.parquet").already_complete
    _run(inp, tmp_path / "k.jsonl", tmp_path / "q.jsonl")
    assert (tmp_path / "k.jsonl").read_text("ascii").splitlines() == [lines[i] for i in (0, 1, 4, 5)]


# ---- finding 2: a crash during the final merge is resumed by the same command -----------------------------
class Crash(BaseException):
    """Stands in for a kill: not an Exception, so nothing on the way handles it."""


def _tables(tmp: Path, sub: str) -> tuple[list, list]:
    pq = pytest.importorskip("pyarrow.parquet")
    return (pq.read_table(tmp / sub / "k.parquet").to_pylist(), pq.read_table(tmp / sub / "q.parquet").to_pylist())


@pytest.mark.parametrize("point", ["kept merged", "quarantine merged", "done saved", "old: parts removed"])
def test_crash_during_the_final_merge_resumes(tmp_path, monkeypatch, point):
    pytest.importorskip("pyarrow")
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=60)
    for sub in ("ref", "x"):
        (tmp_path / sub).mkdir()
    ref = _run(inp, tmp_path / "ref" / "k.parquet", tmp_path / "ref" / "q.parquet", split_bytes=SPLIT // 2)
    out, q = tmp_path / "x" / "k.parquet", tmp_path / "x" / "q.parquet"
    orig_finalize = sinks.ParquetSink.finalize

    def finalize(self):
        orig_finalize(self)
        if point == "old: parts removed" and self.path == out:  # what earlier versions left after a kill
            import shutil

            shutil.rmtree(sinks.ParquetSink.parts_path(out))
            raise Crash
        if (point, self.path) in (("kept merged", out), ("quarantine merged", q)):
            raise Crash

    def cleanup(self):
        raise Crash

    monkeypatch.setattr(sinks.ParquetSink, "finalize", finalize)
    if point == "done saved":
        monkeypatch.setattr(sinks.ParquetSink, "cleanup", cleanup)
    with pytest.raises(Crash):
        _run(inp, out, q, split_bytes=SPLIT // 2)
    monkeypatch.undo()
    s = _run(inp, out, q, split_bytes=SPLIT // 2)  # the same command
    assert (s.docs, s.kept, s.unsafe, s.errors) == (ref.docs, ref.kept, ref.unsafe, ref.errors)
    assert s.already_complete == (point == "done saved")
    assert _tables(tmp_path, "x") == _tables(tmp_path, "ref")
    assert not sinks.ParquetSink.parts_path(out).exists() and not sinks.ParquetSink.parts_path(q).exists()


def test_missing_parts_before_the_merge_are_a_usage_error(tmp_path):
    pytest.importorskip("pyarrow")
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=40)
    out, q = tmp_path / "k.parquet", tmp_path / "q.jsonl"

    def stop(k):
        if k == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(inp, out, q, split_bytes=SPLIT // 2, on_split=stop)
    import shutil

    shutil.rmtree(sinks.ParquetSink.parts_path(out))
    with pytest.raises(UsageError, match="missing; use --overwrite"):
        _run(inp, out, q, split_bytes=SPLIT // 2)


# ---- findings 3 and 4: an unreachable or Ray Client address fails at once, in one line ----------------
def test_unreachable_address_fails_fast_without_ray_init(monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    from bastion.scale import ray_engine

    calls = []
    monkeypatch.setattr(ray, "init", lambda *a, **kw: calls.append(kw))
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    port = _closed_port()
    for address in (f"127.0.0.1:{port}", f"[::1]:{port}" if socket.has_ipv6 else f"localhost:{port}"):
        with pytest.raises(UsageError, match=r"cannot reach Ray at .*check --address"):
            with ray_engine.ray_session(address):
                pass
    assert calls == []
    ray_engine.check_address("auto")  # left to Ray
    ray_engine.check_address("local")


def test_ray_client_address_needs_the_client_extra(monkeypatch):
    import importlib.util

    from bastion.scale import ray_engine

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "grpc" else real(name, *a))
    with pytest.raises(UsageError, match=r"ray\[client\]"):
        ray_engine.check_address("ray://head:10001")
    assert "ray[client]" in (ROOT / "docs" / "SCALING.md").read_text("utf-8")


def test_filter_cli_with_an_unreachable_address_is_one_line(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed")
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=5)
    r = _filter_cli(str(inp), "--out", str(tmp_path / "k.jsonl"), "--quarantine", str(tmp_path / "q.jsonl"),
                    "--engine", "ray", "--address", f"127.0.0.1:{_closed_port()}")
    assert r.exit_code == 2 and "cannot reach Ray at 127.0.0.1:" in r.output and len(r.output.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]  # nothing written


def test_redteam_on_an_unreachable_address_creates_no_run(monkeypatch):
    pytest.importorskip("ray", reason="Ray is not installed")
    from bastion.redteam import runner
    from bastion.scale import ray_redteam

    def prepare(*a, **kw):
        raise AssertionError("a run was created")

    monkeypatch.setattr(runner, "prepare_campaign", prepare)
    with pytest.raises(UsageError, match="cannot reach Ray"):
        ray_redteam.run_campaign_ray(object(), object(), address=f"127.0.0.1:{_closed_port()}")


# ---- finding 5: one writer per output -------------------------------------------------------------------
def test_a_second_copy_of_the_same_command_is_refused(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=20)
    out, q = tmp_path / "k.jsonl", tmp_path / "q.jsonl"
    with open(lock_path(out), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # the first copy, still running
        with pytest.raises(UsageError, match=f"another bastion filter is writing {out}"):
            _run(inp, out, q)
        with pytest.raises(UsageError, match="another bastion filter"):
            _run(inp, out, q, overwrite=True)  # not even --overwrite removes its files
        assert not out.exists() and not checkpoint_path(out).exists()
    s = _run(inp, out, q)  # once it has finished
    assert s.docs == 25 and not s.already_complete
    assert not lock_path(out).exists()  # removed when the run ends


# ---- finding 6: a finished run whose outputs were deleted -------------------------------------------------
@pytest.mark.parametrize("gone", ["k.jsonl", "q.jsonl"])
def test_finished_run_with_a_deleted_output_is_an_error(tmp_path, gone):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=20)
    args = [str(inp), "--out", str(tmp_path / "k.jsonl"), "--quarantine", str(tmp_path / "q.jsonl")]
    assert _filter_cli(*args).exit_code == 0
    before = {n: (tmp_path / n).read_bytes() for n in ("k.jsonl", "q.jsonl")}
    (tmp_path / gone).unlink()
    r = _filter_cli(*args)
    assert r.exit_code == 2 and f"{gone} is missing" in r.output and "--overwrite" in r.output
    assert _filter_cli(*args, "--overwrite").exit_code == 0
    assert {n: (tmp_path / n).read_bytes() for n in before} == before


# ---- finding 7: one-line messages that name the real problem ---------------------------------------------
def test_parquet_text_column_of_another_type_names_the_column_type(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": [1, 2], "text": [5, 6]}), tmp_path / "c.parquet")
    r = _filter_cli(str(tmp_path / "c.parquet"), "--out", str(tmp_path / "k.parquet"),
                    "--quarantine", str(tmp_path / "q.parquet"))
    assert r.exit_code == 1
    assert "the Parquet column 'text' is int64, not a string column" in r.output and "JSON Lines" not in r.output


def test_missing_output_directory_is_a_usage_error(tmp_path):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=5)
    for out, q in (("nodir/k.jsonl", "q.jsonl"), ("k.jsonl", "nodir/q.parquet")):
        r = _filter_cli(str(inp), "--out", str(tmp_path / out), "--quarantine", str(tmp_path / q))
        assert r.exit_code == 2 and f"no such directory {tmp_path / 'nodir'}" in r.output, r.output
        assert ".tmp" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl"]


def test_corrupt_parquet_input_is_a_usage_error(tmp_path):
    pytest.importorskip("pyarrow")
    bad = tmp_path / "c.parquet"
    bad.write_bytes(b"PAR1 this is not really parquet")
    r = _filter_cli(str(bad), "--out", str(tmp_path / "k.jsonl"), "--quarantine", str(tmp_path / "q.jsonl"))
    assert r.exit_code == 2 and "not a Parquet file" in r.output and len(r.output.splitlines()) == 1


def test_guard_factory_returning_something_else_is_named(tmp_path):
    inp = tmp_path / "c.jsonl"
    write_corpus(inp, n=5)
    r = cli.invoke(app, ["filter", str(inp), "--out", str(tmp_path / "k.jsonl"), "--quarantine",
                         str(tmp_path / "q.jsonl"), "--guard-factory", "os:getcwd", "--workers", "1",
                         "--no-progress"])
    assert r.exit_code == 1 and len(r.output.splitlines()) == 1
    assert "the guard factory 'os:getcwd' returned str, not an object with check_batch" in r.output


# ---- finding 8: small red-team campaigns use every actor --------------------------------------------------
def test_small_campaign_is_cut_into_a_block_per_actor(monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed")
    from bastion.redteam import runner
    from bastion.scale import ray_redteam

    seen = {}

    class Stop(Exception):
        pass

    def from_items(items, override_num_blocks=None):
        seen["blocks"] = override_num_blocks
        raise Stop

    class P:
        cfg = svc = None
        run_ids, labels, lanes = ["r"], [None], []
        plan = [type("It", (), {"key": i})() for i in range(10)]

        def record(self, *a):
            return {}

    class Lane:
        done: set = set()

    P.lanes = [Lane()]
    svc = type("Svc", (), {"_guard": None})()
    P.svc = svc
    monkeypatch.setattr(runner, "prepare_campaign", lambda *a, **kw: P())
    monkeypatch.setattr(ray.data, "from_items", from_items)
    monkeypatch.setattr(runner, "_one_line", lambda e: str(e))

    class FakeRay:
        data = ray.data

        @staticmethod
        def cluster_resources():
            return {"CPU": 4.0}

    from contextlib import contextmanager

    @contextmanager
    def session(address, num_cpus=None):
        yield FakeRay

    monkeypatch.setattr(ray_redteam, "ray_session", session)
    with pytest.raises(Stop):
        ray_redteam.run_campaign_ray(object(), object(), workers=3)
    assert seen["blocks"] == 3  # 10 attempts, batch 16: one block per actor, not 1

