"""mine_hard_negatives on a hand-built embedding space: every option changes the output as documented."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from fastrank.data import QueryGroup
from fastrank.errors import DataError
from fastrank.mining import add_answer_negatives, mine_hard_negatives, top_k_search


class FakeEmbedder:
    """Texts map to fixed unit vectors; similarity to query 'q' is the number after 'd' divided by 10."""

    name_or_path, max_length, pooling, normalize, dimension = "fake", 8, "mean", True, 2

    def __init__(self):
        self.calls = 0

    def encode(self, texts, batch_size=64, show_progress_bar=None):
        self.calls += 1
        out = []
        for t in texts:
            s = 1.0 if t.startswith("q") else float(t.split("-")[0][1:]) / 10
            out.append([s, np.sqrt(max(0.0, 1 - s * s))])
        return np.asarray(out, dtype=np.float32)


CORPUS = [f"d{i}-doc" for i in range(10)]  # similarity to the query: 0.0 .. 0.9


def _groups():
    return [QueryGroup("q-1", ["d5-doc", "d1-doc"], [1.0, 0.0], "1")]


def test_top_sampling_takes_best_non_positive():
    res = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=3, use_faiss=False)
    g = res.groups[0]
    assert g.documents == ["d5-doc", "d9-doc", "d8-doc", "d7-doc"] and g.labels == [1, 0, 0, 0]


def test_rank_window_score_window_and_margins():
    emb = FakeEmbedder()
    assert mine_hard_negatives(_groups(), emb, CORPUS, num_negatives=2, range_min=2,
                               use_faiss=False).groups[0].documents[1:] == ["d7-doc", "d6-doc"]
    assert mine_hard_negatives(_groups(), emb, CORPUS, num_negatives=2, max_score=0.75,
                               use_faiss=False).groups[0].documents[1:] == ["d7-doc", "d6-doc"]
    res = mine_hard_negatives(_groups(), emb, CORPUS, num_negatives=2, absolute_margin=0.15, use_faiss=False)
    assert res.groups[0].documents[1:] == ["d3-doc", "d2-doc"]  # <= 0.5 - 0.15
    assert res.stats["negatives_dropped_by_margin"] == 5  # d9, d8, d7, d6, d4
    res = mine_hard_negatives(_groups(), emb, CORPUS, num_negatives=2, relative_margin=0.5, use_faiss=False)
    assert res.groups[0].documents[1:] == ["d2-doc", "d1-doc"]  # <= 0.5 * 0.5


def test_random_sampling_is_seeded_and_within_window():
    a = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=2, sampling="random", seed=1,
                            range_max=4, use_faiss=False).groups[0].documents[1:]
    b = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=2, sampling="random", seed=1,
                            range_max=4, use_faiss=False).groups[0].documents[1:]
    assert a == b and set(a) <= {"d9-doc", "d8-doc", "d7-doc", "d6-doc"}


def test_cache_reuses_corpus_embeddings(tmp_path):
    emb = FakeEmbedder()
    first = mine_hard_negatives(_groups(), emb, CORPUS, cache_dir=tmp_path, use_faiss=False)
    calls = emb.calls
    second = mine_hard_negatives(_groups(), emb, CORPUS, cache_dir=tmp_path, use_faiss=False)
    assert not first.stats["corpus_cache_hit"] and second.stats["corpus_cache_hit"]
    assert emb.calls == calls + 1  # only the queries were encoded again
    assert first.groups[0].documents == second.groups[0].documents


def test_the_cache_follows_the_weights_and_survives_a_damaged_file(tmp_path, tiny_model_dir, caplog):
    """Another model at the same path misses the cache (its key hashes the weights, not the path: the old model's
    corpus vectors were compared with the new one's queries); a cache file cut short is embedded again and
    rewritten (it failed every later run: empty files with a bare 'Aborted.')."""
    import shutil

    from fastrank import EmbeddingModel
    from fastrank.mining import corpus_embeddings

    path = tmp_path / "model"
    shutil.copytree(tiny_model_dir, path)
    cache = tmp_path / "cache"
    first, hit = corpus_embeddings(EmbeddingModel(path, device="cpu"), CORPUS, cache)
    assert not hit and corpus_embeddings(EmbeddingModel(path, device="cpu"), CORPUS, cache)[1]
    [cached] = cache.glob("corpus-*.npy")
    weights = path / "model.safetensors"
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(weights))
    save_file({k: v + 0.5 if v.is_floating_point() else v for k, v in tensors.items()}, str(weights))
    replaced = EmbeddingModel(path, device="cpu")
    second, hit = corpus_embeddings(replaced, CORPUS, cache)
    assert not hit and not np.allclose(second, first)
    np.testing.assert_allclose(second, replaced.encode(CORPUS), atol=1e-6)
    for damage in (b"", cached.read_bytes()[:-40]):
        cached.write_bytes(damage)
        with caplog.at_level("WARNING", logger="fastrank.mining"):
            again, hit = corpus_embeddings(EmbeddingModel(tiny_model_dir, device="cpu"), CORPUS, cache)
        assert not hit and "does not read" in caplog.text
        np.testing.assert_allclose(again, first, atol=1e-6)
        assert np.load(cached).shape == first.shape  # rewritten whole
    assert len(list(cache.iterdir())) == 2 and not list(cache.glob(".*"))  # two models' files, no temporaries


def test_blank_corpus_documents_are_dropped_and_counted():
    """``fastrank mine --corpus`` with a ``{"text": ""}`` line wrote "" as a hard negative."""
    corpus = ["", *CORPUS[:5], "   ", {"text": ""}, {"title": " ", "text": "\n"}, *CORPUS[5:]]
    res = mine_hard_negatives(_groups(), FakeEmbedder(), corpus, num_negatives=9, use_faiss=False)
    assert res.stats["blank_documents_removed"] == 4 and res.stats["duplicate_documents_removed"] == 0
    assert res.stats["corpus_size"] == 10 and all(d.strip() for d in res.groups[0].documents)
    # a blank positive is not added back to the corpus, where it was mined as another query's negative
    groups = [QueryGroup("q-1", ["", "d1-doc"], [1.0, 0.0], "1"), QueryGroup("q-2", ["d2-doc"], [1.0], "2")]
    res = mine_hard_negatives(groups, FakeEmbedder(), ["d5-doc", "", "d7-doc", "d8-doc"], num_negatives=3,
                              use_faiss=False)
    assert res.stats["positives_added_to_corpus"] == 1  # d2-doc only
    assert all(d.strip() for g in res.groups for d, y in zip(g.documents, g.labels) if y == 0)
    answers = add_answer_negatives(groups + [QueryGroup("q-3", ["d3-doc"], [1.0], "3")], FakeEmbedder(), closest=2)
    assert answers.stats["answer_pool"] == 2  # d2-doc and d3-doc: "" is no answer to add
    assert all(d.strip() for g in answers.groups for d, y in zip(g.documents, g.labels) if y == 0)


def test_bad_input_is_reported():
    groups = _groups() + [QueryGroup("q-2", ["d3-doc"], [0.0], "2"), QueryGroup("q-3", ["x0-new"], [1.0], "3")]
    res = mine_hard_negatives(groups, FakeEmbedder(), CORPUS + ["d9-doc"], num_negatives=1, use_faiss=False)
    assert res.stats["queries_without_positive_skipped"] == 1
    assert res.stats["duplicate_documents_removed"] == 1
    assert res.stats["positives_added_to_corpus"] == 1
    assert "x0-new" not in res.groups[0].documents[1:]
    with pytest.raises(DataError, match="the corpus is empty"):
        mine_hard_negatives(_groups(), FakeEmbedder(), [])
    with pytest.raises(DataError, match="no query has a positive"):
        mine_hard_negatives([QueryGroup("q-2", ["d3-doc"], [0.0])], FakeEmbedder(), CORPUS)
    with pytest.raises(ValueError, match="range_max"):
        mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, range_min=5, range_max=5)
    for options, message in (({"range_min": -3}, "range_min must be an integer >= 0"),
                             ({"min_score": 0.9, "max_score": 0.1}, r"min_score=0.9 is above max_score=0.1"),
                             ({"relative_margin": 1.5}, r"relative_margin must be in \[0, 1\)"),
                             ({"relative_margin": -0.5}, r"relative_margin must be in \[0, 1\)"),
                             ({"absolute_margin": -1.0}, "absolute_margin must be >= 0")):
        with pytest.raises(ValueError, match=message):  # each would silently mine nothing, or mine past the top
            mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, **options)


def test_kept_negatives_are_not_mined_again_and_positives_keep_their_grades():
    groups = [QueryGroup("q-1", ["d5-doc", "D9-DOC", "d2-doc", "d4-doc"], [2.0, 0.0, 0.0, 1.0], "1")]
    res = mine_hard_negatives(groups, FakeEmbedder(), CORPUS + ["d9-doc"], num_negatives=2, use_faiss=False,
                              keep_original_negatives=True)
    g = res.groups[0]
    # d9-doc is the kept 'D9-DOC' in another spelling: two new negatives are mined after it, not one
    assert g.documents == ["d5-doc", "d4-doc", "D9-DOC", "d2-doc", "d8-doc", "d7-doc"]
    assert g.labels == [2.0, 1.0, 0.0, 0.0, 0.0, 0.0] and res.stats["queries_with_fewer_negatives"] == 0


def test_a_positive_of_the_same_query_text_is_not_mined_for_its_twin():
    groups = [QueryGroup("q-1", ["d9-doc"], [1.0], "A"), QueryGroup("q-1", ["d3-doc"], [1.0], "B")]
    res = mine_hard_negatives(groups, FakeEmbedder(), CORPUS, num_negatives=2, use_faiss=False)
    assert [g.documents for g in res.groups] == [["d9-doc", "d8-doc", "d7-doc"], ["d3-doc", "d8-doc", "d7-doc"]]
    assert [g.query_id for g in res.groups] == ["A", "B"]


def test_kept_negatives_do_not_use_up_the_search_window():
    # the query's own negatives are the corpus's top three; the window of 3 ranks counts only new candidates
    groups = [QueryGroup("q-1", ["d0-doc", "d9-doc", "d8-doc", "d7-doc"], [1.0, 0.0, 0.0, 0.0], "1")]
    res = mine_hard_negatives(groups, FakeEmbedder(), CORPUS, num_negatives=3, range_max=3, use_faiss=False,
                              keep_original_negatives=True)
    assert res.groups[0].documents == ["d0-doc", "d9-doc", "d8-doc", "d7-doc", "d6-doc", "d5-doc", "d4-doc"]
    assert res.stats["queries_with_fewer_negatives"] == 0


def test_small_corpus_gives_fewer_negatives_and_says_so(caplog):
    res = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS[:3], num_negatives=5, use_faiss=False)
    assert res.groups[0].documents[1:] == ["d2-doc", "d1-doc", "d0-doc"]
    assert res.stats["queries_with_fewer_negatives"] == 1 and res.stats["range_max_clamped_to"] == 4
    assert "fewer than 5 negatives" in caplog.text


def test_teacher_scores_are_attached():
    class Teacher:
        def predict(self, pairs, activation=None):
            return np.array([len(d) + (q == "q-1") for q, d in pairs], dtype=np.float32)

    res = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=1, teacher=Teacher(), use_faiss=False)
    assert res.groups[0].scores == [7.0, 7.0]


def test_a_teacher_with_several_labels_is_refused_before_mining(tiny_model_factory):
    from fastrank import CrossEncoder
    from fastrank.mining import attach_teacher_scores

    class Classifier:  # three class logits per pair: spreading them over the documents gave wrong scores
        num_labels = 3

        def predict(self, pairs, activation=None):
            raise AssertionError("mining should stop before scoring")

    with pytest.raises(ValueError, match="teacher has 3 output labels; distillation scores need"):
        mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=1, teacher=Classifier(), use_faiss=False)
    ce = CrossEncoder(tiny_model_factory(4), device="cpu")
    with pytest.raises(ValueError, match="teacher has 4 output labels"):
        attach_teacher_scores(_groups(), ce)

    class Unlabelled:  # no num_labels: the shape of its scores is checked instead
        def predict(self, pairs, activation=None):
            return np.zeros((len(pairs), 2), dtype=np.float32)

    with pytest.raises(ValueError, match=r"shape \(\d+, 2\) for \d+ pairs"):
        attach_teacher_scores(_groups(), Unlabelled())


def test_numpy_search_matches_brute_force():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    scores, idx = top_k_search(q, c, 7, use_faiss=False, chunk=2)
    ref = np.argsort(-(q @ c.T), axis=1)[:, :7]
    assert (idx == ref).all()
    np.testing.assert_allclose(scores, np.take_along_axis(q @ c.T, ref, axis=1), rtol=1e-6)


def test_numpy_search_holds_a_bounded_number_of_similarities(monkeypatch):
    """The query rows per step shrink as the corpus grows, so the similarities held at once stay within
    SEARCH_ELEMENTS (512 rows whatever the corpus ran a 400k corpus past 6 GB), with the same results."""
    import fastrank.mining as mining

    rng = np.random.default_rng(1)
    q, c = rng.normal(size=(9, 8)).astype(np.float32), rng.normal(size=(40, 8)).astype(np.float32)
    expected = top_k_search(q, c, 5, use_faiss=False)
    shapes, argpartition = [], np.argpartition
    monkeypatch.setattr(mining, "SEARCH_ELEMENTS", 100)
    monkeypatch.setattr(np, "argpartition", lambda a, *args, **kw: shapes.append(a.shape) or argpartition(a, *args,
                                                                                                           **kw))
    scores, idx = top_k_search(q, c, 5, use_faiss=False)
    assert shapes and max(rows * cols for rows, cols in shapes) <= 100 and sum(r for r, _ in shapes) == 9
    assert (idx == expected[1]).all()
    np.testing.assert_allclose(scores, expected[0], rtol=1e-6)  # BLAS rounds by block: not bit-equal


def test_twin_of_a_positive_is_never_mined():
    groups = [QueryGroup("q-1", ["d9-Doc"], [1.0], "1")]
    res = mine_hard_negatives(groups, FakeEmbedder(), CORPUS + ["d9-doc "], num_negatives=2, use_faiss=False)
    assert res.groups[0].documents == ["d9-Doc", "d8-doc", "d7-doc"]
    assert res.stats["duplicate_documents_removed"] == 1
    composed = [QueryGroup("q-1", ["d9-Caf\u00e9"], [1.0], "1")]  # the corpus holds it decomposed (NFD), twice
    res = mine_hard_negatives(composed, FakeEmbedder(), CORPUS + ["d9-cafe\u0301", "d9-CAFE\u0301 "],
                              num_negatives=2, use_faiss=False)
    assert res.groups[0].documents == ["d9-Caf\u00e9", "d9-doc", "d8-doc"]
    assert res.stats["duplicate_documents_removed"] == 1


def _answer_groups():
    return [QueryGroup("q-1", ["d5-a", "d1-a"], [1.0, 0.0], "1"), QueryGroup("q-2", ["d9-b"], [1.0], "2"),
            QueryGroup("q-3", ["d4-c"], [1.0], "3"), QueryGroup("q-4", ["d2-d"], [1.0], "4"),
            QueryGroup("q-5", ["d3-e", "d4-c"], [1.0, 0.0], "5"), QueryGroup("q-6", ["d6-f"], [0.0], "6")]


def test_answer_negatives_closest_then_random_below_the_margin():
    res = add_answer_negatives(_answer_groups(), FakeEmbedder(), closest=2, random_count=1, relative_margin=0.05)
    g1 = res.groups[0]
    # floor 0.5: d9-b (0.9) is above 0.475, a likely false negative; then the closest two, then the last one left
    assert g1.documents == ["d5-a", "d1-a", "d4-c", "d3-e", "d2-d"] and g1.labels == [1, 0, 0, 0, 0]
    # q-5 already holds d4-c, and d5-a / d9-b are above its floor 0.3 * 0.95: only d2-d is left
    assert res.groups[4].documents[2:] == ["d2-d"] and res.groups[4].labels[2:] == [0.0]
    assert res.groups[5].documents == ["d6-f"]  # no positive: unchanged
    assert res.stats["queries_with_fewer_answer_negatives"] == 3  # q-3 (2 left under 0.38), q-4 (none), q-5
    assert res.groups[3].documents == ["d2-d"]
    assert res.stats["queries_without_positive_unchanged"] == 1 and res.stats["answer_pool"] == 5
    unfiltered = add_answer_negatives(_answer_groups(), FakeEmbedder(), closest=1, random_count=0,
                                      relative_margin=None)
    assert unfiltered.groups[0].documents[2:] == ["d9-b"]


def test_answer_negatives_bad_input():
    with pytest.raises(ValueError, match="not both 0"):
        add_answer_negatives(_answer_groups(), FakeEmbedder(), closest=0, random_count=0)
    with pytest.raises(DataError, match="at least two queries"):
        add_answer_negatives(_answer_groups()[:1], FakeEmbedder())
    scored = _answer_groups()
    scored[0].scores = [1.0, 0.0]
    with pytest.raises(ValueError, match="teacher scores"):
        add_answer_negatives(scored, FakeEmbedder())


def test_groups_and_corpus_of_the_wrong_kind_are_named():
    with pytest.raises(TypeError, match="groups item 0 must be a fastrank.data.QueryGroup .* got dict"):
        mine_hard_negatives([{"query": "q-1", "documents": ["d5-doc"], "labels": [1]}], FakeEmbedder(), CORPUS)
    with pytest.raises(TypeError, match="corpus must be a list of documents, got a single str"):
        mine_hard_negatives(_groups(), FakeEmbedder(), "d9-doc")  # 6 one-letter documents, before
    with pytest.raises(TypeError, match="groups must be a list of fastrank.data.QueryGroup"):
        add_answer_negatives(_groups()[0], FakeEmbedder())


class _RandomEmbedder(FakeEmbedder):
    """Each text a fixed random unit vector in 16 dimensions."""

    dimension = 16

    def encode(self, texts, batch_size=64, show_progress_bar=None):
        out = np.empty((len(texts), 16), dtype=np.float32)
        for i, t in enumerate(texts):
            v = np.random.default_rng(zlib.crc32(t.encode())).normal(size=16)
            out[i] = v / np.linalg.norm(v)
        return out


def test_a_query_with_many_positives_is_searched_deep_alone(monkeypatch):
    """One query text with 300 positives used to make every query's search 300 + range_max deep (its result arrays
    with it: 6 GB for 100k queries and 5,000 positives); now the others stop at range_max rounded up, and every query
    still finds the same negatives."""
    import fastrank.mining as mining

    docs = [f"passage number {i}" for i in range(2000)]
    groups = [QueryGroup(f"query {q}", [docs[q]], [1.0]) for q in range(1, 40)]
    groups.append(QueryGroup("query 0", docs[100:400], [1.0] * 300))
    searched, searcher = [], mining.top_k_searcher

    def recording(corpus, use_faiss=None):
        search = searcher(corpus, use_faiss)
        return lambda q, k: searched.append((len(q), k)) or search(q, k)

    monkeypatch.setattr(mining, "top_k_searcher", recording)
    got = mine_hard_negatives(groups, _RandomEmbedder(), docs, num_negatives=4, range_max=50, use_faiss=False)
    assert sorted(searched) == [(1, 512), (39, 64)]

    by_depth = mining.search_to_depths
    monkeypatch.setattr(mining, "search_to_depths", lambda q, c, depths, f=None: by_depth(
        q, c, [max(depths)] * len(depths), f))  # every query as deep as the deepest, as before
    want = mine_hard_negatives(groups, _RandomEmbedder(), docs, num_negatives=4, range_max=50, use_faiss=False)
    assert [g.documents for g in got.groups] == [g.documents for g in want.groups]
    assert all(len(g.documents) == 1 + 4 for g in got.groups[:-1]) and len(got.groups[-1].documents) == 304


def test_faiss_builds_one_index_for_every_depth(monkeypatch):
    import sys
    import types

    from fastrank.mining import search_to_depths

    built = []

    class IndexFlatIP:
        def __init__(self, dim):
            built.append(dim)

        def add(self, corpus):
            self.corpus = corpus

        def search(self, queries, k):
            return top_k_search(queries, self.corpus, k, use_faiss=False)

    monkeypatch.setitem(sys.modules, "faiss", types.SimpleNamespace(IndexFlatIP=IndexFlatIP))
    rng = np.random.default_rng(0)
    corpus, queries = rng.normal(size=(1000, 8)).astype(np.float32), rng.normal(size=(6, 8)).astype(np.float32)
    scores, indices = search_to_depths(queries, corpus, [51, 51, 120, 300, 700, 51], use_faiss=True)
    assert built == [8] and [len(i) for i in indices] == [64, 64, 128, 512, 1000, 64]
    want = top_k_search(queries, corpus, 1000, use_faiss=False)[1]
    assert all(np.array_equal(i, w[:len(i)]) for i, w in zip(indices, want))


class TableEmbedder(FakeEmbedder):
    """Queries (texts starting with 'q') point at (1, 0); every other text has the cosine with them given in
    ``SIMS`` (negative ones too)."""

    SIMS = {"pos": -0.2, "a": -0.1, "b": -0.15, "c": -0.19, "d": -0.25, "e": -0.3, "p9": 0.9, "p5": 0.5, "n8": 0.8,
            "n7": 0.7, "n4": 0.4, "n3": 0.3}

    def encode(self, texts, batch_size=64, show_progress_bar=None):
        sims = [1.0 if t.startswith("q") else self.SIMS[t] for t in texts]
        return np.asarray([[s, np.sqrt(1 - s * s)] for s in sims], dtype=np.float32)


def test_relative_margin_below_a_negative_positive_similarity():
    """sentence-transformers' fixed rule, pos - |pos| x margin: pos x (1 - margin) lies above a negative pos, and
    kept negatives more similar to the query than its positive (-0.10, -0.15, -0.19 beside -0.20)."""
    groups = [QueryGroup("q", ["pos"], [1.0])]
    res = mine_hard_negatives(groups, TableEmbedder(), list("abcde"), num_negatives=5, relative_margin=0.05,
                              use_faiss=False)
    assert res.groups[0].documents[1:] == ["d", "e"]  # <= -0.21
    assert res.stats["negatives_dropped_by_margin"] == 3
    answers = add_answer_negatives(groups + [QueryGroup("q2", ["a"], [1.0]), QueryGroup("q3", ["d"], [1.0])],
                                   TableEmbedder(), closest=2, random_count=0, relative_margin=0.05)
    assert answers.groups[0].documents[1:] == ["d"]  # 'a' (-0.10) is above the positive (-0.20)


def test_margin_is_to_the_lowest_positive_of_every_group_of_the_query_text():
    """Two rows of one query text mine as one group holding both positives would (as sentence-transformers does)."""
    split = [QueryGroup("q", ["p9"], [1.0], "1"), QueryGroup("q", ["p5"], [1.0], "2")]
    together = [QueryGroup("q", ["p9", "p5"], [1.0, 1.0], "1")]
    corpus = ["n8", "n7", "n4", "n3"]
    kw = dict(num_negatives=2, absolute_margin=0.0, use_faiss=False)
    expected = mine_hard_negatives(together, TableEmbedder(), corpus, **kw).groups[0].documents[2:]
    assert expected == ["n4", "n3"]
    assert [g.documents[1:] for g in mine_hard_negatives(split, TableEmbedder(), corpus, **kw).groups] == [expected] * 2


def test_a_copy_of_the_query_text_is_not_a_negative():
    groups = [QueryGroup("q-what is x", ["d5-doc"], [1.0])]
    res = mine_hard_negatives(groups, FakeEmbedder(), ["q-What is  X", *CORPUS], num_negatives=2, use_faiss=False)
    assert res.groups[0].documents[1:] == ["d9-doc", "d8-doc"]
    assert res.stats["query_text_documents_skipped"] == 1


def test_random_negatives_come_back_best_first_and_score_filters_are_counted():
    res = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=3, sampling="random", seed=3,
                              range_max=8, max_score=0.85, use_faiss=False)
    picked = res.groups[0].documents[1:]
    assert len(picked) == 3 and picked == sorted(picked, reverse=True)  # 'dK-doc': similarity K/10
    assert res.stats["negatives_dropped_by_score"] == 1  # d9


def test_a_rank_window_smaller_than_num_negatives_is_refused():
    with pytest.raises(ValueError, match=r"num_negatives=5 cannot be drawn from ranks 2..3 .*the window holds 2"):
        mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=5, range_min=2, range_max=4)


def test_answer_negatives_leave_out_the_positives_of_twin_queries():
    """Two rows of one query text: neither row gets the other's positive as an answer negative (as mining does)."""
    groups = [QueryGroup("q-x", ["d9-doc"], [1.0], "1"), QueryGroup("q-x", ["d8-doc"], [1.0], "2"),
              QueryGroup("q-y", ["d2-doc"], [1.0], "3")]
    res = add_answer_negatives(groups, FakeEmbedder(), closest=2, random_count=0, relative_margin=None)
    assert res.groups[0].documents == ["d9-doc", "d2-doc"] and res.groups[1].documents == ["d8-doc", "d2-doc"]


