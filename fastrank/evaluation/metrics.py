"""Reranking metrics: the one implementation used by the evaluator, the bench and the CLI (pure numpy).

Metric names
    A metric is written ``name`` or ``name@k`` (case-insensitive; ``parse_metric`` reads it, ``str(spec)`` writes the
    canonical lowercase form):

    ==============  ==============================================================================================
    ``map``         mean average precision over the full ranking (no cut-off; ``map@k`` is rejected)
    ``mrr@k``       reciprocal rank of the first relevant document if it is in the top k, else 0
    ``ndcg@k``      DCG@k / ideal DCG@k with linear gain (gain = label, as ranx's ``ndcg`` and trec_eval's default)
                    and log2 discount (rank r, from 1, is divided by log2(r + 1))
    ``recall@k``    relevant documents in the top k / relevant documents among the query's candidates
    ``accuracy@k``  1 if any relevant document is in the top k, else 0 (hit rate / success@k)
    ==============  ==============================================================================================

    Without ``@k`` the cut-off is the whole candidate list. Every metric is the mean of a per-query value.

Relevance
    A document is relevant when its label is > 0. Labels may be graded (any real number); NDCG uses
    ``max(label, 0)`` as the gain, the other metrics only use relevant / not relevant.

Queries that are skipped (and counted, never zero-filled)
    A query with no candidates is counted in ``EvalResult.num_skipped_no_candidates``; a query whose candidates are
    all non-relevant is counted in ``num_skipped_no_positive``. Neither takes part in the means (a zero would
    measure the dataset, not the model). If no query is left, ``DataError`` says so.

Ties (deterministic and pessimistic)
    Documents are ranked by score, highest first. Within a group of exactly equal scores, documents are ordered by
    label, lowest first: relevant documents are ranked *after* the non-relevant ones they tie with (and, for graded
    labels, higher grades after lower ones). The caller's input order never decides a tie, because many datasets
    store positives first and a tie-breaking sort would leak the labels: a constant scorer gets the worst value
    possible, never a free win. Count on ties being real: float32 scores from a saturated sigmoid tie often.
    ``EvalResult.extra["num_queries_with_ties"]`` reports how many evaluated queries had a tie involving a relevant
    document, i.e. where the policy changed the result.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrank.errors import DataError
from fastrank.types import EvalResult

METRIC_NAMES = ("map", "mrr", "ndcg", "recall", "accuracy")
DEFAULT_KS = (1, 3, 5, 10, 100)
TIE_POLICY = "pessimistic: within tied scores, relevant documents rank last"

_METRIC_RE = re.compile(r"^\s*([a-z]+)\s*(?:@\s*(\S+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class MetricSpec:
    """A parsed metric name: ``name`` from METRIC_NAMES and cut-off ``k`` (None = the whole candidate list)."""

    name: str
    k: int | None = None

    def __str__(self) -> str:
        return self.name if self.k is None else f"{self.name}@{self.k}"


def parse_metric(metric: str | MetricSpec) -> MetricSpec:
    """Read ``"ndcg@10"``, ``"MRR@10"``, ``"map"``... into a MetricSpec; unknown names list the known ones."""
    if isinstance(metric, MetricSpec):
        return metric
    if not isinstance(metric, str):
        raise TypeError(f"a metric is a string like 'ndcg@10', got {type(metric).__name__}")
    match = _METRIC_RE.match(metric)
    name = match.group(1).lower() if match else None
    if name not in METRIC_NAMES:
        raise ValueError(
            f"unknown metric {metric!r}: expected one of {', '.join(METRIC_NAMES)}, optionally with a cut-off "
            f"written name@k (e.g. 'ndcg@10', 'mrr@10', 'recall@100', 'accuracy@1', 'map')"
        )
    k_text = match.group(2)
    if k_text is None:
        return MetricSpec(name)
    if name == "map":
        raise ValueError(f"{metric!r}: map is computed over the full ranking; write 'map' without a cut-off")
    if not k_text.isdigit() or int(k_text) < 1:
        raise ValueError(f"{metric!r}: the cut-off after '@' must be a positive integer, e.g. '{name}@10'")
    return MetricSpec(name, int(k_text))


def default_metrics(ks: int | Iterable[int] = DEFAULT_KS) -> list[str]:
    """``map`` plus mrr@k, ndcg@k, recall@k and accuracy@k for every k in ``ks`` (one integer k: just k)."""
    ks = _check_ks(ks)
    out = ["map"]
    for name in ("mrr", "ndcg", "recall", "accuracy"):
        out.extend(f"{name}@{k}" for k in ks)
    return out


def parse_metrics(metrics: str | MetricSpec | Iterable[str | MetricSpec]) -> list[str]:
    """Canonical names of ``metrics``, duplicates dropped; one name (``"ndcg@10"``) stands for ``["ndcg@10"]``.
    An empty list raises ValueError."""
    if isinstance(metrics, (str, MetricSpec)):
        metrics = [metrics]
    elif not isinstance(metrics, Iterable):
        raise TypeError(f"metrics must be a metric name like 'ndcg@10' or a list of them, got "
                        f"{type(metrics).__name__}")
    names = list(dict.fromkeys(str(parse_metric(m)) for m in metrics))
    if not names:
        raise ValueError("metrics is empty: name at least one, e.g. metrics=['ndcg@10']")
    return names


def _check_ks(ks: int | Iterable[int]) -> list[int]:
    """The cut-offs as a list of distinct ints; a single integer ``k`` stands for ``(k,)``."""
    if isinstance(ks, numbers.Integral):
        ks = (ks,)
    elif isinstance(ks, (str, bytes)) or not isinstance(ks, Iterable):
        raise ValueError(f"ks must be a positive integer or a list of them (cut-offs, e.g. ks=(1, 10)), got {ks!r}")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"every cut-off k must be a positive integer, got {k!r}")
        if int(k) not in out:
            out.append(int(k))
    if not out:
        raise ValueError("ks is empty: give at least one cut-off, e.g. ks=(10,)")
    return out


# Per-query kernels ------------------------------------------------------------------------------------------------
# Each takes the labels of one query's candidates in ranked order (best first), e.g. ``labels[rank_order(s, labels)]``.
# A query without any relevant document gets 0.0 (evaluate_rankings excludes such queries before calling them).


def rank_order(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices of the candidates best first: by score descending, ties by label ascending (relevant last).

    Equal scores and equal labels keep input order, which no metric can observe. NaN scores are not allowed
    (``evaluate_rankings`` rejects them).
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    return np.lexsort((labels, -scores))


def _cut(ranked_labels: np.ndarray, k: int | None) -> np.ndarray:
    return ranked_labels if k is None else ranked_labels[:k]


def average_precision(ranked_labels: np.ndarray) -> float:
    """Mean over the relevant documents of precision at their rank (full depth)."""
    rel = np.asarray(ranked_labels) > 0
    num_rel = int(rel.sum())
    if num_rel == 0:
        return 0.0
    hits = np.cumsum(rel)
    ranks = np.arange(1, rel.size + 1)
    return float(np.sum(hits[rel] / ranks[rel]) / num_rel)


def reciprocal_rank(ranked_labels: np.ndarray, k: int | None = None) -> float:
    """1 / rank of the first relevant document when it is within the top k, else 0."""
    rel = _cut(np.asarray(ranked_labels), k) > 0
    if not rel.any():
        return 0.0
    return 1.0 / (int(np.argmax(rel)) + 1)


def discounts(n: int) -> np.ndarray:
    """NDCG's position discounts 1 / log2(rank + 1) for ranks 1..n."""
    return 1.0 / np.log2(np.arange(2, n + 2))


