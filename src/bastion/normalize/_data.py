"""Loads the normaliser's data tables (homoglyphs, leetspeak, common English words) once."""

from __future__ import annotations

import json
from pathlib import Path

_DIR = Path(__file__).with_name("data")


def _load_json(name: str) -> dict:
    with open(_DIR / name, encoding="utf-8") as f:
        return json.load(f)


def _homoglyph_maps() -> tuple[dict[int, str], dict[int, str]]:
    """(script, latin): code point -> ASCII letter. See data/homoglyphs.json."""
    raw = _load_json("homoglyphs.json")
    out = []
    for section in ("script", "latin"):
        out.append({ord(ch): target for target, chars in raw[section].items() for ch in chars})
    return out[0], out[1]


def _leet_map() -> tuple[dict[str, tuple[str, ...]], frozenset[str]]:
    raw = _load_json("leet.json")
    return {k: tuple(v) for k, v in raw["map"].items()}, frozenset(w.lower() for w in raw.get("keep", ()))


def _words(name: str) -> frozenset[str]:
    with open(_DIR / name, encoding="utf-8") as f:
        return frozenset(w.strip() for w in f if w.strip() and not w.startswith("#"))


SCRIPT_HOMOGLYPHS, LATIN_HOMOGLYPHS = _homoglyph_maps()
LEET, LEET_KEEP = _leet_map()
ENGLISH_WORDS = _words("english_words.txt")
LEXICON = ENGLISH_WORDS | _words("lexicon.txt")
