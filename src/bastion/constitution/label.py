"""RL-CAI / RLAIF: preference labels from a feedback model answering multiple-choice questions.

For each pair a principle is sampled (seeded per record). The question is asked twice, with the responses
in both orders; P(response_a better) is read from the logprobs of the answer letter in each order and
the two estimates are averaged, which cancels a constant preference for the first (or second) slot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.llm import ChatResult, LLMClient, LLMError, TokenLogprob

from .batch import MalformedOutput, with_retries
from .prompts import feedback_messages
from .revise import principle_rng
from .schema import Constitution, FeedbackExample, Principle, default_constitution

COT_CLAMP = (0.4, 0.6)
_STRIP = " \t\n()[].:*\"'"
# Answer letters are capitals only (the article "a" is no answer); keywords match in any case. An answer is "(A)",
# "the answer is A", "option/response B" ending its line, or a line that is just the letter.
_ANSWER_RE = re.compile(r"\(\s*([AB])\s*\)"
                        r"|\b(?i:answer|choice)\s*(?:is|:)\s*\(?([AB])\b"
                        r"|\b(?i:option|response)\s*(?:is|:)?\s*\(?([AB])\)?[\s.!*]*$"
                        r"|^[\s*]*([AB])[\s).:*]*$",
                        re.MULTILINE)
# A reply that opens with the letter and goes on ("B, because ...", "A is better", "**B**", "A - it is safer"); a
# capital article ("A better answer ...") is not a letter answer.
_LEADING_RE = re.compile(r"^[\s*(\[\"']*([AB])(?=[\s*)\].:,;!\-\u2013\u2014]*$|\s*[*)\].:,;!\-\u2013\u2014]|\s+is\b)")


def _letter(token: str) -> str | None:
    t = token.strip(_STRIP)
    return t if t in ("A", "B") else None


_FINAL_RE = re.compile(r"(?i:answer|option|choice)\s*(?:is|:)\s*\(?\s*([AB])\s*\)?[\s.*!]*$|^\s*\(?([AB])\)?[\s.]*$")


def letter_probs(logprobs: Sequence[TokenLogprob], last: bool = False) -> tuple[float, float] | None:
    """(pA, pB) at the answer position. Without reasoning that is the first generated token that is not
    punctuation or space, and it must itself be the letter A or B (a reply opening with 'Neither' or 'The'
    has no answer position, whatever its alternatives say). After reasoning (`last`) it is the last generated
    token that is the letter. Alternatives come from top_logprobs; tokens like '(A', ' A', 'A)' count as A."""
    if last:
        idx = [i for i, t in enumerate(logprobs) if _letter(t.token)]
        if not idx:
            return None
        tok = logprobs[idx[-1]]
    else:
        first = next((t for t in logprobs if t.token.strip(_STRIP)), None)
        if first is None or _letter(first.token) is None:
            return None
        tok = first
    mass = {"A": 0.0, "B": 0.0}
    cands = dict(tok.top)
    cands.setdefault(tok.token, tok.logprob)
    for k, lp in cands.items():
        if (letter := _letter(k)) is not None:
            mass[letter] += math.exp(lp)
    if tok.top and not (mass["A"] and mass["B"]):
        # one letter absent from top-k: the other gets at most the leftover probability
        rest = max(0.0, 1.0 - sum(math.exp(v) for v in cands.values()))
        other = "B" if mass["A"] else "A"
        mass[other] = max(mass[other], rest)
    if not tok.top:
        chosen = _letter(tok.token)
        if chosen is None:
            return None
        p = math.exp(tok.logprob)
        mass = {chosen: p, ("B" if chosen == "A" else "A"): 1.0 - p}
    total = mass["A"] + mass["B"]
    if total <= 0:
        return None
    return mass["A"] / total, mass["B"] / total


def final_answer(text: str) -> str | None:
    """The letter of a reasoned reply's concluding answer ('... So the answer is (B)'), read from its last
    non-empty line; None when the reply does not end in an answer (e.g. it was cut off)."""
    lines = [ln for ln in (text or "").strip().splitlines() if ln.strip()]
    if not lines:
        return None
    m = _FINAL_RE.search(lines[-1].strip())
    return next(g for g in m.groups() if g).upper() if m else None


def parse_answer(text: str, last: bool = False) -> str | None:
    """The answer letter in free text ('B, because ...', '(A)', 'The answer is B', 'A'); the last one after
    reasoning. Letters are capitals. Without `last`, a reply that opens with the letter answers with it, and a
    reply naming both letters otherwise ('Neither (A) nor (B)') has no answer."""
    text = text or ""
    if not last and (m := _LEADING_RE.match(text)):
        return m.group(1)
    found = [next(g for g in m.groups() if g) for m in _ANSWER_RE.finditer(text)]
    if not found:
        return None
    if last:
        return found[-1]
    return found[0] if len(set(found)) == 1 else None


@dataclass
class OrderAnswer:
    """One ordering's answer: p_first = probability the option shown as (A) is better."""

    order: str  # "ab": response_a shown as (A); "ba": response_b shown as (A)
    text: str
    p_first: float
    soft: bool
    note: str = ""

    @property
    def p_a(self) -> float:
        """Probability that the *original* response_a is better."""
        return self.p_first if self.order == "ab" else 1.0 - self.p_first

    def to_dict(self) -> dict[str, Any]:
        d = {"order": self.order, "answer": self.text, "p_first": round(self.p_first, 6), "p_a": round(self.p_a, 6),
             "soft": self.soft}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class Label:
    principle_id: str
    p_a: float
    soft: bool
    answers: list[OrderAnswer] = field(default_factory=list)
    clamped: bool = False


