"""The Guard: de-obfuscate, classify, and return immutable verdicts."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bastion.models import GuardModel, load_model
from bastion.normalize import normalize
from bastion.taxonomy import HAZARD_CODES

from .verdict import Verdict


@dataclass(frozen=True)
class _RefusalRules:
    refusal: re.Pattern[str]
    answer_opening: re.Pattern[str]
    decline_hint: re.Pattern[str]
    window: int
    score: float
    answer_cap: float


@lru_cache(maxsize=1)
def _refusal_rules() -> _RefusalRules:
    """Refusal phrases and answer openings (data: refusal_patterns.yaml), compiled once per process."""
    raw = yaml.safe_load(resources.files(__package__).joinpath("refusal_patterns.yaml").read_text("utf-8"))
    answers = raw["answer_openings"]
    return _RefusalRules(
        refusal=re.compile("|".join(f"(?:{p})" for p in raw["patterns"]), re.IGNORECASE),
        answer_opening=re.compile("|".join(f"(?:{p})" for p in answers["patterns"]), re.IGNORECASE),
        decline_hint=re.compile(answers["decline_hints"], re.IGNORECASE),
        window=int(raw["window_chars"]),
        score=float(raw["score"]),
        answer_cap=float(answers["cap"]),
    )


def refusal_phrase_score(response: str) -> float:
    """`score` when the opening of a response contains a known refusal phrase, else 0."""
    rules = _refusal_rules()
    return rules.score if rules.refusal.search(response[: rules.window]) else 0.0


def adjust_refusal_score(response: str, model_score: float) -> float:
    """The model's refusal score, raised by a known refusal phrase in the opening, or capped when the reply opens
    with sympathy ("I'm sorry to hear that ...") and nothing in the opening hints at declining."""
    phrase = refusal_phrase_score(response)
    if phrase:
        return max(model_score, phrase)
    rules = _refusal_rules()
    head = response[: rules.window]
    m = rules.answer_opening.search(head)
    if m and not rules.decline_hint.search(head, m.end()):
        return min(model_score, rules.answer_cap)
    return model_score


# How much a detected obfuscation adds to the attack score: hiding a request is itself a signal, but benign
# text can contain base64 blobs or URL-encoding, so it is never enough on its own. The boost is relative to the
# thresholds: a fully obfuscated text (obfuscation score 1) whose decoded content reaches the harm threshold
# reaches the attack threshold; weaker obfuscation or less harmful content adds proportionally less. It uses the
# model's calibrated thresholds, not the ones a caller sets, so an attack score depends on the text alone and a
# threshold sweep over scores (bastion eval's table) says what the guard does at each threshold.


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds per check, in [0, 1]. A score >= threshold fires (both as the verdict reports them,
    rounded to 4 decimals). A field left None takes the model's calibrated default when given to a Guard."""

    prompt_harm: float | None = None
    response_harm: float | None = None
    refusal: float | None = None
    attack: float | None = None
    category: float | None = None

    def __post_init__(self) -> None:
        for k, v in self.__dict__.items():
            if v is None:
                continue
            try:
                if isinstance(v, bool):
                    raise TypeError
                x = float(v)
            except (TypeError, ValueError):
                raise TypeError(f"threshold {k} must be a number, got {v!r}") from None
            if not 0.0 <= x <= 1.0:
                raise ValueError(f"threshold {k}={v} is outside [0, 1]")
            object.__setattr__(self, k, x)

    def as_tuple(self) -> tuple[tuple[str, float], ...]:
        return tuple((k, FALLBACK_THRESHOLDS[k] if v is None else v) for k, v in self.__dict__.items())

    def replace(self, **kw: float | None) -> Thresholds:
        unknown = set(kw) - set(self.__dict__)
        if unknown:
            raise ValueError(f"unknown threshold(s): {', '.join(sorted(unknown))}")
        return Thresholds(**{**self.__dict__, **kw})


# What a threshold the model does not calibrate falls back to.
FALLBACK_THRESHOLDS = {"prompt_harm": 0.5, "response_harm": 0.5, "refusal": 0.5, "attack": 0.5, "category": 0.35}


