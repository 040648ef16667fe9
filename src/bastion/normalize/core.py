"""De-obfuscation views of a text.

`normalize(text)` returns the canonical text (NFKC, invisible and bidi controls stripped, homoglyphs
folded) and extra views the guard also scores: despaced, deleet, and one view per decoded payload
(base64, hex, URL-encoding, rot13, reversed, Unicode tag characters), each the canonical text with the
payload replaced by its decoding so the surrounding request is kept.

Every regex here runs in linear time (no nested unbounded quantifiers whose alternatives overlap), and
plain ASCII text takes cheap early-outs, so the guard can call this on every prompt.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from ._data import ENGLISH_WORDS, LATIN_HOMOGLYPHS, LEET, LEET_KEEP, LEXICON, SCRIPT_HOMOGLYPHS

__all__ = ["View", "Normalized", "normalize"]


@dataclass(frozen=True)
class View:
    """One rendering of the text to classify. `kind` says how it was derived."""

    kind: str
    text: str


@dataclass(frozen=True)
class Normalized:
    """The result of `normalize`: canonical text, views to score, detected obfuscations."""

    original: str
    canonical: str
    views: tuple[View, ...]
    signals: tuple[str, ...]
    obfuscation_score: float


# ---- limits --------------------------------------------------------------------------------------
MAX_PAYLOAD_VIEWS = 8  # views with one decoded payload each; every payload is also in the two combined views
MAX_DECODE_CHARS = 1 << 20  # total payload characters decoded per text
MAX_CANDIDATES = 1024  # payload candidates tried per decoder per text
MAX_DEPTH = 3  # nested decoding (base64 of base64 of rot13, ...)
MAX_ALT_RUNS = 1024  # tag-character or right-to-left runs read per text (more: decode_limit)
LONG_TEXT = 8192  # above this, non-canonical views are excerpts around the changes
EXCERPT_CONTEXT = 600  # characters kept either side of a change in an excerpt

# How strongly each obfuscation suggests deliberate evasion (combined by noisy-or).
_STRENGTH = {
    "zero_width": 0.9,  # inside a word; elsewhere it is weak (see _strip_hidden)
    "bidi_override": 0.8,
    "tag_chars": 0.95,
    "homoglyph": 0.9,  # script-mixing inside a word
    "homoglyph_context": 0.6,  # an all-look-alike word in Latin context
    "styled_letters": 0.5,  # fullwidth / mathematical / enclosed letters (NFKC folds them)
    "rot13": 0.7,
    "reversed": 0.6,
    "base64": 0.5,
    "hex": 0.5,
    "url_alnum": 0.7,  # percent-encoding of letters/digits: never needed, so deliberate
    "url_reserved": 0.2,
    "nested": 0.8,
    "decode_limit": 0.3,  # a limit above stopped decoding: what was left undecoded could hide a payload
    "symbol_glue": 0.5,  # words joined by emoji or symbols instead of spaces ("How😀do😀I..."), 3 joins or more
}

# ---- character classes ---------------------------------------------------------------------------
_ZW = (
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b\u2060-\u2064\u206a-\u206f"
    "\u3164\ufeff\uffa0\ufe00-\ufe0f\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_JOINERS = "\u200c\u200d"
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CTRL = "\x00-\x08\x0e-\x1f\x7f-\x9f"
_SURR = "\ud800-\udfff"
_HIDDEN_RUN = re.compile(f"[{_ZW}{_JOINERS}{_BIDI}{_CTRL}{_SURR}]+")
_ASCII_HIDDEN = re.compile(f"[{_CTRL}]")
_SURROGATE = re.compile(f"[{_SURR}]")
_VS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_RLO_SPAN = re.compile("\u202e([^\u202c\u2069\n]*)")
_STYLED = re.compile("[\uff21-\uff3a\uff41-\uff5a\U0001d400-\U0001d7ff\u24b6-\u24e9\U0001f130-\U0001f149]")
_CJK = re.compile("[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af]")
# Emoji and pictographic symbols (with their presentation selectors, skin tones and joiners) standing where a space
# should be between two letters: a whole word glued this way is one unknown token to the encoder ("How😀do😀I make"
# read as nothing). Replaced by a space.
_SYMBOLS = ("\u2190-\u21ff\u2300-\u23ff\u25a0-\u27bf\u2900-\u297f\u2b00-\u2bff\U0001f000-\U0001faff"
            "\ufe0e\ufe0f\u200d\u20e3")
_SYMBOL_GLUE = re.compile(f"(?<=[^\\W\\d_])[{_SYMBOLS}]+(?=[^\\W\\d_])")
# A run of one punctuation character ("....................", "==========", "!!!!!!!!") kept at three: dot leaders
# and separator lines read as violent crime and as an attack to the encoder ("." * 20: 0.74), and nothing in them
# needs more than three to be read.
_PUNCT_RUN = re.compile(r"([^\w\s])\1{3,}")


def _char_class(codes) -> str:
    """Contents of a regex character class for these code points, as ranges (sre scans ranges fast)."""
    out, run = [], []
    for c in sorted(set(codes)) + [-2]:
        if run and c == run[-1] + 1:
            run.append(c)
            continue
        if run:
            a, b = run[0], run[-1]
            out.append(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}")
        run = [c]
    return "".join(out)


_SCRIPT_SET = _char_class(SCRIPT_HOMOGLYPHS)
_LATIN_SET = _char_class(LATIN_HOMOGLYPHS)
# ZWJ/ZWNJ are kept between characters that need them (emoji sequences, Indic, Arabic, ...).
_JOINABLE = f"[^\\x00-\\u058f{_SCRIPT_SET}{_LATIN_SET}]"
_STRIP = re.compile(f"[{_ZW}{_BIDI}{_CTRL}]+|(?<!{_JOINABLE})[{_JOINERS}]+(?!{_JOINABLE})")
# Scripts written without spaces between words, where a zero-width space is the word separator.
_NO_SPACE_SCRIPT = re.compile("[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u19e0-\u19ff\u3040-\u30ff\u4e00-\u9fff]")
MAX_CLASSIFIED_RUNS = 256  # hidden-character runs inspected for signals (stripping itself is unlimited)
_SCRIPT_CHARS = re.compile(f"[{_SCRIPT_SET}]")
# Letters of the look-alike scripts (Greek, Cyrillic, Armenian, Cherokee, Lisu) that have no Latin look-alike:
# one of them means the text is written in that script, not disguised with it.
_GENUINE = re.compile("[" + _char_class(
    c for a, b in ((0x370, 0x3FF), (0x400, 0x52F), (0x531, 0x58F), (0x13A0, 0x13FF), (0xA4D0, 0xA4FF))
    for c in range(a, b + 1)
    if c not in SCRIPT_HOMOGLYPHS and unicodedata.category(chr(c)).startswith("L")
) + "]")
_LATIN_CHARS = re.compile(f"[{_LATIN_SET}]")
# A look-alike letter touching an ASCII letter: the word mixes scripts ("bоmb" with Cyrillic о).
_MIXED = re.compile(f"[{_SCRIPT_SET}](?:(?<=[A-Za-z].)|(?=[A-Za-z]))")
# A whole word made only of look-alike letters ("сор"): see _fold_script_homoglyphs.
_ALL_LOOKALIKE = re.compile(f"[{_SCRIPT_SET}](?<![^\\W\\d_].)[{_SCRIPT_SET}]*(?![^\\W\\d_])")
MAX_HOMOGLYPH_WORDS = 2048
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_PREV_WORD = re.compile(r"(\w+)\W*$")
_NEXT_WORD = re.compile(r"\W*(\w+)")

# Single characters separated by spaces or one punctuation mark: "h o w  t o", "b.o.m.b", "b-o-m-b".
_SPACED = re.compile(
    r"(?<![^\s\"'(\[{<])[^\W_](?![^\W_])"
    r"(?:(?:[ \t]{1,3}|[ \t]?[.\-_*|~+\u00b7\u2022][ \t]?)[^\W_](?![^\W_])){3,}"
)
# Cheap pre-check (starts at a separator, so ordinary prose is scanned fast): two spaced characters.
_SPACED_HINT = re.compile(r"[\s.\-_*|~+\u00b7\u2022][^\W_][ \t.\-_*|~+\u00b7\u2022]{1,3}[^\W_](?![^\W_])")
_WIDE_GAP = re.compile(r"[ \t]{2,}")
_SPACED_SEP = re.compile(r"[\s.\-_*|~+\u00b7\u2022]+")

# A leet character touching an ASCII letter; starts with the leet class so prose is scanned fast.
_LC = "[" + re.escape("".join(LEET)) + "]"
# Where a leet word can be: leet characters between letters ("b0mb"), or before/after two letters.
# The last two forms ("h473", "5734l") are read only beside a surer leet word (see _deleet).
_LEET_HINT = re.compile(
    f"{_LC}(?:(?<=[A-Za-z].){_LC}{{0,5}}(?=[A-Za-z])|(?<![A-Za-z0-9@$!].){_LC}?(?=[A-Za-z]{{2}})"
    f"|(?<=[A-Za-z]{{2}}.){_LC}{{0,2}}(?![A-Za-z0-9@$!])"
    f"|(?<=[A-Za-z].){_LC}+(?![A-Za-z0-9@$!])|(?<![A-Za-z0-9@$!].){_LC}+(?=[A-Za-z]))"
)
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@$!")
_PREV_TOKEN = re.compile(r"(?<![A-Za-z0-9@$!])([A-Za-z0-9@$!]{1,4})[ \t]+$")
_NEXT_TOKEN = re.compile(r"[ \t]+([A-Za-z0-9@$!]{1,4})(?![A-Za-z0-9@$!])")
MAX_LEET_TOKENS = 16384
MAX_TOKEN = 40
_LEET_CHARS = "".join(LEET)
_SHAPE = str.maketrans(
    {**{c: "L" for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
     **{c: "D" for c in _LEET_CHARS},
     **{c: "N" for c in "0123456789" if c not in LEET}}
)
_LEET_INTERIOR = re.compile(r"LD{1,6}L")  # heavy leet ("1n171473d") keeps few letters
_LEET_EDGE = re.compile(r"^(?:D{1,3}L{2,}D{0,3}|L{2,}D{1,3})$")  # leet at one or both ends, if a common word
_HEXLIKE = re.compile(r"^[0-9A-Fa-f]{6,}$")
_CLASSIC_LEET = set("034@$57")
_LEET_LOWER = str.maketrans({k: v[0] for k, v in LEET.items()})
_LEET_UPPER = str.maketrans({k: v[0].upper() for k, v in LEET.items()})
_MULTI_LEET = frozenset(k for k, v in LEET.items() if len(v) > 1)

_URL = re.compile(r"(?<!\S)[^\s%]*(?:%[0-9A-Fa-f]{2}[^\s%]*)+")
_URL_ESC = re.compile(r"%([0-9A-Fa-f]{2})")
_ESC_BEFORE_LETTER = re.compile(r"%[0-9A-Fa-f]{2}[A-Za-z]")
_FORM_WORDS = re.compile(r"[A-Za-z]\+[A-Za-z]+\+[A-Za-z]")
_HEX_ESC = re.compile(r"(?:\\x[0-9A-Fa-f]{2}|\\u00[0-9A-Fa-f]{2}){3,}")
# Hex of text: every byte of ASCII text begins with a digit, so matches start at [0-7] (fast scan).
_HEX_SPACED = re.compile(
    r"[0-7](?<![0-9A-Za-z].)(?:x[0-9A-Fa-f])?[0-9A-Fa-f]"
    r"(?:(?:, ?|[ :;-])(?:0x)?[0-9A-Fa-f]{2}){2,}(?![0-9A-Za-z])"
)
_HEX_CAT = re.compile(r"[0-7](?<![0-9A-WYZa-wyz].)[0-9A-Fa-f](?:[0-9A-Fa-f]{2}){5,}(?![0-9A-Za-z])")
_HEX_DIGITS = re.compile(r"[^0-9A-Fa-f]|0x|\\x|\\u00")
# Two or more lines that are each a single base64/hex token (each line's own spaces allowed at its ends).
_WRAPPED = re.compile(r"^[ \t]*[A-Za-z0-9+/_=-]{4,}[ \t]*(?:\r?\n[ \t]*[A-Za-z0-9+/_=-]{2,}[ \t]*)+$", re.M)
_HEX_ONLY = re.compile(r"^[0-9A-Fa-f]+$")
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{12,}={0,2}(?![A-Za-z0-9+/=_-])")
B64_MIN = 16  # characters, padding included
_B64_URLSAFE = str.maketrans("-_", "+/")
_NONPRINT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd\ud800-\udfff]")

_SEGMENT = re.compile(r"[^\n.!?;:\"()\[\]{}<>]{5,}")
_WORD = re.compile(r"[a-z]+")
_ROT13 = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)


# ---- public entry point --------------------------------------------------------------------------
def normalize(text: str) -> Normalized:
    """De-obfuscate `text`: canonical form, extra views to classify, and obfuscation signals.

    Never raises on a `str`; non-strings raise TypeError.
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize() expects str, got {type(text).__name__}")
    sig: dict[str, float] = {}
    canonical = _canonical(text, sig)
    long = len(canonical) > LONG_TEXT
    views: list[View] = [View("canonical", canonical)]
    seen = {canonical}

    def add(kind: str, t: str) -> None:
        if t and t not in seen:
            seen.add(t)
            views.append(View(kind, t))

    # Alternative readings of the original that canonicalisation cannot express in place.
    if not text.isascii():
        if "\u202e" in text:
            add("reversed", _alt_view(text, _RLO_SPAN, lambda m: m.group(1)[::-1], long, sig))
        if _TAG_RUN.search(text):
            alt = _alt_view(text, _TAG_RUN, _decode_tags, long, sig)
            if alt != canonical:
                _bump(sig, "tag_chars", _STRENGTH["tag_chars"])
                add("tags", alt)

    # Character spacing, then leetspeak on top of it.
    base = canonical
    reps = _despace(canonical, sig)
    if reps:
        base = _splice(canonical, reps)
        add("despaced", _render(canonical, reps, long))
    reps = _deleet(base, sig)
    if reps:
        add("deleet", _render(base, reps, long))

    # Embedded payloads: one view per payload, nested decodings as further views.
    budget = [MAX_DECODE_CHARS, 0]  # characters left to decode; set to 1 when a limit stopped decoding
    n_payload = 0
    decoded_at: dict[tuple[int, int], str] = {}
    for start, end, kind, decoded in _payloads(canonical, sig, budget, depth=1):
        decoded_at[(start, end)] = decoded  # nested decodings come after their parent: the last is the deepest
        if n_payload < MAX_PAYLOAD_VIEWS:
            before = len(views)
            add(kind, _render(canonical, [(start, end, decoded)], long))
            n_payload += len(views) > before
    if len(decoded_at) > 1 and not long:
        # Every payload decoded at once: a request split over several payloads (two halves, word by word).
        add("payloads", _render(canonical, [(s, e, d) for (s, e), d in sorted(decoded_at.items())], long))
    if decoded_at:
        # The decodings alone: a wrapper ("decode this and answer: ...") can otherwise dilute the request.
        add("payloads-only", "\n".join(d.strip() for _span, d in sorted(decoded_at.items())))
    if budget[1]:
        _bump(sig, "decode_limit", _STRENGTH["decode_limit"])
    for kind, reps in _segment_decodings(canonical, sig):
        add(kind, _render(canonical, reps, long))
        # The decoded sentences alone as well: a long instruction wrapper ("you are an expert in ROT13 ...")
        # can otherwise dilute the request it carries.
        add(f"{kind}-only", " ".join(dec.strip() for _s, _e, dec in reps))

    return Normalized(
        original=text,
        canonical=canonical,
        views=tuple(views),
        signals=tuple(_signal_names(sig)),
        obfuscation_score=_score(sig),
    )


