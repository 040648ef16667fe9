"""`bastion train`: build the embedded default guard model from ../shared/datasets.

Reproducible (seeded), CPU-only, under an hour on 2 cores: multi-task fine-tuning of MiniLM-L6 within a
wall-time budget, int8 ONNX export, tier-1 hashed n-gram models for the cascade, and thresholds chosen
on a calibration split of the training sources. No validation text is trained on; most validation sources are held
out whole, a few are split by row between training and validation (docs/MODEL_CARD.md lists which).

A build writes into a staging folder beside `out_dir` and replaces `out_dir` only once its manifest is complete, so
a failed or interrupted run leaves the model that was there untouched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bastion.models.runtime import (
    CLS,
    N_HASH,
    SEP,
    VOCAB,
    WINDOW,
    CascadeModel,
    Encoder,
    StaticEmbedder,
    hashed_features,
    pair_windows,
)

from . import data as _data
from .data import (
    AttackDocuments,
    Contamination,
    Example,
    _norm,
    attack_document_data,
    build,
    refusal_prefixed,
    unrelated_replies,
    wrapped_contexts,
    wrapped_prompts,
)

_THR_NAME = {"prompt": "prompt_harm", "attack": "attack", "response": "response_harm", "refusal": "refusal"}


@dataclass
class TrainConfig:
    data_root: Path
    out_dir: Path
    seed: int = 13
    n_benign: int = 13000
    minutes: float = 35.0
    steps: int = 1250  # fine-tuning steps of batch 32 (1.1-2.1 s each on 2 cores, by CPU)
    epochs: float | None = None  # full passes over the fine-tuning data instead of `steps` (the GPU recipe)
    device: str = "cpu"  # torch device for the fine-tuning only ("cuda" on a GPU); the rest runs on the CPU
    extra: list[Path] | None = None
    threads: int | None = None
    heads_only: bool = False  # keep the fine-tuned encoder and MLP heads in out_dir; refit the rest
    # weight of the tier-1 n-gram score in the attack score (see runtime): 0.5 until the sixteenth session; with the
    # short, smoothed attack refit the exact head alone scored better on the held-out split (docs/BENCHMARKS.md)
    attack_blend: float = 0.0
    # continue fine-tuning from this bastion model (its dequantised int8 encoder and its heads) instead of base
    # MiniLM; the fine-tuning then reads every training example, head-only copies included
    continue_from: Path | None = None
    # export base MiniLM into the build before anything else (--export-encoder); never with heads_only or continue_from
    export_encoder: bool = False


# A continued fine-tuning starts from trained heads: they learn at 3x the encoder's rate, not the 30x new heads need.
CONTINUE_LR, CONTINUE_HEAD_LR_SCALE = 2e-5, 3.0


# The text as the shipped model was trained and calibrated on: the runtime also splits runs of over 100 letters
# before tokenizing (see Encoder.windows). Kept so that a build reproduces the recorded one.
TRAIN_RUNTIME_LAYOUT = False


def _pair_windows(enc: Encoder, exs: list[Example], max_windows: int | None = None) -> tuple[list[np.ndarray], list[int]]:
    """The pair sequences the runtime scores for (prompt, response) examples, and their owners."""
    seqs, owner = pair_windows(enc, [e.context or "" for e in exs], [e.text for e in exs], max_windows,
                               runtime=TRAIN_RUNTIME_LAYOUT)
    return [np.asarray(q, dtype=np.int64) for q in seqs], owner


def _opening_embeddings(enc: Encoder, exs: list[Example]) -> np.ndarray:
    """Embeddings of each reply's opening pair window: all the runtime reads refusal from."""
    seqs, _ = _pair_windows(enc, exs, max_windows=1)
    return enc.embed_full(seqs) if seqs else np.zeros((0, 384), dtype=np.float32)


# Manifest settings that change scores or decisions: a build that changes only these is a different model.
VERSIONED_SETTINGS = ("thresholds", "cascade", "attack_blend", "window_tokens", "attack_span")


def model_version(out_dir: Path, seed: int, manifest: dict | None = None) -> str:
    """Date, seed and a digest of the weights and of the manifest's scoring settings (`VERSIONED_SETTINGS`), so two
    builds of one day never share a version, nor do two builds whose weights agree but whose thresholds or attack
    blend differ."""
    import hashlib

    h = hashlib.sha256()
    for name in ("encoder.onnx", "heads.npz"):
        h.update((out_dir / name).read_bytes())
    span = (manifest or {}).get("attack_span")
    if span:
        h.update((out_dir / span["file"]).read_bytes())
    if manifest is not None:
        # "attack_span" is left out of the digest when absent, so earlier builds keep their versions
        h.update(json.dumps({k: manifest.get(k) for k in VERSIONED_SETTINGS if k != "attack_span" or span},
                            sort_keys=True).encode())
    return f"bastion-guard-{time.strftime('%Y%m%d')}-s{seed}-{h.hexdigest()[:8]}"


STATIC_DIMS = 128
STATIC_SCALE = 2.0  # dense features are scaled up so the shared L2 penalty does not starve them


