"""Gateway security and robustness: keys, bind rules, rate limit, body limits, upstream failures, disconnects."""

from __future__ import annotations

import json
import time

import httpx
import pytest
import typer
from typer.testing import CliRunner

from bastion.cli import gateway_cmds
from bastion.gateway import check_bind
from bastion.gateway.keys import KeysError, KeyStore, add_key, hash_key
from tests.fakellm import FakeReply, closed_port
from tests.test_gateway_support import HARM, chat, gateway_fixture, sse_events  # noqa: F401


def _cli() -> typer.Typer:
    app = typer.Typer()
    gateway_cmds.register(app)
    return app


def test_keys_are_stored_hashed_and_required(gateway, tmp_path):
    path = tmp_path / "keys.yaml"
    key = add_key(path, "team-a")
    assert key not in path.read_text() and hash_key(key) in path.read_text()
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(KeysError):
        add_key(path, "team-a")
    g = gateway("OK", keys=KeyStore.load(path))
    with httpx.Client(base_url=g.url) as c:
        r = c.post("/v1/chat/completions", json=chat("hi"))
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        assert c.post("/v1/chat/completions", json=chat("hi"),
                      headers={"authorization": "Bearer bst_wrong"}).status_code == 401
        assert c.get("/v1/models").status_code == 401
        ok = c.post("/v1/chat/completions", json=chat("hi"), headers={"authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"] == "OK"
        assert c.get("/healthz").status_code == 200  # health stays open for probes
    g.gw.audit.flush()
    import sqlite3

    rows = sqlite3.connect(g.audit_path).execute("SELECT key_id FROM audit").fetchall()
    assert ("team-a",) in rows


def test_upstream_key_is_separate_from_client_keys(gateway, fake_llm, tmp_path):
    llm = fake_llm("from upstream", api_key="upstream-secret")
    key = add_key(tmp_path / "k.yaml", "client")
    g = gateway(upstream=llm.base_url, keys=KeyStore.load(tmp_path / "k.yaml"), upstream_api_key="upstream-secret")
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("hi"), headers={"authorization": f"Bearer {key}"})
    assert r.json()["choices"][0]["message"]["content"] == "from upstream"
    g2 = gateway(upstream=llm.base_url)  # no upstream key: the client's header is never forwarded
    r2 = httpx.post(g2.url + "/v1/chat/completions", json=chat("hi"),
                    headers={"authorization": "Bearer upstream-secret"})
    assert r2.status_code == 401 and "error" in r2.json()


def test_bind_rules():
    check_bind("127.0.0.1", KeyStore(), insecure=False)
    check_bind("::1", KeyStore(), insecure=False)
    check_bind("localhost", KeyStore(), insecure=False)
    with pytest.raises(ValueError, match="without client API keys"):
        check_bind("0.0.0.0", KeyStore(), insecure=False)
    check_bind("0.0.0.0", KeyStore(), insecure=True)
    from bastion.gateway.keys import ClientKey

    check_bind("0.0.0.0", KeyStore([ClientKey("a", "0" * 64)]), insecure=False)


def test_cli_serve_refuses_public_bind_without_keys():
    r = CliRunner().invoke(_cli(), ["serve", "--upstream", "http://127.0.0.1:9/v1", "--host", "0.0.0.0"])
    assert r.exit_code == 2
    assert "without client API keys" in r.output
    r = CliRunner().invoke(_cli(), ["serve", "--upstream", "nope"])
    assert r.exit_code == 2


def test_rate_limit_per_key(gateway):
    g = gateway("OK", rate_limit_per_minute=3)
    with httpx.Client(base_url=g.url) as c:
        codes = [c.post("/v1/chat/completions", json=chat("hi")).status_code for _ in range(5)]
        r = c.post("/v1/chat/completions", json=chat("hi"))
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    assert r.json()["error"]["type"] == "rate_limit_error" and int(r.headers["retry-after"]) >= 1


