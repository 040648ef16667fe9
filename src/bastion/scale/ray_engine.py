"""The Ray engine of the corpus filter: Ray Data `map_batches` over split indices, one guard per actor.

The dataset is just the split indices of the plan (tiny); each actor reads its splits straight from the
input file, classifies them and returns only the decisions (a JSON string per split). The driver consumes
results in input order (`preserve_order`) and writes and checkpoints exactly as with the local engine,
so both engines produce the same outputs. On a cluster the input path must be readable by the workers
(a shared filesystem such as NFS/EFS/Lustre or a volume mounted into every KubeRay pod).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
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


PROBE_SECONDS = 5.0
RAY_CLIENT_PORT = 10001


def check_address(address: str, timeout: float = PROBE_SECONDS) -> None:
    """Fail fast, in one line (UsageError), on an `--address` that `ray.init` would wait on for minutes: a Ray
    Client address (`ray://host[:port]`) without the `ray[client]` extra installed, or a `host:port` (also
    the one in a `ray://` address) that accepts no TCP connection within `timeout` seconds. "auto", "local"
    and other forms are left to Ray."""
    import importlib.util

    rest = address.strip()
    client = rest.lower().startswith("ray://")
    if client:
        if importlib.util.find_spec("grpc") is None:
            raise sources.UsageError(f"--address {address}: a ray:// address (Ray Client) needs "
                                     f"pip install 'ray[client]'")
        rest = rest[len("ray://"):]
    elif "://" in rest:
        return
    hostport = rest.split("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep and client:
        host, port = hostport, str(RAY_CLIENT_PORT)
    elif not sep or not port.isdigit():
        return  # "auto", "local", a bare name: Ray's own rules
    host = host.strip("[]")
    if not host:
        return
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        reason = f"no answer within {timeout:g} s" if isinstance(e, TimeoutError) else \
            (e.strerror or str(e) or type(e).__name__)
        raise sources.UsageError(f"cannot reach Ray at {address} ({reason}); check --address") from None


@contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[Any]:
    """Connect to `address` (an existing cluster, e.g. "ray://head:10001" or "auto"), or start a local
    Ray instance; shut down only what this call started."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    if address:
        check_address(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
        else:
            # "local": always start a private instance, even when RAY_ADDRESS or a running cluster exists.
            ray.init(address="local", num_cpus=num_cpus, runtime_env=local_runtime_env(), include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR)
    except Exception as e:
        raise RuntimeError(f"cannot start Ray{f' at {address}' if address else ''}: {root_cause(e)}") from None
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


_EXC_LINE = re.compile(r"^\s*((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit)):\s?(.*)$")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def root_cause(e: BaseException) -> str:
    """One line for an error raised through Ray: the innermost "SomeError: message" line of its text
    (Ray puts a worker's exception, with its remote traceback, in the message, and may chain an empty
    marker exception as the cause), else the first line of the message."""
    chain: list[BaseException] = []
    x: BaseException | None = e
    while isinstance(x, BaseException) and all(x is not c for c in chain):  # e, then the causes Ray attaches
        chain.append(x)
        nxt = getattr(x, "cause", None)
        x = nxt if isinstance(nxt, BaseException) else x.__cause__
    for x in reversed(chain):  # innermost first; skip causes without a message
        lines = [ln for ln in _ANSI.sub("", str(x)).strip().splitlines() if ln.strip()]
        hits = [m for m in map(_EXC_LINE.match, lines) if m]
        if hits:
            name, msg = hits[-1].group(1).rsplit(".", 1)[-1], hits[-1].group(2).strip()
            return f"{name}: {msg}" if msg else name
        if lines:
            return f"{type(x).__name__}: {lines[0].strip()}"
    return type(e).__name__


@contextmanager
def quiet_ray_console() -> Iterator[None]:
    """Keep Ray's and Ray Data's log records (start-up notices, the internal stack traces Ray Data prints on a
    failure) and Python warnings off the console while the filter runs; Ray's log files still get the
    records. The run's own error says what failed, in one line."""
    import logging
    import warnings

    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.levelno >= logging.CRITICAL

    drop, touched = _Drop(), []
    for name in ("ray", "ray.data"):
        for h in logging.getLogger(name).handlers:
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                h.addFilter(drop)
                touched.append(h)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", module=r"ray(\.|$)")
            yield
    finally:
        for h in touched:
            h.removeFilter(drop)


def default_actors(ray: Any, address: str | None, workers: int | None) -> int:
    """--workers, else the cluster's CPUs (existing cluster) or this machine's cores (local instance)."""
    if workers:
        return workers
    if address or ray.is_initialized():
        try:
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
        except Exception:  # noqa: BLE001 - sizing is best effort
            return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


@contextmanager
def ray_engine(plan: sources.Plan, spec: GuardSpec, options: FilterOptions, workers: int | None,
               address: str | None = None) -> Iterator[Iterator[SplitResult]]:
    """SplitResults for k = 0..len(plan)-1, in order, computed by Ray actors (`workers`, default: the
    cluster's CPUs, or this machine's cores for a local instance)."""
    ray = require_ray()
    local = not address and not ray.is_initialized()
    with quiet_ray_console(), \
            ray_session(address, num_cpus=default_actors(ray, None, workers) if local else None) as ray:
        workers = default_actors(ray, address, workers)
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
            try:
                for row in ds.iter_rows():
                    yield SplitResult.from_dict(json.loads(row["result"]))
            except (KeyboardInterrupt, GeneratorExit):
                raise
            except Exception as e:  # Ray wraps a worker error in many lines of remote traceback
                raise RuntimeError(f"Ray worker failed: {root_cause(e)}") from None

        yield run()
