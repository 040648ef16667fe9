"""The Ray engine of the corpus filter: Ray Data `map_batches` over split indices, one guard per actor.

The dataset is just the split indices of the plan (tiny); each actor reads its splits straight from the
input file, classifies them and returns only the decisions (a JSON string per split). The driver consumes
results in input order (`preserve_order`) and writes and checkpoints exactly as with the local engine,
so both engines produce the same outputs. On a cluster the input path must be readable by the workers
(a shared filesystem such as NFS/EFS/Lustre or a volume mounted into every KubeRay pod).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import sources
from .worker import FilterOptions, GuardSpec, SplitResult, SplitWorker


def require_ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise sources.UsageError("--engine ray needs Ray: pip install 'bastion-guard[ray]'") from None
    return ray


def local_runtime_env() -> dict[str, Any]:
    """For a local Ray instance: let workers import what the driver can (e.g. a guard factory module)."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    cwd = os.getcwd()
    if cwd not in paths:
        paths.insert(0, cwd)
    return {"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}}


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to `address` (an existing cluster, e.g. "ray://head:10001" or "auto"), or start a local
    Ray instance; shut down only what this call started."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus, runtime_env=local_runtime_env(), include_dashboard=False,
                 log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


class RayFilterActor:
    """Callable class for `map_batches`: builds the guard once per actor, classifies splits."""

    def __init__(self, spec: GuardSpec, options: FilterOptions, plan: sources.Plan) -> None:
        self.worker = SplitWorker(spec, options)
        self.plan = plan

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        ks = [int(k) for k in batch["data"]]
        results = [json.dumps(self.worker.process(self.plan, k).to_dict()) for k in ks]
        return {"data": np.asarray(ks, dtype=np.int64), "result": np.asarray(results, dtype=object)}


@contextmanager
def ray_engine(plan: sources.Plan, spec: GuardSpec, options: FilterOptions, workers: int,
               address: str | None = None) -> Iterator[Iterator[SplitResult]]:
    """SplitResults for k = 0..len(plan)-1, in order, computed by `workers` Ray actors."""
    with ray_session(address, num_cpus=None if address else max(workers, 1)) as ray:
        n = len(plan)
        if n == 0:
            yield iter(())
            return
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        threads = 1 if spec.factory is None and spec.threads is None else spec.threads
        actor_spec = GuardSpec(factory=spec.factory, model=spec.model, threads=threads,
                               threshold=spec.threshold, window_chars=spec.window_chars)
        # The dataset is the split indices, put in the object store by the driver (no read tasks, so the
        # actors may take every CPU); small blocks keep the actors evenly loaded.
        import numpy as np

        per_block = 1 if n <= 10_000 else 16
        ds = ray.data.from_numpy([np.arange(i, min(i + per_block, n), dtype=np.int64)
                                  for i in range(0, n, per_block)])
        ds = ds.map_batches(RayFilterActor, fn_constructor_args=(actor_spec, options, plan), batch_size=1,
                            batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=workers),
                            num_cpus=1)

        def run() -> Iterator[SplitResult]:
            for row in ds.iter_rows():
                yield SplitResult.from_dict(json.loads(row["result"]))

        yield run()
