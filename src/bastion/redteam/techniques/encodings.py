"""Encoding and obfuscation converters (base64, hex, ciphers, leetspeak, confusables, zero-width, ...)."""

from __future__ import annotations

import base64
import binascii
import codecs
import random
import re

from bastion.redteam.base import register_technique

from ._common import BaseTechnique, phrasings, pick

JAILBROKEN = "https://arxiv.org/abs/2307.02483"  # Wei et al. 2023, Jailbroken: How Does LLM Safety Training Fail?
CIPHER = "https://arxiv.org/abs/2308.06463"  # Yuan et al. 2023, GPT-4 Is Too Smart To Be Safe (CipherChat)
BAD_CHARACTERS = "https://arxiv.org/abs/2106.09898"  # Boucher et al. 2021, Bad Characters


class Encoding(BaseTechnique):
    """A converter with an explicit `encode`; `transform` wraps the encoded payload in an instruction."""

    kind = "encoding"
    phrasing: str = ""

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        raise NotImplementedError

    def transform(self, text: str, rng: random.Random) -> str:
        encoded = self.encode(text, rng)
        return pick(self.phrasing or self.name, rng).format(payload=encoded, **self.fields())

    def fields(self) -> dict[str, object]:
        return {}


@register_technique
class Base64(Encoding):
    name = "base64"
    description = "Base64-encodes the request and asks for a base64 answer."
    reference = JAILBROKEN
    answers_encoded = reversible = True
    _chunk = re.compile(r"[A-Za-z0-9+/]{4,}(?:[\s]*[A-Za-z0-9+/=]{2,})*={0,2}")

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    def decode(self, reply: str) -> str:
        """Decode the whole reply, else its longest base64 run (8+ chars); the reply itself if none decodes."""
        runs = [c for c in self._chunk.findall(reply) if len(c) >= 8]
        for cand in [reply.strip(), *sorted(runs, key=len, reverse=True)]:
            raw = re.sub(r"\s+", "", cand)
            raw += "=" * (-len(raw) % 4)
            try:
                out = base64.b64decode(raw, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                continue
            if out and sum(c.isprintable() or c.isspace() for c in out) >= 0.9 * len(out):
                return out
        return reply


@register_technique
class Hex(Encoding):
    name = "hex"
    description = "Hex-encodes the request (UTF-8 bytes) and asks for a hex answer."
    reference = "https://github.com/NVIDIA/garak/blob/main/garak/probes/encoding.py"
    answers_encoded = reversible = True
    _run = re.compile(r"(?:[0-9a-fA-F]{2}[\s:]?){2,}")

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return text.encode("utf-8").hex()

    def decode(self, reply: str) -> str:
        for cand in [reply.strip(), *sorted(self._run.findall(reply), key=len, reverse=True)]:
            raw = re.sub(r"[\s:]", "", cand)
            try:
                return bytes.fromhex(raw).decode("utf-8")
            except (ValueError, UnicodeDecodeError):
                continue
        return reply


@register_technique
class Rot13(Encoding):
    name = "rot13"
    description = "ROT13-encodes the request and asks for a ROT13 answer."
    reference = JAILBROKEN
    answers_encoded = reversible = True

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return codecs.encode(text, "rot13")

    def decode(self, reply: str) -> str:
        return codecs.decode(reply, "rot13")


def _shift(text: str, k: int) -> str:
    out = []
    for c in text:
        if "a" <= c <= "z":
            out.append(chr((ord(c) - 97 + k) % 26 + 97))
        elif "A" <= c <= "Z":
            out.append(chr((ord(c) - 65 + k) % 26 + 65))
        else:
            out.append(c)
    return "".join(out)


@register_technique
class Caesar(Encoding):
    name = "caesar"
    description = "Caesar-cipher (shift N, default 3) request and answer, as in CipherChat."
    reference = CIPHER
    answers_encoded = reversible = True
    param_name = "shift"

    @property
    def shift(self) -> int:
        return self.int_param(3, 1, 25)

    def fields(self) -> dict[str, object]:
        return {"shift": self.shift}

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return _shift(text, self.shift)

    def decode(self, reply: str) -> str:
        return _shift(reply, -self.shift)


_ATBASH = str.maketrans("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
                        "zyxwvutsrqponmlkjihgfedcbaZYXWVUTSRQPONMLKJIHGFEDCBA")


@register_technique
class Atbash(Encoding):
    name = "atbash"
    description = "Atbash-cipher request and answer (A<->Z), as in CipherChat."
    reference = CIPHER
    answers_encoded = reversible = True

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return text.translate(_ATBASH)

    def decode(self, reply: str) -> str:
        return reply.translate(_ATBASH)


@register_technique
class Reverse(Encoding):
    name = "reverse"
    description = "Writes the request backwards and asks for a backwards answer."
    reference = "https://github.com/Azure/PyRIT/blob/main/pyrit/prompt_converter/string_join_converter.py"
    answers_encoded = reversible = True

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return text[::-1]

    def decode(self, reply: str) -> str:
        return reply[::-1]


_LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "A": "4", "E": "3", "I": "1", "O": "0",
         "S": "5", "T": "7"}
