"""Gateway x code shield: the `code_shield` policy option (off / warn / append_fix / block) on the output rail,
non-streaming and streaming, against a scripted loopback upstream. The code samples are ordinary insecure
snippets (an unsafe YAML load, TLS verification off), not harmful content."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.fakellm import FakeReply, last_user
from tests.test_gateway_support import HARM, chat, gateway_fixture, sse_events, stream_text  # noqa: F401

INSECURE = "Load it like this:\n\n```python\nimport yaml\ncfg = yaml.load(open('c.yml'))\n```\n\nThat is all.\n"
SECURE = "Load it like this:\n\n```python\nimport yaml\ncfg = yaml.safe_load(open('c.yml'))\n```\n\nThat is all.\n"
TLS = "Call it so:\n\n```python\nimport requests\nr = requests.get(url, verify=False)\n```\n"
# The insecure block split over chunks; the sentence before it is released before the block completes.
INSECURE_CHUNKS = ["Load it like this. ", "Here:\n\n", "```py", "thon\nimport yaml\n", "cfg = yaml.lo",
                   "ad(open('c.yml'))\n", "``", "`\n", "\nThat is all.\n"]
SECURE_CHUNKS = [c.replace("yaml.lo", "yaml.safe_lo") for c in INSECURE_CHUNKS]


def script(req: dict) -> str | FakeReply:
    last = last_user(req)
    if "insecure stream" in last:
        return FakeReply("".join(INSECURE_CHUNKS), chunks=INSECURE_CHUNKS, chunk_delay=0.03)  # paced like a model
    if "secure stream" in last:
        return FakeReply("".join(SECURE_CHUNKS), chunks=SECURE_CHUNKS)
    if "insecure" in last:
        return INSECURE
    if "tls" in last:
        return TLS
    if "secure" in last:
        return SECURE
    if "harmful" in last:
        return f"Sure. {HARM}."
    return "Mix flour and water. Bake it."


def post(g, text: str, **kw) -> dict:
    return httpx.post(g.url + "/v1/chat/completions", json=chat(text, **kw), timeout=30).json()


def stream(g, text: str) -> tuple[str, list]:
    body = httpx.post(g.url + "/v1/chat/completions", json=chat(text, stream=True), timeout=30).text
    return body, sse_events(body)


def finish(events: list) -> dict:
    return [e for e in events if isinstance(e, dict) and e.get("bastion")][-1]


# ---- non-streaming -------------------------------------------------------------------------------------
def test_default_policy_warns_with_categories_and_findings(gateway):
    g = gateway(script)
    r = post(g, "insecure")
    assert r["choices"][0]["message"]["content"] == INSECURE  # warn: passed unchanged
    b = r["bastion"]
    assert b["action"] == "flag" and b["categories"] == ["S14"]
    cs = [v for v in b["verdicts"] if v["scope"] == "choice0.code_shield"][0]
    assert cs["insecure"] and [f["rule_id"] for f in cs["findings"]] == ["PY-DESER-002"]
    assert "fixed_text" not in cs
    assert any("PY-DESER-002" in x for x in b["reasons"])
    tls = post(g, "tls")["bastion"]
    assert tls["categories"] == ["S2"] and tls["action"] == "flag"
    clean = post(g, "secure")["bastion"]
    assert clean["action"] == "allow" and not any(v["scope"].endswith("code_shield") for v in clean["verdicts"])


def test_block_mode_refuses_insecure_code(gateway):
    g = gateway(script, policy="code_shield: block\n")
    r = post(g, "insecure")
    assert r["choices"][0]["finish_reason"] == "content_filter"
    assert r["choices"][0]["message"]["content"] == "I can't share that code: it contains insecure patterns."
    assert "yaml.load" not in json.dumps(r["choices"])
    assert r["bastion"]["action"] == "block" and r["bastion"]["categories"] == ["S14"]
    assert post(g, "secure")["choices"][0]["message"]["content"] == SECURE


def test_append_fix_mode_appends_the_verified_patch(gateway):
    g = gateway(script, policy="code_shield: {mode: append_fix}\n")
    r = post(g, "insecure")
    text = r["choices"][0]["message"]["content"]
    assert text.startswith(INSECURE)
    assert "Safer version (verified patch)" in text and "+cfg = yaml.safe_load(open('c.yml'))" in text
    assert text.rstrip().endswith("~~~")
    assert r["bastion"]["action"] == "flag" and "fix appended" in r["bastion"]["reasons"]
    cs = [v for v in r["bastion"]["verdicts"] if v["scope"] == "choice0.code_shield"][0]
    assert cs["diff"]


def test_off_mode_and_severity_floor(gateway):
    off = gateway(script, policy="code_shield: off\n")
    assert post(off, "insecure")["bastion"]["action"] == "allow"
    high = gateway(script, policy="code_shield: {mode: block, min_severity: critical}\n")
    assert post(high, "insecure")["choices"][0]["message"]["content"] == INSECURE  # high < critical


def test_guard_block_wins_and_per_key_mode(gateway, tmp_path):
    from bastion.gateway.keys import KeyStore, add_key

    kp = tmp_path / "keys.yaml"
    ka, kb = add_key(kp, "app"), add_key(kp, "strict")
    g = gateway(script, keys=KeyStore.load(kp), policy="keys:\n  strict:\n    code_shield: block\n")
    h = {"authorization": f"Bearer {ka}"}
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("insecure"), headers=h).json()
    assert r["bastion"]["action"] == "flag"
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("insecure"),
                   headers={"authorization": f"Bearer {kb}"}).json()
    assert r["bastion"]["action"] == "block"
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("harmful"), headers=h).json()
    assert r["bastion"]["action"] == "block" and r["bastion"]["categories"] == ["S1"]


def test_code_shield_runs_when_the_output_guard_check_is_off(gateway):
    g = gateway(script, policy="checks: {output: false}\ncode_shield: block\n")
    assert post(g, "insecure")["choices"][0]["finish_reason"] == "content_filter"
    assert post(g, "harmful")["choices"][0]["finish_reason"] == "stop"


def test_code_shield_decision_is_audited(gateway):
    g = gateway(script, policy="code_shield: block\n")
    post(g, "insecure")
    import sqlite3

    for _ in range(200):
        con = sqlite3.connect(g.audit_path)
        rows = con.execute("SELECT action, categories, verdicts FROM audit WHERE rail='output'").fetchall()
        con.close()
        if rows:
            break
        time.sleep(0.02)
    action, cats, verdicts = rows[-1]
    assert action == "block" and json.loads(cats) == ["S14"]
    assert any(v["scope"] == "choice0.code_shield" and v["findings"] for v in json.loads(verdicts))


# ---- streaming -----------------------------------------------------------------------------------------
def test_stream_block_never_releases_an_insecure_code_block(gateway):
    g = gateway(script, policy="code_shield: block\nstreaming: {min_chars: 16}\n")  # short first window
    body, ev = stream(g, "insecure stream")
    text = stream_text(ev)  # (the finding's snippet is in the `bastion` field, not in the content)
    assert "yaml.lo" not in text and "import yaml" not in text and "```" not in text
    assert text.startswith("Load it like this. ")  # prose before the block still flows
    assert text.endswith("I can't share that code: it contains insecure patterns.")
    last = [e for e in ev if isinstance(e, dict)][-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert last["bastion"]["action"] == "block" and last["bastion"]["categories"] == ["S14"]
    cb = [v for v in last["bastion"]["verdicts"] if v["scope"] == "code_block"]
    assert cb and cb[0]["findings"][0]["rule_id"] == "PY-DESER-002"


def test_stream_block_releases_a_secure_code_block_unchanged(gateway):
    g = gateway(script, policy="code_shield: block\n")
    body, ev = stream(g, "secure stream")
    assert stream_text(ev) == "".join(SECURE_CHUNKS)
    fin = finish(ev)
    assert fin["choices"][0]["finish_reason"] == "stop" and fin["bastion"]["action"] == "allow"


def test_stream_open_code_block_is_held_until_it_closes(gateway):
    """A slow block: nothing of it leaves before the closing fence, and the hold timer does not spin."""
    chunks = ["Intro text here.\n", "```python\n", "x = 1\n", "y = 2\n", "```\n", "Bye.\n"]
    g = gateway(FakeReply("".join(chunks), chunks=chunks, chunk_delay=0.15),
                policy="code_shield: block\nstreaming: {max_hold_ms: 50, holdback: word, min_chars: 4}\n")
    from bastion.codeshield import scan_response

    scan_response(SECURE)  # load the parsers first, so the CPU figure below is the stream's alone
    seen: list[tuple[float, str]] = []
    t0, cpu0 = time.perf_counter(), time.process_time()
    with httpx.stream("POST", g.url + "/v1/chat/completions", json=chat("go", stream=True), timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                d = json.loads(line[6:])
                piece = (d.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                if piece:
                    seen.append((time.perf_counter() - t0, piece))
    text = "".join(p for _, p in seen)
    assert text == "".join(chunks)
    at = {p: t for t, p in seen}
    # the code chunks arrive ~0.15 s apart upstream but leave together, after the closing fence
    assert abs(at["```python\n"] - at["```\n"]) < 0.1
    assert at["Intro text here.\n"] < at["```python\n"] - 0.3
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    assert cpu < 0.6 * wall  # waiting for the closing fence is idle, not a busy loop on the hold timer


def test_stream_append_fix_adds_the_patch_before_the_finish(gateway):
    g = gateway(script, policy="code_shield: append_fix\n")
    body, ev = stream(g, "insecure stream")
    text = stream_text(ev)
    assert text.startswith("".join(INSECURE_CHUNKS))  # warn-like: the reply itself flows
    assert "Safer version (verified patch)" in text and "+cfg = yaml.safe_load(open('c.yml'))" in text
    fin = finish(ev)
    assert fin["choices"][0]["finish_reason"] == "stop"
    assert fin["bastion"]["action"] == "flag" and fin["bastion"]["categories"] == ["S14"]
    assert "fix appended" in fin["bastion"]["reasons"]


def test_stream_warn_flags_on_the_finish_chunk(gateway):
    g = gateway(script)  # default policy: warn
    body, ev = stream(g, "insecure stream")
    assert stream_text(ev) == "".join(INSECURE_CHUNKS)
    fin = finish(ev)
    assert fin["bastion"]["action"] == "flag" and fin["bastion"]["categories"] == ["S14"]
    assert any(v["scope"] == "code_shield" and v["findings"] for v in fin["bastion"]["verdicts"])


def test_stream_block_long_code_block_is_scanned_in_parts(gateway):
    """A block longer than max_block_chars is not held whole: it is scanned as far as it has arrived."""
    lines = [f"v{i} = {i}\n" for i in range(60)]
    chunks = ["Code:\n", "```python\n", *lines, "import yaml\ncfg = yaml.load(data)\n", "```\n"]
    # paced like a model, so the first part of the block is checked and released before the rest arrives
    g = gateway(FakeReply("".join(chunks), chunks=chunks, chunk_delay=0.01),
                policy="code_shield: {mode: block, max_block_chars: 256}\n")
    body, ev = stream(g, "go")
    assert "yaml.load" not in stream_text(ev)
    last = [e for e in ev if isinstance(e, dict)][-1]
    assert last["choices"][0]["finish_reason"] == "content_filter"
    assert "v0 = 0" in stream_text(ev)  # the start of the block was released before it completed


@pytest.mark.parametrize("mode", ["warn", "block"])
def test_stream_benign_prose_is_unchanged(gateway, mode):
    g = gateway(script, policy=f"code_shield: {mode}\n")
    body, ev = stream(g, "bread")
    assert stream_text(ev) == "Mix flour and water. Bake it."
    assert finish(ev)["bastion"]["action"] == "allow"


# ---- the fence tracker behind the hold -----------------------------------------------------------------
def test_fence_tracker_matches_codeshield_fences():
    from bastion.gateway.streaming import FenceTracker

    f = FenceTracker()
    for piece in ["Intro ```not a fence```\n", "~~", "~js\n", "let a = 1;\n", "```\n", "~~~~\n", "tail"]:
        f.feed(piece)
    assert [(b.start, b.end) for b in f.blocks] == [(24, 50)]  # ``` does not close a ~~~ block
    assert f.block_text(f.blocks[0]) == "~~~js\nlet a = 1;\n```\n~~~~\n"
    assert f.open_start() is None
    f.feed("\n  ```")
    assert f.open_start() == 55  # an unfinished line that may become an opening fence
    f.feed("python\nx = 1\n")
    assert f.open_start() == 55 and f.blocks[-1].end is None


def test_guard_check_endpoint_applies_the_code_shield_to_responses(gateway):
    g = gateway(script, policy="code_shield: block\n")
    r = httpx.post(g.url + "/v1/guard/check", json={"items": [
        {"prompt": "load config", "response": INSECURE}, {"prompt": "load config", "response": SECURE},
        INSECURE]}).json()["results"]
    assert r[0]["decision"]["action"] == "block" and r[0]["decision"]["categories"] == ["S14"]
    assert r[0]["code_shield"]["findings"][0]["rule_id"] == "PY-DESER-002"
    assert r[1]["decision"]["action"] == "allow" and "code_shield" not in r[1]
    assert r[2]["verdict"]["kind"] == "prompt" and "code_shield" not in r[2]  # prompts are not code-scanned
