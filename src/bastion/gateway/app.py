"""The guarded OpenAI-compatible gateway (FastAPI).

Request path: auth -> rate limit -> body limit/JSON -> input rail (latest turn, conversation, session)
-> upstream (only if allowed) -> output rail (whole response, or streamed in checked windows) -> audit.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from bastion.guard import Verdict
from bastion.guard.policy import ALLOW, Decision, Policy, PolicyError, attack_only, merge_decisions
from bastion.jsonl import LineError, loads_line

from .audit import AuditLog
from .batcher import GuardBatcher
from .errors import ApiError, error_body
from .keys import KeyStore
from .metrics import Metrics
from .ratelimit import RateLimiter
from .sessions import SessionState, SessionTracker
from .streaming import FieldTexts, StreamScanner, choice_fields, choice_texts, chunk_text, readable_text

log = logging.getLogger("bastion.gateway")

# (prompt, response, decision) -> revised response: a `bastion.constitution.Reviser` is one
# (`bastion serve --revise-model M` builds it); any async callable of this shape works.
Reviser = Callable[[str, str, Decision], Awaitable[str]]

# The most upstream text read after a streamed violation to revise the whole reply.
MAX_REVISE_CHARS = 100_000
# Checks of more text than this go to their own lane (see Gateway.bulk).
BULK_CHARS = 20_000
_INSTRUCTION_ROLES = ("system", "developer", "tool", "function")
APPEND_FIX_HEADER = "\n\nSafer version (verified patch):\n\n~~~diff\n"


class GatewayConfig(BaseModel):
    """Server settings (the CLI fills these from flags)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    upstream: str  # base URL including /v1, e.g. http://127.0.0.1:8000/v1
    upstream_api_key: str | None = Field(default=None, repr=False)
    host: str = "127.0.0.1"
    policy_path: Path | None = None
    keys_path: Path | None = None
    audit_path: Path | None = Path("bastion_audit.db")
    audit_content: bool = False
    audit_key: bytes | None = Field(default=None, repr=False)
    max_body_bytes: int = Field(1_000_000, gt=0)
    rate_limit_per_minute: float = Field(600.0, ge=0)  # per key (per client address without keys); 0 = off
    upstream_timeout_s: float = Field(60.0, gt=0)  # max wait for the first byte / between stream chunks
    connect_timeout_s: float = Field(5.0, gt=0)
    policy_poll_s: float = Field(1.0, ge=0)  # 0: reload on SIGHUP only
    guard_workers: int = Field(1, ge=1)
    guard_max_batch: int = Field(64, ge=1)
    revise_timeout_s: float = Field(60.0, gt=0)  # max time for one revision (critique + revise); then refuse
    insecure: bool = False


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, keys: KeyStore, insecure: bool) -> None:
    """Refuse to expose an unauthenticated gateway beyond loopback."""
    if not keys and not insecure and not is_loopback(host):
        raise ValueError(f"refusing to listen on {host} without client API keys: add keys with "
                         "`bastion keys add ID --keys FILE` (then --keys FILE) or pass --insecure")


class PolicyStore:
    """The live policy, reloaded on SIGHUP or file change; an invalid file keeps the old policy."""

    def __init__(self, path: Path | None, validate: Callable[[Policy], None] | None = None,
                 metrics: Metrics | None = None) -> None:
        self.path = path
        self.validate = validate
        self.metrics = metrics
        self.last_error: str | None = None
        self.policy = self._load()
        self._stamp = self._stat()
        self._pending: tuple[float, int] | None = None

    def _load(self) -> Policy:
        p = Policy.load(self.path) if self.path else Policy.default()
        if self.validate:
            try:
                self.validate(p)
            except PolicyError as e:  # name the file, as load errors do
                raise PolicyError(f"{self.path or 'default_policy.yaml'}: {e}") from None
        return p

    def _stat(self) -> tuple[float, int] | None:
        if not self.path:
            return None
        try:
            st = os.stat(self.path)
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def reload(self) -> bool:
        self._stamp = self._stat()
        try:
            new = self._load()
        except PolicyError as e:
            self.last_error = str(e)
            log.error("policy reload rejected, keeping the previous policy: %s", e)
            if self.metrics:
                self.metrics.inc("bastion_policy_reloads_total", {"result": "rejected"})
            return False
        self.policy, self.last_error = new, None
        log.info("policy reloaded (%s)", new.digest)
        if self.metrics:
            self.metrics.inc("bastion_policy_reloads_total", {"result": "ok"})
        return True

    def poll(self) -> bool | None:
        """Reload once the file has changed since the last load and then stayed the same for one poll; None
        otherwise. Waiting for a stable file keeps a half-written one (an editor or `write_text` truncates
        first, so an empty file is seen for a moment) from replacing the policy."""
        st = self._stat()
        if not self.path or st == self._stamp:
            self._pending = None
            return None
        if st != self._pending:
            self._pending = st
            return None
        self._pending = None
        return self.reload()


@dataclass
class _Ctx:
    request_id: str
    key_id: str | None
    policy: Policy
    started: float
    body: dict[str, Any]
    prompt: str = ""  # latest user turn: the context for output checks
    latest_index: int | None = None  # the message `prompt` came from (None: no role-user message)
    input_decision: Decision = ALLOW
    input_verdicts: list[dict[str, Any]] = field(default_factory=list)