# ---- canonical form ------------------------------------------------------------------------------
def _canonical(text: str, sig: dict[str, float]) -> str:
    if text.isascii():
        t = _strip_hidden(text, sig) if _ASCII_HIDDEN.search(text) else text
        return _PUNCT_RUN.sub(r"\1\1\1", t)
    t = _strip_hidden(text, sig) if _HIDDEN_RUN.search(text) else text
    t = _PUNCT_RUN.sub(r"\1\1\1", t)
    t, glued = _SYMBOL_GLUE.subn(" ", t)
    if glued >= 3:
        _bump(sig, "symbol_glue", _STRENGTH["symbol_glue"])
    if not unicodedata.is_normalized("NFKC", t):
        m = _STYLED.search(t)
        if m:
            weak = _CJK.search(t) is not None and "\uff21" <= m.group() <= "\uff5a"
            _bump(sig, "homoglyph", 0.2 if weak else _STRENGTH["styled_letters"])
        t = unicodedata.normalize("NFKC", t)
    if t.isascii():
        return t
    if _LATIN_CHARS.search(t):
        _bump(sig, "homoglyph", _STRENGTH["styled_letters"])
        t = t.translate(LATIN_HOMOGLYPHS)
    if _SCRIPT_CHARS.search(t) and _ASCII_LETTER.search(t):
        t = _fold_script_homoglyphs(t, sig)
    return t


