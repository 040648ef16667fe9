"""The gateway against upstream replies of every shape an OpenAI-compatible server may send: several choices,
legacy function calls, refusal and reasoning fields, content as parts, a finish on a text chunk, streams cut
short or answered with JSON. Nothing unchecked may reach the client, and a failure is never a normal end."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bastion.gateway.app import BULK_CHARS
from bastion.gateway.audit import AuditLog, verify
from bastion.gateway.keys import KeysError, KeyStore
from bastion.gateway.metrics import Metrics
from bastion.gateway.server import ServerThread
from bastion.guard import Guard
from tests.test_gateway_support import (  # noqa: F401
    HARM,
    MarkerModel,
    chat,
    gateway_fixture,
    sse_events,
)

BENIGN = "Bread is made from flour and water. It is baked in an oven. "
HARMFUL = f"Step one is {HARM} now."


def _chunk(delta: dict[str, Any], idx: int = 0, finish: str | None = None) -> dict[str, Any]:
    return {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": idx, "delta": delta, "logprobs": None, "finish_reason": finish}]}


def _pieces(text: str, n: int) -> list[str]:
    return [text[i:i + n] for i in range(0, len(text), n)]


def _events(scn: str) -> list[Any]:
    ev: list[Any] = [_chunk({"role": "assistant", "content": ""})]
    if scn == "nchoice":
        a, b = _pieces(BENIGN * 2, 6), _pieces(HARMFUL + " " + BENIGN, 6)
        for i in range(max(len(a), len(b))):
            ev += [_chunk({"content": a[i]}, 0)] if i < len(a) else []
            ev += [_chunk({"content": b[i]}, 1)] if i < len(b) else []
        return ev + [_chunk({}, 0, "stop"), _chunk({}, 1, "stop"), "[DONE]"]
    if scn == "nchoice_benign":
        for p in _pieces(BENIGN, 9):
            ev += [_chunk({"content": p}, 0), _chunk({"content": p.upper()}, 1)]
        return ev + [_chunk({}, 0, "stop"), _chunk({}, 1, "stop"), "[DONE]"]
    if scn == "fcall":
        args = json.dumps({"text": HARMFUL})
        ev += [_chunk({"function_call": {"name": "say", "arguments": ""}})]
        ev += [_chunk({"function_call": {"arguments": p}}) for p in _pieces(args, 4)]
        return ev + [_chunk({}, finish="function_call"), "[DONE]"]
    if scn == "listcontent":
        return ev + [_chunk({"content": [{"type": "text", "text": HARMFUL}]}), _chunk({}, finish="stop"), "[DONE]"]
    if scn == "textlength":
        return ev + [_chunk({"content": BENIGN}), _chunk({"content": "And then the"}, finish="length"), "[DONE]"]
    if scn == "miderror":
        return ev + [_chunk({"content": BENIGN}), {"error": {"message": "boom", "type": "server_error"}}]
    if scn == "nodone":
        return ev + [_chunk({"content": BENIGN})]
    if scn == "interleave_tools":  # two parallel tool calls whose argument deltas interleave
        def call(i: int, args: str) -> dict[str, Any]:
            return _chunk({"tool_calls": [{"index": i, "function": {"arguments": args}}]})
        return ev + [call(0, '{"t": "[REDACTED-'), call(1, '{"u": "x'), call(0, 'HARMFUL-STEP]"}'), call(1, '"}'),
                     _chunk({}, finish="tool_calls"), "[DONE]"]
    if scn == "interleave_reason":
        return ev + [_chunk({"reasoning_content": "[REDACTED-"}), _chunk({"content": "ok "}),
                     _chunk({"reasoning_content": "HARMFUL-STEP]"}), _chunk({}, finish="stop"), "[DONE]"]
    if scn == "legacy_text":
        chunk = _chunk({})
        chunk["choices"][0]["text"] = HARMFUL
        return ev + [chunk, _chunk({}, finish="stop"), "[DONE]"]
    if scn == "logprobs_only":
        chunk = _chunk({"content": ""})
        chunk["choices"][0]["logprobs"] = {"content": [{"token": HARMFUL, "logprob": -0.1, "top_logprobs": []}]}
        return ev + [chunk, _chunk({}, finish="stop"), "[DONE]"]
    if scn == "harm_with_length":
        return ev + [_chunk({"content": BENIGN}), _chunk({"content": HARMFUL}, finish="length"), "[DONE]"]
    if scn == "nchoice_usage":
        usage = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [],
                 "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
        return _events("nchoice")[:-1] + [usage, "[DONE]"]
    if scn == "late_harm":
        return ev + [_chunk({"content": p}) for p in _pieces(BENIGN + HARMFUL, 5)] + [_chunk({}, finish="stop"),
                                                                                       "[DONE]"]
    return ev + [_chunk({"content": BENIGN}), _chunk({}, finish="stop"), "[DONE]"]


def _message(scn: str) -> list[dict[str, Any]]:
    msg: dict[str, Any] = {"role": "assistant", "content": BENIGN}
    if scn == "fcall":
        msg = {"role": "assistant", "content": None, "function_call": {"name": "say", "arguments": HARMFUL}}
    elif scn == "refusalfield":
        msg = {"role": "assistant", "content": None, "refusal": HARMFUL}
    elif scn == "reasoning":
        msg = {"role": "assistant", "content": "ok.", "reasoning_content": HARMFUL}
    elif scn == "choicesnull":
        return [None]  # type: ignore[list-item]
    return [{"index": 0, "message": msg, "logprobs": None, "finish_reason": "stop"}]


class Upstream:
    """A loopback server scripted by `SCN=<name>` in the last user message; records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

        async def chat_route(request: Request) -> Any:
            req = json.loads(await request.body())
            self.requests.append(req)
            users = [m.get("content") for m in req["messages"] if m.get("role") == "user"]
            last = users[-1] if users and isinstance(users[-1], str) else ""
            scn = last.split("SCN=")[1].split()[0] if "SCN=" in last else "default"
            if scn == "usage_inf" and not req.get("stream"):
                return Response(b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": '
                                b'{"role": "assistant", "content": "hi"}, "finish_reason": "stop"}], '
                                b'"usage": {"prompt_tokens": 1e999}}', media_type="application/json")
            if req.get("stream") and scn == "jsoninstead":
                return JSONResponse({"id": "x", "object": "chat.completion", "choices": _message("default")})
            if req.get("stream"):
                async def gen() -> Any:
                    for e in _events(scn):
                        yield f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n"
                return StreamingResponse(gen(), media_type="text/event-stream")
            return JSONResponse({"id": "x", "object": "chat.completion", "created": 1, "model": "m",
                                 "choices": _message(scn)})

        self.app = Starlette(routes=[Route("/v1/chat/completions", chat_route, methods=["POST"])])


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    up = Upstream()
    srv = ServerThread(up.app).start()
    yield up, srv.base_url + "/v1"
    srv.stop()


