"""Classify whole documents of any length with a Guard, in bounded memory.

A document is cut into overlapping windows of about 2,000 characters over its whole length; the windows
of many documents are scored together in sub-batches of bounded size, and a document's verdict is the
verdict of its highest-scoring window (categories and attack flags are merged over its unsafe windows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the guard is only needed at run time by callers that pass one in
    from bastion.guard import Guard, Verdict

WINDOW_CHARS = 2000
# Overlap so that a phrase cut by a window boundary still appears whole in the next window.
OVERLAP_CHARS = 200
# Windows scored per guard call: bounds memory whatever the document sizes.
MAX_WINDOWS_PER_CALL = 64


def iter_windows(text: str, size: int = WINDOW_CHARS, overlap: int = OVERLAP_CHARS) -> Iterator[str]:
    """Yield windows covering all of `text` (at least one, possibly empty)."""
    if size <= overlap:
        raise ValueError("window size must be larger than the overlap")
    if len(text) <= size:
        yield text
        return
    step = size - overlap
    start = 0
    while True:
        yield text[start:start + size]
        if start + size >= len(text):
            return
        start += step


def _merge(best: Verdict, other: Verdict) -> Verdict:
    """Keep the higher-scoring verdict; merge categories/attack of unsafe windows; add window counts."""
    hi, lo = (other, best) if other.score > best.score else (best, other)
    cats = list(hi.categories)
    if lo.unsafe or lo.attack:
        cats += [c for c in lo.categories if c not in cats]
    attack = hi.attack
    attack_score = hi.attack_score
    if lo.attack_score is not None and (attack_score is None or lo.attack_score > attack_score):
        attack_score = lo.attack_score
    if lo.attack:
        attack = True
        if "attack" not in cats:
            cats.append("attack")
    cat_scores = tuple((c, max(a, b)) for (c, a), (_, b) in zip(hi.category_scores, lo.category_scores, strict=True))
    return dataclasses.replace(
        hi,
        unsafe=hi.unsafe or lo.unsafe,
        categories=tuple(cats),
        category_scores=cat_scores or hi.category_scores,
        attack=attack,
        attack_score=attack_score,
        obfuscation=tuple(dict.fromkeys(hi.obfuscation + lo.obfuscation)),
        windows=best.windows + other.windows,
    )


def classify_documents(guard: Guard, texts: Sequence[str], window_chars: int = WINDOW_CHARS,
                       max_windows: int = MAX_WINDOWS_PER_CALL) -> list[Verdict]:
    """One verdict per document, each judged over its whole length (windowed, max over windows)."""
    out: list[Verdict | None] = [None] * len(texts)
    owners: list[int] = []
    batch: list[str] = []

    def flush() -> None:
        for i, v in zip(owners, guard.check_batch(batch), strict=True):
            out[i] = v if out[i] is None else _merge(out[i], v)  # type: ignore[arg-type]
        owners.clear()
        batch.clear()

    for i, text in enumerate(texts):
        for w in iter_windows(text, window_chars, min(OVERLAP_CHARS, window_chars // 10)):
            owners.append(i)
            batch.append(w)
            if len(batch) >= max_windows:
                flush()
    if batch:
        flush()
    return out  # type: ignore[return-value]
