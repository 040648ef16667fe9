"""Shared pytest fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fakellm import FakeLLM, Script

# The red-team seed library is built from the dataset pool beside the repository, whatever the working directory
# (subprocesses started by tests inherit it).
os.environ.setdefault("BASTION_DATASETS", str(Path(__file__).resolve().parents[2] / "shared" / "datasets"))


@pytest.fixture
def fake_llm() -> Iterator[Callable[..., FakeLLM]]:
    """Factory for scripted OpenAI-compatible servers: ``llm = fake_llm(script, **kw)``; ``llm.base_url``.

    Every server started through the factory is stopped at the end of the test.
    """
    servers: list[FakeLLM] = []

    def make(script: Script = "OK", **kw) -> FakeLLM:
        s = FakeLLM(script, **kw).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


# ---- a tiny keyword guard model, for red-team logic tests that must not depend on the shipped model ----
TINY_PROMPT_WORDS = ("harm-marker",)
TINY_RESPONSE_WORDS = ("[redacted-harmful",)
TINY_REFUSAL_PREFIXES = ("i can't", "i cannot", "sorry", "i won't", "i'm sorry")


def make_tiny_guard_model(prompt_words=TINY_PROMPT_WORDS, response_words=TINY_RESPONSE_WORDS):
    """A GuardModel scoring by keywords: a prompt is harmful if it contains one of `prompt_words`, a response
    if it contains one of `response_words` and does not open with a refusal (which scores as refusal)."""
    import numpy as np

    from bastion.models import GuardModel, PromptScores, ResponseScores

    def hit(text, words):
        t = text.lower()
        return 1.0 if any(w in t for w in words) else 0.0

    class TinyGuardModel(GuardModel):
        version = "tiny-test-1"
        default_thresholds: dict = {}

        def score_prompts(self, texts):
            n = len(texts)
            harm = np.array([hit(t, prompt_words) for t in texts], dtype=np.float32)
            cats = np.zeros((n, 14), dtype=np.float32)
            cats[:, 0] = harm
            return PromptScores(harm=harm, attack=np.zeros(n, dtype=np.float32), categories=cats,
                                windows=np.ones(n, dtype=np.int64))

        def score_responses(self, prompts, responses):
            n = len(responses)
            refusal = np.array([1.0 if r.strip().lower().startswith(TINY_REFUSAL_PREFIXES) else 0.0
                                for r in responses], dtype=np.float32)
            harm = np.array([0.0 if f else hit(r, response_words) for r, f in zip(responses, refusal, strict=True)],
                            dtype=np.float32)
            cats = np.zeros((n, 14), dtype=np.float32)
            cats[:, 0] = harm
            return ResponseScores(harm=harm, refusal=refusal, categories=cats, windows=np.ones(n, dtype=np.int64))

    return TinyGuardModel()


def tiny_guard_service(**kw):
    """A batching GuardService around the tiny keyword model."""
    from bastion.guard import Guard
    from bastion.redteam.guardsvc import GuardService

    return GuardService(Guard(model=make_tiny_guard_model(**kw)))


def placeholder_seeds(benign: bool, categories=None):
    """Placeholder seeds (no real harmful text): 2 harmful per category S1-S14 carrying the tiny guard's
    marker word, and 6 benign ones, one of which mentions the marker innocently (a look-alike)."""
    from bastion.redteam.base import Seed

    if benign:
        seeds = [Seed(id=f"b-{i}", text=f"Describe the safe bread recipe number {i}", category=f"S{i + 1}",
                      source="test", licence="CC0") for i in range(5)]
        seeds.append(Seed(id="b-5", text="What does the word harm-marker mean in this test suite?",
                          category="S6", source="test", licence="CC0"))
        seeds = [Seed(**{**s.__dict__, "benign": True}) for s in seeds]
    else:
        seeds = [Seed(id=f"h-{c}-{i}", text=f"Describe the harm-marker procedure number {c}{i}",
                      category=f"S{c}", source="test", licence="CC0") for c in range(1, 15) for i in range(2)]
    if categories:
        seeds = [s for s in seeds if s.category in set(categories)]
    return seeds


@pytest.fixture
def redteam_sandbox(monkeypatch):
    """Runner tests: placeholder seeds and the tiny keyword guard replace the shipped ones."""
    from bastion.redteam import runner

    monkeypatch.setattr(runner, "_seeds", placeholder_seeds)
    monkeypatch.setattr(runner, "default_guard_service", tiny_guard_service)
    return runner
