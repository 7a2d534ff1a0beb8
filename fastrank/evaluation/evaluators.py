"""RerankingEvaluator: score every (query, candidate) pair with a model, then compute reranking metrics.

The model is anything with ``predict(pairs, batch_size=..., show_progress_bar=...)`` returning one score per pair:
fastrank's ``CrossEncoder`` or ``Reranker`` (an exported artifact as served), a sentence-transformers
``CrossEncoder``. A model with several labels (``--loss ce``) is asked for logits and ranked by its last class's
probability (``fastrank.reranker.relevance``), as everywhere in fastrank. All pairs of all
queries go to one ``predict`` call so the model's length-sorted batching sees the whole set. Metrics come from
``fastrank.evaluation.metrics`` (pessimistic ties; queries without candidates or positives are skipped and counted).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.data import normalize_document
from fastrank.documents import Document
from fastrank.errors import DataError, FastrankError
from fastrank.evaluation.metrics import DEFAULT_KS, default_metrics, evaluate_rankings, parse_metric, parse_metrics
from fastrank.types import EvalResult

logger = logging.getLogger(__name__)

SAMPLE_FORMATS = (
    '{"query": str, "documents": [str, ...], "labels": [number, ...]}  (label > 0 = relevant; graded allowed; a '
    'document may be {"text": str, "title": str}), or '
    '{"query": str, "positive": [str, ...], "negative": [str, ...]}  (as sentence-transformers)'
)


@dataclass(frozen=True)
class _Query:
    query_id: str | None
    query: str
    documents: tuple[Document, ...]
    labels: np.ndarray


def _text_list(value: Any, key: str, where: str) -> tuple[Document, ...]:
    """Documents as the data readers take them: strings, or ``{"text", "title"}`` (``fastrank.documents``)."""
    if isinstance(value, (str, Mapping)):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(d, (str, Mapping)) for d in value):
        raise DataError(f"{where}: {key!r} must be a list of strings (or {{'text', 'title'}} objects); accepted "
                        f"samples: {SAMPLE_FORMATS}")
    return tuple(normalize_document(d, f"{where}: {key!r} item {i}") for i, d in enumerate(value))


def _normalize_sample(sample: Any, where: str) -> _Query:
    """Validate one sample (either accepted shape) into an immutable _Query; never touches the caller's dict."""
    if not isinstance(sample, Mapping):
        raise DataError(f"{where}: expected an object, got {type(sample).__name__}; accepted samples: {SAMPLE_FORMATS}")
    query = sample.get("query")
    if not isinstance(query, str):
        raise DataError(f"{where}: 'query' must be a string, got {type(query).__name__}; accepted: {SAMPLE_FORMATS}")
    if not query.strip():
        raise DataError(f"{where}: 'query' is empty; every sample needs a query to rank its documents for")
    query_id = sample.get("query_id")
    query_id = None if query_id is None else str(query_id)
    has_list = "documents" in sample or "labels" in sample
    has_pn = "positive" in sample or "negative" in sample
    if has_list and has_pn:
        raise DataError(
            f"{where}: give either 'documents' + 'labels' or 'positive' + 'negative', not both "
            f"(found keys {sorted(sample)})"
        )
    if has_list:
        if "documents" not in sample or "labels" not in sample:
            raise DataError(
                f"{where}: 'documents' and 'labels' go together (one label per document); got {sorted(sample)}"
            )
        documents = _text_list(sample["documents"], "documents", where)
        raw = sample["labels"]
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence) or not all(
            isinstance(x, (int, float, bool, np.integer, np.floating)) for x in raw
        ):
            raise DataError(f"{where}: 'labels' must be a list of numbers (label > 0 = relevant)")
        labels = np.asarray(raw, dtype=np.float64)
        if labels.size != len(documents):
            raise DataError(
                f"{where}: {len(documents)} documents but {labels.size} labels; give one label per document"
            )
        if np.isnan(labels).any():
            raise DataError(f"{where}: 'labels' contains NaN")
    elif "positive" in sample:
        positive = _text_list(sample["positive"], "positive", where)
        negative = _text_list(sample.get("negative", []), "negative", where)
        documents = positive + negative
        labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    else:
        raise DataError(
            f"{where}: no candidates given (found keys {sorted(sample)}); accepted samples: {SAMPLE_FORMATS}"
        )
    labels.setflags(write=False)
    return _Query(query_id, query, documents, labels)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RerankingEvaluator:
    """Reranking quality of a model on labeled candidate lists (MAP, MRR@k, NDCG@k, Recall@k, Accuracy@k).

    Args:
        samples: a list of dicts, each ``{"query", "documents", "labels"}`` (optionally ``"query_id"``) or
            ``{"query", "positive", "negative"}``. Copied and validated here; the caller's data is never modified.
        name: prefix of the returned metric names (``f"{name}_map"``), as in sentence-transformers.
        ks: cut-offs for the default metric set (``map`` + mrr/ndcg/recall/accuracy @k); default DEFAULT_KS.
        batch_size: passed to ``model.predict``.
        show_progress_bar: passed to ``model.predict`` (None lets the model decide).
        primary_metric: the metric a trainer should track (unprefixed, e.g. ``"ndcg@10"``); must be computed.
        metrics: explicit metric names instead of ``ks``.

    Attributes:
        primary_metric: the *prefixed* key of the primary metric in ``__call__``'s result, for
            ``metric_for_best_model``.
    """

    def __init__(
        self,
        samples: Sequence[Mapping[str, Any]],
        name: str = "",
        ks: Sequence[int] | None = None,
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        primary_metric: str = "map",
        metrics: Sequence[str] | None = None,
    ) -> None:
        if isinstance(samples, Mapping) or not isinstance(samples, Sequence):
            raise TypeError(f"samples must be a list of dicts; accepted samples: {SAMPLE_FORMATS}")
        if len(samples) == 0:
            raise DataError("RerankingEvaluator needs at least one sample")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.queries = [
            s if isinstance(s, _Query) else _normalize_sample(s, f"sample {i}") for i, s in enumerate(samples)
        ]
        self.name = name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        if metrics is not None and ks is not None:
            raise ValueError(
                "give either ks (cut-offs for the default metric set) or metrics (explicit names), not both"
            )
        if metrics is not None:
            self.metric_names = parse_metrics(metrics)  # one name stands for a list of it; empty is an error
        else:
            self.metric_names = default_metrics(DEFAULT_KS if ks is None else ks)
        primary = str(parse_metric(primary_metric))
        if primary not in self.metric_names:
            raise ValueError(
                f"primary_metric {primary_metric!r} is not computed by this evaluator; choose one of "
                f"{self.metric_names} or add it to metrics/ks"
            )
        self.primary_metric_unprefixed = primary
        self.primary_metric = self._prefix(primary)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str], **kwargs: Any) -> RerankingEvaluator:
        """Load grouped JSONL (one ``{"query_id", "query", "documents", "labels"}`` object per line; blank lines
        are skipped), or a ``.json`` file holding one array of such objects. A bad line raises DataError naming the
        file and line number."""
        from fastrank.data import json_records

        path = Path(path)
        try:
            records = json_records(path)
        except OSError as exc:
            raise DataError(f"cannot read evaluation file {path}: {exc}") from exc
        queries = [_normalize_sample(obj, where) for where, obj in records]
        if not queries:
            raise DataError(f"{path} holds no samples (empty file)")
        return cls(queries, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> RerankingEvaluator:
        """Load any dataset file ``fastrank.data.read_groups`` reads: grouped JSONL (through ``from_jsonl``, which
        also takes sentence-transformers' sample shapes), flat or grouped CSV / TSV, Parquet."""
        if Path(path).suffix.lower() in (".jsonl", ".json"):
            return cls.from_jsonl(path, **kwargs)
        from fastrank.data import read_groups

        groups = read_groups(str(path))
        return cls([{"query": g.query, "documents": g.documents, "labels": g.labels} for g in groups], **kwargs)

    def _prefix(self, metric: str) -> str:
        return f"{self.name}_{metric}" if self.name else metric

    def evaluate(self, model: Any) -> EvalResult:
        """Score all pairs in one ``model.predict`` call and return unprefixed metrics with skip counts.

        Queries without a relevant candidate are not scored (they are skipped by the metrics anyway).
        """
        predict = getattr(model, "predict", None)
        if not callable(predict):
            raise TypeError(
                f"model must have a predict(pairs, batch_size=..., show_progress_bar=...) method returning one score "
                f"per pair; got {type(model).__name__}"
            )
        pairs: list[tuple[str, str]] = []
        spans: list[tuple[int, int] | None] = []
        for q in self.queries:
            if (q.labels > 0).any():
                spans.append((len(pairs), len(pairs) + len(q.documents)))
                pairs.extend((q.query, d) for d in q.documents)
            else:
                spans.append(None)
        start = time.perf_counter()
        multi_class = int(getattr(model, "num_labels", 1) or 1) > 1  # fastrank's, sentence-transformers' models
        if pairs:
            takes = "activation" in inspect.signature(predict).parameters  # fastrank's; ST's gives logits already
            kwargs = {"activation": "identity"} if multi_class and takes else {}  # relevance() takes the softmax
            raw = predict(pairs, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar, **kwargs)
            all_scores = np.asarray(raw, dtype=np.float64)
        else:
            all_scores = np.zeros(0)
        seconds = time.perf_counter() - start
        if all_scores.ndim == 2 and all_scores.shape[1] == 1:
            all_scores = all_scores[:, 0]
        elif multi_class and all_scores.ndim == 2 and len(all_scores):
            from fastrank.reranker import relevance

            all_scores = relevance(all_scores, "identity").astype(np.float64)  # the last class's probability
        if all_scores.shape != (len(pairs),):
            raise FastrankError(
                f"{type(model).__name__}.predict returned shape {all_scores.shape} for {len(pairs)} pairs; reranking "
                f"needs one score per pair (a one-label model, or a backend that reduces its outputs to one score)"
            )
        # Unscored queries (no positive) get placeholder zeros so the metrics count them as skipped for that reason.
        scores = [
            all_scores[span[0]:span[1]] if span is not None else np.zeros(len(q.documents))
            for q, span in zip(self.queries, spans)
        ]
        result = evaluate_rankings(
            scores,
            [q.labels for q in self.queries],
            metrics=self.metric_names,
            query_ids=[q.query_id for q in self.queries],
        )
        extra = {**result.extra, "name": self.name, "num_pairs": len(pairs), "predict_seconds": seconds}
        return replace(result, extra=extra)

    def __call__(
        self, model: Any, output_path: str | os.PathLike[str] | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluate ``model``; returns ``{prefixed metric: value}`` (``f"{name}_map"``, or ``"map"`` without a name).

        ``output_path``: a path ending in ``.json`` is written as that file; any other path is a directory that
        receives ``RerankingEvaluator[_name]_results.json``. The file holds the full EvalResult (skip counts
        included) plus name, epoch and steps; it is replaced, not appended to.
        """
        result = self.evaluate(model)
        metrics = {self._prefix(k): v for k, v in result.metrics.items()}
        logger.info(
            "RerankingEvaluator%s: %d queries (%d skipped without positive, %d without candidates)%s: %s",
            f" ({self.name})" if self.name else "", result.num_queries, result.num_skipped_no_positive,
            result.num_skipped_no_candidates, f" epoch {epoch} step {steps}" if epoch != -1 else "",
            ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()),
        )
        if output_path is not None:
            target = Path(output_path)
            if target.suffix.lower() != ".json":
                target = target / f"RerankingEvaluator{'_' + self.name if self.name else ''}_results.json"
            payload = {"name": self.name, "epoch": epoch, "steps": steps,
                       "primary_metric": self.primary_metric, **result.to_dict()}
            _write_json_atomic(target, payload)
        return metrics