def distill_static(enc: Encoder, dims: int = STATIC_DIMS, seed: int = 13) -> np.ndarray:
    """Static token table from the fine-tuned encoder: embed every vocabulary entry alone ([CLS] t [SEP]),
    centre, and project onto the top `dims` principal components (fitted on a seeded sample)."""
    tab = enc.embed_full([[CLS, t, SEP] for t in range(VOCAB)], batch=1024)
    centred = tab - tab.mean(axis=0)
    sample = centred[np.random.default_rng(seed).choice(VOCAB, 8000, replace=False)]
    _, _, vt = np.linalg.svd(sample, full_matrices=False)
    return (centred @ vt[:dims].T).astype(np.float16)


def _fit_linear(wins: list[np.ndarray], y: np.ndarray, seed: int, C: float = 4.0,
                dense: np.ndarray | None = None) -> tuple[np.ndarray, float, np.ndarray | None]:
    """Hashed n-gram (+ static embedding) logistic regression; returns (w, b, v) in runtime form."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.linear_model import LogisticRegression

    feats = [hashed_features(w) for w in wins]
    indptr = np.cumsum([0] + [len(f) for f in feats])
    data = np.concatenate([np.full(len(f), 1.0 / max(1.0, np.sqrt(len(f))), dtype=np.float32) for f in feats])
    X = csr_matrix((data, np.concatenate(feats), indptr), shape=(len(feats), N_HASH))
    if dense is not None:
        X = hstack([X, csr_matrix(dense * STATIC_SCALE)]).tocsr()
    clf = LogisticRegression(C=C, max_iter=3000, class_weight="balanced", random_state=seed)
    clf.fit(X, y)
    coef = clf.coef_[0].astype(np.float32)
    v = None if dense is None else coef[N_HASH:] * STATIC_SCALE
    return coef[:N_HASH], float(clf.intercept_[0]), v


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


def _check_scores(y: np.ndarray, p: np.ndarray, what: str, both_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(y, p) as arrays, or ValueError: no rows, lengths that differ, labels other than 0/1, a score that is NaN, or
    (`both_classes`) a single class."""
    y, p = np.asarray(y), np.asarray(p)  # p keeps its dtype: a float32 score compares with a threshold in float32
    if y.shape != p.shape or y.ndim != 1:
        raise ValueError(f"{what}: labels {y.shape} and scores {p.shape} are not two equal-length 1-D arrays")
    if not len(y):
        raise ValueError(f"{what}: no calibration rows")
    if y.dtype.kind not in "biuf" or not np.isin(y, (0, 1)).all():
        raise ValueError(f"{what}: labels must be 0 or 1")
    if p.dtype.kind not in "biuf":
        raise ValueError(f"{what}: scores must be numbers")
    nan = np.isnan(p.astype(np.float64))
    if nan.any():
        raise ValueError(f"{what}: {int(nan.sum())} scores are NaN")
    if both_classes and len(np.unique(y)) < 2:
        raise ValueError(f"{what}: the calibration rows hold one class only (label {int(y[0])})")
    return y.astype(np.int64), p


