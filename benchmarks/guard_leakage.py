"""Train/validation leakage of the embedded guard: how much of each held-out slice of `guard_accuracy.py` has a
copy (or near-copy) in what the model was trained on, and what the check scores on the leaked and clean parts.

    python benchmarks/guard_leakage.py [--data ../shared/datasets] [--no-score] [--json]

Validation is split by source, but the datasets overlap: a template, prompt or request can sit in a training
source too (or inside a training text, as the request a training reply answers). An item counts as leaked when its
normalised text (lowercase, punctuation removed, whitespace collapsed) equals a training text or context, or its
8-word shingles have Jaccard >= 0.8 with one, or >= 80% of them lie inside one. Texts of fewer than 8 words count
only on an exact match. The training side is everything `bastion train` reads for the recorded build (every
non-validation text and context, and the attack span head's documents). Only counts and first-8-word excerpts
are printed; no dataset text is written anywhere.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

N = 8  # shingle size, in words
NEAR = 0.8  # Jaccard or containment that counts as a near-copy


def norm(t: str | None) -> str:
    return " ".join(re.sub(r"[^\w\s]+", " ", (t or "").lower()).split())


def shingles(words: list[str]) -> set[int]:
    # crc32, not hash(): Python salts str hashes per process, and the index samples shingles by hash value, so
    # figures moved between runs.
    if len(words) < N:
        return {zlib.crc32(" ".join(words).encode())} if words else set()
    return {zlib.crc32(" ".join(words[i:i + N]).encode()) for i in range(len(words) - N + 1)}


class TrainingIndex:
    """Every training text, indexed by a sample of its shingles (1 in 4) for a fast candidate search."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.tags = texts  # normalised text -> where it was trained
        self.keys = list(texts)
        self.sh = [shingles(k.split()) for k in self.keys]
        self.index: dict[int, list[int]] = defaultdict(list)
        for i, s in enumerate(self.sh):
            for h in s:
                if h % 4 == 0 or len(s) < 8:
                    self.index[h].append(i)

    def match(self, text: str | None) -> tuple[str, str | None]:
        """(exact | near | contained | clean | empty, where the best match was trained)."""
        n = norm(text)
        if not n:
            return "empty", None
        if n in self.tags:
            return "exact", self.tags[n]
        words = n.split()
        if len(words) < N:
            return "clean", None
        s = shingles(words)
        cand: Counter[int] = Counter()
        for h in s:
            if h % 4 == 0:
                post = self.index.get(h)
                if post and len(post) < 5000:
                    cand.update(post)
        best = (0.0, 0.0, -1)
        for i, _ in cand.most_common(30):
            inter = len(s & self.sh[i])
            best = max(best, (inter / len(s), inter / len(s | self.sh[i]), i))
        c, j, i = best
        if j >= NEAR:
            return "near", self.tags[self.keys[i]]
        if c >= NEAR:
            return "contained", self.tags[self.keys[i]]
        return "clean", None


