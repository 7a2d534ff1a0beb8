"""RerankingEvaluator: sample formats, one predict call, prefixing, JSON output, real models, sentence-transformers."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from fastrank.errors import DataError, FastrankError
from fastrank.evaluation import RerankingEvaluator, evaluate_rankings


class FakeModel:
    """Duck-typed model: returns a fixed score per (query, document) and records its calls."""

    def __init__(self, table: dict[tuple[str, str], float], column: bool = False):
        self.table = table
        self.column = column
        self.calls: list[dict] = []

    def predict(self, pairs, batch_size=32, show_progress_bar=None):
        self.calls.append({"n": len(pairs), "batch_size": batch_size, "show_progress_bar": show_progress_bar})
        out = np.array([self.table[tuple(p)] for p in pairs], dtype=np.float32)
        return out[:, None] if self.column else out


SAMPLES = [
    {"query_id": "a", "query": "qa", "documents": ["a1", "a2", "a3"], "labels": [1, 0, 0]},
    {"query_id": "b", "query": "qb", "documents": ["b1", "b2", "b3"], "labels": [0, 1, 1]},
    {"query_id": "c", "query": "qc", "documents": ["c1", "c2"], "labels": [0, 0]},  # no positive
    {"query_id": "d", "query": "qd", "documents": [], "labels": []},  # no candidates
]
SCORES = {("qa", "a1"): 0.1, ("qa", "a2"): 0.9, ("qa", "a3"): 0.5,
          ("qb", "b1"): 3.0, ("qb", "b2"): 2.0, ("qb", "b3"): 1.0,
          ("qc", "c1"): 0.0, ("qc", "c2"): 0.0}
MAP = (1 / 3 + (1 / 2 + 2 / 3) / 2) / 2
MRR10 = (1 / 3 + 1 / 2) / 2


def test_metrics_values_and_one_predict_call():
    model = FakeModel(SCORES)
    ev = RerankingEvaluator(SAMPLES, batch_size=7, show_progress_bar=False, ks=(1, 10))
    res = ev.evaluate(model)
    assert res.metrics["map"] == pytest.approx(MAP, abs=1e-12)
    assert res.metrics["mrr@10"] == pytest.approx(MRR10, abs=1e-12)
    assert res.metrics["recall@1"] == 0.0 and res.metrics["accuracy@10"] == 1.0
    assert (res.num_queries, res.num_skipped_no_positive, res.num_skipped_no_candidates) == (2, 1, 1)
    # one call, only the queries that can be scored, with the evaluator's batching options
    assert model.calls == [{"n": 6, "batch_size": 7, "show_progress_bar": False}]
    assert res.extra["num_pairs"] == 6


def test_prefixing_and_primary_metric():
    named = RerankingEvaluator(SAMPLES, name="dev", ks=(10,), primary_metric="NDCG@10")
    assert named.primary_metric == "dev_ndcg@10"
    out = named(FakeModel(SCORES))
    assert set(out) == {"dev_map", "dev_mrr@10", "dev_ndcg@10", "dev_recall@10", "dev_accuracy@10"}
    assert out["dev_map"] == pytest.approx(MAP, abs=1e-12)
    assert named.primary_metric in out

    unnamed = RerankingEvaluator(SAMPLES, ks=(10,))
    assert unnamed.primary_metric == "map"
    assert unnamed(FakeModel(SCORES))["map"] == pytest.approx(MAP, abs=1e-12)
    with pytest.raises(ValueError, match="not computed"):
        RerankingEvaluator(SAMPLES, ks=(10,), primary_metric="ndcg@5")


def test_positive_negative_format_matches_documents_labels():
    pn = [{"query": "qa", "positive": ["a1"], "negative": ["a2", "a3"]},
          {"query": "qb", "positive": ["b2", "b3"], "negative": ["b1"]}]
    a = RerankingEvaluator(pn, metrics=["map", "mrr@10"]).evaluate(FakeModel(SCORES))
    b = RerankingEvaluator(SAMPLES[:2], metrics=["map", "mrr@10"]).evaluate(FakeModel(SCORES))
    assert a.metrics == pytest.approx(b.metrics, abs=1e-12)
    assert a.metrics["map"] == pytest.approx(MAP, abs=1e-12)


def test_callers_samples_are_not_modified():
    samples = copy.deepcopy(SAMPLES)
    ev = RerankingEvaluator(samples)
    ev(FakeModel(SCORES))
    assert samples == SAMPLES


def test_two_column_or_wrong_length_predictions():
    assert RerankingEvaluator(SAMPLES, ks=(10,))(FakeModel(SCORES, column=True))["map"] == pytest.approx(MAP)

    class Bad:
        def predict(self, pairs, batch_size=32, show_progress_bar=None):
            return np.zeros((len(pairs), 3))

    with pytest.raises(FastrankError, match=r"shape \(6, 3\) for 6 pairs"):
        RerankingEvaluator(SAMPLES).evaluate(Bad())
    with pytest.raises(TypeError, match="predict"):
        RerankingEvaluator(SAMPLES).evaluate(object())


def test_bad_samples_are_rejected_with_their_position():
    with pytest.raises(DataError, match="sample 1: 2 documents but 1 labels"):
        RerankingEvaluator([SAMPLES[0], {"query": "q", "documents": ["x", "y"], "labels": [1]}])
    with pytest.raises(DataError, match="sample 0: give either"):
        RerankingEvaluator([{"query": "q", "documents": ["x"], "labels": [1], "positive": ["x"]}])
    with pytest.raises(DataError, match="sample 0: 'query' must be a string"):
        RerankingEvaluator([{"documents": ["x"], "labels": [1]}])
    with pytest.raises(DataError, match="sample 1: 'query' is empty"):  # as train, export, rerank and serve say
        RerankingEvaluator([SAMPLES[0], {"query": "  ", "documents": ["x"], "labels": [1]}])
    with pytest.raises(DataError, match="at least one sample"):
        RerankingEvaluator([])


def test_all_queries_unusable_raises():
    with pytest.raises(DataError, match="no query left"):
        RerankingEvaluator(SAMPLES[2:]).evaluate(FakeModel(SCORES))


def test_from_jsonl_and_errors_with_line_numbers(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("\n".join(json.dumps(s) for s in SAMPLES[:2]) + "\n\n", encoding="utf-8")
    ev = RerankingEvaluator.from_jsonl(path, name="x", ks=(10,))
    assert ev(FakeModel(SCORES))["x_map"] == pytest.approx(MAP, abs=1e-12)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(SAMPLES[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: not valid JSON"):
        RerankingEvaluator.from_jsonl(bad)
    bad.write_text(json.dumps(SAMPLES[0]) + "\n\n" + json.dumps({"query": "q", "documents": ["x"]}) + "\n")
    with pytest.raises(DataError, match=r"bad\.jsonl line 3: 'documents' and 'labels' go together"):
        RerankingEvaluator.from_jsonl(bad)
    with pytest.raises(DataError, match="cannot read"):
        RerankingEvaluator.from_jsonl(tmp_path / "missing.jsonl")
    array = tmp_path / "eval.json"  # one JSON array, as training reads it
    array.write_text(json.dumps(SAMPLES[:2]), encoding="utf-8")
    assert RerankingEvaluator.from_file(array, ks=(10,))(FakeModel(SCORES))["map"] == pytest.approx(MAP, abs=1e-12)
    array.write_text(json.dumps([SAMPLES[0], ["not", "a", "sample"]]))
    with pytest.raises(DataError, match=r"eval\.json item 1: "):
        RerankingEvaluator.from_file(array)


@pytest.mark.parametrize("target", ["results.json", "outdir"])
def test_json_output(tmp_path, target):
    ev = RerankingEvaluator(SAMPLES, name="dev", ks=(10,))
    out = ev(FakeModel(SCORES), output_path=tmp_path / target, epoch=2, steps=50)
    path = tmp_path / target if target.endswith(".json") else tmp_path / target / "RerankingEvaluator_dev_results.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["metrics"]["map"] == pytest.approx(out["dev_map"])
    assert (data["epoch"], data["steps"], data["primary_metric"]) == (2, 50, "dev_map")
    assert (data["num_queries"], data["num_skipped_no_positive"], data["num_skipped_no_candidates"]) == (2, 1, 1)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left


# --- real models -----------------------------------------------------------------------------------------------------


def _synthetic_samples(n_queries: int = 12, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    words = "river bank money loan water fish bridge stone market price city road music song film actor".split()
    out = []
    for i in range(n_queries):
        n = int(rng.integers(2, 9))
        docs = [" ".join(rng.choice(words, size=int(rng.integers(3, 25)))) for _ in range(n)]
        labels = [0] * n
        labels[int(rng.integers(0, n))] = 1
        out.append({"query": " ".join(rng.choice(words, size=3)), "positive": [d for d, y in zip(docs, labels) if y],
                    "negative": [d for d, y in zip(docs, labels) if not y]})
    return out


@pytest.fixture(scope="module")
def fastrank_model(tiny_model_dir):
    from fastrank import CrossEncoder

    return CrossEncoder(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def st_model(tiny_model_dir):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    return STCrossEncoder(str(tiny_model_dir), device="cpu")


def test_fastrank_model_matches_metrics_from_predict(fastrank_model):
    samples = _synthetic_samples()
    ev = RerankingEvaluator(samples, batch_size=16)
    res = ev.evaluate(fastrank_model)
    scores, labels = [], []
    for s in samples:
        docs = s["positive"] + s["negative"]
        scores.append(fastrank_model.predict([(s["query"], d) for d in docs], batch_size=16))
        labels.append([1] * len(s["positive"]) + [0] * len(s["negative"]))
    direct = evaluate_rankings(scores, labels)
    assert res.metrics == pytest.approx(direct.metrics, abs=1e-6)
    assert res.num_queries == len(samples)
    assert 0.0 < res.metrics["map"] <= 1.0


def test_same_values_as_sentence_transformers_evaluator(st_model, fastrank_model):
    """Same MAP / MRR@10 / NDCG@10 as sentence-transformers' CrossEncoderRerankingEvaluator on tie-free samples.

    Known semantic differences (so equality is only expected on samples like these):
    - queries without a positive: sentence-transformers adds 0 for them to every mean (older versions crash);
      we exclude and count them (checked below);
    - ties: sentence-transformers uses sklearn's average_precision_score / ndcg_score, which average over tied
      scores, and np.argsort for MRR (order decided by input position); we rank relevant documents last.
    """
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

    samples = _synthetic_samples(seed=3)
    theirs = CrossEncoderRerankingEvaluator(samples, at_k=10, name="st", write_csv=False)(st_model)
    keys = ["map", "mrr@10", "ndcg@10"]
    for model in (st_model, fastrank_model):  # ST's model through duck typing (identical scores), then ours
        ours = RerankingEvaluator(samples, name="st", ks=(10,))(model)
        for k in keys:
            assert ours[f"st_{k}"] == pytest.approx(theirs[f"st_{k}"], abs=1e-6), (type(model).__name__, k)
    assert 0.0 < theirs["st_map"] < 1.0  # a random model: the comparison is not between two perfect scores

    # a query without positive: zero-filled there, excluded here
    with_empty = samples + [{"query": "nothing", "positive": [], "negative": ["river bank", "song"]}]
    theirs = CrossEncoderRerankingEvaluator(with_empty, at_k=10, write_csv=False)(st_model)
    ours = RerankingEvaluator(with_empty, ks=(10,)).evaluate(st_model)
    assert ours.num_skipped_no_positive == 1
    n = len(samples)
    assert theirs["map"] == pytest.approx(ours.metrics["map"] * n / (n + 1), abs=1e-6)


def test_a_multi_class_model_and_a_reranker_are_evaluated_directly(tiny_model_factory):
    """The evaluator asks a multi-class model for logits and ranks by the last class's probability; it scores a
    Reranker (an artifact as served) as it scores a CrossEncoder."""
    from fastrank import CrossEncoder, Reranker
    from fastrank.reranker import relevance

    three = CrossEncoder(tiny_model_factory(3), device="cpu")
    ev = RerankingEvaluator(SAMPLES, ks=(10,))
    pairs = [(s["query"], d) for s in SAMPLES for d in s["documents"]]
    probs = relevance(three.predict(pairs, activation="identity"), "identity")  # each pair's last-class probability
    want = ev.evaluate(FakeModel({p: float(x) for p, x in zip(pairs, probs)}))
    assert ev.evaluate(three).metrics == pytest.approx(want.metrics, abs=1e-9)
    one = tiny_model_factory(1)
    assert ev.evaluate(Reranker(str(one))).metrics == pytest.approx(ev.evaluate(CrossEncoder(one)).metrics, abs=1e-9)


def test_one_metric_name_is_that_metric():
    ev = RerankingEvaluator(SAMPLES, metrics="ndcg@10", primary_metric="ndcg@10")
    assert ev.metric_names == ["ndcg@10"]  # not 'n', 'd', ...
    with pytest.raises(ValueError, match="metrics is empty"):
        RerankingEvaluator(SAMPLES, metrics=[], primary_metric="ndcg@10")


# --- porting from sentence-transformers' CrossEncoderRerankingEvaluator --------------------------------------------


def test_sentence_transformers_name_is_the_same_class():
    import fastrank
    from fastrank.evaluation import CrossEncoderRerankingEvaluator

    assert CrossEncoderRerankingEvaluator is RerankingEvaluator
    assert fastrank.CrossEncoderRerankingEvaluator is RerankingEvaluator
    assert "CrossEncoderRerankingEvaluator" in dir(fastrank)


def test_at_k_is_one_cut_off_with_ndcg_as_primary_metric(caplog):
    ev = RerankingEvaluator(SAMPLES, name="dev", at_k=10)
    assert ev.metric_names == ["map", "mrr@10", "ndcg@10", "recall@10", "accuracy@10"]
    assert ev.primary_metric == "dev_ndcg@10"
    out = ev(FakeModel(SCORES))
    assert {"dev_map", "dev_mrr@10", "dev_ndcg@10"} <= set(out) and out["dev_mrr@10"] == pytest.approx(MRR10)
    assert RerankingEvaluator(SAMPLES, at_k=3, primary_metric="map").primary_metric == "map"
    assert RerankingEvaluator(SAMPLES).primary_metric == "map"  # fastrank's default without at_k is kept
    with pytest.warns(FutureWarning, match="mrr_at_k is deprecated") as caught:
        assert RerankingEvaluator(SAMPLES, mrr_at_k=5).primary_metric == "ndcg@5"  # their deprecated name
    assert caught[0].filename == __file__  # points at the caller's line
    with pytest.raises(ValueError, match="either at_k"):
        RerankingEvaluator(SAMPLES, at_k=10, ks=(10,))
    with pytest.raises(ValueError, match="either at_k"):
        RerankingEvaluator(SAMPLES, at_k=10, metrics=["map"])
    for bad in (0, True, "10"):
        with pytest.raises(ValueError, match="at_k must be a positive integer"):
            RerankingEvaluator(SAMPLES, at_k=bad)
    with pytest.raises(TypeError, match="keyword-only"):
        RerankingEvaluator(SAMPLES, 10)  # their second positional argument is at_k, ours is name
    with pytest.raises(TypeError, match="prompt_name must be the name of one of the model's prompts"):
        RerankingEvaluator(SAMPLES, at_k=10, prompt_name=["query"])
    with pytest.raises(ValueError, match="write_csv=True needs at_k"):
        RerankingEvaluator(SAMPLES, write_csv=True)


def test_positive_documents_sample_by_hand():
    """Two positives, one of them missing from the first-stage documents, which rank it second of three."""
    sample = {"query": "q", "positive": ["p1", "p2"], "documents": ["n1", "p1", "n2"]}
    model = FakeModel({("q", "p1"): 3.0, ("q", "p2"): 2.0, ("q", "n1"): 1.0, ("q", "n2"): 0.0})
    idcg2 = 1 + 1 / np.log2(3)
    kept = RerankingEvaluator([sample], at_k=10, always_rerank_positives=False).evaluate(model)
    assert kept.metrics["map"] == pytest.approx(0.5) and kept.metrics["mrr@10"] == 1.0  # p2 never retrieved
    assert kept.metrics["ndcg@10"] == pytest.approx(1 / idcg2) and kept.metrics["recall@10"] == pytest.approx(0.5)
    assert kept.extra["num_pairs"] == 3
    assert kept.extra["base_metrics"]["map"] == pytest.approx(0.25)  # p1 at rank 2, p2 missing
    assert kept.extra["base_metrics"]["ndcg@10"] == pytest.approx(1 / np.log2(3) / idcg2)
    every = RerankingEvaluator([sample], at_k=10).evaluate(model)  # always_rerank_positives=True, their default
    assert every.metrics["map"] == 1.0 and every.extra["num_pairs"] == 4
    assert every.extra["base_metrics"] == kept.extra["base_metrics"]
    # a query that lost all its positives scores 0 (counted, not skipped as a query without positive)
    lost = {"query": "q", "positive": ["p2"], "documents": ["n1", "n2"]}
    res = RerankingEvaluator([sample, lost], at_k=10, always_rerank_positives=False).evaluate(model)
    assert res.num_queries == 2 and res.num_skipped_no_positive == 0
    assert res.metrics["map"] == pytest.approx(0.25) and res.extra["num_queries_all_positives_missing"] == 1
    with pytest.raises(DataError, match="sample 0: give either"):
        RerankingEvaluator([{"query": "q", "positive": ["p1"], "negative": ["n1"], "documents": ["n1"]}])


def _positive_documents_samples(n_queries: int = 18, seed: int = 5) -> list[dict]:
    """sentence-transformers' main shape: first-stage ``documents`` that hold all, some or none of the positives."""
    rng = np.random.default_rng(seed)
    words = "river bank money loan water fish bridge stone market price city road music song film actor".split()
    out = []
    for i in range(n_queries):
        pool: list[str] = []
        while len(pool) < int(rng.integers(4, 10)):
            doc = " ".join(rng.choice(words, size=int(rng.integers(3, 20))))
            if doc not in pool:
                pool.append(doc)
        num_pos = 1 + i % 3
        positive, negative = pool[:num_pos], pool[num_pos:]
        keep = positive if i % 3 == 0 else [] if i % 6 == 2 else positive[1:]
        documents = [str(d) for d in rng.permutation(negative + keep)]
        out.append({"query": " ".join(rng.choice(words, size=3)), "positive": positive, "documents": documents})
    return out


