"""Parity of an exported model with PyTorch fp32: logits, rankings and ranking metrics at several batch shapes.

The reference is the PyTorch fp32 model scoring one pair at a time (no padding). The candidate scores the same
pairs through the runtime's own batching (``fastrank.batching.run_batches``) at several batch sizes, so batches
have (batch, sequence) shapes other than the one the graph was traced with, with and without padding. Every
number lands in the manifest's ``parity`` section; ``failures`` lists each check that is out of bounds.

Bounds (the design's quality bar for accelerated paths):

=========  ==============================================================================================
fp32       max |Δlogit| <= 1e-4 and identical rankings (no document pair whose reference scores differ by
           more than 2e-4 swaps order; closer pairs are ties at fp32 precision)
fp16       max |Δlogit| <= 2e-2 and |ΔNDCG@10| <= 0.002
bf16       |ΔNDCG@10| <= 0.002 (bf16 keeps 8 mantissa bits: logits move ~1e-2 relative, by design)
int8       |ΔNDCG@10| <= 0.01
=========  ==============================================================================================

NDCG@10 and MAP come from ``fastrank.evaluation.metrics`` on the queries that can gate them (``gates_metrics``:
two or more documents with different labels; any other query scores 1.0 whatever the model does). When no caller
group qualifies, the built-in labelled set is added so the metric checks always run on real rankings. When one does,
the built-in documents are still added, unlabelled: they check logits and rankings at lengths up to ~300 tokens,
which the caller's data (short passages, say) may never reach, while the metrics stay the caller's.
"""

from __future__ import annotations

import copy
import logging
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.batching import PairEncoder, run_batches
from fastrank.documents import Document, check_document
from fastrank.evaluation.metrics import evaluate_rankings

logger = logging.getLogger(__name__)

BOUNDS: dict[str, dict[str, float]] = {
    "fp32": {"max_abs_logit": 1e-4, "discordant_pairs": 0},
    "fp16": {"max_abs_logit": 2e-2, "delta_ndcg@10": 0.002},
    "bf16": {"delta_ndcg@10": 0.002},
    "int8": {"delta_ndcg@10": 0.01},
}
# Batch configurations the candidate is run at: batch 1 (no padding), odd sizes, and one large token-budget batch.
VERIFY_CONFIGS: tuple[dict[str, Any], ...] = (
    {"batch_size": 1},
    {"batch_size": 3},
    {"batch_size": 64, "max_tokens": 4096},
)

_FILLER = (
    "The report covers regional weather, local elections, a new bridge over the river, and the results of the "
    "county football league. Officials said the project would take several years to complete. "
)

