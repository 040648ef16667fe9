"""Measure the guard on labelled data: the engine behind `bastion eval` and the benchmarks."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from bastion.jsonl import iter_lines, loads_line
from bastion.taxonomy import HAZARD_CODES

from .core import Guard
from .verdict import Verdict

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


def verdicts_for(guard: Guard, task: str, prompts: list[str], responses: list[str | None],
                 batch: int = 256) -> list[Verdict]:
    """The verdict of each item (prompt checks for `prompt`/`attack`, response checks otherwise), `batch` items per
    guard call."""
    if task not in ("prompt", "attack") and any(r is None for r in responses):
        raise ValueError(f"task {task!r} needs a response on every line")
    out: list[Verdict] = []
    for i in range(0, len(prompts), batch):
        if task in ("prompt", "attack"):
            out += guard.check_prompts(prompts[i : i + batch])
        else:
            out += guard.check_responses(prompts[i : i + batch], [r or "" for r in responses[i : i + batch]])
    return out


def task_scores(task: str, verdicts: list[Verdict]) -> np.ndarray:
    """The score of the check `task` names in each verdict."""
    field = {"prompt": "score", "response": "score", "attack": "attack_score", "refusal": "refusal_score"}[task]
    return np.array([getattr(v, field) for v in verdicts], dtype=np.float64)


def scores_for(guard: Guard, task: str, prompts: list[str], responses: list[str | None],
               batch: int = 256) -> np.ndarray:
    """The score a check gives each item, `batch` items per guard call."""
    return task_scores(task, verdicts_for(guard, task, prompts, responses, batch))


def category_metrics(verdicts: list[Verdict], gold: list[tuple[str, ...]]) -> dict[str, Any]:
    """Top-1 hazard category (the highest category score) against each item's category labels (any of them counts),
    overall and per labelled category, with the most frequent wrong top-1 of each ("none" when no category was read)."""
    top = [v.top_category for v in verdicts]  # None: no category read (a miss)
    hit = [t in g for t, g in zip(top, gold, strict=True)]
    per: dict[str, dict[str, Any]] = {}
    for code in HAZARD_CODES:
        idx = [i for i, g in enumerate(gold) if code in g]
        if not idx:
            continue
        wrong = Counter(top[i] or "none" for i in idx if not hit[i])  # "none": no category read
        per[code] = {"n": len(idx), "top1_accuracy": float(np.mean([hit[i] for i in idx])),
                     "most_confused_with": wrong.most_common(1)[0][0] if wrong else None}
    return {"n": len(gold), "top1_accuracy": float(np.mean(hit)) if gold else 0.0, "per_category": per}


def evaluate(guard: Guard, task: str, prompts: list[str], responses: list[str | None], labels: list[int],
             batch: int = 256, categories: list[tuple[str, ...]] | None = None) -> dict[str, Any]:
    """Binary metrics of one check; with `categories` (each item's category labels, empty for none), top-1 category
    accuracy over the positive items that have labels."""
    if categories is not None and task not in ("prompt", "response"):
        raise ValueError(f"category labels can be measured with --task prompt or response, not {task!r}")
    y = np.asarray(labels, dtype=np.int64)
    vs = verdicts_for(guard, task, prompts, responses, batch)
    p = task_scores(task, vs)
    thr = getattr(guard.thresholds, _THRESHOLD_NAME[task])
    res: dict[str, Any] = {"task": task, "n": int(len(y)), "positives": int(y.sum())}
    res.update(binary_metrics(y, p, thr))
    res["auprc"] = auprc(y, p)
    res["table"] = [binary_metrics(y, p, t) for t in sorted({*np.round(np.arange(0.1, 0.95, 0.1), 2), thr})]
    if categories is not None:
        keep = [i for i, (c, lab) in enumerate(zip(categories, labels, strict=True)) if c and lab == 1]
        res["categories"] = category_metrics([vs[i] for i in keep], [categories[i] for i in keep])
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


class CategoryLabelError(ValueError):
    """A category label that is not a hazard code: an error for the whole file, not a skipped line."""


def _category_labels(v: Any, line: int) -> tuple[str, ...]:
    """A line's category labels: a hazard code, a list of them, or null/empty for none."""
    codes = [] if v in (None, "") else [v] if isinstance(v, str) else v
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise CategoryLabelError(f"line {line}: category labels must be a code such as 'S9' or a list of codes")
    unknown = [c for c in codes if c.strip().upper() not in HAZARD_CODES]
    if unknown:
        raise CategoryLabelError(f"line {line}: unknown hazard category {unknown[0]!r} (use S1-S14)")
    return tuple(c.strip().upper() for c in codes)


def evaluate_file(guard: Guard, path: Path, task: str, label_field: str = "label", text_field: str = "prompt",
                  response_field: str = "response", category_field: str | None = None) -> dict[str, Any]:
    """`evaluate` over a JSONL file; lines without a usable text or label (or, for the response and refusal
    tasks, response) are skipped and counted. With `category_field`, each line may name its hazard categories (a
    code or a list; an unknown code is an error)."""
    prompts: list[str] = []
    responses: list[str | None] = []
    labels: list[int] = []
    cats: list[tuple[str, ...]] = []
    skipped = 0
    needs_response = task in ("response", "refusal")
    with open(path, "rb") as f:
        for n, line in enumerate(iter_lines(f), 1):
            if not line.strip():
                continue
            try:
                rec = loads_line(line)
                if label_field not in rec:
                    raise ValueError(f"no field {label_field!r}")
                y = _label(rec[label_field])
                text = rec[text_field]
                if not isinstance(text, str):
                    raise ValueError(f"field {text_field!r} is not a string")
                resp = rec.get(response_field)
                if not isinstance(resp, str):
                    if needs_response:
                        raise ValueError(f"field {response_field!r} is missing or not a string")
                    resp = None  # the prompt and attack tasks do not read it
                c = _category_labels(rec.get(category_field), n) if category_field else ()
            except CategoryLabelError:
                raise
            except (ValueError, KeyError, TypeError, AttributeError):
                skipped += 1
                continue
            prompts.append(text)
            responses.append(resp)
            labels.append(y)
            cats.append(c)
    if not labels:
        raise ValueError(f"{path}: no usable lines (need {text_field!r} and {label_field!r} on each line)")
    res = evaluate(guard, task, prompts, responses, labels, categories=cats if category_field else None)
    res["skipped"] = skipped
    return res
