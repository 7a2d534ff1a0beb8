"""Retrieve-then-rerank evaluation: first-stage vs reranked metrics, misses counted against recall/NDCG."""

from __future__ import annotations

import numpy as np
import pytest

from fastrank.data import QueryGroup
from fastrank.evaluation.retrieval import RetrievalTask, evaluate_retrieve_rerank


class Embedder:
    """2-d vectors: queries point at (1, 0); document 'dK' has cosine K/10 with every query."""

    def encode(self, texts, batch_size=64):
        out = []
        for t in texts:
            s = 1.0 if t.startswith("q") else int(t[1:]) / 10
            out.append([s, np.sqrt(1 - s * s)])
        return np.asarray(out, dtype=np.float32)


class OracleReranker:
    def __init__(self, relevant):
        self.relevant = relevant

    def predict(self, pairs, batch_size=64):
        return np.array([1.0 if (q, d) in self.relevant else 0.0 for q, d in pairs])


def _task():
    groups = [QueryGroup("q1", [f"d{i}" for i in range(10)], [1.0 if i in (2, 9) else 0.0 for i in range(10)]),
              QueryGroup("q2", ["d5", "d0"], [1.0, 0.0])]
    return RetrievalTask.from_groups(groups)


def test_from_groups_builds_corpus_and_qrels():
    task = _task()
    assert len(task.corpus) == 10 and task.queries == ["q1", "q2"]
    assert task.qrels == [{2: 1.0, 9: 1.0}, {5: 1.0}]


def test_graded_labels_give_the_graded_ndcg_of_fastrank_eval():
    """NDCG of a retrieved ranking uses the labels as gains, as ``evaluate_rankings`` (fastrank eval) does."""
    from fastrank.evaluation.metrics import evaluate_rankings

    groups = [QueryGroup("q1", ["d9", "d8", "d1"], [1.0, 2.0, 0.0])]  # the first stage ranks d9 > d8 > d1
    task = RetrievalTask.from_groups(groups)
    assert task.qrels == [{0: 1.0, 1: 2.0}]
    out = evaluate_retrieve_rerank(task, Embedder(), None, top_k=3, ks=(3,), use_bm25=False)
    graded = evaluate_rankings([[0.9, 0.8, 0.1]], [[1.0, 2.0, 0.0]], metrics="ndcg@3").metrics["ndcg@3"]
    ideal = 2 + 1 / np.log2(3)  # linear gains: the label
    assert out["first_stage"]["ndcg@3"] == pytest.approx(graded) == pytest.approx((1 + 2 / np.log2(3)) / ideal)


def test_first_stage_and_reranked_metrics():
    task = _task()
    relevant = {("q1", "d2"), ("q1", "d9"), ("q2", "d5")}
    out = evaluate_retrieve_rerank(task, Embedder(), OracleReranker(relevant), top_k=3, ks=(1,), use_bm25=False)
    # first stage ranks d9, d8, d7 for both queries: q1 finds d9 at rank 1 (d2 missed), q2 misses d5
    assert out["first_stage"]["recall@3"] == pytest.approx((0.5 + 0.0) / 2)
    assert out["first_stage"]["mrr@1"] == pytest.approx(0.5)
    ideal_q1 = 1 + 1 / np.log2(3)
    assert out["first_stage"]["ndcg@3"] == pytest.approx((1 / ideal_q1 + 0.0) / 2)
    # reranking cannot recover what the first stage missed, but fixes the order inside the top 3
    assert out["reranked"]["recall@3"] == pytest.approx(out["first_stage"]["recall@3"])
    assert out["reranked"]["mrr@1"] == pytest.approx(0.5)
    assert set(out["latency_s"]) >= {"first_stage_per_query", "rerank_per_query_first_stage"}


def test_a_cutoff_beyond_the_retrieved_depth_does_not_find_what_was_not_retrieved():
    task = _task()
    relevant = {("q1", "d2"), ("q1", "d9"), ("q2", "d5")}
    out = evaluate_retrieve_rerank(task, Embedder(), OracleReranker(relevant), top_k=3, ks=(3, 10), use_bm25=False)
    for stage in ("first_stage", "reranked"):  # d2 and d5 were never retrieved: @10 knows no more than @3
        assert out[stage]["recall@10"] == out[stage]["recall@3"] == pytest.approx(0.25)
        assert out[stage]["mrr@10"] == out[stage]["mrr@3"] == pytest.approx(0.5)
        assert out[stage]["ndcg@10"] == pytest.approx(out[stage]["ndcg@3"])


