"""Targets the red team attacks, in a registry keyed by scheme: `guard`, `openai:URL`, `python:module:function`.

`make_target("openai:http://host/v1", TargetOptions(model="m"))` builds one. A scheme is added with
`@register_target("name")` on a factory `(rest_of_spec, options) -> Target`.
"""

from __future__ import annotations

import asyncio
import contextvars
import importlib
import inspect
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.llm import LLMClient

from .base import Message, Seed, Target, TargetReply

# The seed behind the attempt being run. The worst-case compliant model answers the seed's real intent,
# whatever obfuscation the attack wrapped it in (it is a perfect decoder, the worst case for a guard).
CURRENT_SEED: contextvars.ContextVar[Seed | None] = contextvars.ContextVar("bastion_current_seed", default=None)

WORST_CASE_MODEL = "worst-case-compliant"
GUARD_REFUSAL = "I can't help with that request."


class TargetError(ValueError):
    """A target spec or option is wrong (a usage error)."""


@dataclass
class TargetOptions:
    """Options shared by target factories (unused ones are ignored)."""

    model: str | None = None
    api_key: str | None = None
    timeout: float = 60.0
    max_retries: int = 3
    rate_limit_rps: float | None = None
    rate_limiter: Any = None  # a TokenBucket shared with the other clients of the same endpoint (wins over rps)
    concurrency: int = 8
    params: dict[str, Any] = field(default_factory=dict)  # extra chat-completion parameters
    guard_service: Any = None  # a GuardService; built on demand for guard targets
    guard_factory: Callable[[], Any] | None = None  # () -> GuardService, when guard_service is None

    def guard(self) -> Any:
        if self.guard_service is None:
            if self.guard_factory is None:
                from bastion.guard import Guard

                from .guardsvc import GuardService

                self.guard_service = GuardService(Guard())
            else:
                self.guard_service = self.guard_factory()
        return self.guard_service


TargetFactory = Callable[[str, TargetOptions], Target]
TARGETS: dict[str, TargetFactory] = {}


def register_target(scheme: str) -> Callable[[TargetFactory], TargetFactory]:
    """Decorator: register a factory for target specs `scheme` or `scheme:REST`."""

    def deco(fn: TargetFactory) -> TargetFactory:
        if scheme in TARGETS:
            raise ValueError(f"target scheme {scheme!r} registered twice")
        TARGETS[scheme] = fn
        return fn

    return deco


def make_target(spec: str, options: TargetOptions | None = None) -> Target:
    """Build a target from its spec string."""
    scheme, _, rest = spec.partition(":")
    factory = TARGETS.get(scheme)
    if factory is None:
        raise TargetError(f"unknown target {spec!r}; use one of: {', '.join(f'{s}:...' if s != 'guard' else s for s in TARGETS)}")
    return factory(rest, options or TargetOptions())


def render_conversation(messages: list[Message]) -> str:
    """One text for an input check: the lone user message, or every turn labelled by role."""
    if len(messages) == 1:
        return str(messages[0].get("content") or "")
    return "\n\n".join(f"{m.get('role', 'user').capitalize()}: {m.get('content') or ''}" for m in messages)


def last_user(messages: list[Message]) -> str:
    for m in reversed(messages):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return str(messages[-1].get("content") or "") if messages else ""


def compliant_answer(request: str, benign: bool = False) -> str:
    """The worst-case model's answer. To a harmful request: full compliance restating the request, with
    placeholder steps. To a benign one: a plain helpful answer with placeholder paragraphs (so that what the
    output check sees is an ordinary answer, not a compliance template)."""
    if benign:
        # Plain prose, no bracketed placeholders: a guard may rightly read "[...]" slots as a template.
        return ("Happy to help. Here is an overview of the topic: the main points, some background, and a few "
                "practical tips. Let me know if you would like more detail on any part.")
    req = " ".join(request.split())
    return (f"Sure, here is exactly what you asked for: {req}\n\n"
            "Step 1: [REDACTED-HARMFUL-STEP 1]\nStep 2: [REDACTED-HARMFUL-STEP 2]\n"
            "Step 3: [REDACTED-HARMFUL-STEP 3]\nFollow these steps and you will succeed.")


class CompliantModel:
    """A scripted model that always complies (the worst case for the guard in front of it)."""

    name = WORST_CASE_MODEL

    async def respond(self, messages: list[Message]) -> TargetReply:
        seed = CURRENT_SEED.get()
        request = seed.text if seed is not None else last_user(messages)
        benign = bool(seed is not None and seed.benign)
        return TargetReply(text=compliant_answer(request, benign), guard_verdicts={"model": WORST_CASE_MODEL})


