"""Policy: which checks run, thresholds per category, and what to do when a check fires.

A policy is a YAML file validated by Pydantic. It maps guard verdicts to a `Decision`
(allow / flag / redact / revise / block) and carries refusal messages, the code-shield mode and
per-API-key overrides.

>>> p = Policy.default()
>>> p.for_key("team-a").action
'block'
>>> p.code_shield.mode
'warn'

Applying a policy outside the gateway: `policy.decide(verdict)` (one verdict), `policy.decide_all(verdicts)`
(the most severe of several), `policy.decide_code(scan_result)` (a code-shield result), or
`policy.check(guard, prompt, response)` which runs the guard (and, for a response, the code shield) and
returns the verdict with the decision.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from bastion.taxonomy import HAZARD_CODES
from bastion.yamlsrc import ConfigError, FieldErrors, load_yaml_text

from .verdict import Verdict

if TYPE_CHECKING:
    from bastion.codeshield import CodeShieldResult

Action = Literal["allow", "flag", "redact", "revise", "block"]
# Severity order: when several categories fire, the most severe action wins.
ACTION_SEVERITY: dict[str, int] = {"allow": 0, "flag": 1, "redact": 2, "revise": 3, "block": 4}
CATEGORY_CODES = HAZARD_CODES + ("attack", "session")


class PolicyError(ValueError):
    """A policy file that cannot be loaded; the message is one clear line."""


class _KeyPolicyError(PolicyError):
    """A per-key override that does not validate; `from_yaml` adds the file and line."""

    def __init__(self, key_id: str, loc: tuple[Any, ...] = (), msg: str = "",
                 error: ValidationError | None = None) -> None:
        self.key_id, self.loc, self.msg, self.error = key_id, loc, msg, error
        text = _describe(error, {}, "", ("keys", key_id)) if error is not None else \
            ".".join(str(x) for x in ("keys", key_id, *loc)) + f": {msg}"
        super().__init__(text.removeprefix(": "))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _no_bool(v: Any) -> Any:
    # Pydantic reads `true` as 1.0 for a float field: a threshold of `true` is a mistake, not 1.0.
    if isinstance(v, bool):
        raise ValueError(f"must be a number, not a boolean ({str(v).lower()})")
    return v


def session_risk_max(decay: float, floor: float) -> float:
    """The highest session risk the update `risk * decay + max(0, harm - floor)` can reach (harm <= 1)."""
    if floor >= 1.0:
        return 0.0
    return math.inf if decay >= 1.0 else (1.0 - floor) / (1.0 - decay)


def _check_session_threshold(thr: float, decay: float, floor: float) -> None:
    top = session_risk_max(decay, floor)
    if not math.isfinite(thr):
        raise ValueError(f"must be a finite number, got {thr}")
    if thr >= top * (1 - 1e-9):  # the risk only approaches its maximum (and float rounding can lift it)
        raise ValueError(f"{thr:g} can never be reached: the session risk stays below {top:g} "
                         f"(= (1 - floor) / (1 - decay) with decay {decay:g}, floor {floor:g}); lower it, or turn "
                         "the session check off with checks.session: false")


class Checks(_Strict):
    """Which checks run."""

    input: bool = True  # the latest user turn
    conversation: bool = True  # all user/assistant turns of the request as one text
    session: bool = True  # risk accumulated across requests of one session
    attack: bool = True  # jailbreak / prompt-injection detection on the input
    output: bool = True  # the model's response (non-streaming and streaming)


class PolicyThresholds(_Strict):
    """Global thresholds, in [0, 1]; a category rule may override the harm threshold for its category.
    A threshold left unset uses the model's calibrated default (carried by each verdict)."""

    prompt_harm: float | None = Field(None, ge=0.0, le=1.0)
    response_harm: float | None = Field(None, ge=0.0, le=1.0)
    attack: float | None = Field(None, ge=0.0, le=1.0)
    # A harm hit is attributed to every category whose score reaches this (the top category always counts).
    category: float | None = Field(None, ge=0.0, le=1.0)

    _bools = field_validator("prompt_harm", "response_harm", "attack", "category", mode="before")(_no_bool)

    def resolve(self, verdict: Verdict) -> dict[str, float]:
        """These thresholds, with unset ones taken from the verdict (the model's defaults)."""
        out = {k: float(v) for k, v in verdict.thresholds}
        out.setdefault("prompt_harm", 0.5)
        out.setdefault("response_harm", 0.5)
        out.setdefault("attack", 0.5)
        out.setdefault("category", 0.35)
        out.update({k: v for k, v in self.model_dump().items() if v is not None})
        return out


