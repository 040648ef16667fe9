"""`bastion train`: build the embedded default guard model from ../shared/datasets.

Reproducible (seeded), CPU-only, well under an hour on 2 cores. Needs the `bastion[train]` extra for
scikit-learn (and torch only for `--export-encoder`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bastion.models.runtime import N_HASH, Encoder, hashed_features

from .data import Example, build

HEAD_HIDDEN = 256


@dataclass
class TrainConfig:
    data_root: Path
    out_dir: Path
    seed: int = 13
    n_benign: int = 10000
    cache_dir: Path | None = None
    extra: list[Path] | None = None
    threads: int | None = None


def _key(t: str) -> str:
    return hashlib.sha1(t.encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """Window embeddings keyed by text hash, persisted so re-runs only embed new texts."""

    def __init__(self, enc: Encoder, path: Path | None, max_windows: int = 2) -> None:
        self.enc = enc
        self.path = path
        self.maxw = max_windows
        self.store: dict[str, tuple[np.ndarray, list[np.ndarray]]] = {}
        if path and path.exists():
            z = np.load(path, allow_pickle=True)
            self.store = z["store"].item()

    def ensure(self, texts: list[str], progress: Callable[[str], None] = print) -> None:
        todo = sorted({t for t in texts if _key(t) not in self.store}, key=lambda t: (len(t), t))
        t0 = time.time()
        for b in range(0, len(todo), 512):
            chunk = todo[b : b + 512]
            wins, owner = self.enc.windows(chunk, max_windows=self.maxw)
            emb = self.enc.embed(wins)
            per: dict[int, list[int]] = defaultdict(list)
            for j, o in enumerate(owner):
                per[o].append(j)
            for i, t in enumerate(chunk):
                js = per[i]
                self.store[_key(t)] = (emb[js].astype(np.float16), [wins[j] for j in js])
            done = b + len(chunk)
            rate = done / max(1e-6, time.time() - t0)
            progress(f"embedded {done}/{len(todo)} texts ({rate:.0f}/s)")
            if self.path and (b // 512) % 10 == 9:
                self.save()
        if self.path and todo:
            self.save()

    def save(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, store=np.array(self.store, dtype=object))
        tmp.replace(self.path)

    def windows(self, t: str) -> tuple[np.ndarray, list[np.ndarray]]:
        e, w = self.store[_key(t)]
        return e.astype(np.float32), w

    def first(self, t: str) -> np.ndarray:
        return self.store[_key(t)][0][0].astype(np.float32)


def _matrix(cache: EmbeddingCache, exs: list[Example], pair: bool) -> tuple[np.ndarray, np.ndarray, list]:
    X, y, wins, idx = [], [], [], []
    for i, e in enumerate(exs):
        emb, ws = cache.windows(e.text)
        if pair:
            c = cache.first(e.context or "")
            emb = np.concatenate([np.repeat(c[None], len(emb), 0), emb, c[None] * emb], axis=1)
        X.append(emb)
        y.extend([e.label] * len(emb))
        wins.extend(ws)
        idx.extend([i] * len(emb))
    return np.concatenate(X), np.asarray(y), (wins, np.asarray(idx))


def _fit_mlp(X: np.ndarray, y: np.ndarray, seed: int, hidden: int = HEAD_HIDDEN, multiclass: bool = False):
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-3, batch_size=128, learning_rate_init=1e-3,
                        max_iter=40, early_stopping=True, validation_fraction=0.1, n_iter_no_change=4,
                        random_state=seed)
    clf.fit(X, y)
    layers = list(zip(clf.coefs_, clf.intercepts_))
    if multiclass:
        return clf, layers
    return clf, layers


def _fit_linear(wins: list[np.ndarray], y: np.ndarray, seed: int, C: float = 4.0):
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    feats = [hashed_features(w) for w in wins]
    indptr = np.cumsum([0] + [len(f) for f in feats])
    data = np.concatenate([np.full(len(f), 1.0 / max(1.0, np.sqrt(len(f))), dtype=np.float32) for f in feats])
    X = csr_matrix((data, np.concatenate(feats), indptr), shape=(len(feats), N_HASH))
    clf = LogisticRegression(C=C, max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(X, y)
    return clf.coef_[0].astype(np.float32), float(clf.intercept_[0])


def _max_by(idx: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.float32)
    np.maximum.at(out, idx, p)
    return out


def metrics(y: np.ndarray, p: np.ndarray, thr: float) -> dict:
    yhat = p >= thr
    tp = int((yhat & (y == 1)).sum())
    fp = int((yhat & (y == 0)).sum())
    fn = int((~yhat & (y == 1)).sum())
    tn = int((~yhat & (y == 0)).sum())
    prec = tp / max(1, tp + fp)
    rec = tp / max(1, tp + fn)
    f1 = 2 * prec * rec / max(1e-9, prec + rec)
    return {"n": int(len(y)), "pos": int((y == 1).sum()), "precision": round(prec, 4), "recall": round(rec, 4),
            "f1": round(f1, 4), "fpr": round(fp / max(1, fp + tn), 4)}


def _best_f1_threshold(y: np.ndarray, p: np.ndarray, lo: float = 0.2, hi: float = 0.8) -> float:
    best = (0.0, 0.5)
    for t in np.arange(lo, hi + 1e-9, 0.025):
        f = metrics(y, p, float(t))["f1"]
        if f > best[0] + 1e-4:
            best = (f, float(t))
    return round(best[1], 3)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict:
    rng = np.random.default_rng(cfg.seed)
    t_start = time.time()
    exs = build(cfg.data_root, seed=cfg.seed, n_benign=cfg.n_benign)
    if cfg.extra:
        from .extra import load_extra

        for p in cfg.extra:
            exs.extend(load_extra(p))
    # calibration split: 10% of train, used only for thresholds and cascade bands
    for e in exs:
        if e.split == "train" and rng.random() < 0.1:
            e.split = "calib"
    log(f"examples: {dict(Counter((e.task, e.split) for e in exs))}")
    enc = Encoder(cfg.out_dir, threads=cfg.threads, spin=False)
    cache = EmbeddingCache(enc, cfg.cache_dir / "emb_cache.npz" if cfg.cache_dir else None)
    texts = [e.text for e in exs] + [e.context or "" for e in exs if e.task in ("response", "refusal")]
    cache.ensure(texts, progress=log)
    log(f"embeddings ready ({time.time() - t_start:.0f}s)")

    heads: dict[str, np.ndarray] = {}
    report: dict = {"tasks": {}}
    thresholds = {}
    by = defaultdict(list)
    for e in exs:
        by[(e.task, e.split)].append(e)

    def save_layers(name: str, layers: list) -> None:
        for k, (w, b) in enumerate(layers):
            heads[f"{name}.W{k}"] = w.astype(np.float32)
            heads[f"{name}.b{k}"] = b.astype(np.float32)

    cascade = {}
    for task, pair, tname in (("prompt", False, "harm"), ("attack", False, "attack"),
                              ("response", True, "response"), ("refusal", True, "refusal")):
        tr = by[(task, "train")]
        X, y, (wins, _) = _matrix(cache, tr, pair)
        log(f"[{task}] fitting head on {len(y)} windows ({int(y.sum())} positive)")
        clf, layers = _fit_mlp(X, y, cfg.seed)
        save_layers(tname, layers)
        if not pair:
            w, b = _fit_linear(wins, y, cfg.seed)
            heads[f"t1.{tname}.w"] = w
            heads[f"t1.{tname}.b"] = np.float32(b)
        # threshold on the calibration split
        cal = by[(task, "calib")]
        Xc, yc, (wc, ic) = _matrix(cache, cal, pair)
        pc = _max_by(ic, clf.predict_proba(Xc)[:, 1], len(cal))
        yc_t = np.array([e.label for e in cal])
        thr = _best_f1_threshold(yc_t, pc)
        thresholds[{"prompt": "prompt_harm", "attack": "attack", "response": "response_harm",
                    "refusal": "refusal"}[task]] = thr
        if not pair:
            from bastion.models.runtime import Linear, _sigmoid

            lin = Linear(heads[f"t1.{tname}.w"], float(heads[f"t1.{tname}.b"]))
            p1 = _sigmoid(lin.logits([hashed_features(w_) for w_ in wc]))
            p1t = _max_by(ic, p1, len(cal))
            pos = np.sort(p1t[yc_t == 1])
            # tier-1 may settle a text as benign only below the score of the lowest 0.5% of positives
            cascade[f"{tname}_low"] = float(pos[int(0.005 * len(pos))]) if len(pos) else 0.0
            report["tasks"].setdefault(task, {})["tier1_settled_benign_calib"] = round(
                float((p1t[yc_t == 0] < cascade[f"{tname}_low"]).mean()), 4)
        # validation by source
        val = by[(task, "val")]
        Xv, yv, (_, iv) = _matrix(cache, val, pair)
        pv = _max_by(iv, clf.predict_proba(Xv)[:, 1], len(val))
        yv_t = np.array([e.label for e in val])
        r = report["tasks"].setdefault(task, {})
        r["threshold"] = thr
        r["val"] = metrics(yv_t, pv, thr)
        r["calib"] = metrics(yc_t, pc, thr)
        per = {}
        for src in sorted({e.source for e in val}):
            m = np.array([e.source == src for e in val])
            per[src] = metrics(yv_t[m], pv[m], thr)
        r["val_by_source"] = per
        log(f"[{task}] thr={thr} val={r['val']}")

    # categories: multinomial over the 14 hazard codes, on harmful prompts with a known category
    from bastion.taxonomy import HAZARD_CODES

    cat_ex = [e for e in by[("prompt", "train")] + by[("prompt", "calib")] if e.label == 1 and e.category]
    Xc = np.stack([cache.first(e.text) for e in cat_ex])
    yc = np.array([HAZARD_CODES.index(e.category) for e in cat_ex])
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=4.0, max_iter=3000, random_state=cfg.seed)
    lr.fit(Xc, yc)
    W = np.zeros((384, 14), dtype=np.float32)
    b = np.full(14, -30.0, dtype=np.float32)  # categories with no training data never win
    for j, c in enumerate(lr.classes_):
        W[:, c] = lr.coef_[j]
        b[c] = lr.intercept_[j]
    heads["cats.W0"] = W
    heads["cats.b0"] = b
    cv = [e for e in by[("prompt", "val")] if e.label == 1 and e.category]
    if cv:
        pv = lr.predict(np.stack([cache.first(e.text) for e in cv]))
        acc = float(np.mean([HAZARD_CODES[p] == e.category for p, e in zip(pv, cv)]))
        report["categories"] = {"val_top1_accuracy": round(acc, 4), "n": len(cv),
                                "train_counts": dict(Counter(e.category for e in cat_ex))}
    version = f"bastion-guard-{time.strftime('%Y%m%d')}-s{cfg.seed}"
    manifest = {
        "version": version,
        "encoder": "sentence-transformers/all-MiniLM-L6-v2 (int8 ONNX, per-channel)",
        "thresholds": {**thresholds, "category": 0.35},
        "cascade": cascade,
        "window_tokens": 128,
        "trained_seconds": round(time.time() - t_start, 1),
        "counts": {f"{k[0]}/{k[1]}": v for k, v in sorted(Counter((e.task, e.split) for e in exs).items())},
        "train_sources": dict(sorted(Counter(f"{e.source} ({e.licence})" for e in exs if e.split != "val").items())),
        "report": report,
    }
    np.savez_compressed(cfg.out_dir / "heads.npz", **heads)
    (cfg.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    log(f"wrote {cfg.out_dir} in {time.time() - t_start:.0f}s")
    return manifest
