"""RerankingEvaluator: score every (query, candidate) pair with a model, then compute reranking metrics.

The model is anything with ``predict(pairs, batch_size=..., show_progress_bar=...)`` returning one score per pair:
fastrank's ``CrossEncoder`` or ``Reranker`` (an exported artifact as served), a sentence-transformers
``CrossEncoder``. A model with several labels (``--loss ce``) is asked for logits and ranked by its last class's
probability (``fastrank.reranker.relevance``), as everywhere in fastrank. All pairs of all
queries go to one ``predict`` call so the model's length-sorted batching sees the whole set. Metrics come from
``fastrank.evaluation.metrics`` (pessimistic ties; queries without candidates or positives are skipped and counted).

Porting from sentence-transformers: ``CrossEncoderRerankingEvaluator`` is this class under that name, and takes
its samples (``positive`` with ``negative`` or with ``documents``), ``at_k``, ``always_rerank_positives`` and
``write_csv``; see the class docstring for what differs.
"""

from __future__ import annotations

import csv
import inspect
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.batching import check_positive_int, is_integer
from fastrank.data import as_number, check_unicode, normalize_document
from fastrank.documents import Document, is_blank
from fastrank.errors import DataError, FastrankError, warn_caller
from fastrank.evaluation.metrics import (
    DEFAULT_KS,
    TIE_POLICY,
    default_metrics,
    discounts,
    evaluate_rankings,
    parse_metric,
    parse_metrics,
)
from fastrank.types import EvalResult

logger = logging.getLogger(__name__)

SAMPLE_FORMATS = (
    '{"query": str, "documents": [str, ...], "labels": [number, ...]}  (label > 0 = relevant; graded allowed; a '
    'document may be {"text": str, "title": str}), or '
    '{"query": str, "positive": [str, ...], "negative": [str, ...]}, or '
    '{"query": str, "positive": [str, ...], "documents": [str, ...]}  (both as sentence-transformers; documents = '
    'the first-stage ranking, best first, which may lack some positives)'
)


@dataclass(frozen=True)
class _Query:
    """One query's candidates and labels. ``num_missing``: known positives that are not among the candidates (they
    count in MAP, NDCG and recall as never retrieved); ``base``: the first-stage ranking of a ``positive`` +
    ``documents`` sample (its documents in their given order), for the ``base_*`` metrics."""

    query_id: str | None
    query: str
    documents: tuple[Document, ...]
    labels: np.ndarray
    num_missing: int = 0
    base: _Query | None = None


def _text_list(value: Any, key: str, where: str) -> tuple[Document, ...]:
    """Documents as the data readers take them: strings, or ``{"text", "title"}`` (``fastrank.documents``)."""
    if isinstance(value, (str, Mapping)):
        value = [value]
    if isinstance(value, np.ndarray) and value.ndim == 1:  # a NumPy array of strings, e.g. a pandas column's values
        value = value.tolist()
    if not isinstance(value, Sequence) or not all(isinstance(d, (str, Mapping)) for d in value):
        raise DataError(f"{where}: {key!r} must be a list of strings (or {{'text', 'title'}} objects); accepted "
                        f"samples: {SAMPLE_FORMATS}")
    return tuple(normalize_document(d, f"{where}: {key!r} item {i}") for i, d in enumerate(value))


def _frozen(labels: np.ndarray) -> np.ndarray:
    labels.setflags(write=False)
    return labels


def _positive_documents_query(
    query_id: str | None, query: str, positive: tuple[Document, ...], documents: tuple[Document, ...],
    always_rerank_positives: bool,
) -> _Query:
    """sentence-transformers' ``{"query", "positive", "documents"}`` sample, combined as its evaluator does.

    ``always_rerank_positives``: rerank every positive followed by the documents that are not positives; otherwise
    rerank ``documents`` as given, and the positives they lack count as never retrieved. Either way ``base`` is the
    documents' given order (the first stage), scored against all positives.
    """
    base_labels = np.array([float(d in positive) for d in documents])
    missing = max(len(positive) - int(base_labels.sum()), 0)  # as sentence-transformers: max(positives, retrieved)
    base = _Query(query_id, query, documents, _frozen(base_labels), missing)
    if not always_rerank_positives:
        return replace(base, base=base)
    rest = tuple(d for d in documents if d not in positive)
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(rest))])
    return _Query(query_id, query, positive + rest, _frozen(labels), 0, base)


