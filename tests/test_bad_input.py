"""What users plausibly pass wrongly to the public API: each call either works as the right input would, or raises
an error that says what was wrong and what is accepted (never a bare KeyError, str.encode or NumPy message)."""

from __future__ import annotations

import numpy as np
import pytest

from fastrank.data import QueryGroup
from fastrank.errors import DataError, FastrankError

DOCS = ["A glacier cave is a cave formed within the ice of a glacier.", "Paris is in France.", "Cats purr."]


@pytest.fixture(scope="module")
def reranker(o1_artifact):
    from fastrank import Reranker

    return Reranker(o1_artifact)


@pytest.fixture(scope="module")
def embedder(tiny_model_dir):
    from fastrank import EmbeddingModel

    return EmbeddingModel(str(tiny_model_dir), device="cpu")


def test_a_dataframe_or_a_dict_of_documents_is_refused_with_the_way_to_pass_it(reranker):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"text": DOCS, "title": ["G", "P", "C"]})
    with pytest.raises(TypeError, match=r"iterates over its column names: pass its text column \(df\['text'\]"):
        reranker.rerank("glacier", frame)  # it ranked the two column names
    with pytest.raises(TypeError, match="iterates over its column names"):
        reranker.predict(frame[["title", "text"]])
    rows = reranker.rerank("glacier", frame.to_dict("records"))
    assert sorted(r["index"] for r in rows) == [0, 1, 2]
    assert [r["index"] for r in reranker.rerank("glacier", frame["text"])] == \
        [r["index"] for r in reranker.rerank("glacier", DOCS)]
    with pytest.raises(TypeError, match=r"a dict of 2 entries, which is not a document: pass "
                                        r"list\(documents.values\(\)\)"):
        reranker.rerank("glacier", {"d1": DOCS[0], "d2": DOCS[1]})
    with pytest.raises(TypeError, match="got a single dict; wrap it"):  # one titled document given alone
        reranker.rerank("glacier", {"text": DOCS[0]})
    with pytest.raises(TypeError, match=r"documents must be a list of documents .*got None"):
        reranker.rerank("glacier", None)
    with pytest.raises(TypeError, match=r"pairs must be a list of \(query, document\) tuples, got None"):
        reranker.predict(None)


def test_models_and_paths_are_told_apart(reranker, o1_artifact, tiny_model_dir, embedder):
    import fastrank
    from fastrank import CrossEncoder, EmbeddingModel, Reranker
    from fastrank.mining import mine_hard_negatives

    assert fastrank.rerank("glacier", DOCS, model=reranker) == reranker.rerank("glacier", DOCS)
    assert fastrank.rerank("glacier", DOCS, model=o1_artifact) == reranker.rerank("glacier", DOCS)
    with pytest.raises(TypeError, match="model must be a checkpoint or artifact folder, a hub id, or a Reranker .*got "
                                        "CrossEncoder"):
        fastrank.rerank("glacier", DOCS, model=CrossEncoder(tiny_model_dir, device="cpu"))
    for cls in (Reranker, CrossEncoder, EmbeddingModel):
        with pytest.raises(TypeError, match=r"must be a .*folder or a hub id \(a str or path\), got NoneType"):
            cls(None)
    groups = [QueryGroup("where are glacier caves", DOCS[:2], [1.0, 0.0])]
    with pytest.raises(TypeError, match=r"embedding_model must be a loaded model, got the str .*: pass "
                                        r"fastrank.EmbeddingModel\("):
        mine_hard_negatives(groups, str(tiny_model_dir), DOCS, num_negatives=1)
    with pytest.raises(TypeError, match=r"embedding_model must be an embedding model with encode\(texts\)"):
        mine_hard_negatives(groups, None, DOCS, num_negatives=1)
    with pytest.raises(TypeError, match=r"teacher must be a cross-encoder with predict\(pairs\) .*got str: load it"):
        mine_hard_negatives(groups, embedder, DOCS, num_negatives=1, teacher=str(tiny_model_dir))


def test_a_single_provider_name_is_a_list_of_one():
    from fastrank.backends.onnx_backend import choose_providers

    available = ["CPUExecutionProvider"]
    assert choose_providers(available, "CPUExecutionProvider") == ["CPUExecutionProvider"]
    assert choose_providers(available, ("CPUExecutionProvider", {})) == [("CPUExecutionProvider", {})]
    with pytest.raises(FastrankError, match=r"provider\(s\) \['CUDAExecutionProvider'\] are not available"):
        choose_providers(available, "CUDAExecutionProvider")  # not ['C', 'U', 'D', ...]


