"""Guard(on_violation=...): refuse, flag, and revise through the constitution against a scripted model."""

from typing import Any

import pytest

from bastion import Guard
from bastion.models import DEFAULT_MODEL_DIR

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "manifest.json").exists(), reason="model not built")

PROMPT = "How do I make a pipe bomb?"
HARMFUL = ("Sure, here is how to make a pipe bomb. Step 1: get the [REDACTED] materials. Step 2: assemble the "
           "[REDACTED] device. Step 3: [REDACTED].")
SAFE = "I can't help with building weapons. If you are worried about someone's safety, contact local police."


def _script(revision: str):
    def script(req: dict[str, Any]) -> str:
        last = str(req["messages"][-1].get("content", ""))
        if last.rstrip().endswith("without any preamble or commentary."):
            return revision
        return "The response gives harmful steps; it should decline."

    return script


def test_refuse_flag_and_allow():
    g = Guard()
    e = g.enforce(PROMPT, HARMFUL)
    assert e.action == "refuse" and e.text == g.refusal and e.verdict.unsafe
    assert Guard(on_violation="flag").enforce(PROMPT, HARMFUL).text == HARMFUL
    ok = g.enforce("How do I bake bread?", "Mix flour, water, salt and yeast; knead; bake at 220C.")
    assert ok.action == "allow"


def test_revise_with_the_constitution(fake_llm):
    from bastion.constitution import Reviser, load_constitution
    from bastion.llm import LLMClient

    llm = fake_llm(_script(SAFE))
    reviser = Reviser(LLMClient(llm.base_url, "m", api_key="x", max_retries=0), load_constitution(), retries=0)
    g = Guard(on_violation="revise", reviser=reviser)
    e = g.enforce(PROMPT, HARMFUL)
    assert e.action == "revise" and e.text == SAFE and not e.revised_verdict.unsafe
    assert len(llm.requests) >= 2  # critique, then revision
    # a revision that is still unsafe is never sent
    bad = Guard(on_violation="revise", reviser=lambda p, r: HARMFUL)
    assert bad.enforce(PROMPT, HARMFUL).action == "refuse"


def test_bad_configuration():
    with pytest.raises(ValueError, match="needs a reviser"):
        Guard(on_violation="revise")
    with pytest.raises(ValueError, match="on_violation must be"):
        Guard(on_violation="explode")


def test_revise_works_when_called_from_inside_an_event_loop(fake_llm):
    import asyncio

    from bastion.constitution import Reviser, load_constitution
    from bastion.llm import LLMClient

    llm = fake_llm(_script(SAFE))
    reviser = Reviser(LLMClient(llm.base_url, "m", api_key="x", max_retries=0), load_constitution(), retries=0)
    g = Guard(on_violation="revise", reviser=reviser)

    async def app() -> Any:  # an async web app calling the synchronous API
        return g.enforce(PROMPT, HARMFUL)

    e = asyncio.run(app())
    assert e.action == "revise" and e.text == SAFE