def test_queries_and_documents_are_embedded_with_their_own_prompts():
    """An embedding model with ``encode_query`` / ``encode_document`` (EmbeddingModel: its query and document
    prompts) embeds queries and corpus through them, as sentence-transformers' mining does; ``encode`` embedded
    both before."""

    class Prompted(FakeEmbedder):
        def __init__(self):
            super().__init__()
            self.used = []

        def encode_query(self, texts, batch_size=64, show_progress_bar=None):
            self.used.append(("query", list(texts)))
            return np.asarray([[0.0, 1.0]] * len(texts), dtype=np.float32)  # nearest: the least similar docs

        def encode_document(self, texts, batch_size=64, show_progress_bar=None):
            self.used.append(("document", len(texts)))
            return self.encode(texts, batch_size, show_progress_bar)

    model = Prompted()
    res = mine_hard_negatives(_groups(), model, CORPUS, num_negatives=3, use_faiss=False)
    assert res.groups[0].documents[1:] == ["d0-doc", "d1-doc", "d2-doc"]
    assert model.used == [("document", 10), ("query", ["q-1"])]
    plain = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=3, use_faiss=False)
    assert plain.groups[0].documents[1:] == ["d9-doc", "d8-doc", "d7-doc"]
    added = add_answer_negatives([QueryGroup("q-a", ["d5-doc"], [1.0], "a"), QueryGroup("q-b", ["d2-doc"], [1.0], "b")],
                                 model, closest=1, random_count=0)
    assert [kind for kind, _ in model.used[2:]] == ["document", "query"] and len(added.groups) == 2


