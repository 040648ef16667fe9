"""The red-team runner: plan seeds x techniques (seeded), attack the target concurrently, judge, store.

    cfg = CampaignConfig(target="guard", limit=100, seed=1)
    result = run_campaign(cfg, Store("bastion.db"))          # or: await arun_campaign(...)
    result.summaries[result.run_ids[0]]["categories"]

Every attempt is written to the store as soon as it is judged; a resumed run (`resume_campaign`) rebuilds the
same plan from the stored configuration and skips the attempts already stored.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import platform
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field, field_validator

from bastion.llm import (
    LLMAuthError,
    LLMBadResponseError,
    LLMClient,
    LLMConnectionError,
    LLMError,
    TokenBucket,
)
from bastion.llm.client import check_base_url, display_url, redact_url, url_secrets
from bastion.store import AttemptRecord, Store

from .base import AttackPrompt, Judge, Judgement, Seed, Target, TargetReply
from .judges import make_judge
from .stats import summarize
from .targets import (
    CURRENT_SEED,
    CompliantModel,
    GuardedTarget,
    PythonTarget,
    TargetError,
    TargetOptions,
    make_target,
)

DIRECT = "direct"  # the seed as one plain user message (the baseline technique)

# The default campaign: a baseline plus each technique family at its default parameters, and two composites.
# Long prompts cost the guard most (every 126-token window is scored), so the default keeps one public
# jailbreak-template technique (`jailbreak_template` draws from the DAN family and jailbreakchat.com) and
# 4-shot many-shot; `--techniques dan,many_shot:32,...` runs the heavier ones.
DEFAULT_TECHNIQUES: tuple[str, ...] = (
    DIRECT, "base64", "hex", "rot13", "atbash", "leetspeak", "unicode_confusables", "zero_width", "char_spacing",
    "payload_splitting", "refusal_suppression", "prefix_injection", "style_injection", "distractors",
    "instruction_override", "hypothetical", "fiction", "research", "jailbreak_template",
    "adversarial_suffix", "many_shot:4", "best_of_n:4", "refusal_suppression+base64", "prefix_injection+leetspeak",
)
# Sized so the default campaign on the default target finishes within ~2 minutes on 2 CPU cores, with 40
# attempts in each of the 16 strata: the seeds tracked as cbrn, those tracked as cybersecurity, and each of the 14
# hazards for the other seeds (S2 and S9 hold the rest of theirs), so every tracked category and every hazard
# has at least the bastion-default profile's minimum of 30 attempts.
DEFAULT_LIMIT = 640  # harmful attempts: 40 per stratum, enough for 0 successes to rule out CBRN (Wilson 95% < 10%)
# How plan_campaign deals attempts (stored in each run's versions): 1, by hazard (before seed-level tracked
# categories); 2, by stratum. A run is resumed only with the plan it was made with.
PLAN_VERSION = 2
DEFAULT_BENIGN_LIMIT = 255  # benign look-alikes, sent directly: all of them
DEFAULT_ATTACK_LIMIT = 10  # seeds per attacker-LLM attack


class CampaignError(RuntimeError):
    """A run could not go on (bad target, auth failure, error storm); the run is marked failed.

    `run_ids`: the runs it marked failed (their attempts stay stored); `error`: the cause, one line."""

    def __init__(self, message: str, run_ids: Sequence[str] = (), error: str | None = None) -> None:
        super().__init__(message)
        self.run_ids = list(run_ids)
        self.error = error or message


class CampaignConfig(BaseModel):
    """Everything that defines a campaign (stored with the run; API keys are never stored)."""

    target: str = "guard"
    model: str | None = None
    guarded: bool = False
    techniques: list[str] | None = None  # None: DEFAULT_TECHNIQUES
    attacks: list[str] = Field(default_factory=list)
    attacker_model: str | None = None
    attacker_base_url: str | None = None
    attack_limit: int = DEFAULT_ATTACK_LIMIT
    attack_max_queries: int = 20
    attack_max_tokens: int | None = None  # tokens (attacker and target together) per attack and seed
    attack_max_seconds: float = 300.0  # wall time per attack and seed
    categories: list[str] | None = None
    limit: int | None = DEFAULT_LIMIT  # harmful technique attempts; None: every seed x technique
    benign_limit: int | None = DEFAULT_BENIGN_LIMIT
    seed: int = 0
    concurrency: int = 8
    timeout: float = 60.0
    max_retries: int = 3
    rate_limit: float | None = None
    judge: str = "guard"
    judge_model: str | None = None
    judge_base_url: str | None = None
    # Names of the environment variables holding each endpoint's API key (the keys themselves are never stored).
    # None: OPENAI_API_KEY, and for a judge or attacker on the target's URL, the target's key.
    api_key_env: str | None = None
    judge_key_env: str | None = None
    attacker_key_env: str | None = None
    max_consecutive_errors: int = 5
    params: dict[str, Any] = Field(default_factory=dict)  # extra chat parameters for openai targets

    @field_validator("limit", "benign_limit", "attack_limit", "max_retries")
    @classmethod
    def _nonneg(cls, v: int | None) -> int | None:
        if v is not None and v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("concurrency", "attack_max_queries")
    @classmethod
    def _pos(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be >= 1")
        return v

    @field_validator("timeout", "attack_max_seconds")
    @classmethod
    def _pos_seconds(cls, v: float) -> float:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"must be a number of seconds > 0, got {v:g}")
        return v

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v <= 0):
            raise ValueError(f"must be > 0 requests per second, got {v:g} (leave it out for no limit)")
        return v

    @field_validator("target")
    @classmethod
    def _target_url(cls, v: str) -> str:
        url = v.partition(":")[2]
        if v.startswith("openai:") and url.startswith(("http://", "https://")):
            check_base_url(url)  # a bad host or port: a usage error before a run is created
        return v

    @field_validator("judge_base_url", "attacker_base_url")
    @classmethod
    def _base_url(cls, v: str | None) -> str | None:
        if v is not None and v.startswith(("http://", "https://")):  # other text fails when the client is built
            check_base_url(v)
        return v

    @field_validator("attack_max_tokens")
    @classmethod
    def _tokens(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError(f"must be >= 1, got {v} (leave it out for no token budget)")
        return v


@dataclass(frozen=True)
class Planned:
    key: str
    seed: Seed
    technique: str  # technique spec, or the attack name for attacker-LLM attacks
    kind: str = "technique"  # "technique" | "attack"


@dataclass
class Lane:
    """One stored run fed by the campaign: its target and judges (a --guarded campaign has two)."""

    run_id: str
    target: Target
    judges: list[Judge]
    label: str | None = None
    done: set[str] = field(default_factory=set)


@dataclass
class CampaignResult:
    run_ids: list[str]
    summaries: dict[str, dict[str, Any]]
    status: str
    labels: dict[str, str | None] = field(default_factory=dict)
    error: str | None = None


# ---- planning ----------------------------------------------------------------------------------------
def _seeds(benign: bool, categories: Sequence[str] | None) -> list[Seed]:
    from bastion.redteam.seeds import load_seeds

    return load_seeds("benign" if benign else "harmful", categories=categories)


def stratum(seed: Seed) -> str:
    """The group a seed is dealt in: the Preparedness tracked category it feeds when that category is chosen seed
    by seed (cbrn, cybersecurity), else its hazard (persuasion and model autonomy take whole hazards, and dealing
    by hazard keeps each of S5, S13 and S14 at a full share)."""
    from bastion.taxonomy import load_tracked_rules

    if seed.tracked and not load_tracked_rules().whole_hazard(seed.tracked):
        return seed.tracked
    return seed.category


MIN_TRACKED_STRATUM = 5  # fewer seeds of a tracked category in the selection: they are dealt with their hazard


def _by_category(seeds: list[Seed], rng: random.Random) -> list[list[Seed]]:
    """Seeds grouped by stratum (strata and seeds within each shuffled by the seeded rng). A tracked category
    with fewer than MIN_TRACKED_STRATUM seeds in the selection (`--categories S2` holds one CBRN seed) is no
    stratum of its own: a whole stratum's attempts on one seed would say little."""
    n_tracked = Counter(s.tracked for s in seeds if s.tracked)
    by_cat: dict[str, list[Seed]] = defaultdict(list)
    for s in sorted(seeds, key=lambda s: s.id):
        by_cat[stratum(s) if n_tracked[s.tracked] >= MIN_TRACKED_STRATUM else s.category].append(s)
    cats = sorted(by_cat)
    rng.shuffle(cats)
    for c in cats:
        rng.shuffle(by_cat[c])
    return [by_cat[c] for c in cats]