# Responses scoring at least RESPONSE_CATEGORY_FLOOR have their categories read from their request scored as a prompt,
# and, unless the request's top category scores at least RESPONSE_CATEGORY_SURE, also from their own text (the mean of
# the two; after a sure request the reply still keeps its own top category, as the higher of the two, so that a
# policy relaxing the request's category does not pass another category's harm at any threshold it sets): the category head was fitted on requests, and on a [request, reply] pair window it mostly reads the
# reply's register (a refusal of a bomb request scored S14). Top-1 against the request's category (benchmark slices
# categories/*): 125 held-out harmful Yi-6B replies to JailbreakBench requests 0.51 -> 0.67, a placeholder compliance
# with 600 held-out requests 0.24 -> 0.74. Replies under the floor (1.7% of held-out harmless replies reach it) cost
# nothing more; on replies to harmful requests, throughput falls by about a quarter (docs/BENCHMARKS.md). A reply under
# the floor (or under the response threshold, when that is set lower) reports no category scores at all, as one the
# cascade settles without the encoder already did: its pair windows' scores are the head read out of its domain (of
# 1,616 held-out replies under the floor, 863 had a category at or above 0.35, mostly S11, S10, S7 and S14).
RESPONSE_CATEGORY_FLOOR = 0.1
RESPONSE_CATEGORY_SURE = 0.9

ON_VIOLATION = ("refuse", "revise", "flag")
MAX_THREADS = 256
DEFAULT_REFUSAL = "I can't help with that request."


@dataclass(frozen=True)
class Enforcement:
    """What `Guard.enforce` did with a response: the text to send and why."""

    text: str
    action: str  # "allow" | "refuse" | "revise" | "flag"
    verdict: Verdict
    revised_verdict: Verdict | None = None


