"""LLMClient: the one OpenAI-protocol client (sync + async, retries, timeouts, rate limit, streaming, logprobs)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

Message = dict[str, Any]


# ---- results and errors -------------------------------------------------------------------------
@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


@dataclass
class ChatResult:
    """One chat completion: the text, per-token logprobs (when requested), token usage and the raw response."""

    text: str
    logprobs: list[TokenLogprob] | None = None
    usage: dict[str, int] = field(default_factory=dict)
    raw: Any = None
    finish_reason: str | None = None
    latency_ms: float = 0.0
    attempts: int = 1


class LLMError(RuntimeError):
    """A failed LLM call; the message is one line saying what went wrong and where."""

    retryable = False

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LLMAuthError(LLMError):
    pass


class LLMRateLimitError(LLMError):
    retryable = True


class LLMServerError(LLMError):
    retryable = True


class LLMTimeoutError(LLMError):
    retryable = True


class LLMConnectionError(LLMError):
    retryable = True


class LLMBadResponseError(LLMError):
    pass


# ---- rate limiting ----------------------------------------------------------------------------------
class TokenBucket:
    """A token bucket shared by threads and coroutines: `reserve()` returns how long to wait for a token."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 requests per second")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self._tokens = self.capacity
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0  # may go negative: later callers queue behind this one
            return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def acquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            time.sleep(wait)

    async def aacquire(self) -> None:
        wait = self.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