def ndcg(ranked_labels: np.ndarray, k: int | None = None) -> float:
    """DCG@k / ideal DCG@k with gain max(label, 0) and discount 1 / log2(rank + 1)."""
    gains = np.clip(np.asarray(ranked_labels, dtype=np.float64), 0.0, None)
    ideal = _cut(np.sort(gains)[::-1], k)
    discount = discounts(ideal.size)
    idcg = float(np.sum(ideal * discount))
    if idcg == 0.0:
        return 0.0
    return float(np.sum(_cut(gains, k) * discount) / idcg)


def recall(ranked_labels: np.ndarray, k: int | None = None) -> float:
    """Relevant documents in the top k / all relevant documents of the query."""
    rel = np.asarray(ranked_labels) > 0
    num_rel = int(rel.sum())
    if num_rel == 0:
        return 0.0
    return float(_cut(rel, k).sum() / num_rel)


def accuracy(ranked_labels: np.ndarray, k: int | None = None) -> float:
    """1 if any relevant document is in the top k, else 0."""
    return float(bool((_cut(np.asarray(ranked_labels), k) > 0).any()))


_KERNELS = {
    "map": lambda ranked, k: average_precision(ranked),
    "mrr": reciprocal_rank,
    "ndcg": ndcg,
    "recall": recall,
    "accuracy": accuracy,
}


