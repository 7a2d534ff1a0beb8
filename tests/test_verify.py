"""The export verification gate (``fastrank.export.verify``): which queries gate NDCG/MAP, and what is reported."""

from __future__ import annotations

import json

import numpy as np

from fastrank.export.verify import BOUNDS, VerifyGroup, check, compare, normalize_groups


def _reversed_logits(groups: list[VerifyGroup]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Reference logits that rank each group's documents in order, and a candidate that ranks them in reverse."""
    reference = [np.arange(len(g.documents), 0, -1, dtype=np.float64)[:, None] for g in groups]
    return reference, [-r for r in reference]


def test_one_document_queries_do_not_gate_the_metrics():
    """Each such query has NDCG/MAP 1.0 under any ranking: a reversed ranking would pass every bound."""
    groups, source = normalize_groups([(f"q{i}", ["only doc"], [1]) for i in range(5)])
    assert source == "caller (no query with two or more documents of different labels) + builtin labelled set"
    assert all(g.labels is not None for g in groups if g.builtin)  # the built-in set keeps its labels
    reference, candidate = _reversed_logits(groups)
    report = compare(reference, candidate, groups)
    assert report["metric_queries"] == sum(g.builtin for g in groups) == 8
    assert report["delta_ndcg@10"] > BOUNDS["int8"]["delta_ndcg@10"]
    assert check(report, BOUNDS["int8"])


def test_equal_label_queries_do_not_gate_the_metrics():
    groups, source = normalize_groups([("q", ["a", "b", "c"], [1, 1, 1]), ("r", ["a", "b"], [0, 0])])
    assert source.endswith("+ builtin labelled set")
    report = compare(*_reversed_logits(groups), groups)
    assert report["metric_queries"] == 8 and report["delta_ndcg@10"] > 0.01


def test_only_qualifying_caller_queries_gate_the_metrics():
    groups, source = normalize_groups([("q", ["a", "b", "c"], [2, 0, 1]), ("r", ["a"], [1])])
    assert source == "caller + builtin long documents (logits and rankings only)"
    assert [g.labels is not None for g in groups] == [True, True] + [False] * 8
    report = compare(*_reversed_logits(groups), groups)
    assert report["metric_queries"] == 1 and report["delta_ndcg@10"] > 0.01


def test_a_report_without_metric_queries_says_what_is_missing():
    group = VerifyGroup("q", ["a", "b"], [0.0, 0.0])
    report = compare([np.ones((2, 1))], [np.ones((2, 1))], [group])
    assert report["metric_queries"] == 0 and "delta_ndcg@10" not in report
    (failure,) = check(report, BOUNDS["int8"])
    assert "no query with two or more documents of different labels" in failure
    assert "give labelled verification data" not in failure


def test_a_verify_file_of_one_document_queries_is_named_and_replaced_for_the_metrics(tmp_path):
    data = tmp_path / "verify.jsonl"
    data.write_text("".join(json.dumps({"query": f"q{i}", "documents": ["d"], "labels": [1]}) + "\n"
                            for i in range(3)))
    groups, source = normalize_groups(data)
    assert source == f"{data} (no query with two or more documents of different labels) + builtin labelled set"
    assert sum(g.builtin and g.labels is not None for g in groups) == 8


def test_export_gates_metrics_on_the_builtin_set_for_one_document_queries(tiny_model_factory, tmp_path):
    """An export with one-document-per-query data reports the metrics of the built-in labelled set, and on how
    many queries they were computed."""
    from fastrank.export import export_model

    groups = [(f"query {i}", [f"document {i}"], [1]) for i in range(4)]
    manifest = export_model(tiny_model_factory(3), tmp_path / "art", verify_pairs=groups, num_threads=1)
    parity = manifest["parity"]
    assert parity["metric_queries"] == 8 and parity["num_queries"] == 4 + 8
    assert "ndcg@10_reference" in parity and parity["ndcg@10_reference"] < 1.0


def test_kendall_tau_and_discordant_pairs_compare_a_bounded_number_of_pairs_at_a_time(monkeypatch):
    """Kendall's tau-b (against scipy's, ties included) and the discordant-pair count come out the same when the
    pairs are compared a few rows at a time, so a long list no longer needs all n^2 / 2 pairs in memory (a
    12k-document list took 3.3 GB)."""
    import pytest

    import fastrank.export.verify as verify

    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=101), 1)  # ties in both
    b = np.round(a + rng.normal(scale=0.3, size=101), 1)
    whole = (verify.kendall_tau(a, b), verify.discordant_pairs(a, b, 0.05))
    brute = sum(1 for i in range(101) for j in range(i + 1, 101)
                if np.sign(a[i] - a[j]) != np.sign(b[i] - b[j]) and abs(a[i] - a[j]) > 0.05)
    monkeypatch.setattr(verify, "PAIR_ELEMENTS", 250)  # 2 rows of 101 at a time
    assert verify.kendall_tau(a, b) == pytest.approx(stats.kendalltau(a, b).statistic, abs=1e-12)
    assert (verify.kendall_tau(a, b), verify.discordant_pairs(a, b, 0.05)) == (pytest.approx(whole[0]), whole[1])
    assert whole[1] == brute and verify.kendall_tau(a, a) == 1.0 and verify.kendall_tau(a, -a) == pytest.approx(-1)
    assert verify.kendall_tau(np.ones(5), np.ones(5)) == 1.0 and verify.kendall_tau(np.ones(5), np.arange(5)) == 0.0
