"""The LLM client, red-team targets, judges and runner against endpoints that misbehave in ways the scripted
server (tests/fakellm.py) cannot script: echoed credentials, dripped bodies, list or number content, error
bodies with status 200, refusals in message.refusal, streams that stop without finishing."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bastion.llm import LLMAuthError, LLMBadResponseError, LLMClient, LLMError, LLMTimeoutError
from bastion.redteam.judges import parse_yes_no
from bastion.redteam.runner import (
    DIRECT,
    CampaignConfig,
    _Runner,
    prepare_campaign,
    resume_campaign,
    run_campaign,
)
from bastion.redteam.targets import TargetError, TargetOptions, make_target
from bastion.store import Store

KEY = "sk-SECRET-abc123XYZ"
REFUSE = "I can't help with that."


def _completion(message: dict[str, Any], finish: str = "stop") -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish}]}


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    return ("data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m",
                                   "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            + "\n\n").encode()


class _Handler(BaseHTTPRequestHandler):
    """The mode is the first path segment: http://127.0.0.1:PORT/<mode>/v1."""

    protocol_version = "HTTP/1.1"
    log: list[tuple[str, dict[str, str]]]

    def log_message(self, *a: Any) -> None:
        pass

    def _send(self, status: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.log.append((self.path, dict(self.headers)))  # type: ignore[attr-defined]
        mode = self.path.strip("/").split("/")[0]
        if mode == "echo401":  # a proxy that puts the Authorization header in its error
            return self._send(401, {"error": {"message": f"bad key {self.headers.get('authorization')}"}})
        if mode == "drip":  # a valid answer, one byte every 0.25 s for 3 s (each read well within the timeout)
            body = json.dumps(_completion({"content": "late"})).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body) + 12))
            self.end_headers()
            try:
                for _ in range(12):
                    self.wfile.write(b" ")
                    self.wfile.flush()
                    time.sleep(0.25)
                self.wfile.write(body)
            except OSError:  # the client gave up
                pass
            return None
        if mode == "parts":
            return self._send(200, _completion({"content": [{"type": "text", "text": "Sure, "},
                                                            {"type": "text", "text": "[REDACTED-HARMFUL-STEP]"}]}))
        if mode == "number":
            return self._send(200, _completion({"content": 42}))
        if mode == "multiline400":
            return self._send(400, {"error": {"message": "line one\nline two\nline three"}})
        if mode == "error200":
            return self._send(200, {"error": {"message": "upstream model overloaded"}})
        if mode == "html200":
            return self._send(200, "<html>\n<body>maintenance</body>\n</html>", "text/html")
        if mode == "refusal":
            return self._send(200, _completion({"content": None, "refusal": REFUSE}))
        if mode == "toolcall":
            return self._send(200, _completion({"content": None, "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]}, "tool_calls"))
        if mode == "nofinish":  # a stream cut short: no finish_reason, no [DONE]
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("connection", "close")
            self.end_headers()
            self.wfile.write(_chunk({"content": "x"}))
            self.close_connection = True
            return None
        return self._send(200, _completion({"content": "hello"}))  # "ok" and anything else


@pytest.fixture
def bad_server() -> Iterator[tuple[str, list]]:
    """(http://127.0.0.1:PORT, request log of (path, headers))."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.log = []  # type: ignore[attr-defined]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv.log  # type: ignore[attr-defined]
    srv.shutdown()
    srv.server_close()


def _both(c: LLMClient) -> list[Any]:
    """chat() and achat() outcomes: the result or the exception, for each."""
    out: list[Any] = []
    for call in (lambda: c.chat("x"), lambda: asyncio.run(_achat(c))):
        try:
            out.append(call())
        except Exception as e:  # noqa: BLE001 - compared by the test
            out.append(e)
    return out


async def _achat(c: LLMClient) -> Any:
    try:
        return await c.achat("x")
    finally:
        await c.aclose()


# ---- 1: credentials never reach messages, names or the store ----------------------------------------------
def test_api_key_echoed_by_the_server_is_masked(bad_server):
    url, _ = bad_server
    for e in _both(LLMClient(f"{url}/echo401/v1", "m", api_key=KEY, max_retries=0)):
        assert isinstance(e, LLMAuthError)
        assert KEY not in str(e) and "Bearer ***" in str(e) and "check OPENAI_API_KEY" in str(e)


def test_url_credentials_are_not_shown_and_query_goes_on_every_request(bad_server):
    url, log = bad_server
    host = url.removeprefix("http://")
    c = LLMClient(f"http://user:{KEY}@{host}/echo401/v1?api_key=QUERYKEY42&api-version=2024-06-01", "m",
                  max_retries=0)
    assert c.display_url == f"{url}/echo401/v1" and KEY not in repr(c)
    with pytest.raises(LLMAuthError) as ei:
        c.chat("x")
    assert KEY not in str(ei.value) and "QUERYKEY42" not in str(ei.value) and f"{url}/echo401/v1 " in str(ei.value)
    # the query goes after the request path (the SDK alone built .../v1/?api-version=...chat/completions)
    assert log[-1][0] == "/echo401/v1/chat/completions?api_key=QUERYKEY42&api-version=2024-06-01"
    ok = LLMClient(f"{url}/ok/v1?api-version=2024-06-01", "m", max_retries=0)
    assert ok.chat("x").text == "hello" and log[-1][0] == "/ok/v1/chat/completions?api-version=2024-06-01"
    t = make_target(f"openai:http://user:{KEY}@{host}/ok/v1", TargetOptions(model="m"))
    assert t.name == f"openai:{url}/ok/v1 model=m"


def test_campaign_stores_no_url_credentials_and_resume_asks_for_them(redteam_sandbox, tmp_path, bad_server):
    url, _ = bad_server
    target = f"openai:http://user:{KEY}@{url.removeprefix('http://')}/ok/v1"
    st = Store(tmp_path / "rt.db")
    r = run_campaign(CampaignConfig(target=target, model="m", techniques=[DIRECT], limit=2, benign_limit=0), st)
    run = st.get_run(r.run_ids[0])
    assert KEY not in run.target and KEY not in json.dumps(run.config)
    assert run.config["target"] == f"openai:http://user:***@{url.removeprefix('http://')}/ok/v1"
    with pytest.raises(TargetError, match="stored without the credentials in its --target URL"):
        resume_campaign(st, run.id)


# ---- 2: --timeout bounds the whole request ------------------------------------------------------------------
def test_timeout_bounds_the_whole_request_not_each_read(bad_server):
    url, _ = bad_server
    for res in _both(LLMClient(f"{url}/drip/v1", "m", timeout=1.0, max_retries=0)):
        assert isinstance(res, LLMTimeoutError), res
        assert "timed out after 1s" in str(res)


# ---- 5: one rate-limit bucket per endpoint -----------------------------------------------------------------
def test_target_judge_and_attacker_of_one_endpoint_share_the_rate_limit(redteam_sandbox, tmp_path, bad_server):
    url, _ = bad_server
    cfg = CampaignConfig(target=f"openai:{url}/ok/v1", model="m", judge_model="m", techniques=[DIRECT], limit=2,
                         benign_limit=0, rate_limit=1.0, attacks=["pair"], attacker_model="m", attack_limit=1)
    p = prepare_campaign(cfg, Store(tmp_path / "rt.db"))
    target_bucket = p.lanes[0].target.client.bucket
    llm_judges = [j for j in p.lanes[0].judges if getattr(j, "client", None) is not None]
    assert target_bucket is not None and llm_judges
    assert all(j.client.bucket is target_bucket for j in llm_judges)
    assert _Runner(p.cfg, Store(tmp_path / "rt.db"), p.lanes, p.svc, None).attacker().bucket is target_bucket
    other = CampaignConfig(**{**cfg.model_dump(), "judge_base_url": "http://127.0.0.1:9/v1"})
    q = prepare_campaign(other, Store(tmp_path / "rt2.db"))
    judge = next(j for j in q.lanes[0].judges if getattr(j, "client", None) is not None)
    assert judge.client.bucket is not None and judge.client.bucket is not q.lanes[0].target.client.bucket


# ---- 6, 9, 10: what a completion's message holds ------------------------------------------------------------
def test_list_content_is_joined_and_other_content_is_a_clear_error(bad_server):
    url, _ = bad_server
    for r in _both(LLMClient(f"{url}/parts/v1", "m", max_retries=0)):
        assert not isinstance(r, Exception), r
        assert r.text == "Sure, [REDACTED-HARMFUL-STEP]"
    for e in _both(LLMClient(f"{url}/number/v1", "m", max_retries=0)):
        assert isinstance(e, LLMBadResponseError)
        assert "content that is not text (int: 42)" in str(e) and f"{url}/number/v1" in str(e)


def test_error_messages_are_one_line_and_name_the_cause(bad_server):
    url, _ = bad_server
    e = _both(LLMClient(f"{url}/multiline400/v1", "m", max_retries=0))[0]
    assert isinstance(e, LLMError) and "\n" not in str(e) and "line one / line two / line three" in str(e)
    e = _both(LLMClient(f"{url}/error200/v1", "m", max_retries=0))[0]
    assert isinstance(e, LLMBadResponseError)
    assert str(e) == (f"the endpoint {url}/error200/v1 (model m) returned an error instead of a completion: "
                      "upstream model overloaded")
    e = _both(LLMClient(f"{url}/html200/v1", "m", max_retries=0))[0]
    assert isinstance(e, LLMBadResponseError) and "\n" not in str(e)
    assert f"{url}/html200/v1" in str(e) and "returned HTML, not a chat completion" in str(e)


def test_refusal_field_and_tool_calls_are_the_reply(bad_server):
    url, _ = bad_server
    for r in _both(LLMClient(f"{url}/refusal/v1", "m", max_retries=0)):
        assert r.text == REFUSE
    r = LLMClient(f"{url}/toolcall/v1", "m", max_retries=0).chat("x")
    assert json.loads(r.text)["tool_calls"][0]["function"]["name"] == "lookup" and r.finish_reason == "tool_calls"


# ---- 11: streams that stop early ----------------------------------------------------------------------------
def test_stream_without_finish_is_an_error(bad_server):
    url, _ = bad_server
    c = LLMClient(f"{url}/nofinish/v1", "m", max_retries=0)
    with pytest.raises(LLMBadResponseError, match="ended early"):
        list(c.stream("x"))

    async def go() -> list[str]:
        try:
            return [d async for d in c.astream("x")]
        finally:
            await c.aclose()

    with pytest.raises(LLMBadResponseError, match="ended early"):
        asyncio.run(go())


# ---- 14: judges -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,yes", [("Answer: Yes", True), ("answer - yes.", True), ("Final answer: no", False),
                                      ("Yes", True), ("No.", False), ("Answer: No", False), ("", False)])
def test_parse_yes_no_skips_an_echoed_answer_label(text, yes):
    assert parse_yes_no(text) is yes
