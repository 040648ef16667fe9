"""Gateway x constitution: the `revise` action with a real `Reviser` against scripted loopback models.

The upstream and the reviser model are `tests/fakellm.py` servers. Requests are told apart by shape: a revision
request ends with the constitution's "Reply with the revised response only" suffix, a critique request carries
the flagged reply as an assistant turn, anything else is a client's chat request.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from bastion.constitution import Reviser, load_constitution
from bastion.llm import LLMClient
from tests.fakellm import FakeReply, last_user
from tests.test_gateway_support import HARM, chat, gateway_fixture, sse_events, stream_text  # noqa: F401

# min_chars 16: the short first sentence is checked and released before the late violation
REVISE_POLICY = "categories: {S1: {action: revise}}\nstreaming: {min_chars: 16}\n"
SAFE_REVISION = "I can explain the general idea, but not the specific steps. [SAFE-SUMMARY]"
# A reply whose first sentence is harmless and released before the harmful one arrives.
HARM_CHUNKS = ["Step one: [REDACTED-", "HARMFUL", "-STEP]. ", "Done."]
LATE_HARM_CHUNKS = ["Here is an overview. ", "Step one: [REDACTED-", "HARMFUL-STEP] then more. ", "The end."]


def is_revision(req: dict[str, Any]) -> bool:
    return str(req["messages"][-1].get("content", "")).rstrip().endswith("without any preamble or commentary.")


def is_critique(req: dict[str, Any]) -> bool:
    return not is_revision(req) and any(m.get("role") == "assistant" for m in req["messages"])


def model_script(revision: str | FakeReply = SAFE_REVISION):
    """Upstream + reviser in one scripted model: the user's marker picks the upstream reply."""

    def script(req: dict[str, Any]) -> str | FakeReply:
        if is_revision(req):
            return revision
        if is_critique(req):
            return "The response gives a harmful step; it should decline that part."
        last = last_user(req)
        if "late harm" in last:
            return FakeReply("".join(LATE_HARM_CHUNKS), chunks=LATE_HARM_CHUNKS, chunk_delay=0.05)
        if "harmful" in last:
            return FakeReply("".join(HARM_CHUNKS), chunks=HARM_CHUNKS)
        return "Mix flour and water. Bake it."

    return script


@pytest.fixture(name="revising")
def revising_fixture(gateway, fake_llm):
    """``revising(revision, policy=..., **cfg)`` -> (gateway, model): one fake model is upstream and reviser."""

    def make(revision: str | FakeReply = SAFE_REVISION, policy: str = REVISE_POLICY, **cfg: Any):
        llm = fake_llm(model_script(revision))
        reviser = Reviser(LLMClient(llm.base_url, "fake-model", api_key="x", max_retries=0), load_constitution(),
                          retries=0)
        return gateway(upstream=llm.base_url, policy=policy, reviser=reviser, **cfg), llm

    return make


def audit_rows(path) -> list[dict[str, Any]]:
    con = sqlite3.connect(path)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM audit ORDER BY seq")]
    con.close()
    return rows


def wait_audit(g, rail: str, n: int = 1) -> list[dict[str, Any]]:
    import time

    for _ in range(200):
        rows = [r for r in audit_rows(g.audit_path) if r["rail"] == rail] if g.audit_path.exists() else []
        if len(rows) >= n:
            return rows
        time.sleep(0.02)
    raise AssertionError(f"no {rail} audit row")


# ---- non-streaming -------------------------------------------------------------------------------------
def test_flagged_reply_is_replaced_by_the_checked_revision(revising):
    g, llm = revising()
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("harmful please"), timeout=30).json()
    assert r["choices"][0]["message"]["content"] == SAFE_REVISION
    assert r["choices"][0]["finish_reason"] == "stop"
    b = r["bastion"]
    assert b["action"] == "revise" and "S1" in b["categories"] and "revised" in b["reasons"]
    scopes = [v["scope"] for v in b["verdicts"]]
    assert scopes == ["choice0", "choice0.revision"]
    assert b["verdicts"][0]["unsafe"] and not b["verdicts"][1]["unsafe"]
    # upstream call, then critique and revision on the same model (the CLI's default base URL)
    assert [("rev" if is_revision(q) else "crit" if is_critique(q) else "chat") for q in llm.requests] == [
        "chat", "crit", "rev"]
    assert HARM in json.dumps(llm.requests[1]["messages"])  # the reviser saw the flagged reply
    row = wait_audit(g, "output")[-1]
    assert row["action"] == "revise" and "S1" in json.loads(row["categories"])
    assert [v["scope"] for v in json.loads(row["verdicts"])] == ["choice0", "choice0.revision"]
    assert 'bastion_revisions_total{result="revised"} 1' in httpx.get(g.url + "/metrics").text


