"""Guard latency and throughput on this machine.

Prints: cold start (import + model load + first verdict, in a fresh process), single-thread p50/p95
per prompt of up to 64 words (`Guard(threads=1)`), and batch throughput on all cores. With a datasets folder
(`--data`, or $BASTION_DATASETS) it also times full-response checks of held-out replies (the validation split of
`bastion train`, its first `--responses` replies, batches of 64, all cores): long replies are read in several
windows, so this is the figure a change to the response windows moves.

    python benchmarks/guard_latency.py [--n 400] [--model DIR] [--data ../shared/datasets] [--responses 800]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

_WORDS = ("the a to of and how what why can you please explain write me my for with about in on is are it this "
          "that recipe python code history war security process server story bread travel weather budget plan "
          "email friend teacher student computer network file password garden music movie book health sleep "
          "exercise money tax job interview language translate summary report kill stop bomb attack hack poison "
          "weapon chemical virus").split()


def prompts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(_WORDS) for _ in range(rng.randint(5, 64))).capitalize() + "?" for _ in range(n)]


def cold_start(model: str | None = None) -> float:
    code = (f"import time; t=time.perf_counter(); from bastion import Guard; g=Guard(model={model!r}, threads=1); "
            "g.check_prompt('How do I bake bread?'); print(time.perf_counter()-t)")
    best = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        best.append(float(out.stdout.strip().splitlines()[-1]))
    return sorted(best)[1]


def response_throughput(guard: Any, data: Path, n: int) -> dict:
    """Full-response checks per second over the first `n` held-out replies, with their mean length in tokens."""
    from bastion.train.data import build

    exs = [e for e in build(data) if e.task == "response" and e.split == "val"][:n]
    items = [{"prompt": e.context or "", "response": e.text} for e in exs]
    tok = guard.model.encoder.tok
    mean_tokens = sum(len(tok.encode(it["response"], add_special_tokens=False).ids) for it in items) / len(items)
    guard.check_batch(items[:64])
    t = time.perf_counter()
    for i in range(0, len(items), 64):
        guard.check_batch(items[i : i + 64])
    return {"responses": len(items), "response_mean_tokens": round(mean_tokens),
            "batch_responses_per_s": round(len(items) / (time.perf_counter() - t), 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    ap.add_argument("--data", default=os.environ.get("BASTION_DATASETS"), help="datasets folder (held-out replies)")
    ap.add_argument("--responses", type=int, default=800, help="held-out replies to time (needs --data)")
    a = ap.parse_args()
    from bastion import Guard

    ps = prompts(a.n)
    g1 = Guard(model=a.model, threads=1)
    for p in ps[:20]:
        g1.check_prompt(p)
    lat = []
    for p in ps:
        t = time.perf_counter()
        g1.check_prompt(p)
        lat.append((time.perf_counter() - t) * 1000)
    lat.sort()
    from bastion.models import load_model

    g2 = Guard(model=load_model(a.model, threads=os.cpu_count()))
    g2.check_batch(ps[:64])
    t = time.perf_counter()
    for i in range(0, len(ps), 64):
        g2.check_batch(ps[i : i + 64])
    thr = len(ps) / (time.perf_counter() - t)
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "model": g1.model_version,
        "p50_ms_1thread": round(lat[len(lat) // 2], 2),
        "p95_ms_1thread": round(lat[int(len(lat) * 0.95)], 2),
        "batch_prompts_per_s": round(thr, 1),
        "cold_start_s": round(cold_start(a.model), 3),
    }
    if a.data and a.responses > 0:
        res.update(response_throughput(g2, Path(a.data), a.responses))
    print(json.dumps(res) if a.json else "\n".join(f"{k}: {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
