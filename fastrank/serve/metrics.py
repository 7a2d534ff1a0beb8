"""Service metrics in the Prometheus text exposition format (version 0.0.4), without a client library.

Counters and histograms for requests, errors, queue time, inference time, batch size and batch tokens; every
series carries the ``backend`` and ``precision`` labels of the model being served.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections import defaultdict
from collections.abc import Callable

TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)

_HELP = {
    "fastrank_requests_total": ("counter", "Rerank requests answered, by HTTP status code."),
    "fastrank_errors_total": ("counter", "Rerank requests that ended in an error, by kind."),
    "fastrank_rejected_total": ("counter", "Requests refused because the queue was full (HTTP 503)."),
    "fastrank_cancelled_total": ("counter", "Queued requests dropped because their client went away."),
    "fastrank_pairs_total": ("counter", "Query-document pairs scored (windows, in --long-documents windows mode)."),
    "fastrank_queue_seconds": ("histogram", "Time a request waited before its first batch started (a request larger "
                               "than one batch waits again between its batches: see fastrank_request_seconds)."),
    "fastrank_inference_seconds": ("histogram", "Time of one batching step on the inference thread."),
    "fastrank_request_seconds": ("histogram", "End-to-end time of a rerank request inside the server."),
    "fastrank_batch_requests": ("histogram", "Requests sharing one batching step (a request scored over several "
                                "steps counts in each)."),
    "fastrank_batch_pairs": ("histogram", "Pairs (rows) scored in one batching step."),
    "fastrank_batch_tokens": ("histogram", "Padded tokens scored in one batching step."),
    "fastrank_queue_depth": ("gauge", "Requests accepted and not yet answered."),
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: dict[str, str]) -> str:
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}" if labels else ""


def _number(value: float) -> str:
    """A sample value, exact: whole numbers as integers, other floats by ``repr`` (``:g`` kept six digits, so a
    counter past a million printed as 1.23457e+06 and stopped moving between scrapes)."""
    value = float(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _buckets(name: str) -> tuple[float, ...]:
    return TIME_BUCKETS if name.endswith("_seconds") else SIZE_BUCKETS


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value


class Metrics:
    """Thread-safe counters/histograms rendered by ``render()``; ``labels`` are attached to every series."""

    def __init__(self, labels: dict[str, str] | None = None) -> None:
        self.labels = dict(labels or {})
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple], float] = defaultdict(float)
        self._hists: dict[str, _Histogram] = {}
        self.gauges: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._counters[(name, tuple(sorted(labels.items())))] += amount

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            self._hists.setdefault(name, _Histogram(_buckets(name))).observe(value)

    def observe_step(self, requests: int, pairs: int, tokens: int, inference_s: float, queue_s: list[float],
                     scored: bool = True) -> None:
        """One batching step; ``scored`` False for a step whose inference failed (its pairs are not counted as
        scored)."""
        self.observe("fastrank_batch_requests", requests)
        self.observe("fastrank_batch_pairs", pairs)
        self.observe("fastrank_batch_tokens", tokens)
        self.observe("fastrank_inference_seconds", inference_s)
        for q in queue_s:
            self.observe("fastrank_queue_seconds", q)
        if scored:
            self.inc("fastrank_pairs_total", pairs)

    def counter(self, name: str, **labels: str) -> float:
        return self._counters.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        """The Prometheus text format: HELP/TYPE lines, then samples; histograms with cumulative buckets."""
        lines: list[str] = []
        with self._lock:
            counters = dict(self._counters)
            hists = {k: (list(h.counts), h.sum, h.buckets) for k, h in self._hists.items()}
        for name, (kind, text) in _HELP.items():
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if kind == "counter":
                series = [(lbl, v) for (n, lbl), v in counters.items() if n == name] or [((), 0.0)]
                for lbl, v in sorted(series):
                    lines.append(f"{name}{_labels({**self.labels, **dict(lbl)})} {_number(v)}")
            elif kind == "gauge":
                value = self.gauges[name]() if name in self.gauges else 0
                lines.append(f"{name}{_labels(self.labels)} {_number(value)}")
            else:
                empty = _buckets(name)
                counts, total, buckets = hists.get(name, ([0] * (len(empty) + 1), 0.0, empty))
                running = 0
                for bound, count in zip([*buckets, float("inf")], counts):
                    running += count
                    le = _number(bound)
                    lines.append(f"{name}_bucket{_labels({**self.labels, 'le': le})} {running}")
                lines.append(f"{name}_sum{_labels(self.labels)} {_number(total)}")
                lines.append(f"{name}_count{_labels(self.labels)} {running}")
        return "\n".join(lines) + "\n"
