"""Measure the guard on labelled data: the engine behind `bastion eval` and the benchmarks."""

from __future__ import annotations

from collections import Counter
from contextlib import nullcontext
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from bastion.jsonl import iter_lines, loads_line
from bastion.taxonomy import HAZARD_CODES

from .core import Guard
from .verdict import Verdict

MAX_SKIP_REASONS = 20  # distinct reasons kept for skipped lines; the rest are counted as "other reasons"
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
    """Average precision (area under the precision-recall curve, step interpolation), as scikit-learn computes it:
    tied scores form one step, so the result does not depend on the order of the items. 0.0 with no positives."""
    y = np.asarray(y)
    if len(y) == 0 or y.sum() == 0:
        return 0.0
    order = np.argsort(-np.asarray(p), kind="stable")
    ys, ps = y[order], np.asarray(p)[order]
    last = np.r_[np.flatnonzero(np.diff(ps)), len(ps) - 1]  # the last item of each group of tied scores
    tp = np.cumsum(ys)[last]
    precision, recall = tp / (last + 1), tp / ys.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


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
    return _top1_metrics([v.top_category for v in verdicts], gold)


def _top1_metrics(top: list[str | None], gold: list[tuple[str, ...]]) -> dict[str, Any]:
    hit = [t in g for t, g in zip(top, gold, strict=True)]  # top None: no category read (a miss)
    per: dict[str, dict[str, Any]] = {}
    for code in HAZARD_CODES:
        idx = [i for i, g in enumerate(gold) if code in g]
        if not idx:
            continue
        wrong = Counter(top[i] or "none" for i in idx if not hit[i])  # "none": no category read
        per[code] = {"n": len(idx), "top1_accuracy": float(np.mean([hit[i] for i in idx])),
                     "most_confused_with": wrong.most_common(1)[0][0] if wrong else None}
    return {"n": len(gold), "top1_accuracy": float(np.mean(hit)) if gold else 0.0, "per_category": per}


def _check_labels(labels: Any) -> np.ndarray:
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be a flat list of 0 and 1 (got shape {y.shape})")
    bad = next((v for v in y.tolist() if not (isinstance(v, (bool, int)) and v in (0, 1))), None)
    if bad is not None:
        raise ValueError(f"labels must be 0 or 1 (got {bad!r})")
    return y.astype(np.int64)


def metrics(task: str, y: np.ndarray, p: np.ndarray, thr: float) -> dict[str, Any]:
    """Precision, recall, F1, FPR at `thr`, AUPRC and a threshold table of one check's scores `p` against labels `y`.
    A metric the labels cannot define (recall and AUPRC with no positive, FPR with no negative) is None and named
    in "undefined". Precision where nothing is flagged (no score at or above the threshold), and F1 where precision
    or recall is undefined, are None too (in the result and in each table row)."""
    y = _check_labels(y)
    p = np.asarray(p, dtype=np.float64)
    res: dict[str, Any] = {"task": task, "n": int(len(y)), "positives": int(y.sum())}
    res.update(binary_metrics(y, p, thr))
    res["auprc"] = auprc(y, p)
    res["table"] = [binary_metrics(y, p, t) for t in sorted({*np.round(np.arange(0.1, 0.95, 0.1), 2).tolist(), thr})]
    undefined = (["recall", "auprc"] if res["positives"] == 0 else []) + (["fpr"] if res["positives"] == res["n"]
                                                                        else [])
    for k in undefined:
        res[k] = None
        for row in res["table"]:
            if k in row:
                row[k] = None
    res["undefined"] = undefined
    for row in (res, *res["table"]):
        if not bool((p >= row["threshold"]).any()):  # nothing flagged: tp + fp = 0
            row["precision"] = None
        if row["precision"] is None or row["recall"] is None:
            row["f1"] = None
    return res


def _categories_allowed(task: str, with_categories: bool) -> None:
    if with_categories and task not in ("prompt", "response"):
        raise ValueError(f"category labels can be measured with --task prompt or response, not {task!r}")