# ---- the client -------------------------------------------------------------------------------------
def _utf8_safe(text: str) -> str:
    """`text` with lone surrogates (from a JSON "\\ud800" escape in some input file) as U+FFFD: the request body is
    UTF-8, which cannot carry them, and one stray escape should not fail the request."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def _safe_content(content: Any) -> Any:
    if isinstance(content, str):
        return _utf8_safe(content)
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return [{**p, "text": _utf8_safe(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                for p in content]
    return content


def _as_messages(messages: str | Sequence[Message]) -> list[Message]:
    if isinstance(messages, str):
        return [{"role": "user", "content": _utf8_safe(messages)}]
    out = []
    for m in messages:
        d = dict(m)
        if "content" in d:
            d["content"] = _safe_content(d["content"])
        out.append(d)
    return out


def _retry_after(exc: BaseException) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if not headers:
        return None
    try:
        if "retry-after-ms" in headers:
            return float(headers["retry-after-ms"]) / 1000.0
        if "retry-after" in headers:
            return float(headers["retry-after"])
    except (TypeError, ValueError):
        return None
    return None


class LLMClient:
    """A chat model behind any OpenAI-compatible endpoint.

    >>> llm = LLMClient("http://127.0.0.1:8000/v1", "my-model")      # doctest: +SKIP
    >>> llm.chat("Hello").text                                          # doctest: +SKIP

    Retries 429, 5xx, timeouts and connection errors with exponential backoff and jitter (honouring
    `retry-after`); other errors raise an `LLMError` at once. `rate_limit_rps` caps requests per second
    across threads and tasks; `concurrency` caps requests in flight (both sync and async).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 3,
        rate_limit_rps: float | None = None,
        concurrency: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 20.0,
        default_params: dict[str, Any] | None = None,
    ) -> None:
        if not base_url or not str(base_url).startswith(("http://", "https://")):
            raise ValueError(f"base URL must start with http:// or https://, got {base_url!r}")
        if not model:
            raise ValueError("a model name is required")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.base_url = str(base_url).rstrip("/")
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.default_params = dict(default_params or {})
        self.bucket = TokenBucket(rate_limit_rps) if rate_limit_rps else None
        self._sync_sem = threading.BoundedSemaphore(self.concurrency)
        self._sync: openai.OpenAI | None = None
        self._async: dict[int, tuple[openai.AsyncOpenAI, asyncio.Semaphore]] = {}
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"LLMClient({self.base_url!r}, {self.model!r})"

    # ---- underlying openai clients (async ones are per event loop) --------------------------------
    @property
    def sync_client(self) -> openai.OpenAI:
        if self._sync is None:
            self._sync = openai.OpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                                       max_retries=0)
        return self._sync

    def _async_parts(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        key = id(loop)
        parts = self._async.get(key)
        if parts is None or getattr(parts[1], "_bastion_loop", None) is not loop:
            client = openai.AsyncOpenAI(base_url=self.base_url, api_key=self.api_key, timeout=self.timeout,
                                        max_retries=0)
            sem = asyncio.Semaphore(self.concurrency)
            sem._bastion_loop = loop  # type: ignore[attr-defined]
            parts = (client, sem)
            self._async[key] = parts
        return parts

    @property
    def async_client(self) -> openai.AsyncOpenAI:
        return self._async_parts()[0]

    def close(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    async def aclose(self) -> None:
        for client, _ in list(self._async.values()):
            try:
                await client.close()
            except RuntimeError:  # client bound to a closed loop
                pass
        self._async.clear()

    # ---- public API ----------------------------------------------------------------------------
    def chat(self, messages: str | Sequence[Message], **kw: Any) -> ChatResult:
        """One completion (blocking). `kw` goes to the chat-completions request (temperature, logprobs, ...)."""
        params = self._params(messages, kw)
        last: LLMError | None = None
        for attempt in range(self.max_retries + 1):
            if self.bucket:
                self.bucket.acquire()
            t0 = time.perf_counter()
            try:
                with self._sync_sem:
                    resp = self.sync_client.chat.completions.create(**params)
                return self._result(resp, t0, attempt + 1)
            except Exception as e:  # noqa: BLE001 - translated below
                last = self._translate(e)
                if not last.retryable or attempt >= self.max_retries:
                    raise last from e
                time.sleep(self._backoff(attempt, e))
        raise last  # type: ignore[misc]  # unreachable

    async def achat(self, messages: str | Sequence[Message], **kw: Any) -> ChatResult:
        """One completion (async), bounded by the client's concurrency."""
        params = self._params(messages, kw)
        client, sem = self._async_parts()
        last: LLMError | None = None
        for attempt in range(self.max_retries + 1):
            if self.bucket:
                await self.bucket.aacquire()
            t0 = time.perf_counter()
            try:
                async with sem:
                    resp = await client.chat.completions.create(**params)
                return self._result(resp, t0, attempt + 1)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - translated below
                last = self._translate(e)
                if not last.retryable or attempt >= self.max_retries:
                    raise last from e
                await asyncio.sleep(self._backoff(attempt, e))
        raise last  # type: ignore[misc]

    def stream(self, messages: str | Sequence[Message], **kw: Any) -> Iterator[str]:
        """Yield text deltas as they arrive. Retries only before the first delta."""
        params = self._params(messages, kw)
        params["stream"] = True
        for attempt in range(self.max_retries + 1):
            if self.bucket:
                self.bucket.acquire()
            started = False
            try:
                with self._sync_sem:
                    for chunk in self.sync_client.chat.completions.create(**params):
                        if chunk.choices:
                            delta = chunk.choices[0].delta.content
                            if delta:
                                started = True
                                yield delta
                return
            except Exception as e:  # noqa: BLE001
                err = self._translate(e)
                if started or not err.retryable or attempt >= self.max_retries:
                    raise err from e
                time.sleep(self._backoff(attempt, e))

    async def astream(self, messages: str | Sequence[Message], **kw: Any) -> AsyncIterator[str]:
        """Async version of `stream`."""
        params = self._params(messages, kw)
        params["stream"] = True
        client, sem = self._async_parts()
        for attempt in range(self.max_retries + 1):
            if self.bucket:
                await self.bucket.aacquire()
            started = False
            try:
                async with sem:
                    async for chunk in await client.chat.completions.create(**params):
                        if chunk.choices:
                            delta = chunk.choices[0].delta.content
                            if delta:
                                started = True
                                yield delta
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                err = self._translate(e)
                if started or not err.retryable or attempt >= self.max_retries:
                    raise err from e
                await asyncio.sleep(self._backoff(attempt, e))

    def models(self) -> list[str]:
        """Model ids the endpoint lists."""
        try:
            return [m.id for m in self.sync_client.models.list().data]
        except Exception as e:  # noqa: BLE001
            raise self._translate(e) from e

    # ---- internals -----------------------------------------------------------------------------
    def _params(self, messages: str | Sequence[Message], kw: dict[str, Any]) -> dict[str, Any]:
        params = {**self.default_params, **kw}
        params.setdefault("model", self.model)
        params["messages"] = _as_messages(messages)
        return params

    def _backoff(self, attempt: int, exc: BaseException) -> float:
        ra = _retry_after(exc)
        if ra is not None:
            return min(max(ra, 0.0), self.backoff_max)
        base = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return base * (0.5 + 0.5 * self._rng.random())

    @staticmethod
    def _result(resp: Any, t0: float, attempts: int) -> ChatResult:
        latency = (time.perf_counter() - t0) * 1000.0
        if not getattr(resp, "choices", None):
            raise LLMBadResponseError("the endpoint returned a completion with no choices")
        choice = resp.choices[0]
        text = (choice.message.content if choice.message else None) or ""
        lps = None
        if getattr(choice, "logprobs", None) is not None and choice.logprobs.content is not None:
            lps = [TokenLogprob(t.token, float(t.logprob), {x.token: float(x.logprob) for x in (t.top_logprobs or [])})
                   for t in choice.logprobs.content]
        usage = {}
        if getattr(resp, "usage", None) is not None:
            usage = {k: int(v) for k, v in (("prompt_tokens", resp.usage.prompt_tokens),
                                            ("completion_tokens", resp.usage.completion_tokens),
                                            ("total_tokens", resp.usage.total_tokens)) if v is not None}
        return ChatResult(text=text, logprobs=lps, usage=usage, raw=resp, finish_reason=choice.finish_reason,
                          latency_ms=latency, attempts=attempts)

    def _translate(self, e: BaseException) -> LLMError:
        where = f"{self.base_url} (model {self.model})"
        if isinstance(e, LLMError):
            return e
        if isinstance(e, openai.APITimeoutError):
            return LLMTimeoutError(f"request to {where} timed out after {self.timeout:g}s")
        if isinstance(e, openai.APIConnectionError):
            return LLMConnectionError(f"cannot connect to {where}: {e.__cause__ or e}")
        if isinstance(e, openai.APIStatusError):
            msg = _error_message(e)
            status = e.status_code
            if status in (401, 403):
                return LLMAuthError(f"HTTP {status} from {where}: {msg} (check OPENAI_API_KEY)", status)
            if status == 429:
                return LLMRateLimitError(f"HTTP 429 rate limited by {where}: {msg}", status)
            if status >= 500:
                return LLMServerError(f"HTTP {status} server error from {where}: {msg}", status)
            if status == 404:
                return LLMError(f"HTTP 404 from {where}: {msg} (is the base URL right, e.g. .../v1?)", status)
            return LLMError(f"HTTP {status} from {where}: {msg}", status)
        if isinstance(e, (json.JSONDecodeError, openai.APIResponseValidationError, ValueError, TypeError,
                          AttributeError)):
            return LLMBadResponseError(f"malformed response from {where}: {e}")
        return LLMError(f"request to {where} failed: {type(e).__name__}: {e}")


def _error_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(getattr(e, "message", "") or e).splitlines()[0][:300]
