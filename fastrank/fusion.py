"""Score fusion of a reranker with its first stage: ``z(reranker) + weight * z(first stage)`` per query.

A reranker trained on same-topic candidate lists judges answers well but topicality poorly; its retriever is the
reverse. Standardising both per query (z-scores) puts them on one scale, so one weight, chosen on held-out queries,
trades them off (bench/RESULTS.md, issue #3).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import numpy as np


def zscore(x: np.ndarray) -> np.ndarray:
    """Per-query standardisation (mean 0, std 1; a constant list becomes all zeros). Scaled to a largest magnitude
    of 1 first (z-scores do not change), so scores near the float64 limits neither overflow nor vanish."""
    x = np.asarray(x, dtype=np.float64)
    scale = float(np.abs(x).max()) if len(x) else 0.0
    if scale > 0:
        x = x / scale
    std = float(x.std()) if len(x) else 0.0
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def _finite_scores(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """``values`` (a list, tuple, array or any iterable of numbers) as a flat float64 array of finite numbers; a
    non-number or a NaN/inf raises ValueError naming ``name`` and the item's position."""
    if (values is None or isinstance(values, (str, bytes, Mapping, numbers.Number))
            or (isinstance(values, np.ndarray) and values.ndim == 0)):
        raise ValueError(f"{name} must be a list of numbers (one per document), got "
                         f"{'None' if values is None else type(values).__name__}")
    if not isinstance(values, (np.ndarray, Sequence)) and hasattr(values, "__array__"):
        try:
            values = np.asarray(values)  # a torch tensor (sentence-transformers' similarity), a pandas Series
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name} must be numbers on the CPU, one per document: {exc}") from exc
    if not isinstance(values, (np.ndarray, Sequence)):
        try:
            values = list(values)  # a generator, a pandas Series
        except TypeError:
            raise ValueError(f"{name} must be a list of numbers (one per document), got "
                             f"{type(values).__name__}") from None
    if isinstance(values, np.ndarray) and values.dtype.kind not in "iuf":
        values = values.reshape(-1).tolist()  # object, string or bool arrays: their items are checked below
    if isinstance(values, Sequence):
        for i, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} item {i} must be a number, got {type(value).__name__}")
    try:
        scores = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numbers, one per document: {exc}") from exc
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{name} must be finite numbers; item {int(bad[0])} is {scores[bad[0]]} "
                         f"({bad.size} not finite)")
    return scores


def check_fusion_input(first_stage_scores: Sequence[float] | np.ndarray | None, num_documents: int,
                       weight: float) -> np.ndarray | None:
    """The first-stage scores as float64 (None when not given), after checking them and ``weight``: one finite
    score per document, a finite weight >= 0, and scores present whenever the weight is above 0. Call it before
    scoring, so bad input costs no inference."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"fusion_weight must be a finite number >= 0, got {weight!r}")
    if first_stage_scores is None:
        if weight:
            raise ValueError("fusion_weight needs first_stage_scores: one retriever score per document")
        return None
    first = _finite_scores(first_stage_scores, "first_stage_scores")
    if first.size != num_documents:
        raise ValueError(f"first_stage_scores has {first.size} scores for {num_documents} documents; give one per "
                         "document")
    return first


def fuse_scores(reranker_scores: Sequence[float] | np.ndarray, first_stage_scores: Sequence[float] | np.ndarray,
                weight: float) -> np.ndarray:
    """``z(reranker_scores) + weight * z(first_stage_scores)`` for one query's candidates (float64). Both must be
    finite numbers, one per candidate: a NaN or infinite score is refused (ValueError), not standardised away."""
    rer = _finite_scores(reranker_scores, "reranker_scores")
    if first_stage_scores is None:
        raise ValueError("fuse_scores needs first_stage_scores: one retriever score per reranker score")
    first = check_fusion_input(first_stage_scores, rer.size, weight)
    return zscore(rer) + float(weight) * zscore(first)
