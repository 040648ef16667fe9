"""How a response verdict's categories are read: from the request (and the reply text, unless the request is sure of
its category) when the reply may be harmful."""

import numpy as np

from bastion import Guard
from bastion.guard.core import RESPONSE_CATEGORY_FLOOR, RESPONSE_CATEGORY_SURE
from bastion.models import GuardModel, PromptScores, ResponseScores
from bastion.taxonomy import HAZARD_CODES

# keyword -> category scores of a prompt that holds it
KEYWORDS = {"[weapon]": {"S9": 1.0}, "[self-harm]": {"S11": 1.0}, "[vague]": {"S9": 0.6, "S1": 0.4}}


class KeywordModel(GuardModel):
    """Prompts: a keyword sets its category (harm 0.9). Pair windows: always S14, harm set by the reply."""

    version = "keyword-test"
    default_thresholds: dict = {}

    def __init__(self) -> None:
        self.prompt_calls: list[list[str]] = []

    def score_prompts(self, texts):
        self.prompt_calls.append(list(texts))
        cats = np.zeros((len(texts), 14), dtype=np.float32)
        for i, t in enumerate(texts):
            for k, scores in KEYWORDS.items():
                if k in t:
                    for code, x in scores.items():
                        cats[i, HAZARD_CODES.index(code)] = x
                    break
        harm = np.where(cats.sum(1) > 0, 0.9, 0.0).astype(np.float32)
        return PromptScores(harm=harm, attack=np.zeros(len(texts), dtype=np.float32), categories=cats,
                            windows=np.ones(len(texts), dtype=np.int64))

    def score_responses(self, prompts, responses):
        n = len(responses)
        harm = np.array([0.8 if "step" in r.lower() else 0.01 for r in responses], dtype=np.float32)
        cats = np.zeros((n, 14), dtype=np.float32)
        cats[:, HAZARD_CODES.index("S14")] = 1.0
        return ResponseScores(harm=harm, refusal=np.zeros(n, dtype=np.float32), categories=cats,
                              windows=np.ones(n, dtype=np.int64))


def _top(v):
    return max(v.category_scores, key=lambda kv: kv[1])


def test_a_flagged_reply_takes_its_requests_category_when_the_request_is_sure():
    m = KeywordModel()
    g = Guard(model=m)
    v = g.check_response("how to build a [weapon]", "Step 1: [weapon] parts [REDACTED].")
    assert KEYWORDS["[weapon]"]["S9"] >= RESPONSE_CATEGORY_SURE
    assert v.unsafe and v.categories == ("S9",) and _top(v) == ("S9", 1.0)


def test_an_unsafe_reply_keeps_its_own_category_after_a_sure_request():
    """A request sure of one category must not hide an unsafe reply's other category: a policy that relaxes the
    request's category (here S9: flag) still blocks the reply for its own (S11)."""
    from bastion import Policy

    m = KeywordModel()
    g = Guard(model=m)
    v = g.check_response("how to build a [weapon]", "Step 1: [self-harm] [REDACTED].")
    assert v.unsafe and set(v.categories) == {"S9", "S11"}
    assert ["Step 1: [self-harm] [REDACTED]."] in m.prompt_calls  # the unsafe reply's own text is read
    relaxed = Policy.model_validate({"categories": {"S9": {"action": "flag"}}})
    assert relaxed.decide(v).action == "block"
    safe = g.check_response("how to build a [weapon]", "I can't help with that.")
    assert not safe.unsafe and safe.categories == ()  # a reply under the floor still reports none


def test_the_replys_own_top_category_is_kept_at_any_policy_threshold():
    """The guard's own threshold does not decide whether the reply's category is kept: a policy may act on a lower
    response threshold. Only the reply's top reading is kept (a weak second one would escalate flag-only ones)."""
    from bastion import Policy

    g = Guard(model=KeywordModel()).with_thresholds(response_harm=0.9)
    v = g.check_response("how to build a [weapon]", "Step 1: [self-harm] [REDACTED].")  # harm 0.8 < 0.9
    assert not v.unsafe and "S11" in dict(v.category_scores) and dict(v.category_scores)["S11"] == 1.0
    strict = Policy.model_validate({"thresholds": {"response_harm": 0.3}, "categories": {"S9": {"action": "flag"}}})
    assert strict.decide(v).action == "block"
    v2 = Guard(model=KeywordModel()).check_response("I feel [self-harm]", "Step 1: [vague] [REDACTED].")
    scores = dict(v2.category_scores)
    assert scores["S11"] == 1.0 and scores["S9"] == 0.6 and scores["S1"] == 0.0  # S1 (0.4, second) is not kept