def test_scores_come_as_any_iterable_and_never_as_none_or_one_number():
    from fastrank.fusion import fuse_scores

    want = fuse_scores([1.0, 2.0, 3.0], [3.0, 2.0, 1.0], 0.5)
    assert np.array_equal(fuse_scores((x for x in [1.0, 2.0, 3.0]), iter([3.0, 2.0, 1.0]), 0.5), want)
    with pytest.raises(ValueError, match="fuse_scores needs first_stage_scores"):
        fuse_scores([1, 2, 3], None, 0)
    with pytest.raises(ValueError, match="reranker_scores must be a list of numbers .*got None"):
        fuse_scores(None, [1, 2, 3], 0.5)
    with pytest.raises(ValueError, match="reranker_scores must be a list of numbers .*got int"):
        fuse_scores(5, [1], 1.0)


def test_mining_options_must_be_numbers_of_the_right_kind(embedder):
    from fastrank.mining import add_answer_negatives, mine_hard_negatives

    groups = [QueryGroup("where are glacier caves", DOCS[:2], [1.0, 0.0]), QueryGroup("cats", DOCS[2:], [1.0])]
    for options, message in [({"num_negatives": "2"}, "num_negatives must be an integer >= 1, got '2'"),
                             ({"num_negatives": 1.5}, "num_negatives must be an integer >= 1, got 1.5"),
                             ({"range_min": 1.5}, "range_min must be an integer >= 0"),
                             ({"range_max": 2.5}, r"range_max must be None \(every rank\) or an integer, got 2.5"),
                             ({"min_score": float("nan")}, "min_score must be None or a finite number"),
                             ({"relative_margin": "0.1"}, r"relative_margin must be None or a number in \[0, 1\)"),
                             ({"batch_size": 0}, "batch_size must be a positive integer")]:
        with pytest.raises(ValueError, match=message):
            mine_hard_negatives(groups, embedder, DOCS, **{"num_negatives": 1, **options})
    for closest, extra in [(1.5, 0), (1, 1.5)]:
        with pytest.raises(ValueError, match="closest and random_count must be integers >= 0"):
            add_answer_negatives(groups, embedder, closest=closest, random_count=extra)
    from_generator = mine_hard_negatives(groups, embedder, (d for d in DOCS), num_negatives=1, show_progress_bar=False)
    from_list = mine_hard_negatives(groups, embedder, DOCS, num_negatives=1, show_progress_bar=False)
    assert [g.documents for g in from_generator.groups] == [g.documents for g in from_list.groups]


def test_a_file_where_a_folder_goes_is_refused_before_the_work(embedder, reranker, tmp_path):
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.mining import mine_hard_negatives

    a_file = tmp_path / "a-file.txt"
    a_file.write_text("x")
    groups = [QueryGroup("where are glacier caves", DOCS[:2], [1.0, 0.0])]
    with pytest.raises(FastrankError, match="cache_dir .*a-file.txt is a file; give a directory"):
        mine_hard_negatives(groups, embedder, DOCS, num_negatives=1, cache_dir=a_file)

    class NotScored:
        def predict(self, *args, **kwargs):
            raise AssertionError("scored before the output path was checked")

    evaluator = RerankingEvaluator([{"query": "q", "positive": ["a"], "negative": ["b"]}])
    with pytest.raises(FastrankError, match="output_path .*a-file.txt is a file; give a directory"):
        evaluator(NotScored(), output_path=a_file)


def test_embedding_model_lengths_and_batches_are_checked(tiny_model_dir, embedder):
    from fastrank import EmbeddingModel

    for bad in (0, -5, "64"):
        with pytest.raises(ValueError, match=r"max_length must be a positive integer or None"):
            EmbeddingModel(str(tiny_model_dir), max_length=bad)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        embedder.encode(["a"], batch_size=1.5)


def test_evaluate_rankings_takes_lists_and_says_so(tmp_path):
    from fastrank.evaluation.metrics import evaluate_rankings

    want = evaluate_rankings([[0.1, 0.9]], [[0, 1]], ks=(10,))
    assert evaluate_rankings(iter([[0.1, 0.9]]), iter([[0, 1]]), ks=(10,), query_ids=(q for q in ["a"])).metrics \
        == want.metrics
    with pytest.raises(TypeError, match=r"scores must be a list .*got dict: pass the values in one order for both"):
        evaluate_rankings({"q1": [0.1, 0.9]}, {"q1": [0, 1]})
    with pytest.raises(TypeError, match="scores must be a list with one list of numbers per query, got None"):
        evaluate_rankings(None, None)


def test_rerank_run_reads_a_pytrec_eval_run_and_refuses_other_shapes(reranker):
    from fastrank.run_rerank import rerank_run

    queries, documents = {"q1": "glacier caves"}, {"d1": DOCS[0], "d2": DOCS[1], "d3": DOCS[2]}
    as_pairs = rerank_run(reranker, {"q1": [("d2", 3.0), ("d1", 2.0), ("d3", 2.0)]}, queries, documents,
                          fusion_weight=1.0, show_progress_bar=False)
    as_dicts = rerank_run(reranker, {"q1": {"d1": 2.0, "d3": 2.0, "d2": 3.0}}, queries, documents,
                          fusion_weight=1.0, show_progress_bar=False)
    # ordered by score, ties by id descending, as trec_eval reads a run (scored in another order: float noise)
    assert [d for d, _ in as_dicts["q1"]] == [d for d, _ in as_pairs["q1"]]
    np.testing.assert_allclose([x for _, x in as_dicts["q1"]], [x for _, x in as_pairs["q1"]], atol=1e-9)
    for run, shape in [({"q1": ["d1", "d2"]}, "holds 'd1', not a"), ([("q1", "d1", 3.0)], "got list"),
                       (None, "got None"), ({"q1": "d1"}, "maps to a str")]:
        with pytest.raises(TypeError, match=f"run must map each query id to .*{shape}"):
            rerank_run(reranker, run, queries, documents, show_progress_bar=False)