def evaluate(guard: Guard, task: str, prompts: list[str], responses: list[str | None], labels: list[int],
             batch: int = 256, categories: list[tuple[str, ...]] | None = None) -> dict[str, Any]:
    """Binary metrics of one check (see `metrics`); with `categories` (each item's category labels, empty for none),
    top-1 category accuracy over the positive items that have labels."""
    _categories_allowed(task, categories is not None)
    y = _check_labels(labels)
    vs = verdicts_for(guard, task, prompts, responses, batch)
    res = metrics(task, y, task_scores(task, vs), getattr(guard.thresholds, _THRESHOLD_NAME[task]))
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


def evaluate_file(guard: Guard, path: Path | BinaryIO, task: str, label_field: str = "label",
                  text_field: str = "prompt", response_field: str = "response", category_field: str | None = None,
                  batch: int = 256) -> dict[str, Any]:
    """`evaluate` over a JSONL file (a path, or a binary stream such as stdin), read and scored `batch` lines at a
    time so memory stays flat (a score and a label per line are kept). Lines without a usable text or label (or,
    for the response and refusal tasks, response) are skipped and counted by reason. With `category_field`, each
    line may name its hazard categories (a code or a list; an unknown code is an error)."""
    _categories_allowed(task, bool(category_field))
    scores: list[np.ndarray] = []
    labels: list[int] = []
    tops: list[str | None] = []
    gold: list[tuple[str, ...]] = []
    pending: list[tuple[str, str | None, int, tuple[str, ...]]] = []
    skips: Counter[str] = Counter()
    first_skip: dict[str, int] = {}
    needs_response = task in ("response", "refusal")

    def flush() -> None:
        if not pending:
            return
        vs = verdicts_for(guard, task, [x[0] for x in pending], [x[1] for x in pending], batch)
        scores.append(task_scores(task, vs))
        for v, (_, _, y, c) in zip(vs, pending, strict=True):
            labels.append(y)
            if c and y == 1:
                tops.append(v.top_category)
                gold.append(c)
        pending.clear()

    with (open(path, "rb") if isinstance(path, (str, Path)) else nullcontext(path)) as f:
        for n, line in enumerate(iter_lines(f), 1):
            if not line.strip():
                continue
            try:
                rec = loads_line(line)
                if not isinstance(rec, dict):
                    raise ValueError(f"a line is a JSON {type(rec).__name__}, not an object")
                if label_field not in rec:
                    raise ValueError(f"no field {label_field!r}")
                y = _label(rec[label_field])
                text = rec.get(text_field)
                if not isinstance(text, str):
                    raise ValueError(f"field {text_field!r} is missing or not a string")
                resp = rec.get(response_field)
                if not isinstance(resp, str):
                    if needs_response:
                        raise ValueError(f"field {response_field!r} is missing or not a string")
                    resp = None  # the prompt and attack tasks do not read it
                c = _category_labels(rec.get(category_field), n) if category_field else ()
            except CategoryLabelError:
                raise
            except ValueError as exc:  # LineError is one
                reason = str(exc).split(" at column")[0][:200]
                if reason not in skips and len(skips) >= MAX_SKIP_REASONS:  # a bad value per line: memory stays flat
                    reason = "other reasons"
                skips[reason] += 1
                first_skip.setdefault(reason, n)
                continue
            pending.append((text, resp, y, c))
            if len(pending) >= batch:
                flush()
    flush()
    if not labels:
        need = ", ".join(repr(f) for f in (text_field, label_field, *((response_field,) if needs_response else ())))
        why = f"; {_skip_summary(skips, first_skip)}" if skips else ""
        raise ValueError(f"{getattr(path, 'name', path)}: no usable lines (need {need} on each line{why})")
    res = metrics(task, np.asarray(labels), np.concatenate(scores), getattr(guard.thresholds, _THRESHOLD_NAME[task]))
    if category_field:
        res["categories"] = _top1_metrics(tops, gold)
    res["skipped"] = sum(skips.values())
    res["skipped_reasons"] = [{"reason": r, "lines": k, "first_line": first_skip[r]} for r, k in skips.most_common()]
    return res


def _skip_summary(skips: Counter[str], first_skip: dict[str, int]) -> str:
    reason, k = skips.most_common(1)[0]
    return f"{sum(skips.values())} skipped, most often ({k}) because {reason} (first at line {first_skip[reason]})"