def test_revision_that_is_still_unsafe_is_refused(revising):
    g, _ = revising(revision=f"Rewritten: {HARM}")
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("harmful please"), timeout=30).json()
    assert r["choices"][0]["finish_reason"] == "content_filter"
    assert r["choices"][0]["message"]["content"] == "I can't help with that request."
    assert HARM not in json.dumps(r["choices"])
    assert r["bastion"]["action"] == "block" and "revision still flagged" in r["bastion"]["reasons"]
    assert wait_audit(g, "output")[-1]["action"] == "block"


@pytest.mark.parametrize("revision, reason", [
    (FakeReply("down", status=500), "revision failed"),
    (FakeReply(SAFE_REVISION, delay=3.0), "revision failed (TimeoutError)"),
    ("   ", "revision failed"),
])
def test_failing_or_slow_reviser_refuses_and_never_leaks(revising, revision, reason):
    g, _ = revising(revision=revision, revise_timeout_s=1.0)
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("harmful please"), timeout=30).json()
    assert r["choices"][0]["finish_reason"] == "content_filter"
    assert HARM not in json.dumps(r["choices"])
    assert any(x.startswith(reason) for x in r["bastion"]["reasons"]), r["bastion"]["reasons"]
    ok = httpx.post(g.url + "/v1/chat/completions", json=chat("bread?"), timeout=30).json()
    assert ok["choices"][0]["message"]["content"].startswith("Mix flour")  # the worker is fine


def test_revise_on_the_input_rail_refuses_without_calling_upstream(revising):
    g, llm = revising()
    r = httpx.post(g.url + "/v1/chat/completions", json=chat(f"tell me {HARM}"), timeout=30).json()
    assert r["choices"][0]["finish_reason"] == "content_filter" and r["bastion"]["rail"] == "input"
    assert llm.calls == 0


# ---- streaming -----------------------------------------------------------------------------------------
def test_stream_revision_replaces_the_reply_when_nothing_was_released(revising):
    g, llm = revising()
    body = httpx.post(g.url + "/v1/chat/completions", json=chat("harmful please", stream=True), timeout=30).text
    ev = sse_events(body)
    assert HARM not in body and "[REDACTED-" not in body
    assert stream_text(ev) == SAFE_REVISION
    fin = [e for e in ev if isinstance(e, dict) and e.get("bastion")][0]
    assert fin["choices"][0]["finish_reason"] == "stop"
    assert fin["bastion"]["action"] == "revise" and "revised" in fin["bastion"]["reasons"]
    assert ev[-1] == "[DONE]"
    # the reviser got the whole upstream reply, including the part after the violation
    assert "Done." in json.dumps(llm.requests[1]["messages"])
    row = wait_audit(g, "output")[-1]
    assert row["action"] == "revise"


def test_stream_revision_continues_text_already_released(revising):
    rest = " Step one is left out here. The end."
    g, _ = revising(revision="Here is an overview." + rest)
    body = httpx.post(g.url + "/v1/chat/completions", json=chat("late harm", stream=True), timeout=30).text
    ev = sse_events(body)
    assert "[REDACTED-" not in body
    assert stream_text(ev) == "Here is an overview. " + rest.lstrip()
    assert [e for e in ev if isinstance(e, dict) and e.get("bastion")][0]["bastion"]["action"] == "revise"


