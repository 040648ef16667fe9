"""Streaming output rail: buffer upstream chunks and release them only after a check.

Every check sees a sliding window: the tail of the text already released (`context_chars`) followed by
*all* the text still held. Text is released only up to a safe cut (by default the end of the last complete
sentence, at an upstream chunk boundary), so a harmful sentence split over many chunks is checked whole
before any of it leaves, and a phrase split across a release boundary is still seen whole in the next window.
Upstream chunks are released unchanged (ids, logprobs, tool-call deltas), only later.
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


def chunk_text(chunk: dict[str, Any]) -> str:
    """All text a chunk carries that a user could read: content, refusal and tool-call arguments."""
    parts: list[str] = []
    for ch in chunk.get("choices") or []:
        if not isinstance(ch, dict):
            continue
        delta = ch.get("delta") or {}
        if not isinstance(delta, dict):
            continue
        for k in ("content", "refusal", "reasoning_content"):
            v = delta.get(k)
            if isinstance(v, str):
                parts.append(v)
        for tc in delta.get("tool_calls") or []:
            fn = (tc or {}).get("function") or {}
            for k in ("name", "arguments"):
                if isinstance(fn.get(k), str):
                    parts.append(fn[k])
    return "".join(parts)


@dataclass
class _Piece:
    chunk: Any  # whatever the caller passed to add(); released as is
    text: str
    at: float


@dataclass
class StreamScanner:
    """Hold chunks; `plan()` says how many may be released once checked; `scan()` checks and releases."""

    rules: StreamingRules
    check: Callable[[str], Awaitable[Decision]]
    pending: list[_Piece] = field(default_factory=list)
    released_text: str = ""  # tail of released text, the context of the next window
    released_chars: int = 0
    checks: int = 0
    flags: list[Decision] = field(default_factory=list)
    violation: Decision | None = None
    last_decision: Decision = ALLOW

    def add(self, chunk: Any, text: str, now: float | None = None) -> None:
        self.pending.append(_Piece(chunk, text, time.monotonic() if now is None else now))

    @property
    def pending_text(self) -> str:
        return "".join(p.text for p in self.pending)

    def hold_deadline(self) -> float | None:
        """Monotonic time at which held text must be checked and released."""
        for p in self.pending:
            if p.text:
                return p.at + self.rules.max_hold_ms / 1000.0
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
        if not forced and len(text) < self.rules.min_chars:
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
            return len(self.pending) if forced else 0
        return n

    async def scan(self, n: int) -> tuple[list[Any], Decision]:
        """Check the window (context + all held text) and release the first `n` pieces if allowed."""
        window = self.released_text + self.pending_text
        decision = await self.check(window)
        self.checks += 1
        self.last_decision = decision
        if decision.action in ("block", "revise"):
            self.violation = decision
            self.pending.clear()
            return [], decision
        if decision.action == "redact":
            # Drop everything held; the redaction marker replaces it (in the shape of the first held chunk).
            first = self.pending[0].chunk if self.pending else None
            first = first[0] if isinstance(first, tuple) else first
            out = [_replace_text(first, decision.refusal)] if first is not None else []
            self._remember(decision.refusal)
            self.flags.append(decision)
            self.pending.clear()
            return out, decision
        if decision.action == "flag":
            self.flags.append(decision)
        released, self.pending = self.pending[:n], self.pending[n:]
        self._remember("".join(p.text for p in released))
        return [p.chunk for p in released], decision

    def _remember(self, text: str) -> None:
        self.released_chars += len(text)
        keep = self.rules.context_chars
        self.released_text = (self.released_text + text)[-keep:] if keep else ""


def _replace_text(chunk: dict[str, Any], text: str) -> dict[str, Any]:
    out = {k: v for k, v in chunk.items() if k != "choices"}
    choices = chunk.get("choices") or [{"index": 0}]
    first = choices[0] if isinstance(choices[0], dict) else {"index": 0}
    out["choices"] = [{"index": first.get("index", 0), "delta": {"content": text}, "logprobs": None,
                       "finish_reason": None}]
    return out
