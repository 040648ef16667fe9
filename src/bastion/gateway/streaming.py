"""Streaming output rail: buffer upstream chunks and release them only after a check.

Every check sees a sliding window: the tail of the text already released (`context_chars`) followed by
*all* the text still held. Text is released only up to a safe cut (by default the end of the last complete
sentence, at an upstream chunk boundary), so a harmful sentence split over many chunks is checked whole
before any of it leaves, and a phrase split across a release boundary is still seen whole in the next window.
Upstream chunks are released unchanged (ids, logprobs, tool-call deltas), only later.

With a `code_check` (code shield in block mode), a fenced code block is also held until its closing fence
arrives (at most `code_max_chars`), and every code block is scanned before any of it is released.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bastion.guard.policy import ALLOW, Decision, StreamingRules

_SENTENCE_END = re.compile(r"[.!?;:](?=[\s\"')\]])|\n")
_WORD_END = re.compile(r"\s")
# The fences `bastion.codeshield` recognises: up to 3 spaces, 3+ backticks or tildes, an info string.
_FENCE_LINE = re.compile(r"^ {0,3}(`{3,}|~{3,})[ \t]*([^\n`]*)$")
_MAYBE_FENCE = re.compile(r"^ {0,3}(`{1,}|~{1,})[^\n`]*$")


# Keys whose string values are not text a reader sees: ids, roles, binary payloads, links to media.
_NOT_TEXT = frozenset({"role", "id", "type", "index", "tool_call_id", "url", "data", "file_data", "file_id",
                       "format", "detail", "mime_type", "logprobs", "finish_reason"})


def readable_fields(obj: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a message, a stream choice or a delta that a reader could see, in order, as (field, text).

    Content (a string, or parts given as objects or plain strings), refusal, reasoning fields, tool-call and
    legacy function-call names and arguments, audio transcripts, and any field this gateway does not know yet:
    it fails closed, so text in a new field is checked rather than forwarded unread. The field is a path such as
    `delta.content` or `delta.tool_calls[1].function.arguments` (a tool call is keyed by its own `index`, so the
    deltas of one call share a field across chunks)."""
    out: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(path, obj)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if v:
                out.append((where, v))
        elif isinstance(v, dict):
            stack.extend((f"{where}.{k}" if where else str(k), x) for k, x in reversed(list(v.items()))
                         if k not in _NOT_TEXT)
        elif isinstance(v, list):
            for i in range(len(v) - 1, -1, -1):
                x = v[i]
                key = x.get("index") if isinstance(x, dict) and isinstance(x.get("index"), int) else i
                stack.append((f"{where}[{key}]", x))
    return out


def readable_text(obj: Any, sep: str = "") -> str:
    """The text of `readable_fields`, joined."""
    return sep.join(t for _, t in readable_fields(obj))


def _choice_key(ch: dict[str, Any]) -> int | str:
    idx = ch.get("index", 0)
    # A malformed index is a choice of its own, never merged into choice 0's text.
    return idx if isinstance(idx, int) and not isinstance(idx, bool) else f"?{idx!r}"


def choice_fields(chunk: dict[str, Any]) -> list[tuple[int | str, str, str]]:
    """(choice index, field, text) for every readable string of a stream chunk's choices: the delta and any other
    field of a choice (a legacy `text`, a `message`). Log-probability tokens count only when the choice has no
    other text (they repeat it otherwise)."""
    out: list[tuple[int | str, str, str]] = []
    for ch in chunk.get("choices") or []:
        if not isinstance(ch, dict):
            continue
        idx = _choice_key(ch)
        found = readable_fields({k: v for k, v in ch.items() if k not in ("index", "finish_reason", "logprobs")})
        if not found and isinstance(ch.get("logprobs"), dict):
            toks = [t.get("token") for t in ch["logprobs"].get("content") or [] if isinstance(t, dict)]
            found = [("logprobs", "".join(t for t in toks if isinstance(t, str)))] if any(toks) else []
        out.extend((idx, f, t) for f, t in found if t)
    return out


def choice_texts(found: list[tuple[int | str, str, str]]) -> dict[int | str, str]:
    """The readable text per choice index of a chunk's `choice_fields`."""
    out: dict[int | str, str] = {}
    for idx, _, t in found:
        out[idx] = out.get(idx, "") + t
    return out


def chunk_text(chunk: dict[str, Any]) -> str:
    """All text a chunk carries that a user could read (every choice; see `readable_fields`)."""
    return "".join(t for _, _, t in choice_fields(chunk))