def _strip_hidden(text: str, sig: dict[str, float]) -> str:
    """Remove invisible, bidi and control characters (C-speed), replace lone surrogates, and record
    what was found: zero-width characters inside a word are a strong signal, elsewhere weak."""
    n = len(text)
    for i, m in enumerate(_HIDDEN_RUN.finditer(text)):
        if i >= MAX_CLASSIFIED_RUNS:
            break
        s, e = m.span()
        prev = text[s - 1] if s else ""
        nxt = text[e] if e < n else ""
        in_word = prev.isalnum() and nxt.isalnum() and (prev.isascii() or nxt.isascii())
        run = m.group()
        for ch in run:
            o = ord(ch)
            if 0xD800 <= o <= 0xDFFF or 0xE0000 <= o <= 0xE007F:
                continue  # surrogates are replaced; tag characters get their own view
            if o < 0xA0:
                _bump(sig, "control_chars", 0.6 if in_word else 0.2)
            elif ch in _BIDI_SET:
                _bump(sig, "bidi", _STRENGTH["bidi_override"] if ch in "\u202d\u202e" else 0.3)
            elif ch in _JOINERS and not in_word:
                pass  # emoji sequences and non-Latin scripts use joiners legitimately
            elif _VS.match(ch) and not in_word:
                pass  # emoji presentation selectors
            elif ch == "\ufeff" and s == 0:
                pass  # byte-order mark
            elif ch == "\u200b" and (_NO_SPACE_SCRIPT.match(prev) or _NO_SPACE_SCRIPT.match(nxt)):
                pass  # the word separator of Thai, Khmer, Lao, Myanmar
            elif ch == "\u00ad":
                _bump(sig, "zero_width", 0.25)  # soft hyphens come with text copied from typeset documents
            else:
                _bump(sig, "zero_width", _STRENGTH["zero_width"] if in_word else 0.25)
    t = _STRIP.sub("", text)
    if not t.isascii() and _SURROGATE.search(t):
        t = _SURROGATE.sub("\ufffd", t)
    return t


