"""Building the chat messages for critique, revision, feedback and synthesis from data templates."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from .schema import CritiqueExample, FeedbackExample, Principle

Message = dict[str, str]


@lru_cache(maxsize=1)
def templates() -> dict[str, Any]:
    """The prompt templates shipped in data/prompts.yaml (parsed once)."""
    return yaml.safe_load(resources.files(__package__).joinpath("data/prompts.yaml").read_text("utf-8"))


def _few_shot_turns(examples: Sequence[CritiqueExample]) -> list[Message]:
    turns: list[Message] = []
    for ex in examples:
        turns += [m.model_dump() for m in ex.messages]
        turns += [{"role": "user", "content": ex.critique_request},
                  {"role": "assistant", "content": ex.critique},
                  {"role": "user", "content": ex.revision_request},
                  {"role": "assistant", "content": ex.revision}]
    return turns


def dialogue(prompt: str | Sequence[Message], response: str) -> list[Message]:
    """The conversation under review: the user prompt (or a prior conversation) and the assistant reply."""
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else [dict(m) for m in prompt]
    return msgs + [{"role": "assistant", "content": response}]


def critique_messages(prompt: str | Sequence[Message], response: str, principle: Principle,
                      few_shot: Sequence[CritiqueExample] = ()) -> list[Message]:
    """Few-shot turns, the dialogue under review, then the critique request. System messages of the dialogue
    come first, before the few-shot turns (chat templates expect the system message at the start)."""
    t = templates()
    dia = dialogue(prompt, response)
    system = [m for m in dia if m.get("role") == "system"]
    rest = [m for m in dia if m.get("role") != "system"]
    return system + _few_shot_turns(few_shot) + rest + [
        {"role": "user", "content": principle.critique_request + t["critique_suffix"]}]


def revision_messages(prompt: str | Sequence[Message], response: str, principle: Principle, critique: str,
                      few_shot: Sequence[CritiqueExample] = ()) -> list[Message]:
    t = templates()
    return critique_messages(prompt, response, principle, few_shot) + [
        {"role": "assistant", "content": critique},
        {"role": "user", "content": principle.revision_request + t["revision_suffix"]}]


def format_conversation(prompt: str | Sequence[Message]) -> str:
    if isinstance(prompt, str):
        return f"Human: {prompt}"
    return "\n\n".join(f"{'Human' if m['role'] == 'user' else m['role'].capitalize()}: {m['content']}"
                       for m in prompt if m["role"] != "system")


def feedback_messages(prompt: str | Sequence[Message], option_a: str, option_b: str, principle: Principle,
                      cot: bool = False, few_shot: Sequence[FeedbackExample] = ()) -> list[Message]:
    """The multiple-choice question; few-shot examples become earlier answered turns."""
    t = templates()
    tpl = t["feedback_cot" if cot else "feedback"]
    msgs: list[Message] = []
    for ex in few_shot:
        msgs.append({"role": "user", "content": tpl.format(
            conversation=format_conversation(ex.prompt), comparison=ex.comparison,
            option_a=ex.response_a, option_b=ex.response_b)})
        ans = f"({ex.answer})"
        msgs.append({"role": "assistant",
                     "content": f"{ex.reasoning.strip()}\nSo the answer is {ans}" if cot and ex.reasoning else ans})
    msgs.append({"role": "user", "content": tpl.format(
        conversation=format_conversation(prompt), comparison=principle.comparison,
        option_a=option_a, option_b=option_b)})
    return msgs


def synth_messages(principle: Principle, n: int, style: str) -> list[Message]:
    cats = list(principle.hazard_tags)
    content = templates()["synth"].format(
        principle_id=principle.id, critique_request=principle.critique_request,
        description=principle.description or "(not given)",
        categories=", ".join(cats) if cats else "none in particular",
        categories_or_null=" | ".join([f'"{c}"' for c in cats] + ["null"]), n=n, style=style)
    return [{"role": "user", "content": content}]


def paraphrase_messages(text: str) -> list[Message]:
    return [{"role": "user", "content": templates()["paraphrase"].format(text=text)}]