class Gateway:
    """Holds the shared state of one server: guard, policy, keys, limiter, sessions, audit, metrics."""

    def __init__(self, config: GatewayConfig, guard: Any = None, keys: KeyStore | None = None,
                 reviser: Reviser | None = None) -> None:
        self.config = config
        if guard is None:
            from bastion.guard import Guard

            guard = Guard()
        self.guard = guard
        self.reviser = reviser
        self.metrics = Metrics()
        self.keys = keys if keys is not None else (KeyStore.load(config.keys_path) if config.keys_path else KeyStore())
        self.policies = PolicyStore(config.policy_path, self._validate_policy, self.metrics)
        self.batcher = GuardBatcher(guard, max_batch=config.guard_max_batch, workers=config.guard_workers)
        # Checks a client is waiting on (the input rail, the end of a stream) get their own lane, so they never
        # queue behind a batch of mid-stream checks, whose latency the stream hides.
        self.urgent = GuardBatcher(guard, max_batch=config.guard_max_batch, workers=1)
        # Long texts take minutes of windows: they get a lane of their own, so one client sending a long document
        # does not hold every other client's check behind it.
        self.bulk = GuardBatcher(guard, max_batch=config.guard_max_batch, workers=1)
        self.limiter = RateLimiter(config.rate_limit_per_minute)
        self.sessions = SessionTracker()
        self.audit = (AuditLog(config.audit_path, config.audit_content, config.audit_key)
                      if config.audit_path else None)
        self.client: httpx.AsyncClient | None = None
        self.code_limiter: anyio.CapacityLimiter | None = None
        self.upstream = config.upstream.rstrip("/") + "/"

    def _validate_policy(self, p: Policy) -> None:
        if self.reviser is not None:
            return
        for pol in [p, *(p.for_key(k) for k in p.keys)]:
            actions = [pol.action, pol.session.action, *(r.action for r in pol.categories.values())]
            if "revise" in actions:
                raise PolicyError("action 'revise' needs a reviser, which is not configured in this gateway "
                                  "(start it with `bastion serve --revise-model M`, or pass reviser= to "
                                  "create_app); use block, redact or flag")

    # ---- lifecycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        # One code-shield scan at a time: the scanner shares cached tree-sitter parsers between threads.
        self.code_limiter = anyio.CapacityLimiter(1)
        self.client = httpx.AsyncClient(
            base_url=self.upstream,
            timeout=httpx.Timeout(self.config.upstream_timeout_s, connect=self.config.connect_timeout_s),
            limits=httpx.Limits(max_connections=2000, max_keepalive_connections=200),
        )

    async def stop(self) -> None:
        await self.batcher.close()
        await self.urgent.close()
        await self.bulk.close()
        if self.client is not None:
            await self.client.aclose()
        rc = getattr(self.reviser, "client", None)  # a constitution Reviser's LLMClient
        if rc is not None and hasattr(rc, "aclose"):
            with contextlib.suppress(Exception):
                await rc.aclose()
        if self.audit is not None:
            await anyio.to_thread.run_sync(self.audit.close)

    def upstream_headers(self) -> dict[str, str]:
        h = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
        if self.config.upstream_api_key:
            h["authorization"] = f"Bearer {self.config.upstream_api_key}"
        return h

    # ---- auth / limits / body ------------------------------------------------------------------
    def authenticate(self, request: Request) -> str | None:
        if not self.keys:
            return None
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("api-key", "")
        k = self.keys.lookup(token) if token else None
        if k is None:
            raise ApiError(401, "Invalid or missing API key (send Authorization: Bearer <key>).",
                           "authentication_error", "invalid_api_key")
        return k.id

    def rate_limit(self, request: Request, key_id: str | None, policy: Policy) -> None:
        bucket = key_id or f"addr:{request.client.host if request.client else '?'}"
        per_key = None
        if key_id is not None:
            for k in self.keys._by_hash.values():
                if k.id == key_id:
                    per_key = k.rate_limit_per_minute
        rate = per_key or policy.rate_limit_per_minute
        ok, wait = self.limiter.allow(bucket, rate)
        if not ok:
            self.metrics.inc("bastion_rate_limited_total", {"key": key_id or "anonymous"})
            raise ApiError(429, f"Rate limit exceeded; retry in {wait:.1f}s.", "rate_limit_error",
                           "rate_limit_exceeded", headers={"retry-after": str(max(1, int(wait + 0.999)))})

    async def read_json(self, request: Request) -> Any:
        limit = self.config.max_body_bytes
        cl = request.headers.get("content-length")
        if cl is not None:
            try:
                if int(cl) > limit:
                    raise ApiError(413, f"Request body is larger than {limit} bytes.", code="request_too_large")
            except ValueError:
                raise ApiError(400, "Invalid Content-Length header.") from None
        buf = bytearray()
        async for part in request.stream():
            buf += part
            if len(buf) > limit:
                raise ApiError(413, f"Request body is larger than {limit} bytes.", code="request_too_large")
        try:
            return loads_line(bytes(buf))  # NaN, 1e999 and deep nesting refused too
        except LineError as e:
            raise ApiError(400, f"Request body is not valid JSON ({e}).", code="invalid_json") from None

    # ---- guard ---------------------------------------------------------------------------------
    async def check(self, items: list[Any], rail: str, urgent: bool = True) -> list[Verdict]:
        t0 = time.perf_counter()
        size = sum(len(it) if isinstance(it, str) else len(it[0]) + len(it[1]) for it in items)
        lane = self.bulk if size > BULK_CHARS else self.urgent if urgent else self.batcher
        try:
            return await lane.check(items)
        except Exception as e:  # noqa: BLE001 - fail closed with a clear error
            log.exception("guard check failed")
            raise ApiError(503, f"Guard check failed ({type(e).__name__}); request not forwarded.",
                           "server_error", "guard_unavailable") from None
        finally:
            self.metrics.observe("bastion_guard_seconds", time.perf_counter() - t0, {"rail": rail})

    def record(self, ctx: _Ctx, rail: str, decision: Decision, verdicts: list[dict[str, Any]],
               latency_s: float | None, content: str) -> None:
        for c in decision.categories or ("none",):
            self.metrics.inc("bastion_decisions_total", {"rail": rail, "action": decision.action, "category": c})
        if self.audit is None:
            return
        try:
            self.audit.record(request_id=ctx.request_id, key_id=ctx.key_id, rail=rail, action=decision.action,
                              categories=decision.categories, verdicts=verdicts,
                              latency_ms=None if latency_s is None else latency_s * 1000, content=content,
                              policy=ctx.policy.digest)
        except Exception:  # noqa: BLE001 - never fail a request on the audit queue
            log.exception("audit record failed")

    # ---- input rail ----------------------------------------------------------------------------
    async def input_rail(self, ctx: _Ctx, request: Request) -> Decision:
        msgs = ctx.body["messages"]
        pol = ctx.policy
        texts = [(m.get("role", ""), message_text(m)) for m in msgs]
        users = [t for r, t in texts if r == "user"]
        user_at = [i for i, (r, _) in enumerate(texts) if r == "user"]
        latest = users[-1] if users else (texts[-1][1] if texts else "")
        ctx.prompt = latest
        ctx.latest_index = user_at[-1] if user_at else None
        # `checks.input: false` leaves the latest user turn unchecked: it is left out of the conversation and
        # session texts too, so they cannot block it on its own.
        skip = ctx.latest_index if not pol.checks.input else None
        conversation = "\n".join(f"{r}: {t}" for i, (r, t) in enumerate(texts) if t and i != skip)
        # Instructions a client writes in other roles, scored on their own: joined to a short user turn with
        # role prefixes, a harmful system message was diluted below the threshold.
        instructions = "\n".join(t for r, t in texts if t and r in _INSTRUCTION_ROLES)

        st = None
        if pol.checks.session:
            sid = session_id(request, ctx)
            # Without a session id from the client, risk is kept for this request only: a hash of the first
            # message would join unrelated users who open with the same words into one session.
            st = (SessionState(turns=deque(maxlen=pol.session.max_turns)) if sid is None
                  else self.sessions.get(sid, pol.session.max_turns, pol.session.ttl_s))
        session_text = ""
        if st is not None:
            present = set(users)
            earlier = [t for t in st.turns if t not in present]
            recent = users[-pol.session.max_turns:]
            session_text = "\n".join([*earlier, *(recent[:-1] if skip is not None else recent)])

        scopes: list[tuple[str, str]] = []
        if pol.checks.input or pol.checks.attack:
            scopes.append(("latest", latest))
        if pol.checks.input and instructions and instructions != latest:
            scopes.append(("instructions", instructions))
        if pol.checks.conversation and len(texts) > 1 and conversation != latest:
            scopes.append(("conversation", conversation))
        if st is not None and session_text and session_text not in (latest, conversation):
            scopes.append(("session", session_text))
        t0 = time.perf_counter()
        verdicts = await self.check([s for _, s in scopes], "input") if scopes else []
        latency = time.perf_counter() - t0

        raw: list[tuple[str, Decision]] = []
        for (scope, _), v in zip(scopes, verdicts, strict=True):
            # System prompts are full of personas ("You are ..."), so that scope is read for harm alone.
            d = pol.decide(v, attack=False) if scope == "instructions" else pol.decide(v)
            if scope == "latest" and not pol.checks.input:
                d = pol.decide(attack_only(v))
            raw.append((scope, d))
        extra_verdicts: list[dict[str, Any]] = []
        redacting = ctx.latest_index is not None and any(s == "latest" and d.action == "redact" for s, d in raw)
        again = [i for i, (s, d) in enumerate(raw) if redacting and s in ("conversation", "session")
                 and d.action == "redact"]
        if again:
            # The latest turn will be redacted, and the conversation or session fired too, maybe only because it
            # holds that turn: read them again as they will be forwarded.
            after = {"conversation": "\n".join(f"{r}: {pol.redaction if i == ctx.latest_index else t}"
                                               for i, (r, t) in enumerate(texts) if t and i != skip),
                     "session": "\n".join([*[t for t in st.turns if t not in set(users)],
                                           *users[-pol.session.max_turns:][:-1], pol.redaction]) if st else ""}
            for i, v in zip(again, await self.check([after[raw[i][0]] for i in again], "input"), strict=True):
                raw[i] = (raw[i][0], pol.decide(v))
                extra_verdicts.append({"scope": f"{raw[i][0]}.after_redaction", **v.to_dict()})
        # `redact` replaces one user message: when another scope fired, or the latest text is not a user
        # message, it acts as block.
        decisions = [d if s == "latest" and ctx.latest_index is not None else _redact_as_block(pol, d, s)
                     for s, d in raw]
        if st is not None:
            harm = verdicts[0].score if verdicts and scopes[0][0] == "latest" and pol.checks.input else 0.0
            st.risk = st.risk * pol.session.decay + max(0.0, harm - pol.session.floor)
            decisions.append(_redact_as_block(pol, pol.decide_session(st.risk), "session"))
        decision = merge_decisions(decisions)
        if st is not None and latest:
            # The session remembers what was forwarded: a redacted turn as its redaction text.
            st.turns.append(pol.redaction if decision.action == "redact" else latest)
        ctx.input_decision = decision
        ctx.input_verdicts = [{"scope": s, **v.to_dict()} for (s, _), v in zip(scopes, verdicts, strict=True)]
        ctx.input_verdicts.extend(extra_verdicts)
        if st is not None:
            ctx.input_verdicts.append({"scope": "session_risk", "risk": round(st.risk, 4)})
        self.record(ctx, "input", decision, ctx.input_verdicts, latency,
                    json.dumps(msgs, sort_keys=True, ensure_ascii=False))
        return decision

    # ---- revise / code shield ------------------------------------------------------------------
    async def revise(self, ctx: _Ctx, text: str, decision: Decision) -> tuple[Decision, str | None,
                                                                              list[dict[str, Any]]]:
        """Revise a flagged response and re-check it: (decision, revised text or None, verdicts).

        Success gives action `revise` with the revision; a revision that is still flagged, empty, slow
        (`revise_timeout_s`) or failing gives `block` with the refusal. Never lets the original through."""
        pol = ctx.policy
        if self.reviser is None:
            return Decision("block", decision.categories, decision.refusal,
                            decision.reasons + ("no reviser configured",)), None, []
        try:
            revised = await asyncio.wait_for(self.reviser(ctx.prompt, text, decision), self.config.revise_timeout_s)
            if not isinstance(revised, str) or not revised.strip():
                raise ValueError("empty revision")
        except Exception as e:  # noqa: BLE001 - a failing reviser must not leak the flagged response
            log.warning("revision failed (%s: %s); refusing", type(e).__name__, e)
            self.metrics.inc("bastion_revisions_total", {"result": "failed"})
            return Decision("block", decision.categories, decision.refusal,
                            decision.reasons + (f"revision failed ({type(e).__name__})",)), None, []
        v2 = (await self.check([(ctx.prompt, revised)], "output"))[0]
        d2 = pol.decide(v2)
        vds = [{"scope": "revision", **v2.to_dict()}]
        if d2.action in ("block", "revise", "redact"):
            self.metrics.inc("bastion_revisions_total", {"result": "still_flagged"})
            cats = tuple(dict.fromkeys(decision.categories + d2.categories))
            return Decision("block", cats, decision.refusal,
                            decision.reasons + ("revision still flagged",) + d2.reasons), None, vds
        self.metrics.inc("bastion_revisions_total", {"result": "revised"})
        return Decision("revise", decision.categories, "", decision.reasons + ("revised",) + d2.reasons), revised, vds

    async def code_scan(self, pol: Policy, text: str, fix: bool | None = None) -> tuple[Any, Decision]:
        """The policy's code-shield check of `text`, off the event loop: (CodeShieldResult | None, decision)."""
        if pol.code_shield.mode == "off" or not text:
            return None, ALLOW
        t0 = time.perf_counter()
        try:
            return await anyio.to_thread.run_sync(lambda: pol.scan_code(text, fix=fix), limiter=self.code_limiter)
        except Exception as e:  # noqa: BLE001 - block mode fails closed, the other modes let the text pass
            log.exception("code shield scan failed")
            if pol.code_shield.mode == "block":
                return None, Decision("block", ("S14",), pol.code_shield.refusal,
                                      (f"code shield failed ({type(e).__name__})",))
            return None, ALLOW
        finally:
            self.metrics.observe("bastion_codeshield_seconds", time.perf_counter() - t0)

    # ---- output rail (non-streaming) -------------------------------------------------------------
    async def output_rail(self, ctx: _Ctx, data: dict[str, Any]) -> tuple[dict[str, Any], Decision]:
        """Guard check of every choice -> revise / redact -> code shield on the text to be delivered."""
        pol = ctx.policy
        choices = [c for c in data.get("choices") or [] if isinstance(c, dict)]
        texts = [choice_text(c) for c in choices]
        idx = [i for i, t in enumerate(texts) if t]
        code_on = pol.code_shield.mode != "off"
        if not idx or not (pol.checks.output or code_on):
            return data, ALLOW
        t0 = time.perf_counter()
        verdicts = await self.check([(ctx.prompt, texts[i]) for i in idx], "output") if pol.checks.output else []
        vd = [{"scope": f"choice{i}", **v.to_dict()} for i, v in zip(idx, verdicts, strict=False)]
        decisions: list[Decision] = []
        delivered: dict[int, str] = {}
        for k, i in enumerate(idx):
            d = pol.decide(verdicts[k]) if verdicts else ALLOW
            text = texts[i]
            if d.action == "revise":
                d, revised, rvd = await self.revise(ctx, text, d)
                vd.extend({**x, "scope": f"choice{i}.{x['scope']}"} for x in rvd)
                if revised is not None:
                    _set_choice_text(choices[i], revised)
                    text = delivered[i] = revised
            elif d.action == "redact":
                _set_choice_text(choices[i], pol.redaction)
                choices[i]["finish_reason"] = "content_filter"
                text = ""
            if d.action != "block" and code_on and text:
                res, cd = await self.code_scan(pol, text)
                if res is not None and res.findings:
                    vd.append({"scope": f"choice{i}.code_shield", **_code_dict(res)})
                if cd.action != "allow":
                    if pol.code_shield.mode == "append_fix" and res is not None and res.diff:
                        text = delivered[i] = text + APPEND_FIX_HEADER + res.diff + "~~~\n"
                        _set_choice_text(choices[i], text)
                        cd = Decision(cd.action, cd.categories, cd.refusal, cd.reasons + ("fix appended",))
                    d = merge_decisions([d, cd])
            decisions.append(d)
        decision = merge_decisions(decisions)
        content = "\n".join(texts)
        if delivered:
            content += "".join(f"\n[bastion: delivered choice{i}]\n{t}" for i, t in delivered.items())
        self.record(ctx, "output", decision, vd, time.perf_counter() - t0, content)
        if decision.action == "block":  # (revise() turns a revision that failed into a block)
            out = refusal_completion(ctx, decision, "output", vd, base=data)
            return out, decision
        data["bastion"] = bastion_field(ctx, decision, "output", vd)
        return data, decision