def _stream(url: str, scn: str, **kw: Any) -> list[Any]:
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": f"Tell me. SCN={scn}"}], **kw}
    r = httpx.post(url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return sse_events(r.text)


def _no_harm(events: list[Any]) -> bool:
    return all(HARM not in json.dumps({k: v for k, v in e.items() if k != "bastion"})
               for e in events if isinstance(e, dict))


def test_stream_of_two_choices_never_releases_the_harmful_one(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, "nchoice", n=2)
    assert _no_harm(events)
    fins = {c["index"]: c["finish_reason"] for e in events if isinstance(e, dict) for c in e.get("choices") or []
            if c.get("finish_reason")}
    assert fins == {0: "content_filter", 1: "content_filter"}
    assert events[-1] == "[DONE]"


def test_stream_of_two_benign_choices_is_released_whole(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, "nchoice_benign", n=2)
    text = {0: "", 1: ""}
    for e in events:
        for c in (e.get("choices") or []) if isinstance(e, dict) else []:
            text[c["index"]] += c["delta"].get("content") or ""
    assert text == {0: BENIGN, 1: BENIGN.upper()}
    assert any(isinstance(e, dict) and e.get("bastion", {}).get("action") == "allow" for e in events)


def test_two_choices_in_a_one_choice_stream_end_with_an_error(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, "nchoice")  # no n in the request, but the upstream sends two choices
    assert _no_harm(events)
    assert any(isinstance(e, dict) and e.get("error", {}).get("code") == "upstream_malformed" for e in events)


@pytest.mark.parametrize("scn", ["fcall", "listcontent"])
def test_streamed_function_call_and_content_parts_are_checked(gateway, upstream, scn):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, scn)
    assert _no_harm(events)
    assert [c["finish_reason"] for e in events if isinstance(e, dict) for c in e.get("choices") or []
            if c.get("finish_reason")] == ["content_filter"]


@pytest.mark.parametrize("scn", ["fcall", "refusalfield", "reasoning"])
def test_non_streamed_fields_beyond_content_are_checked(gateway, upstream, scn):
    _, url = upstream
    g = gateway(upstream=url)
    r = httpx.post(g.url + "/v1/chat/completions", json=chat(f"Tell me. SCN={scn}"), timeout=30).json()
    assert HARM not in json.dumps(r["choices"])
    assert r["choices"][0]["finish_reason"] == "content_filter" and r["bastion"]["action"] == "block"


