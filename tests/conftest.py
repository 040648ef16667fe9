"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.fakellm import FakeLLM, Script


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
TINY_HARM_WORDS = ("bomb", "weapon", "kill", "poison", "hack", "malware", "steal", "drug", "explosive",
                   "[redacted-harmful")
TINY_REFUSAL_PREFIXES = ("i can't", "i cannot", "sorry", "i won't", "i'm sorry")


def make_tiny_guard_model(harm_words=TINY_HARM_WORDS):
    """A GuardModel subclass scoring by keywords: harm if a word appears, refusal on refusal openers."""
    import numpy as np

    from bastion.models import GuardModel, PromptScores, ResponseScores

    class TinyGuardModel(GuardModel):
        version = "tiny-test-1"
        default_thresholds: dict = {}

        def _harm(self, text: str) -> float:
            t = text.lower()
            return 1.0 if any(w in t for w in harm_words) else 0.0

        def score_prompts(self, texts):
            n = len(texts)
            harm = np.array([self._harm(t) for t in texts], dtype=np.float32)
            cats = np.zeros((n, 14), dtype=np.float32)
            cats[:, 0] = harm
            return PromptScores(harm=harm, attack=np.zeros(n, dtype=np.float32), categories=cats,
                                windows=np.ones(n, dtype=np.int64))

        def score_responses(self, prompts, responses):
            n = len(responses)
            refusal = np.array([1.0 if r.strip().lower().startswith(TINY_REFUSAL_PREFIXES) else 0.0
                                for r in responses], dtype=np.float32)
            harm = np.array([self._harm(r) if not f else 0.0 for r, f in zip(responses, refusal)],
                            dtype=np.float32)
            cats = np.zeros((n, 14), dtype=np.float32)
            cats[:, 0] = harm
            return ResponseScores(harm=harm, refusal=refusal, categories=cats, windows=np.ones(n, dtype=np.int64))

    return TinyGuardModel()


@pytest.fixture
def tiny_guard_service():
    """Factory for a GuardService around the tiny keyword model: `svc = tiny_guard_service()`."""
    from bastion.guard import Guard
    from bastion.redteam.guardsvc import GuardService

    def make(**kw):
        return GuardService(Guard(model=make_tiny_guard_model(**kw)))

    return make