def test_any_embedding_model_mines_wrapped_or_not():
    """A model with only ``encode(texts, batch_size)``, wrapped in CachedEmbedding or not, and sentence-transformers'
    own SentenceTransformer (whose ``encode_query`` takes ``prompt_name`` second) mine alike: the wrapper passed
    ``show_progress_bar`` positionally, and a SentenceTransformer took the batch size for a prompt name."""
    from fastrank.embedding import CachedEmbedding

    class Duck:
        name_or_path, max_length, pooling, normalize, dimension = "duck", 8, "mean", True, 2

        def encode(self, texts, batch_size=64):
            return FakeEmbedder().encode(texts)

    expected = mine_hard_negatives(_groups(), FakeEmbedder(), CORPUS, num_negatives=3, use_faiss=False)
    for model in (Duck(), CachedEmbedding(Duck())):
        got = mine_hard_negatives(_groups(), model, CORPUS, num_negatives=3, use_faiss=False)
        assert got.groups[0].documents == expected.groups[0].documents
    st = pytest.importorskip("sentence_transformers")
    from fastrank.embedding import EmbeddingModel
    from fastrank.model import resolve_model_path

    groups = [QueryGroup("capital of france", ["paris is the capital of france", "berlin is in germany"], [1.0, 0.0],
                         "1")]
    corpus = ["rome is in italy", "the capital of france is paris", "lyon is a city in france", "bread"]
    theirs = st.SentenceTransformer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    got = mine_hard_negatives(groups, theirs, corpus, num_negatives=2, use_faiss=False)
    ours = mine_hard_negatives(groups, EmbeddingModel(device="cpu"), corpus, num_negatives=2, use_faiss=False)
    assert got.groups[0].documents == ours.groups[0].documents


