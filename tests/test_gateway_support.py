"""Shared fixtures for the gateway tests (no tests here): a marker-word guard model and a live gateway.

The marker model flags placeholder markers only, so tests never contain real harmful text:
- "[REDACTED-HARMFUL-STEP]" anywhere -> harm 0.99 in S1 (prompt or response);
- "PART-ALPHA" and "PART-OMEGA" in the same text -> harm 0.99 in S1 (a payload split across turns);
- "[ESCALATE]" -> harm 0.45 (below the threshold alone; adds up as session risk);
- "[ADVICE]" -> harm 0.9 in S6; "[PRIVATE]" -> harm 0.9 in S7;
- "ignore all previous instructions" -> attack 0.95.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.gateway import GatewayConfig, create_app
from bastion.gateway.app import Gateway
from bastion.gateway.keys import KeyStore
from bastion.gateway.server import ServerThread
from bastion.guard import Guard
from bastion.models import GuardModel, PromptScores, ResponseScores
from tests.fakellm import FakeLLM

HARM = "[REDACTED-HARMFUL-STEP]"
CAT = {"S1": 0, "S6": 5, "S7": 6}


def _score(text: str) -> tuple[float, dict[str, float]]:
    t = text.upper()
    if HARM in t or ("PART-ALPHA" in t and "PART-OMEGA" in t):
        return 0.99, {"S1": 0.95}
    if "[ADVICE]" in t:
        return 0.9, {"S6": 0.9}
    if "[PRIVATE]" in t:
        return 0.9, {"S7": 0.9}
    if "[ESCALATE]" in t:
        return 0.45, {"S1": 0.4}
    return 0.01, {}


class MarkerModel(GuardModel):
    """Flags the placeholder markers above; counts calls and scored texts."""

    version = "marker-test-1"
    default_thresholds: dict[str, float] = {}

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls = 0
        self.texts = 0

    def _rows(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        harm = np.zeros(len(texts), dtype=np.float32)
        cats = np.zeros((len(texts), 14), dtype=np.float32)
        for i, t in enumerate(texts):
            h, c = _score(t)
            harm[i] = h
            for code, v in c.items():
                cats[i, CAT[code]] = v
        return harm, cats

    def score_prompts(self, texts: Sequence[str]) -> PromptScores:
        self.calls += 1
        self.texts += len(texts)
        if self.delay_s:
            time.sleep(self.delay_s)
        harm, cats = self._rows(texts)
        attack = np.array([0.95 if "ignore all previous instructions" in t.lower() else 0.02 for t in texts],
                          dtype=np.float32)
        return PromptScores(harm=harm, attack=attack, categories=cats, windows=np.ones(len(texts)))

    def score_responses(self, prompts: Sequence[str], responses: Sequence[str]) -> ResponseScores:
        self.calls += 1
        self.texts += len(responses)
        if self.delay_s:
            time.sleep(self.delay_s)
        harm, cats = self._rows(responses)
        refusal = np.array([0.9 if "can't help" in r.lower() else 0.05 for r in responses], dtype=np.float32)
        return ResponseScores(harm=harm, refusal=refusal, categories=cats, windows=np.ones(len(responses)))


@dataclass
class GW:
    url: str
    llm: FakeLLM | None
    gw: Gateway
    server: ServerThread
    policy_path: Path | None
    audit_path: Path | None

    @property
    def v1(self) -> str:
        return self.url + "/v1"


@pytest.fixture(name="gateway")
def gateway_fixture(fake_llm: Callable[..., FakeLLM], tmp_path: Path) -> Iterator[Callable[..., GW]]:
    """``gateway(script, policy="yaml", keys=KeyStore(...), upstream=url, **config)`` -> a live gateway."""
    started: list[ServerThread] = []

    def make(script: Any = "OK", *, policy: str | None = None, keys: KeyStore | None = None,
             upstream: str | None = None, guard: Any = None, reviser: Any = None, **cfg: Any) -> GW:
        llm = None
        if upstream is None:
            llm = fake_llm(script)
            upstream = llm.base_url
        policy_path = None
        if policy is not None:
            policy_path = tmp_path / f"policy{len(started)}.yaml"
            policy_path.write_text(policy)
        cfg.setdefault("audit_path", tmp_path / f"audit{len(started)}.db")
        config = GatewayConfig(upstream=upstream, policy_path=policy_path, **cfg)
        app = create_app(config, guard=guard or Guard(model=MarkerModel()), keys=keys, reviser=reviser)
        srv = ServerThread(app).start()
        started.append(srv)
        return GW(srv.base_url, llm, app.state.gateway, srv, policy_path, config.audit_path)

    yield make
    for s in started:
        s.stop()


def chat(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": text}], **kw}


def sse_events(body: str) -> list[Any]:
    """Parse an SSE body into JSON objects, with "[DONE]" kept as a string."""
    import json

    out: list[Any] = []
    for line in body.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def stream_text(events: list[Any]) -> str:
    return "".join((c.get("choices") or [{}])[0].get("delta", {}).get("content") or ""
                   for c in events if isinstance(c, dict) and c.get("choices"))