# (query, documents, graded labels): small, varied lengths, some documents longer than 128 tokens.
BUILTIN_GROUPS: tuple[tuple[str, tuple[str, ...], tuple[int, ...]], ...] = (
    ("how are glacier caves formed?", (
        "A glacier cave is a cave formed within the ice of a glacier, usually by water running through it.",
        "Glacier caves are often called ice caves, but the term properly describes bedrock caves with ice.",
        "Paris is the capital and most populous city of France.",
        _FILLER * 3 + "Meltwater carves tunnels through glaciers, forming caves.",
        "Caves.",
        "The stock market fell sharply on Tuesday after the announcement.",
    ), (2, 1, 0, 1, 0, 0)),
    ("what is the capital of france", (
        "Paris is the capital of France.",
        "Lyon is a large city in France known for its food.",
        "Berlin is the capital of Germany.",
        "France is a country in western Europe; its capital, Paris, lies on the Seine. " + _FILLER * 2,
        "The Eiffel Tower was completed in 1889.",
    ), (2, 0, 0, 1, 0)),
    ("who wrote pride and prejudice", (
        "Pride and Prejudice is an 1813 novel by Jane Austen.",
        "Charles Dickens wrote Great Expectations.",
        "Jane Austen was an English novelist known for six major novels.",
        _FILLER * 4,
        "Prejudice is a preconceived opinion not based on reason or experience.",
        "The novel follows Elizabeth Bennet and Mr Darcy.",
        "",
    ), (2, 0, 1, 0, 0, 1, 0)),
    ("symptoms of vitamin d deficiency", (
        "Vitamin D deficiency can cause bone pain, muscle weakness and fatigue.",
        "Vitamin C is found in citrus fruits.",
        "Low vitamin D levels are linked to rickets in children and osteomalacia in adults. " + _FILLER,
        "Sunlight helps the skin produce vitamin D.",
        "A deficiency is a lack or shortage of something.",
    ), (2, 0, 2, 1, 0)),
    ("python sort list in place", (
        "list.sort() sorts the list in place and returns None; sorted() returns a new list.",
        "Pythons are large non-venomous snakes found in Africa and Asia.",
        "Use the key argument to sort by a custom function, e.g. items.sort(key=len).",
        "Sorting algorithms include quicksort, mergesort and heapsort. " * 6,
        "Lists are mutable sequences in Python.",
        "To reverse a list in place call list.reverse().",
    ), (2, 0, 1, 0, 0, 0)),
    ("boiling point of water at altitude", (
        "At higher altitudes water boils at a lower temperature because air pressure is lower.",
        "Water boils at 100 degrees Celsius at sea level.",
        "Mount Everest is the highest mountain above sea level.",
        _FILLER * 2 + "At 3,000 metres water boils at about 90 degrees Celsius.",
        "Ice melts at zero degrees Celsius.",
    ), (2, 1, 0, 1, 0)),
    ("when did the berlin wall fall", (
        "The Berlin Wall fell on 9 November 1989.",
        "The wall divided East and West Berlin from 1961 to 1989.",
        "Berlin is known for its museums and nightlife.",
        "Walls are structures that define an area. " * 10,
    ), (2, 1, 0, 0)),
    ("how does photosynthesis work", (
        "Photosynthesis converts light energy into chemical energy stored in glucose.",
        "Plants take in carbon dioxide and release oxygen during photosynthesis in their chloroplasts.",
        "Photography is the art of capturing light with a camera.",
        _FILLER * 5,
        "Chlorophyll absorbs mostly blue and red light.",
        "Animals get energy by eating plants or other animals.",
    ), (2, 2, 0, 0, 1, 0)),
)


@dataclass(frozen=True)
class VerifyGroup:
    query: str
    documents: list[Document]
    labels: list[float] | None = None
    builtin: bool = False  # one of BUILTIN_GROUPS, not the caller's data


def builtin_groups(labelled: bool = True) -> list[VerifyGroup]:
    return [VerifyGroup(q, list(d), list(y) if labelled else None, builtin=True) for q, d, y in BUILTIN_GROUPS]


def normalize_groups(verify_pairs: Any) -> tuple[list[VerifyGroup], str]:
    """Read verification groups: ``(query, [docs])``, ``(query, [docs], [labels])``, dicts with ``query`` /
    ``documents`` / ``labels``, or objects with those attributes (``fastrank.data.QueryGroup``); or the path of a
    data file ``fastrank.data.read_groups`` reads, named as the source.

    Returns (groups, source); the built-in labelled set is used when ``verify_pairs`` is None, and added when no
    given group can gate the metrics (``gates_metrics``); when some can, the built-in documents are added without
    labels (logits and rankings only, at their lengths).
    """
    if verify_pairs is None:
        return builtin_groups(), "builtin"
    if isinstance(verify_pairs, (str, Path)):
        from fastrank.data import read_groups, require_labels

        read = read_groups(str(verify_pairs))
        require_labels(read, "verification (its ranking metrics)")
        groups, source = normalize_groups(read)
        return groups, source.replace("caller", str(verify_pairs))
    groups: list[VerifyGroup] = []
    for i, item in enumerate(verify_pairs):
        if isinstance(item, dict):
            query, docs, labels = item.get("query"), item.get("documents"), item.get("labels")
        elif hasattr(item, "query") and hasattr(item, "documents"):
            query, docs, labels = item.query, item.documents, getattr(item, "labels", None)
        elif isinstance(item, (tuple, list)) and len(item) in (2, 3):
            query, docs, labels = item[0], item[1], item[2] if len(item) == 3 else None
        else:
            raise TypeError(
                f"verification group {i} must be (query, [documents]) or (query, [documents], [labels]), "
                f"got {type(item).__name__}"
            )
        if not isinstance(query, str) or isinstance(docs, str):
            raise TypeError(f"verification group {i} needs a query string and a list of documents")
        docs = list(docs or [])
        for j, doc in enumerate(docs):
            check_document(doc, f"verification group {i}, document {j}")
        if labels is not None and len(labels) != len(docs):
            raise ValueError(f"verification group {i} has {len(docs)} documents but {len(labels)} labels")
        if docs:
            groups.append(VerifyGroup(query, docs, None if labels is None else [float(y) for y in labels]))
    if not groups:
        raise ValueError("verify_pairs holds no group with documents")
    return _with_builtin(groups)