class FeedbackLabeller:
    """Ask a feedback model which of two responses better follows a sampled principle."""

    def __init__(self, client: LLMClient, constitution: Constitution | None = None, *, cot: bool = False,
                 top_logprobs: int = 5, few_shot: Sequence[FeedbackExample] | None = None,
                 retries: int = 2, max_tokens: int | None = None, seed: int | None = None,
                 clamp: tuple[float, float] = COT_CLAMP, logprobs: bool = True) -> None:
        self.client = client
        self.constitution = constitution or default_constitution()
        self.cot = cot
        self.top_logprobs = top_logprobs
        self.few_shot = list(self.constitution.feedback_few_shot if few_shot is None else few_shot)
        self.retries = retries
        self.max_tokens = max_tokens or (512 if cot else 8)
        self.seed = seed
        self.clamp = clamp
        self.logprobs = logprobs  # False: never ask (--no-logprobs), or the endpoint refused them
        self.logprobs_refused: str | None = None  # the endpoint's HTTP 400 that turned logprobs off for the run

    async def _ask(self, prompt: Any, first: str, second: str, principle: Principle, order: str) -> OrderAnswer:
        msgs = feedback_messages(prompt, first, second, principle, cot=self.cot, few_shot=self.few_shot)

        async def go(attempt: int) -> OrderAnswer:
            kw: dict[str, Any] = {"temperature": 0.0 if not self.cot else 0.7, "max_tokens": self.max_tokens}
            if self.seed is not None:
                kw["seed"] = self.seed + attempt
            asked = self.logprobs
            try:
                res: ChatResult = await self.client.achat(
                    msgs, **kw, **({"logprobs": True, "top_logprobs": self.top_logprobs} if asked else {}))
            except LLMError as e:
                if not (asked and _refuses_logprobs(e)):
                    raise
                # The endpoint cannot give logprobs: hard labels from the text for the rest of the run.
                self.logprobs = False
                self.logprobs_refused = self.logprobs_refused or str(e)
                asked = False
                res = await self.client.achat(msgs, **kw)
            return self._read(res, order, asked=asked)

        return await with_retries(go, self.retries)

    def _read(self, res: ChatResult, order: str, asked: bool = True) -> OrderAnswer:
        text = res.text or ""
        if self.cot:
            if getattr(res, "finish_reason", None) == "length":
                raise MalformedOutput(f"the feedback model's reasoning was cut off (max_tokens) before an answer: "
                                      f"{text[-80:]!r}")
            letter = final_answer(text)
            if letter is None:
                raise MalformedOutput(f"no final 'the answer is (A)/(B)' in the feedback model's reasoning: "
                                      f"{text[-80:]!r}")
            probs = letter_probs(res.logprobs, last=True) if res.logprobs else None
        else:
            letter = parse_answer(text)
            probs = letter_probs(res.logprobs) if res.logprobs else None
            if probs is not None:
                # The answer position decides: a reply may go on after the letter ("B, because ...") or be cut
                # short by max_tokens. A text that answers with the other letter ("A better reply is (B)") is
                # no answer.
                first = _letter(next(t.token for t in res.logprobs if t.token.strip(_STRIP)))
                if letter is not None and letter != first:
                    raise MalformedOutput(f"the feedback model's reply opens with {first} but answers "
                                          f"{letter}: {text[:80]!r}")
            elif letter is None:
                raise MalformedOutput(f"no (A)/(B) answer in the feedback model's reply: {text[:80]!r}")
        if probs is not None:
            return OrderAnswer(order, text, probs[0], soft=True)
        if res.logprobs:
            return OrderAnswer(order, text, 1.0 if letter == "A" else 0.0, soft=False,
                               note="logprobs had no A/B token at the answer; hard label from text")
        note = ("endpoint returned no logprobs; hard label from text" if asked else
                "logprobs not requested (--no-logprobs, or the endpoint refused them); hard label from text")
        return OrderAnswer(order, text, 1.0 if letter == "A" else 0.0, soft=False, note=note)

    async def alabel(self, prompt: Any, response_a: str, response_b: str, principle: Principle) -> Label:
        """Both orderings, averaged; with cot each ordering's probability is clamped first."""
        ab = await self._ask(prompt, response_a, response_b, principle, "ab")
        ba = await self._ask(prompt, response_b, response_a, principle, "ba")
        ps = [ab.p_a, ba.p_a]
        if self.cot:
            lo, hi = self.clamp
            ps = [min(hi, max(lo, p)) for p in ps]
        return Label(principle.id, sum(ps) / 2, soft=ab.soft and ba.soft, answers=[ab, ba], clamped=self.cot)