def _normalize_sample(sample: Any, where: str, always_rerank_positives: bool = True) -> _Query:
    """Validate one sample (any accepted shape) into an immutable _Query; never touches the caller's dict."""
    if not isinstance(sample, Mapping):
        raise DataError(f"{where}: expected an object, got {type(sample).__name__}; accepted samples: {SAMPLE_FORMATS}")
    query = sample.get("query")
    if not isinstance(query, str):
        raise DataError(f"{where}: 'query' must be a string, got {type(query).__name__}; accepted: {SAMPLE_FORMATS}")
    if is_blank(query):
        raise DataError(f"{where}: 'query' is empty; every sample needs a query to rank its documents for")
    check_unicode(query, f"{where}: 'query'")
    query_id = sample.get("query_id")
    query_id = None if query_id is None else str(query_id)
    has_list = "documents" in sample or "labels" in sample
    has_pn = "positive" in sample or "negative" in sample
    st_documents = "positive" in sample and "documents" in sample and not {"labels", "negative"} & set(sample)
    if has_list and has_pn and not st_documents:
        raise DataError(
            f"{where}: give either 'documents' + 'labels', or 'positive' with 'negative' or with 'documents' "
            f"(as sentence-transformers), not a mix (found keys {sorted(sample)})"
        )
    if st_documents:
        positive = _text_list(sample["positive"], "positive", where)
        documents = _text_list(sample["documents"], "documents", where)
        return _positive_documents_query(query_id, query, positive, documents, always_rerank_positives)
    if has_list:
        if "documents" not in sample or "labels" not in sample:
            raise DataError(
                f"{where}: 'documents' and 'labels' go together (one label per document), or give 'positive' with "
                f"'documents' (as sentence-transformers); got {sorted(sample)}"
            )
        documents = _text_list(sample["documents"], "documents", where)
        raw = sample["labels"]
        if isinstance(raw, np.ndarray) and raw.ndim == 1:
            raw = raw.tolist()
        if isinstance(raw, (str, bytes)) or not isinstance(raw, Sequence):
            raise DataError(f"{where}: 'labels' must be a list of numbers (label > 0 = relevant)")
        # read as a training file's labels are (numeric strings too: a CSV's cells), NumPy numbers as floats
        labels = np.asarray([float(x) if isinstance(x, (np.integer, np.floating)) else as_number(x, where, "each label")
                             for x in raw], dtype=np.float64)
        if labels.size != len(documents):
            raise DataError(
                f"{where}: {len(documents)} documents but {labels.size} labels; give one label per document"
            )
        if not np.isfinite(labels).all():
            raise DataError(f"{where}: 'labels' must be finite numbers; it contains "
                            f"{labels[~np.isfinite(labels)][0]}")
    elif "positive" in sample:
        positive = _text_list(sample["positive"], "positive", where)
        negative = _text_list(sample.get("negative", []), "negative", where)
        documents = positive + negative
        labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    else:
        raise DataError(
            f"{where}: no candidates given (found keys {sorted(sample)}); accepted samples: {SAMPLE_FORMATS}"
        )
    return _Query(query_id, query, documents, _frozen(labels))


def sample_as_labelled(sample: Any, where: str) -> dict[str, Any]:
    """A sentence-transformers reranking sample (``{"query", "positive", "negative"}`` or ``{"query", "positive",
    "documents"}``) as a grouped record (``query_id``, ``query``, ``documents``, ``labels``), combined as this
    evaluator combines it by default (every positive reranked): what ``fastrank.data.read_groups`` reads such a file
    as, so bench, export verification, mining and training take the files ``fastrank eval`` takes."""
    q = _normalize_sample(sample, where)
    return {"query_id": q.query_id, "query": q.query, "documents": list(q.documents), "labels": q.labels.tolist()}


def _idcg(num_relevant: int, k: int | None) -> float:
    """Ideal DCG of ``num_relevant`` binary-relevant documents cut at ``k`` (None = no cut-off)."""
    return float(np.sum(discounts(num_relevant if k is None else min(num_relevant, k))))


def _with_missing(metric: str, value: float, retrieved: int, missing: int) -> float:
    """``value`` (computed over the candidates, which hold ``retrieved`` of the positives) normalized by all
    ``retrieved + missing`` positives, as sentence-transformers does: MAP and recall scale by the share retrieved,
    NDCG's ideal DCG counts every positive; MRR and accuracy only look at the candidates."""
    spec = parse_metric(metric)
    total = retrieved + missing
    if spec.name in ("map", "recall"):
        return value * retrieved / total
    if spec.name == "ndcg":
        return value * _idcg(retrieved, spec.k) / _idcg(total, spec.k)
    return value