def training_texts(exs: list[Any], root: Path) -> dict[str, str]:
    from bastion.train.data import attack_document_data

    out: dict[str, str] = {}

    def add(t: str | None, tag: str) -> None:
        n = norm(t)
        if n and n not in out:
            out[n] = tag

    for e in exs:
        if e.split != "val":
            add(e.text, f"{e.task}:{e.source}")
            add(e.context, f"{e.task}:{e.source}:context")
    train = [e for e in exs if e.split == "train"]
    harmful = [e.text for e in train if e.task == "prompt" and e.label == 1 and e.source.startswith("hpp:")
               and len(e.text) < 200]
    attacks = [e.text for e in train if e.task == "attack" and e.label == 1 and e.finetune and len(e.text) < 500]
    docs = attack_document_data(root, {e.text.strip() for e in exs if e.split != "train"}, harmful, attacks)
    for kind in ("paragraphs", "injections", "lookalikes"):
        for p in getattr(docs, kind):
            add(p, f"attack_span:{kind}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    ap.add_argument("--no-score", action="store_true", help="overlap only; do not score leaked vs clean items")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import guard_accuracy as ga

    from bastion.redteam.seeds import load_templates
    from bastion.train import data as train_data
    from bastion.train.fit import TrainConfig, prepare_examples

    train_data.RECORDED_BUILD = True  # the shipped model's training set, leakage included (new builds are decontaminated)
    t0 = time.time()
    exs = prepare_examples(TrainConfig(data_root=args.data, out_dir=Path("/nonexistent-unused")))
    idx = TrainingIndex(training_texts(exs, args.data))
    val = [e for e in exs if e.split == "val"]
    report: dict[str, Any] = {"slices": {}, "benchmark_lists": {}, "scores": {}}

    flags: dict[int, tuple[str, str]] = {}  # id(example) -> (text match, context match)
    by_slice: dict[str, list[Any]] = defaultdict(list)
    for e in val:
        by_slice[f"{e.task}/{e.source}"].append(e)
    print(f"{'slice':52s} {'n':>5s} {'exact':>6s} {'near':>5s} {'cont.':>5s} {'leak%':>6s}  context leak%")
    for name in sorted(by_slice):
        c, cc = Counter(), Counter()
        for e in by_slice[name]:
            k, kc = idx.match(e.text)[0], idx.match(e.context)[0]
            flags[id(e)] = (k, kc)
            c[k] += 1
            cc[kc] += 1
        n = len(by_slice[name])
        leak = c["exact"] + c["near"] + c["contained"]
        cleak = cc["exact"] + cc["near"] + cc["contained"]
        report["slices"][name] = {"n": n, **{k: c[k] for k in ("exact", "near", "contained")},
                                  "leak_rate": leak / n, "context_leak_rate": cleak / n}
        ctx = f"{100 * cleak / n:5.1f}" if name.startswith(("response", "refusal")) else "    -"
        print(f"{name:52s} {n:5d} {c['exact']:6d} {c['near']:5d} {c['contained']:5d} {100 * leak / n:6.1f}  {ctx}")
    lists = {"tensor_trust_sample": ga.tensor_trust_attacks(args.data),
             "redteam_templates": [t["template"].replace("{prompt}", "") for t in load_templates(args.data)],
             "SOUNDS_DANGEROUS": ga.SOUNDS_DANGEROUS, "BENIGN_ATTACK_WORDS": ga.BENIGN_ATTACK_WORDS,
             "OVERRIDE_INJECTIONS": ga.OVERRIDE_INJECTIONS,
             "REFUSAL_PROBE replies": [r for _, r in ga.REFUSAL_PROBE_ANSWERS + ga.REFUSAL_PROBE_REFUSALS]}
    for name, texts in lists.items():
        c = Counter(idx.match(t)[0] for t in texts)
        leak = c["exact"] + c["near"] + c["contained"]
        report["benchmark_lists"][name] = {"n": len(texts), "leaked": leak}
        print(f"{'bench: ' + name:52s} {len(texts):5d} {c['exact']:6d} {c['near']:5d} {c['contained']:5d} "
              f"{100 * leak / max(1, len(texts)):6.1f}")
    print(f"[overlap: {time.time() - t0:.0f} s]", flush=True)

    if not args.no_score:
        report["scores"] = score(val, flags, args.data)
    if args.json:
        print(json.dumps(report, indent=1))


def score(val: list[Any], flags: dict[int, tuple[str, str]], root: Path) -> dict[str, Any]:
    """Each check on the leaked and the clean part of the slices where leakage could inflate a figure."""
    from bastion import Guard
    from bastion.guard.evaluate import binary_metrics, scores_for

    g = Guard()
    th = g.thresholds
    out: dict[str, Any] = {}

    def leaked(e: Any, context: bool = False) -> bool:
        return flags[id(e)][1 if context else 0] in ("exact", "near", "contained")

    def rate(p: np.ndarray, thr: float) -> float | None:
        return float((p >= thr).mean()) if len(p) else None

    def line(name: str, what: str, p: np.ndarray, lk: np.ndarray, thr: float) -> None:
        a, b = rate(p[lk], thr), rate(p[~lk], thr)
        out[name] = {"metric": what, "leaked": a, "n_leaked": int(lk.sum()), "clean": b, "n_clean": int((~lk).sum())}
        fmt = lambda x: "  -  " if x is None else f"{x:.3f}"  # noqa: E731
        print(f"{name:52s} {what:6s} leaked {fmt(a)} (n={int(lk.sum())})  clean {fmt(b)} (n={int((~lk).sum())})")

    by: dict[str, list[Any]] = defaultdict(list)
    for e in val:
        by[e.task].append(e)
    for task, thr in (("prompt", th.prompt_harm), ("attack", th.attack)):
        es = by[task]
        p = scores_for(g, task, [e.text for e in es], [None] * len(es))
        y = np.array([e.label for e in es])
        lk = np.array([leaked(e) for e in es])
        pos = y == 1
        line(f"{task}: recall on harmful held-out items", "recall", p[pos], lk[pos], thr)
        line(f"{task}: false positives on benign held-out items", "FPR", p[~pos], lk[~pos], thr)
        if task == "prompt":
            m = np.array([e.source == "bpp:coconot_contrast" for e in es])
            line("prompt: sounds-dangerous (CoCoNot contrast) FPR", "FPR", p[m], lk[m], thr)
        allm = binary_metrics(y, p, thr)
        clean = binary_metrics(y[~lk], p[~lk], thr)
        out[f"{task}: all held-out"] = allm
        out[f"{task}: leaked items removed"] = clean
        print(f"   {task} all held-out: P {allm['precision']:.3f} R {allm['recall']:.3f} F1 {allm['f1']:.3f} "
              f"FPR {allm['fpr']:.3f} | leaked removed: P {clean['precision']:.3f} R {clean['recall']:.3f} "
              f"F1 {clean['f1']:.3f} FPR {clean['fpr']:.3f} (positives {int(y[~lk].sum())} of {int(y.sum())})",
              flush=True)
    for task, thr in (("response", th.response_harm), ("refusal", th.refusal)):
        es = by[task]
        p = scores_for(g, task, [e.context or "" for e in es], [e.text for e in es])
        y = np.array([e.label for e in es])
        lk = np.array([leaked(e) or leaked(e, context=True) for e in es])
        allm, clean = binary_metrics(y, p, thr), binary_metrics(y[~lk], p[~lk], thr)
        out[f"{task}: all held-out"], out[f"{task}: leaked items removed"] = allm, clean
        print(f"   {task} all held-out F1 {allm['f1']:.3f} (n={len(y)}) | reply or request leaked removed: "
              f"F1 {clean['f1']:.3f} (n={int((~lk).sum())}; this changes the mix of sources: compare within one)",
              flush=True)
        # Within one source, leaked and clean items come from the same distribution: a gap there is leakage.
        for src in sorted({e.source for e in es}):
            m = np.array([e.source == src for e in es])
            a, b = m & lk, m & ~lk
            if a.sum() >= 20 and b.sum() >= 20:
                fa, fb = binary_metrics(y[a], p[a], thr), binary_metrics(y[b], p[b], thr)
                key = "f1" if y[m].any() else "fpr"
                out[f"{task}/{src}: leaked vs clean {key}"] = {"leaked": fa[key], "n_leaked": int(a.sum()),
                                                               "clean": fb[key], "n_clean": int(b.sum())}
                print(f"     {task}/{src}: {key} leaked {fa[key]:.3f} (n={int(a.sum())}) vs clean {fb[key]:.3f} "
                      f"(n={int(b.sum())})", flush=True)
    return out


if __name__ == "__main__":
    main()
