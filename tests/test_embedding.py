"""EmbeddingModel equals sentence-transformers' encode for the bundled all-MiniLM-L6-v2."""

from __future__ import annotations

import numpy as np
import pytest

TEXTS = ["how are glacier caves formed?", "A glacier cave is a cave formed within the ice of a glacier.",
         "Paris is the capital of France. " * 40, "x"]


@pytest.fixture(scope="module")
def minilm():
    from fastrank.embedding import EmbeddingModel

    return EmbeddingModel(device="cpu")


def test_matches_sentence_transformers_encode(minilm):
    from sentence_transformers import SentenceTransformer

    from fastrank.model import resolve_model_path

    st = SentenceTransformer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    ref = st.encode(TEXTS, convert_to_numpy=True)
    ours = minilm.encode(TEXTS, batch_size=2)
    assert minilm.pooling == "mean" and minilm.normalize and minilm.max_length == 256
    cos = np.sum(ours * ref, axis=1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(ref, axis=1))
    assert cos.min() > 1 - 1e-5
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_predict_is_pair_cosine(minilm):
    emb = minilm.encode(TEXTS)
    scores = minilm.predict([(TEXTS[0], TEXTS[1]), (TEXTS[0], TEXTS[2])])
    np.testing.assert_allclose(scores, [emb[0] @ emb[1], emb[0] @ emb[2]], atol=1e-6)
    assert scores[0] > scores[1]


def test_bad_text_names_position(minilm):
    with pytest.raises(TypeError, match="text 1"):
        minilm.encode(["ok", None])
    with pytest.raises(TypeError, match=r"got a single str; wrap it: \[text\]"):  # not one vector per character
        minilm.encode("hello")
    with pytest.raises(ValueError, match="2 queries and 1 documents"):  # not broadcast
        minilm.similarity(["a", "b"], ["c"])


@pytest.mark.data
def test_cosine_baseline_on_wikiqa_test(minilm, wikiqa_dir):
    """The untouched embedding model reranks WikiQA test at MAP 0.722 (the number our recipe must beat)."""
    from fastrank.evaluation.evaluators import RerankingEvaluator

    result = RerankingEvaluator.from_jsonl(wikiqa_dir / "test.jsonl", ks=(10,)).evaluate(minilm)
    assert result.num_queries == 243
    assert result.metrics["map"] == pytest.approx(0.7219, abs=5e-4)
    assert result.metrics["ndcg@10"] == pytest.approx(0.7890, abs=5e-4)


def test_cached_embedding_embeds_each_text_or_titled_document_once():
    from fastrank.embedding import CachedEmbedding

    class Counting:
        dimension = 2

        def __init__(self):
            self.seen = []

        def encode(self, texts, batch_size=64, show_progress_bar=None):
            from fastrank.documents import document_text

            texts = [document_text(t, "[SEP]") for t in texts]
            self.seen += texts
            return np.array([[len(t), 1.0] for t in texts], dtype=np.float32).reshape(len(texts), 2)

    inner = Counting()
    cached = CachedEmbedding(inner)
    first = cached.encode(["a", "bb", "a"])
    np.testing.assert_array_equal(first, [[1, 1], [2, 1], [1, 1]])
    np.testing.assert_array_equal(cached.encode(["bb", "ccc"]), [[2, 1], [3, 1]])
    assert inner.seen == ["a", "bb", "ccc"] and cached.dimension == 2  # attributes are the model's
    assert cached.encode([]).shape == (0, 2)
    with pytest.raises(TypeError, match="text 1 must be a str or a mapping with a 'text' string"):
        cached.encode(["a", ["not", "text"]])
    titled = {"title": "t", "text": "a"}
    np.testing.assert_array_equal(cached.encode([titled, {"title": " ", "text": "a"}, dict(titled)]),
                                  [[len("t [SEP] a"), 1], [1, 1], [len("t [SEP] a"), 1]])
    assert inner.seen == ["a", "bb", "ccc", "t [SEP] a"]  # a blank title is the plain text, already embedded


def test_a_titled_document_is_embedded_as_the_reranker_reads_it(minilm):
    doc = {"title": "Glacier cave", "text": TEXTS[1]}
    emb = minilm.encode([doc, f"Glacier cave [SEP] {TEXTS[1]}", TEXTS[1]])
    np.testing.assert_array_equal(emb[0], emb[1])
    assert float(emb[0] @ emb[2]) < 0.99  # the title changed the embedding


