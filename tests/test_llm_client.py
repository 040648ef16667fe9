"""LLMClient against the scripted OpenAI-compatible server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import time

import pytest

from bastion.llm import (
    LLMAuthError,
    LLMBadResponseError,
    LLMClient,
    LLMConnectionError,
    LLMRateLimitError,
    LLMServerError,
    LLMTimeoutError,
    TokenBucket,
)
from tests.fakellm import FakeReply, echo


def test_chat_sync_and_usage(fake_llm):
    llm = fake_llm(echo)
    c = LLMClient(llm.base_url, "fake-model", api_key="k")
    r = c.chat("hello there friend", temperature=0)
    assert r.text == "hello there friend"
    assert r.usage["completion_tokens"] == 3
    assert r.finish_reason == "stop"
    assert llm.requests[0]["model"] == "fake-model"
    assert llm.requests[0]["temperature"] == 0
    assert c.models() == ["fake-model"]


def test_lone_surrogates_are_sent_as_replacement_characters(fake_llm):
    # a "\ud800" escape in an input file decodes to a lone surrogate; UTF-8 request bodies cannot carry it
    llm = fake_llm(echo)
    c = LLMClient(llm.base_url, "fake-model", api_key="k")
    assert c.chat("bad \ud800 char").text == "bad \ufffd char"
    parts = [{"role": "user", "content": [{"type": "text", "text": "x\udc00"}]}]
    c.chat(parts)
    assert llm.requests[-1]["messages"][0]["content"][0]["text"] == "x\ufffd"
    assert parts[0]["content"][0]["text"] == "x\udc00"  # the caller's messages are not changed
    r = asyncio.run(_achat(c, [{"role": "system", "content": "s\ud83d"}, {"role": "user", "content": "ok \U0001f600"}]))
    assert r.text == "ok \U0001f600"
    assert llm.requests[-1]["messages"][0]["content"] == "s\ufffd"


async def _achat(c: LLMClient, messages):
    try:
        return await c.achat(messages)
    finally:
        await c.aclose()


def test_logprobs_generated_and_scripted(fake_llm):
    llm = fake_llm([FakeReply("yes it is"),
                    FakeReply("Yes", logprobs=[("Yes", -0.05, {"Yes": -0.05, "No": -3.0})])])
    c = LLMClient(llm.base_url, "m")
    r = c.chat("q", logprobs=True, top_logprobs=2)
    assert [t.token for t in r.logprobs] == ["yes", " it", " is"]
    assert len(r.logprobs[0].top) == 2
    r = c.chat("q", logprobs=True, top_logprobs=2)
    assert r.logprobs[0].logprob == pytest.approx(-0.05)
    assert r.logprobs[0].top == {"Yes": -0.05, "No": -3.0}
    assert c.chat("q").logprobs is None


def test_retries_429_then_500_then_success(fake_llm):
    llm = fake_llm([FakeReply("slow down", status=429), FakeReply("boom", status=500), "fine"])
    c = LLMClient(llm.base_url, "m", max_retries=3, backoff_base=0.01)
    r = c.chat("x")
    assert r.text == "fine" and r.attempts == 3 and llm.calls == 3


def test_retries_exhausted(fake_llm):
    llm = fake_llm(FakeReply("overloaded", status=503))
    c = LLMClient(llm.base_url, "m", max_retries=2, backoff_base=0.01)
    with pytest.raises(LLMServerError, match="503"):
        c.chat("x")
    assert llm.calls == 3
    llm2 = fake_llm(FakeReply("slow", status=429))
    with pytest.raises(LLMRateLimitError):
        LLMClient(llm2.base_url, "m", max_retries=0).chat("x")


def test_auth_error_not_retried(fake_llm):
    llm = fake_llm("hi", api_key="right")
    c = LLMClient(llm.base_url, "m", api_key="wrong", max_retries=3)
    with pytest.raises(LLMAuthError, match="401.*OPENAI_API_KEY"):
        c.chat("x")
    assert llm.calls == 0  # rejected before the script
    assert LLMClient(llm.base_url, "m", api_key="right").chat("x").text == "hi"


def test_api_key_from_env(fake_llm, monkeypatch):
    llm = fake_llm("hi", api_key="envkey")
    monkeypatch.setenv("OPENAI_API_KEY", "envkey")
    assert LLMClient(llm.base_url, "m").chat("x").text == "hi"


def test_timeout(fake_llm):
    llm = fake_llm(FakeReply("late", delay=2.0))
    c = LLMClient(llm.base_url, "m", timeout=0.2, max_retries=1, backoff_base=0.01)
    t0 = time.monotonic()
    with pytest.raises(LLMTimeoutError, match="timed out"):
        c.chat("x")
    assert time.monotonic() - t0 < 1.5
    assert llm.calls == 2


def test_malformed_json(fake_llm):
    llm = fake_llm(FakeReply("x", malformed=True))
    with pytest.raises(LLMBadResponseError, match="malformed"):
        LLMClient(llm.base_url, "m", max_retries=2).chat("x")
    assert llm.calls == 1


def test_connection_error():
    with pytest.raises(LLMConnectionError, match="cannot connect"):
        LLMClient("http://127.0.0.1:9/v1", "m", max_retries=0, timeout=2).chat("x")
    with pytest.raises(ValueError):
        LLMClient("not-a-url", "m")


def test_streaming_sync_and_async(fake_llm):
    llm = fake_llm(FakeReply("one two three", chunks=["one", " two", " three"]))
    c = LLMClient(llm.base_url, "m")
    assert list(c.stream("x")) == ["one", " two", " three"]

    async def go():
        return [d async for d in c.astream("x")]

    assert "".join(asyncio.run(go())) == "one two three"
    assert llm.requests[0]["stream"] is True


def test_stream_retries_before_first_chunk(fake_llm):
    llm = fake_llm([FakeReply("busy", status=429), "ok then"])
    c = LLMClient(llm.base_url, "m", backoff_base=0.01)
    assert "".join(c.stream("x")) == "ok then"


def test_async_concurrency_bound(fake_llm):
    llm = fake_llm(FakeReply("ok", delay=0.2))
    c = LLMClient(llm.base_url, "m", concurrency=2)

    async def go():
        return await asyncio.gather(*[c.achat(f"q{i}") for i in range(4)])

    t0 = time.monotonic()
    rs = asyncio.run(go())
    dt = time.monotonic() - t0
    assert [r.text for r in rs] == ["ok"] * 4
    assert dt >= 0.38  # two waves of two
    # a second event loop gets fresh clients
    assert asyncio.run(c.achat("again")).text == "ok"


def test_async_retry(fake_llm):
    llm = fake_llm([FakeReply("", status=429), "done"])
    c = LLMClient(llm.base_url, "m", backoff_base=0.01)
    assert asyncio.run(c.achat("x")).text == "done"


def test_token_bucket_rate():
    b = TokenBucket(rate=20, burst=1)
    t0 = time.monotonic()
    for _ in range(5):
        b.acquire()
    assert time.monotonic() - t0 >= 0.18


def test_rate_limited_client(fake_llm):
    llm = fake_llm("ok")
    c = LLMClient(llm.base_url, "m", rate_limit_rps=10)
    t0 = time.monotonic()
    for _ in range(13):
        c.chat("x")
    assert time.monotonic() - t0 >= 0.25


def test_script_exception_is_500(fake_llm):
    def bad(req):
        raise KeyError("nope")

    llm = fake_llm(bad)
    with pytest.raises(LLMServerError, match="script error"):
        LLMClient(llm.base_url, "m", max_retries=0).chat("x")
    assert llm.errors