_BIDI_SET = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _decode_tags(m: re.Match[str]) -> str:
    chars = [chr(ord(c) - 0xE0000) for c in m.group()]
    return "".join(c for c in chars if " " <= c <= "~")


def _fold_script_homoglyphs(t: str, sig: dict[str, float]) -> str:
    """Fold look-alike letters of other scripts in words that mix them with Latin letters, and in all-look-alike
    words that then read as English. Genuine Cyrillic/Greek text is untouched."""
    reps: dict[int, tuple[int, str]] = {}
    n = len(t)
    pos = 0
    while len(reps) < MAX_HOMOGLYPH_WORDS:
        m = _MIXED.search(t, pos)
        if not m:
            break
        s, e = _word_bounds(t, m.start(), n)
        reps[s] = (e, t[s:e].translate(SCRIPT_HOMOGLYPHS))
        pos = e
    else:
        # Deliberately garbled text: fold everything rather than spend unbounded time.
        _bump(sig, "homoglyph", _STRENGTH["homoglyph"])
        return t.translate(SCRIPT_HOMOGLYPHS)
    if reps:
        _bump(sig, "homoglyph", _STRENGTH["homoglyph"])
    # An all-look-alike word ("ріре") is folded only when it then reads as an English word, and only beside Latin
    # words or in a text with no letter of its own script that Latin lacks: "есть" or "в" in Russian stay as they are.
    genuine = _GENUINE.search(t) is not None
    singles: list[tuple[int, int, str]] = []
    for checked, m in enumerate(_ALL_LOOKALIKE.finditer(t)):
        if checked >= MAX_HOMOGLYPH_WORDS:
            break
        s, e = m.span()
        if s in reps:
            continue
        word = m.group().translate(SCRIPT_HOMOGLYPHS)
        if e - s == 1:
            singles.append((s, e, word))
        elif word.lower() in LEXICON and (_latin_neighbours(t, s, e) or not genuine and e - s >= 4):
            reps[s] = (e, word)
            _bump(sig, "homoglyph", _STRENGTH["homoglyph_context"])
    if reps:
        for s, e, word in singles:  # "а" in "make а ріре bomb"; alone ("α, β and γ", "в") they are symbols or words
            if not genuine or _latin_neighbours(t, s, e):
                reps[s] = (e, word)
    return _splice(t, [(s, e, w) for s, (e, w) in sorted(reps.items())]) if reps else t


def _word_bounds(t: str, i: int, n: int) -> tuple[int, int]:
    s = i
    while s > 0 and i - s < 64 and (t[s - 1].isalnum() or t[s - 1] == "_"):
        s -= 1
    e = i + 1
    while e < n and e - i < 64 and (t[e].isalnum() or t[e] == "_"):
        e += 1
    return s, e


def _latin_neighbours(t: str, s: int, e: int) -> bool:
    p = _PREV_WORD.search(t, max(0, s - 48), s)
    n = _NEXT_WORD.match(t, e, e + 48)
    if not p and not n:
        return False
    for m in (p, n):
        if m and not (m.group(1).isascii() and _ASCII_LETTER.search(m.group(1))):
            return False
    return True


# ---- character spacing ---------------------------------------------------------------------------
def _despace(t: str, sig: dict[str, float]) -> list[tuple[int, int, str]]:
    if not _SPACED_HINT.search(t):
        return []
    reps = []
    for m in _SPACED.finditer(t):
        region = m.group()
        if sum(map(str.isalpha, region)) < 2:
            continue  # "1.1.1.1", "2 4 6 8"
        if _WIDE_GAP.search(region):
            words = [_SPACED_SEP.sub("", g) for g in _WIDE_GAP.split(region)]
        elif any(c in region for c in ".-_*|~+\u00b7\u2022"):
            words = [_SPACED_SEP.sub("", g) for g in region.split()]
        else:
            words = _segment(_SPACED_SEP.sub("", region))
        new = " ".join(w for w in words if w)
        if new != region:
            reps.append((m.start(), m.end(), new))
            _bump(sig, "char_spacing", 0.6 if len(new) > 5 else 0.4)
    return reps


