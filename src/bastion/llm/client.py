"""LLMClient: the one OpenAI-protocol client (sync + async, retries, timeouts, rate limit, streaming, logprobs)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import random
import re
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai

from bastion.jsonl import utf8_safe

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


# ---- URLs and secrets ----------------------------------------------------------------------------
_SECRET_PARAM = re.compile(r"key|token|secret|sig|pass|auth|cred", re.I)
# A credential after Bearer/Basic: token-like (16+ characters of a token's alphabet), so that "the Bearer of this
# account" or "Basic plan" stay as written; after "Authorization:" any value following Bearer/Basic is one.
_AUTH_HEADER = re.compile(r"\b(Bearer|Basic)\s+(?=[A-Za-z0-9._~+/=-]{16})[^\s\"',;]+", re.I)
_AUTH_FIELD = re.compile(r"\b(authorization[\"']?\s*[:=]\s*[\"']?(?:(?:Bearer|Basic)\s+|(?=[A-Za-z0-9._~+/=-]{16})))"
                         r"[^\s\"',;]+", re.I)


def display_url(url: str) -> str:
    """`url` as it may be shown or stored: without user:password@ and without a query (either may hold a key).
    A key written in the path is not recognised and stays: pass keys as `api_key` (the CLI's --api-key-env)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port: int | str | None = parts.port
    except ValueError:  # not a valid port: shown as written, never dropped
        port = _port_text(parts.netloc)
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def _port_text(netloc: str) -> str | None:
    """The port of `netloc` as written (None when there is none), as urllib splits it."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):  # IPv6 literal
        hostport = hostport.partition("]")[2]
    _, sep, text = hostport.partition(":")
    return text if sep else None


def check_base_url(url: str) -> None:
    """Raise ValueError, one line with the URL's credentials masked, unless `url` can be an endpoint's base URL:
    http:// or https://, a host, and a port (when one is given) from 1 to 65535."""
    text = str(url or "")
    shown = redact_url(text)
    if not text.startswith(("http://", "https://")):
        raise ValueError(f"base URL must start with http:// or https://, got {shown!r}")
    parts = urlsplit(text)
    if not parts.hostname:
        raise ValueError(f"base URL {shown!r} has no host")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"base URL {shown!r} has port {_port_text(parts.netloc)!r}: a port is a number from 1 to "
                         "65535")


def url_secrets(url: str) -> list[str]:
    """The parts of `url` that may be credentials: the userinfo's password (or the user, when it stands alone, as
    in https://KEY@host), and the values of query parameters whose name looks like a key or token."""
    parts = urlsplit(str(url))
    out = [parts.password if parts.password is not None else parts.username or ""]
    out += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if v and _SECRET_PARAM.search(k)]
    return [x for x in out if x]


def redact_url(url: str) -> str:
    """`url` with its credentials (see `url_secrets`) replaced by ***, keeping everything else as written."""
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _pw = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if sep else f"***@{hostport}"
    query = "&".join(
        f"{k}={'***' if v and _SECRET_PARAM.search(k) else v}" if sep else k
        for k, sep, v in (item.partition("=") for item in parts.query.split("&"))) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, secrets: Sequence[str] = ()) -> str:
    """`text` with each secret, a token-like `Bearer <token>` / `Basic <token>` and an `Authorization:` value
    replaced by ***. Secrets shorter than 6 characters are masked only right after Bearer/Basic (replacing them
    everywhere would garble the message)."""
    known = {x for x in secrets if x and x != "EMPTY"}
    for sec in sorted((x for x in known if len(x) >= 6), key=len, reverse=True):
        text = text.replace(sec, "***")
    short = [re.escape(x) for x in sorted((x for x in known if len(x) < 6), key=len, reverse=True)]
    if short:
        text = re.sub(rf"\b(Bearer|Basic)\s+(?:{'|'.join(short)})(?![^\s\"',;])", lambda m: f"{m.group(1)} ***",
                      text, flags=re.I)
    text = _AUTH_FIELD.sub(lambda m: f"{m.group(1)}***", text)
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)} ***", text)


def _one_line(text: str, limit: int = 300) -> str:
    """`text` as one line: its non-empty lines joined by " / ", cut at `limit` characters."""
    line = " / ".join(x.strip() for x in str(text).splitlines() if x.strip())
    return line if len(line) <= limit else line[: limit - 1] + "…"