def _best_f1_threshold(y: np.ndarray, p: np.ndarray, lo: float = 0.05, hi: float = 0.95, tol: float = 0.01) -> float:
    """The middle of the near-best plateau: among grid thresholds whose calibration F1 is within `tol` of the
    best, the median one. The calibration splits are small and partly templated, so the single best grid point
    is noisy; the plateau's middle moves less between splits and sources. When every point of the grid is on the
    plateau (the grid cannot tell them apart: the scores all lie above `hi` or below `lo`), the grid is redrawn over
    the scores' own range. ValueError on no rows, labels other than 0/1 or a NaN score; with one class only no
    threshold can be calibrated and the grid's middle comes back (a build refuses that case: `pick_threshold`)."""
    y, p = _check_scores(y, p, "threshold", both_classes=False)

    def plateau(grid: list[float]) -> list[float]:
        f1 = np.array([metrics(y, p, t)["f1"] for t in grid])
        return [t for t, f in zip(grid, f1, strict=True) if f >= f1.max() - tol]

    grid = [round(float(t), 3) for t in np.arange(lo, hi + 1e-9, 0.025)]
    near = plateau(grid)
    if len(near) == len(grid) and p.max() > p.min():
        fine = sorted({round(float(t), 4) for t in np.linspace(p.min(), p.max(), 41)[1:]})
        near_fine = plateau(fine)
        if len(near_fine) < len(fine):
            return near_fine[len(near_fine) // 2]
    return near[len(near) // 2]


def pick_threshold(task: str, y: np.ndarray, p: np.ndarray) -> float:
    """A build's threshold for `task` from its calibration labels and scores (`_best_f1_threshold`); ValueError when
    they cannot calibrate one (no rows, one class only, NaN scores, labels other than 0/1)."""
    _check_scores(y, p, f"{task} calibration")
    return _best_f1_threshold(y, p)


@dataclass
class PromptEmbeddings:
    """The frozen encoder's embeddings of every training prompt window (at most 2 per prompt), computed once
    and shared by the prompt-harm refit and the category head."""

    examples: list[Example]
    X: np.ndarray
    owner: np.ndarray

    @classmethod
    def compute(cls, enc: Encoder, train_ex: list[Example]) -> PromptEmbeddings:
        exs = [e for e in train_ex if e.task == "prompt"]
        wins, owner = enc.windows([e.text for e in exs], max_windows=2, runtime=TRAIN_RUNTIME_LAYOUT)
        return cls(exs, enc.embed(wins), np.asarray(owner, dtype=np.int64))


def fit_category_head(emb: PromptEmbeddings, seed: int) -> dict[str, np.ndarray]:
    """Class-weighted multinomial regression over S1-S14 on the fine-tuned encoder's embeddings of the first
    window of harmful prompts (the jointly trained head leans towards the most frequent category)."""
    from sklearn.linear_model import LogisticRegression

    from bastion.taxonomy import HAZARD_CODES

    first = np.flatnonzero(np.r_[True, emb.owner[1:] != emb.owner[:-1]])
    rows = [i for i in first if emb.examples[emb.owner[i]].label == 1 and emb.examples[emb.owner[i]].category]
    X = emb.X[rows]
    y = np.array([HAZARD_CODES.index(emb.examples[emb.owner[i]].category) for i in rows])
    # square-root class balancing: rare categories count more, without letting 50 examples outweigh 4,000
    counts = np.bincount(y, minlength=14).astype(np.float64)
    sw = np.sqrt(counts.max() / np.maximum(counts[y], 1.0))
    lr = LogisticRegression(C=4.0, max_iter=3000, random_state=seed).fit(X, y, sample_weight=sw)
    W = np.zeros((384, 14), dtype=np.float32)
    b = np.full(14, -30.0, dtype=np.float32)  # a category with no training data never wins
    for j, c in enumerate(lr.classes_):
        W[:, c] = lr.coef_[j]
        b[c] = lr.intercept_[j]
    return {"cats.W0": W, "cats.b0": b}


def _refit_mlp_head(name: str, X: np.ndarray, y: np.ndarray, seed: int, epochs: int = 6, hidden: int = 256,
                    batch: int = 256, label_smoothing: float = 0.0,
                    mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A binary MLP head (the runtime's architecture) fitted on frozen int8-encoder embeddings: exactly what the
    runtime computes, so nothing is lost between training and inference. `label_smoothing` s trains towards
    s/2 and 1 - s/2 instead of 0 and 1. With `mask`, X holds several instances per example (n, k, d; float16 to
    halve the memory) and an example's logit is the highest of its unmasked instances' (the span head)."""
    import torch

    from .finetune import mlp_head_arrays, new_mlp_head

    Xt = torch.tensor(X, dtype=torch.float32) if mask is None else torch.from_numpy(X)
    Mt = None if mask is None else torch.from_numpy(mask)
    yt = torch.tensor(y, dtype=torch.float32) * (1.0 - label_smoothing) + 0.5 * label_smoothing
    torch.manual_seed(seed)
    net = new_mlp_head(torch, Xt.shape[-1], hidden)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(perm), batch):
            b = perm[i : i + batch]
            z = net(Xt[b].float()).squeeze(-1)
            if Mt is not None:
                z = z.masked_fill(~Mt[b], -1e4).max(dim=1).values
            loss = torch.nn.functional.binary_cross_entropy_with_logits(z, yt[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return mlp_head_arrays(name, net)


# Label smoothing of the prompt-harm refit. The head separates the training sources almost perfectly (calibration
# F1 0.95 against 0.82 held out), and its scores on held-out benign prompts that share a harmful topic's words
# ("How can I destroy a bad habit?") sit near 1.0. Trained towards 0.05/0.95, over three seeds on build 9b731fcf's
# encoder: held-out F1 +0.002 to +0.004, false positives down on every held-out benign group (everyday traffic
# 1.1-1.7 points, ToxiGen 3-5, WildGuard/Aegis 1.5-5, sounds-dangerous 0.2-2), recall down 0.7-2.4 points. The
# response head showed no consistent change (docs/BENCHMARKS.md, fourteenth session).
HARM_LABEL_SMOOTHING = 0.1


def refit_harm_head(emb: PromptEmbeddings, seed: int, epochs: int = 6, hidden: int = 256) -> dict[str, np.ndarray]:
    """Refit the prompt-harm MLP on the frozen int8 encoder's embeddings of every training prompt window,
    head-only examples included. Measured on the held-out split, this beats the head trained jointly with
    the encoder (it sees the embeddings the runtime computes) and lets prompt data grow without moving the
    encoder, whose response-harm quality fell when the prompt share of its fine-tuning grew."""
    y = np.array([float(emb.examples[o].label) for o in emb.owner], dtype=np.float32)
    return _refit_mlp_head("harm", emb.X, y, seed, epochs=epochs, hidden=hidden, label_smoothing=HARM_LABEL_SMOOTHING)


def refit_refusal_head(enc: Encoder, train_ex: list[Example], seed: int) -> dict[str, np.ndarray]:
    """Refit the refusal MLP on the frozen encoder's embedding of each training reply's opening window (the
    runtime reads refusal from the opening window only), so label fixes take effect with `--heads-only`: on the
    encoder fine-tuned while every CoCoNot "rejected" reply counted as a refusal, refitting on the corrected labels
    raised held-out refusal F1 from 0.69 to 0.90 (docs/BENCHMARKS.md)."""
    exs = [e for e in train_ex if e.task == "refusal"]
    y = np.array([float(e.label) for e in exs], dtype=np.float32)
    return _refit_mlp_head("refusal", _opening_embeddings(enc, exs), y, seed, batch=128)


def refit_response_head(enc: Encoder, train_ex: list[Example], seed: int) -> dict[str, np.ndarray]:
    """Refit the response-harm MLP on the frozen encoder's embeddings of each training reply's first two pair
    windows (as fine-tuning sees them), head-only examples included: the replies whose prompt comes wrapped in a
    jailbreak template or a document (`wrapped_contexts`) reach it without fine-tuning the encoder again."""
    exs = [e for e in train_ex if e.task == "response"]
    seqs, owner = _pair_windows(enc, exs, max_windows=2)
    y = np.array([float(exs[o].label) for o in owner], dtype=np.float32)
    return _refit_mlp_head("response", enc.embed_full(seqs), y, seed)


# The attack refit (the window head of format-2 builds; in format-3 builds the span head below, and no window head)
# trains briefly and towards soft targets. Measured on the held-out split (frozen encoder of
# c563d2a5, tier 1 refitted on the same data, four seeds, thresholds from calibration): the head trained with the
# encoder gave attack F1 0.777 and flagged 8.6% of benign role-play; refits with the head-only negatives gave
# 0.772 / 8.6% at 6 epochs and label smoothing 0.1, 0.794 / 6.8% at 3 epochs and 0.2; the build with the latter,
# f92a7097, 0.807 / 6.5%, and with the attack score from this head alone (attack_blend 0), 1f071c5e, 0.833 / 4.8%
# with jailbreak recall 0.990 -> 0.980 (docs/BENCHMARKS.md, sixteenth session).
ATTACK_EPOCHS, ATTACK_LABEL_SMOOTHING = 3, 0.2


# The attack check's span head (format 3 models). A 126-token window mean-pools a 15-token injection with the document
# around it, so the window head cannot tell a document window with an injection from one without (seventeenth
# session). The span head scores the window's embedding and the L2-normalised mean token states of its 16-token spans
# every 8 tokens, and a window's score is the maximum (multiple-instance learning). Build d5f6acdd (1f071c5e with
# this head; nineteenth session, held out, each at the threshold calibration picks): attack F1 0.833 -> 0.868, benign
# role-play 4.8% -> 3.2%, held-out documents with no injection flagged 27.0% -> 6.0%, jailbreak recall 0.980 ->
# 0.975, Tensor Trust 0.773 -> 0.737; at equal false alarms on documents it catches more injections inside them.
SPAN_TOKENS, SPAN_STRIDE = 16, 8
SPAN_INSTANCES = 1 + (WINDOW - SPAN_TOKENS) // SPAN_STRIDE + 1  # the window and its spans (the last one ends the window)
ATTACK_SPAN_FILE = "attack_span.npz"
SPAN_PIECE_TOKENS = 100  # a piece placed inside a document window keeps at most this many tokens


def attack_span_windows(enc: Encoder, train_ex: list[Example], docs: AttackDocuments, seed: int,
                        n_injected: int = 3000, n_lookalike: int = 1500) -> tuple[list[np.ndarray], np.ndarray]:
    """Training windows of the span head and their labels: every training attack window (at most 2 per prompt, as
    for the window head), every window of the benign documents, and single windows of document text with a piece
    inside at a random token offset: an injection (70%) or a short attack prompt (label 1), or a benign lookalike
    instruction (label 0). Such a window holds its piece whole, so its label is right."""
    rng = random.Random(seed)
    exs = [e for e in train_ex if e.task == "attack"]
    wins, owner = enc.windows([e.text for e in exs], max_windows=2, runtime=TRAIN_RUNTIME_LAYOUT)
    y = [exs[o].label for o in owner]
    doc_wins, _ = enc.windows(docs.documents, runtime=TRAIN_RUNTIME_LAYOUT)
    wins += doc_wins
    y += [0] * len(doc_wins)
    paragraphs = [np.asarray(e.ids, dtype=np.int64)
                  for e in enc.tok.encode_batch(docs.paragraphs, add_special_tokens=False)]

    def text_ids(n: int) -> np.ndarray:
        out = [rng.choice(paragraphs)]
        while sum(len(a) for a in out) < n:
            out.append(rng.choice(paragraphs))
        return np.concatenate(out)

    def around(piece: str) -> np.ndarray:
        p = np.asarray(enc.tok.encode(piece, add_special_tokens=False).ids[:SPAN_PIECE_TOKENS], dtype=np.int64)
        nb = rng.randint(0, WINDOW - len(p))
        before, after = text_ids(nb), text_ids(WINDOW - len(p) - nb)
        return np.concatenate([before[len(before) - nb :] if nb else before[:0], p, after[: WINDOW - len(p) - nb]])

    for _ in range(n_injected):
        wins.append(around(rng.choice(docs.injections) if rng.random() < 0.7 or not docs.attacks
                           else rng.choice(docs.attacks)))
        y.append(1)
    for _ in range(n_lookalike):
        wins.append(around(rng.choice(docs.lookalikes)))
        y.append(0)
    return wins, np.asarray(y, dtype=np.float32)


def refit_attack_span_head(enc: Encoder, wins: list[np.ndarray], y: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The span head (the runtime's MLP over each instance; a window's logit is its instances' maximum) fitted on the
    frozen int8 encoder's window and span embeddings (`Encoder.embed_spans`, opened with the token-state output),
    briefly and towards soft targets as the window head."""
    pooled, spans = enc.embed_spans(wins, SPAN_TOKENS, SPAN_STRIDE)
    X = np.zeros((len(wins), SPAN_INSTANCES, pooled.shape[1]), dtype=np.float16)
    M = np.zeros((len(wins), SPAN_INSTANCES), dtype=bool)
    for i, sp in enumerate(spans):
        v = np.concatenate([pooled[i : i + 1], sp])[:SPAN_INSTANCES]
        X[i, : len(v)] = v
        M[i, : len(v)] = True
    del pooled, spans
    return _refit_mlp_head("attack_span", X, y, seed, epochs=ATTACK_EPOCHS, label_smoothing=ATTACK_LABEL_SMOOTHING,
                           mask=M)


def cascade_band(tier1: np.ndarray, y: np.ndarray, exact: np.ndarray, thr: float, share: float = 0.005) -> float:
    """Tier 1 settles a window as benign only below this score: the tier-1 score of the lowest `share` of the
    calibration positives the exact tier flags, so the cascade gives up at most about `share` of exact-tier recall.
    Capped at the threshold: a settled window keeps its tier-1 score, so a band above the threshold would let tier 1
    decide positives the exact tier never sees (a tier-1 refusal model confident on every calibration refusal once
    put its band at 0.95, over a threshold of 0.525). ValueError on a NaN score or on arrays of different lengths."""
    tier1, exact = np.asarray(tier1, dtype=np.float64), np.asarray(exact, dtype=np.float64)
    if not (tier1.shape == exact.shape == np.shape(y)):
        raise ValueError(f"cascade band: tier-1 {tier1.shape}, exact {exact.shape} and labels {np.shape(y)} differ")
    if np.isnan(tier1).any() or np.isnan(exact).any() or np.isnan(thr):
        raise ValueError("cascade band: a score or the threshold is NaN")
    pos = np.sort(tier1[(y == 1) & (exact >= thr)])
    band = float(pos[int(share * len(pos))]) if len(pos) else 0.0
    return min(band, float(thr))


def _scores(model: CascadeModel, task: str, exs: list[Example], cache: dict[str, tuple[float, float]]) -> np.ndarray:
    """Exact-tier scores; prompt texts are scored once for both prompt tasks (`cache`: text -> (harm, attack)).
    Refusal reads only each reply's opening window, as the runtime does, so only that window is embedded (the
    other windows of long replies took two thirds of the refusal calibration time: 118 s, now 35 s)."""
    if task in ("prompt", "attack"):
        todo = list(dict.fromkeys(e.text for e in exs if e.text not in cache))
        for i in range(0, len(todo), 128):
            chunk = todo[i : i + 128]
            s = model.score_prompts(chunk, exact=True)
            cache.update(zip(chunk, zip(s.harm.tolist(), s.attack.tolist(), strict=True), strict=True))
        k = 0 if task == "prompt" else 1
        return np.array([cache[e.text][k] for e in exs], dtype=np.float32)
    if task == "refusal":
        return model.refusal(_opening_embeddings(model.encoder, exs)) if exs else np.zeros(0)
    out = []
    for i in range(0, len(exs), 128):
        chunk = exs[i : i + 128]
        s = model.score_responses([e.context or "" for e in chunk], [e.text for e in chunk], exact=True)
        out.append(s.harm)
    return np.concatenate(out) if out else np.zeros(0)


def extra_examples(paths: list[Path], built: list[Example], root: Path) -> list[Example]:
    """The rows of the `--extra` files that pass the checks `build` applies to its own training rows: none equal
    (normalised, per task, with its context) to a row already there, validation rows included, or to an earlier
    extra row; and, outside RECORDED_BUILD, none contaminated by a validation text, a red-team seed or a near-copy
    of one (`Contamination`)."""
    from .extra import load_extra

    rows = [e for p in paths for e in load_extra(p)]

    def key(e: Example) -> tuple[str, str, str]:
        return e.task, _norm(e.text), _norm(e.context or "")

    seen = {key(e) for e in built}
    leak = None if _data.RECORDED_BUILD else Contamination.of([e for e in built if e.split == "val"], root)
    out = []
    for e in rows:
        k = key(e)
        if k in seen or (leak is not None and (leak(e.text) or leak(e.context))):
            continue
        seen.add(k)
        out.append(e)
    return out


def prepare_examples(cfg: TrainConfig) -> list[Example]:
    """Every example a build reads: the data (and --extra), its calibration draw, then the seeded copies."""
    rng = np.random.default_rng(cfg.seed)
    # The data and its validation split do not depend on cfg.seed, so builds of different seeds are measured on the
    # same held-out examples; the seed drives the fine-tuning, the head refits and the calibration draw.
    exs = build(cfg.data_root, n_benign=cfg.n_benign)
    if cfg.extra:
        exs.extend(extra_examples(cfg.extra, exs, cfg.data_root))
    for e in exs:  # calibration split: 8% of train, used only for thresholds and cascade bands
        if e.split == "train" and rng.random() < 0.08:
            e.split = "calib"
    # after the calibration draw, so that split does not move and no wrapped copy of a calibration prompt is trained on
    exs.extend(wrapped_prompts(exs, seed=cfg.seed))
    exs.extend(wrapped_contexts(exs, cfg.data_root, seed=cfg.seed))
    exs.extend(refusal_prefixed(exs, seed=cfg.seed))
    exs.extend(unrelated_replies(exs, seed=cfg.seed))
    return exs


HEADS_ONLY_FILES = ("encoder.onnx", "tokenizer.json", "heads.npz")  # what --heads-only keeps and needs in out_dir


def check_config(cfg: TrainConfig) -> None:
    """ValueError (one line) for a configuration that would lose or replace the model it should keep: an --out that
    is a file, --export-encoder with --heads-only or --continue-from, --heads-only without a fine-tuned model."""
    out = cfg.out_dir
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a model folder")
    if cfg.export_encoder and cfg.heads_only:
        raise ValueError("--export-encoder replaces the encoder with base MiniLM; --heads-only keeps the fine-tuned one")
    if cfg.export_encoder and cfg.continue_from is not None:
        raise ValueError("--export-encoder starts from base MiniLM; --continue-from starts from a trained model")
    if cfg.heads_only:
        if cfg.continue_from is not None:
            raise ValueError("--continue-from fine-tunes the encoder; it cannot go with --heads-only")
        missing = [f for f in HEADS_ONLY_FILES if not (out / f).is_file()]
        if missing:
            raise ValueError(f"--heads-only needs a fine-tuned model in {out} ({missing[0]} missing)")


def _stale_stages(out_dir: Path) -> list[Path]:
    """Staging and set-aside folders of earlier builds of `out_dir` that were killed before they could clean up."""
    if not out_dir.parent.is_dir():
        return []
    return sorted(p for p in out_dir.parent.iterdir()
                  if p.is_dir() and p.name.startswith((f".{out_dir.name}.stage-", f".{out_dir.name}.old-")))


def _swap_in(stage: Path, out_dir: Path) -> None:
    """Put the finished build `stage` at `out_dir`: the old folder is renamed away, the stage renamed in (the old
    folder is put back if that fails), then the old folder is removed."""
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}-{time.time_ns()}")
        out_dir.rename(old)
    try:
        stage.rename(out_dir)
    except BaseException:
        if old is not None and not out_dir.exists():
            old.rename(out_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def train(cfg: TrainConfig, log: Callable[[str], None] = print) -> dict:
    """Build a model into `cfg.out_dir` (see the module docstring): in a staging folder beside it that starts as a
    copy of `cfg.out_dir` (--heads-only keeps its encoder), swapped in only when the manifest is complete; on any
    failure the stage is removed and `cfg.out_dir` is left as it was. Returns the manifest."""
    check_config(cfg)
    out_dir = cfg.out_dir
    for p in _stale_stages(out_dir):
        log(f"note: {p} is left from an interrupted build (not read; safe to delete)")
    t_start = time.time()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.stage-", dir=out_dir.parent))
    try:
        if out_dir.is_dir():
            for f in out_dir.iterdir():
                (shutil.copytree if f.is_dir() else shutil.copy2)(f, stage / f.name)
        manifest = _train_into(dataclasses.replace(cfg, out_dir=stage), log)
        _swap_in(stage, out_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    log(f"wrote {out_dir} in {time.time() - t_start:.0f}s")
    return manifest


def _train_into(cfg: TrainConfig, log: Callable[[str], None]) -> dict:
    """The build itself, written into `cfg.out_dir` (the staging folder)."""
    from .export import base_model_path, describe_encoder, export_encoder
    from .finetune import finetune

    t_start = time.time()
    exs = prepare_examples(cfg)
    log(f"examples: {dict(sorted(Counter((e.task, e.split) for e in exs).items()))}")
    if cfg.export_encoder or (not cfg.heads_only and cfg.continue_from is None
                              and not (cfg.out_dir / "encoder.onnx").exists()):
        export_encoder(cfg.out_dir)  # base MiniLM: what tokenises a build from scratch
    # the encoder that tokenises (and embeds nothing): out_dir's, else the model fine-tuning continues from, else base
    # MiniLM exported into out_dir; --heads-only never exports over the encoder it keeps
    tok_dir = cfg.out_dir
    if not (tok_dir / "tokenizer.json").exists():
        if cfg.heads_only:
            raise FileNotFoundError(f"--heads-only needs a fine-tuned model in {cfg.out_dir} (tokenizer.json missing)")
        if cfg.continue_from:
            tok_dir = cfg.continue_from
        else:
            export_encoder(cfg.out_dir)
    enc = Encoder(tok_dir, threads=cfg.threads, spin=False)
    by: dict[tuple[str, str], list[Example]] = defaultdict(list)
    for e in exs:
        by[(e.task, e.split)].append(e)
    train_ex = [e for e in exs if e.split == "train"]
    mpath = cfg.out_dir / "manifest.json"
    previous = json.loads(mpath.read_text()) if mpath.exists() else None
    ipath = cfg.continue_from / "manifest.json" if cfg.continue_from else None
    init = json.loads(ipath.read_text()) if ipath and ipath.exists() else {}  # read before out_dir is overwritten
    ft_stats: dict = {}
    if cfg.heads_only:
        if not (cfg.out_dir / "heads.npz").exists():
            raise FileNotFoundError(f"--heads-only needs a fine-tuned model in {cfg.out_dir} (heads.npz missing)")
        heads: dict[str, np.ndarray] = {}  # every head is refitted below on the frozen encoder
        log("heads only: keeping the fine-tuned encoder")
    else:
        cont = cfg.continue_from
        rates = {"lr": CONTINUE_LR, "head_lr_scale": CONTINUE_HEAD_LR_SCALE} if cont else {}
        heads = finetune([e for e in train_ex if e.finetune or cont], enc, str(base_model_path()), cfg.out_dir,
                         seed=cfg.seed, minutes=cfg.minutes, max_steps=cfg.steps, epochs=cfg.epochs,
                         threads=cfg.threads, device=cfg.device, init=cont, log=log, stats=ft_stats, **rates)
        np.savez_compressed(cfg.out_dir / "heads.npz", **heads)  # a later failure can resume with --heads-only
    # one session of the encoder just fine-tuned (`enc` above still holds the one it was opened on, and is used
    # only to tokenise) for every step that embeds with it, the span head's token states included: embed() fetches
    # the pooled output only, bit-identical to a session without the extra output (checked on 3,389 windows)
    from .export import token_state_output

    tuned = Encoder(cfg.out_dir, threads=cfg.threads, spin=False,
                    hidden=token_state_output(cfg.out_dir / "encoder.onnx"))
    emb = PromptEmbeddings.compute(tuned, train_ex)
    heads.update(refit_harm_head(emb, cfg.seed))
    log(f"[{time.time() - t_start:.0f}s] prompt-harm head refitted on frozen embeddings "
        f"({sum(not e.finetune for e in train_ex if e.task == 'prompt')} head-only prompts)")
    heads.update(refit_refusal_head(tuned, train_ex, cfg.seed))
    log(f"[{time.time() - t_start:.0f}s] refusal head refitted on frozen embeddings")
    heads.update(refit_response_head(tuned, train_ex, cfg.seed))
    log(f"[{time.time() - t_start:.0f}s] response-harm head refitted on frozen embeddings")
    harmful = [e.text for e in train_ex if e.task == "prompt" and e.label == 1 and e.source.startswith("hpp:")
               and len(e.text) < 200]
    short_attacks = [e.text for e in train_ex if e.task == "attack" and e.label == 1 and e.finetune
                     and len(e.text) < 500]
    docs = attack_document_data(cfg.data_root, {e.text.strip() for e in exs if e.split != "train"}, harmful,
                                short_attacks)
    span_wins, span_y = attack_span_windows(tuned, train_ex, docs, cfg.seed)
    np.savez_compressed(cfg.out_dir / ATTACK_SPAN_FILE,
                        **refit_attack_span_head(tuned, span_wins, span_y, cfg.seed))
    attack_span = {"file": ATTACK_SPAN_FILE, "hidden": tuned.hidden, "span_tokens": SPAN_TOKENS,
                   "span_stride": SPAN_STRIDE}
    span_data = {"windows": len(span_wins), "attack_windows": int(span_y.sum()), "documents": len(docs.documents),
                 "document_paragraphs": len(docs.paragraphs)}
    del span_wins
    log(f"[{time.time() - t_start:.0f}s] attack span head fitted on frozen token states ({span_data})")
    # Tier 1: hashed word-piece n-gram + static-embedding logistic regressions for the cascade (prompts, and
    # response pairs). The static table comes from the encoder just fine-tuned.
    heads["static.table"] = distill_static(tuned, seed=cfg.seed)
    static = StaticEmbedder(heads["static.table"])
    log(f"[{time.time() - t_start:.0f}s] static token table {heads['static.table'].shape} distilled")
    for task, name in (("prompt", "harm"), ("attack", "attack"), ("response", "response"), ("refusal", "refusal")):
        tr = by[(task, "train")]
        if task in ("prompt", "attack"):
            wins, owner = enc.windows([e.text for e in tr], max_windows=2, runtime=TRAIN_RUNTIME_LAYOUT)
        else:
            wins, owner = _pair_windows(enc, tr, max_windows=2)
        y = np.array([tr[o].label for o in owner])
        w, b, v = _fit_linear(wins, y, cfg.seed, dense=static(wins))
        heads[f"t1.{name}.w"] = w
        heads[f"t1.{name}.b"] = np.float32(b)
        heads[f"t1.{name}.v"] = v
    np.savez_compressed(cfg.out_dir / "heads.npz", **heads)
    version = f"bastion-guard-{time.strftime('%Y%m%d')}-s{cfg.seed}"
    manifest: dict = {
        "version": version,
        "format": 3,  # 3: the attack check's span head (attack_span.npz) over the encoder's token states
        "encoder": describe_encoder(cfg.out_dir / "encoder.onnx"),  # --heads-only may keep an older export
        "thresholds": {"prompt_harm": 0.5, "response_harm": 0.5, "refusal": 0.5, "attack": 0.5, "category": 0.35},
        "cascade": {},
        "attack_blend": cfg.attack_blend,
        "attack_span": attack_span,
        "window_tokens": 128,
        "static_dims": int(heads["static.table"].shape[1]),
        "refitted_heads": ["harm", "refusal", "response", "attack_span"],  # on the frozen encoder (the model card says so)
    }
    (cfg.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    heads.update(fit_category_head(emb, cfg.seed))
    np.savez_compressed(cfg.out_dir / "heads.npz", **heads)
    model = CascadeModel(cfg.out_dir, threads=cfg.threads)
    report: dict = {"tasks": {}}
    cache: dict[str, tuple[float, float]] = {}
    for task in ("prompt", "attack", "response", "refusal"):
        cal, val = by[(task, "calib")], by[(task, "val")]
        pc, pv = _scores(model, task, cal, cache), _scores(model, task, val, cache)
        yc, yv = np.array([e.label for e in cal]), np.array([e.label for e in val])
        thr = pick_threshold(task, yc, pc)
        manifest["thresholds"][_THR_NAME[task]] = thr
        r = report["tasks"].setdefault(task, {})
        r["threshold"] = thr
        r["calib"] = metrics(yc, pc, thr)
        r["val"] = metrics(yv, pv, thr)
        r["val_by_source"] = {src: metrics(yv[m], pv[m], thr) for src in sorted({e.source for e in val})
                              for m in [np.array([e.source == src for e in val])]}
        name = {"prompt": "harm"}.get(task, task)
        if task in ("prompt", "attack"):
            wins, owner = enc.windows([e.text for e in cal], runtime=TRAIN_RUNTIME_LAYOUT)
            p1 = model.tier1(wins)[0 if task == "prompt" else 1]
        else:
            wins, owner = _pair_windows(enc, cal)
            p1 = model.tier1_responses(wins)[0 if task == "response" else 1]
        p1t = np.zeros(len(cal), dtype=np.float32)
        np.maximum.at(p1t, np.asarray(owner), p1)
        manifest["cascade"][f"{name}_low"] = cascade_band(p1t, yc, pc, thr)
        r["tier1_settles_negative_share"] = round(float((p1t[yc == 0] < manifest["cascade"][f"{name}_low"]).mean()), 4)
        log(f"[{time.time() - t_start:.0f}s] [{task}] threshold {thr} calib {r['calib']} val {r['val']}")
    from bastion.taxonomy import HAZARD_CODES

    cv = [e for e in by[("prompt", "val")] if e.label == 1 and e.category]
    if cv:
        cats = model.score_prompts([e.text for e in cv], exact=True).categories
        acc = float(np.mean([HAZARD_CODES[int(np.argmax(c))] == e.category for c, e in zip(cats, cv, strict=False)]))
        report["categories"] = {"val_top1_accuracy": round(acc, 4), "n": len(cv),
                                "train_counts": dict(Counter(e.category for e in train_ex if e.task == "prompt"
                                                             and e.label == 1 and e.category))}
    if cfg.heads_only and previous:
        manifest["finetune"] = previous.get("finetune") or {"version": previous.get("version"),
                                                            "trained_seconds": previous.get("trained_seconds"),
                                                            "steps": previous.get("finetune_steps")}
        # the build whose heads this run refitted (the model card tells its time from this run's)
        manifest["refit_of"] = {"version": previous.get("version"), "trained_seconds": previous.get("trained_seconds")}
        if previous.get("refit_of"):  # a refit of a refit: keep the chain back to the build that trained the encoder
            manifest["refit_of"]["refit_of"] = previous["refit_of"]
    elif ft_stats and cfg.continue_from:
        manifest["finetune_steps"] = ft_stats["steps"]
        manifest["finetune"] = {"continued_from": init.get("version"), "from_finetune": init.get("finetune"),
                                "steps": ft_stats["steps"], "device": ft_stats["device"],
                                "trained_seconds": ft_stats["seconds"], "lr": CONTINUE_LR}
    elif ft_stats:
        manifest["finetune_steps"] = ft_stats["steps"]
        if cfg.device != "cpu":  # the model card names the device and the --device/--epochs command
            manifest["finetune"] = {"steps": ft_stats["steps"], "epochs": cfg.epochs, "device": ft_stats["device"],
                                    "trained_seconds": ft_stats["seconds"]}
    manifest.update({
        "version": model_version(cfg.out_dir, cfg.seed, manifest),
        "trained_seconds": round(time.time() - t_start, 1),
        "counts": {f"{k[0]}/{k[1]}": v for k, v in sorted(Counter((e.task, e.split) for e in exs).items())},
        "train_sources": dict(sorted(Counter(f"{e.source} ({e.licence})" for e in exs if e.split != "val").items())),
        "report": report,
    })
    manifest["attack_span"]["data"] = span_data  # after the digest: counts, not scoring settings
    (cfg.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest
