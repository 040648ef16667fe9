"""Sampling and scale: many-shot and Best-of-N random augmentation (and its three augmentations)."""

from __future__ import annotations

import random

from bastion.redteam.base import AttackPrompt, Message, register_technique

from ._common import BaseTechnique, phrasings

BON = "https://arxiv.org/abs/2412.03556"  # Hughes et al. 2024, Best-of-N Jailbreaking


def random_casing(text: str, rng: random.Random, p: float = 0.6) -> str:
    """Each letter upper- or lower-cased at random with probability `p` (BoN random capitalisation)."""
    return "".join((c.upper() if rng.random() < 0.5 else c.lower()) if c.isalpha() and rng.random() < p else c
                   for c in text)


def char_noise(text: str, rng: random.Random, p: float = 0.06) -> str:
    """Printable ASCII characters shifted by +-1 code point with probability `p` (BoN character noising)."""
    out = []
    for c in text:
        if 32 < ord(c) < 126 and rng.random() < p:
            c = chr(ord(c) + (1 if rng.random() < 0.5 else -1))
        out.append(c)
    return "".join(out)


def word_scramble(text: str, rng: random.Random, p: float = 0.6) -> str:
    """Middle letters of words longer than 3 characters shuffled with probability `p` (BoN scrambling)."""
    words = text.split(" ")
    for i, w in enumerate(words):
        if len(w) > 3 and rng.random() < p:
            mid = list(w[1:-1])
            rng.shuffle(mid)
            words[i] = w[0] + "".join(mid) + w[-1]
    return " ".join(words)


def word_shuffle(text: str, rng: random.Random, p: float = 0.3) -> str:
    """Adjacent words swapped with probability `p` each (local word-order shuffle)."""
    words = text.split(" ")
    i = 0
    while i < len(words) - 1:
        if rng.random() < p:
            words[i], words[i + 1] = words[i + 1], words[i]
            i += 2
        else:
            i += 1
    return " ".join(words)


class _Augment(BaseTechnique):
    kind = "sampling"
    reference = BON


@register_technique
class RandomCasing(_Augment):
    name = "random_casing"
    description = "Randomly upper-/lower-cases letters (a Best-of-N augmentation)."

    def transform(self, text: str, rng: random.Random) -> str:
        return random_casing(text, rng)


@register_technique
class CharNoise(_Augment):
    name = "char_noise"
    description = "Randomly shifts a few ASCII characters by one code point (a Best-of-N augmentation)."

    def transform(self, text: str, rng: random.Random) -> str:
        return char_noise(text, rng)


@register_technique
class WordScramble(_Augment):
    name = "word_scramble"
    description = "Shuffles the middle letters of words (a Best-of-N augmentation)."

    def transform(self, text: str, rng: random.Random) -> str:
        return word_scramble(text, rng)


@register_technique
class WordShuffle(_Augment):
    name = "word_shuffle"
    description = "Swaps neighbouring words at random (local word-order shuffle)."

    def transform(self, text: str, rng: random.Random) -> str:
        return word_shuffle(text, rng)


@register_technique
class BestOfN(_Augment):
    name = "best_of_n"
    description = "Best-of-N: N random augmentations (scramble, casing, char noise); N is the budget (best_of_n:N)."
    param_name = "n"

    @property
    def n(self) -> int:
        return self.int_param(8, 1, 10_000)

    @property
    def variants(self) -> int:
        """Prompts per attempt: the budget N."""
        return self.n

    def transform(self, text: str, rng: random.Random) -> str:
        return char_noise(random_casing(word_scramble(text, rng), rng), rng)

    def build_variants(self, seed_text: str, rng: random.Random, n: int | None = None) -> list[AttackPrompt]:
        """`n` (default: the technique's N) independently augmented prompts; try them until one succeeds."""
        return super().build_variants(seed_text, rng, self.n if n is None else n)


@register_technique
class ManyShot(BaseTechnique):
    name = "many_shot"
    kind = "sampling"
    description = "Prepends N fabricated compliant user/assistant turns (placeholder answers); many_shot:N."
    reference = "https://www.anthropic.com/research/many-shot-jailbreaking"  # Anil et al. 2024
    param_name = "n"

    def __init__(self, param: str | None = None, questions: list[str] | None = None) -> None:
        super().__init__(param)
        self._questions = questions

    @property
    def n(self) -> int:
        return self.int_param(8, 1, 1024)

    def questions(self, exclude: str) -> list[str]:
        """Fabricated questions: other behaviours from the seed library (or the given list)."""
        if self._questions is not None:
            pool = self._questions
        else:
            from bastion.redteam.seeds import harmful_seeds
            pool = [s.text for s in harmful_seeds() if len(s.text) < 300]
        pool = [q for q in pool if q != exclude]
        return pool or list(phrasings()["many_shot"]["questions"])

    def turns(self, seed_text: str, rng: random.Random) -> list[Message]:
        data = phrasings()["many_shot"]
        pool = self.questions(seed_text)
        picks = rng.sample(pool, self.n) if self.n <= len(pool) else [pool[rng.randrange(len(pool))]
                                                                        for _ in range(self.n)]
        msgs: list[Message] = []
        for q in picks:
            msgs.append({"role": "user", "content": q})
            msgs.append({"role": "assistant", "content": data["answer"]})
        msgs.append({"role": "user", "content": seed_text})
        return msgs

    def build(self, seed_text: str, rng: random.Random) -> AttackPrompt:
        return AttackPrompt(messages=self.turns(seed_text, rng), technique=self.spec, meta={"shots": self.n})

    def transform(self, text: str, rng: random.Random) -> str:
        """Single-message form: the fabricated dialogue as one transcript ending with the request."""
        msgs = self.turns(text, rng)
        lines = [phrasings()["many_shot"]["intro"], ""]
        for m in msgs:
            lines.append(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}")
        lines.append("Assistant:")
        return "\n".join(lines)