# ---- a total deadline for blocking requests -------------------------------------------------------
# httpx's timeout bounds each socket read, so a server that drips bytes keeps a request alive indefinitely. The
# blocking client's response hook checks this deadline (set per request by `chat`) as each piece arrives.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("bastion_llm_deadline", default=None)
# The HTTP library the openai SDK is built on (httpx, or httpx2 in newer SDKs).
_http: Any = sys.modules[next(c for c in openai.DefaultHttpxClient.__mro__
                              if c.__name__ == "Client" and not c.__module__.startswith("openai")
                              ).__module__.split(".")[0]]


class _DeadlineStream(_http.SyncByteStream):  # type: ignore[misc, name-defined]
    def __init__(self, inner: Any, deadline: float, request: Any) -> None:
        self.inner, self.deadline, self.request = inner, deadline, request

    def __iter__(self) -> Iterator[bytes]:
        for piece in self.inner:
            if time.monotonic() > self.deadline:
                raise _http.ReadTimeout("the response did not complete in time", request=self.request)
            yield piece

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


def _deadline_hook(response: Any) -> None:
    deadline = _DEADLINE.get()
    if deadline is None:
        return
    if time.monotonic() > deadline:
        raise _http.ReadTimeout("the response did not start in time", request=response.request)
    response.stream = _DeadlineStream(response.stream, deadline, response.request)


# ---- the client -------------------------------------------------------------------------------------
def _safe_content(content: Any) -> Any:
    if isinstance(content, str):
        return utf8_safe(content)
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}, ...]
        return [{**p, "text": utf8_safe(p["text"])} if isinstance(p, dict) and isinstance(p.get("text"), str) else p
                for p in content]
    return content


