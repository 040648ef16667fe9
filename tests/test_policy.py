"""Policy YAML: validation, decisions, per-key policies, hot reload (file change and SIGHUP), revise hook."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import httpx
import pytest

from bastion.gateway import GatewayConfig, PolicyStore, create_app
from bastion.guard import Guard, Policy, Verdict
from bastion.guard.policy import PolicyError
from bastion.taxonomy import HAZARD_CODES
from tests.test_gateway_support import HARM, MarkerModel, chat, gateway_fixture  # noqa: F401


def verdict(score: float, cats: dict[str, float], kind: str = "prompt", attack: float | None = 0.0) -> Verdict:
    return Verdict(kind=kind, unsafe=score >= 0.5, score=score,
                   category_scores=tuple((c, cats.get(c, 0.0)) for c in HAZARD_CODES), attack_score=attack)


def test_default_policy_loads():
    p = Policy.default()
    assert p.action == "block" and p.checks.output and p.digest
    assert p.decide(verdict(0.01, {})).action == "allow"


@pytest.mark.parametrize("text, msg", [
    ("thresholds: {prompt_harm: 1.5}", "thresholds.prompt_harm"),
    ("categories: {S99: {action: block}}", "unknown category code"),
    ("action: explode", "action"),
    ("checks: {inptu: true}", "checks.inptu"),
    ("keys: {team: {action: nope}}", "keys.team.action"),
    ("- a list", "must be a mapping"),
    ("a: [unclosed", "<policy>:1: YAML syntax error"),
])
def test_invalid_policies_are_rejected_with_one_line(text, msg):
    with pytest.raises(PolicyError) as e:
        Policy.from_yaml(text)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_per_category_thresholds_actions_and_refusals():
    p = Policy.from_yaml("""
thresholds: {prompt_harm: 0.5}
categories:
  S1: {threshold: 0.3, refusal: "No violence."}
  S6: {action: flag}
  S10: {action: allow}
""")
    d = p.decide(verdict(0.4, {"S1": 0.9}))
    assert d.action == "block" and d.categories == ("S1",) and d.refusal == "No violence."
    assert p.decide(verdict(0.4, {"S2": 0.9})).action == "allow"  # S2 uses the global 0.5
    assert p.decide(verdict(0.8, {"S6": 0.9})).action == "flag"
    assert p.decide(verdict(0.8, {"S10": 0.9})).action == "allow"
    both = p.decide(verdict(0.8, {"S6": 0.9, "S2": 0.5}))
    assert both.action == "block" and set(both.categories) == {"S6", "S2"}
    assert p.decide(verdict(0.01, {}, attack=0.9)).categories == ("attack",)
    assert Policy.from_yaml("checks: {attack: false}").decide(verdict(0.01, {}, attack=0.9)).action == "allow"


def test_per_key_policies(gateway, tmp_path):
    from bastion.gateway.keys import KeyStore, add_key

    kp = tmp_path / "keys.yaml"
    ka, kb = add_key(kp, "strict"), add_key(kp, "research")
    g = gateway(f"reply {HARM}", keys=KeyStore.load(kp),
                policy="keys:\n  research:\n    checks: {output: false}\n    refusal: Research says no.\n")
    with httpx.Client(base_url=g.url) as c:
        strict = c.post("/v1/chat/completions", json=chat("q"), headers={"authorization": f"Bearer {ka}"}).json()
        research = c.post("/v1/chat/completions", json=chat("q"), headers={"authorization": f"Bearer {kb}"}).json()
        refused = c.post("/v1/chat/completions", json=chat(HARM), headers={"authorization": f"Bearer {kb}"}).json()
    assert strict["choices"][0]["finish_reason"] == "content_filter"
    assert research["choices"][0]["finish_reason"] == "stop"
    assert refused["choices"][0]["message"]["content"] == "Research says no."


def test_hot_reload_on_file_change_keeps_old_policy_when_invalid(gateway):
    g = gateway("OK", policy="refusal: First refusal.\n", policy_poll_s=0.05)

    def refusal() -> str:
        return httpx.post(g.url + "/v1/chat/completions", json=chat(HARM)).json()["choices"][0]["message"]["content"]

    def wait_for(pred, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.05)
        return False

    assert refusal() == "First refusal."
    g.policy_path.write_text("refusal: Second refusal.\n")
    assert wait_for(lambda: refusal() == "Second refusal.")
    g.policy_path.write_text("refusal: [broken\n")
    assert wait_for(lambda: httpx.get(g.url + "/healthz").json()["policy_error"] is not None)
    assert refusal() == "Second refusal."
    assert 'bastion_policy_reloads_total{result="rejected"}' in httpx.get(g.url + "/metrics").text


def test_sighup_reloads_policy(tmp_path):
    """Drive the app lifespan in the main thread, where the SIGHUP handler can be installed."""
    pp = tmp_path / "p.yaml"
    pp.write_text("refusal: Before.\n")
    app = create_app(GatewayConfig(upstream="http://127.0.0.1:9/v1", policy_path=pp, policy_poll_s=0,
                                   audit_path=None), guard=Guard(model=MarkerModel()))
    store: PolicyStore = app.state.gateway.policies

    async def run() -> None:
        async with app.router.lifespan_context(app):
            pp.write_text("refusal: After.\n")
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if store.policy.refusal == "After.":
                    break

    asyncio.run(run())
    assert store.policy.refusal == "After."


def test_revise_needs_a_reviser(gateway, tmp_path):
    with pytest.raises(PolicyError, match="needs a reviser"):
        gateway("OK", policy="categories: {S1: {action: revise}}\n")

    async def reviser(prompt: str, response: str, decision) -> str:
        return response.replace(HARM, "[safe summary]")

    g = gateway(f"Answer: {HARM}", policy="categories: {S1: {action: revise}}\n", reviser=reviser)
    r = httpx.post(g.url + "/v1/chat/completions", json=chat("q")).json()
    assert r["choices"][0]["message"]["content"] == "Answer: [safe summary]"
    assert "revised" in r["bastion"]["reasons"]


def test_poll_waits_for_a_stable_file_so_a_half_written_policy_is_never_loaded(tmp_path):
    """Writers truncate first: a poll that lands mid-write sees an empty file, which must not replace the policy."""
    f = tmp_path / "policy.yaml"
    f.write_text("refusal: First refusal.\n")
    store = PolicyStore(f)
    f.write_text("")  # the moment between truncate and write
    assert store.poll() is None and store.policy.refusal == "First refusal."
    f.write_text("refusal: Second refusal.\n")
    assert store.poll() is None  # changed since the last poll: wait for it to settle
    assert store.poll() is True and store.policy.refusal == "Second refusal."
    assert store.poll() is None  # unchanged since the reload


def test_a_policy_file_that_is_not_utf8_is_a_policy_error(tmp_path):
    from bastion.guard.policy import Policy, PolicyError

    p = tmp_path / "p.yaml"
    p.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(PolicyError, match="not a UTF-8 text file"):
        Policy.load(p)
