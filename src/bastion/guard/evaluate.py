"""Measure the guard on labelled data: the engine behind `bastion eval` and the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .core import Guard

_THRESHOLD_NAME = {"prompt": "prompt_harm", "response": "response_harm", "refusal": "refusal", "attack": "attack"}


def binary_metrics(y: np.ndarray, p: np.ndarray, thr: float, sample_weight: np.ndarray | None = None) -> dict[str, float]:
    """Precision, recall, F1 and false-positive rate at `thr`; `sample_weight` (e.g. inverse sampling rates of a
    stratified sample) weights each item's count."""
    yhat = p >= thr
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    tp = float(w[yhat & (y == 1)].sum())
    fp = float(w[yhat & (y == 0)].sum())
    fn = float(w[~yhat & (y == 1)].sum())
    tn = float(w[~yhat & (y == 0)].sum())
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"threshold": float(thr), "precision": prec, "recall": rec, "f1": f1, "fpr": fp / (fp + tn) if fp + tn else 0.0}


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve, step interpolation)."""
    if y.sum() == 0:
        return 0.0
    order = np.argsort(-p, kind="stable")
    ys = y[order]
    tp = np.cumsum(ys)
    prec = tp / np.arange(1, len(ys) + 1)
    return float((prec * ys).sum() / ys.sum())


def scores_for(guard: Guard, task: str, prompts: list[str], responses: list[str | None],
               batch: int = 256) -> np.ndarray:
    """The score a check gives each item, `batch` items per guard call."""
    if len(prompts) > batch:
        return np.concatenate([scores_for(guard, task, prompts[i : i + batch], responses[i : i + batch], batch)
                               for i in range(0, len(prompts), batch)])
    if task in ("prompt", "attack"):
        vs = guard.check_prompts(prompts)
        return np.array([v.score if task == "prompt" else v.attack_score for v in vs], dtype=np.float64)
    if any(r is None for r in responses):
        raise ValueError(f"task {task!r} needs a response on every line")
    vs = guard.check_responses(prompts, [r or "" for r in responses])
    return np.array([v.score if task == "response" else v.refusal_score for v in vs], dtype=np.float64)


def evaluate(guard: Guard, task: str, prompts: list[str], responses: list[str | None], labels: list[int],
             batch: int = 256) -> dict[str, Any]:
    y = np.asarray(labels, dtype=np.int64)
    p = scores_for(guard, task, prompts, responses, batch) if prompts else np.zeros(0)
    thr = getattr(guard.thresholds, _THRESHOLD_NAME[task])
    res: dict[str, Any] = {"task": task, "n": int(len(y)), "positives": int(y.sum())}
    res.update(binary_metrics(y, p, thr))
    res["auprc"] = auprc(y, p)
    res["table"] = [binary_metrics(y, p, t) for t in sorted({*np.round(np.arange(0.1, 0.95, 0.1), 2), thr})]
    return res


def _label(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, (int, float)) and v in (0, 1):
        return int(v)
    if isinstance(v, str) and v.strip().lower() in ("1", "0", "true", "false", "unsafe", "safe", "harmful",
                                                     "unharmful", "yes", "no"):
        return int(v.strip().lower() in ("1", "true", "unsafe", "harmful", "yes"))
    raise ValueError(f"label {v!r} is not 0/1, true/false, safe/unsafe or harmful/unharmful")


def evaluate_file(guard: Guard, path: Path, task: str, label_field: str = "label", text_field: str = "prompt",
                  response_field: str = "response") -> dict[str, Any]:
    prompts: list[str] = []
    responses: list[str | None] = []
    labels: list[int] = []
    skipped = 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for _n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if label_field not in rec:
                    raise ValueError(f"no field {label_field!r}")
                y = _label(rec[label_field])
                text = rec[text_field]
                if not isinstance(text, str):
                    raise ValueError(f"field {text_field!r} is not a string")
            except (ValueError, KeyError, TypeError, AttributeError):
                skipped += 1
                continue
            prompts.append(text)
            responses.append(rec.get(response_field))
            labels.append(y)
    if not labels:
        raise ValueError(f"{path}: no usable lines (need {text_field!r} and {label_field!r} on each line)")
    res = evaluate(guard, task, prompts, responses, labels)
    res["skipped"] = skipped
    return res
