"""First-stage prior for listwise training: learn what the retriever misses instead of re-learning what it knows.

A reranker trained on few queries (WikiQA: 873) cannot learn the topical matching a bi-encoder learnt from a billion
pairs; ranked alone over a retriever's top-k it loses to that retriever (bench/RESULTS.md, issue #3). With a prior,
a listwise loss ranks by ``logit + weight * first_stage_score`` during training, so the gradient only asks the
cross-encoder for the correction the first stage needs; at inference the same sum is the score
(``PriorReranker``, which every evaluator takes).

Experimental: on WikiQA it did not pay off. Reranked NDCG@10 over the embedding model's top-100 was 0.245 with
weight 10 and 0.583 with weight 2, against 0.734 for the first stage alone; low-cosine documents get almost no
gradient, so their logits drift. ``python -m bench mining --train residual residual-hard-random`` reproduces it
(bench/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


class EmbeddingPrior:
    """First-stage scores (inner product of an ``EmbeddingModel``'s embeddings, as ``top_k_search`` ranks) of each
    (query, document) of a batch. Every text is embedded once (``CachedEmbedding``), so later epochs cost only a
    lookup."""

    def __init__(self, embedding_model) -> None:
        from fastrank.embedding import CachedEmbedding

        cached = isinstance(embedding_model, CachedEmbedding)
        self.model = embedding_model if cached else CachedEmbedding(embedding_model)

    def __call__(self, queries: Sequence[str], doc_lists: Sequence[Sequence[str]]) -> list[Tensor]:
        """One float32 tensor of first-stage scores per row, aligned with its documents."""
        docs = [d for row in doc_lists for d in row]
        q = self.model.encode_query(list(queries), show_progress_bar=False)
        d = self.model.encode_document(docs, show_progress_bar=False)
        out, start = [], 0
        for qv, row in zip(q, doc_lists):
            out.append(torch.from_numpy(np.asarray(d[start : start + len(row)] @ qv, dtype=np.float32)))
            start += len(row)
        return out


class PriorReranker:
    """A cross-encoder trained with a first-stage prior, scored as it was trained: ``logit + weight * prior``.

    Has the ``predict(pairs, batch_size=..., show_progress_bar=...)`` every evaluator takes (reranking lists,
    retrieve-then-rerank), so a model trained with ``TrainConfig.first_stage_weight`` is judged by the score it
    learnt to produce.
    """

    def __init__(self, reranker, prior: EmbeddingPrior, weight: float) -> None:
        self.reranker, self.prior, self.weight = reranker, prior, float(weight)

    def predict(self, pairs: Sequence[Sequence[str]], batch_size: int = 32, show_progress_bar: bool | None = None,
                prompt_name: str | None = None, prompt: str | None = None, **_) -> np.ndarray:
        """``logit + weight * prior`` per pair; ``prompt_name`` / ``prompt`` go to the cross-encoder (the prior
        embeds the query as given)."""
        pairs = [(q, d) for q, d in pairs]
        given = {k: v for k, v in (("prompt_name", prompt_name), ("prompt", prompt)) if v is not None}
        logits = np.asarray(self.reranker.predict(pairs, batch_size=batch_size, activation="identity",
                                                  show_progress_bar=show_progress_bar, **given), dtype=np.float32)
        if not pairs:
            return logits
        prior = torch.cat(self.prior([q for q, _ in pairs], [[d] for _, d in pairs])).numpy()
        return logits + self.weight * prior