class FieldTexts:
    """The text of each (choice, field) of a stream, and whether fields interleave: text in a field resuming
    after another field's. Then the one sliding window over the stream no longer sees any field's text whole (a
    phrase split across two parallel tool calls, or between reasoning and content), so the stream must be held
    and each field checked on its own."""

    def __init__(self) -> None:
        self.texts: dict[tuple[int | str, str], list[str]] = {}
        self.last: tuple[int | str, str] | None = None
        self.interleaved = False
        self.chars = 0

    def add(self, found: list[tuple[int | str, str, str]]) -> None:
        """Take a chunk's `choice_fields`."""
        for idx, f, t in found:
            key = (idx, f)
            if key != self.last:
                if key in self.texts:
                    self.interleaved = True
                self.last = key
            self.texts.setdefault(key, []).append(t)
            self.chars += len(t)

    def whole(self) -> dict[tuple[int | str, str], str]:
        return {k: "".join(v) for k, v in self.texts.items()}


@dataclass
class _Piece:
    chunk: Any  # whatever the caller passed to add(); released as is
    text: str
    at: float


@dataclass
class CodeBlockSpan:
    start: int  # offset of the opening fence line in the whole upstream text
    fence: str
    end: int | None = None  # offset just after the closing fence line; None while open
    scanned: bool = False


@dataclass
class FenceTracker:
    """Fenced code blocks in a growing text (complete lines only; the unfinished last line may open one)."""

    text: str = ""
    blocks: list[CodeBlockSpan] = field(default_factory=list)
    _pos: int = 0  # start of the first line not parsed yet

    def feed(self, s: str) -> None:
        if not s:
            return
        self.text += s
        while (nl := self.text.find("\n", self._pos)) >= 0:
            self._line(self.text[self._pos:nl], self._pos, nl + 1)
            self._pos = nl + 1

    def _line(self, line: str, start: int, end: int) -> None:
        m = _FENCE_LINE.match(line)
        cur = self.blocks[-1] if self.blocks and self.blocks[-1].end is None else None
        if cur is None:
            if m:
                self.blocks.append(CodeBlockSpan(start, m.group(1)))
        elif m and m.group(1)[0] == cur.fence[0] and len(m.group(1)) >= len(cur.fence) and not m.group(2).strip():
            cur.end = end

    def open_start(self) -> int | None:
        """Start of the block still open, or of an unfinished last line that may become an opening fence."""
        if self.blocks and self.blocks[-1].end is None:
            return self.blocks[-1].start
        if _MAYBE_FENCE.match(self.text[self._pos:]):
            return self._pos
        return None

    def block_text(self, b: CodeBlockSpan) -> str:
        return self.text[b.start:b.end]