def _code_dict(res: Any) -> dict[str, Any]:
    """A code-shield result for the `bastion` field and the audit log (without the full fixed text)."""
    d = res.to_dict()
    d.pop("fixed_text", None)
    return d


# ---- helpers ---------------------------------------------------------------------------------------
def message_text(m: dict[str, Any]) -> str:
    """The readable text of a chat message (content in any shape, tool and function calls, refusal, ...)."""
    return readable_text({k: v for k, v in m.items() if k != "name"}, "\n")


def choice_text(c: dict[str, Any]) -> str:
    m = c.get("message")
    return message_text(m) if isinstance(m, dict) else ""


def _set_choice_text(c: dict[str, Any], text: str) -> None:
    """Replace a choice's whole message (tool calls, refusal and reasoning fields included) with `text`."""
    m = c.get("message") if isinstance(c.get("message"), dict) else {}
    c["message"] = {"role": m.get("role") or "assistant", "content": text}
    c["logprobs"] = None


def session_id(request: Request, ctx: _Ctx) -> str | None:
    """The client's session: the X-Bastion-Session header, else the OpenAI `user` field, else None (no state is
    kept across requests). Scoped by API key so that one client cannot touch another's session."""
    sid = request.headers.get("x-bastion-session") or ctx.body.get("user")
    if not isinstance(sid, str) or not sid:
        return None
    return f"{ctx.key_id or '-'}|{sid}"