def _rank_metrics(scores: Sequence[np.ndarray], queries: Sequence[_Query], names: Sequence[str]) -> EvalResult:
    """``evaluate_rankings`` over ``queries``, counting each query's known positives missing from its candidates.

    A query whose positives are all missing is evaluated with 0 for every metric (the first stage lost them all), not
    skipped as a query without positive. Without missing positives this is ``evaluate_rankings`` itself.
    """
    labels = [q.labels for q in queries]
    query_ids = [q.query_id for q in queries]
    if not any(q.num_missing for q in queries):
        return evaluate_rankings(scores, labels, metrics=names, query_ids=query_ids)
    lost = [i for i, q in enumerate(queries) if q.num_missing and not (q.labels > 0).any()]
    lost_set = set(lost)  # once: rebuilt per query it made 80k queries take 132 s instead of 9
    kept = [i for i in range(len(queries)) if i not in lost_set]
    values: dict[str, list[float]] = {n: [0.0] * len(lost) for n in names}
    skipped_no_positive = skipped_no_candidates = 0
    extra: dict[str, Any] = {"num_documents": 0, "num_queries_with_ties": 0, "tie_policy": TIE_POLICY}
    if any((queries[i].labels > 0).any() for i in kept):
        found = evaluate_rankings(
            [scores[i] for i in kept], [labels[i] for i in kept], metrics=names,
            query_ids=[query_ids[i] for i in kept], per_query=True,
        )
        skipped_no_positive, skipped_no_candidates = found.num_skipped_no_positive, found.num_skipped_no_candidates
        extra.update((k, v) for k, v in found.extra.items() if k not in ("per_query", "query_indices"))
        for j, index in enumerate(found.extra["query_indices"]):
            q = queries[kept[index]]
            retrieved = int((q.labels > 0).sum())
            for n in names:
                values[n].append(_with_missing(n, found.extra["per_query"][n][j], retrieved, q.num_missing))
    else:
        skipped_no_candidates = sum(1 for i in kept if len(queries[i].documents) == 0)
        skipped_no_positive = len(kept) - skipped_no_candidates
    extra["num_queries_all_positives_missing"] = len(lost)
    return EvalResult(
        metrics={n: float(np.mean(v)) for n, v in values.items()},
        num_queries=len(values[names[0]]),
        num_skipped_no_positive=skipped_no_positive,
        num_skipped_no_candidates=skipped_no_candidates,
        extra=extra,
    )


def _read_records(path: Path) -> list[tuple[str, Any]]:
    """``(where, record)`` of a JSONL / JSON file (``fastrank.data.json_records``); unreadable is a DataError."""
    from fastrank.data import json_records

    try:
        return list(json_records(path))
    except OSError as exc:
        raise DataError(f"cannot read evaluation file {path}: {exc}") from exc


def accepted_keywords(function: Any, keywords: Mapping[str, Any]) -> dict[str, Any]:
    """The ``keywords`` that ``function`` takes, by name or through ``**kwargs`` (all of them when its signature
    cannot be read): for calling the caller's own callables (evaluators, models) with only what they accept."""
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return dict(keywords)
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return dict(keywords)
    return {k: v for k, v in keywords.items() if k in parameters}


def logits_keyword(predict: Any) -> dict[str, Any]:
    """The keyword that makes ``predict`` return raw logits, if it takes one: ranking by logits keeps apart what fp32
    sigmoid rounds to equal scores (every logit above ~17 becomes 1.0). fastrank's ``activation="identity"``,
    sentence-transformers' ``activation_fn=Identity()``; other scorers are taken as they score."""
    parameters = inspect.signature(predict).parameters
    if "activation" in parameters:
        return {"activation": "identity"}
    if "activation_fn" in parameters:
        import torch

        return {"activation_fn": torch.nn.Identity()}
    return {}


def scorer_activation(scorer: Any) -> str:
    """The activation ``scorer`` puts on its logits by default, as a fastrank name: fastrank's ``activation``, or
    sentence-transformers' ``activation_fn`` (``torch.nn.Sigmoid()`` -> ``"sigmoid"``); ``"identity"`` for a
    scorer that says neither or whose activation fastrank does not know. Score fusion mixes scores on this scale."""
    if isinstance(getattr(scorer, "activation", None), str):
        return scorer.activation
    function = getattr(scorer, "activation_fn", None)
    if function is None:
        return "identity"
    from fastrank.model import activation_name

    try:
        return activation_name(function)
    except ValueError:
        return "identity"


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    from fastrank.io import atomic_file

    with atomic_file(path) as f:
        json.dump(payload, f, indent=2)