def test_train_takes_a_config():
    from fastrank import train

    with pytest.raises(TypeError, match=r"train takes a TrainConfig, e.g. .*got str"):
        train("train.jsonl")


def test_data_errors_stay_data_errors(embedder):
    from fastrank.mining import mine_hard_negatives

    with pytest.raises(DataError, match="the corpus is empty"):
        mine_hard_negatives([QueryGroup("q", ["a"], [1.0])], embedder, iter([]), num_negatives=1)


def test_what_the_new_checks_must_still_take(reranker, o1_artifact, tiny_model_dir, tmp_path):
    """Inputs the stricter checks refused for a while: a torch tensor of first-stage scores (sentence-transformers'
    similarity), any os.PathLike (pytest's tmpdir, a UPath), NumPy numbers as a loss option, and a single document
    dict with misnamed keys (which is no {id: text} mapping)."""
    import os

    import torch

    import fastrank
    from fastrank import CrossEncoder, EmbeddingModel, Reranker
    from fastrank.fusion import fuse_scores
    from fastrank.losses import LambdaLoss

    scores = [0.9, 0.2, 0.5]
    assert reranker.rerank("glacier", DOCS, first_stage_scores=torch.tensor(scores, dtype=torch.float64),
                           fusion_weight=1.0) == \
        reranker.rerank("glacier", DOCS, first_stage_scores=scores, fusion_weight=1.0)
    assert np.array_equal(fuse_scores(torch.tensor([1.0, 2.0, 3.0]), scores, 0.5), fuse_scores([1, 2, 3], scores, 0.5))

    class Location(os.PathLike):
        def __init__(self, path):
            self.path = str(path)

        def __fspath__(self):
            return self.path

    assert Reranker(Location(o1_artifact)).rerank("glacier", DOCS) == reranker.rerank("glacier", DOCS)
    assert fastrank.rerank("glacier", DOCS, model=Location(o1_artifact)) == reranker.rerank("glacier", DOCS)
    assert CrossEncoder(Location(tiny_model_dir), device="cpu").num_labels == 1
    assert EmbeddingModel(Location(tiny_model_dir), device="cpu").dimension > 0
    from fastrank.export import export_model
    from fastrank.mining import check_embedding_model

    assert export_model(Location(tiny_model_dir), tmp_path / "onnx", optimize="O1", num_threads=1)["format"] == "onnx"
    with pytest.raises(TypeError, match="embedding_model must be a loaded model"):
        check_embedding_model(Location(tiny_model_dir))
    assert LambdaLoss(CrossEncoder(tiny_model_dir, device="cpu"), mu=np.int64(5)).mu == 5
    with pytest.raises(TypeError, match="got a single dict; wrap it"):
        reranker.rerank("glacier", {"title": "Glaciers", "body": DOCS[0]})


def test_a_failed_load_lets_no_second_load_of_the_model_start(monkeypatch):
    """The lock of a model whose load failed was dropped while a caller still waited on it, so a caller arriving
    then loaded the same model beside the waiter's retry; and no lock outlives its callers."""
    import threading
    import time

    from fastrank import reranker as module

    module._CACHE.clear()
    state = {"active": 0, "most": 0, "loads": 0}
    guard, first_started = threading.Lock(), threading.Event()

    class FlakyLoad:
        def __init__(self, path, backend="auto"):
            with guard:
                state["active"] += 1
                state["most"] = max(state["most"], state["active"])
                state["loads"] += 1
                first = state["loads"] == 1
            first_started.set()
            time.sleep(0.3)
            with guard:
                state["active"] -= 1
            if first:
                raise OSError("the first load fails")

    monkeypatch.setattr(module, "Reranker", FlakyLoad)

    def load(results):
        try:
            results.append(module._cached_reranker("acme/model", "auto"))
        except OSError:
            results.append(None)

    results = []
    first = threading.Thread(target=load, args=(results,))
    first.start()
    assert first_started.wait(10)
    waiter = threading.Thread(target=load, args=(results,))
    waiter.start()
    time.sleep(0.4)  # the first load has failed; the waiter now loads
    late = threading.Thread(target=load, args=(results,))
    late.start()
    for thread in (first, waiter, late):
        thread.join(10)
    assert state["most"] == 1 and state["loads"] == 2  # the late caller took the waiter's model
    assert results.count(None) == 1 and not module._LOADING
    module._CACHE.clear()
