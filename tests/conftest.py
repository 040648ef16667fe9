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