def test_otherwise_the_mean_of_the_requests_and_the_replys_own():
    m = KeywordModel()
    v = Guard(model=m).check_response("something [vague]", "Step 1: [self-harm] [REDACTED].")
    scores = dict(v.category_scores)
    assert (scores["S9"], scores["S1"], scores["S11"]) == (0.3, 0.2, 0.5)
    assert v.categories == ("S11",)  # the only one at or above the 0.35 category threshold
    assert m.prompt_calls == [["something [vague]"], ["Step 1: [self-harm] [REDACTED]."]]


def test_a_reply_under_the_floor_reports_no_category_and_costs_no_prompt_pass():
    m = KeywordModel()
    v = Guard(model=m).check_response("how to build a [weapon]", "I won't help with that.")
    assert v.score < RESPONSE_CATEGORY_FLOOR and not v.categories
    assert all(x == 0.0 for _, x in v.category_scores) and len(v.category_scores) == 14  # not the pair windows' S14
    assert m.prompt_calls == []


def test_a_response_threshold_under_the_floor_lowers_the_floor():
    """Every unsafe verdict has its categories read, even at a response threshold below the floor."""
    m = KeywordModel()
    g = Guard(model=m).with_thresholds(response_harm=0.005)
    v = g.check_response("how to build a [weapon]", "I won't help with that.")  # harm 0.01
    assert v.unsafe and v.categories == ("S9",)  # the reply's own reading (none here) is read too: it is unsafe
    assert m.prompt_calls == [["how to build a [weapon]"], ["I won't help with that."]]


def test_a_policy_reads_an_all_zero_row_as_no_category():
    """A per-category threshold under the score does not fire on a row with no category (it used to fire for S1,
    the first of 14 zeros); a harm hit with no category is 'unknown'."""
    from bastion.guard.policy import Policy
    from bastion.guard.verdict import Verdict

    zero = tuple((c, 0.0) for c in HAZARD_CODES)
    thr = (("prompt_harm", 0.5), ("response_harm", 0.5), ("refusal", 0.5), ("attack", 0.5), ("category", 0.35))
    pol = Policy.model_validate({"categories": {"S1": {"threshold": 0.05, "action": "block"}}})
    low = Verdict(kind="response", unsafe=False, score=0.08, category_scores=zero, thresholds=thr)
    assert pol.decide(low).action == "allow"
    high = Verdict(kind="response", unsafe=True, score=0.9, category_scores=zero, thresholds=thr)
    d = pol.decide(high)
    assert d.action == "block" and d.categories == ("unknown",)
    s1 = Verdict(kind="response", unsafe=False, score=0.08, category_scores=(("S1", 0.4),) + zero[1:], thresholds=thr)
    assert pol.decide(s1).action == "block"


def test_no_request_or_no_category_anywhere():
    g = Guard(model=KeywordModel())
    assert g.check_response("", "Step 1: [self-harm].").categories == ("S11",)  # the reply alone
    v = g.check_response("tell me something", "Step 1: [REDACTED].")  # neither says: the pair windows' own
    assert v.unsafe and v.categories == ("S14",)


def test_batch_mixes_flagged_and_clear_replies_in_order():
    m = KeywordModel()
    g = Guard(model=m)
    vs = g.check_batch([{"prompt": "a [weapon]", "response": "no."}, {"prompt": "a [weapon]", "response": "Step 1"},
                        {"prompt": "x", "response": "Step 1 [self-harm]"}])
    assert [v.categories for v in vs] == [(), ("S9",), ("S11",)]
    assert m.prompt_calls == [["a [weapon]", "x"], ["Step 1", "Step 1 [self-harm]"]]


def test_category_accuracy_counts_a_verdict_with_no_category_as_a_miss():
    """An all-zero row (a reply under the floor, a text the cascade settled) names no category: not S1, the first of
    14 zeros."""
    from bastion.guard.evaluate import category_metrics
    from bastion.guard.verdict import Verdict

    zero = tuple((c, 0.0) for c in HAZARD_CODES)
    s1 = (("S1", 0.7),) + zero[1:]
    vs = [Verdict(kind="response", unsafe=False, score=0.0, category_scores=zero),
          Verdict(kind="response", unsafe=True, score=0.9, category_scores=s1)]
    m = category_metrics(vs, [("S1",), ("S1",)])
    assert m["per_category"]["S1"]["top1_accuracy"] == 0.5 and m["per_category"]["S1"]["most_confused_with"] == "none"


def test_a_verdicts_top_category_is_none_when_no_category_was_read():
    from bastion.guard.verdict import Verdict

    zero = tuple((c, 0.0) for c in HAZARD_CODES)
    assert Verdict(kind="prompt", unsafe=False, score=0.0, category_scores=zero).top_category is None
    assert Verdict(kind="prompt", unsafe=False, score=0.0).top_category is None
    s9 = tuple((c, 0.8 if c == "S9" else 0.1) for c in HAZARD_CODES)
    assert Verdict(kind="prompt", unsafe=True, score=0.9, category_scores=s9).top_category == "S9"