class CategoryRule(_Strict):
    """Per-category overrides (a threshold in [0, 1]; the `session` rule's may exceed 1, as session risk does)."""

    threshold: float | None = Field(None, ge=0.0)
    action: Action | None = None
    refusal: str | None = None

    _bools = field_validator("threshold", mode="before")(_no_bool)


class SessionRules(_Strict):
    """Session-level risk: risk <- risk * decay + max(0, score - floor) for each user turn."""

    decay: float = Field(0.8, ge=0.0, le=1.0)
    floor: float = Field(0.2, ge=0.0, le=1.0)
    threshold: float = Field(1.0, gt=0.0)
    max_turns: int = Field(8, ge=1, le=200)  # user turns kept per session for the joined-turns check
    ttl_s: float = Field(3600.0, gt=0.0)
    action: Action = "block"

    _bools = field_validator("decay", "floor", "threshold", mode="before")(_no_bool)


class StreamingRules(_Strict):
    """How streamed output is buffered and checked (see docs/GATEWAY.md)."""

    holdback: Literal["sentence", "word", "none"] = "sentence"
    # do not check a shorter pending segment unless the stream ends or max_hold_ms passes: a first window of a few
    # words ("turns gummy.") gives the classifier too little context and draws false positives
    min_chars: int = Field(48, ge=1)
    # after the first release, wait for this much held text before the next check (fewer, larger checks)
    check_every_chars: int = Field(160, ge=1)
    max_pending_chars: int = Field(400, ge=16)  # release even without a sentence end once this much is held
    max_hold_ms: float = Field(800.0, ge=0.0)  # ... or once text has been held this long
    context_chars: int = Field(160, ge=0)  # already released text prepended to each window


CodeShieldMode = Literal["off", "warn", "append_fix", "block"]


class CodeShieldRules(_Strict):
    """Insecure-code check on responses (`bastion.codeshield`); see docs/GATEWAY.md.

    `mode`: off | warn (flag, findings in `bastion`) | append_fix (flag and append the verified patch as a diff)
    | block (refuse; in streams, fenced code blocks are held until complete and scanned before release).
    A bare string is accepted: `code_shield: block`.
    """

    mode: CodeShieldMode = "warn"
    min_severity: Literal["low", "medium", "high", "critical"] = "medium"
    refusal: str = "I can't share that code: it contains insecure patterns."
    max_block_chars: int = Field(20_000, ge=256)  # streams, block mode: the longest code block held whole

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        # YAML 1.1 reads a bare `off`/`on` as a boolean.
        if isinstance(v, (str, bool)):
            v = {"mode": v}
        if isinstance(v, dict) and isinstance(v.get("mode"), bool):
            v = {**v, "mode": "warn" if v["mode"] else "off"}
        return v


class _PolicyBody(_Strict):
    checks: Checks = Checks()
    thresholds: PolicyThresholds = PolicyThresholds()
    action: Action = "block"  # default action for a category without its own rule
    categories: dict[str, CategoryRule] = {}
    refusal: str = "I can't help with that request."
    redaction: str = "[content removed by policy]"
    session: SessionRules = SessionRules()
    streaming: StreamingRules = StreamingRules()
    code_shield: CodeShieldRules = CodeShieldRules()
    rate_limit_per_minute: float | None = Field(None, gt=0)  # None: the server default

    @field_validator("categories")
    @classmethod
    def _known_codes(cls, v: dict[str, CategoryRule]) -> dict[str, CategoryRule]:
        unknown = sorted(set(v) - set(CATEGORY_CODES))
        if unknown:
            raise ValueError(f"unknown category code(s) {unknown}; known: {', '.join(CATEGORY_CODES)}")
        return v

    @model_validator(mode="after")
    def _session_category_threshold(self) -> _PolicyBody:
        # Category thresholds are in [0, 1], but for `session` (risk accumulates past 1). The session threshold in
        # force (`categories.session.threshold` overrides `session.threshold`, as a category rule overrides the
        # global thresholds), defaults included, must be reachable while the session check is on.
        for code, rule in self.categories.items():
            if code != "session" and rule.threshold is not None and rule.threshold > 1.0:
                raise FieldErrors([(("categories", code, "threshold"), "Input should be less than or equal to 1")])
        own = self.categories["session"].threshold if "session" in self.categories else None
        loc = ("categories", "session", "threshold") if own is not None else ("session", "threshold")
        thr = own if own is not None else self.session.threshold
        if own is not None and own <= 0:
            raise FieldErrors([(loc, "the session threshold must be greater than 0 (0 would block every request)")])
        if self.checks.session:
            try:
                _check_session_threshold(thr, self.session.decay, self.session.floor)
            except ValueError as e:
                raise FieldErrors([(loc, str(e))]) from None
        return self