def test_stream_revision_that_does_not_continue_released_text_ends_with_content_filter(revising):
    g, _ = revising(revision="A different overview. Nothing specific.")
    body = httpx.post(g.url + "/v1/chat/completions", json=chat("late harm", stream=True), timeout=30).text
    ev = sse_events(body)
    assert "[REDACTED-" not in body and "A different overview" not in body
    assert stream_text(ev) == "Here is an overview. I can't help with that request."
    last = [e for e in ev if isinstance(e, dict)][-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert "the revision does not continue the text already sent" in last["bastion"]["reasons"]
    assert wait_audit(g, "output")[-1]["action"] == "block"


def test_stream_revision_still_unsafe_ends_with_content_filter(revising):
    g, _ = revising(revision=f"Rewritten: {HARM}")
    body = httpx.post(g.url + "/v1/chat/completions", json=chat("harmful please", stream=True), timeout=30).text
    assert HARM not in body
    last = [e for e in sse_events(body) if isinstance(e, dict)][-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert "revision still flagged" in last["bastion"]["reasons"]


# ---- CLI wiring ----------------------------------------------------------------------------------------
def _cli() -> typer.Typer:
    from bastion.cli.gateway_cmds import register

    app = typer.Typer()
    register(app)
    return app


def test_cli_builds_a_reviser_on_the_upstream_with_the_given_constitution(tmp_path, monkeypatch):
    from bastion.cli.gateway_cmds import _build_reviser

    cfile = tmp_path / "c.yaml"
    cfile.write_text(load_constitution().to_yaml().replace("name: bastion", "name: my-constitution", 1))
    r = _build_reviser("judge-m", None, str(cfile), "http://127.0.0.1:9/v1", "up-key", "REV_KEY", 30.0)
    assert isinstance(r, Reviser) and r.constitution.name == "my-constitution"
    assert r.client.model == "judge-m" and r.client.base_url.rstrip("/") == "http://127.0.0.1:9/v1"
    assert r.client.api_key == "up-key"
    monkeypatch.setenv("REV_KEY", "rev-key")
    other = _build_reviser("m", "http://127.0.0.1:7/v1", None, "http://127.0.0.1:9/v1", "up-key", "REV_KEY", 30.0)
    assert other.client.api_key == "rev-key"  # the upstream key never goes to another endpoint
    assert other.constitution.name == "bastion"
    assert _build_reviser(None, None, None, "http://127.0.0.1:9/v1", None, "REV_KEY", 30.0) is None


@pytest.mark.parametrize("args, msg", [
    (["--constitution", "x.yaml"], "need --revise-model"),
    (["--revise-model", "m", "--constitution", "/nonexistent.yaml"], "cannot load the constitution"),
    (["--revise-model", "m", "--revise-base-url", "ftp://x"], "--revise-base-url must be an http(s) URL"),
])
def test_cli_revise_options_usage_errors(args, msg):
    res = CliRunner().invoke(_cli(), ["serve", "--upstream", "http://127.0.0.1:9/v1", "--no-audit", *args])
    assert res.exit_code == 2 and msg in " ".join(res.output.split())


def test_cli_without_revise_model_rejects_a_revise_policy(tmp_path, monkeypatch):
    pp = tmp_path / "p.yaml"
    pp.write_text(REVISE_POLICY)
    monkeypatch.setattr("bastion.guard.Guard", lambda **kw: object())
    monkeypatch.setattr("bastion.gateway.server.serve_forever", lambda *a, **k: None)
    res = CliRunner().invoke(_cli(), ["serve", "--upstream", "http://127.0.0.1:9/v1", "--no-audit",
                                      "--policy", str(pp)])
    assert res.exit_code == 2 and "--revise-model" in " ".join(res.output.split())
    served = {}
    monkeypatch.setattr("bastion.gateway.server.serve_forever", lambda app, *a, **k: served.setdefault("app", app))
    res = CliRunner().invoke(_cli(), ["serve", "--upstream", "http://127.0.0.1:9/v1", "--no-audit",
                                      "--policy", str(pp), "--revise-model", "m"])
    assert res.exit_code == 0, res.output
    assert isinstance(served["app"].state.gateway.reviser, Reviser)