NO_METRIC_QUERY = "no query with two or more documents of different labels"


def gates_metrics(group: VerifyGroup) -> bool:
    """Whether a group can gate NDCG/MAP: two or more documents with two or more distinct labels (any other query
    scores 1.0 under every ranking, so it would let any candidate through)."""
    return group.labels is not None and len(group.documents) >= 2 and len(set(group.labels)) >= 2


def _with_builtin(groups: list[VerifyGroup]) -> tuple[list[VerifyGroup], str]:
    """The caller's groups plus the built-in set: labelled when no caller group can gate the metrics, else
    unlabelled (its long documents check logits and rankings only)."""
    if any(gates_metrics(g) for g in groups):
        return groups + builtin_groups(labelled=False), "caller + builtin long documents (logits and rankings only)"
    if not any(g.labels is not None for g in groups):
        return groups + builtin_groups(), "caller (unlabelled) + builtin labelled set"
    logger.warning("the verification data has %s (each such query scores NDCG/MAP 1.0 under any ranking): the "
                   "metric checks use the built-in labelled set", NO_METRIC_QUERY)
    return groups + builtin_groups(), f"caller ({NO_METRIC_QUERY}) + builtin labelled set"


# The parity numbers a bound can hold, by direction: an upper bound on an error, a lower bound on an agreement.
UPPER_BOUNDED = ("max_abs_logit", "mean_abs_logit", "discordant_pairs", "delta_ndcg@10", "delta_map")
LOWER_BOUNDED = ("kendall_tau_mean", "kendall_tau_min", "top1_agreement", "rankings_identical")


def check_bounds(overrides: Any) -> dict[str, dict[str, float]]:
    """``export_model(bounds=...)`` checked: a mapping of precision (``BOUNDS``' keys) to a mapping of parity number
    (``UPPER_BOUNDED`` or ``LOWER_BOUNDED``) to a finite number; anything else is a ValueError naming it and what is
    accepted (a misspelt number was reported as "not measured", an unknown precision ignored)."""
    if overrides is None:
        return {}
    example = 'e.g. {"int8": {"delta_ndcg@10": 0.02}}'
    if not isinstance(overrides, Mapping):
        raise ValueError(f"bounds must be a dict of precision to {{number: bound}}, {example}; got "
                         f"{type(overrides).__name__}")
    for precision, bounds in overrides.items():
        if precision not in BOUNDS:
            raise ValueError(f"bounds: unknown precision {precision!r}; accepted: {', '.join(BOUNDS)}")
        if not isinstance(bounds, Mapping):
            raise ValueError(f"bounds[{precision!r}] must be a dict of parity number to bound, {example}; got "
                             f"{type(bounds).__name__}")
        for key, bound in bounds.items():
            if key not in UPPER_BOUNDED + LOWER_BOUNDED:
                raise ValueError(f"bounds[{precision!r}]: unknown parity number {key!r}; accepted: at most "
                                 f"{', '.join(UPPER_BOUNDED)}; at least {', '.join(LOWER_BOUNDED)}")
            if isinstance(bound, bool) or not isinstance(bound, numbers.Real) or not math.isfinite(bound):
                raise ValueError(f"bounds[{precision!r}][{key!r}] must be a finite number, got {bound!r}")
    return {precision: dict(bounds) for precision, bounds in overrides.items()}


