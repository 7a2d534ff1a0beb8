"""Reranking evaluation: pure-numpy metrics (the project's only implementation) and the model evaluator.

Importing this package imports numpy only; the evaluator calls whatever model it is given.
"""

from __future__ import annotations

from fastrank.evaluation.evaluators import CrossEncoderRerankingEvaluator, RerankingEvaluator
from fastrank.evaluation.metrics import (
    DEFAULT_KS,
    METRIC_NAMES,
    TIE_POLICY,
    MetricSpec,
    accuracy,
    average_precision,
    default_metrics,
    evaluate_rankings,
    ndcg,
    parse_metric,
    query_metrics,
    rank_order,
    recall,
    reciprocal_rank,
)

__all__ = [
    "CrossEncoderRerankingEvaluator",
    "DEFAULT_KS",
    "METRIC_NAMES",
    "TIE_POLICY",
    "MetricSpec",
    "RerankingEvaluator",
    "accuracy",
    "average_precision",
    "default_metrics",
    "evaluate_rankings",
    "ndcg",
    "parse_metric",
    "query_metrics",
    "rank_order",
    "recall",
    "reciprocal_rank",
]