def test_a_cross_encoder_checkpoint_as_embedder_is_warned_about(tiny_model_dir, caplog):
    from fastrank.embedding import EmbeddingModel

    with caplog.at_level("WARNING", logger="fastrank.embedding"):
        EmbeddingModel(tiny_model_dir, device="cpu")
    assert "BertForSequenceClassification checkpoint (a cross-encoder, it seems)" in caplog.text


def test_prompts_embed_as_in_sentence_transformers(tmp_path):
    """A bi-encoder's saved prompts: ``encode_query`` takes the ``query`` prompt, ``encode_document`` the
    ``document`` one (a ``passage`` prompt only without it, as there), ``encode`` the default prompt, and a
    pooling saved with ``include_prompt: false`` leaves the prompt's tokens out; they were all ignored. Mining and
    retrieval embed queries and documents through these two."""
    import json

    from sentence_transformers import SentenceTransformer

    from fastrank.embedding import CachedEmbedding, EmbeddingModel
    from fastrank.mining import corpus_embeddings
    from fastrank.model import resolve_model_path

    base = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    for saved, default in (({"query": "query: ", "document": "doc: "}, None),
                           ({"query": "query: ", "passage": "passage: "}, "passage")):
        folder = tmp_path / "-".join(saved)
        SentenceTransformer(base, device="cpu", prompts=saved, default_prompt_name=default).save(str(folder))
        for include_prompt, mode in ((True, "mean"), (False, "mean"), (False, "cls"), (False, "max"),
                                     (False, "weightedmean"), (False, "lasttoken"), (True, "weightedmean")):
            pooling = folder / "1_Pooling" / "config.json"
            pooling.write_text(json.dumps({**json.loads(pooling.read_text()), "include_prompt": include_prompt,
                                           "pooling_mode": mode}))
            st = SentenceTransformer(str(folder), device="cpu")
            ours = EmbeddingModel(folder, device="cpu")
            assert ours.include_prompt is include_prompt and ours.prompts == st.prompts and ours.pooling == mode
            for method in ("encode_query", "encode_document", "encode"):
                np.testing.assert_allclose(getattr(ours, method)(TEXTS[:2]), getattr(st, method)(TEXTS[:2]),
                                           atol=1e-5, err_msg=f"{method} {saved} {mode} {include_prompt}")
            np.testing.assert_allclose(ours.encode(TEXTS[:2], prompt_name="query"),
                                       st.encode(TEXTS[:2], prompt_name="query"), atol=1e-5)
            np.testing.assert_allclose(CachedEmbedding(ours).encode_query(TEXTS[:2]), st.encode_query(TEXTS[:2]),
                                       atol=1e-5)
    assert np.abs(ours.encode_query(TEXTS[:2]) - ours.encode(TEXTS[:2], prompt="")).max() > 1e-3
    plain = EmbeddingModel(base, device="cpu")
    np.testing.assert_allclose(plain.encode_query(TEXTS[:2]), plain.encode(TEXTS[:2]), atol=0)  # no prompts saved
    given = EmbeddingModel(base, device="cpu", prompts={"query": "query: "})
    np.testing.assert_allclose(given.encode_query(TEXTS[:2]), plain.encode(["query: " + t for t in TEXTS[:2]]),
                               atol=1e-6)
    cached, hit = corpus_embeddings(given, TEXTS[:2], tmp_path / "cache")
    assert not hit and corpus_embeddings(plain, TEXTS[:2], tmp_path / "cache")[1]  # no document prompt: same key
    documents = EmbeddingModel(base, device="cpu", prompts={"document": "doc: "})
    assert not corpus_embeddings(documents, TEXTS[:2], tmp_path / "cache")[1]  # another prompt: another key
    with pytest.raises(ValueError, match="prompt_name 'nope' is not one of this model's prompts"):
        given.encode(TEXTS[:1], prompt_name="nope")
    with pytest.raises(ValueError, match="prompt_name 'nope' is not one of this model's prompts"):
        given.predict([(TEXTS[0], TEXTS[1])], prompt_name="nope")  # the evaluator's prompt_name reaches it
    np.testing.assert_allclose(given.predict([(TEXTS[0], TEXTS[1])], prompt=""), plain.predict([(TEXTS[0], TEXTS[1])]),
                               atol=1e-6)


