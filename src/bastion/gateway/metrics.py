"""A tiny Prometheus text-format registry (counters and histograms), enough for /metrics."""

from __future__ import annotations

import threading
from bisect import bisect_left

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_HELP = {
    "bastion_requests_total": ("counter", "HTTP requests by endpoint and status code."),
    "bastion_decisions_total": ("counter", "Policy decisions by rail, action and category."),
    "bastion_upstream_errors_total": ("counter", "Upstream failures by kind."),
    "bastion_rate_limited_total": ("counter", "Requests refused by the rate limiter."),
    "bastion_policy_reloads_total": ("counter", "Policy reload attempts by result."),
    "bastion_stream_chunks_total": ("counter", "Streamed chunks by outcome (released after a check, withheld)."),
    "bastion_stream_checks_total": ("counter", "Output-rail window checks made on streams."),
    "bastion_guard_seconds": ("histogram", "Guard check latency by rail (queueing included)."),
    "bastion_request_seconds": ("histogram", "End-to-end request latency by endpoint."),
    "bastion_stream_added_ttft_seconds": ("histogram", "Time from the first upstream token to its release."),
    "bastion_revisions_total": ("counter", "Revisions of flagged replies by result."),
    "bastion_codeshield_seconds": ("histogram", "Code-shield scan latency."),
    "bastion_audit_errors_total": ("counter", "Decisions the audit log failed to write."),
}


def _labels(labels: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((labels or {}).items()))


def _fmt(labels: tuple[tuple[str, str], ...], extra: tuple[tuple[str, str], ...] = ()) -> str:
    items = labels + extra
    if not items:
        return ""
    esc = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for _, v in items)
    return "{" + ",".join(f'{k}="{v}"' for (k, _), v in zip(items, esc, strict=False)) + "}"


def _num(v: float) -> str:
    """Exact text for a sample: integers in full (`:g` rounds 1234567 to 1.23457e+06, which breaks rate())."""
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class Metrics:
    """Thread-safe counters and histograms rendered in the Prometheus text format."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple, float]] = {}
        self._hist: dict[str, dict[tuple, list]] = {}

    def inc(self, name: str, labels: dict[str, str] | None = None, value: float = 1.0) -> None:
        with self._lock:
            d = self._counters.setdefault(name, {})
            k = _labels(labels)
            d[k] = d.get(k, 0.0) + value

    def set(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        """Set a counter kept elsewhere (e.g. the audit log's error count)."""
        with self._lock:
            self._counters.setdefault(name, {})[_labels(labels)] = value

    def observe(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        with self._lock:
            d = self._hist.setdefault(name, {})
            k = _labels(labels)
            h = d.get(k)
            if h is None:
                h = d[k] = [[0] * len(LATENCY_BUCKETS), 0.0, 0]
            i = bisect_left(LATENCY_BUCKETS, value)
            if i < len(LATENCY_BUCKETS):
                h[0][i] += 1
            h[1] += value
            h[2] += 1

    def counter_value(self, name: str, labels: dict[str, str] | None = None) -> float:
        with self._lock:
            return self._counters.get(name, {}).get(_labels(labels), 0.0)

    def render(self) -> str:
        out: list[str] = []
        with self._lock:
            for name in sorted(set(self._counters) | set(self._hist)):
                kind, help_ = _HELP.get(name, ("untyped", name))
                out.append(f"# HELP {name} {help_}")
                out.append(f"# TYPE {name} {kind}")
                for k, v in sorted(self._counters.get(name, {}).items()):
                    out.append(f"{name}{_fmt(k)} {_num(v)}")
                for k, (buckets, total, count) in sorted(self._hist.get(name, {}).items()):
                    cum = 0
                    for b, n in zip(LATENCY_BUCKETS, buckets, strict=False):
                        cum += n
                        out.append(f"{name}_bucket{_fmt(k, (('le', f'{b:g}'),))} {cum}")
                    out.append(f"{name}_bucket{_fmt(k, (('le', '+Inf'),))} {count}")
                    out.append(f"{name}_sum{_fmt(k)} {total:.6f}")
                    out.append(f"{name}_count{_fmt(k)} {count}")
        return "\n".join(out) + "\n"