def _segment(s: str) -> list[str]:
    """Split a run of letters into common English words where possible ("howtomakea..." -> words).
    Unknown stretches stay whole. Dynamic programming, bounded word length."""
    n = len(s)
    if n > 200 or n < 4:
        return [s]
    low = s.lower()
    inf = float("inf")
    best = [0.0] + [inf] * n
    back = [0] * (n + 1)
    for i in range(1, n + 1):
        for j in range(max(0, i - 20), i):
            if best[j] == inf:
                continue
            c = 0.9 if low[j:i] in ENGLISH_WORDS else 1.0 + (i - j)
            if best[j] + c < best[i]:
                best[i], back[i] = best[j] + c, j
    parts, i = [], n
    while i > 0:
        parts.append((back[i], i))
        i = back[i]
    parts.reverse()
    out: list[str] = []
    unknown = False
    for j, i in parts:
        w = s[j:i]
        known = low[j:i] in ENGLISH_WORDS
        if not known and unknown and out:
            out[-1] += w  # merge consecutive unknown pieces
        else:
            out.append(w)
        unknown = not known
    return out


# ---- leetspeak -----------------------------------------------------------------------------------
def _deleet(t: str, sig: dict[str, float]) -> list[tuple[int, int, str]]:
    out: dict[int, tuple[int, str]] = {}
    weak_found: list[tuple[int, int, str]] = []
    strength = 0.0
    n = len(t)
    pos = 0
    for _ in range(MAX_LEET_TOKENS):
        m = _LEET_HINT.search(t, pos)
        if not m:
            break
        s, e = _token_bounds(t, m.start(), n)
        pos = max(e, m.end())
        while e - s > 1 and t[e - 1] == "!":
            e -= 1  # "Hello!!": punctuation, not "helloii"
        tok = t[s:e]
        if s in out or len(tok) > MAX_TOKEN or tok.lower() in LEET_KEEP or tok[:2] in ("0x", "0X"):
            continue  # "k8s", "i18n", addresses
        if (s and t[s - 1] in "/\\.=&?#%:") or t[e:e + 1] in ("/", "\\", "=", "@") or (
            e + 1 < n and t[e] == "." and t[e + 1].isalnum()
        ):
            continue  # URLs, paths, e-mail addresses, file names
        found = _leet_word(tok)
        if found is None or not found[1]:
            weak = found[0] if found else _weak_leet_word(tok)
            if weak is not None:
                weak_found.append((s, e, weak))
            continue
        new = found[0]
        out[s] = (e, new)
        w = 0.6 if any(c in _CLASSIC_LEET for c in tok) else 0.35
        strength = 1.0 - (1.0 - strength) * (1.0 - w)
        _leet_neighbours(t, s, e, out)
    else:
        _bump(sig, "decode_limit", _STRENGTH["decode_limit"])  # tokens after the limit were not read
    if not out:
        return []
    # Tokens that read as a word only when mostly digits ("h473", "5734l") are taken only beside surer leet words:
    # alone, "100k" or "10am" must stay as they are.
    for s, e, weak in weak_found:
        if s not in out:
            out[s] = (e, weak)
            _leet_neighbours(t, s, e, out)
    _bump(sig, "leetspeak", min(strength, 0.9))
    return [(s, e, new) for s, (e, new) in sorted(out.items())]


def _leet_neighbours(t: str, s: int, e: int, out: dict[int, tuple[int, str]], hops: int = 3) -> None:
    """Short neighbours of a leet word ("70", "4", "m3") are leet too: "h0w 70 m4k3", "t3ll m3". A neighbour
    with a letter in it ("7h3", "m3") passes the reading on to its own neighbours ("7h3 b357 w4y"); bare
    digits ("1 5 7") do not, so a run of numbers beside one leet word stays numbers."""
    p = _PREV_TOKEN.search(t, max(0, s - 16), s)
    if p and p.start(1) not in out and _leetable(p.group(1)):
        out[p.start(1)] = (p.end(1), _choose(p.group(1), False))
        if hops > 1 and p.group(1).translate(_SHAPE).count("L"):
            _leet_neighbours(t, p.start(1), p.end(1), out, hops - 1)
    q = _NEXT_TOKEN.match(t, e)
    if q and q.start(1) not in out and _leetable(q.group(1)):
        out[q.start(1)] = (q.end(1), _choose(q.group(1), False))
        if hops > 1 and q.group(1).translate(_SHAPE).count("L"):
            _leet_neighbours(t, q.start(1), q.end(1), out, hops - 1)


def _token_bounds(t: str, i: int, n: int) -> tuple[int, int]:
    s = i
    while s > 0 and i - s <= MAX_TOKEN and t[s - 1] in _TOKEN_CHARS:
        s -= 1
    e = i + 1
    while e < n and e - i <= MAX_TOKEN and t[e] in _TOKEN_CHARS:
        e += 1
    return s, e


def _leetable(tok: str) -> bool:
    """Short tokens next to a leet word are read as leet too: "70", "4", "m3", "t0"."""
    shape = tok.translate(_SHAPE)
    return "D" in shape and "N" not in shape


def _leet_word(tok: str) -> tuple[str, bool] | None:
    """(reading, sure) for a leet-looking token. Sure: leet inside a word that then reads as a word ("b0mb"), two
    or more leet characters inside a word ("H4X0R"), or leet at an edge of a common word ("h0w"). Other readings
    ("m3th", "8omb", but also "11am") are taken only beside a sure word; numeronyms ("k8s") never (leet.json)."""
    shape = tok.translate(_SHAPE)
    letters = shape.count("L")
    if "N" in shape or letters < 2 or (len(tok) >= 6 and _HEXLIKE.match(tok)):
        return None
    upper = tok.upper() == tok
    if _LEET_INTERIOR.search(shape):
        cand = _choose(tok, upper, LEXICON)
        # two leet characters ("L33T", "H4X0R") are deliberate; one ("Hi!Hello") only when it then reads as a word
        return cand, cand.lower() in LEXICON or shape.count("D") >= 2
    if _LEET_EDGE.match(shape):
        cand = _choose(tok, upper, LEXICON)
        word = cand.lower()
        if word in ENGLISH_WORDS:
            return cand, True
        if len(word) >= 4 and word in LEXICON:
            # "8omb", "$ulfur", but also "80MB", "11am", "$hell", "@tom": numbers with units, variables and
            # mentions read the same way, so only beside a sure leet word
            return cand, False
    return None