class RerankingEvaluator:
    """Reranking quality of a model on labeled candidate lists (MAP, MRR@k, NDCG@k, Recall@k, Accuracy@k).

    Args:
        samples: a list of dicts, each ``{"query", "documents", "labels"}`` (optionally ``"query_id"``),
            ``{"query", "positive", "negative"}`` or ``{"query", "positive", "documents"}`` (sentence-transformers'
            shapes). Copied and validated here; the caller's data is never modified.
        name: prefix of the returned metric names (``f"{name}_map"``), as in sentence-transformers.
        ks: cut-offs for the default metric set (``map`` + mrr/ndcg/recall/accuracy @k); default DEFAULT_KS.
        batch_size: passed to ``model.predict``.
        show_progress_bar: passed to ``model.predict`` (None lets the model decide).
        primary_metric: the metric a trainer should track (unprefixed, e.g. ``"ndcg@10"``); must be computed.
            Default ``"map"``, or ``f"ndcg@{at_k}"`` when ``at_k`` is given.
        metrics: explicit metric names instead of ``ks``.
        at_k: sentence-transformers' cut-off: the metrics at ``ks=[at_k]`` and primary metric ``f"ndcg@{at_k}"``.
            Not together with ``ks`` or ``metrics``.
        always_rerank_positives: for ``{"query", "positive", "documents"}`` samples, as in sentence-transformers:
            True reranks all positives plus the documents that are not positives; False reranks ``documents`` as
            given, and positives missing from them count as never retrieved (a query that lacks all its positives
            scores 0). Such samples also report ``base_*`` metrics: the documents' given order, before reranking.
        write_csv: with ``at_k`` and an ``output_path``, also append ``epoch, steps, MAP, MRR@k, NDCG@k`` to
            ``CrossEncoderRerankingEvaluator[_name]_results_@k.csv`` in that directory, as sentence-transformers.
        prompt_name: the model's prompt to score with (``predict(..., prompt_name=...)``); None: its default.
        mrr_at_k: sentence-transformers' deprecated name for ``at_k``.

    Differences from sentence-transformers' ``CrossEncoderRerankingEvaluator`` (same values and key names on
    samples where each query has a positive and no scores tie):

    - without ``at_k`` the metrics are computed at DEFAULT_KS and the primary metric is ``"map"`` (theirs:
      ``at_k=10``, ``"ndcg@10"``); kept so that existing code keeps its primary metric. Pass ``at_k=10`` to port.
    - ``write_csv`` defaults to False (theirs: True) and needs ``at_k``; the JSON result is written as before.
    - a query without any positive is skipped and counted (``num_skipped_no_positive``); theirs adds 0 to every mean.
    - ties: relevant documents rank after the non-relevant ones they tie with; theirs averages ties (sklearn) for
      MAP/NDCG and orders them by position for MRR.
    - not supported: a dict of samples (pass ``list(samples.values())``); the
      model card data theirs records.

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
        primary_metric: str | None = None,
        metrics: Sequence[str] | None = None,
        *,
        at_k: int | None = None,
        always_rerank_positives: bool = True,
        write_csv: bool = False,
        prompt_name: str | None = None,
        mrr_at_k: int | None = None,
    ) -> None:
        if isinstance(samples, Mapping) or not isinstance(samples, Sequence):
            raise TypeError(f"samples must be a list of dicts; accepted samples: {SAMPLE_FORMATS}")
        if len(samples) == 0:
            raise DataError("RerankingEvaluator needs at least one sample")
        batch_size = check_positive_int(batch_size, "batch_size")
        if not isinstance(always_rerank_positives, bool):
            raise TypeError(f"always_rerank_positives must be True or False, got {always_rerank_positives!r}")
        if prompt_name is not None and not isinstance(prompt_name, str):
            raise TypeError(f"prompt_name must be the name of one of the model's prompts (a str) or None, got "
                            f"{prompt_name!r}")
        if not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}; at_k and the other sentence-transformers options "
                            f"are keyword-only here (at_k=10), since the second positional argument is name")
        at_k = self._check_at_k(at_k, mrr_at_k)
        self.queries = [
            s if isinstance(s, _Query) else _normalize_sample(s, f"sample {i}", always_rerank_positives)
            for i, s in enumerate(samples)
        ]
        self.name = name
        self.batch_size = batch_size
        self.prompt_name = prompt_name
        self.show_progress_bar = show_progress_bar
        self.at_k = at_k
        self.always_rerank_positives = always_rerank_positives
        if metrics is not None and ks is not None:
            raise ValueError(
                "give either ks (cut-offs for the default metric set) or metrics (explicit names), not both"
            )
        if at_k is not None and (ks is not None or metrics is not None):
            raise ValueError(
                f"give either at_k (sentence-transformers' single cut-off: ks=[{at_k}], primary metric "
                f"ndcg@{at_k}) or ks/metrics, not both"
            )
        if write_csv and at_k is None:
            raise ValueError("write_csv=True needs at_k (its columns are MAP, MRR@k and NDCG@k for one k), "
                             "e.g. at_k=10 as sentence-transformers' default")
        self.write_csv = bool(write_csv)
        if metrics is not None:
            self.metric_names = parse_metrics(metrics)  # one name stands for a list of it; empty is an error
        else:
            self.metric_names = default_metrics([at_k] if at_k is not None else DEFAULT_KS if ks is None else ks)
        if primary_metric is None:
            primary_metric = "map" if at_k is None else f"ndcg@{at_k}"
        primary = str(parse_metric(primary_metric))
        if primary not in self.metric_names:
            raise ValueError(
                f"primary_metric {primary_metric!r} is not computed by this evaluator; choose one of "
                f"{self.metric_names} or add it to metrics/ks"
            )
        self.primary_metric_unprefixed = primary
        self.primary_metric = self._prefix(primary)

    @staticmethod
    def _check_at_k(at_k: int | None, mrr_at_k: int | None) -> int | None:
        """``at_k``, or sentence-transformers' deprecated ``mrr_at_k`` standing for it; a positive integer or None."""
        if mrr_at_k is not None:
            if at_k is not None and at_k != mrr_at_k:
                raise ValueError(f"mrr_at_k={mrr_at_k!r} is the deprecated name of at_k; give one of them, "
                                 f"not at_k={at_k!r} too")
            warn_caller(f"mrr_at_k is deprecated (as in sentence-transformers); use at_k={mrr_at_k}")
            at_k = mrr_at_k
        if at_k is not None and (not is_integer(at_k) or at_k < 1):
            raise ValueError(f"at_k must be a positive integer (the cut-off, e.g. 10), got {at_k!r}")
        return None if at_k is None else int(at_k)

    @classmethod
    def from_jsonl(cls, path: str | os.PathLike[str], **kwargs: Any) -> RerankingEvaluator:
        """Load grouped JSONL (one ``{"query_id", "query", "documents", "labels"}`` object per line; blank lines
        are skipped), or a ``.json`` file holding one array of such objects. A bad line raises DataError naming the
        file and line number."""
        path = Path(path)
        return cls._from_records(path, _read_records(path), **kwargs)

    @classmethod
    def _from_records(cls, path: Path, records: list[tuple[str, Any]], **kwargs: Any) -> RerankingEvaluator:
        always = kwargs.get("always_rerank_positives", True)
        queries = [_normalize_sample(obj, where, always) for where, obj in records]
        if not queries:
            raise DataError(f"{path} holds no samples (empty file)")
        return cls(queries, **kwargs)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **kwargs: Any) -> RerankingEvaluator:
        """Load any dataset file ``fastrank.data.read_groups`` reads: grouped JSONL (through ``from_jsonl``, which
        also takes sentence-transformers' sample shapes), flat JSONL / CSV / TSV (one pair per row, grouped by
        query), grouped CSV / TSV, Parquet."""
        from fastrank.data import json_objects, read_groups, records_to_groups, require_labels
        from fastrank.evaluation.beir import refuse_as_candidate_lists

        refuse_as_candidate_lists(path, "evaluate on it with fastrank eval --data DIR --run FILE (a first stage's "
                                        "run) or --retrieve-top-k K")
        if Path(path).suffix.lower() in (".jsonl", ".json"):
            records = _read_records(Path(path))
            first = records[0][1] if records else None
            if not isinstance(first, Mapping) or "documents" in first or "positive" in first:
                return cls._from_records(Path(path), records, **kwargs)
            groups = records_to_groups(json_objects(records), str(path))  # flat rows: a pipe can be read once
        else:
            groups = read_groups(str(path))
        require_labels(groups, "evaluation")
        return cls([{"query": g.query, "documents": g.documents, "labels": g.labels} for g in groups], **kwargs)

    def _prefix(self, metric: str) -> str:
        return f"{self.name}_{metric}" if self.name else metric

    def evaluate(self, model: Any) -> EvalResult:
        """Score all pairs in one ``model.predict`` call and return unprefixed metrics with skip counts.

        Queries without a relevant candidate are not scored (they are skipped by the metrics anyway, or score 0 when
        their positives are missing from the candidates). ``{"query", "positive", "documents"}`` samples add
        ``extra["base_metrics"]`` (and ``extra["base_num_queries"]``): the same metrics for the documents' given
        order, the ranking before reranking.
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
            prompt = {} if self.prompt_name is None else {"prompt_name": self.prompt_name}
            if prompt and not accepted_keywords(predict, prompt):
                raise TypeError(f"prompt_name={self.prompt_name!r} needs a model whose predict takes prompt_name "
                                f"(a CrossEncoder); {type(model).__name__}.predict does not: a Reranker scores with "
                                "the prompt its model had when exported (its default), so evaluate the checkpoint "
                                "to choose another")
            raw = predict(pairs, batch_size=self.batch_size, show_progress_bar=self.show_progress_bar,
                          **logits_keyword(predict), **prompt)
            all_scores = np.asarray(raw, dtype=np.float64)
        else:
            all_scores = np.zeros(0)
        seconds = time.perf_counter() - start
        if all_scores.ndim == 2 and all_scores.shape[1] == 1:
            all_scores = all_scores[:, 0]
        elif multi_class and all_scores.ndim == 2 and len(all_scores):
            from fastrank.reranker import relevance_order

            all_scores = relevance_order(all_scores)  # the last class's log-odds: its probability's order
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
        result = _rank_metrics(scores, self.queries, self.metric_names)
        extra = {**result.extra, "name": self.name, "num_pairs": len(pairs), "predict_seconds": seconds}
        based = [q.base for q in self.queries if q.base is not None and (q.base.labels.any() or q.base.num_missing)]
        if based:  # the first stage's order: descending scores by position, as sentence-transformers scores it
            base = _rank_metrics([np.arange(len(q.documents), 0, -1.0) for q in based], based, self.metric_names)
            extra.update(base_metrics=base.metrics, base_num_queries=base.num_queries)
        return replace(result, extra=extra)

    def __call__(
        self, model: Any, output_path: str | os.PathLike[str] | None = None, epoch: int = -1, steps: int = -1
    ) -> dict[str, float]:
        """Evaluate ``model``; returns ``{prefixed metric: value}`` (``f"{name}_map"``, or ``"map"`` without a name),
        then ``f"{name}_base_map"``... when samples give ``documents`` in first-stage order (as sentence-transformers).

        ``output_path``: a path ending in ``.json`` is written as that file; any other path is a directory that
        receives ``RerankingEvaluator[_name]_results.json``. The file holds the full EvalResult (skip counts
        included) plus name, epoch and steps; it is replaced, not appended to. With ``write_csv``, the CSV row is
        appended in that directory (the ``.json`` file's directory).
        """
        if output_path is not None:  # a file where the folder should be is refused before scoring, not after
            from fastrank.io import check_dir_path

            folder = Path(output_path)
            check_dir_path(folder.parent if folder.suffix.lower() == ".json" else folder, "output_path")
        result = self.evaluate(model)
        metrics = {self._prefix(k): v for k, v in result.metrics.items()}
        metrics.update((self._prefix(f"base_{k}"), v) for k, v in result.extra.get("base_metrics", {}).items())
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
            if self.write_csv:
                self._append_csv(target.parent, result.metrics, epoch, steps)
        return metrics

    def _append_csv(self, directory: Path, metrics: Mapping[str, float], epoch: int, steps: int) -> None:
        """Append one row to sentence-transformers' CSV file (same name, header and columns), for ported scripts
        that read it."""
        k = self.at_k
        path = directory / f"CrossEncoderRerankingEvaluator{'_' + self.name if self.name else ''}_results_@{k}.csv"
        exists = path.is_file()
        with open(path, "a" if exists else "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            if not exists:
                writer.writerow(["epoch", "steps", "MAP", f"MRR@{k}", f"NDCG@{k}"])
            writer.writerow([epoch, steps, metrics["map"], metrics[f"mrr@{k}"], metrics[f"ndcg@{k}"]])


CrossEncoderRerankingEvaluator = RerankingEvaluator
"""sentence-transformers' name for :class:`RerankingEvaluator` (the same class), for code ported from
``sentence_transformers.cross_encoder.evaluation``."""
