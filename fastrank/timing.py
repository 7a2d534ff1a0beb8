"""Timing for benchmarks and the CLI: warm-up, repeated runs, percentiles and a throughput interval (the range
of the runs, or from ``MIN_BOOTSTRAP_RUNS`` runs a bootstrap 95% interval).

One implementation serves ``python -m bench`` and ``fastrank bench``; never used for assertions in unit tests.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# With 5 runs or fewer the 2.5th and 97.5th percentiles of bootstrapped medians are the slowest and fastest runs,
# so a "bootstrap 95% interval" would only be the range of the runs under another name.
MIN_BOOTSTRAP_RUNS = 6


def interval_kind(runs: int) -> str:
    """``"bootstrap95"`` from ``MIN_BOOTSTRAP_RUNS`` runs on, else ``"range"``: the throughput interval of ``runs``."""
    return "bootstrap95" if runs >= MIN_BOOTSTRAP_RUNS else "range"


@dataclass
class Timing:
    """Wall-clock seconds of repeated runs of the same work (``items`` units of work per run)."""

    seconds: list[float]
    items: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median(self) -> float:
        return float(np.median(self.seconds))

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.seconds, q))

    @property
    def items_per_second(self) -> float:
        """Throughput of the median run."""
        return self.items / self.median if self.median > 0 else float("inf")

    @property
    def interval_kind(self) -> str:
        """What ``summary``'s interval is (``interval_kind`` of this timing's run count)."""
        return interval_kind(len(self.seconds))

    def throughput_range(self) -> tuple[float, float]:
        """Throughput (items/s) of the slowest and of the fastest run."""
        slowest, fastest = max(self.seconds), min(self.seconds)
        return (self.items / slowest if slowest > 0 else float("inf"),
                self.items / fastest if fastest > 0 else float("inf"))

    def throughput_interval(self, confidence: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
        """Bootstrap interval of the median run's throughput (items/s); with fewer than ``MIN_BOOTSTRAP_RUNS`` runs
        it is (nearly) ``throughput_range``."""
        rng = np.random.default_rng(seed)
        s = np.asarray(self.seconds)
        medians = np.median(rng.choice(s, size=(resamples, len(s)), replace=True), axis=1)
        lo, hi = np.percentile(self.items / medians, [(1 - confidence) / 2 * 100, (1 + confidence) / 2 * 100])
        return float(lo), float(hi)

    def summary(self) -> dict[str, Any]:
        """JSON-ready figures; ``items_per_s_ci95`` (the key kept for old readers) holds the interval that
        ``interval_kind`` names: the range of the runs, or a bootstrap 95% interval."""
        kind = self.interval_kind
        lo, hi = self.throughput_interval() if kind == "bootstrap95" else self.throughput_range()
        return {"runs": len(self.seconds), "items": self.items, "median_s": round(self.median, 6),
                "p50_s": round(self.percentile(50), 6), "p95_s": round(self.percentile(95), 6),
                "p99_s": round(self.percentile(99), 6), "min_s": round(min(self.seconds), 6),
                "items_per_s": round(self.items_per_second, 2), "items_per_s_ci95": [round(lo, 2), round(hi, 2)],
                "interval_kind": kind}


def measure(fn: Callable[[], Any], items: int = 1, warmup: int = 1, repeats: int = 5,
            min_seconds: float = 0.0, max_repeats: int = 1000) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then at least ``repeats`` times (and at least ``min_seconds`` in all,
    capped at ``max_repeats`` runs); returns every run's wall time."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        fn()
    seconds: list[float] = []
    total = 0.0
    while len(seconds) < repeats or (total < min_seconds and len(seconds) < max_repeats):
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        seconds.append(elapsed)
        total += elapsed
    return Timing(seconds, items)


def measure_round_robin(calls: dict[str, Callable[[], Any]], items: int = 1, repeats: int = 2,
                        before: Callable[[str, int], None] | None = None) -> tuple[dict[str, Timing], dict[str, Any]]:
    """Time several calls ``repeats`` times each, in turn (a, b, ..., a, b, ...), so drift on a shared machine
    falls on every call alike; returns each call's ``Timing`` and its first run's output. ``before(name, run)`` is
    called before each run (progress)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    seconds: dict[str, list[float]] = {name: [] for name in calls}
    first: dict[str, Any] = {}
    for run in range(repeats):
        for name, fn in calls.items():
            if before is not None:
                before(name, run)
            start = time.perf_counter()
            out = fn()
            seconds[name].append(time.perf_counter() - start)
            first.setdefault(name, out)
    return {name: Timing(s, items) for name, s in seconds.items()}, first
