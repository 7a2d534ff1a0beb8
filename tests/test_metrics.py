"""Metrics: hand-computed values, the pessimistic tie policy, skipping rules, validation, and parity with ranx."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest

from fastrank.errors import DataError
from fastrank.evaluation import (
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

# --- names -----------------------------------------------------------------------------------------------------------


def test_parse_metric_canonical_names():
    assert parse_metric("ndcg@10") == MetricSpec("ndcg", 10)
    assert str(parse_metric("NDCG@10")) == "ndcg@10"
    assert str(parse_metric(" MRR @ 10 ")) == "mrr@10"
    assert parse_metric("map") == MetricSpec("map", None)
    assert str(parse_metric("recall")) == "recall"
    assert default_metrics((1, 10))[:3] == ["map", "mrr@1", "mrr@10"]


@pytest.mark.parametrize("bad", ["precision@10", "ndcg@0", "ndcg@x", "map@10", "ndcg@-1", ""])
def test_parse_metric_rejects_with_known_names(bad):
    with pytest.raises(ValueError) as info:
        parse_metric(bad)
    assert repr(bad) in str(info.value)


# --- kernels on ranked labels, by hand --------------------------------------------------------------------------------


def test_reciprocal_rank_by_hand():
    assert reciprocal_rank([0, 1, 0]) == 0.5
    assert reciprocal_rank([0, 0, 1], k=2) == 0.0
    assert reciprocal_rank([0, 0, 1], k=3) == pytest.approx(1 / 3)
    assert reciprocal_rank([0, 0, 0]) == 0.0


def test_average_precision_by_hand():
    assert average_precision([1, 0, 1]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0, 1, 1, 0]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert average_precision([1]) == 1.0


def test_ndcg_by_hand_linear_gain():
    ranked = [0, 2, 1]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg(ranked) == pytest.approx(dcg / idcg)
    assert ndcg(ranked, k=1) == 0.0
    assert ndcg(ranked, k=2) == pytest.approx((2 / math.log2(3)) / idcg)
    assert ndcg([3, 2, 1, 0], k=3) == pytest.approx(1.0)
    # negative labels are non-relevant and contribute no gain
    assert ndcg([-1, 1]) == pytest.approx(1 / math.log2(3))


def test_recall_and_accuracy_by_hand():
    assert recall([1, 0, 1, 0, 1], k=2) == pytest.approx(1 / 3)
    assert recall([1, 0, 1, 0, 1], k=3) == pytest.approx(2 / 3)
    assert recall([1, 0, 1, 0, 1], k=100) == 1.0
    assert accuracy([0, 0, 1], k=2) == 0.0
    assert accuracy([0, 0, 1], k=3) == 1.0


def test_evaluate_rankings_means_over_queries():
    scores = [np.array([0.1, 0.9, 0.5]), np.array([3.0, 2.0, 1.0])]
    labels = [np.array([1, 0, 0]), np.array([0, 1, 1])]
    res = evaluate_rankings(scores, labels, metrics=["map", "mrr@10", "recall@2", "accuracy@1", "ndcg@3"])
    ap_a, ap_b = 1 / 3, (1 / 2 + 2 / 3) / 2
    assert res.metrics["map"] == pytest.approx((ap_a + ap_b) / 2, abs=1e-12)
    assert res.metrics["mrr@10"] == pytest.approx((1 / 3 + 1 / 2) / 2, abs=1e-12)
    assert res.metrics["recall@2"] == pytest.approx((0 + 1 / 2) / 2, abs=1e-12)
    assert res.metrics["accuracy@1"] == 0.0
    ndcg_a = (1 / math.log2(4)) / 1.0
    ndcg_b = (1 / math.log2(3) + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert res.metrics["ndcg@3"] == pytest.approx((ndcg_a + ndcg_b) / 2, abs=1e-12)
    assert list(res.metrics) == ["map", "mrr@10", "recall@2", "accuracy@1", "ndcg@3"]
    assert res.num_queries == 2 and res.num_skipped_no_positive == 0 and res.num_skipped_no_candidates == 0


def test_default_metric_set_from_ks():
    res = evaluate_rankings([[0.2, 0.1]], [[1, 0]], ks=(1, 5))
    assert set(res.metrics) == {"map", "mrr@1", "mrr@5", "ndcg@1", "ndcg@5", "recall@1", "recall@5",
                                "accuracy@1", "accuracy@5"}
    assert all(v == 1.0 for v in res.metrics.values())
    with pytest.raises(ValueError, match="not both"):
        evaluate_rankings([[0.2]], [[1]], ks=(1,), metrics=["map"])


def test_per_query_values():
    res = evaluate_rankings([[0.0, 1.0], [1.0], [0.5, 0.4]], [[1, 0], [0], [1, 0]], metrics=["mrr@10"],
                            per_query=True)
    assert res.extra["query_indices"] == [0, 2]
    assert res.extra["per_query"]["mrr@10"] == [0.5, 1.0]
    assert res.metrics["mrr@10"] == 0.75


# --- ties ------------------------------------------------------------------------------------------------------------


def test_constant_scores_with_positives_first_get_pessimistic_map():
    labels = [np.array([1, 0, 0, 0]), np.array([1, 1, 0, 0, 0])]
    scores = [np.zeros(4), np.full(5, 0.7, dtype=np.float32)]
    res = evaluate_rankings(scores, labels, metrics=["map", "mrr@10", "accuracy@1", "ndcg@10"])
    pessimistic = (1 / 4 + (1 / 4 + 2 / 5) / 2) / 2  # positives ranked after every tied negative
    assert res.metrics["map"] == pytest.approx(pessimistic, abs=1e-12)
    assert res.metrics["map"] < 1.0
    assert res.metrics["mrr@10"] == pytest.approx((1 / 4 + 1 / 4) / 2)
    assert res.metrics["accuracy@1"] == 0.0
    assert res.extra["num_queries_with_ties"] == 2


def test_partial_tie_puts_relevant_last_within_the_group_only():
    # doc 2 (non-relevant) scores highest; docs 0 (relevant) and 1 tie below it -> relevant at rank 3
    assert list(rank_order(np.array([0.5, 0.5, 0.9]), np.array([1, 0, 0]))) == [2, 1, 0]
    assert query_metrics([0.5, 0.5, 0.9], [1, 0, 0], ["mrr@10"])["mrr@10"] == pytest.approx(1 / 3)
    # a strictly higher relevant score is not affected by a tie below it
    assert query_metrics([0.9, 0.5, 0.5], [1, 0, 0], ["mrr@10"])["mrr@10"] == 1.0
    # graded labels: ascending within the tie, the worst NDCG for that tie
    worst = ndcg([0, 1, 2])
    assert query_metrics([1.0, 1.0, 1.0], [2, 1, 0], ["ndcg"])["ndcg"] == pytest.approx(worst)


def test_metrics_do_not_depend_on_input_order_even_with_ties():
    rng = np.random.default_rng(7)
    scores = [rng.integers(0, 3, size=n).astype(np.float32) for n in rng.integers(1, 12, size=40)]
    labels = [rng.integers(0, 3, size=s.size) for s in scores]
    base = evaluate_rankings(scores, labels)
    perms = [rng.permutation(s.size) for s in scores]
    shuffled = evaluate_rankings([s[p] for s, p in zip(scores, perms)], [y[p] for y, p in zip(labels, perms)])
    assert base.metrics == shuffled.metrics
    assert base.extra["num_queries_with_ties"] > 0


# --- skipping and validation ---------------------------------------------------------------------------------------


def test_single_candidate_query():
    res = evaluate_rankings([np.array([0.3], dtype=np.float32)], [np.array([1])])
    assert res.num_queries == 1
    assert all(v == 1.0 for v in res.metrics.values())


def test_queries_without_positive_or_candidates_are_excluded_and_counted():
    scores = [[0.1, 0.9], [0.4, 0.2, 0.3], [], [0.5, 0.6], [0.1]]
    labels = [[1, 0], [0, 0, -1], [], [0, 1], [0]]
    res = evaluate_rankings(scores, labels, metrics=["map", "mrr@10"])
    assert res.num_queries == 2
    assert res.num_skipped_no_positive == 2
    assert res.num_skipped_no_candidates == 1
    assert res.metrics["map"] == pytest.approx((0.5 + 1.0) / 2)  # not diluted by zero-filled queries


def test_no_query_left_raises():
    with pytest.raises(DataError, match="no query left to evaluate.*2 have no relevant.*1 have no candidates"):
        evaluate_rankings([[0.1, 0.2], [0.3], []], [[0, 0], [0], []])
    with pytest.raises(DataError, match="no query left"):
        evaluate_rankings([], [])


def test_nan_scores_name_the_query():
    with pytest.raises(DataError, match=r"query 1 has NaN scores at candidate positions \[1\]"):
        evaluate_rankings([[0.1, 0.2], [0.3, float("nan")]], [[1, 0], [1, 0]])
    with pytest.raises(DataError, match=r"query 0 \(id 'Q7'\) has NaN"):
        evaluate_rankings([[np.nan]], [[0]], query_ids=["Q7"])


def test_length_mismatches_name_the_query():
    with pytest.raises(DataError, match="query 2 has 3 scores but 2 labels"):
        evaluate_rankings([[1.0], [1.0], [1.0, 2.0, 3.0]], [[1], [1], [1, 0]])
    with pytest.raises(DataError, match="scores for 2 queries but labels for 1"):
        evaluate_rankings([[1.0], [1.0]], [[1]])
    with pytest.raises(DataError, match="1-D"):
        evaluate_rankings([np.zeros((2, 2))], [[1, 0]])


def test_infinite_scores_rank_normally():
    res = evaluate_rankings([[-np.inf, np.inf, 0.0]], [[0, 1, 0]], metrics=["mrr@10"])
    assert res.metrics["mrr@10"] == 1.0


def test_metrics_module_is_pure_numpy():
    import subprocess

    code = "import sys, fastrank.evaluation; print(any(m in sys.modules for m in ('torch', 'sklearn')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- parity with ranx ------------------------------------------------------------------------------------------------


def _ranx_compare(scores, labels, metric_map, tol=1e-9):
    """Our metrics vs ranx. qrels hold relevant docs only (rel >= 1), so queries without one are left out of both."""
    ranx = pytest.importorskip("ranx")
    qrels, run = {}, {}
    for i, (s, y) in enumerate(zip(scores, labels)):
        if not (np.asarray(y) > 0).any():
            continue
        qrels[f"q{i}"] = {f"d{j}": int(label) for j, label in enumerate(y) if label > 0}
        run[f"q{i}"] = {f"d{j}": float(v) for j, v in enumerate(s)}
    theirs = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), list(metric_map.values()))
    ours = evaluate_rankings(scores, labels, metrics=list(metric_map))
    assert ours.num_queries == len(qrels)
    for name, ranx_name in metric_map.items():
        assert abs(ours.metrics[name] - theirs[ranx_name]) <= tol, (name, ours.metrics[name], theirs[ranx_name])
    return ours


@pytest.mark.data
def test_equal_to_ranx_on_wikiqa_random_scores(wikiqa_dir):
    rows = [json.loads(line) for line in (wikiqa_dir / "test.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()]
    rng = np.random.default_rng(1234)
    scores = [rng.random(len(r["documents"])) for r in rows]
    labels = [np.asarray(r["labels"]) for r in rows]
    # ranx's map is at full depth, its mrr@k is 0 when the first hit is below k, its ndcg is the linear-gain
    # (Jarvelin) form, hit_rate@k is our accuracy@k: the same definitions as ours, so equality is exact.
    metric_map = {"map": "map", "mrr@10": "mrr@10", "ndcg@10": "ndcg@10", "recall@10": "recall@10",
                  "accuracy@1": "hit_rate@1", "ndcg@3": "ndcg@3"}
    ours = _ranx_compare(scores, labels, metric_map)
    no_pos = sum(not (y > 0).any() for y in labels)
    assert ours.num_skipped_no_positive == no_pos
    assert ours.num_queries == len(rows) - no_pos - sum(y.size == 0 for y in labels)
    assert 0.0 < ours.metrics["map"] < 1.0


def test_equal_to_ranx_with_graded_labels():
    rng = np.random.default_rng(99)
    sizes = rng.integers(1, 30, size=60)
    scores = [rng.normal(size=n) for n in sizes]
    labels = [rng.integers(0, 4, size=n) for n in sizes]
    _ranx_compare(scores, labels, {"ndcg@5": "ndcg@5", "ndcg@10": "ndcg@10", "ndcg": "ndcg", "map": "map",
                                   "recall@5": "recall@5", "mrr@3": "mrr@3"})


# --- argument forms ---------------------------------------------------------------------------------------------------


def test_empty_ks_is_an_error_not_the_default_set():
    with pytest.raises(ValueError, match=r"^ks is empty: give at least one cut-off, e.g. ks=\(10,\)$"):
        evaluate_rankings([[0.2, 0.1]], [[1, 0]], ks=[])
    with pytest.raises(ValueError, match="^ks is empty"):
        default_metrics(())


def test_a_single_k_is_that_one_cut_off():
    res = evaluate_rankings([[0.2, 0.1]], [[1, 0]], ks=10)
    assert set(res.metrics) == {"map", "mrr@10", "ndcg@10", "recall@10", "accuracy@10"}
    assert evaluate_rankings([[0.2, 0.1]], [[1, 0]], ks=np.int64(10)).metrics == res.metrics
    assert default_metrics(3) == ["map", "mrr@3", "ndcg@3", "recall@3", "accuracy@3"]
    for bad in (0, True):
        with pytest.raises(ValueError, match=rf"^every cut-off k must be a positive integer, got {bad!r}$"):
            evaluate_rankings([[0.2, 0.1]], [[1, 0]], ks=bad)
    for bad in ("10", 10.0):
        with pytest.raises(ValueError, match=r"^ks must be a positive integer or a list of them \(cut-offs, e\.g\. "
                                             rf"ks=\(1, 10\)\), got {bad!r}$"):
            evaluate_rankings([[0.2, 0.1]], [[1, 0]], ks=bad)


def test_a_single_metric_name_is_that_one_metric():
    from fastrank.evaluation.metrics import parse_metrics

    res = evaluate_rankings([[0.1, 0.2]], [[1, 0]], metrics="NDCG@10")
    assert res.metrics == evaluate_rankings([[0.1, 0.2]], [[1, 0]], metrics=["ndcg@10"]).metrics
    assert list(res.metrics) == ["ndcg@10"]
    assert list(evaluate_rankings([[0.1, 0.2]], [[1, 0]], metrics=MetricSpec("mrr", 1)).metrics) == ["mrr@1"]
    assert parse_metrics(["map", "MAP", "mrr@10"]) == ["map", "mrr@10"]
    with pytest.raises(ValueError, match=r"^metrics is empty: name at least one, e\.g\. metrics=\['ndcg@10'\]$"):
        evaluate_rankings([[0.1, 0.2]], [[1, 0]], metrics=[])
    with pytest.raises(TypeError, match="^metrics must be a metric name like 'ndcg@10' or a list of them, got int$"):
        evaluate_rankings([[0.1, 0.2]], [[1, 0]], metrics=10)


# --- score fusion (fastrank.fusion) --------------------------------------------------------------------------------


def test_fuse_scores_refuses_non_finite_reranker_scores_as_it_refuses_first_stage_ones():
    from fastrank.fusion import fuse_scores

    np.testing.assert_allclose(fuse_scores([1.0, 3.0], [1.0, 2.0], 1), [-2.0, 2.0])
    for bad, text in ((float("nan"), "nan"), (float("inf"), "inf"), (-np.inf, "-inf")):
        with pytest.raises(ValueError, match=rf"^reranker_scores must be finite numbers; item 1 is {text} \(1 not "
                                             r"finite\)$"):
            fuse_scores([1.0, bad], [1.0, 2.0], 1)
        with pytest.raises(ValueError, match=rf"^first_stage_scores must be finite numbers; item 0 is {text}"):
            fuse_scores([1.0, 2.0], np.array([bad, 2.0]), 1)


def test_fusion_relevance_is_the_activated_score_up_to_a_constant_without_saturating():
    """Fusion z-scores the activated scores; computed in fp32 every logit above ~17 gave sigmoid 1.0, so a list of
    confident documents tied and the first stage alone ordered it."""
    from fastrank.fusion import fuse_scores, zscore
    from fastrank.reranker import fusion_relevance, relevance

    rng = np.random.default_rng(0)
    for logits in (rng.normal(0, 4, (50, 1)), rng.normal(3, 1, (50, 1)), rng.normal(0, 3, (50, 3))):
        logits = logits.astype(np.float32)
        np.testing.assert_allclose(zscore(fusion_relevance(logits, "sigmoid")), zscore(relevance(logits, "sigmoid")),
                                   atol=2e-5)  # the same z-scores where fp32 does not saturate
    for activation in ("identity", "softmax"):
        np.testing.assert_array_equal(fusion_relevance(logits[:, :1], activation), relevance(logits[:, :1], activation))
    confident = np.array([[20.0], [25.0], [50.0], [18.0]], dtype=np.float32)
    assert np.all(relevance(confident, "sigmoid") == 1.0)
    fused = fuse_scores(fusion_relevance(confident, "sigmoid"), [1.0] * 4, 1.0)
    assert list(np.argsort(-fused, kind="stable")) == [2, 1, 0, 3]
    np.testing.assert_allclose(fused, zscore(-1 / (1 + np.exp(confident[:, 0].astype(np.float64)))), rtol=1e-9)
    multi = np.array([[0.0, 40.0], [0.0, 45.0], [0.0, 41.0]], dtype=np.float32)  # last class's log-odds 40, 45, 41
    assert list(np.argsort(-fusion_relevance(multi, "identity"), kind="stable")) == [1, 2, 0]


def test_first_stage_scores_that_are_not_numbers_are_named():
    from fastrank.fusion import check_fusion_input, fuse_scores

    with pytest.raises(ValueError, match="^first_stage_scores item 0 must be a number, got str$"):
        check_fusion_input(["a", 1.0], 2, 1)
    with pytest.raises(ValueError, match="^first_stage_scores item 1 must be a number, got NoneType$"):
        check_fusion_input([1.0, None], 2, 0)
    with pytest.raises(ValueError, match="^first_stage_scores item 1 must be a number, got bool$"):
        check_fusion_input(np.array([1.0, True], dtype=object), 2, 1)
    with pytest.raises(ValueError, match=r"^first_stage_scores must be a list of numbers \(one per document\), got "
                                         "str$"):
        check_fusion_input("12", 2, 1)
    with pytest.raises(ValueError, match="^reranker_scores item 0 must be a number, got str$"):
        fuse_scores(["1", 2.0], [1.0, 2.0], 1)
    first = check_fusion_input((np.float32(0.5), np.int64(2)), 2, 1)
    assert first.dtype == np.float64 and first.tolist() == [0.5, 2.0]


def test_infinite_labels_and_a_flat_score_list_are_refused_by_name():
    with pytest.raises(DataError, match="non-finite labels \\(inf\\)"):
        evaluate_rankings([[1.0, 2.0]], [[np.inf, 1]], metrics=["ndcg@10"])  # NDCG would be NaN
    with pytest.raises(DataError, match="got the single number 0.1: .* one query's go in a list of their own"):
        evaluate_rankings([0.1, 0.9], [0, 1])


def test_queries_whose_candidates_are_all_relevant_are_counted():
    """They score 1.0 whatever the ranking; fastrank eval says how many (an export's verification leaves them out)."""
    res = evaluate_rankings([[0.1, 0.9], [0.5], [0.3, 0.2]], [[1, 0], [1], [1, 1]], metrics="map")
    assert res.num_queries == 3 and res.extra["num_queries_all_relevant"] == 2
    assert res.metrics["map"] == pytest.approx((0.5 + 1 + 1) / 3)