def merged_bounds(precision: str, overrides: dict[str, dict[str, float]] | None = None) -> dict[str, float]:
    """The bounds a ``precision`` export must meet: ``BOUNDS``' with ``overrides`` (``check_bounds``) over them."""
    bounds = copy.deepcopy(BOUNDS[precision])
    bounds.update(check_bounds(overrides).get(precision, {}))
    return bounds


# Scoring ----------------------------------------------------------------------------------------------------------


def score_groups(
    encoder: PairEncoder, logits_fn: Callable[[dict[str, np.ndarray]], np.ndarray], groups: Sequence[VerifyGroup],
    num_labels: int, batch_size: int, max_tokens: int | None = None,
) -> tuple[list[np.ndarray], set[tuple[int, int]]]:
    """Logits per group (docs x num_labels) through the runtime's batching, and the batch shapes that ran."""
    pairs = [(g.query, d) for g in groups for d in g.documents]
    shapes: set[tuple[int, int]] = set()

    def run(batch: dict[str, np.ndarray]) -> np.ndarray:
        shapes.add(tuple(int(x) for x in batch["input_ids"].shape))
        return logits_fn(batch)

    flat = run_batches(encoder.encode(pairs), run, batch_size, max_tokens, encoder.pad_token_id, num_labels)
    bounds = np.cumsum([0] + [len(g.documents) for g in groups])
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])], shapes


# Comparison -------------------------------------------------------------------------------------------------------


PAIR_ELEMENTS = 4_000_000  # document pairs compared at once: all n^2 / 2 of a 12k-document list took 3.3 GB