def test_pooling_configs_of_every_sentence_transformers_version(tmp_path):
    """sentence-transformers 6 saves ``{"pooling_mode": "cls"}`` where older versions saved
    ``pooling_mode_cls_token: true``: a model it saved failed to load ("exactly one pooling mode ..., found []")."""
    from pathlib import Path

    from sentence_transformers import SentenceTransformer, models

    from fastrank.embedding import EmbeddingModel, _pooling_mode
    from fastrank.errors import ModelLoadError
    from fastrank.model import resolve_model_path

    here = Path("config.json")
    assert _pooling_mode({"pooling_mode": "cls"}, here) == "cls"
    assert _pooling_mode({"pooling_mode": ["max"]}, here) == "max"
    assert _pooling_mode({"pooling_mode": "mean_sqrt_len_tokens"}, here) == "mean_sqrt_len"
    assert _pooling_mode({"pooling_mode_mean_tokens": True}, here) == "mean"
    assert _pooling_mode({"word_embedding_dimension": 384}, here) == "mean"  # no flag set: mean, as there
    assert _pooling_mode({"pooling_mode_lasttoken": True}, here) == "lasttoken"
    assert _pooling_mode({"pooling_mode_weightedmean_tokens": True}, here) == "weightedmean"
    for bad in ({"pooling_mode": "median"}, {"pooling_mode": ["mean", "max"]}, {"pooling_mode_other": True},
                {"pooling_mode_cls_token": True, "pooling_mode_max_tokens": True}):
        with pytest.raises(ModelLoadError, match="is not supported; fastrank pools with exactly one of cls"):
            _pooling_mode(bad, here)
    base = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    for mode in ("cls", "weightedmean", "lasttoken"):
        st = SentenceTransformer(modules=[models.Transformer(base), models.Pooling(384, pooling_mode=mode)],
                                 device="cpu")
        st.save(str(tmp_path / mode))
        ours = EmbeddingModel(tmp_path / mode, device="cpu")
        assert ours.pooling == mode and not ours.normalize
        np.testing.assert_allclose(ours.encode(TEXTS, batch_size=2), st.encode(TEXTS, batch_size=2), atol=1e-5,
                                   err_msg=mode)


def test_a_model_with_modules_fastrank_does_not_run_is_refused(tmp_path):
    """A Dense projection after pooling (LaBSE, sentence-t5) was skipped without a word: the embeddings were the
    transformer's, not the model's."""
    from sentence_transformers import SentenceTransformer, models

    from fastrank.embedding import EmbeddingModel
    from fastrank.errors import ModelLoadError
    from fastrank.model import resolve_model_path

    base = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    dense = models.Dense(384, 64)
    SentenceTransformer(modules=[models.Transformer(base), models.Pooling(384), dense]).save(str(tmp_path / "d"))
    with pytest.raises(ModelLoadError, match=r"holds modules fastrank does not run: \['sentence_transformers\..*Dense'"):
        EmbeddingModel(tmp_path / "d", device="cpu")
    import json

    for module in ("sentence_transformers.models.WeightedLayerPooling",  # names that end like the modules it runs
                   "sentence_transformers.sparse_encoder.modules.SpladePooling"):
        listed = json.loads((tmp_path / "d" / "modules.json").read_text())[:2]
        listed[1]["type"] = module
        (tmp_path / "d" / "modules.json").write_text(json.dumps(listed))
        with pytest.raises(ModelLoadError, match=f"holds modules fastrank does not run: \\['{module}'\\]"):
            EmbeddingModel(tmp_path / "d", device="cpu")


def test_a_hub_id_is_read_as_its_folder_is(tmp_path, serve_as_hub_id):
    """A hub id (online, loaded by name) had its sentence-transformers files never read: a CLS-pooled, normalized
    model with a query prompt embedded with mean pooling, unnormalized and without the prompt."""
    from sentence_transformers import SentenceTransformer, models

    import fastrank.embedding as embedding
    from fastrank.model import resolve_model_path

    base = resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    folder = tmp_path / "hub"
    st = SentenceTransformer(modules=[models.Transformer(base), models.Pooling(384, pooling_mode="cls"),
                                      models.Normalize()], prompts={"query": "q: "}, device="cpu")
    st.save(str(folder))
    fetched = serve_as_hub_id("acme/emb", folder, embedding)
    ours = embedding.EmbeddingModel("acme/emb", device="cpu")
    assert (ours.pooling, ours.normalize, ours.prompts["query"]) == ("cls", True, "q: ")
    assert {"modules.json", "1_Pooling/config.json", "config_sentence_transformers.json"} <= set(fetched)
    np.testing.assert_allclose(ours.encode_query(TEXTS[:2]), st.encode_query(TEXTS[:2]), atol=1e-5)