def _redact_as_block(pol: Policy, d: Decision, scope: str) -> Decision:
    """`redact` replaces only the latest user turn, so when another scope fired (the flagged text may sit in an
    earlier turn or a system message) it acts as `block`: the flagged text is never forwarded."""
    if d.action != "redact":
        return d
    # the refusal of a category that chose `redact`, not of one that fired with a milder action
    deciding = tuple(c for c in d.categories if (pol.rule(c).action or pol.action) == "redact") or d.categories
    return Decision("block", d.categories, pol.refusal_for(deciding),
                    d.reasons + (f"redact acts as block: the {scope} scope fired, not the latest user turn",))


def validate_chat(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object.")
    msgs = body.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise ApiError(400, "`messages` must be a non-empty array.", code="invalid_messages")
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a string `role`.", code="invalid_messages")
        c = m.get("content")
        if c is not None and not isinstance(c, (str, list)):
            raise ApiError(400, f"messages[{i}].content must be a string or an array of parts.",
                           code="invalid_messages")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise ApiError(400, "`stream` must be a boolean.")
    return body


def bastion_field(ctx: _Ctx, decision: Decision, rail: str, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    out = {"request_id": ctx.request_id, "rail": rail, **decision.to_dict(), "policy": ctx.policy.digest,
           "verdicts": verdicts}
    if rail == "output" and ctx.input_decision.action != "allow":
        out["input"] = ctx.input_decision.to_dict()
    return out


def refusal_completion(ctx: _Ctx, decision: Decision, rail: str, verdicts: list[dict[str, Any]],
                       base: dict[str, Any] | None = None) -> dict[str, Any]:
    base = base or {}
    return {
        "id": base.get("id") or f"chatcmpl-bastion-{ctx.request_id}",
        "object": "chat.completion",
        "created": base.get("created") or int(time.time()),
        "model": base.get("model") or ctx.body.get("model") or "unknown",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": decision.refusal},
                     "logprobs": None, "finish_reason": "content_filter"}],
        "usage": base.get("usage") or {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "bastion": bastion_field(ctx, decision, rail, verdicts),
    }


def sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def refusal_stream(ctx: _Ctx, decision: Decision, verdicts: list[dict[str, Any]]) -> list[bytes]:
    cid, created, model = f"chatcmpl-bastion-{ctx.request_id}", int(time.time()), ctx.body.get("model") or "unknown"

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
        return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra})

    return [chunk({"role": "assistant", "content": decision.refusal}, None),
            chunk({}, "content_filter", bastion=bastion_field(ctx, decision, "input", verdicts)), SSE_DONE]


def upstream_error(exc: Exception, metrics: Metrics) -> ApiError:
    if isinstance(exc, ApiError):
        metrics.inc("bastion_upstream_errors_total", {"kind": exc.code or "error"})
        return exc
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        metrics.inc("bastion_upstream_errors_total", {"kind": "timeout"})
        return ApiError(504, "The upstream model timed out.", "upstream_error", "upstream_timeout")
    metrics.inc("bastion_upstream_errors_total", {"kind": "unreachable"})
    return ApiError(502, f"The upstream model is unreachable ({type(exc).__name__}).", "upstream_error",
                    "upstream_unreachable")


async def upstream_status_error(resp: httpx.Response, metrics: Metrics) -> ApiError | JSONResponse:
    """An upstream HTTP error: pass an OpenAI-style JSON error through, map anything else to 502."""
    metrics.inc("bastion_upstream_errors_total", {"kind": f"http_{resp.status_code}"})
    body = await resp.aread()
    try:
        data = json.loads(body[:1_000_000])
        if isinstance(data, dict) and isinstance(data.get("error"), dict):
            return JSONResponse(data, status_code=resp.status_code if resp.status_code >= 400 else 502)
    except ValueError:
        pass
    return ApiError(502, f"The upstream model returned HTTP {resp.status_code}.", "upstream_error",
                    "upstream_bad_status")