def query_metrics(scores: np.ndarray, labels: np.ndarray, metrics: Sequence[str | MetricSpec]) -> dict[str, float]:
    """All ``metrics`` for one query, after ranking with the pessimistic tie policy (no validation)."""
    labels = np.asarray(labels, dtype=np.float64)
    ranked = labels[rank_order(scores, labels)]
    specs = [parse_metric(m) for m in metrics]
    return {str(s): _KERNELS[s.name](ranked, s.k) for s in specs}


# Aggregation ------------------------------------------------------------------------------------------------------


def _where(i: int, query_ids: Sequence[Any] | None) -> str:
    if query_ids is None or query_ids[i] is None:
        return f"query {i}"
    return f"query {i} (id {query_ids[i]!r})"


def _as_vector(values: Any, what: str, i: int, query_ids: Sequence[Any] | None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} of {_where(i, query_ids)} must be numbers: {exc}") from exc
    if arr.ndim == 0:
        raise DataError(
            f"{what} of {_where(i, query_ids)} must be a list (one value per candidate), got the single number "
            f"{arr.item()!r}: {what} are one list per query, so one query's go in a list of their own ([[...]])"
        )
    if arr.ndim != 1:
        raise DataError(
            f"{what} of {_where(i, query_ids)} must be a 1-D sequence (one value per candidate), got shape "
            f"{arr.shape}; a model with several output labels needs one score per document for ranking"
        )
    return arr


def _tie_matters(scores: np.ndarray, labels: np.ndarray) -> bool:
    """True when a relevant document shares its exact score with a document of another label."""
    rel_scores = scores[labels > 0]
    for value in np.unique(rel_scores):
        tied = labels[scores == value]
        if np.unique(tied).size > 1:
            return True
    return False


