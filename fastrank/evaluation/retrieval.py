"""Retrieve-then-rerank evaluation: how much a reranker lifts a first-stage retriever over a whole corpus.

First stage: the embedding model's top-k (and BM25 when ``bm25s`` is installed), or any retriever's ranking read
from a TREC run file (``fastrank.evaluation.beir``). Second stage: the cross-encoder
over that top-k. Metrics come from ``fastrank.evaluation.metrics`` (the one implementation); relevant documents the
first stage did not retrieve are appended below the list so recall and NDCG count them as misses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastrank.batching import is_integer, mostly_ideographs
from fastrank.data import QueryGroup, document_key, require_labels
from fastrank.documents import Document, document_text
from fastrank.errors import DataError, import_optional
from fastrank.evaluation.evaluators import accepted_keywords, logits_keyword, scorer_activation
from fastrank.evaluation.metrics import evaluate_rankings
from fastrank.fusion import fuse_scores
from fastrank.reranker import fusion_relevance, relevance_order

logger = logging.getLogger(__name__)


@dataclass
class RetrievalTask:
    """A corpus, queries and their relevant documents (qrels: corpus index -> label > 0, the grade NDCG gains; a
    negative index is a relevant document the corpus lacks, never retrieved). ``query_ids`` / ``corpus_ids`` name
    them in run files (default: their positions)."""

    corpus: list[Document]
    queries: list[str]
    qrels: list[dict[int, float]]
    queries_skipped: int = 0  # groups without a relevant document: nothing to find, left out as in fastrank eval
    query_ids: list[str] | None = None
    corpus_ids: list[str] | None = None

    def __post_init__(self) -> None:
        # a set (or list) of relevant indices, as this field once was, means grade 1 for each
        self.qrels = [rel if isinstance(rel, dict) else {int(i): 1.0 for i in rel} for rel in self.qrels]
        self.query_ids = [str(i) for i in range(len(self.queries))] if self.query_ids is None else self.query_ids
        self.corpus_ids = [str(i) for i in range(len(self.corpus))] if self.corpus_ids is None else self.corpus_ids
        if len(self.query_ids) != len(self.queries) or len(self.corpus_ids) != len(self.corpus):
            raise ValueError(f"{len(self.query_ids)} query ids for {len(self.queries)} queries, "
                             f"{len(self.corpus_ids)} corpus ids for {len(self.corpus)} documents: one id each")

    @classmethod
    def from_groups(cls, groups: Sequence[QueryGroup], extra_corpus: Sequence[Document] = ()) -> RetrievalTask:
        """Every distinct document of every group (plus ``extra_corpus``) is a corpus entry; a query's positives
        are its qrels, with their labels as grades, so NDCG is graded as in ``fastrank eval``. Documents equal up to
        case and whitespace, title included, are one entry (``fastrank.data.document_key``; a twin's best label).
        Titled documents are embedded, and reranked, with their titles."""
        index: dict[str, int] = {}
        corpus: list[Document] = []
        for d in [d for g in groups for d in g.documents] + list(extra_corpus):
            key = document_key(d)
            if key not in index:  # twins differing only in case/whitespace are one document (the first seen)
                index[key] = len(corpus)
                corpus.append(d)
        require_labels(groups, "retrieval evaluation")
        queries, qrels, query_ids = [], [], []
        for g in groups:
            rel: dict[int, float] = {}
            for d, label in zip(g.documents, g.labels):
                if label > 0:
                    key = index[document_key(d)]
                    rel[key] = max(rel.get(key, 0.0), float(label))
            if rel:
                queries.append(g.query)
                qrels.append(rel)
                query_ids.append("" if g.query_id is None else str(g.query_id))
        if not queries:
            raise DataError("no query has a relevant document: nothing to evaluate")
        return cls(corpus, queries, qrels, len(groups) - len(queries), query_ids=run_ids(query_ids))


def is_run_id(name: str) -> bool:
    """Whether ``name`` can name a query or document in a TREC run: not empty, no whitespace."""
    return bool(name) and name.split() == [name]


def run_ids(given: Sequence[str]) -> list[str] | None:
    """``given`` if its ids can name queries in a run (``is_run_id``, all distinct), else None: then run files name
    them by position."""
    return list(given) if all(map(is_run_id, given)) and len(set(given)) == len(given) else None


def _metrics(ranked: list[np.ndarray], scores: list[np.ndarray], task: RetrievalTask, ks: Sequence[int]):
    """Metrics of each query's retrieved ranking: ``ranked`` sorted by ``scores``, equal scores by corpus id,
    descending, as trec_eval ranks a run (``beir.ranking``): the ranking a written run holds, scored as trec_eval
    scores that file. Ids say nothing of the labels, so no tie rule is needed against a leak. Relevant documents
    that were not retrieved count as missed at every cutoff: they are ranked after filler non-relevant entries that
    pad the list to the largest k, so a cutoff beyond the retrieved depth never finds them (they still count in
    recall's and NDCG's denominators)."""
    all_scores, all_labels = [], []
    depth = max(ks)
    for qi, (idx, s) in enumerate(zip(ranked, scores)):
        rel = task.qrels[qi]
        missing = sorted(rel.keys() - set(idx.tolist()))
        s = _positions(s, [task.corpus_ids[int(j)] for j in idx])
        floor = -float(len(s)) - 1.0
        filler = max(0, depth - len(idx)) if missing else 0
        all_scores.append(np.concatenate([s, np.full(filler, floor), np.full(len(missing), floor - 1.0)]))
        all_labels.append(np.concatenate([[rel.get(i, 0.0) for i in idx], np.zeros(filler),
                                          [rel[i] for i in missing]]))
    names = [f"ndcg@{k}" for k in ks] + [f"mrr@{k}" for k in ks] + [f"recall@{k}" for k in ks]
    return evaluate_rankings(all_scores, all_labels, metrics=names).metrics


def evaluate_retrieve_rerank(
    task: RetrievalTask,
    embedding_model=None,
    reranker=None,
    top_k: int = 100,
    ks: int | Sequence[int] = (10,),
    batch_size: int = 64,
    use_bm25: bool | None = None,
    fusion_weights: Sequence[float] = (),
    run: Mapping[str, Sequence[tuple[str, float]]] | None = None,
    return_rankings: bool = False,
    show_progress_bar: bool | None = None,
) -> dict[str, Any]:
    """Metrics and per-stage latency for the first stage alone and after reranking its top ``top_k``.

    Returns ``{"first_stage": {...}, "reranked": {...}, "latency_s": {...}, "num_queries", "corpus_size"}`` (no
    ``corpus_size`` with a run, whose task may hold only the documents it ranks);
    ``bm25`` and ``bm25_reranked`` are added when ``bm25s`` is installed (or ``use_bm25=True``).

    ``run`` (query id -> ``[(corpus id, score)]``, best first, e.g. ``fastrank.evaluation.beir.read_run``): rerank
    this first stage instead of searching the corpus, reported as ``run`` and ``run_reranked``; give no
    ``embedding_model`` with it.

    ``fusion_weights`` (opt-in, default none): for each weight ``w`` also rank by
    ``z(reranker score) + w * z(first-stage score)``, each z-normalised over the query's top ``top_k``, reported as
    ``reranked_fused`` (``bm25_reranked_fused``): ``{"<w>": metrics}``. Costs no extra model calls.

    ``return_rankings``: also return ``rankings``, each stage's ranking as a run (query id -> ``[(corpus id,
    score)]``, best first; a reranked stage by the reranker's logit), for ``beir.write_run``.
    ``show_progress_bar``: passed to the reranker's ``predict`` when it takes it (None: its own default).
    """
    from fastrank.mining import top_k_search

    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if (run is None) == (embedding_model is None):
        raise ValueError("give an embedding_model (the first stage searches the corpus) or a run (the first stage "
                         "is its ranking), not both or neither")
    if run is not None and use_bm25:
        raise ValueError("use_bm25 searches the corpus, which a run replaces: give one first stage")
    if run is None:
        top_k = min(top_k, len(task.corpus))  # retrieving more than the corpus holds retrieves the corpus
    else:  # reranking deeper than the run goes reranks the run: cut-offs (and their padding) stop at its depth
        top_k = min(top_k, max([len(run.get(qid, ())) for qid in task.query_ids] + [1]))
    ks = sorted(set([ks] if is_integer(ks) else ks) | {top_k})  # one cut-off, as evaluate_rankings takes it
    out: dict[str, Any] = {"num_queries": len(task.queries), "queries_skipped": task.queries_skipped,
                           "top_k": top_k, "latency_s": {}}
    if run is None:  # a run's task may hold only the documents it ranks
        out["corpus_size"] = len(task.corpus)
    if run is not None:
        from fastrank.evaluation.beir import run_candidates

        stages = {"run": run_candidates(task, run, top_k)}
    else:
        start = time.perf_counter()
        from fastrank.embedding import encode_documents, encode_queries

        corpus_emb = encode_documents(embedding_model, task.corpus, batch_size)
        out["latency_s"]["index_corpus"] = round(time.perf_counter() - start, 3)
        start = time.perf_counter()
        query_emb = encode_queries(embedding_model, task.queries, batch_size)
        scores, idx = top_k_search(query_emb, corpus_emb, top_k)
        out["latency_s"]["first_stage_per_query"] = (time.perf_counter() - start) / len(task.queries)
        stages = {"first_stage": (list(idx), list(scores))}
    rankings: dict[str, dict[str, list[tuple[str, float]]]] = {}
    if run is None and use_bm25 is not False:
        bm25 = _bm25_top_k(task, top_k, required=bool(use_bm25))
        if bm25 is not None:
            stages["bm25"] = bm25
    for name, (ranked, first_scores) in list(stages.items()):
        out[name] = _metrics(ranked, first_scores, task, ks)
        if return_rankings:
            rankings[name] = _as_run(task, ranked, first_scores)
        if reranker is None:
            continue
        pairs = [(task.queries[q], task.corpus[j]) for q, row in enumerate(ranked) for j in row]
        start = time.perf_counter()
        asked = logits_keyword(reranker.predict)  # raw logits where it can give them, ranked by relevance_order
        shown = {} if show_progress_bar is None else accepted_keywords(reranker.predict,
                                                                       {"show_progress_bar": show_progress_bar})
        raw = np.asarray(reranker.predict(pairs, batch_size=batch_size, **asked, **shown), dtype=np.float64)
        out["latency_s"][f"rerank_per_query_{name}"] = (time.perf_counter() - start) / len(task.queries)
        if raw.size % max(len(pairs), 1):
            raise ValueError(f"the reranker gave scores of shape {raw.shape} for {len(pairs)} pairs")
        raw = raw.reshape(len(pairs), -1)
        order = relevance_order(raw)
        activated = fusion_relevance(raw, scorer_activation(reranker) if asked else "identity")
        key = "reranked" if name == "first_stage" else f"{name}_reranked"
        out[key] = _metrics(ranked, _per_query(order, ranked), task, ks)
        if return_rankings:
            rankings[key] = _as_run(task, ranked, _per_query(order, ranked))
        if fusion_weights:
            out[f"{key}_fused"] = {
                f"{float(w):g}": _metrics(ranked, [fuse_scores(r, f, float(w)) for r, f in
                                                   zip(_per_query(activated, ranked), first_scores)], task, ks)
                for w in fusion_weights}
    if return_rankings:
        out["rankings"] = rankings
    return out


def _positions(scores: np.ndarray, ids: Sequence[str]) -> np.ndarray:
    """Distinct scores that rank as ``beir.ranking`` ranks ``(ids, scores)``: minus each position."""
    from fastrank.evaluation.beir import ranking

    where = {docid: j for j, docid in enumerate(ids)}  # a query's candidates are distinct documents
    ranked_ids = [docid for docid, _ in ranking(zip(ids, map(float, scores)))]
    positions = np.empty(len(ids), dtype=np.float64)
    positions[[where[docid] for docid in ranked_ids]] = -np.arange(len(ids), dtype=np.float64)
    return positions


def _as_run(task: RetrievalTask, ranked: Sequence[np.ndarray], scores: Sequence[np.ndarray]):
    """Each query's candidates ``ranked`` (corpus indices) as a run, ranked by ``scores`` as ``_metrics`` scores
    them."""
    from fastrank.evaluation.beir import ranking

    return {task.query_ids[qi]: ranking([(task.corpus_ids[int(j)], float(x)) for j, x in zip(idx, s)])
            for qi, (idx, s) in enumerate(zip(ranked, scores))}


def _per_query(flat: np.ndarray, ranked: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``flat`` (one value per pair, queries one after another) cut into each query's candidates."""
    bounds = np.cumsum([0] + [len(row) for row in ranked])
    return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _bm25_top_k(task: RetrievalTask, top_k: int, required: bool):
    bm25s = import_optional("bm25s", "BM25 first-stage retrieval", required)
    if bm25s is None:
        return None
    retriever = bm25s.BM25()
    corpus = [document_text(d, "") for d in task.corpus]  # a title is more words of the document to BM25
    if mostly_ideographs("".join(corpus[:50])):
        logger.warning("BM25 first stage: the corpus is mostly CJK ideographs (Chinese, Japanese), with no spaces "
                       "between words; BM25's tokenizer reads each run of them as one word, so its ranking means "
                       "little here: judge retrieval by the embedding first stage")
    retriever.index(bm25s.tokenize(corpus, show_progress=False), show_progress=False)
    docs, scores = retriever.retrieve(bm25s.tokenize(task.queries, show_progress=False),
                                      k=min(top_k, len(task.corpus)), show_progress=False)
    return list(np.asarray(docs)), list(np.asarray(scores, dtype=np.float64))