class Guard:
    """Input and output checks backed by the embedded CPU model.

    >>> guard = Guard()
    >>> guard.check_prompt("How do I bake bread?").unsafe
    False
    """

    def __init__(
        self,
        model: str | Path | GuardModel | None = None,
        threads: int | None = None,
        thresholds: Thresholds | dict[str, float] | None = None,
        on_violation: str = "refuse",
        reviser: Any = None,
        refusal: str = DEFAULT_REFUSAL,
    ) -> None:
        """`on_violation` is what `enforce` does with an unsafe response: "refuse" (send `refusal`), "revise"
        (have `reviser` rewrite it, e.g. `bastion.constitution.Reviser`, re-check, refuse if still unsafe)
        or "flag" (send it unchanged, marked)."""
        if on_violation not in ON_VIOLATION:
            raise ValueError(f"on_violation must be one of {', '.join(ON_VIOLATION)} (got {on_violation!r})")
        if on_violation == "revise" and reviser is None:
            raise ValueError('on_violation="revise" needs a reviser, e.g. bastion.constitution.Reviser(client, '
                             "load_constitution())")
        if reviser is not None and not (hasattr(reviser, "revise") or callable(reviser)):
            raise TypeError(f"reviser must have a revise() method or be callable, got {type(reviser).__name__}")
        self.on_violation = on_violation
        self.reviser = reviser
        self.refusal = refusal
        if thresholds is not None and not isinstance(thresholds, (Thresholds, dict)):
            raise TypeError(f"thresholds must be a Thresholds, a dict of name -> value, or None, "
                            f"got {type(thresholds).__name__}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or not 0 <= threads <= MAX_THREADS):
            raise ValueError(f"threads must be a whole number from 0 (the runtime's default) to {MAX_THREADS}, "
                             f"got {threads!r}")
        self.model: GuardModel = model if isinstance(model, GuardModel) else load_model(model, threads=threads)
        base = Thresholds(**FALLBACK_THRESHOLDS).replace(**self.model.default_thresholds)
        if isinstance(thresholds, Thresholds):
            thresholds = {k: v for k, v in thresholds.__dict__.items() if v is not None}
        if isinstance(thresholds, dict) and any(v is None for v in thresholds.values()):
            thresholds = {k: v for k, v in thresholds.items() if v is not None}  # None: the model's default
        self.thresholds: Thresholds = base if thresholds is None else base.replace(**thresholds)
        self._calibrated = base

    @property
    def model_version(self) -> str:
        return self.model.version

    def with_thresholds(self, **kw: float) -> Guard:
        """A guard sharing this model with some thresholds changed."""
        missing = [k for k, v in kw.items() if v is None]
        if missing:
            raise ValueError(f"threshold(s) {', '.join(missing)} need a value")
        g = Guard.__new__(Guard)
        g.__dict__.update(self.__dict__)
        g.thresholds = self.thresholds.replace(**kw)
        return g

    def enforce(self, prompt: str, response: str) -> Enforcement:
        """Check a response and apply `on_violation`. Never returns unchecked text for a flagged response:
        a revision is checked again and replaced by the refusal if it is still unsafe or revising fails."""
        v = self.check_response(prompt, response)
        if not v.unsafe:
            return Enforcement(response, "allow", v)
        if self.on_violation == "flag":
            return Enforcement(response, "flag", v)
        if self.on_violation == "revise":
            try:
                revised = _in_plain_thread(self._revise, prompt, response, v)
            except Exception:  # noqa: BLE001 - a failed revision falls back to refusing
                return Enforcement(self.refusal, "refuse", v)
            if isinstance(revised, str) and revised.strip():
                v2 = self.check_response(prompt, revised)
                if not v2.unsafe:
                    return Enforcement(revised, "revise", v, v2)
                return Enforcement(self.refusal, "refuse", v, v2)
        return Enforcement(self.refusal, "refuse", v)

    def _revise(self, prompt: str, response: str, v: Verdict) -> Any:
        if hasattr(self.reviser, "revise"):
            return self.reviser.revise(prompt, response, [c for c in v.categories if c != "attack"])
        return self.reviser(prompt, response)

    # ---- public checks -------------------------------------------------------------------------
    def check_prompt(self, prompt: str) -> Verdict:
        """Should a responsible assistant refuse this request, and is it a jailbreak/injection?"""
        _is_text(prompt, "prompt")
        return self.check_prompts([prompt])[0]

    def check_response(self, prompt: str, response: str) -> Verdict:
        """Is this response (to this prompt) harmful, and does it refuse?"""
        _is_text(prompt, "prompt")
        _is_text(response, "response")
        return self.check_responses([prompt], [response])[0]

    def __reduce_ex__(self, protocol: Any) -> Any:
        # A Guard pickles (multiprocessing, Ray, joblib) as its model folder and settings; unpickling loads the
        # model through load_model, once per process. Guards over a model object of their own pickle as usual.
        folder = getattr(self.model, "model_dir", None)
        if folder is None:
            return super().__reduce_ex__(protocol)
        state = {k: v for k, v in self.__dict__.items() if k != "model"}
        return _restore_guard, (str(folder), getattr(self.model, "threads", None), state)

    def check_batch(self, items: Iterable[Any]) -> list[Verdict]:
        """Vectorised checks. Items are prompt strings, (prompt, response) tuples or
        dicts with `prompt` and optional `response`. Order is preserved."""
        if isinstance(items, (str, bytes, dict)):
            raise TypeError(f"check_batch takes a list of items, got one {type(items).__name__}; "
                            "use [item] or check_prompt / check_response")
        items = list(items)
        prompts_idx: list[int] = []
        prompts: list[str] = []
        resp_idx: list[int] = []
        rp: list[str] = []
        rr: list[str] = []
        for i, it in enumerate(items):
            if isinstance(it, str):
                p, r = it, None
            elif isinstance(it, (tuple, list)) and len(it) == 2:  # a JSON pair arrives as a list
                p, r = it
            elif isinstance(it, dict):
                p, r = it.get("prompt"), it.get("response")
            else:
                raise TypeError(f"item {i}: expected str, (prompt, response) or dict, got {type(it).__name__}")
            if not isinstance(p, str):
                raise TypeError(f"item {i}: " + ("no 'prompt' key" if isinstance(it, dict) and "prompt" not in it
                                                 else "prompt must be a string"))
            if r is None:
                prompts_idx.append(i)
                prompts.append(p)
            else:
                if not isinstance(r, str):
                    raise TypeError(f"item {i}: response must be a string")
                resp_idx.append(i)
                rp.append(p)
                rr.append(r)
        out: list[Verdict | None] = [None] * len(items)
        for i, v in zip(prompts_idx, self.check_prompts(prompts), strict=False):
            out[i] = v
        for i, v in zip(resp_idx, self.check_responses(rp, rr), strict=False):
            out[i] = v
        return out  # type: ignore[return-value]

    def check_prompts(self, prompts: Sequence[str]) -> list[Verdict]:
        _not_one_text(prompts, "check_prompts")
        if not prompts:
            return []
        views, owner, signals, obf = self._expand(prompts)
        s = self.model.score_prompts(views)
        harm = _max_by_owner(s.harm, owner, len(prompts))
        attack = _max_by_owner(s.attack, owner, len(prompts))
        cats = _rows_of_most_harmful(s.categories, s.harm, owner, len(prompts))
        windows = _sum_by_owner(s.windows, owner, len(prompts))
        t, c = self.thresholds, self._calibrated
        out = []
        for i in range(len(prompts)):
            a = float(attack[i])
            if obf[i] > 0:
                # A decoded payload that is itself harmful is strong evidence of an evasion attempt.
                k = obf[i] * min(1.0, float(harm[i]) / max(c.prompt_harm, 1e-6)) * c.attack
                a = 1.0 - (1.0 - a) * (1.0 - k)
            out.append(
                self._verdict("prompt", float(harm[i]), cats[i], t.prompt_harm, signals[i], int(windows[i]),
                              attack=a)
            )
        return out

    def check_responses(self, prompts: Sequence[str], responses: Sequence[str]) -> list[Verdict]:
        _not_one_text(prompts, "check_responses")
        _not_one_text(responses, "check_responses")
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        for i, p in enumerate(prompts):
            if not isinstance(p, str):
                raise TypeError(f"prompt {i} must be a string, got {type(p).__name__}")
        if not responses:
            return []
        # Prompts give context; responses are de-obfuscated and every decoded view is scored.
        views, owner, signals, _ = self._expand(responses)
        canon = [normalize(p).canonical for p in prompts]  # once per prompt, shared by its response's views
        ctx = [canon[o] for o in owner]
        s = self.model.score_responses(ctx, views)
        n = len(responses)
        harm = _max_by_owner(s.harm, owner, n)
        cats = self._response_categories(canon, views, owner, harm,
                                         _rows_of_most_harmful(s.categories, s.harm, owner, n))
        windows = _sum_by_owner(s.windows, owner, n)
        # Refusal is judged on the canonical view only (the first view of each response).
        first = np.searchsorted(np.asarray(owner), np.arange(n))  # owner is sorted: views come in text order
        refusal = np.array([adjust_refusal_score(views[j], float(s.refusal[j])) for j in first], dtype=np.float32)
        t = self.thresholds
        return [
            self._verdict("response", float(harm[i]), cats[i], t.response_harm, signals[i], int(windows[i]),
                          refusal=float(refusal[i]))
            for i in range(n)
        ]

    # ---- internals -----------------------------------------------------------------------------
    def _response_categories(self, prompts: list[str], views: list[str], owner: list[int], harm: np.ndarray,
                             pair_cats: np.ndarray) -> np.ndarray:
        """Category scores of responses: for a response that may be harmful (score >= RESPONSE_CATEGORY_FLOOR, or the
        response threshold if lower), its request's when the request is sure of one (RESPONSE_CATEGORY_SURE), raised
        to its own text's top category, else the mean of its request's and its own text's, each scored as a prompt
        (the text's most harmful view); where neither gives any, the pair windows' own. A response under the floor
        has none (all zero)."""
        read = harm >= min(RESPONSE_CATEGORY_FLOOR, self.thresholds.response_harm)
        out = np.where(read[:, None], pair_cats, 0.0).astype(pair_cats.dtype)
        need = np.flatnonzero(read)
        if not len(need):
            return out
        request = np.zeros_like(pair_cats)
        asked = [i for i in need if prompts[i].strip()]
        if asked:
            request[asked] = self.model.score_prompts([prompts[i] for i in asked]).categories
        needed = set(need.tolist())
        rows = [j for j, o in enumerate(owner) if o in needed]
        reply = np.zeros_like(pair_cats)
        if rows:
            s = self.model.score_prompts([views[j] for j in rows])
            reply = _rows_of_most_harmful(s.categories, s.harm, [owner[j] for j in rows], len(pair_cats))
        for i in need:
            if request[i].max() >= RESPONSE_CATEGORY_SURE:
                # A sure request decides the reply's categories, but the reply keeps its own top category too (the
                # higher of the two): otherwise a request framed in a category a policy relaxes would carry a harmful
                # reply of another category through (an S2 question, an S9 answer), at whatever threshold a policy
                # sets. Only its top one, so that a weak second reading does not escalate a flag-only category.
                own = np.zeros_like(reply[i])
                k = int(np.argmax(reply[i]))
                own[k] = reply[i][k]
                out[i] = np.maximum(request[i], own)
                continue
            parts = [c for c in (request[i], reply[i]) if c.sum() > 0]
            if parts:
                out[i] = np.mean(parts, axis=0)
        return out

    def _expand(self, texts: Sequence[str]) -> tuple[list[str], list[int], list[tuple[str, ...]], list[float]]:
        views: list[str] = []
        owner: list[int] = []
        signals: list[tuple[str, ...]] = []
        obf: list[float] = []
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"text {i} must be a string, got {type(t).__name__}")
            nz = normalize(t)
            seen = set()
            for v in nz.views:
                if v.text in seen:
                    continue
                seen.add(v.text)
                views.append(v.text)
                owner.append(i)
            signals.append(tuple(nz.signals))
            obf.append(float(nz.obfuscation_score))
        return views, owner, signals, obf

    def _verdict(self, kind: str, score: float, cat_row: np.ndarray, thr: float, signals: tuple[str, ...],
                 windows: int, attack: float | None = None, refusal: float | None = None) -> Verdict:
        t = self.thresholds
        # Decided on the scores as reported, so that a verdict, and a policy reading it, never disagree.
        score = round(float(score), 4)
        attack = None if attack is None else round(float(attack), 4)
        refusal = None if refusal is None else round(float(refusal), 4)
        unsafe = score >= thr
        cat_scores = tuple((c, round(float(x), 4)) for c, x in zip(HAZARD_CODES, cat_row, strict=False))
        cats: tuple[str, ...] = ()
        if unsafe:
            ranked = sorted(cat_scores, key=lambda kv: -kv[1])
            cats = tuple(c for c, x in ranked if x >= t.category) or tuple(c for c, x in ranked[:1] if x > 0)
        attack_flag = None if attack is None else attack >= t.attack
        if attack_flag:
            cats = cats + ("attack",)
        return Verdict(
            kind=kind,
            unsafe=bool(unsafe),
            score=score,
            categories=cats,
            category_scores=cat_scores,
            attack=attack_flag,
            attack_score=attack,
            refusal=None if refusal is None else bool(refusal >= t.refusal),
            refusal_score=refusal,
            obfuscation=signals,
            windows=windows,
            model_version=self.model.version,
            thresholds=t.as_tuple(),
        )


