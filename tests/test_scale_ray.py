"""Ray engine of the corpus filter, against a small local Ray instance (num_cpus=2)."""

from __future__ import annotations

import gc
import socket
import subprocess
import sys
import time

import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")

from bastion.scale import filter_corpus  # noqa: E402
from bastion.scale.ray_engine import local_runtime_env  # noqa: E402
from tests.test_scale_support import BROKEN_FACTORY, FACTORY, ids, read_jsonl, write_corpus  # noqa: E402

SPLIT = 16 << 10


@pytest.fixture(scope="module")
def local_ray():
    """One small local Ray cluster for the module (the engine reuses an initialised Ray). The head runs in its
    own `ray start --block` process and the test process only connects to it: when the test process started
    Ray itself, tearing it down once killed the whole pytest run (exit status 1, no summary) on a loaded machine,
    a known Ray shutdown race."""
    if ray.is_initialized():
        yield ray
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = pytest.MonkeyPatch()
    env.setenv("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster; the head and this process agree
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                             "--include-dashboard=false", "--disable-usage-stats"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ray.init(address=f"127.0.0.1:{port}", runtime_env=local_runtime_env(), log_to_driver=False)
                break
            except Exception:
                if head.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(1)
        yield ray
    finally:
        if ray.is_initialized():
            # Collect cyclic garbage holding object refs or actor handles now, in this thread: collected later, their
            # destructors ran in whatever thread triggered the GC and touched the shut-down core worker, which makes
            # Ray end the whole process ("The core worker has already been shutdown ... The process will exit"):
            # a CI run lost its last 80 tests and its summary that way.
            gc.collect()
            ray.shutdown()
            gc.collect()
        head.terminate()
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
        env.undo()


def test_ray_and_local_engines_keep_and_quarantine_the_same_ids(tmp_path, local_ray):
    inp = tmp_path / "corpus.jsonl"
    exp = write_corpus(inp, n=80)
    common = {"guard_factory": FACTORY, "split_bytes": SPLIT}
    sl = filter_corpus(inp, tmp_path / "lk.jsonl", tmp_path / "lq.jsonl", engine="local", workers=2, **common)
    sr = filter_corpus(inp, tmp_path / "rk.jsonl", tmp_path / "rq.jsonl", engine="ray", workers=2, **common)
    assert ids(tmp_path / "rk.jsonl") == ids(tmp_path / "lk.jsonl")
    assert set(ids(tmp_path / "rk.jsonl")) == {i for i in exp["kept"] if int(i[4:]) < 80}
    assert ids(tmp_path / "rq.jsonl") == ids(tmp_path / "lq.jsonl")
    assert [r["reason"] for r in read_jsonl(tmp_path / "rq.jsonl")] == \
        [r["reason"] for r in read_jsonl(tmp_path / "lq.jsonl")]
    assert (sr.docs, sr.kept, sr.unsafe, sr.errors, sr.categories) == \
        (sl.docs, sl.kept, sl.unsafe, sl.errors, sl.categories)
    assert sr.errors > 0 and sr.unsafe > 0


def test_ray_engine_resumes(tmp_path, local_ray):
    inp = tmp_path / "corpus.jsonl"
    write_corpus(inp, n=60, with_bad=False)
    common = {"guard_factory": FACTORY, "split_bytes": SPLIT, "engine": "ray", "workers": 2}
    filter_corpus(inp, tmp_path / "ref.jsonl", tmp_path / "refq.jsonl", **{**common, "engine": "local"})

    def crash(k: int) -> None:
        if k == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        filter_corpus(inp, tmp_path / "k.jsonl", tmp_path / "q.jsonl", on_split=crash, **common)
    s = filter_corpus(inp, tmp_path / "k.jsonl", tmp_path / "q.jsonl", **common)
    assert s.resumed
    assert (tmp_path / "k.jsonl").read_bytes() == (tmp_path / "ref.jsonl").read_bytes()
    assert (tmp_path / "q.jsonl").read_bytes() == (tmp_path / "refq.jsonl").read_bytes()


def test_ray_worker_failure_is_one_line_and_the_run_can_be_rerun(tmp_path, local_ray):
    inp = tmp_path / "corpus.jsonl"
    write_corpus(inp, n=10, with_bad=False)
    with pytest.raises(RuntimeError) as e:
        filter_corpus(inp, tmp_path / "k.jsonl", tmp_path / "q.jsonl", engine="ray", workers=1, split_bytes=SPLIT,
                      guard_factory=BROKEN_FACTORY)
    assert str(e.value) == "Ray worker failed: RuntimeError: placeholder guard failure"
    s = filter_corpus(inp, tmp_path / "k.jsonl", tmp_path / "q.jsonl", engine="ray", workers=1, split_bytes=SPLIT,
                      guard_factory=FACTORY)  # nothing was committed: the corrected command simply runs
    assert s.docs == 10 and len(ids(tmp_path / "k.jsonl")) + len(ids(tmp_path / "q.jsonl")) == 10


def _outcomes(store, run_id):
    return {a.key: (a.technique, a.category, a.benign, a.prompt, a.reply, a.blocked_by, a.success, a.refused,
                    a.score, a.error) for a in store.attempts(run_id)}


def test_ray_redteam_matches_a_local_run(tmp_path, local_ray, redteam_sandbox):
    from bastion.redteam.runner import CampaignConfig, run_campaign
    from bastion.scale.ray_redteam import run_campaign_ray
    from bastion.store import Store

    cfg = CampaignConfig(target="guard", techniques=["direct", "rot13", "atbash"], limit=42, benign_limit=6,
                         seed=1, concurrency=4)
    local, ray_store = Store(tmp_path / "local.db"), Store(tmp_path / "ray.db")
    lr = run_campaign(cfg, local)
    seen = []
    rr = run_campaign_ray(cfg, ray_store, workers=2, batch_size=8, progress=lambda d, t: seen.append((d, t)),
                          worker_setup="tests.test_scale_support:redteam_worker_setup")
    assert rr.status == "completed" and seen[-1] == (48, 48)
    lo, ro = _outcomes(local, lr.run_ids[0]), _outcomes(ray_store, rr.run_ids[0])
    assert len(ro) == 48 and ro == lo
    assert rr.summaries[rr.run_ids[0]] == lr.summaries[lr.run_ids[0]]
    assert ray_store.get_run(rr.run_ids[0]).config == local.get_run(lr.run_ids[0]).config


def test_ray_redteam_error_storm_fails_the_run_but_keeps_attempts(tmp_path, local_ray, redteam_sandbox):
    from bastion.redteam.runner import CampaignConfig, CampaignError
    from bastion.scale.ray_redteam import run_campaign_ray
    from bastion.store import Store

    st = Store(tmp_path / "b.db")
    cfg = CampaignConfig(target="python:tests.test_redteam_runner:crashing", techniques=["direct"], limit=14,
                         benign_limit=0, seed=1, concurrency=1)
    with pytest.raises(CampaignError, match="in a row.*app exploded"):
        run_campaign_ray(cfg, st, workers=1, batch_size=1,
                         worker_setup="tests.test_scale_support:redteam_worker_setup")
    run = st.list_runs()[0]
    assert run.status == "failed" and "app exploded" in run.error
    assert run.n_attempts == 5 and all(a.error for a in st.attempts(run.id))