def _weak_leet_word(tok: str) -> str | None:
    """A token of 4+ characters with 2+ leet characters and a letter that reads as a dictionary word."""
    shape = tok.translate(_SHAPE)
    if len(tok) < 4 or "N" in shape or "L" not in shape or shape.count("D") < 2 or _HEXLIKE.match(tok):
        return None
    cand = _choose(tok, tok.upper() == tok, LEXICON)
    return cand if cand.lower() in LEXICON else None


def _choose(tok: str, upper: bool, words: frozenset[str] = ENGLISH_WORDS) -> str:
    """Replace leet characters; where one has several readings ('1' -> i/l), prefer the reading that
    yields a common English word."""
    table = _LEET_UPPER if upper else _LEET_LOWER
    if not any(c in _MULTI_LEET for c in tok):
        return tok.translate(table)
    variants = [""]
    for c in tok:
        opts = LEET.get(c)
        if not opts or len(opts) == 1 or len(variants) * len(opts) > 16:
            variants = [v + c.translate(table) for v in variants]
        else:
            variants = [v + (o.upper() if upper else o) for v in variants for o in opts]
    for v in variants:
        if v.lower() in words:
            return v
    return variants[0]


# ---- payload decoders ----------------------------------------------------------------------------
def _payloads(t: str, sig: dict[str, float], budget: list[int], depth: int):
    """Yield (start, end, kind, decoded_text) for payloads in `t`, nested decodings after their parent."""
    found: list[tuple[int, int, str, str, float]] = []
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    long_tokens = _long_tokens(t, 12)
    for finder in (_find_wrapped, _find_hex_escapes, _find_url, _find_hex_spaced, _find_hex_cat, _find_base64):
        for s, e, kind, dec, strength in finder(t, budget, long_tokens):
            if free(s, e):
                taken.append((s, e))
                found.append((s, e, kind, dec, strength))
    found.sort()
    for s, e, kind, dec, strength in found:
        _bump(sig, _SIGNAL_OF[kind], strength)
        inner_sig: dict[str, float] = {}
        dec_c = _canonical(dec, inner_sig)
        yield s, e, kind, dec_c
        if depth < MAX_DEPTH:
            for ns, ne, nkind, ndec in _payloads(dec_c, inner_sig, budget, depth + 1):
                yield s, e, f"{kind}+{nkind}", dec_c[:ns] + ndec + dec_c[ne:]
            for nkind, reps in _segment_decodings(dec_c, inner_sig):
                yield s, e, f"{kind}+{nkind}", _splice(dec_c, reps)
        if any(k in _NESTABLE for k in inner_sig):
            _bump(sig, "nested", _STRENGTH["nested"])
        for k, v in inner_sig.items():
            _bump(sig, k, v)


_SIGNAL_OF = {"base64": "base64", "rot13+base64": "base64", "hex": "hex", "url": "url_encoding"}
_NESTABLE = frozenset(("base64", "hex", "url_encoding", "rot13", "reversed"))


def _texty(s: str, min_len: int = 3) -> bool:
    n = len(s)
    if n < min_len:
        return False
    if len(_NONPRINT.findall(s)) > 0.02 * n:
        return False
    alnum = sum(map(str.isalnum, s))
    spaces = s.count(" ") + s.count("\n")
    return (alnum + spaces) >= 0.6 * n and sum(map(str.isalpha, s)) >= 2