def _as_messages(messages: str | Sequence[Message]) -> list[Message]:
    if isinstance(messages, str):
        return [{"role": "user", "content": utf8_safe(messages)}]
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
        rate_limiter: TokenBucket | None = None,
    ) -> None:
        check_base_url(base_url)
        if not model:
            raise ValueError("a model name is required")
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        self.base_url = str(base_url).rstrip("/")
        parts = urlsplit(self.base_url)
        # A query in the base URL (Azure's ?api-version=, a gateway's key) goes on every request as the SDK's
        # default_query: the SDK would otherwise put the request path after it.
        self._query = dict(parse_qsl(parts.query, keep_blank_values=True))
        self._sdk_url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")).rstrip("/")
        self.display_url = display_url(self.base_url)  # no credentials: for messages and run names
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self._secrets = [self.api_key, *url_secrets(self.base_url)]
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.concurrency = int(concurrency)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.default_params = dict(default_params or {})
        # `rate_limiter`: a bucket shared with other clients of the same endpoint (it wins over rate_limit_rps)
        self.bucket = rate_limiter or (TokenBucket(rate_limit_rps) if rate_limit_rps else None)
        self._sync_sem = threading.BoundedSemaphore(self.concurrency)
        self._sync: openai.OpenAI | None = None
        self._async: dict[int, tuple[openai.AsyncOpenAI, asyncio.Semaphore]] = {}
        self._rng = random.Random()

    def __repr__(self) -> str:
        return f"LLMClient({self.display_url!r}, {self.model!r})"

    # ---- underlying openai clients (async ones are per event loop) --------------------------------
    @property
    def sync_client(self) -> openai.OpenAI:
        if self._sync is None:
            http = openai.DefaultHttpxClient(timeout=self.timeout, event_hooks={"response": [_deadline_hook]})
            self._sync = openai.OpenAI(base_url=self._sdk_url, api_key=self.api_key, timeout=self.timeout,
                                       max_retries=0, default_query=self._query or None, http_client=http)
        return self._sync

    def _async_parts(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        loop = asyncio.get_running_loop()
        key = id(loop)
        parts = self._async.get(key)
        if parts is None or getattr(parts[1], "_bastion_loop", None) is not loop:
            client = openai.AsyncOpenAI(base_url=self._sdk_url, api_key=self.api_key, timeout=self.timeout,
                                        max_retries=0, default_query=self._query or None)
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
                    token = _DEADLINE.set(time.monotonic() + self.timeout)  # the whole request, not each read
                    try:
                        resp = self.sync_client.chat.completions.create(**params)
                    finally:
                        _DEADLINE.reset(token)
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
                    try:  # the whole request, not each read (a server may drip bytes)
                        resp = await asyncio.wait_for(client.chat.completions.create(**params), self.timeout)
                    except asyncio.TimeoutError:
                        raise LLMTimeoutError(self._timeout_message()) from None
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
            started = finished = False
            try:
                with self._sync_sem:
                    for chunk in self.sync_client.chat.completions.create(**params):
                        if chunk.choices:
                            finished = finished or bool(chunk.choices[0].finish_reason)
                            delta = chunk.choices[0].delta.content if chunk.choices[0].delta else None
                            if delta:
                                started = True
                                yield delta
                if not finished:
                    raise self._stream_cut()
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
            started = finished = False
            try:
                async with sem:
                    async for chunk in await client.chat.completions.create(**params):
                        if chunk.choices:
                            finished = finished or bool(chunk.choices[0].finish_reason)
                            delta = chunk.choices[0].delta.content if chunk.choices[0].delta else None
                            if delta:
                                started = True
                                yield delta
                if not finished:
                    raise self._stream_cut()
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

    def _where(self) -> str:
        return f"{self.display_url} (model {self.model})"

    def _timeout_message(self) -> str:
        return f"request to {self._where()} timed out after {self.timeout:g}s"

    def _stream_cut(self) -> LLMBadResponseError:
        return LLMBadResponseError(f"the stream from {self._where()} ended early (no finish_reason): "
                                   "the reply may be incomplete")

    def _result(self, resp: Any, t0: float, attempts: int) -> ChatResult:
        latency = (time.perf_counter() - t0) * 1000.0
        if not getattr(resp, "choices", None):
            raise LLMBadResponseError(f"the endpoint {self._where()} {_not_a_completion(resp)}")
        choice = resp.choices[0]
        msg = choice.message
        text = _content_text(getattr(msg, "content", None) if msg else None, self._where())
        if not text and msg is not None:
            refusal = getattr(msg, "refusal", None)
            tool_calls = getattr(msg, "tool_calls", None)
            if isinstance(refusal, str) and refusal:  # a refusal sent in message.refusal is the reply
                text = refusal
            elif tool_calls:  # a reply that only calls tools: the calls, as JSON, so it is not silently empty
                calls = [c.model_dump(exclude_none=True) if hasattr(c, "model_dump") else c for c in tool_calls]
                text = json.dumps({"tool_calls": calls}, ensure_ascii=False, default=str)
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
        """`e` as an LLMError whose message is one line, with the API key and URL credentials masked in what the
        server or the HTTP library said (the client's own location text, built from `display_url`, holds none
        and is kept as written: a key such as Ollama's "ollama" must not garble the host name)."""
        err = self._translate_raw(e)
        where = self._where()
        err.args = (_one_line(where.join(scrub(x, self._secrets) for x in str(err).split(where)), limit=600),)
        return err

    def _translate_raw(self, e: BaseException) -> LLMError:
        where = self._where()
        if isinstance(e, LLMError):
            return e
        if isinstance(e, openai.APITimeoutError):
            return LLMTimeoutError(self._timeout_message())
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
            return _one_line(str(inner["message"]))
        if isinstance(body.get("message"), str):
            return _one_line(body["message"])
    return _one_line(str(getattr(e, "message", "") or e))


def _part_text(part: Any) -> str | None:
    get = part.get if isinstance(part, dict) else (lambda k: getattr(part, k, None))
    for key in ("text", "refusal"):  # {"type": "text", "text": ...} or {"type": "refusal", "refusal": ...}
        if isinstance(get(key), str):
            return get(key)
    return None


def _content_text(content: Any, where: str) -> str:
    """A message's content as text: a string, or the text of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [t for t in (_part_text(p) for p in content) if t is not None]
        if texts or not content:
            return "".join(texts)
    shown = _one_line(json.dumps(content, default=str), limit=80)
    raise LLMBadResponseError(f"the completion from {where} has content that is not text "
                              f"({type(content).__name__}: {shown})")


def _not_a_completion(resp: Any) -> str:
    """What came back instead of a completion with choices, for the error message."""
    if isinstance(resp, (str, bytes)):
        text = resp.decode("utf-8", "replace") if isinstance(resp, bytes) else resp
        kind = "HTML" if text.lstrip()[:1] == "<" else "text"
        return f"returned {kind}, not a chat completion ({_one_line(text, limit=80)!r})"
    extra = getattr(resp, "model_extra", None) or (resp if isinstance(resp, dict) else {})
    error = extra.get("error") if isinstance(extra, dict) else None
    if error is None:
        error = getattr(resp, "error", None)
    if error:
        message = error.get("message", error) if isinstance(error, dict) else error
        return f"returned an error instead of a completion: {_one_line(str(message))}"
    return "returned a completion with no choices"
