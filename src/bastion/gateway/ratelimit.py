"""Per-key token-bucket rate limiting."""

from __future__ import annotations

import time


class RateLimiter:
    """A token bucket per key: `per_minute` requests per minute, bursts up to the same number."""

    def __init__(self, per_minute: float, max_keys: int = 100_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)

    def allow(self, key: str, per_minute: float | None = None, now: float | None = None) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        rate = per_minute or self.per_minute
        if rate <= 0:
            return True, 0.0
        now = time.monotonic() if now is None else now
        cap = max(rate, 1.0)
        tokens, last = self._buckets.get(key, (cap, now))
        tokens = min(cap, tokens + (now - last) * rate / 60.0)
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets.clear()  # bounded memory under a flood of distinct keys
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return True, 0.0
        self._buckets[key] = (tokens, now)
        return False, (1.0 - tokens) * 60.0 / rate