_UNLEET = {"4": "a", "3": "e", "1": "i", "0": "o", "5": "s", "7": "t"}


@register_technique
class Leetspeak(Encoding):
    name = "leetspeak"
    description = "Replaces letters with look-alike digits (a->4, e->3, i->1, o->0, s->5, t->7)."
    reference = JAILBROKEN

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return "".join(_LEET.get(c, c) for c in text)

    def decode(self, reply: str) -> str:
        """Lossy inverse: leet digits in words that also hold letters become letters (pure numbers stay)."""
        def fix(m: re.Match[str]) -> str:
            w = m.group()
            return "".join(_UNLEET.get(c, c) for c in w) if any(c.isalpha() for c in w) else w
        return re.sub(r"[A-Za-z0-9]+", fix, reply)


# Latin -> Cyrillic/Greek look-alikes (Unicode TR39 confusables)
_CONFUSABLES = {"a": "\u0430", "c": "\u0441", "e": "\u0435", "o": "\u043e", "p": "\u0440", "x": "\u0445",
                "y": "\u0443", "i": "\u0456", "j": "\u0458", "s": "\u0455", "A": "\u0391", "B": "\u0392",
                "C": "\u0421", "E": "\u0395", "H": "\u0397", "I": "\u0399", "K": "\u039a", "M": "\u039c",
                "N": "\u039d", "O": "\u039f", "P": "\u03a1", "T": "\u03a4", "X": "\u03a7", "Y": "\u03a5"}
_UNCONFUSE = {v: k for k, v in _CONFUSABLES.items()}


@register_technique
class UnicodeConfusables(Encoding):
    name = "unicode_confusables"
    description = "Swaps Latin letters for Cyrillic/Greek homoglyphs at random (p=0.5)."
    reference = BAD_CHARACTERS
    reversible = True
    rate = 0.5

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        rng = rng or random.Random(0)
        return "".join(_CONFUSABLES[c] if c in _CONFUSABLES and rng.random() < self.rate else c for c in text)

    def transform(self, text: str, rng: random.Random) -> str:
        return self.encode(text, rng)

    def decode(self, reply: str) -> str:
        return "".join(_UNCONFUSE.get(c, c) for c in reply)


ZERO_WIDTH = ("\u200b", "\u200c", "\u200d", "\u2060", "\ufeff")


@register_technique
class ZeroWidth(Encoding):
    name = "zero_width"
    description = "Inserts invisible zero-width characters between letters to break tokens and filters."
    reference = BAD_CHARACTERS
    reversible = True
    rate = 0.7

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        rng = rng or random.Random(0)
        out = []
        for c in text:
            out.append(c)
            if not c.isspace() and rng.random() < self.rate:
                out.append(ZERO_WIDTH[rng.randrange(len(ZERO_WIDTH))])
        return "".join(out)

    def transform(self, text: str, rng: random.Random) -> str:
        return self.encode(text, rng)

    def decode(self, reply: str) -> str:
        return "".join(c for c in reply if c not in ZERO_WIDTH)


@register_technique
class CharSpacing(Encoding):
    name = "char_spacing"
    description = "Spaces out every character ('h o w / t o') to evade keyword and token filters."
    reference = "https://github.com/Azure/PyRIT/blob/main/pyrit/prompt_converter/character_space_converter.py"
    reversible = True

    # Words are joined by " / " and their characters by " "; a literal "/" is written "//", so that a seed
    # such as "a/b" ("a // b") does not read back as two words ("a / b").
    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return " / ".join(" ".join("//" if c == "/" else c for c in word) for word in text.split(" "))

    def decode(self, reply: str) -> str:
        return " ".join(part.replace(" ", "").replace("//", "/") for part in reply.split(" / "))


@register_technique
class PayloadSplitting(Encoding):
    name = "payload_splitting"
    description = "Splits the request into string variables the model must concatenate (N parts, default 3)."
    reference = "https://arxiv.org/abs/2302.05733"  # Kang et al. 2023, Exploiting Programmatic Behavior of LLMs
    param_name = "parts"

    def split(self, text: str, rng: random.Random) -> list[str]:
        k = max(1, min(self.int_param(3, 2, 12), len(text)))
        cuts = sorted(rng.sample(range(1, len(text)), k - 1)) if len(text) > k else list(range(1, k))
        bounds = [0, *cuts, len(text)]
        return [text[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]

    def transform(self, text: str, rng: random.Random) -> str:
        parts = self.split(text, rng)
        names = [chr(ord("a") + i) for i in range(len(parts))]
        assignments = "\n".join(f"{n} = {p!r}" for n, p in zip(names, parts, strict=True))
        return pick(self.name, rng).format(assignments=assignments, expr=" + ".join(names))

    def encode(self, text: str, rng: random.Random | None = None) -> str:
        return self.transform(text, rng or random.Random(0))


__all__ = ["Encoding", "ZERO_WIDTH", "phrasings"]