def evaluate_rankings(
    scores: Sequence[Sequence[float] | np.ndarray],
    labels: Sequence[Sequence[float] | np.ndarray],
    ks: int | Iterable[int] | None = None,
    metrics: str | MetricSpec | Sequence[str | MetricSpec] | None = None,
    *,
    query_ids: Sequence[Any] | None = None,
    per_query: bool = False,
) -> EvalResult:
    """Mean reranking metrics over queries; ``scores[i]`` and ``labels[i]`` hold query i's candidates.

    Args:
        scores: per query, one score per candidate (higher = more relevant). NaN raises DataError.
        labels: per query, one label per candidate; > 0 means relevant, larger = more relevant for NDCG.
        ks: cut-offs for the default metric set (``map`` + mrr/ndcg/recall/accuracy at each k); default DEFAULT_KS.
            One integer k is ``(k,)``; an empty list is an error.
        metrics: explicit metric names instead (e.g. ``["map", "ndcg@10"]``; one name as a string, ``"ndcg@10"``, is
            that one metric); give ``ks`` or ``metrics``, not both.
        query_ids: optional ids (None entries allowed), used only to name queries in error messages.
        per_query: also return each evaluated query's values in ``extra["per_query"]`` (metric -> list, aligned
            with ``extra["query_indices"]``), e.g. for bootstrap confidence intervals or paired tests.

    Returns:
        EvalResult with ``metrics`` keyed by canonical names (``"map"``, ``"ndcg@10"``...), ``num_queries`` = the
        evaluated queries, and the skip counts. Queries without candidates or without any relevant candidate are
        excluded and counted (see the module docstring, also for the tie policy).
    """
    if metrics is not None and ks is not None:
        raise ValueError("give either ks (cut-offs for the default metric set) or metrics (explicit names), not both")
    names = parse_metrics(metrics) if metrics is not None else default_metrics(DEFAULT_KS if ks is None else ks)
    specs = [parse_metric(name) for name in names]
    for name, value in (("scores", scores), ("labels", labels)):
        if value is None or isinstance(value, (str, bytes, Mapping)):
            hint = (f": pass the values in one order for both, e.g. [{name}[q] for q in query_ids]"
                    if isinstance(value, Mapping) else "")
            raise TypeError(f"{name} must be a list with one list of numbers per query, got "
                            f"{'None' if value is None else type(value).__name__}{hint}")
    scores, labels = list(scores), list(labels)
    query_ids = None if query_ids is None else list(query_ids)
    if len(scores) != len(labels):
        raise DataError(f"got scores for {len(scores)} queries but labels for {len(labels)}")
    if query_ids is not None and len(query_ids) != len(scores):
        raise DataError(f"got {len(query_ids)} query ids for {len(scores)} queries")

    values: dict[str, list[float]] = {name: [] for name in names}
    evaluated: list[int] = []
    no_positive = no_candidates = with_ties = num_docs = all_relevant = 0
    for i, (query_scores, query_labels) in enumerate(zip(scores, labels)):
        s = _as_vector(query_scores, "scores", i, query_ids)
        y = _as_vector(query_labels, "labels", i, query_ids)
        if s.size != y.size:
            raise DataError(f"{_where(i, query_ids)} has {s.size} scores but {y.size} labels")
        if np.isnan(s).any():
            bad = np.flatnonzero(np.isnan(s)).tolist()
            raise DataError(f"{_where(i, query_ids)} has NaN scores at candidate positions {bad[:10]}")
        if not np.isfinite(y).all():
            raise DataError(f"{_where(i, query_ids)} has non-finite labels ({y[~np.isfinite(y)][0]}); labels must "
                            "be finite numbers")
        if s.size == 0:
            no_candidates += 1
            continue
        if not (y > 0).any():
            no_positive += 1
            continue
        evaluated.append(i)
        num_docs += s.size
        all_relevant += bool((y > 0).all())  # scores 1.0 whatever the ranking (export verification leaves it out)
        with_ties += _tie_matters(s, y)
        for name, value in query_metrics(s, y, specs).items():
            values[name].append(value)

    if not evaluated:
        raise DataError(
            f"no query left to evaluate: of {len(scores)} queries, {no_positive} have no relevant candidate "
            f"(label > 0) and {no_candidates} have no candidates"
        )
    extra: dict[str, Any] = {
        "num_documents": num_docs,
        "num_queries_all_relevant": all_relevant,
        "num_queries_with_ties": with_ties,
        "tie_policy": TIE_POLICY,
    }
    if per_query:
        extra["query_indices"] = evaluated
        extra["per_query"] = {name: list(v) for name, v in values.items()}
    return EvalResult(
        metrics={name: float(np.mean(v)) for name, v in values.items()},
        num_queries=len(evaluated),
        num_skipped_no_positive=no_positive,
        num_skipped_no_candidates=no_candidates,
        extra=extra,
    )
