"""Distributed red teaming on Ray: the campaign's attempts run on Ray actors; the driver writes the store.

    result = run_campaign_ray(CampaignConfig(target="guard", seed=1), Store("bastion.db"), workers=4)

The driver plans the campaign exactly like `bastion.redteam.runner` (same runs, same keys, same per-attempt
seeds), then hands batches of plan indices to Ray Data `map_batches` actors. Each actor builds the
target, judges and guard once, recomputes the (deterministic) plan, runs its attempts with the runner's own
attempt logic on an asyncio loop, and returns the finished AttemptRecords. Only the driver touches the
SQLite store, so the result is the same store a local run writes; `--resume` works the same way (attempts
already stored are not sent again).

Actors call the runner's `_Runner.execute()` (an attempt computed without the store); the driver stores the
records and applies the runner's fatal / consecutive-error rules. The run set-up mirrors `arun_campaign`
(see docs/SCALING.md for the public hook that would remove that duplication).
"""

from __future__ import annotations

import asyncio
import importlib
import pickle
from collections.abc import Callable
from typing import Any

from .ray_engine import check_address, quiet_ray_console, ray_session, require_ray

DEFAULT_BATCH = 16  # attempts per actor call (each actor runs them with cfg.concurrency in flight)


def _call_path(path: str | None) -> None:
    if path:
        mod, _, fn = path.partition(":")
        getattr(importlib.import_module(mod), fn)()


class RedteamActor:
    """Callable class for `map_batches`: one target/judges/guard per actor, attempts run on one event loop
    with the campaign's concurrency; returns, per attempt, the records to store and any failure."""

    def __init__(self, cfg: dict[str, Any], run_ids: list[str], labels: list[str | None],
                 worker_setup: str | None) -> None:
        _call_path(worker_setup)
        from bastion.redteam import runner

        self.rt = runner
        self.cfg = runner.CampaignConfig(**cfg)
        self.plan = runner.plan_campaign(self.cfg)
        self.svc = runner._Services(self.cfg, None)
        self.lanes = runner._make_lanes(self.cfg, self.svc, run_ids, labels)
        self.runner = runner._Runner(self.cfg, None, self.lanes, self.svc, None)
        self.loop = asyncio.new_event_loop()

    async def _one(self, sem: asyncio.Semaphore, item: Any) -> tuple[Any, bool, str]:
        async with sem:
            pairs, exc = await self.runner.execute(item)
        if exc is None:
            return pairs, False, ""
        if isinstance(exc, self.rt.CampaignError):
            return pairs, True, str(exc)
        return pairs, self.rt._is_fatal(exc), self.rt._one_line(exc)

    async def _batch(self, items: list[Any]) -> list[tuple[Any, bool, str]]:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        return await asyncio.gather(*(self._one(sem, it) for it in items))

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        idx = [int(i) for i in batch["i"]]
        need = [str(m) for m in batch["lanes"]]
        items = [self.plan[i] for i in idx]
        for li, ln in enumerate(self.lanes):  # execute() skips the lanes whose `done` holds the key
            ln.done = {it.key for it, m in zip(items, need, strict=True) if m[li] != "1"}
        out = self.loop.run_until_complete(self._batch(items))
        return {"i": np.asarray(idx, dtype=np.int64),
                "records": np.asarray([pickle.dumps(p) for p, _, _ in out], dtype=object),
                "fatal": np.asarray([f for _, f, _ in out], dtype=bool),
                "error": np.asarray([e for _, _, e in out], dtype=object)}


def run_campaign_ray(cfg: Any, store: Any, *, workers: int | None = None, address: str | None = None,
                     batch_size: int = DEFAULT_BATCH, progress: Callable[[int, int], None] | None = None,
                     guard_factory: Callable[[], Any] | None = None, worker_setup: str | None = None,
                     resume: str | None = None) -> Any:
    """Run (or resume) a campaign with its attempts spread over Ray actors; returns a CampaignResult.

    `workers`: actors (default: the cluster's CPUs, or this machine's for a local Ray). `address`: an
    existing cluster ("auto", "ray://head:10001"); otherwise a local Ray instance is started.
    `guard_factory` is used by the driver only (guard version for the run); actors build their guard with
    `runner.default_guard_service`. `worker_setup` is an importable "module:function" each actor calls
    first (e.g. to register custom targets, or tests' placeholder seeds)."""
    from bastion.redteam import runner

    require_ray()  # imported before quiet_ray_console(), which quiets the handlers Ray installs on import
    if address:
        check_address(address)  # before any run is created in the store
    # ---- plan and create (or reopen) the runs, exactly as the local runner does ----
    p = runner.prepare_campaign(cfg, store, guard_factory=guard_factory, resume=resume, engine="ray")
    cfg, svc, run_ids, labels = p.cfg, p.svc, p.run_ids, p.labels
    todo = [(i, "".join("0" if x.key in ln.done else "1" for ln in p.lanes)) for i, x in enumerate(p.plan)]
    todo = [(i, m) for i, m in todo if "1" in m]

    # ---- run the attempts on Ray; write what comes back ----
    status, error, n_done = "completed", None, 0
    try:
        with quiet_ray_console(), ray_session(address, num_cpus=workers) as ray:
            if todo:
                n_actors = min(len(todo), workers or max(1, int(ray.cluster_resources().get("CPU", 1))))
                # at least one block per actor (a small campaign would otherwise run on one actor)
                blocks = min(len(todo), 10_000, max(n_actors, -(-len(todo) // batch_size)))
                ctx = ray.data.DataContext.get_current()
                ctx.enable_progress_bars = False
                ctx.print_on_execution_start = False
                ds = ray.data.from_items([{"i": i, "lanes": m} for i, m in todo],
                                         override_num_blocks=max(1, blocks))
                ds = ds.map_batches(
                    RedteamActor, fn_constructor_args=(cfg.model_dump(), run_ids, labels, worker_setup),
                    batch_size=batch_size, batch_format="numpy", num_cpus=1,
                    compute=ray.data.ActorPoolStrategy(size=n_actors))
                consecutive = 0
                for row in ds.iter_rows():
                    # the local runner's bookkeeping, applied on the driver in the order results arrive
                    pairs = pickle.loads(row["records"])
                    for rid, rec in pairs:
                        store.add_attempt(rid, rec)
                    n_done += 1
                    if progress:
                        progress(n_done, len(todo))
                    if row["fatal"]:
                        status, error = "failed", str(row["error"])
                        break
                    errored = [rec.error for _, rec in pairs if rec.error]
                    consecutive = consecutive + 1 if errored else 0
                    if errored and consecutive >= cfg.max_consecutive_errors:
                        status = "failed"
                        error = f"{consecutive} attempts failed in a row; last: {errored[-1]}"
                        break
    except (asyncio.CancelledError, KeyboardInterrupt):
        status, error = "interrupted", "interrupted"
        raise
    except BaseException as e:
        status, error = "failed", runner._one_line(e)
        raise
    finally:
        summaries = p.record(store, status, error)
        if svc._guard is not None:
            asyncio.run(svc._guard.aclose())
    return p.result(summaries, status, error)