def _not_one_text(x: Any, name: str) -> None:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} takes a list of texts, got one {type(x).__name__}")
    if x is None or isinstance(x, (dict, set, frozenset)) or not hasattr(x, "__len__"):
        raise TypeError(f"{name} takes a list of texts, got {type(x).__name__}")


def _is_text(x: Any, name: str) -> None:
    if not isinstance(x, str):
        raise TypeError(f"{name} must be a string, got {type(x).__name__}")


def _in_plain_thread(fn: Any, *args: Any) -> Any:
    """Call `fn` here, or, inside a running event loop (an async app calling `enforce`), in a worker thread: a
    reviser such as `bastion.constitution.Reviser` runs its own event loop, which cannot start inside another."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return fn(*args)
    with ThreadPoolExecutor(1, thread_name_prefix="bastion-revise") as pool:
        return pool.submit(fn, *args).result()


def _restore_guard(folder: str, threads: int | None, state: dict[str, Any]) -> Guard:
    g = Guard.__new__(Guard)
    g.__dict__.update(state)
    g.model = load_model(folder, threads=threads)
    return g


def _max_by_owner(x: np.ndarray, owner: list[int], n: int) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    out = np.zeros((n,) + x.shape[1:], dtype=np.float32)
    np.maximum.at(out, np.asarray(owner), x)
    return out


def _rows_of_most_harmful(rows: np.ndarray, harm: np.ndarray, owner: list[int], n: int) -> np.ndarray:
    """Each text's category scores from its most harmful view that has any (a view the cascade settled without the
    encoder has none): a benign decoded payload beside a harmful request adds none of its own categories."""
    rows = np.asarray(rows, dtype=np.float32)
    out = np.zeros((n,) + rows.shape[1:], dtype=np.float32)
    best = np.full(n, -np.inf)
    has = rows.reshape(len(rows), -1).any(axis=1) if len(rows) else np.zeros(0, dtype=bool)
    for j, o in enumerate(owner):
        if has[j] and harm[j] > best[o]:
            best[o] = harm[j]
            out[o] = rows[j]
    return out


def _sum_by_owner(x: np.ndarray, owner: list[int], n: int) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    np.add.at(out, np.asarray(owner), np.asarray(x, dtype=np.int64))
    return out