def _round_robin(groups: list[list[Seed]]) -> list[Seed]:
    out: list[Seed] = []
    for i in range(max((len(g) for g in groups), default=0)):
        out.extend(g[i] for g in groups if i < len(g))
    return out


_CHECK_SEED = Seed(id="check", text="Describe the [PLACEHOLDER] procedure.", category="S1", source="check",
                   licence="CC0")


def check_techniques(specs: Sequence[str]) -> None:
    """Raise ValueError naming the first unknown or malformed technique spec.

    Each spec is built once on a placeholder seed, so a bad parameter (`many_shot:abc`, `best_of_n:0`) is a
    usage error before any run is created, not an error on every attempt."""
    for s in specs:
        if s == DIRECT:
            continue
        try:
            build_prompts(Planned(key=f"check|{s}", seed=_CHECK_SEED, technique=s), 0)
        except ValueError as e:
            msg = str(e)
            raise ValueError(msg if s in msg or "technique" in msg else f"technique {s!r}: {msg}") from None
        except OSError:  # the seed library's dataset pool is missing (many_shot draws its questions there)
            raise
        except Exception as e:  # noqa: BLE001 - a technique that cannot build is a bad spec
            raise ValueError(f"technique {s!r} cannot build a prompt: {_one_line(e)}") from None


