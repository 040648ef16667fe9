"""Bounded-concurrency batch execution shared by revise, label and synth."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from bastion.llm import LLMAuthError, LLMConnectionError, LLMError

T = TypeVar("T")
R = TypeVar("R")


class MalformedOutput(ValueError):
    """The model answered, but not in a usable form (empty, unparsable, no answer letter...)."""


class FatalLLMError(RuntimeError):
    """An error that would fail every item the same way (bad key, wrong URL or model): stop the batch."""


def is_fatal(e: BaseException, any_succeeded: bool = True) -> bool:
    """Errors that would fail every item: authentication, 404 (wrong URL or model) and, before any item has
    succeeded, a connection error that outlasted the client's retries (wrong host or port, server down)."""
    if isinstance(e, LLMAuthError) or (isinstance(e, LLMError) and getattr(e, "status", None) == 404):
        return True
    return isinstance(e, LLMConnectionError) and not any_succeeded


def reason_key(error: str) -> str:
    """The summary key of a failure reason: its whole first line (up to 200 characters)."""
    first = (error.strip().splitlines() or [""])[0]
    return first[:200]


async def with_retries(fn: Callable[[int], Awaitable[R]], retries: int) -> R:
    """Call fn(attempt) until it does not raise MalformedOutput; the last MalformedOutput propagates.
    Transport retries (429/5xx/timeouts) are already done by LLMClient."""
    for attempt in range(retries + 1):
        try:
            return await fn(attempt)
        except MalformedOutput:
            if attempt >= retries:
                raise
    raise AssertionError("unreachable")


@dataclass
class Outcome(Generic[T]):
    item: T
    result: Any = None
    error: str | None = None


@dataclass
class BatchStats:
    done: int = 0
    failed: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


async def run_batch(items: Sequence[T], work: Callable[[T], Awaitable[Any]], *, concurrency: int = 8,
                    on_outcome: Callable[[Outcome[T]], None] | None = None) -> BatchStats:
    """Run `work` over items with at most `concurrency` in flight. Each finished item is handed to
    `on_outcome` as soon as it completes (so results are written incrementally). An item's failure is
    recorded with its reason and never stops the batch, except a FatalLLMError-class error."""
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    sem = asyncio.Semaphore(concurrency)
    stats = BatchStats()
    succeeded = False

    async def one(it: T) -> Outcome[T]:
        async with sem:
            nonlocal succeeded
            try:
                result = await work(it)
                succeeded = True
                return Outcome(it, result=result)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - recorded per item
                if is_fatal(e, succeeded):
                    raise FatalLLMError(str(e)) from e
                return Outcome(it, error=f"{type(e).__name__}: {e}" if not isinstance(e, (MalformedOutput, LLMError))
                               else str(e))

    tasks = [asyncio.ensure_future(one(it)) for it in items]
    try:
        for fut in asyncio.as_completed(tasks):
            oc = await fut
            if oc.error is None:
                stats.done += 1
            else:
                stats.failed += 1
                key = reason_key(oc.error)
                stats.reasons[key] = stats.reasons.get(key, 0) + 1
            if on_outcome is not None:
                on_outcome(oc)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return stats