def test_a_broken_faiss_or_bm25s_is_shown_not_taken_for_missing(monkeypatch):
    """An installed faiss or bm25s that fails to import one of its own modules was treated as not installed: search
    quietly fell back (or said 'install [mining]', which it is), hiding the real error."""
    import builtins
    import sys

    from fastrank.errors import MissingDependency
    from fastrank.evaluation.retrieval import RetrievalTask, _bm25_top_k

    real_import = builtins.__import__
    broken = {}

    def fake_import(name, *args, **kwargs):
        if name in broken:
            raise ModuleNotFoundError(f"No module named {broken[name]!r}", name=broken[name])
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    monkeypatch.delitem(sys.modules, "bm25s", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    corpus = np.eye(3, dtype=np.float32)
    task = RetrievalTask.from_groups([QueryGroup("q", ["a b", "c d"], [1.0, 0.0])])
    broken.update(faiss="faiss.swigfaiss_avx2", bm25s="scipy.sparse")  # installed, but broken inside
    with pytest.raises(ModuleNotFoundError, match="swigfaiss_avx2"):
        top_k_search(corpus, corpus, 1)
    with pytest.raises(ModuleNotFoundError, match="scipy.sparse"):
        _bm25_top_k(task, 1, required=False)
    broken.update(faiss="faiss", bm25s="bm25s")  # not installed: numpy search, or no BM25 stage unless required
    assert top_k_search(corpus, corpus, 1)[1].ravel().tolist() == [0, 1, 2]
    assert _bm25_top_k(task, 1, required=False) is None
    with pytest.raises(MissingDependency, match="pip install"):
        top_k_search(corpus, corpus, 1, use_faiss=True)
    with pytest.raises(MissingDependency, match="BM25 first-stage retrieval needs the 'bm25s' package"):
        _bm25_top_k(task, 1, required=True)
