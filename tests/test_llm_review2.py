"""Second review of the LLM client and the red-team CLI: masking keeps ordinary text as written, base URLs are
checked (no port silently dropped), and usage errors leave no database behind."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.llm import LLMClient, LLMConnectionError, LLMError
from bastion.llm.client import display_url, scrub
from bastion.redteam.runner import CampaignConfig
from bastion.redteam.targets import TargetError, TargetOptions, make_target
from tests.fakellm import closed_port

cli = CliRunner()
PLAN = "Basic plan does not support this model; the Bearer of this account must upgrade."
OTHER_TOKEN = "sk-proxy-UPSTREAM-0123456789"  # a token the client does not know (a proxy's own)


class _Handler(BaseHTTPRequestHandler):
    """The mode is the first path segment: http://127.0.0.1:PORT/<mode>/v1."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *a: Any) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("content-length") or 0))
        mode = self.path.strip("/").split("/")[0]
        if mode == "plan":
            message = PLAN
        elif mode == "ollama":  # Open WebUI serves Ollama under /ollama/v1; Ollama's documented key is "ollama"
            message = "model 'llama3' not found, try pulling it first"
        else:  # a proxy that shows the upstream request's header
            message = f"upstream refused; sent Authorization: Bearer {OTHER_TOKEN}"
        data = json.dumps({"error": {"message": message}}).encode()
        self.send_response(400)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _errors(c: LLMClient) -> list[LLMError]:
    """The error of chat() and of achat()."""
    out = []
    with pytest.raises(LLMError) as ei:
        c.chat("x")
    out.append(ei.value)

    async def go() -> None:
        try:
            await c.achat("x")
        finally:
            await c.aclose()

    with pytest.raises(LLMError) as ei:
        asyncio.run(go())
    out.append(ei.value)
    return out


# ---- 1: masking keeps the client's location and ordinary words ------------------------------------------------
def test_a_key_that_is_also_in_the_url_does_not_garble_the_location(server):
    for e in _errors(LLMClient(f"{server}/ollama/v1", "llama3", api_key="ollama", max_retries=0)):
        assert str(e) == (f"HTTP 400 from {server}/ollama/v1 (model llama3): model 'llama3' not found, "
                          "try pulling it first")
    url = f"http://127.0.0.1:{closed_port()}/ollama/v1"
    for e in _errors(LLMClient(url, "llama3", api_key="ollama", max_retries=0, timeout=5)):
        assert isinstance(e, LLMConnectionError)
        assert str(e).startswith(f"cannot connect to {url} (model llama3): ")


def test_words_after_basic_and_bearer_are_not_taken_for_credentials(server):
    for e in _errors(LLMClient(f"{server}/plan/v1", "m", api_key="sk-SECRET-abc123XYZ", max_retries=0)):
        assert str(e) == f"HTTP 400 from {server}/plan/v1 (model m): {PLAN}"


def test_unknown_tokens_after_authorization_or_bearer_are_still_masked(server):
    for e in _errors(LLMClient(f"{server}/proxy/v1", "m", api_key="sk-SECRET-abc123XYZ", max_retries=0)):
        assert OTHER_TOKEN not in str(e) and str(e).endswith("sent Authorization: Bearer ***")
    assert scrub("header was Basic dXNlcjpwYXNzd29yZDEyMw== (rejected)") == "header was Basic *** (rejected)"
    assert scrub('{"authorization": "Bearer short1"}') == '{"authorization": "Bearer ***"}'
    assert scrub("got Bearer abc12, expected another", ["abc12"]) == "got Bearer ***, expected another"


# ---- 5: a base URL without a host or with a bad port is a usage error; its port is never dropped ---------------
def test_bad_port_is_refused_with_a_masked_one_line_error():
    assert display_url("http://u:pw@127.0.0.1:99999/v1") == "http://127.0.0.1:99999/v1"
    assert display_url("http://[::1]:70000/v1?api_key=QSECRET12345") == "http://[::1]:70000/v1"
    for url in ("http://u:pw99SECRET@127.0.0.1:99999/v1", "http://127.0.0.1:0/v1", "http://127.0.0.1:8o8o/v1"):
        with pytest.raises(ValueError, match=r"has port '[^']+': a port is a number from 1 to 65535") as ei:
            LLMClient(url, "m")
        assert "pw99SECRET" not in str(ei.value)
    with pytest.raises(ValueError, match="has no host"):
        LLMClient("http:///v1", "m")
    with pytest.raises(TargetError, match="port '99999'"):
        make_target("openai:http://127.0.0.1:99999/v1", TargetOptions(model="m"))
    with pytest.raises(ValueError, match="port '65536'"):
        CampaignConfig(target="guard", judge_model="j", judge_base_url="http://127.0.0.1:65536/v1")
    assert LLMClient("http://127.0.0.1:65535/v1", "m").display_url == "http://127.0.0.1:65535/v1"


def test_cli_bad_port_is_a_usage_error_before_any_run_or_database(redteam_sandbox, tmp_path):
    db = tmp_path / "p.db"
    res = cli.invoke(app, ["redteam", "--target", "openai:http://u:pw99SECRET@127.0.0.1:99999/v1", "--model", "m",
                           "--db", str(db), "--limit", "1", "--benign-limit", "0"])
    assert res.exit_code == 2, res.output
    assert "--target: base URL 'http://u:***@127.0.0.1:99999/v1' has port '99999'" in res.stderr
    assert "pw99SECRET" not in res.output and len(res.stderr.strip().splitlines()) == 1
    assert not db.exists()
    res = cli.invoke(app, ["redteam", "--attacker-base-url", "http://127.0.0.1:123456/v1", "--db", str(db)])
    assert res.exit_code == 2 and "--attacker-base-url: base URL" in res.stderr and not db.exists()


# ---- 6: an unset --*-key-env variable stops before the database is created ---------------------------------
def test_unset_key_env_creates_no_database(redteam_sandbox, tmp_path, monkeypatch):
    monkeypatch.delenv("BASTION_REVIEW2_UNSET", raising=False)
    db = tmp_path / "k.db"
    res = cli.invoke(app, ["redteam", "--target", "openai:http://127.0.0.1:9/v1", "--model", "m",
                           "--api-key-env", "BASTION_REVIEW2_UNSET", "--db", str(db)])
    assert res.exit_code == 2
    assert "--api-key-env BASTION_REVIEW2_UNSET: that environment variable is not set" in res.stderr
    assert not db.exists()