@pytest.mark.parametrize("always_rerank_positives", [True, False])
def test_positive_documents_samples_equal_sentence_transformers(st_model, fastrank_model, always_rerank_positives):
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator as STEvaluator

    from fastrank.evaluation import CrossEncoderRerankingEvaluator

    samples = _positive_documents_samples()
    assert any(not set(s["positive"]) & set(s["documents"]) for s in samples)  # some lost all their positives
    assert any(0 < len(set(s["positive"]) & set(s["documents"])) < len(s["positive"]) for s in samples)
    samples += _synthetic_samples(n_queries=4, seed=9)  # and the positive + negative shape in the same list
    kwargs = {"at_k": 5, "always_rerank_positives": always_rerank_positives, "name": "dev", "batch_size": 8,
              "show_progress_bar": False}
    theirs_ev = STEvaluator(samples, write_csv=False, **kwargs)
    theirs = theirs_ev(st_model)
    assert set(theirs) == {"dev_map", "dev_mrr@5", "dev_ndcg@5", "dev_base_map", "dev_base_mrr@5", "dev_base_ndcg@5"}
    assert 0.0 < theirs["dev_map"] < 1.0 and 0.0 < theirs["dev_base_map"] < 1.0
    for model in (st_model, fastrank_model):
        ev = CrossEncoderRerankingEvaluator(samples, **kwargs)
        ours = ev(model)
        assert ev.primary_metric == theirs_ev.primary_metric == "dev_ndcg@5"
        assert set(theirs) <= set(ours)
        for key, value in theirs.items():
            assert ours[key] == pytest.approx(value, abs=1e-6), (type(model).__name__, key)
    assert ev.evaluate(fastrank_model).num_queries == len(samples)  # every query counts, as in theirs