def _pair_differences(*scores: np.ndarray):
    """For each block of rows, the differences ``x[i] - x[j]`` over the pairs i < j of every score vector, at most
    PAIR_ELEMENTS pairs at a time (row-major pair order, as ``np.triu_indices``)."""
    n = scores[0].size
    rows = max(1, PAIR_ELEMENTS // max(1, n))
    columns = np.arange(n)
    for start in range(0, n, rows):
        upper = columns[None, :] > np.arange(start, min(n, start + rows))[:, None]
        yield [(x[start : start + rows, None] - x[None, :])[upper] for x in scores]


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b between two score vectors (1.0 for fewer than two items or two constant vectors)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2:
        return 1.0
    pairs = tied_a = tied_b = product = 0.0
    same = True
    for diff_a, diff_b in _pair_differences(a, b):
        da, db = np.sign(diff_a), np.sign(diff_b)
        pairs += da.size
        tied_a += float((da == 0).sum())
        tied_b += float((db == 0).sum())
        product += float((da * db).sum())
        same = same and bool((da == db).all())
    denom = np.sqrt((pairs - tied_a) * (pairs - tied_b))
    if denom == 0:
        return 1.0 if same else 0.0
    return float(product / denom)


def discordant_pairs(reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> int:
    """Document pairs whose order differs although their reference scores differ by more than ``tolerance``."""
    r, c = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    count = 0
    for dr, dc in _pair_differences(r, c):
        count += int(((np.sign(dr) != np.sign(dc)) & (np.abs(dr) > tolerance)).sum())
    return count


def _ranking_column(logits: np.ndarray) -> np.ndarray:
    """The score a document is ranked by (``fastrank.reranker.relevance_order``): the one logit, or for several
    labels the last ("relevant") class's log-odds, the order of its softmax probability (the last logit alone is
    not: the other logits move that probability too)."""
    from fastrank.reranker import relevance_order

    return relevance_order(logits)


def compare(
    reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray], groups: Sequence[VerifyGroup],
    tie_tolerance: float = 2e-4,
) -> dict[str, Any]:
    """Parity numbers of one candidate run against the reference (per-group logit arrays)."""
    diffs = np.concatenate([np.abs(c - r).ravel() for r, c in zip(reference, candidate)])
    ref_scores = [_ranking_column(r) for r in reference]
    cand_scores = [_ranking_column(c) for c in candidate]
    taus = [kendall_tau(r, c) for r, c in zip(ref_scores, cand_scores)]
    top1 = [int(np.argmax(r) == np.argmax(c)) for r, c in zip(ref_scores, cand_scores)]
    identical = [
        np.array_equal(np.argsort(-r, kind="stable"), np.argsort(-c, kind="stable"))
        for r, c in zip(ref_scores, cand_scores)
    ]
    report: dict[str, Any] = {
        "max_abs_logit": float(diffs.max()),
        "mean_abs_logit": float(diffs.mean()),
        "kendall_tau_mean": float(np.mean(taus)),
        "kendall_tau_min": float(np.min(taus)),
        "top1_agreement": float(np.mean(top1)),
        "rankings_identical": float(np.mean(identical)),
        "discordant_pairs": sum(discordant_pairs(r, c, tie_tolerance) for r, c in zip(ref_scores, cand_scores)),
    }
    labelled = [i for i, g in enumerate(groups) if gates_metrics(g)]
    report["metric_queries"] = len(labelled)
    if labelled:
        labels = [groups[i].labels for i in labelled]
        ref = evaluate_rankings([ref_scores[i] for i in labelled], labels, metrics=["ndcg@10", "map"]).metrics
        got = evaluate_rankings([cand_scores[i] for i in labelled], labels, metrics=["ndcg@10", "map"]).metrics
        for name in ("ndcg@10", "map"):
            report[f"{name}_reference"] = ref[name]
            report[name] = got[name]
            report[f"delta_{name}"] = abs(got[name] - ref[name])
    return report


_WORST = dict.fromkeys(LOWER_BOUNDED, min)


def worst_of(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine the reports of several batch configurations, keeping the worst value of each number."""
    out = dict(reports[0])
    for report in reports[1:]:
        for key, value in report.items():
            if key in out and not key.endswith("_reference"):
                out[key] = _WORST.get(key, max)(out[key], value)
    for name in ("ndcg@10", "map"):  # the metric value of the configuration with the largest delta
        if f"delta_{name}" in out:
            out[name] = max(reports, key=lambda r: r[f"delta_{name}"])[name]
    return out


def check(report: dict[str, Any], bounds: dict[str, float]) -> list[str]:
    """One line per check out of bounds (value vs bound: at most for an error, at least for an agreement,
    ``LOWER_BOUNDED``); a missing number is a failure too."""
    failures = []
    for key, bound in bounds.items():
        value = report.get(key)
        if value is None:
            failures.append(f"{key} was not measured (bound {bound:g}): the verification data has {NO_METRIC_QUERY} "
                            "(NDCG/MAP need graded labels that tell documents of one query apart)")
        elif key in LOWER_BOUNDED and not value >= bound:
            failures.append(f"{key} = {value:.3g} < bound {bound:g}")
        elif key not in LOWER_BOUNDED and not value <= bound:
            failures.append(f"{key} = {value:.3g} > bound {bound:g}")
    return failures


def verify(
    encoder: PairEncoder,
    reference: Sequence[np.ndarray],
    logits_fn: Callable[[dict[str, np.ndarray]], np.ndarray],
    groups: Sequence[VerifyGroup],
    precision: str,
    num_labels: int,
    bounds: dict[str, float],
    configs: Sequence[dict[str, Any]] = VERIFY_CONFIGS,
) -> dict[str, Any]:
    """Run the candidate at every batch configuration and report its parity with ``reference``."""
    reports, shapes = [], set()
    for config in configs:
        candidate, ran = score_groups(encoder, logits_fn, groups, num_labels, **config)
        reports.append(compare(reference, candidate, groups, tie_tolerance=2 * BOUNDS["fp32"]["max_abs_logit"]))
        shapes |= ran
    report = worst_of(reports)
    failures = check(report, bounds)
    return {
        "verified": True,
        "precision": precision,
        **{k: (round(v, 8) if isinstance(v, float) else v) for k, v in report.items()},
        "num_queries": len(groups),
        "num_pairs": sum(len(g.documents) for g in groups),
        "num_labelled_queries": sum(g.labels is not None for g in groups),
        "shapes": sorted([list(s) for s in shapes]),
        "bounds": bounds,
        "failures": failures,
        "passed": not failures,
    }
