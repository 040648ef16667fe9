"""Instruction manipulations: refusal suppression, prefix injection, style injection, distractors, override."""

from __future__ import annotations

import random

from bastion.redteam.base import register_technique

from ._common import BaseTechnique, pick

JAILBROKEN = "https://arxiv.org/abs/2307.02483"  # Wei et al. 2023


@register_technique
class Direct(BaseTechnique):
    name = "direct"
    kind = "converter"
    description = "Sends the behaviour unchanged (the no-attack baseline)."
    reference = "https://arxiv.org/abs/2402.04249"  # HarmBench: direct request baseline

    def transform(self, text: str, rng: random.Random) -> str:
        return text


class Wrapper(BaseTechnique):
    """Wraps the request in one of the technique's phrasings (`phrasings.yaml`)."""

    kind = "instruction"

    def transform(self, text: str, rng: random.Random) -> str:
        return pick(self.name, rng).format(payload=text)


@register_technique
class RefusalSuppression(Wrapper):
    name = "refusal_suppression"
    description = "Forbids apologies, disclaimers and refusal words around the request."
    reference = JAILBROKEN


@register_technique
class PrefixInjection(Wrapper):
    name = "prefix_injection"
    description = "Asks the model to start its reply with an affirmative prefix ('Sure, here is')."
    reference = JAILBROKEN


@register_technique
class StyleInjection(Wrapper):
    name = "style_injection"
    description = "Imposes an output style (JSON, short words, casual text) that crowds out refusals."
    reference = JAILBROKEN


@register_technique
class Distractors(Wrapper):
    name = "distractors"
    description = "Hides the request among harmless tasks in one prompt."
    reference = JAILBROKEN


@register_technique
class InstructionOverride(Wrapper):
    name = "instruction_override"
    description = "Prompt-injection style 'ignore previous instructions' override before the request."
    reference = "https://arxiv.org/abs/2211.09527"  # Perez & Ribeiro 2022, Ignore Previous Prompt