def _refuses_logprobs(e: LLMError) -> bool:
    """An HTTP 400 saying the endpoint does not support (top_)logprobs."""
    return getattr(e, "status", None) == 400 and "logprob" in str(e).lower()


def _prefers(p_a: float) -> str | None:
    return "a" if p_a > 0.5 else "b" if p_a < 0.5 else None


async def label_record(labeller: FeedbackLabeller, key: str, rec: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """Label one `{prompt, response_a, response_b}` record (optionally with `messages`, the conversation
    before the responses) into a TRL preference record: standard format (strings) for a single user turn,
    conversational format (prompt = the messages, chosen/rejected = one assistant message each) otherwise."""
    from .sft import conversation, preference

    principle = labeller.constitution.sample(principle_rng(seed, "label", key))
    msgs = conversation(rec)
    lab = await labeller.alabel(msgs if len(msgs) > 1 else rec["prompt"], rec["response_a"], rec["response_b"],
                                principle)
    a_wins = lab.p_a >= 0.5
    chosen, rejected = (rec["response_a"], rec["response_b"]) if a_wins else (rec["response_b"], rec["response_a"])
    prefs = [_prefers(a.p_a) for a in lab.answers]
    out: dict[str, Any] = {
        "key": key,
        **preference(rec, msgs, chosen, rejected),
        "chosen_prob": round(lab.p_a if a_wins else 1.0 - lab.p_a, 6),
        "principle_id": lab.principle_id,
        "model": labeller.client.model,
        "seed": seed,
        "label_type": "soft" if lab.soft else "hard",
        "cot": labeller.cot,
        "clamped": lab.clamped,
        "orderings_agree": not ("a" in prefs and "b" in prefs),  # False: the orderings preferred different responses
        "raw": [a.to_dict() for a in lab.answers],
    }
    if not lab.soft:
        out["note"] = "; ".join(sorted({a.note for a in lab.answers if a.note}))
    if lab.p_a == 0.5:
        out["tie"] = True
    if "id" in rec:
        out["id"] = rec["id"]
    return out
