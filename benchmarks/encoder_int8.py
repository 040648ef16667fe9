"""The int8 encoder alone: does a text's embedding depend on its batch-mates, how close is it to a reference
export (e.g. the fp32 graph of the same weights), and how fast is it.

    python benchmarks/encoder_int8.py [--model DIR] [--reference OTHER.onnx ...] [--n 256]

Texts are a seeded sample of held-out-style prompts from ../shared/datasets (benign and harmful pools), cut to
126 tokens like the runtime's windows. "Batch-mates" compares each text embedded alone with the same text
embedded through the runtime's own `Encoder.embed_full` (length-sorted batches of 32); a reference export is
run through the same code with its session swapped in.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bastion.models import DEFAULT_MODEL_DIR
from bastion.models.runtime import CLS, SEP, WINDOW, Encoder


def _texts(data: Path, n: int) -> list[str]:
    rows = []
    for pool in ("benign_prompts_permissive", "harmful_prompts_permissive"):
        with gzip.open(data / pool / "prompts.jsonl.gz", "rt", encoding="utf-8") as f:
            rows.append([json.loads(line)["prompt"] for line in f])
    rng = random.Random(0)
    return rng.sample(rows[0], n // 2) + rng.sample(rows[1], n - n // 2)


def _session(path: Path, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL_DIR)
    ap.add_argument("--reference", type=Path, nargs="*", default=[], help="other ONNX exports to compare with")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    enc = Encoder(a.model, threads=a.threads)
    texts = _texts(a.data, a.n)
    seqs = [[CLS, *enc.tok.encode(t, add_special_tokens=False).ids[:WINDOW], SEP] for t in texts]
    res: dict = {"date": time.strftime("%Y-%m-%d"), "n": len(seqs), "threads": a.threads, "exports": {}}
    embs = {}
    for path in [a.model / "encoder.onnx", *a.reference]:
        enc.session = _session(path, a.threads)
        alone = np.vstack([enc.embed_full([q]) for q in seqs])
        batched = enc.embed_full(seqs)
        d = np.abs(alone - batched).max(axis=1)
        speed = {}
        for name, batch in (("batch32", 32), ("batch1", 1)):
            t, runs = time.perf_counter(), 0
            while time.perf_counter() - t < 3.0:
                enc.embed_full(seqs, batch=batch)
                runs += 1
            speed[name] = round(runs * len(seqs) / (time.perf_counter() - t), 1)
        embs[str(path)] = alone
        res["exports"][str(path)] = {"batch_mates_max_abs_diff": {"median": float(np.median(d)), "max": float(d.max())},
                                     "texts_per_s": speed}
    main_emb = embs[str(a.model / "encoder.onnx")]
    for path in a.reference:
        cos = (main_emb * embs[str(path)]).sum(1)  # embeddings are L2-normalised in the graph
        res["exports"][str(path)]["cosine_to_model"] = {"mean": round(float(cos.mean()), 5),
                                                       "min": round(float(cos.min()), 5)}
    if a.json:
        print(json.dumps(res, indent=1))
        return
    for path, r in res["exports"].items():
        print(path)
        for k, v in r.items():
            print(f"  {k}: {v}")


if __name__ == "__main__":
    main()