def test_write_csv_like_sentence_transformers(st_model, tmp_path):
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator as STEvaluator

    samples = _positive_documents_samples(n_queries=6)
    for step in (10, 20):
        STEvaluator(samples, at_k=10, name="dev")(st_model, output_path=str(tmp_path / "st"), epoch=1, steps=step)
        RerankingEvaluator(samples, at_k=10, name="dev", write_csv=True)(
            st_model, output_path=tmp_path / "ours", epoch=1, steps=step)
    name = "CrossEncoderRerankingEvaluator_dev_results_@10.csv"
    theirs = (tmp_path / "st" / name).read_text(encoding="utf-8").splitlines()
    ours = (tmp_path / "ours" / name).read_text(encoding="utf-8").splitlines()
    assert ours[0] == theirs[0] == "epoch,steps,MAP,MRR@10,NDCG@10" and len(ours) == len(theirs) == 3
    for a, b in zip(ours[1:], theirs[1:]):
        assert np.allclose([float(x) for x in a.split(",")], [float(x) for x in b.split(",")], atol=1e-6)
    assert (tmp_path / "ours" / "RerankingEvaluator_dev_results.json").is_file()


def test_flat_jsonl_evaluates_like_its_grouped_form(tmp_path):
    """One {"query", "document", "label"} per line (what `fastrank train --data` reads) is grouped by query for
    evaluation too (it failed with "no candidates given")."""
    groups = [{"query": "q1", "documents": ["a", "b", "c"], "labels": [0, 1, 0]},
              {"query": "q2", "documents": ["d", "e"], "labels": [1, 0]}]
    flat = tmp_path / "flat.jsonl"
    flat.write_text("".join(json.dumps({"query": g["query"], "document": d, "label": y}) + "\n"
                            for g in groups for d, y in zip(g["documents"], g["labels"])))
    grouped = tmp_path / "grouped.jsonl"
    grouped.write_text("".join(json.dumps(g) + "\n" for g in groups))
    table = {("q1", "a"): 0.9, ("q1", "b"): 0.5, ("q1", "c"): 0.1, ("q2", "d"): 0.2, ("q2", "e"): 0.3}
    got = RerankingEvaluator.from_file(flat, ks=(10,)).evaluate(FakeModel(table))
    want = RerankingEvaluator.from_file(grouped, ks=(10,)).evaluate(FakeModel(table))
    assert got.metrics == want.metrics and got.num_queries == 2
    assert got.metrics["map"] == pytest.approx((0.5 + 0.5) / 2)  # each positive ranked second