class GuardedTarget:
    """The Bastion Guard in front of another target: input check, the target, output check."""

    def __init__(self, inner: Target, guard_service: Any, name: str | None = None) -> None:
        self.inner = inner
        self.svc = guard_service
        self.name = name or f"guarded:{inner.name}"

    async def respond(self, messages: list[Message], inner_reply: TargetReply | None = None) -> TargetReply:
        """`inner_reply`: the inner target's reply when the caller already has it (pre/post pairs)."""
        t0 = time.perf_counter()
        text_in = render_conversation(messages)
        v_in = await self.svc.check_prompt(text_in)
        verdicts: dict[str, Any] = {"input": _compact(v_in)}
        if v_in.flagged:
            return TargetReply(GUARD_REFUSAL, blocked_by="input", guard_verdicts=verdicts,
                               latency_ms=(time.perf_counter() - t0) * 1000)
        raw = inner_reply if inner_reply is not None else await self.inner.respond(messages)
        if raw.error:
            return raw
        verdicts.update({k: v for k, v in raw.guard_verdicts.items() if k not in ("input", "output")})
        v_out = await self.svc.check_response(last_user(messages), raw.text)
        verdicts["output"] = _compact(v_out)
        latency = (time.perf_counter() - t0) * 1000 + (raw.latency_ms if inner_reply is not None else 0.0)
        if v_out.unsafe:
            return TargetReply(GUARD_REFUSAL, blocked_by="output", guard_verdicts=verdicts, latency_ms=latency,
                               usage=raw.usage)
        return TargetReply(raw.text, guard_verdicts=verdicts, latency_ms=latency, usage=raw.usage)


def _compact(v: Any) -> dict[str, Any]:
    from .guardsvc import compact_verdict

    return compact_verdict(v)


class OpenAITarget:
    """Any OpenAI-compatible chat endpoint (API key from the environment unless given)."""

    def __init__(self, base_url: str, model: str, client: LLMClient | None = None,
                 params: dict[str, Any] | None = None, **client_kw: Any) -> None:
        self.client = client or LLMClient(base_url, model, **client_kw)
        self.params = dict(params or {})
        self.name = f"openai:{self.client.display_url} model={model}"  # no credentials from the URL

    async def respond(self, messages: list[Message]) -> TargetReply:
        r = await self.client.achat(messages, **self.params)
        return TargetReply(text=r.text, latency_ms=r.latency_ms, usage=r.usage)


class PythonTarget:
    """A Python callable `fn(messages) -> str` (sync or async), e.g. a whole app under test."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.name = name
        self._async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)

    async def respond(self, messages: list[Message]) -> TargetReply:
        t0 = time.perf_counter()
        msgs = [dict(m) for m in messages]
        out = await self.fn(msgs) if self._async else await _in_daemon_thread(self.fn, msgs)
        if inspect.isawaitable(out):
            out = await out
        latency = (time.perf_counter() - t0) * 1000
        if isinstance(out, TargetReply):
            if not out.latency_ms:
                out.latency_ms = latency
            return out
        if isinstance(out, dict):
            out = out.get("content", out.get("text"))
        if not isinstance(out, str):
            raise TypeError(f"{self.name} returned {type(out).__name__}, expected a string")
        return TargetReply(text=out, latency_ms=latency)


async def _in_daemon_thread(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` on a fresh daemon thread (with the caller's context variables), awaited without blocking.

    Unlike `asyncio.to_thread`, a call that hangs past the runner's timeout is abandoned: nothing waits for it
    when the event loop closes or the process exits (the default executor's threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(ok: bool, value: Any) -> None:
        if not fut.done():  # cancelled by a timeout: the late answer is dropped
            fut.set_result(value) if ok else fut.set_exception(value)

    def work() -> None:
        try:
            res, ok = ctx.run(fn, *args), True
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            res, ok = e, False
        try:
            loop.call_soon_threadsafe(settle, ok, res)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    threading.Thread(target=work, name=f"bastion-target-{getattr(fn, '__name__', 'fn')}", daemon=True).start()
    return await fut


# ---- registered schemes ---------------------------------------------------------------------------
@register_target("guard")
def _guard_target(rest: str, opts: TargetOptions) -> Target:
    if rest:
        raise TargetError(f"target 'guard' takes no argument, got 'guard:{rest}'")
    return GuardedTarget(CompliantModel(), opts.guard(), name="guard")


@register_target("openai")
def _openai_target(rest: str, opts: TargetOptions) -> Target:
    if not rest.startswith(("http://", "https://")):
        raise TargetError(f"openai target needs a URL, e.g. openai:http://localhost:8000/v1 (got {rest!r})")
    if not opts.model:
        raise TargetError("openai target needs --model NAME")
    try:
        return OpenAITarget(rest, opts.model, api_key=opts.api_key, timeout=opts.timeout,
                            max_retries=opts.max_retries, rate_limit_rps=opts.rate_limit_rps,
                            rate_limiter=opts.rate_limiter, concurrency=opts.concurrency, params=opts.params)
    except ValueError as e:  # a bad URL (no host, a port out of range): a usage error, before any run exists
        raise TargetError(str(e)) from e


@register_target("python")
def _python_target(rest: str, opts: TargetOptions) -> Target:
    mod_name, _, fn_name = rest.rpartition(":")
    if not mod_name or not fn_name:
        raise TargetError(f"python target needs module:function, e.g. python:myapp.bot:reply (got {rest!r})")
    if str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise TargetError(f"cannot import module {mod_name!r} for target python:{rest}: {e}") from e
    fn = mod
    for part in fn_name.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise TargetError(f"module {mod_name!r} has no attribute {fn_name!r}")
    if not callable(fn):
        raise TargetError(f"python:{rest} is not callable")
    return PythonTarget(fn, name=f"python:{rest}")


def guarded(target: Target, opts: TargetOptions) -> GuardedTarget:
    """Wrap a target in the guard (for `--guarded`)."""
    return GuardedTarget(target, opts.guard(), name=f"guarded:{target.name}")