def test_body_limit_and_malformed_json(gateway):
    g = gateway("OK", max_body_bytes=2000)
    with httpx.Client(base_url=g.url) as c:
        big = c.post("/v1/chat/completions", json=chat("x" * 5000))
        assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"

        def chunked():
            for _ in range(10):
                yield b"x" * 500

        assert c.post("/v1/chat/completions", content=chunked()).status_code == 413
        bad = c.post("/v1/chat/completions", content=b'{"model": "m", "messages": [',
                     headers={"content-type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
        assert c.post("/v1/chat/completions", json={"model": "m"}).status_code == 400
        assert c.post("/v1/chat/completions", json={"messages": [{"content": "no role"}]}).status_code == 400
        assert c.post("/v1/chat/completions", json=[1, 2]).status_code == 400
        assert c.post("/v1/chat/completions", json=chat("hi", stream="yes")).status_code == 400
        assert c.post("/v1/chat/completions", content=b"\xff\xfe").status_code == 400
        assert c.get("/healthz").json()["status"] == "ok"
    assert g.llm.calls == 0


def test_upstream_down_gives_502(gateway):
    g = gateway(upstream=f"http://127.0.0.1:{closed_port()}/v1")
    with httpx.Client(base_url=g.url) as c:
        for body in (chat("hi"), chat("hi", stream=True)):
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 502
            assert r.json()["error"]["code"] == "upstream_unreachable"
        assert c.get("/v1/models").status_code == 502
        assert 'bastion_upstream_errors_total{kind="unreachable"} 3' in c.get("/metrics").text


def test_slow_upstream_gives_504(gateway):
    g = gateway(FakeReply("late", delay=2.0), upstream_timeout_s=0.3)
    with httpx.Client(base_url=g.url, timeout=10) as c:
        for body in (chat("hi"), chat("hi", stream=True)):
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 504 and r.json()["error"]["code"] == "upstream_timeout"


def test_malformed_upstream_gives_502(gateway):
    g = gateway(FakeReply("x", malformed=True))
    with httpx.Client(base_url=g.url) as c:
        r = c.post("/v1/chat/completions", json=chat("hi"))
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_malformed"
        # A stream that breaks after the first chunk: the client gets an error event, then [DONE].
        s = c.post("/v1/chat/completions", json=chat("hi", stream=True))
        ev = sse_events(s.text)
        assert ev[-1] == "[DONE]" and ev[-2]["error"]["code"] == "upstream_malformed"


def test_upstream_error_status_is_passed_through(gateway):
    g = gateway(FakeReply("model overloaded", status=503))
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("hi"))
    assert r.status_code == 503 and r.json()["error"]["message"] == "model overloaded"


def test_client_disconnect_mid_stream_cancels_upstream(gateway):
    words = [f"Sentence {i}. " for i in range(200)]
    g = gateway(FakeReply(chunks=words, chunk_delay=0.02))
    with httpx.stream("POST", g.url + "/v1/chat/completions", json=chat("hi", stream=True)) as r:
        got = 0
        for line in r.iter_lines():
            if line.startswith("data: {"):
                got += 1
            if got >= 3:
                break
    deadline = time.monotonic() + 5
    while g.llm.streams_aborted < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert g.llm.streams_aborted == 1


class _BrokenGuard:
    model = None

    def check_batch(self, items):
        raise RuntimeError("model exploded")


def test_guard_failure_fails_closed_and_worker_survives(gateway):
    g = gateway("OK", guard=_BrokenGuard())
    with httpx.Client(base_url=g.url) as c:
        r = c.post("/v1/chat/completions", json=chat("hi"))
        assert r.status_code == 503 and r.json()["error"]["code"] == "guard_unavailable"
        assert c.get("/healthz").status_code == 200
    assert g.llm.calls == 0


def test_garbage_requests_never_crash_the_worker(gateway):
    g = gateway("OK")
    bodies = [b"", b"null", b"{}", b'{"messages": []}', b'{"messages": [null]}', b'{"messages": [{"role": 1}]}',
              b'{"messages": [{"role": "user", "content": 5}]}', json.dumps(chat("a" * 10)).encode(),
              b'{"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, 3]}]}']
    with httpx.Client(base_url=g.url) as c:
        codes = [c.post("/v1/chat/completions", content=b).status_code for b in bodies]
        assert c.get("/healthz").status_code == 200
    assert all(code in (200, 400) for code in codes), codes
    assert codes[-1] == 200 and codes[-2] == 200


def test_keys_list_without_a_keys_file_is_an_error(tmp_path):
    from typer.testing import CliRunner

    from bastion.cli.main import app

    res = CliRunner().invoke(app, ["keys", "list", "--keys", str(tmp_path / "none.yaml")])
    assert res.exit_code == 2 and "no keys file" in res.stderr