def test_reranking_improves_a_bad_first_stage_order():
    groups = [QueryGroup("q1", [f"d{i}" for i in range(1, 10)], [1.0 if i == 3 else 0.0 for i in range(1, 10)])]
    task = RetrievalTask.from_groups(groups)
    out = evaluate_retrieve_rerank(task, Embedder(), OracleReranker({("q1", "d3")}), top_k=9, ks=(1, 10),
                                   use_bm25=False)
    assert out["first_stage"]["mrr@10"] == pytest.approx(1 / 7)
    assert out["reranked"]["mrr@10"] == 1.0 and out["reranked"]["ndcg@10"] == 1.0


def test_twins_differing_in_case_and_spacing_are_one_document():
    """WikiQA holds sentences raw (dev/test) and tokenized (train): a positive's twin is not a negative."""
    groups = [QueryGroup("q1", ["Paris is the capital.", "Lyon is a city."], [1.0, 0.0])]
    task = RetrievalTask.from_groups(groups, extra_corpus=["paris is the capital .", "lyon is a city ."])
    assert task.corpus == ["Paris is the capital.", "Lyon is a city."] and task.qrels == [{0: 1.0}]


class ScoreReranker:
    def __init__(self, scores):
        self.scores = scores

    def predict(self, pairs, batch_size=64):
        return np.array([self.scores[d] for _, d in pairs])


def test_score_fusion_is_opt_in_and_mixes_z_normalised_scores():
    # first stage top 3: d9 (cos .9), d8 (.8), d7 (.7); relevant d8; the reranker prefers d7, then d8, then d9
    groups = [QueryGroup("q1", [f"d{i}" for i in range(1, 10)], [1.0 if i == 8 else 0.0 for i in range(1, 10)])]
    task = RetrievalTask.from_groups(groups)
    reranker = ScoreReranker({"d9": 0.0, "d8": 0.9, "d7": 1.0})
    plain = evaluate_retrieve_rerank(task, Embedder(), reranker, top_k=3, ks=(1,), use_bm25=False)
    assert "reranked_fused" not in plain
    out = evaluate_retrieve_rerank(task, Embedder(), reranker, top_k=3, ks=(1,), use_bm25=False,
                                   fusion_weights=(0, 1, 10))
    assert set(out["reranked_fused"]) == {"0", "1", "10"}
    # z(rerank) = [-1.41, 0.59, 0.82], z(cos) = [1.22, 0, -1.22]: w=0 keeps the reranker's d7 first, w=1 puts
    # d8 first (0.59 vs -0.18 and -0.41), w=10 is the first stage's order again (d9 first)
    assert out["reranked_fused"]["0"]["mrr@1"] == out["reranked"]["mrr@1"] == 0.0
    assert out["reranked_fused"]["1"]["mrr@1"] == 1.0
    assert out["reranked_fused"]["10"]["mrr@1"] == out["first_stage"]["mrr@1"] == 0.0
    assert out["reranked_fused"]["10"]["mrr@3"] == pytest.approx(0.5)


def test_fusion_mixes_a_sentence_transformers_models_activated_scores_as_fastranks():
    """Fusion mixes scores after the model's activation. A sentence-transformers reranker says its activation as
    ``activation_fn`` (no ``activation``): its logits were fused raw, so it fused otherwise than the same model in
    fastrank. Logits d9 0, d8 6, d7 9: sigmoid squeezes d8 and d7 together and the first stage lifts d8."""
    import torch

    logits = {"d9": 0.0, "d8": 6.0, "d7": 9.0}

    class Fastrank:
        activation = "sigmoid"

        def predict(self, pairs, batch_size=64, activation=None):
            raw = np.array([logits[d] for _, d in pairs])
            return raw if activation == "identity" else 1 / (1 + np.exp(-raw))

    class SentenceTransformers:
        activation_fn = torch.nn.Sigmoid()

        def predict(self, pairs, batch_size=64, activation_fn=None):
            raw = torch.tensor([logits[d] for _, d in pairs])
            return (activation_fn or self.activation_fn)(raw).numpy()

    groups = [QueryGroup("q1", [f"d{i}" for i in range(1, 10)], [1.0 if i == 8 else 0.0 for i in range(1, 10)])]
    task = RetrievalTask.from_groups(groups)
    runs = [evaluate_retrieve_rerank(task, Embedder(), scorer, top_k=3, ks=(1,), use_bm25=False,
                                     fusion_weights=(0.5,)) for scorer in (Fastrank(), SentenceTransformers())]
    assert runs[0]["reranked"]["mrr@1"] == 0.0 and runs[0]["reranked_fused"]["0.5"]["mrr@1"] == 1.0
    assert runs[1]["reranked_fused"] == runs[0]["reranked_fused"]