def _utf8(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _over(budget: list[int], i: int) -> bool:
    """True (and the limit recorded) once `i` candidates have been tried."""
    if i >= MAX_CANDIDATES:
        budget[1] = 1
        return True
    return False


def _spend(budget: list[int], n: int) -> bool:
    if n > budget[0]:
        budget[1] = 1
        return False
    budget[0] -= n
    return True


def _find_wrapped(t: str, budget: list[int], _long: list[tuple[int, str]]):
    """A payload wrapped over several lines, each line one base64 or hex token (MIME-style, or cut short on purpose
    so that no line is long enough to decode): the lines are joined and decoded as one."""
    if "\n" not in t:
        return
    tried = 0
    for m in _WRAPPED.finditer(t):
        block = m.group()
        lines = block.split()
        joined = "".join(lines)
        if len(lines) < 2 or len(joined) < B64_MIN:
            continue
        width = len(lines[0])
        if any(len(x) != width for x in lines[1:-1]) or len(lines[-1]) > width:
            continue  # wrapped payloads have lines of one width (the last may be shorter); lists of words do not
        tried += 1
        if _over(budget, tried - 1) or not _spend(budget, len(joined)):
            return
        s = m.start() + len(block) - len(block.lstrip())
        e = m.start() + len(block.rstrip())
        if _HEX_ONLY.match(joined) and not joined.isdigit():
            dec = _utf8(bytes.fromhex(joined)) if len(joined) % 2 == 0 else None
            if dec is not None and _texty(dec, 4):
                yield s, e, "hex", dec, _STRENGTH["hex"]
            continue
        core = joined.rstrip("=")
        if "=" in core or core.islower() or core.isupper():
            continue  # padding inside: separate payloads, decoded one by one; one case: a list of words
        dec = _b64_text(core)
        if dec is not None:
            yield s, e, "base64", dec, _STRENGTH["base64"]


def _find_hex_escapes(t: str, budget: list[int], _long: list[tuple[int, str]]):
    if "\\" not in t:
        return
    for i, m in enumerate(_HEX_ESC.finditer(t)):
        if _over(budget, i) or not _spend(budget, len(m.group())):
            return
        raw = m.group().replace("\\x", "").replace("\\u00", "")
        dec = _utf8(bytes.fromhex(raw))
        if dec is not None and _texty(dec):
            yield m.start(), m.end(), "hex", dec, _STRENGTH["hex"]


def _find_url(t: str, budget: list[int], _long: list[tuple[int, str]]):
    if "%" not in t:
        return
    for i, m in enumerate(_URL.finditer(t)):
        if _over(budget, i) or not _spend(budget, len(m.group())):
            return
        tok = m.group()
        escapes = _URL_ESC.findall(tok)
        alnum = any(chr(int(h, 16)).isalnum() for h in escapes if int(h, 16) < 128)
        # "How+do+I+...%3F": a form-encoded sentence on its own; a link's query string ("?q=a+b%3F") is left as is
        form = _FORM_WORDS.search(tok) is not None and "=" not in tok and "://" not in tok
        # one escape of a letter must touch a letter ("%62omb"): printf's "%4d" and "i%50" are not escapes
        lone_letter = alnum and _ESC_BEFORE_LETTER.search(tok) is not None
        if len(escapes) < 2 and not (lone_letter or form):
            continue  # one "%20" in a link is ordinary
        dec = _utf8(unquote_to_bytes(tok.replace("+", " ") if form else tok))
        if dec is None or dec == tok or _NONPRINT.search(dec):
            continue
        yield m.start(), m.end(), "url", dec, _STRENGTH["url_alnum" if alnum else "url_reserved"]


def _find_hex_spaced(t: str, budget: list[int], _long: list[tuple[int, str]]):
    for i, m in enumerate(_HEX_SPACED.finditer(t)):
        if _over(budget, i) or not _spend(budget, len(m.group())):
            return
        raw = _HEX_DIGITS.sub("", m.group())
        if raw.isdigit() and (len(raw) < 12 or b" " not in bytes.fromhex(raw)):
            continue  # "34 45 52 61": numbers, not bytes (hex of a sentence without letters a-f has spaces)
        dec = _utf8(bytes.fromhex(raw))
        if dec is not None and _texty(dec) and (len(dec) >= 6 or dec.islower()):
            yield m.start(), m.end(), "hex", dec, _STRENGTH["hex"]


def _long_tokens(t: str, min_len: int) -> list[tuple[int, str]]:
    """(offset, token) for runs of at least `min_len` printable ASCII characters without spaces: a payload glued to
    curly quotes, CJK punctuation or an emoji is still a token. The regex scan runs at C speed."""
    if min_len not in _ASCII_RUNS:
        _ASCII_RUNS[min_len] = re.compile(f"[!-~]{{{min_len},}}")
    return [(m.start(), m.group()) for m in _ASCII_RUNS[min_len].finditer(t)]


_ASCII_RUNS: dict[int, re.Pattern[str]] = {}


def _find_hex_cat(t: str, budget: list[int], long_tokens: list[tuple[int, str]]):
    i = 0
    for off, tok in long_tokens:
        for m in _HEX_CAT.finditer(tok):
            i += 1
            if _over(budget, i - 1) or not _spend(budget, len(m.group())):
                return
            raw = m.group()
            if raw.isdigit():
                continue
            dec = _utf8(bytes.fromhex(raw))
            if dec is not None and _texty(dec, 4):
                s = off + m.start()
                if t[s - 2:s] in ("0x", "0X"):
                    s -= 2  # the prefix goes with the payload
                yield s, off + m.end(), "hex", dec, _STRENGTH["hex"]


def _find_base64(t: str, budget: list[int], long_tokens: list[tuple[int, str]]):
    tried = 0
    for off, tok in long_tokens:
        if len(tok) < 16:
            continue
        for m in _B64.finditer(tok):
            cand = m.group()
            if len(cand) < B64_MIN:
                continue
            core = cand.rstrip("=")
            # Words, paths and identifiers: base64 of text nearly always mixes case and digits.
            if core.islower() or core.isupper() or core.isdigit() or (core.isalpha() and ("/" in core or "_" in core)):
                continue
            tried += 1
            if _over(budget, tried - 1) or not _spend(budget, len(cand)):
                return
            dec = _b64_text(core)
            kind = "base64"
            if dec is None:
                dec = _b64_text(core.translate(_ROT13))  # rot13 applied to a base64 string
                kind = "rot13+base64"
            if dec is not None:
                strength = _STRENGTH["base64"] if kind == "base64" else _STRENGTH["nested"]
                yield off + m.start(), off + m.end(), kind, dec, strength


def _b64_text(core: str) -> str | None:
    if ("-" in core or "_" in core) and ("+" in core or "/" in core):
        return None
    if len(core) % 4 == 1:
        return None
    s = core.translate(_B64_URLSAFE) + "=" * (-len(core) % 4)
    try:
        raw = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        return None
    dec = _utf8(raw)
    return dec if dec is not None and _texty(dec, 4) else None


# ---- rot13 and reversed text (word statistics) ---------------------------------------------------
def _segment_decodings(t: str, sig: dict[str, float]) -> list[tuple[str, list[tuple[int, int, str]]]]:
    """Sentences that read as much more English after rot13 or after reversal."""
    low = t.lower()
    # Early out: a segment qualifies only with >= 2 hits from words that are not English already.
    unknown = " ".join([w for w in _WORD.findall(low) if w not in ENGLISH_WORDS])
    if not unknown:
        return []
    known = ENGLISH_WORDS.__contains__
    # rot13 is judged against the larger lexicon: a request's content words ("fake", "news", "article") are
    # rarely among the common words, and rot13 of ordinary words is almost never a word of either list
    lex = LEXICON.__contains__
    try_rot = sum(map(lex, unknown.translate(_ROT13).split())) >= 2
    try_rev = sum(map(known, unknown[::-1].split())) >= 2
    if not (try_rot or try_rev):
        return []
    rot: list[tuple[int, int, str]] = []
    rev: list[tuple[int, int, str]] = []
    for m in _SEGMENT.finditer(low):
        seg_low = m.group()
        words = [w for w in _WORD.findall(seg_low) if len(w) > 1]  # "a"/"i" <-> "n"/"v" prove nothing
        n = len(words)
        if n < 2:
            continue
        h0 = sum(map(known, words))
        joined = " ".join(words)  # ASCII: translate and slicing stay on the fast path
        if 2 * h0 >= n:
            # already English, but a rot13 run can share the sentence ("decode this: Ubj qb V znxr ...")
            if try_rot:
                rot.extend(_rot13_runs(t, m.start(), m.end(), lex, words))
            continue
        need = max(2.0, 0.4 * n)
        if try_rot:
            # distinct words: a repeated identifier ("arr1, arr2" -> "nee") is one hit, not a sentence, and a
            # repeated phrase is one phrase
            h13 = len({w for w in joined.translate(_ROT13).split() if lex(w)})
            if h13 >= max(2.0, 0.4 * len(set(words))) and h13 >= 2 * sum(map(lex, words)) + 1:
                rot.append((m.start(), m.end(), t[m.start():m.end()].translate(_ROT13)))
                continue
            runs = _rot13_runs(t, m.start(), m.end(), lex, words)
            if runs:
                rot.extend(runs)
                continue
        if try_rev:
            hrv = sum(map(known, joined[::-1].split()))
            if hrv >= need and hrv >= 2 * h0 + 1:
                seg = t[m.start():m.end()]
                core = seg.strip()
                lead = seg[: len(seg) - len(seg.lstrip())]
                trail = seg[len(lead) + len(core):]
                rev.append((m.start(), m.end(), lead + core[::-1] + trail))
    out = []
    if rot:
        _bump(sig, "rot13", _STRENGTH["rot13"])
        out.append(("rot13", rot))
    if rev:
        _bump(sig, "reversed", _STRENGTH["reversed"])
        out.append(("reversed", rev))
    return out


_ALPHA_WORD = re.compile(r"[A-Za-z]+")
_HAS_SPACE = re.compile(r"\s")
ROT13_RUN = 3  # words in a row that are not words but read as words after rot13


def _free_word(t: str, s: int, e: int) -> bool:
    """A word not glued to digits or base64 symbols: "gur" in "the gur", not in "x7gur+"."""
    return (s == 0 or t[s - 1] not in _GLUE and not t[s - 1].isalnum()) and (
        e == len(t) or t[e] not in _GLUE and not t[e].isalnum())


_GLUE = frozenset("+/=_")


def _rot13_hit(w: str, lex) -> bool:
    """A lower-case word of 3+ letters that is not a word but is one after rot13 ("znxr" -> "make")."""
    return len(w) >= 3 and lex(w.translate(_ROT13)) and not lex(w)


def _rot13_runs(t: str, start: int, end: int, lex, words: list[str]) -> list[tuple[int, int, str]]:
    """Stretches of `t[start:end]` with at least ROT13_RUN words that are not English but are after rot13
    ("Ubj qb V znxr n cvcr obzo"); short words ("qb", "V") and words that are English in neither reading go
    along. `words` are the segment's lower-cased words, for a cheap check first."""
    if sum(_rot13_hit(w, lex) for w in words) < ROT13_RUN:
        return []
    out: list[tuple[int, int, str]] = []
    run: list[re.Match[str]] = []
    hits = 0

    def close() -> None:
        if hits >= ROT13_RUN:
            a, b = run[0].start(), run[-1].end()
            out.append((a, b, t[a:b].translate(_ROT13)))

    for m in _ALPHA_WORD.finditer(t, start, end):
        w = m.group().lower()
        if len(w) <= 2 or (run and not lex(w) and not lex(w.translate(_ROT13))):
            if run:
                run.append(m)  # short words, and words of neither reading (names, rare words) go along
            continue
        if _rot13_hit(w, lex) and _free_word(t, m.start(), m.end()):
            if run and not _HAS_SPACE.search(t, run[-1].end(), m.start()):
                close()  # glued by digits or symbols ("x7Fb+gur"): an identifier or a key, not a sentence
                run, hits = [], 0
            run.append(m)
            hits += 1
            continue
        close()
        run, hits = [], 0
    close()
    return out


# ---- helpers -------------------------------------------------------------------------------------
def _bump(sig: dict[str, float], name: str, strength: float) -> None:
    if strength > sig.get(name, -1.0):
        sig[name] = strength


_SIGNAL_ALIASES = {"nested": None}


def _signal_names(sig: dict[str, float]) -> list[str]:
    return [k for k in sig if _SIGNAL_ALIASES.get(k, k)]


def _score(sig: dict[str, float]) -> float:
    keep = 1.0
    for v in sig.values():
        keep *= 1.0 - max(0.0, min(1.0, v))
    return round(1.0 - keep, 4)


def _splice(t: str, reps: list[tuple[int, int, str]]) -> str:
    out, pos = [], 0
    for s, e, new in reps:
        out.append(t[pos:s])
        out.append(new)
        pos = e
    out.append(t[pos:])
    return "".join(out)


def _render(t: str, reps: list[tuple[int, int, str]], long: bool) -> str:
    """The text with `reps` applied; for long texts, only excerpts around the changes."""
    if not long:
        return _splice(t, reps)
    windows: list[list] = []
    for s, e, new in reps:
        a, b = max(0, s - EXCERPT_CONTEXT), min(len(t), e + EXCERPT_CONTEXT)
        if windows and a <= windows[-1][1]:
            windows[-1][1] = max(windows[-1][1], b)
            windows[-1][2].append((s, e, new))
        else:
            windows.append([a, b, [(s, e, new)]])
    parts = []
    for a, b, rs in windows:
        parts.append(_splice(t[a:b], [(s - a, e - a, new) for s, e, new in rs]))
    return "\n...\n".join(parts)


def _alt_view(text: str, rx: re.Pattern[str], fn, long: bool, sig: dict[str, float]) -> str:
    """Canonical form of `text` with each match of `rx` replaced by `fn(match)`; for long texts, merged excerpts
    around the matches (at most MAX_ALT_RUNS of them; past that, a decode_limit signal)."""
    if not long:
        return _canonical(rx.sub(fn, text), {})
    reps = []
    for m in rx.finditer(text):
        if len(reps) >= MAX_ALT_RUNS:
            _bump(sig, "decode_limit", _STRENGTH["decode_limit"])
            break
        reps.append((m.start(), m.end(), fn(m)))
    return _canonical(_render(text, reps, long), {})