def test_non_streamed_choice_that_is_not_an_object_is_a_502(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("Tell me. SCN=choicesnull"), timeout=30)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_malformed"


def test_finish_on_a_text_chunk_is_kept_and_not_doubled(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, "textlength")
    fins = [c["finish_reason"] for e in events if isinstance(e, dict) for c in e.get("choices") or []
            if c.get("finish_reason")]
    assert fins == ["length"]
    assert sum(1 for e in events if isinstance(e, dict) and "bastion" in e) == 1


@pytest.mark.parametrize("output_checks", [True, False])
@pytest.mark.parametrize("scn", ["miderror", "nodone"])
def test_a_stream_that_fails_midway_ends_with_an_error_event(gateway, upstream, scn, output_checks):
    _, url = upstream
    g = gateway(upstream=url, policy=None if output_checks else "checks: {output: false}\n")
    events = _stream(g.url, scn)
    assert events[-1] == "[DONE]"
    assert isinstance(events[-2], dict) and "error" in events[-2]
    assert not any(c.get("finish_reason") == "stop" for e in events if isinstance(e, dict)
                   for c in e.get("choices") or [])


def test_json_answer_to_a_streaming_request_is_a_502(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": "Tell me. SCN=jsoninstead"}]}
    r = httpx.post(g.url + "/v1/chat/completions", json=body, timeout=30)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_malformed"


def test_blocked_stream_audits_the_withheld_text(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url, audit_content=True)
    events = _stream(g.url, "late_harm")
    assert _no_harm(events)
    g.gw.audit.flush()
    con = sqlite3.connect(g.audit_path)
    rows = con.execute("SELECT action, content FROM audit WHERE rail = 'output'").fetchall()
    con.close()
    assert rows and rows[-1][0] == "block" and HARM in rows[-1][1]


# ---- input rail ---------------------------------------------------------------------------------------
def test_redact_never_forwards_a_flagged_system_message_or_earlier_turn(gateway, upstream):
    up, url = upstream
    g = gateway(upstream=url, policy="action: redact\nchecks: {session: false}\n")
    for msgs in ([{"role": "system", "content": f"You always say {HARM}"}, {"role": "user", "content": "hi"}],
                 [{"role": "user", "content": HARM}, {"role": "assistant", "content": "ok"},
                  {"role": "user", "content": "go on"}]):
        r = httpx.post(g.url + "/v1/chat/completions", json={"model": "m", "messages": msgs}, timeout=30).json()
        assert r["choices"][0]["finish_reason"] == "content_filter" and r["bastion"]["action"] == "block"
    assert all(HARM not in json.dumps(req) for req in up.requests)
    # a flagged latest turn is still redacted and forwarded
    r = httpx.post(g.url + "/v1/chat/completions", json=chat(f"say {HARM}"), timeout=30).json()
    assert r["bastion"]["action"] == "allow" and json.dumps(up.requests[-1]).count(HARM) == 0
    assert up.requests[-1]["messages"][-1]["content"] == "[content removed by policy]"


def test_system_message_is_scored_on_its_own(gateway, upstream):
    up, url = upstream
    g = gateway(upstream=url)
    msgs = [{"role": "system", "content": f"Explain {HARM}."}, {"role": "user", "content": "Go ahead."}]
    r = httpx.post(g.url + "/v1/chat/completions", json={"model": "m", "messages": msgs}, timeout=30).json()
    assert r["bastion"]["action"] == "block"
    assert any(v.get("scope") == "instructions" and v["unsafe"] for v in r["bastion"]["verdicts"])
    assert not up.requests


def test_without_a_session_id_one_user_never_blocks_another(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    a = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
         {"role": "user", "content": f"tell me {HARM}"}]
    with httpx.Client(base_url=g.url, timeout=30) as c:
        assert c.post("/v1/chat/completions", json={"model": "m", "messages": a}).json()["bastion"]["action"] == "block"
        r = c.post("/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "Hello"}]})
    assert r.json()["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize("content", [[f"how {HARM}"], [{"type": "input_text", "text": f"how {HARM}"}]])
def test_content_parts_of_any_shape_are_checked(gateway, upstream, content):
    up, url = upstream
    g = gateway(upstream=url)
    r = httpx.post(g.url + "/v1/chat/completions",
                   json={"model": "m", "messages": [{"role": "user", "content": content}]}, timeout=30).json()
    assert r["bastion"]["action"] == "block" and not up.requests


@pytest.mark.parametrize("raw", [
    b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    b'{"model": "m", "messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
])
def test_bodies_json_cannot_carry_get_a_400(gateway, upstream, raw):
    _, url = upstream
    g = gateway(upstream=url, max_body_bytes=1_000_000)
    r = httpx.post(g.url + "/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_tool_call_of_an_odd_shape_is_read_not_a_500(gateway, upstream):
    up, url = upstream
    g = gateway(upstream=url)
    msgs = [{"role": "assistant", "content": None, "tool_calls": [{"function": f"f {HARM}"}]},
            {"role": "user", "content": "go"}]
    r = httpx.post(g.url + "/v1/chat/completions", json={"model": "m", "messages": msgs}, timeout=30)
    assert r.status_code == 200 and r.json()["bastion"]["action"] == "block" and not up.requests


# ---- fairness, audit, metrics, keys -----------------------------------------------------------------
class _SlowOnLongText(MarkerModel):
    """Takes 3 s to score any text longer than the gateway's bulk limit."""

    def score_prompts(self, texts):  # type: ignore[no-untyped-def]
        if any(len(t) > BULK_CHARS for t in texts):
            time.sleep(3)
        return super().score_prompts(texts)


def test_a_long_prompt_does_not_hold_other_clients_checks(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url, guard=Guard(model=_SlowOnLongText()))
    done: dict[str, float] = {}
    t0 = time.monotonic()

    def send(name: str, text: str) -> None:
        httpx.post(g.url + "/v1/chat/completions", json=chat(text), timeout=60)
        done[name] = time.monotonic() - t0

    long = threading.Thread(target=send, args=("long", "word " * (BULK_CHARS // 4)))
    long.start()
    time.sleep(0.5)
    send("short", "bread?")
    long.join()
    assert done["short"] < done["long"] and done["long"] >= 3


def test_audit_log_continues_after_another_writer_appends(tmp_path):
    path = tmp_path / "audit.db"
    log = AuditLog(path)
    log.record(request_id="a", key_id=None, rail="input", action="allow", categories=[], verdicts=[],
               latency_ms=1.0, content="x")
    log.flush()
    other = AuditLog(path)  # a second writer on the same file
    other.record(request_id="b", key_id=None, rail="input", action="allow", categories=[], verdicts=[],
                 latency_ms=1.0, content="y")
    other.close()
    for i in range(3):
        log.record(request_id=f"c{i}", key_id=None, rail="input", action="allow", categories=[], verdicts=[],
                   latency_ms=1.0, content="z")
    log.close()
    assert log.errors == 0
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM audit").fetchone()[0] == 5
    con.close()
    assert verify(path).ok


def test_healthz_reports_audit_errors(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    g.gw.audit._errors = 2  # what a failed write leaves behind
    h = httpx.get(g.url + "/healthz").json()
    assert h["status"] == "degraded" and h["audit_errors"] == 2
    assert "bastion_audit_errors_total 2" in httpx.get(g.url + "/metrics").text


def test_metrics_print_large_counters_exactly():
    m = Metrics()
    m.inc("bastion_requests_total", {"endpoint": "x"}, 1234567)
    m.inc("bastion_requests_total", {"endpoint": "x"}, 3)
    m.observe("bastion_codeshield_seconds", 0.01)
    text = m.render()
    assert 'bastion_requests_total{endpoint="x"} 1234570' in text
    assert "# TYPE bastion_codeshield_seconds histogram" in text


@pytest.mark.parametrize("value", ["fast", -1, True])
def test_keys_file_with_a_bad_rate_limit_is_one_clear_error(tmp_path, value):
    p = tmp_path / "keys.yaml"
    p.write_text("keys:\n- {id: a, sha256: '" + "0" * 64 + f"', rate_limit_per_minute: {json.dumps(value)}}}\n")
    with pytest.raises(KeysError, match="rate_limit_per_minute"):
        KeyStore.load(p)



# ---- second review: fields, redaction, n > 1 without checks ----------------------------------------
@pytest.mark.parametrize("scn", ["interleave_tools", "interleave_reason"])
@pytest.mark.parametrize("n", [None, 2])
def test_a_phrase_split_across_interleaved_fields_is_caught(gateway, upstream, scn, n):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, scn, **({"n": n} if n else {}))
    fields: dict[str, str] = {}
    for e in events:
        for c in (e.get("choices") or []) if isinstance(e, dict) else []:
            d = c.get("delta") or {}
            for tc in d.get("tool_calls") or []:
                k = f"tool{tc['index']}"
                fields[k] = fields.get(k, "") + ((tc.get("function") or {}).get("arguments") or "")
            fields["reasoning"] = fields.get("reasoning", "") + (d.get("reasoning_content") or "")
    assert not any(HARM in t for t in fields.values())
    assert any(c.get("finish_reason") == "content_filter" for e in events if isinstance(e, dict)
               for c in e.get("choices") or [])


@pytest.mark.parametrize("scn", ["legacy_text", "logprobs_only"])
def test_text_outside_the_delta_is_checked(gateway, upstream, scn):
    _, url = upstream
    g = gateway(upstream=url)
    assert _no_harm(_stream(g.url, scn))


def test_two_choices_stream_freely_when_nothing_is_checked(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url, policy="checks: {output: false}\ncode_shield: {mode: off}\n")
    events = _stream(g.url, "nchoice_benign", n=2)
    assert not any(isinstance(e, dict) and "error" in e for e in events)
    assert {c["index"] for e in events if isinstance(e, dict) for c in e.get("choices") or []} == {0, 1}


def test_n_given_as_a_string_still_holds_the_stream(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, "nchoice", n="2")
    assert _no_harm(events) and not any(isinstance(e, dict) and "error" in e for e in events)


def test_blocked_stream_of_two_choices_keeps_its_usage(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    events = _stream(g.url, "nchoice_usage", n=2, stream_options={"include_usage": True})
    assert _no_harm(events)
    assert any(isinstance(e, dict) and e.get("usage", {}).get("total_tokens") == 3 for e in events)


@pytest.mark.parametrize("msgs", [
    [{"role": "system", "content": f"say {HARM}"}],
    [{"role": "User", "content": f"say {HARM}"}],
    [{"role": "user", "content": "hello", "reasoning_content": HARM}],
    [{"role": "user", "content": "hello", "tool_calls": [{"function": {"name": "f", "arguments": HARM}}]}],
])
def test_redact_never_forwards_flagged_text_outside_a_user_content(gateway, upstream, msgs):
    up, url = upstream
    g = gateway(upstream=url, policy="action: redact\n")
    httpx.post(g.url + "/v1/chat/completions", json={"model": "m", "messages": msgs}, timeout=30)
    assert all(HARM not in json.dumps(req) for req in up.requests)


def test_redact_of_the_latest_turn_survives_a_conversation_and_does_not_poison_the_session(gateway, upstream):
    up, url = upstream
    g = gateway(upstream=url, policy="action: redact\n")
    h = {"x-bastion-session": "s1"}
    msgs = [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": f"say {HARM}"}]
    with httpx.Client(base_url=g.url, timeout=30, headers=h) as c:
        r = c.post("/v1/chat/completions", json={"model": "m", "messages": msgs}).json()
        assert r["bastion"]["input"]["action"] == "redact"
        assert up.requests[-1]["messages"][-1] == {"role": "user", "content": "[content removed by policy]"}
        for text in ("What is bread made of?", "Thanks!"):
            assert c.post("/v1/chat/completions", json=chat(text)).json()["choices"][0]["finish_reason"] == "stop"
    assert all(HARM not in json.dumps(req) for req in up.requests)


def test_streamed_redaction_keeps_the_upstream_finish_reason(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url, policy="action: redact\n")
    events = _stream(g.url, "harm_with_length")
    assert _no_harm(events)
    assert [c["finish_reason"] for e in events if isinstance(e, dict) for c in e.get("choices") or []
            if c.get("finish_reason")] == ["length"]


def test_numbers_too_large_for_json_are_refused(gateway, upstream):
    _, url = upstream
    g = gateway(upstream=url)
    r = httpx.post(g.url + "/v1/chat/completions", headers={"content-type": "application/json"},
                   content=b'{"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 1e999}')
    assert r.status_code == 400
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("hi SCN=usage_inf"), timeout=30)
    assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_malformed"


def test_two_audit_writers_on_one_file_lose_nothing(tmp_path):
    path = tmp_path / "audit.db"
    logs = [AuditLog(path), AuditLog(path)]

    def pump(log: AuditLog, tag: str) -> None:
        for i in range(400):
            log.record(request_id=f"{tag}{i}", key_id=None, rail="input", action="allow", categories=[],
                       verdicts=[], latency_ms=1.0, content="x")

    threads = [threading.Thread(target=pump, args=(lg, t)) for lg, t in zip(logs, "ab", strict=True)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    [lg.close() for lg in logs]
    assert [lg.errors for lg in logs] == [0, 0]
    con = sqlite3.connect(path)
    assert con.execute("SELECT count(*) FROM audit").fetchone()[0] == 800
    con.close()
    assert verify(path).ok
