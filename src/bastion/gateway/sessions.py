"""Session-level risk across turns: catches payloads split over requests and slow escalation."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class SessionState:
    risk: float = 0.0
    turns: deque = field(default_factory=lambda: deque(maxlen=8))
    last_seen: float = 0.0


class SessionTracker:
    """Bounded LRU of sessions with a time-to-live."""

    def __init__(self, max_sessions: int = 50_000) -> None:
        self.max_sessions = max_sessions
        self._s: OrderedDict[str, SessionState] = OrderedDict()

    def get(self, sid: str, max_turns: int, ttl_s: float, now: float | None = None) -> SessionState:
        now = time.monotonic() if now is None else now
        st = self._s.get(sid)
        if st is None or now - st.last_seen > ttl_s:
            st = SessionState(turns=deque(maxlen=max_turns))
            self._s[sid] = st
        elif st.turns.maxlen != max_turns:
            st.turns = deque(st.turns, maxlen=max_turns)
        self._s.move_to_end(sid)
        st.last_seen = now
        while len(self._s) > self.max_sessions:
            self._s.popitem(last=False)
        return st

    def __len__(self) -> int:
        return len(self._s)