@dataclass(frozen=True)
class Decision:
    """What the policy says about one verdict."""

    action: str  # allow | flag | redact | revise | block
    categories: tuple[str, ...] = ()
    refusal: str = ""
    reasons: tuple[str, ...] = field(default_factory=tuple)

    @property
    def blocked(self) -> bool:
        return self.action in ("block", "revise")

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "categories": list(self.categories), "reasons": list(self.reasons)}


ALLOW = Decision("allow")


class Policy(_PolicyBody):
    """A validated policy. Load with `Policy.load(path)`, `Policy.from_yaml(text)` or `Policy.default()`."""

    version: int = 1
    keys: dict[str, dict[str, Any]] = {}  # key id -> partial policy overriding the fields above

    _per_key: dict[str, Policy] = PrivateAttr(default_factory=dict)
    _digest: str = PrivateAttr(default="")

    @field_validator("version", mode="before")
    @classmethod
    def _known_version(cls, v: Any) -> Any:
        if isinstance(v, bool) or (isinstance(v, int) and v != 1):
            raise ValueError(f"unknown policy version {v}; this Bastion reads version 1")
        return v

    def model_post_init(self, __context: Any) -> None:
        base = self.model_dump(exclude={"keys", "version"})
        for key_id, override in self.keys.items():
            if not isinstance(override, dict):
                raise _KeyPolicyError(key_id, msg="must be a mapping")
            if "keys" in override:
                raise _KeyPolicyError(key_id, ("keys",), "per-key policies cannot nest `keys`")
            if "version" in override:
                raise _KeyPolicyError(key_id, ("version",), "per-key policies cannot set `version` "
                                                            "(it is the file's, at the top level)")
            if isinstance(override.get("code_shield"), str):  # the shorthand sets the mode, keeps the rest
                override = {**override, "code_shield": {"mode": override["code_shield"]}}
            merged = _deep_merge(base, override)
            try:
                self._per_key[key_id] = Policy.model_validate({**merged, "version": self.version})
            except ValidationError as e:
                raise _KeyPolicyError(key_id, error=e) from None

    # ---- loading -------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text: str, source: str = "<policy>", *, allow_empty: bool = True) -> Policy:
        """Parse and validate policy text. An empty text gives the built-in defaults unless `allow_empty` is
        False (`load`: an empty policy file is an error, not a silent fallback)."""
        try:
            raw, lines = load_yaml_text(text, source)  # syntax errors and duplicate keys, with their line
        except ConfigError as e:
            raise PolicyError(str(e.problems[0])) from None
        if raw is None:
            if not allow_empty:
                raise PolicyError(f"{source}:1: the policy file is empty")
            raw = {}
        if not isinstance(raw, dict):
            raise PolicyError(f"{source}: the policy must be a mapping, got {type(raw).__name__}")
        try:
            p = cls.model_validate(raw)
        except ValidationError as e:
            raise PolicyError(_describe(e, lines, source)) from None
        except PolicyError as e:
            raise PolicyError(f"{source}: {e}") from None
        p._digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
        return p

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        p = Path(path)
        try:
            text = p.read_text("utf-8")
        except OSError as e:
            raise PolicyError(f"{p}: cannot read policy: {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise PolicyError(f"{p}: not a UTF-8 text file (byte {e.start})") from None
        return cls.from_yaml(text, source=str(p), allow_empty=False)

    @classmethod
    def default(cls) -> Policy:
        text = resources.files(__package__).joinpath("default_policy.yaml").read_text("utf-8")
        return cls.from_yaml(text, source="default_policy.yaml")

    @property
    def digest(self) -> str:
        """Short hash of the source text (shown by /healthz and in the audit log)."""
        return self._digest

    def for_key(self, key_id: str | None) -> Policy:
        """The effective policy for an API key id (the base policy when it has no override)."""
        if key_id is None:
            return self
        p = self._per_key.get(key_id)
        if p is None:
            return self
        p._digest = self._digest
        return p

    # ---- decisions -----------------------------------------------------------------------------
    def rule(self, code: str) -> CategoryRule:
        return self.categories.get(code) or CategoryRule()

    def refusal_for(self, categories: tuple[str, ...]) -> str:
        for c in categories:
            r = self.categories.get(c)
            if r is not None and r.refusal:
                return r.refusal
        return self.refusal

    def decide(self, verdict: Verdict, *, attack: bool | None = None) -> Decision:
        """Map one verdict to a decision. `attack` (default: `checks.attack`) turns the attack check on/off."""
        t = self.thresholds.resolve(verdict)
        base = t["prompt_harm"] if verdict.kind == "prompt" else t["response_harm"]
        hits: list[tuple[str, str]] = []  # (category, reason)
        scores = sorted(verdict.category_scores, key=lambda kv: -kv[1])
        top = verdict.top_category
        for code, s in scores:
            thr = self.rule(code).threshold
            thr = base if thr is None else thr
            # a zero score is never attributed (`thresholds.category: 0` would name all 14 categories)
            if verdict.score >= thr and ((s >= t["category"] and s > 0) or code == top):
                hits.append((code, f"{verdict.kind} harm {verdict.score:.2f} >= {thr:.2f} ({code} {s:.2f})"))
        if top is None and verdict.score >= base:
            hits.append(("unknown", f"{verdict.kind} harm {verdict.score:.2f} >= {base:.2f}"))
        use_attack = self.checks.attack if attack is None else attack
        if use_attack and verdict.attack_score is not None:
            thr = self.rule("attack").threshold
            thr = t["attack"] if thr is None else thr
            if verdict.attack_score >= thr:
                hits.append(("attack", f"attack {verdict.attack_score:.2f} >= {thr:.2f}"))
        return self._combine(hits)

    def decide_all(self, verdicts: list[Verdict], *, attack: bool | None = None) -> Decision:
        """The combined decision for several verdicts (the most severe action; all categories and reasons)."""
        return merge_decisions([self.decide(v, attack=attack) for v in verdicts])

    def decide_code(self, result: CodeShieldResult | None) -> Decision:
        """Map a code-shield result to a decision: `block` in block mode, `flag` in warn/append_fix mode,
        allow when the code is clean (or the code shield is off). Categories are the findings' S14/S2."""
        cs = self.code_shield
        if cs.mode == "off" or result is None or not result.insecure:
            return ALLOW
        cats = tuple(result.categories) or ("S14",)
        rules = ", ".join(dict.fromkeys(f.rule_id for f in result.findings))
        reason = f"insecure code ({cs.mode}, max severity {result.max_severity}): {rules}"
        if cs.mode == "block":
            return Decision("block", cats, cs.refusal, (reason,))
        return Decision("flag", cats, "", (reason,))

    def scan_code(self, text: str, *, fix: bool | None = None) -> tuple[CodeShieldResult | None, Decision]:
        """Run the code shield on a response under this policy: (result, decision); (None, ALLOW) when off.
        `fix` (default: append_fix mode) also computes the verified patch."""
        cs = self.code_shield
        if cs.mode == "off":
            return None, ALLOW
        from bastion.codeshield import scan_response  # lazy: tree-sitter grammars load on first use

        res = scan_response(text, min_severity=cs.min_severity, fix=(cs.mode == "append_fix") if fix is None else fix)
        return res, self.decide_code(res)

    def check(self, guard: Any, prompt: str, response: str | None = None) -> tuple[Verdict, Decision]:
        """Run a guard check and apply this policy: a prompt check, or a response check plus the code shield.

        >>> verdict, decision = Policy.default().check(Guard(), "How do I bake bread?")  # doctest: +SKIP
        """
        if response is None:
            v = guard.check_prompt(prompt)
            # `checks.input: false` leaves only the attack check (if it is on), as in the gateway.
            return v, self.decide(v if self.checks.input else attack_only(v))
        v = guard.check_response(prompt, response)
        d = self.decide(v) if self.checks.output else ALLOW
        if d.action != "block":
            d = merge_decisions([d, self.scan_code(response, fix=False)[1]])
        return v, d

    def decide_session(self, risk: float) -> Decision:
        """The session-risk decision. `categories.session` overrides `session`: its threshold (when set) wins
        over `session.threshold`, its action over `session.action`."""
        s = self.session
        rule = self.rule("session")
        thr = s.threshold if rule.threshold is None else rule.threshold
        if risk < thr:
            return ALLOW
        action = rule.action or s.action
        return self._combine([("session", f"session risk {risk:.2f} >= {thr:.2f}")], action)

    def _combine(self, hits: list[tuple[str, str]], forced: str | None = None) -> Decision:
        acted = []
        for code, reason in hits:
            action = forced or self.rule(code).action or self.action
            if action != "allow":
                acted.append((ACTION_SEVERITY[action], code, reason, action))
        if not acted:
            return ALLOW
        acted.sort(key=lambda x: -x[0])
        cats = tuple(dict.fromkeys(c for _, c, _, _ in acted))
        action = acted[0][3]
        # the refusal comes from a category that decided the action, not one with a milder action
        deciding = tuple(dict.fromkeys(c for _, c, _, a in acted if a == action))
        text = self.redaction if action == "redact" else self.refusal_for(deciding)
        return Decision(action=action, categories=cats, refusal=text,
                        reasons=tuple(r for _, _, r, _ in acted))


def attack_only(v: Verdict) -> Verdict:
    """The verdict with its harm reading removed (for policies that check attacks but not harm)."""
    return replace(v, score=0.0, unsafe=False, category_scores=())


def merge_decisions(decisions: list[Decision]) -> Decision:
    """The most severe decision; categories and reasons of all non-allow decisions are kept."""
    acted = [d for d in decisions if d.action != "allow"]
    if not acted:
        return ALLOW
    worst = max(acted, key=lambda d: ACTION_SEVERITY[d.action])
    cats = tuple(dict.fromkeys(c for d in acted for c in d.categories))
    reasons = tuple(dict.fromkeys(r for d in acted for r in d.reasons))
    return Decision(action=worst.action, categories=cats, refusal=worst.refusal, reasons=reasons)


def _line_of(loc: tuple[Any, ...], lines: dict[tuple, int]) -> int | None:
    return next((lines[loc[:k]] for k in range(len(loc), 0, -1) if loc[:k] in lines), None)


def _describe(e: ValidationError, lines: dict[tuple, int], source: str, prefix: tuple[Any, ...] = ()) -> str:
    """One line for a validation error: `source:line: field.path: message (+N more)`."""
    errs = e.errors()
    err = errs[0]
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _KeyPolicyError):  # a per-key override: described at its place under `keys`
        if cause.error is not None:
            return _describe(cause.error, lines, source, (*prefix, *err["loc"], "keys", cause.key_id))
        loc, msg = (*prefix, *err["loc"], "keys", cause.key_id, *cause.loc), cause.msg
    else:
        if isinstance(cause, FieldErrors):  # names a field below the model
            sub, msg = cause.problems[0]
        else:
            sub, msg = (), str(err["msg"]).removeprefix("Value error, ")
        loc = (*prefix, *err["loc"], *sub)
    line = _line_of(loc, lines)
    dotted = ".".join(str(x) for x in loc)
    more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
    where = f"{source}:{line}" if line else source
    return f"{where}: {dotted + ': ' if dotted else ''}{msg}{more}"


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


__all__ = ["Policy", "PolicyError", "Decision", "ALLOW", "ACTION_SEVERITY", "merge_decisions", "attack_only", "CATEGORY_CODES",
           "CodeShieldRules"]