def test_zscore_of_a_constant_list_is_zero():
    from fastrank.fusion import zscore as _zscore

    assert _zscore(np.array([2.0, 2.0])).tolist() == [0.0, 0.0]
    assert _zscore(np.array([1.0, 3.0])).tolist() == pytest.approx([-1.0, 1.0])
    # scores at the float64 limits: the variance overflowed to inf (or underflowed to 0) and gave all zeros
    assert _zscore(np.array([1e308, -1e308])).tolist() == pytest.approx([1.0, -1.0])
    assert _zscore(np.array([1e-320, 3e-320])).tolist() == pytest.approx([-1.0, 1.0])


def test_a_multi_class_reranker_is_ranked_by_its_last_class():
    """predict gives (n, 2) logits: they were flattened, pairing documents with the wrong numbers."""

    class TwoClass:
        num_labels, activation = 2, "identity"

        def predict(self, pairs, batch_size=64, activation=None):
            relevant = {("q1", "d2"), ("q1", "d9"), ("q2", "d5")}
            return np.array([[0.0, 3.0] if p in relevant else [2.0, 0.0] for p in map(tuple, pairs)])

    task = _task()
    relevant = {("q1", "d2"), ("q1", "d9"), ("q2", "d5")}
    two = evaluate_retrieve_rerank(task, Embedder(), TwoClass(), top_k=9, ks=(1, 10), use_bm25=False,
                                   fusion_weights=(0.5,))
    oracle = evaluate_retrieve_rerank(task, Embedder(), OracleReranker(relevant), top_k=9, ks=(1, 10),
                                      use_bm25=False)
    assert two["reranked"] == oracle["reranked"] and two["reranked"]["mrr@1"] == 1.0
    assert two["reranked_fused"]["0.5"]["mrr@1"] == 1.0


def test_one_cut_off_and_the_skipped_queries_are_reported():
    groups = [QueryGroup("q1", ["d9", "d8"], [1.0, 0.0]), QueryGroup("q2", ["d7", "d6"], [0.0, 0.0])]
    task = RetrievalTask.from_groups(groups)
    out = evaluate_retrieve_rerank(task, Embedder(), None, top_k=2, ks=1, use_bm25=False)
    assert out["num_queries"] == 1 and out["queries_skipped"] == 1
    assert out["first_stage"]["mrr@1"] == 1.0 and "mrr@2" in out["first_stage"]


def test_a_top_k_beyond_the_corpus_is_the_corpus():
    task = _task()
    out = evaluate_retrieve_rerank(task, Embedder(), None, top_k=100000, ks=(10,), use_bm25=False)
    assert out["top_k"] == len(task.corpus) == 10 and "ndcg@100000" not in out["first_stage"]
    assert out["first_stage"]["recall@10"] == 1.0


def test_qrels_given_as_sets_of_relevant_indices_still_work():
    """The field's earlier type: a set of relevant corpus indices is grade 1 for each."""
    task = RetrievalTask([f"d{i}" for i in range(10)], ["q1"], [{9, 2}])
    assert task.qrels == [{9: 1.0, 2: 1.0}]
    out = evaluate_retrieve_rerank(task, Embedder(), None, top_k=3, ks=(3,), use_bm25=False)
    assert out["first_stage"]["recall@3"] == pytest.approx(0.5)


def test_bm25_over_chinese_text_is_warned_about(monkeypatch, caplog):
    """BM25's tokenizer splits at spaces and punctuation: a run of Chinese characters is one 'word', so the BM25
    stage's numbers on such a corpus mean little, and nothing said so."""
    import sys
    import types

    from fastrank.evaluation.retrieval import _bm25_top_k

    class BM25:
        def index(self, tokens, show_progress=False):
            self.n = len(tokens)

        def retrieve(self, queries, k, show_progress=False):
            return [list(range(k))] * len(queries), [[1.0] * k] * len(queries)

    monkeypatch.setitem(sys.modules, "bm25s", types.SimpleNamespace(BM25=BM25, tokenize=lambda texts, **_: texts))
    for docs, warned in ((["冰川洞穴是在冰川冰内形成的洞穴", "巴黎是法国的首都"], True), (["a glacier cave", "paris"], False)):
        caplog.clear()
        task = RetrievalTask.from_groups([QueryGroup("冰川洞穴" if warned else "caves", docs, [1.0, 0.0])])
        with caplog.at_level("WARNING", logger="fastrank.evaluation.retrieval"):
            assert len(_bm25_top_k(task, 2, required=True)[0][0]) == 2
        assert ("mostly CJK ideographs" in caplog.text) is warned