# ---- the app ---------------------------------------------------------------------------------------
def create_app(config: GatewayConfig, guard: Any = None, keys: KeyStore | None = None,
               reviser: Reviser | None = None) -> FastAPI:
    """Build the gateway app. `guard`: any object with `check_batch` (default: `Guard()`)."""
    gw = Gateway(config, guard=guard, keys=keys, reviser=reviser)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError, AttributeError):
            loop.add_signal_handler(signal.SIGHUP, gw.policies.reload)  # main thread only
        poller = None
        if config.policy_path and config.policy_poll_s > 0:
            async def poll() -> None:
                while True:
                    await asyncio.sleep(config.policy_poll_s)
                    try:
                        gw.policies.poll()
                    except Exception:  # noqa: BLE001
                        log.exception("policy poll failed")
            poller = asyncio.create_task(poll())
        try:
            yield
        finally:
            if poller:
                poller.cancel()
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(signal.SIGHUP)
            await gw.stop()

    app = FastAPI(title="Bastion gateway", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _any_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return JSONResponse(error_body("Internal gateway error.", "server_error", "internal_error"), status_code=500)

    app.add_middleware(_CountRequests, metrics=gw.metrics)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        pol = gw.policies
        audit_errors = gw.audit.errors if gw.audit is not None else 0
        return {"status": "degraded" if audit_errors else "ok", "policy": pol.policy.digest,
                "policy_error": pol.last_error,
                "model_version": getattr(getattr(gw.guard, "model", None), "version", "unknown"),
                "keys": len(gw.keys), "audit": str(config.audit_path) if config.audit_path else None,
                "audit_errors": audit_errors}

    @app.get("/metrics")
    async def metrics() -> PlainTextResponse:
        if gw.audit is not None:
            gw.metrics.set("bastion_audit_errors_total", gw.audit.errors)
        return PlainTextResponse(gw.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request) -> Response:
        key_id = gw.authenticate(request)
        gw.rate_limit(request, key_id, gw.policies.policy.for_key(key_id))
        r = await _upstream(gw, "GET", "models")
        if not isinstance(r, httpx.Response):
            return r
        try:
            return JSONResponse(r.json())
        except ValueError:
            raise upstream_error(ApiError(502, "The upstream model returned malformed JSON.", "upstream_error",
                                          "upstream_malformed"), gw.metrics) from None

    @app.post("/v1/guard/check")
    async def guard_check(request: Request) -> dict[str, Any]:
        key_id = gw.authenticate(request)
        pol = gw.policies.policy.for_key(key_id)
        gw.rate_limit(request, key_id, pol)
        body = await gw.read_json(request)
        items = body.get("items") if isinstance(body, dict) and "items" in body else [body]
        if not isinstance(items, list) or not items or len(items) > 256:
            raise ApiError(400, "`items` must be a non-empty array of at most 256 checks.")
        norm: list[Any] = []
        for i, it in enumerate(items):
            if isinstance(it, str):
                norm.append(it)
            elif isinstance(it, dict) and isinstance(it.get("prompt"), str) and (
                    it.get("response") is None or isinstance(it.get("response"), str)):
                norm.append(it["prompt"] if it.get("response") is None else (it["prompt"], it["response"]))
            else:
                raise ApiError(400, f"items[{i}] must be a string or an object with string `prompt` "
                                    "and optional string `response`.")
        verdicts = await gw.check(norm, "check")
        results = []
        for it, v in zip(norm, verdicts, strict=True):
            d, extra = pol.decide(v), {}
            if isinstance(it, tuple):  # a response: the code shield applies too
                res, cd = await gw.code_scan(pol, it[1], fix=False)
                if res is not None and res.findings:
                    extra["code_shield"] = _code_dict(res)
                d = merge_decisions([d, cd])
            results.append({"verdict": v.to_dict(), "decision": d.to_dict(), **extra})
        return {"results": results, "policy": pol.digest}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        key_id = gw.authenticate(request)
        pol = gw.policies.policy.for_key(key_id)
        gw.rate_limit(request, key_id, pol)
        body = validate_chat(await gw.read_json(request))
        ctx = _Ctx(uuid.uuid4().hex[:16], key_id, pol, time.perf_counter(), body)
        decision = await gw.input_rail(ctx, request)
        stream = bool(body.get("stream"))
        if decision.action in ("block", "revise"):
            if stream:
                return StreamingResponse(iter(refusal_stream(ctx, decision, ctx.input_verdicts)),
                                         media_type="text/event-stream")
            return JSONResponse(refusal_completion(ctx, decision, "input", ctx.input_verdicts))
        if decision.action == "redact":  # (input_rail makes it block unless the latest user message fired)
            assert ctx.latest_index is not None
            body = dict(body)
            msgs = list(body["messages"])
            msgs[ctx.latest_index] = {"role": "user", "content": pol.redaction}  # every readable field replaced
            body["messages"] = msgs
        if stream:
            return await _stream(gw, ctx, body)
        return await _non_stream(gw, ctx, body)

    return app


_PATHS = {"/v1/chat/completions", "/v1/models", "/v1/guard/check", "/healthz", "/metrics"}


class _CountRequests:
    """Pure ASGI middleware (BaseHTTPMiddleware would get in the way of streaming and disconnects)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_status(msg: dict) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
            await send(msg)

        try:
            await self.app(scope, receive, send_status)
        finally:
            path = scope.get("path", "")
            path = path if path in _PATHS else "other"
            self.metrics.inc("bastion_requests_total", {"endpoint": path, "status": str(status[0])})
            self.metrics.observe("bastion_request_seconds", time.perf_counter() - t0, {"endpoint": path})


async def _upstream(gw: Gateway, method: str, path: str, **kw: Any) -> httpx.Response | Response:
    """One non-streaming upstream request: its 200 response, or the error response to pass on to the client (a
    connection failure or an upstream error status raises the matching ApiError)."""
    assert gw.client is not None
    try:
        r = await gw.client.request(method, path, headers=gw.upstream_headers(), **kw)
    except httpx.HTTPError as e:
        raise upstream_error(e, gw.metrics) from None
    if r.status_code != 200:
        err = await upstream_status_error(r, gw.metrics)
        if isinstance(err, ApiError):
            raise err
        return err
    return r


async def _non_stream(gw: Gateway, ctx: _Ctx, body: dict[str, Any]) -> Response:
    r = await _upstream(gw, "POST", "chat/completions", json=body)
    if not isinstance(r, httpx.Response):
        return r
    try:
        data = loads_line(r.content)
        if not isinstance(data, dict) or not isinstance(data.get("choices"), list) \
                or not all(isinstance(c, dict) for c in data["choices"]):
            raise ValueError("no choices")
    except ValueError:  # LineError too
        raise upstream_error(ApiError(502, "The upstream model returned a malformed response.", "upstream_error",
                                      "upstream_malformed"), gw.metrics) from None
    out, _ = await gw.output_rail(ctx, data)
    if ctx.input_decision.action != "allow" and "bastion" not in out:
        # the output was not checked (output checks and the code shield off): the field still carries the input
        # decision, as streams do
        out["bastion"] = bastion_field(ctx, ALLOW, "output", [])
    if ctx.input_decision.action != "allow" and "bastion" in out:
        out["bastion"]["input"] = ctx.input_decision.to_dict()
    return JSONResponse(out)


async def _read_events(resp: httpx.Response, q: asyncio.Queue) -> None:
    """Parse upstream SSE into ("chunk", dict, line) / ("done", None) / ("error", ApiError) items.

    A stream that ends with neither `[DONE]` nor a finish_reason was cut short: that is an error, not an end."""
    def malformed() -> tuple[str, ApiError]:
        return ("error", ApiError(502, "The upstream model sent a malformed stream chunk.", "upstream_error",
                                  "upstream_malformed"))

    finished = False
    try:
        async for line in resp.aiter_lines():
            if not line or line.startswith(":") or not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                await q.put(("done", None))
                return
            try:
                obj = loads_line(data)
            except LineError:
                await q.put(malformed())
                return
            if not isinstance(obj, dict) or not isinstance(obj.get("choices", []), list):
                await q.put(malformed())
                return
            if isinstance(obj.get("error"), dict):
                msg = str(obj["error"].get("message") or "upstream error")
                await q.put(("error", ApiError(502, f"The upstream model failed mid-stream: {msg}",
                                               "upstream_error", "upstream_stream_error")))
                return
            finished = finished or _finishing(obj)
            await q.put(("chunk", obj, line))
        if finished:
            await q.put(("done", None))
        else:
            await q.put(("error", ApiError(502, "The upstream stream ended before the reply finished (no "
                                                "finish_reason, no [DONE]).", "upstream_error",
                                           "upstream_stream_error")))
    except httpx.HTTPError as e:
        await q.put(("error", e))


async def _stream(gw: Gateway, ctx: _Ctx, body: dict[str, Any]) -> Response:
    assert gw.client is not None
    req = gw.client.build_request("POST", "chat/completions", json=body, headers=gw.upstream_headers())
    try:
        resp = await gw.client.send(req, stream=True)
    except httpx.HTTPError as e:
        raise upstream_error(e, gw.metrics) from None
    if resp.status_code == 200 and not _is_event_stream(resp):
        await resp.aclose()
        raise upstream_error(ApiError(502, "The upstream model answered a streaming request without an event "
                                           f"stream ({resp.headers.get('content-type') or 'no content-type'}).",
                                      "upstream_error", "upstream_malformed"), gw.metrics)
    if resp.status_code != 200:
        try:
            err = await upstream_status_error(resp, gw.metrics)
        except httpx.HTTPError as e:
            err = upstream_error(e, gw.metrics)
        finally:
            await resp.aclose()
        if isinstance(err, ApiError):
            raise err
        return err
    q: asyncio.Queue = asyncio.Queue(maxsize=1024)
    reader = asyncio.create_task(_read_events(resp, q))
    # Wait for the first event before answering 200, so a dead or broken upstream still gets 502/504.
    try:
        first = await q.get()
    except BaseException:
        reader.cancel()
        with anyio.CancelScope(shield=True):
            await resp.aclose()
        raise
    if first[0] == "error":
        reader.cancel()
        await resp.aclose()
        raise upstream_error(first[1], gw.metrics)
    n = body.get("n")
    several = n is not None and n != 1  # also "2" or 2.0, which some upstreams take as 2

    gen = (_buffered_stream if several and (ctx.policy.checks.output or ctx.policy.code_shield.mode != "off")
           else _guarded_stream)(gw, ctx, resp, reader, q, first)
    return StreamingResponse(gen, media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-bastion-request-id": ctx.request_id})


# The most upstream text held for a stream of several choices (each is checked whole before any is released).
MAX_BUFFERED_CHARS = 400_000


async def _buffered_stream(gw: Gateway, ctx: _Ctx, resp: httpx.Response, reader: asyncio.Task,
                           q: asyncio.Queue, first: tuple[str, Any]) -> AsyncIterator[bytes]:
    """A stream of several choices (`n > 1`): the choices interleave, so a sliding window would mix them. The
    whole stream is held, each choice's text (each of its fields: content, reasoning, every tool call) is checked
    whole, as in a non-streamed response, and then it is released unchanged, or every choice ends with
    `content_filter`. Revise and redact act as block here."""
    pol = ctx.policy
    items: list[tuple[Any, ...]] = []
    fields = FieldTexts()
    item = first
    decision: Decision = ALLOW
    verdicts: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    check_s = 0.0
    outcome = "cancelled"
    try:
        while item[0] == "chunk":
            items.append(item)
            fields.add(choice_fields(item[1]))
            if fields.chars > MAX_BUFFERED_CHARS:
                item = ("error", ApiError(502, f"A reply of several choices over {MAX_BUFFERED_CHARS} characters "
                                               "cannot be held for checking.", "upstream_error", "reply_too_long"))
                break
            item = await q.get()
        if item[0] == "error":
            outcome = "error"
            err = item[1] if isinstance(item[1], ApiError) else upstream_error(item[1], gw.metrics)
            if isinstance(item[1], ApiError):
                gw.metrics.inc("bastion_upstream_errors_total", {"kind": item[1].code or "error"})
            yield sse(err.body())
            yield SSE_DONE
            return
        whole = fields.whole()
        keys = list(whole)
        t1 = time.perf_counter()
        decisions: list[Decision] = []
        if pol.checks.output and keys:
            for (i, f), v in zip(keys, await gw.check([(ctx.prompt, whole[k]) for k in keys], "output"), strict=True):
                verdicts.append({"scope": f"choice{i}.{f}", **v.to_dict()})
                decisions.append(pol.decide(v))
        for k in keys:
            res, cd = await gw.code_scan(pol, whole[k])
            if res is not None and res.insecure:
                verdicts.append({"scope": f"choice{k[0]}.{k[1]}.code_shield", **_code_dict(res)})
            decisions.append(cd)
        check_s = time.perf_counter() - t1
        decision = merge_decisions(decisions)
        meta = next((it[1] for it in items), {})
        if decision.action in ("block", "revise", "redact"):
            outcome = "violation"
            if decision.action != "block":
                decision = Decision("block", decision.categories, pol.refusal_for(decision.categories),
                                    decision.reasons + (f"{decision.action} acts as block on streams of several "
                                                        "choices",))
            ids = sorted({i for i, _ in keys if isinstance(i, int)} | {0})
            chunk = {**_base_chunk(ctx, meta),
                     "choices": [{"index": i, "delta": {"content": decision.refusal}, "logprobs": None,
                                  "finish_reason": "content_filter"} for i in ids],
                     "bastion": bastion_field(ctx, decision, "output", verdicts)}
            gw.metrics.inc("bastion_stream_chunks_total", {"outcome": "withheld"}, len(items))
            usage = [it[1] for it in items if not it[1].get("choices") and "usage" in it[1]]
            yield sse(chunk) + b"".join(sse(u) for u in usage)
            yield SSE_DONE
            return
        outcome = "stop"
        out = [_raw_sse(it[2]) if len(it) > 2 and it[2] else sse(it[1]) for it in items]
        out.append(sse({**_base_chunk(ctx, meta), "choices": [],
                        "bastion": bastion_field(ctx, decision, "output", verdicts)}))
        gw.metrics.inc("bastion_stream_chunks_total", {"outcome": "released"}, len(items))
        yield b"".join(out)
        yield SSE_DONE
    finally:
        await _close_upstream(reader, resp)
        if outcome not in ("stop", "violation"):
            decision = Decision(decision.action, decision.categories, decision.refusal,
                                decision.reasons + (f"stream {outcome}",))
        content = "\n".join(f"[choice {i} {f}]\n{t}" for (i, f), t in fields.whole().items())
        gw.record(ctx, "output", decision, verdicts, check_s or (time.perf_counter() - t0), content)


async def _close_upstream(reader: asyncio.Task, resp: httpx.Response) -> None:
    """Stop reading the upstream stream and close it, even while the client's request is being cancelled."""
    reader.cancel()
    with anyio.CancelScope(shield=True):
        with contextlib.suppress(Exception):
            await resp.aclose()


def _is_event_stream(resp: httpx.Response) -> bool:
    """False only for a declared non-SSE body (JSON, HTML): some servers send no content-type at all."""
    ct = resp.headers.get("content-type", "").split(";")[0].strip().lower()
    return not ct or ct == "text/event-stream" or not (ct.startswith("application/") or ct.startswith("text/html"))


async def _guarded_stream(gw: Gateway, ctx: _Ctx, resp: httpx.Response, reader: asyncio.Task,
                          q: asyncio.Queue, first: tuple[str, Any]) -> AsyncIterator[bytes]:
    pol = ctx.policy
    rules = pol.streaming
    code_mode = pol.code_shield.mode
    verdicts_seen: list[dict[str, Any]] = []
    check_time = [0.0]

    async def check(window: str, final: bool = False) -> Decision:
        if not pol.checks.output:  # only the code shield holds text back
            return ALLOW
        t0 = time.perf_counter()
        v = (await gw.check([(ctx.prompt, window)], "output", urgent=final))[0]
        check_time[0] += time.perf_counter() - t0
        gw.metrics.inc("bastion_stream_checks_total", {})
        d = pol.decide(v)
        if d.action == "redact":
            d = Decision("redact", d.categories, pol.redaction, d.reasons)
        if d.action != "allow" or not verdicts_seen:
            verdicts_seen.append({"scope": "window", **v.to_dict()})
        return d

    async def code_check(block: str) -> Decision:
        t0 = time.perf_counter()
        res, d = await gw.code_scan(pol, block, fix=False)
        check_time[0] += time.perf_counter() - t0
        if res is not None and res.insecure:
            verdicts_seen.append({"scope": "code_block", **_code_dict(res)})
        return d

    scanner = StreamScanner(rules, check, code_check=code_check if code_mode == "block" else None,
                            code_max_chars=pol.code_shield.max_block_chars)
    fields = FieldTexts()
    tail: list[dict[str, Any]] = []  # finish / usage chunks, released after the final check
    meta: dict[str, Any] = {}
    first_text_at: float | None = None
    first_release_at: float | None = None
    released_texts: list[str] = []
    upstream_texts: list[str] = []
    extra: list[Decision] = []  # decisions made at the end of the stream (revision, code shield)
    end_decision: Decision | None = None
    revised_text: str | None = None
    checking = pol.checks.output or code_mode == "block"
    finish_released = False  # a finish_reason already went out on a chunk that carried text
    outcome = "cancelled"
    item: tuple[str, Any] | None = first
    try:
        while True:
            if item is None:
                if not q.empty():
                    item = q.get_nowait()
                else:
                    deadline = scanner.hold_deadline() if checking else None
                    if deadline is None:
                        item = await q.get()
                    else:
                        try:
                            item = await asyncio.wait_for(q.get(), max(0.0, deadline - time.monotonic()))
                        except (TimeoutError, asyncio.TimeoutError):
                            item = ("tick", None)
            kind, payload = item[0], item[1]
            raw = item[2] if len(item) > 2 else None
            item = None
            final = kind in ("done", "error")
            if kind == "chunk":
                for k in ("id", "created", "model", "system_fingerprint"):
                    if k in payload and k not in meta:
                        meta[k] = payload[k]
                found = choice_fields(payload)  # read once per chunk
                per_choice = choice_texts(found)
                if checking and any(i != 0 for i in per_choice):  # n > 1 streams take _buffered_stream
                    outcome = "error"
                    yield sse(upstream_error(ApiError(502, "The upstream model sent several choices to a "
                                                           "one-choice stream.", "upstream_error",
                                                      "upstream_malformed"), gw.metrics).body())
                    yield SSE_DONE
                    return
                text = "".join(per_choice.values())
                if text:
                    upstream_texts.append(text)
                    if first_text_at is None:
                        first_text_at = time.perf_counter()
                finishing = _finishing(payload)
                if not text and (finishing or not payload.get("choices")):
                    tail.append(payload)
                    continue
                if not checking or (not text and not scanner.pending):
                    if text:
                        released_texts.append(text)
                        if first_release_at is None:
                            first_release_at = time.perf_counter()
                    finish_released = finish_released or finishing
                    yield _raw_sse(raw) if raw else sse(payload)
                    continue
                scanner.add((payload, raw), text)
                fields.add(found)
                if fields.interleaved and fields.chars > MAX_BUFFERED_CHARS:
                    outcome = "error"
                    yield sse(ApiError(502, f"A reply whose fields interleave, over {MAX_BUFFERED_CHARS} characters, "
                                            "cannot be held for checking.", "upstream_error",
                                       "reply_too_long").body())
                    yield SSE_DONE
                    return
                if not q.empty():
                    # Chunks queued while the last check ran: take them all before checking again, so a busy
                    # gateway makes fewer, larger output checks instead of falling behind one chunk at a time.
                    continue
            if checking and fields.interleaved and not final:
                continue  # held to the end: see FieldTexts
            if checking and fields.interleaved and kind == "done":
                d = merge_decisions([await check(t, final=True) for t in fields.whole().values()])
                if d.action in ("block", "revise", "redact"):
                    outcome = "violation"
                    d = d if d.action == "block" else Decision(
                        "block", d.categories, pol.refusal_for(d.categories),
                        d.reasons + (f"{d.action} acts as block on a reply whose fields interleave",))
                    scanner.violation = d
                    scanner.withheld_text = scanner.pending_text
                    gw.metrics.inc("bastion_stream_chunks_total", {"outcome": "withheld"})
                    yield sse(_violation_chunk(ctx, meta, d, verdicts_seen))
                    yield SSE_DONE
                    return
            n = scanner.plan(final=final) if checking and not (fields.interleaved and kind == "error") else 0
            if not checking and not final:
                continue
            if n:
                released, decision = await scanner.scan(n, final=final)
                if scanner.violation is not None and scanner.violation.action == "revise" and kind != "error":
                    # Revise the whole reply; send the revision's continuation of what was already released.
                    outcome = "violation"
                    end_decision, revised_text, more_tail, vds = await _revise_stream(
                        gw, ctx, q, scanner, "".join(released_texts), upstream_texts, final)
                    verdicts_seen.extend(vds)
                    tail.extend(more_tail)
                    if revised_text is None:
                        yield sse(_violation_chunk(ctx, meta, end_decision, verdicts_seen))
                        yield SSE_DONE
                        return
                    break
                if scanner.violation is not None:
                    outcome = "violation"
                    gw.metrics.inc("bastion_stream_chunks_total", {"outcome": "withheld"})
                    yield sse(_violation_chunk(ctx, meta, scanner.violation, verdicts_seen))
                    yield SSE_DONE
                    return
                out = []
                for c in released:
                    obj, line = c if isinstance(c, tuple) else (c, None)
                    t = chunk_text(obj)
                    if t:
                        released_texts.append(t)
                    finish_released = finish_released or _finishing(obj)
                    out.append(_raw_sse(line) if line else sse(obj))
                if released_texts and first_release_at is None:
                    first_release_at = time.perf_counter()
                if out:
                    gw.metrics.inc("bastion_stream_chunks_total", {"outcome": "released"}, len(out))
                    yield b"".join(out)
            if kind == "error":
                outcome = "error"
                err = payload if isinstance(payload, ApiError) else upstream_error(payload, gw.metrics)
                if isinstance(payload, ApiError):
                    gw.metrics.inc("bastion_upstream_errors_total", {"kind": payload.code or "error"})
                yield sse(err.body())
                yield SSE_DONE
                return
            if kind == "done":
                break
        # ---- end of the reply: the revision (if any), then the code shield on the whole text --------------
        extra_out: list[str] = []
        if revised_text is not None:
            assert end_decision is not None
            extra.append(end_decision)
            if revised_text:
                extra_out.append(revised_text)
        if code_mode != "off":
            whole = ("".join(released_texts) + (revised_text or "")) if end_decision else "".join(upstream_texts)
            t0 = time.perf_counter()
            res, cd = await gw.code_scan(pol, whole)
            check_time[0] += time.perf_counter() - t0
            if res is not None and res.insecure:
                verdicts_seen.append({"scope": "code_shield", **_code_dict(res)})
            if cd.action == "block" and revised_text is not None:
                # The revision has not been sent yet: insecure code in it is refused as in a non-streamed reply.
                end_decision = merge_decisions([end_decision or ALLOW, cd])
                end_decision = Decision("block", end_decision.categories, cd.refusal, end_decision.reasons)
                outcome = "violation"
                yield sse(_violation_chunk(ctx, meta, end_decision, verdicts_seen))
                yield SSE_DONE
                return
            if cd.action == "block":  # code outside fenced blocks, seen only after release: report it
                cd = Decision("flag", cd.categories, "", cd.reasons + ("found after release (outside a fenced "
                                                                       "code block)",))
            if cd.action != "allow" and code_mode == "append_fix" and res is not None and res.diff:
                extra_out.append(APPEND_FIX_HEADER + res.diff + "~~~\n")
                cd = Decision(cd.action, cd.categories, cd.refusal, cd.reasons + ("fix appended",))
            if cd.action != "allow":
                extra.append(cd)
        for t in extra_out:
            released_texts.append(t)
            yield sse({**_base_chunk(ctx, meta), "choices": [{"index": 0, "delta": {"content": t}, "logprobs": None,
                                                              "finish_reason": None}]})
        outcome = "stop" if end_decision is None else "revised"
        end_decision = merge_decisions(scanner.flags + extra)
        field_ = bastion_field(ctx, end_decision, "output", verdicts_seen)
        fin = next((i for i, c in enumerate(tail) if _finishing(c)), None)
        if fin is None and finish_released:  # the finish came with text: the verdict goes on a chunk of its own
            tail.append({**_base_chunk(ctx, meta), "choices": []})
            fin = len(tail) - 1
        elif fin is None:  # no finish chunk left (none sent, or it was held with text): add one with the verdict
            tail.insert(0, {**_base_chunk(ctx, meta), "choices": [{"index": 0, "delta": {}, "logprobs": None,
                                                                   "finish_reason": scanner.withheld_finish
                                                                   or "stop"}]})
            fin = 0
        tail[fin] = {**tail[fin], "bastion": field_}
        for c in tail:
            yield sse(c)
        yield SSE_DONE
    finally:
        await _close_upstream(reader, resp)
        if first_text_at is not None and first_release_at is not None:
            gw.metrics.observe("bastion_stream_added_ttft_seconds", first_release_at - first_text_at)
        if checking or code_mode != "off":
            final_decision = end_decision or scanner.violation or merge_decisions(scanner.flags)
            if outcome not in ("stop", "violation", "revised"):
                final_decision = Decision(final_decision.action, final_decision.categories,
                                          final_decision.refusal, final_decision.reasons + (f"stream {outcome}",))
            content = "".join(released_texts)
            if revised_text is not None or outcome == "violation":  # keep what was withheld, as a non-stream block does
                content = "".join(upstream_texts) + "\n[bastion: delivered]\n" + content
            gw.record(ctx, "output", final_decision, verdicts_seen, check_time[0], content)


async def _revise_stream(gw: Gateway, ctx: _Ctx, q: asyncio.Queue, scanner: StreamScanner, released: str,
                         upstream: list[str], ended: bool) -> tuple[Decision, str | None, list[dict[str, Any]],
                                                              list[dict[str, Any]]]:
    """A `revise` violation in a stream: read the rest of the upstream reply (up to MAX_REVISE_CHARS), revise
    the whole reply, re-check it, and return (decision, the text still to send, finish/usage chunks, verdicts).

    The text still to send is the part of the revision after what the client already received; if the
    revision does not start with the released text, it cannot be spliced in, and the decision is `block`."""
    v = scanner.violation
    assert v is not None
    tail: list[dict[str, Any]] = []
    size = sum(len(t) for t in upstream)
    while not ended and size < MAX_REVISE_CHARS:
        item = await q.get()
        if item[0] == "done":
            break
        if item[0] != "chunk":
            return (Decision("block", v.categories, v.refusal, v.reasons + ("upstream failed before the revision",)),
                    None, [], [])
        t = chunk_text(item[1])
        if t:
            upstream.append(t)  # the caller's record of the upstream text (audit)
            size += len(t)
        elif _finishing(item[1]) or not item[1].get("choices"):
            tail.append(item[1])
    d, revised, vds = await gw.revise(ctx, "".join(upstream), v)
    if revised is None:
        return d, None, tail, vds
    rest = _continuation(revised, released)
    if rest is None:
        gw.metrics.inc("bastion_revisions_total", {"result": "not_spliceable"})
        return (Decision("block", d.categories, v.refusal, d.reasons + ("the revision does not continue the text "
                                                                        "already sent",)), None, tail, vds)
    return d, rest, tail, vds


def _continuation(revised: str, released: str) -> str | None:
    """The part of `revised` that follows `released` (None when `revised` does not start with it)."""
    if not released.strip():
        return revised
    if revised.startswith(released):
        return revised[len(released):]
    r, p = revised.lstrip(), released.lstrip()
    return r[len(p):] if r.startswith(p) else None


def _finishing(chunk: dict[str, Any]) -> bool:
    return any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or [])


def _raw_sse(line: str) -> bytes:
    """Forward an upstream `data:` line unchanged (no re-serialisation)."""
    return line.encode("utf-8") + b"\n\n"


def _base_chunk(ctx: _Ctx, meta: dict[str, Any]) -> dict[str, Any]:
    return {"id": meta.get("id") or f"chatcmpl-bastion-{ctx.request_id}", "object": "chat.completion.chunk",
            "created": meta.get("created") or int(time.time()), "model": meta.get("model") or ctx.body.get("model")}


def _violation_chunk(ctx: _Ctx, meta: dict[str, Any], d: Decision, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    return {**_base_chunk(ctx, meta),
            "choices": [{"index": 0, "delta": {"content": d.refusal}, "logprobs": None,
                         "finish_reason": "content_filter"}],
            "bastion": bastion_field(ctx, d, "output", verdicts)}
