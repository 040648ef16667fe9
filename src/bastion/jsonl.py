"""JSON Lines reading and writing that never stops a run on one bad line.

`json.loads` alone lets some lines escape as exceptions other than JSONDecodeError (deep nesting, 5,000-digit
integers), accepts NaN and Infinity (which are not JSON), and `json.dumps(..., ensure_ascii=False)` writes lone
surrogates that no UTF-8 stream accepts. Lines are split on "\\n" only: a raw carriage return inside a line is that
line's problem, not a second line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO


class LineError(ValueError):
    """One line cannot be used; the message is one line, fit for an error record."""


def _no_constant(name: str) -> Any:
    raise LineError(f"{name} is not JSON")


def _finite(s: str) -> float:
    x = float(s)
    if math.isinf(x):
        raise LineError(f"number out of range: {s[:40]}")
    return x


def utf8_safe(text: str) -> str:
    """`text` as UTF-8 can carry it: a surrogate pair becomes its character, a lone surrogate (from a JSON
    "\\ud800" escape in some input) U+FFFD. SQLite, Parquet and HTTP bodies all refuse lone surrogates, and one
    stray escape should not fail a whole write or request."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def loads_line(text: str, strict: bool = True) -> Any:
    """Parse one JSON line, or raise LineError with a one-line reason. `strict=False` lets NaN, Infinity and
    overflowing numbers through, as `json.loads` does (corpora written by tools that emit them)."""
    try:
        if not strict:
            return json.loads(text)
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except LineError:
        raise
    except json.JSONDecodeError as exc:
        msg = exc.msg.removesuffix(" at")  # "Invalid control character at" + our "at column"
        raise LineError(f"invalid JSON: {msg} at column {exc.colno}") from None
    except RecursionError:
        raise LineError("invalid JSON: nested too deeply") from None
    except ValueError as exc:  # integers past Python's digit limit (sys.get_int_max_str_digits)
        reason = "integer too long" if "digits" in str(exc) else str(exc).split(";")[0]
        raise LineError(f"invalid JSON: {reason}") from None


def dumps_line(obj: Any, allow_nan: bool = False, default: Callable[[Any], Any] | None = None) -> str:
    """One JSON line (no newline). Non-ASCII is written as is, except where that would not be valid UTF-8 (lone
    surrogates, copied from an input's \\ud800 escape), which is escaped again so the value is kept exactly.
    `allow_nan` and `default` are json.dumps's (the corpus filter passes records through as they came)."""
    s = json.dumps(obj, ensure_ascii=False, allow_nan=allow_nan, default=default)
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        s = json.dumps(obj, ensure_ascii=True, allow_nan=allow_nan, default=default)
    return s


def iter_lines(raw: BinaryIO | Iterable[bytes]) -> Iterator[str]:
    """Decoded lines of a binary stream, split on "\\n" only, invalid UTF-8 replaced, a leading BOM dropped.
    Each line keeps its end ("\\n", "\\r\\n" or none) so callers can count bytes."""
    first = True
    for b in raw:
        if first:
            b = b.removeprefix(b"\xef\xbb\xbf")
            first = False
        yield b.decode("utf-8", errors="replace")