def test_numpy_samples_are_read_and_infinite_labels_refused():
    """A sample built from NumPy arrays (a pandas column's values) reads like lists; an infinite label, which would
    make NDCG NaN, is refused."""
    arrays = RerankingEvaluator([{"query": "q", "documents": np.array(["a", "b"]), "labels": np.array([1, 0])}])
    lists = RerankingEvaluator([{"query": "q", "documents": ["a", "b"], "labels": [1, 0]}])
    assert arrays.queries[0].documents == lists.queries[0].documents == ("a", "b")
    assert arrays.queries[0].labels.tolist() == [1.0, 0.0]
    with pytest.raises(DataError, match="each label must be a finite number \\(e.g. 0, 1 or 0.7\\), got inf"):
        RerankingEvaluator([{"query": "q", "documents": ["a", "b"], "labels": [float("inf"), 0]}])


def test_prompt_name_reaches_the_model_or_is_refused(tiny_model_dir, tmp_path):
    """``prompt_name`` goes to a CrossEncoder's predict (through PriorReranker too); a Reranker, whose predict has
    none, is refused with why (it failed with Python's bare unexpected-keyword TypeError)."""
    from fastrank import CrossEncoder, Reranker
    from fastrank.losses.prior import PriorReranker

    samples = [{"query": "capital of france", "documents": ["paris is the capital", "berlin"], "labels": [1, 0]}]
    model = CrossEncoder(tiny_model_dir, device="cpu", prompts={"q": "query: "})
    model.save(tmp_path / "m")
    named = RerankingEvaluator(samples, prompt_name="q")

    class NoPrior:
        def __call__(self, queries, doc_lists):
            import torch

            return [torch.zeros(len(row)) for row in doc_lists]

    seen = []
    real = model.predict
    model.predict = lambda *a, **k: seen.append(k.get("prompt_name")) or real(*a, **k)
    named.evaluate(PriorReranker(model, NoPrior(), 1.0))
    assert seen == ["q"]
    with pytest.raises(TypeError, match=r"prompt_name='q' needs a model whose predict takes prompt_name .*Reranker"):
        named.evaluate(Reranker(tmp_path / "m"))


def test_labels_read_as_a_training_file_reads_them(tmp_path):
    """A file whose labels are numeric strings (a CSV's cells, written to JSON as they were) trains, so it is
    evaluated too; it was refused as 'not a list of numbers'."""
    from fastrank.data import read_groups

    path = tmp_path / "strings.jsonl"
    path.write_text('{"query": "q", "documents": ["a", "b", "c"], "labels": ["1", "0", "0.5"]}\n')
    assert RerankingEvaluator.from_file(path).queries[0].labels.tolist() == read_groups(path)[0].labels \
        == [1.0, 0.0, 0.5]
    with pytest.raises(DataError, match="sample 0: each label must be a finite number .*got 'yes'"):
        RerankingEvaluator([{"query": "q", "documents": ["a"], "labels": ["yes"]}], name="x")
