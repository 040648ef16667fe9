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

from ._data import ENGLISH_WORDS, LATIN_HOMOGLYPHS, LEET, SCRIPT_HOMOGLYPHS

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
MAX_PAYLOAD_VIEWS = 8  # decoded-payload views per text
MAX_DECODE_CHARS = 65536  # total payload characters decoded per text; longer blobs are skipped
MAX_CANDIDATES = 512  # payload candidates tried per decoder per text
MAX_DEPTH = 2  # nested decoding (base64 of rot13, ...)
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
}

# ---- character classes ---------------------------------------------------------------------------
_ZW = (
    "\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200d\u2060-\u2064\u206a-\u206f"
    "\u3164\ufeff\uffa0\ufe00-\ufe0f\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_CTRL = "\x00-\x08\x0e-\x1f\x7f-\x9f"
_SURR = "\ud800-\udfff"
_HIDDEN_RUN = re.compile(f"[{_ZW}{_BIDI}{_CTRL}{_SURR}]+")
_ASCII_HIDDEN = re.compile(f"[{_CTRL}]")
_VS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_TAG_RUN = re.compile("[\U000e0000-\U000e007f]+")
_RLO_SPAN = re.compile("\u202e([^\u202c\u2069\n]*)")
_STYLED = re.compile("[\uff21-\uff3a\uff41-\uff5a\U0001d400-\U0001d7ff\u24b6-\u24e9\U0001f130-\U0001f149]")
_CJK = re.compile("[\u3000-\u30ff\u3400-\u9fff\uac00-\ud7af]")
_SCRIPT_CHARS = re.compile("[" + "".join(re.escape(chr(c)) for c in SCRIPT_HOMOGLYPHS) + "]")
_LATIN_CHARS = re.compile("[" + "".join(re.escape(chr(c)) for c in LATIN_HOMOGLYPHS) + "]")
_NONASCII_WORD = re.compile(r"(?<!\w)[A-Za-z0-9_]*[^\x00-\x7f\W]\w*")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_PREV_WORD = re.compile(r"(\w+)\W*$")
_NEXT_WORD = re.compile(r"\W*(\w+)")

# Single characters separated by spaces or one punctuation mark: "h o w  t o", "b.o.m.b", "b-o-m-b".
_SPACED = re.compile(
    r"(?<![^\s\"'(\[{<])[^\W_](?![^\W_])"
    r"(?:(?:[ \t]{1,3}|[ \t]?[.\-_*|~+\u00b7\u2022][ \t]?)[^\W_](?![^\W_])){3,}"
)
_WIDE_GAP = re.compile(r"[ \t]{2,}")
_SPACED_SEP = re.compile(r"[\s.\-_*|~+\u00b7\u2022]+")

_LEET_HINT = re.compile(r"[A-Za-z][0-9@$!]|[0-9@$][A-Za-z]")
_LEET_TOKEN = re.compile(r"[A-Za-z0-9@$!]+")
_LEET_CHARS = "".join(LEET)
_SHAPE = str.maketrans(
    {**{c: "L" for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"},
     **{c: "D" for c in _LEET_CHARS},
     **{c: "N" for c in "0123456789" if c not in LEET}}
)
_LEET_INTERIOR = re.compile(r"LD{1,2}L")
_LEET_EDGE = re.compile(r"^(?:D{1,2}L{2,}|L{2,}D{1,2})$")
_HEXLIKE = re.compile(r"^[0-9A-Fa-f]{6,}$")
_CLASSIC_LEET = set("034@$57")

_URL = re.compile(r"(?<!\S)[^\s%]*(?:%[0-9A-Fa-f]{2}[^\s%]*){2,}")
_URL_ESC = re.compile(r"%([0-9A-Fa-f]{2})")
_HEX_ESC = re.compile(r"(?:\\x[0-9A-Fa-f]{2}|\\u00[0-9A-Fa-f]{2}){3,}")
_HEX_SPACED = re.compile(
    r"(?<![0-9A-Za-z])(?:0x)?[0-9A-Fa-f]{2}(?:(?:, ?|[ :;-])(?:0x)?[0-9A-Fa-f]{2}){2,}(?![0-9A-Za-z])"
)
_HEX_CAT = re.compile(r"(?<![0-9A-Za-z])(?:0x)?(?:[0-9A-Fa-f]{2}){6,}(?![0-9A-Za-z])")
_HEX_DIGITS = re.compile(r"[^0-9A-Fa-f]|0x|\\x|\\u00")
_B64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_B64_URLSAFE = str.maketrans("-_", "+/")
_NONPRINT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd\ud800-\udfff]")

_SEGMENT = re.compile(r"[^\n.!?;:\"()\[\]{}<>]+")
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
            alt = _RLO_SPAN.sub(lambda m: m.group(1)[::-1], text)
            add("reversed", _excerpt_if_long(_canonical(alt, {}), canonical, long))
        if _TAG_RUN.search(text):
            alt = _TAG_RUN.sub(_decode_tags, text)
            if alt != text:
                _bump(sig, "tag_chars", _STRENGTH["tag_chars"])
                add("tags", _excerpt_if_long(_canonical(alt, {}), canonical, long))

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
    budget = [MAX_DECODE_CHARS]
    n_payload = 0
    for start, end, kind, decoded in _payloads(canonical, sig, budget, depth=1):
        if n_payload >= MAX_PAYLOAD_VIEWS:
            break
        before = len(views)
        add(kind, _render(canonical, [(start, end, decoded)], long))
        n_payload += len(views) > before

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
        return _strip_hidden(text, sig) if _ASCII_HIDDEN.search(text) else text
    t = _strip_hidden(text, sig) if _HIDDEN_RUN.search(text) else text
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
    out: list[str] = []
    pos = 0
    n = len(text)
    for m in _HIDDEN_RUN.finditer(text):
        s, e = m.span()
        out.append(text[pos:s])
        pos = e
        prev = text[s - 1] if s else ""
        nxt = text[e] if e < n else ""
        in_word = prev.isalnum() and nxt.isalnum()
        for ch in m.group():
            o = ord(ch)
            if 0xD800 <= o <= 0xDFFF:
                out.append("\ufffd")
            elif ch in "\u200c\u200d" and _keeps_joiner(prev, nxt):
                out.append(ch)  # emoji sequences, Indic and Arabic scripts need their joiners
            elif o < 0xA0:
                _bump(sig, "control_chars", 0.6 if in_word else 0.2)
            elif ch in _BIDI_SET:
                _bump(sig, "bidi", _STRENGTH["bidi_override"] if ch in "\u202d\u202e" else 0.3)
            elif _VS.match(ch):
                if in_word and prev.isascii():
                    _bump(sig, "zero_width", _STRENGTH["zero_width"])
            elif 0xE0000 <= o <= 0xE007F:
                pass  # tag characters: decoded into their own view
            elif ch == "\ufeff" and s == 0:
                pass  # byte-order mark
            else:
                _bump(sig, "zero_width", _STRENGTH["zero_width"] if in_word else 0.25)
    out.append(text[pos:])
    return "".join(out)


_BIDI_SET = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _keeps_joiner(prev: str, nxt: str) -> bool:
    if not prev or not nxt:
        return False
    a, b = ord(prev), ord(nxt)
    return (a >= 0x0590 and b >= 0x0590 and a not in SCRIPT_HOMOGLYPHS and b not in SCRIPT_HOMOGLYPHS
            and a not in LATIN_HOMOGLYPHS and b not in LATIN_HOMOGLYPHS)


def _decode_tags(m: re.Match[str]) -> str:
    chars = [chr(ord(c) - 0xE0000) for c in m.group()]
    return "".join(c for c in chars if " " <= c <= "~")


def _fold_script_homoglyphs(t: str, sig: dict[str, float]) -> str:
    """Fold look-alike letters of other scripts, but only in words that mix them with Latin letters,
    or all-look-alike words whose neighbours are Latin. Genuine Cyrillic/Greek text is untouched."""
    reps: list[tuple[int, int, str]] = []
    for m in _NONASCII_WORD.finditer(t):
        w = m.group()
        if not _SCRIPT_CHARS.search(w):
            continue
        folded = w.translate(SCRIPT_HOMOGLYPHS)
        if folded == w:
            continue
        if _ASCII_LETTER.search(w):
            reps.append((m.start(), m.end(), folded))
            _bump(sig, "homoglyph", _STRENGTH["homoglyph"])
        elif folded.isascii() and _latin_neighbours(t, m.start(), m.end()):
            reps.append((m.start(), m.end(), folded))
            _bump(sig, "homoglyph", _STRENGTH["homoglyph_context"])
    return _splice(t, reps) if reps else t


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
    reps = []
    for m in _SPACED.finditer(t):
        region = m.group()
        if sum(c.isalpha() for c in region) < 2:
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
    # merge consecutive unknown pieces
    out: list[str] = []
    unknown = False
    for j, i in parts:
        w = s[j:i]
        known = low[j:i] in ENGLISH_WORDS
        if not known and unknown and out:
            out[-1] += w
        else:
            out.append(w)
        unknown = not known
    return out


# ---- leetspeak -----------------------------------------------------------------------------------
def _deleet(t: str, sig: dict[str, float]) -> list[tuple[int, int, str]]:
    if not _LEET_HINT.search(t):
        return []
    toks = [(m.start(), m.end(), m.group()) for m in _LEET_TOKEN.finditer(t)]
    out: dict[int, str] = {}
    strength = 0.0
    for k, (s, e, tok) in enumerate(toks):
        if tok.isalpha() or tok.isdigit():
            continue
        if (s and t[s - 1] in "/\\.=&?#%:") or t[e:e + 1] in ("/", "\\", "=", "@") or (
            e + 1 < len(t) and t[e] == "." and t[e + 1].isalnum()
        ):
            continue  # URLs, paths, e-mail addresses, file names
        new = _leet_word(tok)
        if new is not None:
            out[k] = new
            w = 0.6 if any(c in _CLASSIC_LEET for c in tok) else 0.35
            strength = 1.0 - (1.0 - strength) * (1.0 - w)
    if not out:
        return []
    # All-leet tokens ("70", "4") between leet words: "h0w 70 m4k3".
    for k, (_s, _e, tok) in enumerate(toks):
        if k in out or len(tok) > 4 or tok.translate(_SHAPE).strip("D"):
            continue
        if (k - 1) in out or (k + 1) in out:
            out[k] = _choose(tok, upper=False)
    _bump(sig, "leetspeak", min(strength, 0.9))
    return [(toks[k][0], toks[k][1], new) for k, new in sorted(out.items())]


def _leet_word(tok: str) -> str | None:
    shape = tok.translate(_SHAPE)
    if "N" in shape or shape.count("L") < 2 or (len(tok) >= 6 and _HEXLIKE.match(tok)):
        return None
    upper = tok.upper() == tok and any(c.isalpha() for c in tok)
    if _LEET_INTERIOR.search(shape):
        return _choose(tok, upper)
    if _LEET_EDGE.match(shape):
        cand = _choose(tok, upper)
        if cand.lower() in ENGLISH_WORDS:
            return cand
    return None


def _choose(tok: str, upper: bool) -> str:
    """Replace leet characters; where a character has several readings ('1' -> i/l), prefer the
    one that yields a common English word."""
    variants = [""]
    for c in tok:
        opts = LEET.get(c)
        if not opts:
            variants = [v + c for v in variants]
        else:
            if upper:
                opts = tuple(o.upper() for o in opts)
            variants = [v + o for v in variants for o in opts] if len(variants) * len(opts) <= 16 else [
                v + opts[0] for v in variants
            ]
    for v in variants:
        if v.lower() in ENGLISH_WORDS:
            return v
    return variants[0]


# ---- payload decoders ----------------------------------------------------------------------------
def _payloads(t: str, sig: dict[str, float], budget: list[int], depth: int):
    """Yield (start, end, kind, decoded_text) for payloads in `t`, nested decodings after their parent."""
    found: list[tuple[int, int, str, str, float]] = []
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    for finder in (_find_hex_escapes, _find_url, _find_hex_spaced, _find_hex_cat, _find_base64):
        for s, e, kind, dec, strength in finder(t, budget):
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
    if depth == 1:
        for kind, reps in _segment_decodings(t, sig):
            a, b = reps[0][0], reps[-1][1]
            yield a, b, kind, _splice(t[a:b], [(s - a, e - a, new) for s, e, new in reps])


_SIGNAL_OF = {"base64": "base64", "rot13+base64": "base64", "hex": "hex", "url": "url_encoding"}
_NESTABLE = frozenset(("base64", "hex", "url_encoding", "rot13", "reversed"))


def _texty(s: str, min_len: int = 3) -> bool:
    n = len(s)
    if n < min_len:
        return False
    if len(_NONPRINT.findall(s)) > 0.02 * n:
        return False
    letters = sum(map(str.isalpha, s))
    spaces = s.count(" ") + s.count("\n")
    return letters >= 2 and (letters + spaces) >= 0.6 * n


def _utf8(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _spend(budget: list[int], n: int) -> bool:
    if n > budget[0]:
        return False
    budget[0] -= n
    return True


def _find_hex_escapes(t: str, budget: list[int]):
    if "\\" not in t:
        return
    for i, m in enumerate(_HEX_ESC.finditer(t)):
        if i >= MAX_CANDIDATES or not _spend(budget, len(m.group())):
            return
        raw = m.group().replace("\\x", "").replace("\\u00", "")
        dec = _utf8(bytes.fromhex(raw))
        if dec is not None and _texty(dec):
            yield m.start(), m.end(), "hex", dec, _STRENGTH["hex"]


def _find_url(t: str, budget: list[int]):
    if "%" not in t:
        return
    for i, m in enumerate(_URL.finditer(t)):
        if i >= MAX_CANDIDATES or not _spend(budget, len(m.group())):
            return
        tok = m.group()
        dec = _utf8(unquote_to_bytes(tok))
        if dec is None or dec == tok or _NONPRINT.search(dec):
            continue
        alnum = any(chr(int(h, 16)).isalnum() for h in _URL_ESC.findall(tok))
        yield m.start(), m.end(), "url", dec, _STRENGTH["url_alnum" if alnum else "url_reserved"]


def _find_hex_spaced(t: str, budget: list[int]):
    for i, m in enumerate(_HEX_SPACED.finditer(t)):
        if i >= MAX_CANDIDATES or not _spend(budget, len(m.group())):
            return
        raw = _HEX_DIGITS.sub("", m.group())
        if raw.isdigit() and len(raw) < 12:
            continue  # "12 34 56": numbers, not bytes
        dec = _utf8(bytes.fromhex(raw))
        if dec is not None and _texty(dec) and (len(dec) >= 6 or dec.islower()):
            yield m.start(), m.end(), "hex", dec, _STRENGTH["hex"]


def _find_hex_cat(t: str, budget: list[int]):
    for i, m in enumerate(_HEX_CAT.finditer(t)):
        if i >= MAX_CANDIDATES or not _spend(budget, len(m.group())):
            return
        raw = m.group()
        raw = raw[2:] if raw[:2] in ("0x", "0X") else raw
        if raw.isdigit() or raw.isalpha():
            continue
        dec = _utf8(bytes.fromhex(raw))
        if dec is not None and _texty(dec, 4):
            yield m.start(), m.end(), "hex", dec, _STRENGTH["hex"]


def _find_base64(t: str, budget: list[int]):
    tried = 0
    for m in _B64.finditer(t):
        cand = m.group()
        core = cand.rstrip("=")
        # Plain words, paths and identifiers: base64 of text nearly always mixes case and digits.
        if core.islower() or core.isupper() or core.isalpha() and ("/" in core or "_" in core):
            continue
        if len(cand) > MAX_DECODE_CHARS:
            continue
        tried += 1
        if tried > MAX_CANDIDATES or not _spend(budget, len(cand)):
            return
        dec = _b64_text(core)
        kind = "base64"
        if dec is None:
            dec = _b64_text(core.translate(_ROT13))  # rot13 applied to a base64 string
            kind = "rot13+base64"
        if dec is not None:
            yield m.start(), m.end(), kind, dec, _STRENGTH["base64"] if kind == "base64" else _STRENGTH["nested"]


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
    rot: list[tuple[int, int, str]] = []
    rev: list[tuple[int, int, str]] = []
    words_set = ENGLISH_WORDS
    for m in _SEGMENT.finditer(t):
        seg = m.group()
        low = seg.lower()
        words = _WORD.findall(low)
        n = len(words)
        if n < 2:
            continue
        h0 = sum(w in words_set for w in words)
        if 2 * h0 >= n:
            continue  # already English
        need = max(2, 0.4 * n)
        h13 = sum(w.translate(_ROT13) in words_set for w in words)
        if h13 >= need and h13 >= 2 * h0 + 1:
            rot.append((m.start(), m.end(), seg.translate(_ROT13)))
            continue
        hrv = sum(w[::-1] in words_set for w in words)
        if hrv >= need and hrv >= 2 * h0 + 1:
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


def _excerpt_if_long(alt: str, canonical: str, long: bool) -> str:
    if not long or alt == canonical:
        return alt
    # Excerpt around the first difference (binary search on slice equality: C speed).
    lo, hi = 0, min(len(alt), len(canonical))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if alt[:mid] == canonical[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return alt[max(0, lo - EXCERPT_CONTEXT): lo + 4 * EXCERPT_CONTEXT]