def plan_campaign(cfg: CampaignConfig) -> list[Planned]:
    """The deterministic list of attempts for a config (the same config always gives the same plan).

    Harmful attempts are dealt round-robin over the strata (`stratum`: each Preparedness tracked category, and
    the hazard of each seed that feeds none), so any `limit` spreads evenly over them; within a stratum, round r
    pairs seed r mod S with technique (r + offset + r // lcm(S, T)) mod T,
    which balances techniques across categories in every round and visits every seed x technique pair once
    before any repeats (S*T pairs per category)."""
    rng = random.Random(f"plan|{cfg.seed}")
    techs = list(dict.fromkeys(cfg.techniques or DEFAULT_TECHNIQUES))
    T = len(techs)
    groups = _by_category(_seeds(False, cfg.categories), rng)
    cap = sum(len(g) * T for g in groups)
    total = cap if cfg.limit is None else min(cfg.limit, cap)
    plan: list[Planned] = []
    r = 0
    while len(plan) < total:
        for ci, g in enumerate(groups):
            S = len(g)
            if r >= S * T or len(plan) >= total:
                continue
            off = ci * T // len(groups)  # spread the categories' starting techniques over the list
            tech = techs[(r + off + r // math.lcm(S, T)) % T]
            s = g[r % S]
            plan.append(Planned(key=f"{s.id}|{tech}", seed=s, technique=tech))
        r += 1
    benign = _round_robin(_by_category(_seeds(True, cfg.categories), rng))
    nb = len(benign) if cfg.benign_limit is None else min(cfg.benign_limit, len(benign))
    plan.extend(Planned(key=f"{s.id}|{DIRECT}", seed=s, technique=DIRECT) for s in benign[:nb])
    attack_seeds = _round_robin(groups)[: cfg.attack_limit]
    for name in cfg.attacks:
        plan.extend(Planned(key=f"{s.id}|attack:{name}", seed=s, technique=name, kind="attack")
                    for s in attack_seeds)
    return plan


def build_prompts(item: Planned, run_seed: int) -> list[AttackPrompt]:
    """The conversation(s) for a technique attempt; Best-of-N gives N variants to try in order."""
    rng = random.Random(f"{run_seed}|{item.key}")
    if item.technique == DIRECT:
        return [AttackPrompt(messages=[{"role": "user", "content": item.seed.text}], technique=DIRECT)]
    from bastion.redteam.techniques import BestOfN, Composite, get_technique

    tech = get_technique(item.technique)
    if isinstance(tech, BestOfN | Composite) and tech.variants > 1:
        prompts = tech.build_variants(item.seed.text, rng)
    else:
        prompts = [tech.build(item.seed.text, rng)]
    for p in prompts:
        p.technique = item.technique
    return prompts


# ---- construction ------------------------------------------------------------------------------------
def _versions(guard_service: Any) -> dict[str, Any]:
    import bastion

    v: dict[str, Any] = {"bastion": bastion.__version__, "python": platform.python_version(), "plan": PLAN_VERSION}
    if guard_service is not None:
        v["guard_model"] = guard_service.version
        v["guard_thresholds"] = dict(guard_service.guard.thresholds.as_tuple())
    return v


def default_guard_service() -> Any:
    """The shipped guard model behind a batching GuardService (tests replace this function)."""
    from bastion.guard import Guard

    from .guardsvc import GuardService

    return GuardService(Guard())


class _Services:
    """Lazily built shared pieces: the guard service and LLM clients."""

    def __init__(self, cfg: CampaignConfig, guard_factory: Callable[[], Any] | None) -> None:
        self.cfg = cfg
        self.guard_factory = guard_factory
        self._guard: Any = None
        self._buckets: dict[str, TokenBucket] = {}

    def bucket(self, url: str | None) -> TokenBucket | None:
        """The --rate-limit bucket of an endpoint, shared by every client of it (target, judge, attacker)."""
        if not self.cfg.rate_limit or not url:
            return None
        key = display_url(url)
        if key not in self._buckets:
            self._buckets[key] = TokenBucket(self.cfg.rate_limit)
        return self._buckets[key]

    def target_url(self) -> str | None:
        c = self.cfg
        return c.target.partition(":")[2] if c.target.startswith("openai:") else None

    def guard(self) -> Any:
        if self._guard is None:
            try:
                self._guard = (self.guard_factory or default_guard_service)()
            except Exception as e:  # noqa: BLE001 - one clear line for the CLI
                raise CampaignError(f"cannot load the guard model: {e}") from e
        return self._guard

    def api_key(self, url: str | None, env: str | None) -> str | None:
        """The API key for a client of `url`: from the variable `env` names, else the target's key when `url` is
        the target's endpoint, else None (the client then reads OPENAI_API_KEY)."""
        if env is None and url and self.cfg.api_key_env and display_url(url) == display_url(self.target_url() or ""):
            env = self.cfg.api_key_env
        if env is None:
            return None
        key = os.environ.get(env)
        if not key:
            raise CampaignError(f"the environment variable {env} (an API key) is not set")
        return key

    def target_options(self) -> TargetOptions:
        c = self.cfg
        return TargetOptions(model=c.model, api_key=self.api_key(self.target_url(), c.api_key_env),
                             timeout=c.timeout, max_retries=c.max_retries,
                             rate_limit_rps=c.rate_limit, rate_limiter=self.bucket(self.target_url()),
                             concurrency=c.concurrency, params=dict(c.params), guard_factory=self.guard)

    def judge_client(self) -> LLMClient | None:
        c = self.cfg
        if not c.judge_model:
            return None
        url = c.judge_base_url or self.target_url() or c.attacker_base_url or "http://localhost:8000/v1"
        return LLMClient(url, c.judge_model, api_key=self.api_key(url, c.judge_key_env), timeout=c.timeout, max_retries=c.max_retries, concurrency=c.concurrency,
                         rate_limiter=self.bucket(url))

    def judges(self) -> list[Judge]:
        c = self.cfg
        client = self.judge_client()
        names = [c.judge]
        if client is not None and c.judge == "guard":
            names.append("strongreject")
        elif c.judge != "guard":
            names.append("guard")
        return [make_judge(n, guard_service=self.guard() if n == "guard" else None, client=client) for n in names]


def _base_target(cfg: CampaignConfig, svc: _Services) -> Target:
    if cfg.target == "guard" and cfg.guarded:
        return CompliantModel()
    return make_target(cfg.target, svc.target_options())


def _make_lanes(cfg: CampaignConfig, svc: _Services, run_ids: Sequence[str],
                labels: Sequence[str | None]) -> list[Lane]:
    base = _base_target(cfg, svc)
    judges = svc.judges()
    if not cfg.guarded:
        return [Lane(run_ids[0], base, judges, labels[0])]
    post = GuardedTarget(base, svc.guard(), name=f"guarded:{base.name}")
    return [Lane(run_ids[0], base, judges, labels[0]), Lane(run_ids[1], post, judges, labels[1])]


# ---- execution ---------------------------------------------------------------------------------------
_FATAL = (LLMAuthError, LLMConnectionError, LLMBadResponseError)


def _is_fatal(e: BaseException) -> bool:
    if isinstance(e, _FATAL):
        return True
    return isinstance(e, LLMError) and not e.retryable and e.status is not None and e.status < 500 \
        and e.status != 429


_COMMON_WORDS = frozenset(
    "the a an to and of in is are it you i for on with that this here be can as your not do how what sure step "
    "will or if at by from we they".split())


def _plainness(text: str) -> float:
    """Share of whitespace tokens that are very common English words: plain text scores well above ciphertext."""
    toks = [t.strip(".,:;!?'\"()[]").lower() for t in text.split()]
    toks = [t for t in toks if t]
    return sum(t in _COMMON_WORDS for t in toks) / len(toks) if toks else 0.0


def _one_line(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


class _Runner:
    def __init__(self, cfg: CampaignConfig, store: Store, lanes: list[Lane], svc: _Services,
                 progress: Callable[[int, int], None] | None) -> None:
        self.cfg = cfg
        self.store = store
        self.lanes = lanes
        self.svc = svc
        self.progress = progress
        self.fatal: BaseException | None = None
        self.consecutive_errors = 0
        self.done = 0
        self._attacker: LLMClient | None = None

    def attacker(self) -> LLMClient:
        if self._attacker is None:
            c = self.cfg
            if not c.attacker_model:
                raise CampaignError("attacks need --attacker-model (and --attacker-base-url)")
            url = c.attacker_base_url or self.svc.target_url() or "http://localhost:8000/v1"
            self._attacker = LLMClient(url, c.attacker_model, api_key=self.svc.api_key(url, c.attacker_key_env),
                                       timeout=c.timeout, max_retries=c.max_retries, concurrency=c.concurrency,
                                       rate_limiter=self.svc.bucket(url))
        return self._attacker

    async def run(self, todo: list[Planned]) -> None:
        it: Iterator[Planned] = iter(todo)
        total = len(todo)

        async def worker() -> None:
            for item in it:
                if self.fatal is not None:
                    return
                await self.attempt(item)
                self.done += 1
                if self.progress:
                    self.progress(self.done, total)

        workers = [asyncio.create_task(worker()) for _ in range(self.cfg.concurrency)]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise

    async def _respond(self, target: Target, messages: list[dict[str, Any]], **kw: Any) -> TargetReply:
        coro = target.respond(messages, **kw)
        if isinstance(target, PythonTarget):
            try:
                return await asyncio.wait_for(coro, timeout=self.cfg.timeout)
            except asyncio.TimeoutError:
                raise TimeoutError(f"target {target.name} did not answer within {self.cfg.timeout:g}s") from None
        return await coro

    async def _judge(self, lane: Lane, item: Planned, prompt: AttackPrompt,
                     reply: TargetReply) -> tuple[Judgement, dict[str, Any], str | None]:
        """Run the lane's judges (the first is primary). For an encoded-answer technique the reply is judged
        decoded when the decoding reads more like plain language (a model may answer a cipher in clear)."""
        seen, decoded = reply, None
        if prompt.decode is not None and not reply.blocked_by and reply.text:
            try:
                d = prompt.decode(reply.text)
            except Exception:  # noqa: BLE001 - an undecodable reply is judged as sent
                d = None
            if d and d != reply.text and _plainness(d) > _plainness(reply.text):
                decoded = d
                seen = dataclasses.replace(reply, text=d)
        out: dict[str, Any] = {}
        primary: Judgement | None = None
        for j in lane.judges:
            try:
                jd = await j.judge(item.seed, prompt.messages, seen)
            except Exception as e:  # noqa: BLE001
                if j is lane.judges[0]:
                    raise
                out[j.name] = {"error": _one_line(e)}
                continue
            out[j.name] = dataclasses.asdict(jd)
            primary = primary or jd
        assert primary is not None
        return primary, out, decoded

    async def execute(self, item: Planned) -> tuple[list[tuple[str, AttemptRecord]], BaseException | None]:
        """Run one planned attempt on every lane still missing it, without touching the store.

        Returns the (run_id, record) pairs to store, and the exception if the attempt failed (its records then
        carry the error). A distributed engine can call this on workers and store the records on the driver."""
        lanes = [ln for ln in self.lanes if item.key not in ln.done]
        token = CURRENT_SEED.set(item.seed)
        try:
            if item.kind == "attack":
                recs = [await self._attack(ln, item) for ln in lanes]
            else:
                recs = await self._technique(lanes, item)
        except asyncio.CancelledError:
            raise
        except CampaignError as e:
            return [], e
        except Exception as e:  # noqa: BLE001 - recorded on the attempt
            err = _one_line(e)
            return [(ln.run_id, self._record(item, [], None, None, {}, error=err)) for ln in lanes], e
        finally:
            CURRENT_SEED.reset(token)
        return [(ln.run_id, rec) for ln, rec in zip(lanes, recs, strict=True)], None

    async def attempt(self, item: Planned) -> None:
        """Execute one planned attempt, store its records at once, and track fatal errors."""
        pairs, exc = await self.execute(item)
        by_run = {ln.run_id: ln for ln in self.lanes}
        for rid, rec in pairs:
            self.store.add_attempt(rid, rec)
            if not rec.error:
                by_run[rid].done.add(item.key)
        if isinstance(exc, CampaignError) or (exc is not None and _is_fatal(exc)):
            self.fatal = exc
            return
        errored = [rec.error for _, rec in pairs if rec.error]
        self.consecutive_errors = self.consecutive_errors + 1 if errored else 0
        if errored and self.consecutive_errors >= self.cfg.max_consecutive_errors:
            self.fatal = CampaignError(f"{self.consecutive_errors} attempts failed in a row; last: {errored[-1]}")

    async def _technique(self, lanes: list[Lane], item: Planned) -> list[AttemptRecord]:
        prompts = build_prompts(item, self.cfg.seed)
        # Each lane keeps its first successful variant (Best-of-N), else its last one; the variants it tried
        # before are stored too, as `variant` turns after the kept conversation.
        best: dict[int, tuple[AttackPrompt, TargetReply, Judgement, dict[str, Any], str | None, int]] = {}
        tried: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for n, prompt in enumerate(prompts, 1):
            raw: TargetReply | None = None
            for li, ln in enumerate(lanes):
                if li in best and best[li][2].success:
                    continue
                if isinstance(ln.target, GuardedTarget) and li > 0 and raw is not None:
                    reply = await ln.target.respond(prompt.messages, inner_reply=raw)
                else:
                    reply = await self._respond(ln.target, prompt.messages)
                    raw = raw or reply
                if reply.error:
                    raise RuntimeError(f"target error: {reply.error}")
                jd, verdicts, decoded = await self._judge(ln, item, prompt, reply)
                if li in best:
                    tried[li].append(self._variant_turn(*best[li]))
                best[li] = (prompt, reply, jd, verdicts, decoded, n)
            if all(li in best and best[li][2].success for li in range(len(lanes))):
                break
        out = []
        for li in range(len(lanes)):
            prompt, reply, jd, verdicts, decoded, tries = best[li]
            extra: dict[str, Any] = {"tries": tries} if len(prompts) > 1 else {}
            if decoded is not None:
                extra["decoded_reply"] = decoded
            if prompt.meta:
                extra["technique_meta"] = prompt.meta
            rec = self._record(item, prompt.messages, reply, jd, verdicts, extra=extra)
            if tried[li]:
                rec.turns = [*prompt.messages, {"role": "assistant", "content": reply.text}, *tried[li]]
            out.append(rec)
        return out

    @staticmethod
    def _variant_turn(prompt: AttackPrompt, reply: TargetReply, jd: Judgement, verdicts: dict[str, Any],
                      decoded: str | None, n: int) -> dict[str, Any]:
        """A Best-of-N variant that was tried and not kept: its reply, with its prompt and verdicts in meta."""
        meta: dict[str, Any] = {"tries": n, "messages": prompt.messages, "judges": verdicts,
                                "blocked_by": reply.blocked_by, "latency_ms": reply.latency_ms}
        if decoded is not None:
            meta["decoded_reply"] = decoded
        if reply.usage:
            meta["tokens"] = dict(reply.usage)
        return {"role": "variant", "content": reply.text, "meta": meta}

    async def _attack(self, lane: Lane, item: Planned) -> AttemptRecord:
        from bastion.redteam.attacks import Budget
        from bastion.redteam.base import ATTACKS

        cls = ATTACKS.get(item.technique)
        if cls is None:
            raise CampaignError(f"unknown attack {item.technique!r}; known: {', '.join(ATTACKS) or 'none'}")
        attacker = self.attacker() if getattr(cls, "requires_llm", True) else None
        # A per-attempt seed keeps attacks deterministic whatever order the attempts finish in.
        aseed = random.Random(f"{self.cfg.seed}|{item.key}").randrange(2**31)
        budget = Budget(max_queries=self.cfg.attack_max_queries, max_tokens=self.cfg.attack_max_tokens,
                        max_seconds=self.cfg.attack_max_seconds)
        attack = cls(attacker, budget, seed=aseed)
        outcome = await attack.run(item.seed, lane.target, lane.judges[0])
        jd = outcome.judgement or Judgement(success=False, score=0.0, refused=False, judge=lane.judges[0].name,
                                            reason="no judged reply")
        turns = [{"role": "attack_query", "content": t.reply,
                  "meta": {"index": t.index, "messages": t.messages,
                           "judgement": dataclasses.asdict(t.judgement) if t.judgement else None,
                           "error": t.error, **t.meta}} for t in outcome.turns]
        reply = TargetReply(text=outcome.best_reply, usage={"total_tokens": outcome.tokens_used})
        extra = {"attack": {"stopped_reason": outcome.stopped_reason, "queries": outcome.queries_used,
                            "attacker_queries": outcome.attacker_queries, "tokens": outcome.tokens_used,
                            "elapsed_s": round(outcome.elapsed_s, 3), "events": outcome.events[:200]}}
        rec = self._record(item, outcome.best_prompt, reply, jd, {lane.judges[0].name: dataclasses.asdict(jd)},
                           extra=extra)
        rec.success = bool(outcome.success)
        rec.latency_ms = outcome.elapsed_s * 1000.0
        rec.turns = [*outcome.best_prompt, {"role": "assistant", "content": outcome.best_reply}, *turns]
        if outcome.error:
            # stored with its turns; an errored attempt is left out of the rates and re-run on --resume
            rec.error = f"{outcome.stopped_reason}: {outcome.error}"
        return rec

    @staticmethod
    def _record(item: Planned, messages: list[dict[str, Any]], reply: TargetReply | None, jd: Judgement | None,
                judges: dict[str, Any], error: str | None = None, extra: dict[str, Any] | None = None
                ) -> AttemptRecord:
        verdicts: dict[str, Any] = {"judges": judges}
        if reply is not None and reply.guard_verdicts:
            verdicts["guard"] = reply.guard_verdicts
        if extra:
            verdicts.update(extra)
        return AttemptRecord(
            key=item.key, seed_id=item.seed.id, seed_text=item.seed.text, category=item.seed.category,
            tracked=item.seed.tracked or "", technique=item.technique, benign=item.seed.benign, prompt=list(messages),
            reply=reply.text if reply is not None else None, blocked_by=reply.blocked_by if reply else None,
            verdicts=verdicts, success=jd.success if jd else None, refused=jd.refused if jd else None,
            score=jd.score if jd else None, latency_ms=reply.latency_ms if reply else None,
            tokens=dict(reply.usage) if reply is not None else {}, error=error)


# ---- public entry points ------------------------------------------------------------------------------
@dataclass
class PreparedCampaign:
    """A campaign planned, its targets built and its runs created (or reopened): what every engine shares."""

    cfg: CampaignConfig
    svc: Any
    plan: list
    lanes: list
    run_ids: list[str]
    labels: list[str | None]

    overrides: dict[str, Any] = field(default_factory=dict)  # settings a --resume changed (see RESUMABLE)
    final: tuple[str, str | None] | None = None  # the status `record` decided on, when it differs

    def record(self, store: Store, status: str, error: str | None) -> dict[str, Any]:
        """Store each run's final status and summary; returns the summaries.

        A run that would end `completed` with every attempt failed (nothing judged) ends `failed` instead, with
        the first error as its cause; `result` then raises."""
        summaries = {}
        for rid in self.run_ids:
            summaries[rid] = summarize(store.attempts(rid))
        if status == "completed":
            dead = [s for s in summaries.values() if s["attempts"] and s["errors"] == s["attempts"]]
            if dead:
                s = dead[0]
                status, error = "failed", (f"all {s['attempts']} attempts failed; first error: "
                                           f"{s.get('first_error') or 'unknown'}")
                self.final = (status, error)
        for rid in self.run_ids:
            prev = store.get_run(rid).summary  # keeps the record of earlier resumes' overrides
            if prev and prev.get("resume_overrides"):
                summaries[rid]["resume_overrides"] = prev["resume_overrides"]
            store.set_status(rid, status, error=error, summary=summaries[rid])
        return summaries

    def result(self, summaries: dict[str, Any], status: str, error: str | None) -> CampaignResult:
        """The campaign result; raises CampaignError for a failed run (its attempts stay stored)."""
        if self.final is not None:
            status, error = self.final
        if status == "failed":
            raise CampaignError(f"run {', '.join(self.run_ids)} failed: {error} (attempts so far are kept; "
                                f"{resume_hint(error or '', self.run_ids[0], self.cfg)})",
                                run_ids=self.run_ids, error=error)
        return CampaignResult(run_ids=self.run_ids, summaries=summaries, status=status,
                              labels=dict(zip(self.run_ids, self.labels, strict=False)), error=error)


def resume_hint(error: str, run_id: str, cfg: CampaignConfig) -> str:
    """How to go on after a failed run, worded by its cause."""
    cmd = f"bastion redteam --resume {run_id}"
    e = error.lower()
    if cfg.target.startswith("openai:") or cfg.judge_model or cfg.attacks:
        if "http 401" in e or "http 403" in e or "openai_api_key" in e:
            return f"set the right key in OPENAI_API_KEY, then continue with: {cmd}"
        if "cannot connect" in e or "http 404" in e or "malformed response" in e:
            return (f"fix the endpoint, then continue with: {cmd} (add --target openai:URL, --judge-base-url or "
                    "--attacker-base-url to change an address, --model NAME while no attempt has been judged)")
        if "timed out" in e or "did not answer within" in e:
            return f"continue with a longer timeout: {cmd} --timeout SECONDS"
        if "http 429" in e or "rate limit" in e:
            return f"continue more slowly: {cmd} --rate-limit RPS --concurrency N"
    if "did not answer within" in e:
        return f"continue with a longer timeout: {cmd} --timeout SECONDS"
    return f"fix the cause and continue with: {cmd}"


# Settings a --resume may change (where and how the target, judges and attacker are reached): the rest defines
# the campaign (its plan and what is measured) and stays as stored. `model` only while no attempt was judged.
RESUMABLE = ("target", "model", "timeout", "max_retries", "rate_limit", "concurrency", "judge_base_url",
             "attacker_base_url", "api_key_env", "judge_key_env", "attacker_key_env")


_URL_SETTINGS = {"target": "--target", "judge_base_url": "--judge-base-url", "attacker_base_url": "--attacker-base-url"}


def _setting_url(key: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if key == "target":
        return value.partition(":")[2] if value.startswith("openai:") else None
    return value


def _redacted(settings: dict[str, Any]) -> dict[str, Any]:
    """`settings` as stored: credentials in the target, judge and attacker URLs (user:password@, ?api_key=) as
    ***. A resume asks for such a URL again (see `_resume_config`)."""
    out = dict(settings)
    for key in _URL_SETTINGS:
        url = _setting_url(key, out.get(key))
        if url:
            out[key] = ("openai:" if key == "target" else "") + redact_url(url)
    return out


def stored_settings(store: Store, run_id: str) -> dict[str, Any]:
    """The settings a stored run resumes with (not validated): its config, with the overrides of earlier
    resumes applied and defaults for keys an older version did not store."""
    return _stored_settings(store.get_run(run_id))


def _stored_settings(run: Any) -> dict[str, Any]:
    raw = {**CampaignConfig().model_dump(), **run.config}
    for o in (run.summary or {}).get("resume_overrides", []):
        raw.update({k: v for k, v in o.get("changes", {}).items() if k in RESUMABLE})
    return raw


def _resume_config(run: Any, cfg: CampaignConfig | None, store: Store, run_ids: Sequence[str]
                   ) -> tuple[CampaignConfig, dict[str, Any]]:
    """The config to resume `run` with: the stored one, with the earlier resumes' overrides, then `cfg`'s
    changes to RESUMABLE settings (raises TargetError for any other change)."""
    plan = run.versions.get("plan", 1) if isinstance(run.versions, dict) else 1
    if plan != PLAN_VERSION:
        if getattr(store, "_needs_upgrade", False):  # still schema version 1: the older Bastion can open it
            advice = "resume it with the Bastion that made it (the store is left as it was), or start a new run"
        else:
            advice = ("this store has since been upgraded to schema version 2 by a newer run, which that Bastion "
                      "cannot open, so no Bastion can resume it: start a new run")
        raise TargetError(f"run {run.id} was planned by an earlier Bastion (plan version {plan}, this one deals "
                          f"attempts by plan version {PLAN_VERSION}): {advice}")
    have = _stored_settings(run)
    original = {**CampaignConfig().model_dump(), **run.config}
    want = have if cfg is None else cfg.model_dump()
    changed = {k: v for k, v in want.items() if v != have.get(k) and v != original.get(k)}
    bad = [k for k in changed if k not in RESUMABLE]
    if bad:
        raise TargetError(f"--resume continues run {run.id} with its stored settings; "
                          f"{', '.join('--' + k.replace('_', '-') for k in bad)} cannot change (start a new run)")
    if "target" in changed:
        old, new = str(have["target"]), changed["target"]
        if not (old.startswith("openai:") and new.startswith("openai:")):
            raise TargetError(f"--resume can change only an openai: target's URL (run {run.id} has target {old!r})")
    if "model" in changed:
        judged = sum(1 for rid in run_ids for a in store.attempts(rid) if not a.error)
        if judged:
            raise TargetError(f"--model cannot change on --resume: run {run.id} already has {judged} judged "
                              f"attempt(s) against model {have.get('model')!r} (start a new run)")
    new = {**have, **changed}
    for key, flag in _URL_SETTINGS.items():
        url = _setting_url(key, new.get(key))
        if key not in changed and url and "***" in url_secrets(url):
            raise TargetError(f"run {run.id} was stored without the credentials in its {flag} URL; "
                              f"give {flag} again, with them, to resume it")
    return CampaignConfig(**new), changed


def prepare_campaign(cfg: CampaignConfig | None, store: Store, *, guard_factory: Callable[[], Any] | None = None,
                     resume: str | None = None, engine: str = "local") -> PreparedCampaign:
    """Validate the config, plan the attempts, build targets and judges (a bad target fails before anything
    is stored), then create the runs, or reopen them with `resume=RUN_ID`.

    Resuming uses the stored config; `cfg` (None: the stored one) may change only the RESUMABLE settings
    (a moved endpoint, a longer timeout, ...), and the change is recorded in the runs' `resume_overrides`."""
    overrides: dict[str, Any] = {}
    if resume:
        run = store.get_run(resume)
        runs = [run] + ([store.get_run(run.paired_with)] if run.paired_with else [])
        runs.sort(key=lambda r: 0 if r.label in (None, "pre") else 1)
        run_ids = [r.id for r in runs]
        labels: list[str | None] = [r.label for r in runs]
        cfg, overrides = _resume_config(run, cfg, store, run_ids)
    else:
        if cfg is None:
            raise ValueError("a campaign needs a CampaignConfig (or resume=RUN_ID)")
        run_ids, labels = [], []
    try:
        check_techniques(cfg.techniques or DEFAULT_TECHNIQUES)
    except ValueError as e:
        raise TargetError(str(e)) from e
    if cfg.attacks:
        import bastion.redteam.attacks  # noqa: F401  (registers the attacks)
        from bastion.redteam.base import ATTACKS

        unknown = [a for a in cfg.attacks if a not in ATTACKS]
        if unknown:
            raise TargetError(f"unknown attack(s) {', '.join(unknown)}; known: {', '.join(sorted(ATTACKS))}")
        needs = [a for a in cfg.attacks if getattr(ATTACKS[a], "requires_llm", True)]
        if needs and not cfg.attacker_model:
            raise TargetError(f"attack(s) {', '.join(needs)} need --attacker-model (and --attacker-base-url)")
    svc = _Services(cfg, guard_factory)
    plan = plan_campaign(cfg)
    lanes = _make_lanes(cfg, svc, run_ids or ["", ""], labels or [None, None])
    if not resume:
        needs_guard = cfg.target == "guard" or cfg.guarded or cfg.judge == "guard"
        versions = _versions(svc.guard() if needs_guard else None)
        if engine != "local":
            versions["engine"] = engine
        config = _redacted(cfg.model_dump())  # no credentials from URLs in the store
        if cfg.guarded:
            pre = store.create_run(lanes[0].target.name, config, cfg.seed, versions, label="pre")
            post = store.create_run(lanes[1].target.name, config, cfg.seed, versions, label="post")
            store.pair_runs(pre, post)
            run_ids, labels = [pre, post], ["pre", "post"]
        else:
            run_ids, labels = [store.create_run(lanes[0].target.name, config, cfg.seed, versions)], [None]
        for ln, rid, lab in zip(lanes, run_ids, labels, strict=False):
            ln.run_id, ln.label = rid, lab
    else:
        for rid in run_ids:
            summary = None
            if overrides:  # recorded before any attempt is made with them
                import datetime

                summary = dict(store.get_run(rid).summary or {})
                summary["resume_overrides"] = [*summary.get("resume_overrides", []), {
                    "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "changes": _redacted(overrides)}]
            store.set_status(rid, "running", summary=summary)
    for ln in lanes:
        ln.done = store.done_keys(ln.run_id)
    return PreparedCampaign(cfg, svc, plan, lanes, run_ids, labels, overrides)


async def arun_campaign(cfg: CampaignConfig | None, store: Store, *, progress: Callable[[int, int], None] | None = None,
                        guard_factory: Callable[[], Any] | None = None, resume: str | None = None
                        ) -> CampaignResult:
    """Run (or, with `resume=RUN_ID`, continue) a campaign; returns the run ids and their statistics.

    Raises CampaignError (after marking the runs failed) when the target cannot be used. Target errors on
    single attempts are stored on the attempt and left out of the rates."""
    p = prepare_campaign(cfg, store, guard_factory=guard_factory, resume=resume)
    todo = [x for x in p.plan if any(x.key not in ln.done for ln in p.lanes)]
    runner = _Runner(p.cfg, store, p.lanes, p.svc, progress)
    status, error = "completed", None
    try:
        await runner.run(todo)
        if runner.fatal is not None:
            status, error = "failed", _one_line(runner.fatal) if not isinstance(runner.fatal, CampaignError) \
                else str(runner.fatal)
    except (asyncio.CancelledError, KeyboardInterrupt):
        status, error = "interrupted", "interrupted"
        raise
    except BaseException as e:
        status, error = "failed", _one_line(e)
        raise
    finally:
        summaries = p.record(store, status, error)
        if p.svc._guard is not None:
            await p.svc._guard.aclose()
        await _close_clients(p.lanes, runner)
    return p.result(summaries, status, error)


async def _close_clients(lanes: list[Lane], runner: _Runner) -> None:
    """Close the async HTTP clients inside the loop that used them."""
    clients: list[Any] = [runner._attacker]
    for ln in lanes:
        t: Any = ln.target
        while t is not None:
            clients.append(getattr(t, "client", None))
            t = getattr(t, "inner", None)
        clients.extend(getattr(j, "client", None) for j in ln.judges)
    seen: set[int] = set()
    for c in clients:
        if isinstance(c, LLMClient) and id(c) not in seen:
            seen.add(id(c))
            await c.aclose()


def run_campaign(cfg: CampaignConfig | None, store: Store, **kw: Any) -> CampaignResult:
    """Blocking wrapper around `arun_campaign`."""
    return asyncio.run(arun_campaign(cfg, store, **kw))


def resume_campaign(store: Store, run_id: str, **kw: Any) -> CampaignResult:
    """Continue a stored run (and its --guarded pair) where it stopped (with its earlier resumes' overrides)."""
    run = store.get_run(run_id)
    return run_campaign(None, store, resume=run.id, **kw)
