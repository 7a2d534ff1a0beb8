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
