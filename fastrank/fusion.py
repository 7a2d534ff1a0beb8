"""Score fusion of a reranker with its first stage: ``z(reranker) + weight * z(first stage)`` per query.

A reranker trained on same-topic candidate lists judges answers well but topicality poorly; its retriever is the
reverse. Standardising both per query (z-scores) puts them on one scale, so one weight, chosen on held-out queries,
trades them off (bench/RESULTS.md, issue #3).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-query standardisation (mean 0, std 1; a constant list becomes all zeros)."""
    x = np.asarray(x, dtype=np.float64)
    std = float(x.std()) if len(x) else 0.0
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def fuse_scores(reranker_scores: Sequence[float] | np.ndarray, first_stage_scores: Sequence[float] | np.ndarray,
                weight: float) -> np.ndarray:
    """``z(reranker_scores) + weight * z(first_stage_scores)`` for one query's candidates (float64)."""
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"fusion weight must be a finite number >= 0, got {weight!r}")
    first = np.asarray(first_stage_scores, dtype=np.float64).reshape(-1)
    rer = np.asarray(reranker_scores, dtype=np.float64).reshape(-1)
    if first.shape != rer.shape:
        raise ValueError(f"first_stage_scores has {first.size} scores for {rer.size} documents; give one per document")
    if not np.isfinite(first).all():
        raise ValueError("first_stage_scores must be finite numbers")
    return zscore(rer) + float(weight) * zscore(first)