@dataclass
class StreamScanner:
    """Hold chunks; `plan()` says how many may be released once checked; `scan()` checks and releases."""

    rules: StreamingRules
    check: Callable[[str, bool], Awaitable[Decision]]  # (window, final: the stream has ended)
    pending: list[_Piece] = field(default_factory=list)
    released_text: str = ""  # tail of released text, the context of the next window
    released_chars: int = 0
    checks: int = 0
    flags: list[Decision] = field(default_factory=list)
    violation: Decision | None = None
    last_decision: Decision = ALLOW
    # Code shield (block mode): scan each fenced block before any of it leaves; hold open blocks.
    code_check: Callable[[str], Awaitable[Decision]] | None = None
    code_max_chars: int = 20_000
    fences: FenceTracker = field(default_factory=FenceTracker)
    consumed: int = 0  # upstream characters released or dropped (redacted) so far
    withheld_text: str = ""  # the held text dropped by a violation
    withheld_finish: str | None = None  # the finish reason of a held chunk dropped by a violation

    def add(self, chunk: Any, text: str, now: float | None = None) -> None:
        self.pending.append(_Piece(chunk, text, time.monotonic() if now is None else now))
        if self.code_check is not None:
            self.fences.feed(text)

    def _code_limit(self) -> int | None:
        """How much of the held text may leave before an open code block (None: no limit)."""
        if self.code_check is None:
            return None
        start = self.fences.open_start()
        if start is None or start < self.consumed or len(self.fences.text) - start > self.code_max_chars:
            return None  # no open block, one already partly released, or one too long to hold whole
        return start - self.consumed

    @property
    def pending_text(self) -> str:
        return "".join(p.text for p in self.pending)

    def hold_deadline(self) -> float | None:
        """Monotonic time at which held text must be checked and released."""
        limit = self._code_limit()
        pos = 0
        for p in self.pending:
            if limit is not None and pos + len(p.text) > limit:
                return None  # the rest waits for its code block to close
            if p.text:
                return p.at + self.rules.max_hold_ms / 1000.0
            pos += len(p.text)
        return None

    def plan(self, now: float | None = None, final: bool = False) -> int:
        """How many pending pieces a check now would release (0: not worth a check yet)."""
        if not self.pending:
            return 0
        text = self.pending_text
        if final:
            return len(self.pending)
        if not text:
            return 0
        now = time.monotonic() if now is None else now
        forced = len(text) >= self.rules.max_pending_chars or (
            (d := self.hold_deadline()) is not None and now >= d)
        limit = self._code_limit()
        if limit is not None:
            if limit == 0:
                return 0
            text = text[:limit]  # everything from the open fence on waits for the closing fence
        need = self.rules.min_chars if self.released_chars == 0 else max(self.rules.min_chars,
                                                                          self.rules.check_every_chars)
        if not forced and len(text) < need:
            return 0
        mode = self.rules.holdback
        if forced and mode == "sentence":
            mode = "word"
        if mode == "none":
            cut = len(text)
        else:
            rx = _SENTENCE_END if mode == "sentence" else _WORD_END
            ends = [m.end() for m in rx.finditer(text)]
            cut = ends[-1] if ends else 0
        n, pos = 0, 0
        for p in self.pending:
            if pos + len(p.text) > cut:
                break
            pos += len(p.text)
            n += 1
        if pos == 0 or n == 0:  # nothing with text fits before the cut
            return len(self.pending) if forced and limit is None else 0
        return n

    async def scan(self, n: int, final: bool = False) -> tuple[list[Any], Decision]:
        """Check the window (context + all held text) and release the first `n` pieces if allowed."""
        window = self.released_text + self.pending_text
        decision = await self.check(window, final)
        self.checks += 1
        self.last_decision = decision
        if decision.action in ("block", "revise"):
            return self._stop(decision)
        if decision.action == "redact":
            # Drop everything held; the redaction marker replaces it (in the shape of the first held chunk).
            first = self.pending[0].chunk if self.pending else None
            first = first[0] if isinstance(first, tuple) else first
            out = [_replace_text(first, decision.refusal, self._held_finish())] if first is not None else []
            self._remember(decision.refusal)
            self.flags.append(decision)
            self.consumed += len(self.pending_text)
            for b in self.fences.blocks:  # dropped, never released: nothing to scan
                if b.start < self.consumed and b.end is not None:
                    b.scanned = True
            self.pending.clear()
            return out, decision
        upto = self.consumed + sum(len(p.text) for p in self.pending[:n])
        code = await self._scan_code(upto)
        if code.action in ("block", "revise"):
            return self._stop(code)
        if decision.action == "flag":
            self.flags.append(decision)
        released, self.pending = self.pending[:n], self.pending[n:]
        self.consumed = upto
        self._remember("".join(p.text for p in released))
        return [p.chunk for p in released], decision

    async def _scan_code(self, upto: int) -> Decision:
        """Scan every code block that starts before `upto` and has not been scanned whole yet."""
        if self.code_check is None:
            return ALLOW
        for b in self.fences.blocks:
            if b.scanned or b.start >= upto:
                continue
            d = await self.code_check(self.fences.block_text(b))
            if b.end is not None:
                b.scanned = True
            if d.action in ("block", "revise"):
                return d
        return ALLOW

    def _held_finish(self) -> str | None:
        """The finish reason carried by a held chunk (an upstream's last text chunk may carry `length`)."""
        for p in self.pending:
            c = p.chunk[0] if isinstance(p.chunk, tuple) else p.chunk
            for ch in (c.get("choices") or []) if isinstance(c, dict) else []:
                if isinstance(ch, dict) and ch.get("finish_reason"):
                    return str(ch["finish_reason"])
        return None

    def _stop(self, decision: Decision) -> tuple[list[Any], Decision]:
        self.violation = decision
        self.withheld_finish = self._held_finish()
        self.withheld_text = self.pending_text
        self.pending.clear()
        return [], decision

    def _remember(self, text: str) -> None:
        self.released_chars += len(text)
        keep = self.rules.context_chars
        self.released_text = (self.released_text + text)[-keep:] if keep else ""


def _replace_text(chunk: dict[str, Any], text: str, finish: str | None = None) -> dict[str, Any]:
    out = {k: v for k, v in chunk.items() if k != "choices"}
    choices = chunk.get("choices") or [{"index": 0}]
    first = choices[0] if isinstance(choices[0], dict) else {"index": 0}
    out["choices"] = [{"index": first.get("index", 0), "delta": {"content": text}, "logprobs": None,
                       "finish_reason": finish}]
    return out
