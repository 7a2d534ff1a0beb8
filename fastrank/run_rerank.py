"""Rerank a first stage's run: every query a TREC run ranks, judged or not, its top ``depth`` documents reranked.

This is the offline job behind a leaderboard submission or a nightly re-index: a retriever (BM25 in Pyserini or
bm25s, a dense index) wrote a run over a corpus's ids, and the reranked run is written back in the same format
(``fastrank.evaluation.beir``), for trec_eval, ranx or the next stage. ``fastrank eval --run`` measures a
reranker on judged queries; this reranks them all and measures nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from fastrank.batching import check_positive_int
from fastrank.documents import Document, is_blank
from fastrank.errors import DataError
from fastrank.evaluation.beir import Run, ranking
from fastrank.fusion import check_fusion_input, fuse_scores
from fastrank.progress import bar_disabled
from fastrank.reranker import Reranker, fusion_relevance, relevance_order

CHUNK_PAIRS = 8192  # pairs scored per call: long enough to batch by length, short enough for a steady progress bar


def rerank_run(reranker: Reranker | str | Path, run: Run, queries: Mapping[str, str],
               documents: Mapping[str, Document], depth: int = 100, top_k: int | None = None,
               fusion_weight: float = 0.0, show_progress_bar: bool = True) -> dict[str, list[tuple[str, float]]]:
    """Each query of ``run`` (query id -> ``[(document id, score)]``, best first, e.g. ``read_run``) with its top
    ``depth`` documents reranked: ``{query id: [(document id, score)]}``, best first, in the run's query order.

    The score is the model's logit (a model with several labels: its last class's log-odds), or with
    ``fusion_weight`` > 0 ``z(reranker) + fusion_weight * z(run score)`` per query (``fastrank.fusion``). Ties
    rank by document id, descending, as trec_eval ranks them, so the written run scores as this ranking.
    ``top_k``: keep only each query's best K (default all ``depth``). Documents below ``depth`` are dropped, as a
    reranker's run holds what it reranked; ``top_k`` above ``depth`` is a ValueError. ``queries`` / ``documents``
    map the run's ids to texts (``read_queries``, ``read_documents``). Before any scoring, a DataError refuses an id
    they lack, a blank query text (``fastrank rerank --query ""`` is refused too) and a document ranked twice for
    one query (trec_eval would misread the run). A query the run ranks no document for comes back with none.
    """
    if not isinstance(reranker, (Reranker, str, Path)):
        raise TypeError(f"reranker must be a fastrank.Reranker or a model's path or hub id, got "
                        f"{type(reranker).__name__} (for a CrossEncoder, save it and pass its directory)")
    depth, top_k = _check_options(depth, top_k, fusion_weight)
    cut = {qid: ranked[:depth] for qid, ranked in _as_run(run).items()}
    _check_queries(cut, queries)
    _check_documents(cut, documents)
    if fusion_weight:  # a run from Python may hold a NaN: refused now, not after hours of scoring
        for qid, ranked in cut.items():
            check_fusion_input([s for _, s in ranked], len(ranked), fusion_weight)
    if not isinstance(reranker, Reranker):
        reranker = Reranker(reranker)
    out: dict[str, list[tuple[str, float]]] = {}
    total = sum(map(len, cut.values()))
    with tqdm(total=total, desc="Reranking", unit="pair", disable=bar_disabled(show_progress_bar)) as bar:
        for chunk in _chunks(cut):
            pairs = [(queries[qid], documents[docid]) for qid in chunk for docid, _ in cut[qid]]
            logits = reranker.logits(pairs)
            start = 0
            for qid in chunk:
                ranked = cut[qid]
                rows = logits[start:start + len(ranked)]
                start += len(ranked)
                if not ranked:  # a retriever that found nothing for it
                    out[qid] = []
                    continue
                scores = relevance_order(rows)
                if fusion_weight:
                    first = np.array([s for _, s in ranked], dtype=np.float64)
                    scores = fuse_scores(fusion_relevance(rows, reranker.activation), first, fusion_weight)
                out[qid] = ranking(zip([d for d, _ in ranked], map(float, scores)))[:top_k]
            bar.update(len(pairs))
    return out


def rerank_run_files(model: str, run: str | Path, queries: str | Path, corpus: str | Path, out: str | Path,
                     depth: int = 100, top_k: int | None = None, fusion_weight: float = 0.0, tag: str = "fastrank",
                     show_progress_bar: bool = True, keep: Sequence[str | Path] = (),
                     **reranker_options: Any) -> dict[str, Any]:
    """``rerank_run`` from files to a file: read the run (TREC or MS MARCO, ``read_run``), the texts of its queries
    and of its top ``depth`` documents only (``read_queries``, ``read_documents``: BEIR JSONL or ``id<TAB>text``
    TSV), rerank with ``Reranker(model, **reranker_options)`` and write the reranked run to ``out`` (TREC, whole
    or not at all; never over an input or a file of the model's folder, nor over a file of ``keep``, e.g. a BEIR
    folder's qrels). Returns what was done: queries, pairs, seconds, pairs/s and the Reranker's ``describe()``."""
    from fastrank.data import check_input_file
    from fastrank.evaluation.beir import is_trec_run, read_documents, read_queries, read_run, run_documents, write_run
    from fastrank.io import check_output_file

    depth, top_k = _check_options(depth, top_k, fusion_weight)
    check_output_file(out, keep=[run, queries, corpus, model, *keep], what="the reranked run",
                      replaceable=is_trec_run)  # a rerun replaces its own earlier run inside an input folder
    for path, what in ((run, "run file"), (queries, "queries file"), (corpus, "corpus file")):
        check_input_file(Path(path), what)  # before the model loads
    reranker = Reranker(model, **reranker_options)  # a wrong model fails before a large corpus is read
    first_stage = read_run(run, depth)  # each query's top depth only: a run of millions of lines is fine
    texts = read_queries(queries)
    _check_queries(first_stage, texts, f"queries file {queries}")
    docs = read_documents(corpus, run_documents(first_stage, depth), show_progress_bar=show_progress_bar)
    start = time.perf_counter()
    reranked = rerank_run(reranker, first_stage, texts, docs, depth, top_k, fusion_weight, show_progress_bar)
    seconds = time.perf_counter() - start
    pairs = sum(len(ranked) for ranked in first_stage.values())  # read_run kept each query's top depth
    written = write_run(out, reranked, tag)
    return {"model": model, "run": str(run), "out": str(written), "queries": len(reranked), "pairs": pairs,
            "depth": depth, "top_k": top_k, "fusion_weight": fusion_weight, "seconds": round(seconds, 3),
            "pairs_per_s": round(pairs / seconds, 1) if seconds > 0 else None, "served_by": reranker.describe()}


def _as_run(run: Any) -> dict[str, list[tuple[str, float]]]:
    """``run`` as ``{query id: [(document id, score)]}`` best first. A pytrec_eval / ranx run (``{query id:
    {document id: score}}``) is ordered by score, ties by document id descending, as trec_eval reads it; any other
    shape is a TypeError saying what is accepted."""
    accepted = ("run must map each query id to its ranked (document id, score) pairs, best first (read_run gives "
                "that), or to {document id: score} (pytrec_eval, ranx)")
    if not isinstance(run, Mapping):
        raise TypeError(f"{accepted}; got {'None' if run is None else type(run).__name__}")
    out: dict[str, list[tuple[str, float]]] = {}
    for qid, ranked in run.items():
        if isinstance(ranked, Mapping):
            ranked = sorted(ranked.items(), key=lambda item: (item[1], item[0]), reverse=True)
        if isinstance(ranked, (str, bytes)) or not isinstance(ranked, Iterable):
            raise TypeError(f"{accepted}; query {qid!r} maps to a {type(ranked).__name__}")
        ranked = list(ranked)
        for item in ranked:
            if (isinstance(item, (str, bytes)) or not isinstance(item, Sequence) or len(item) != 2
                    or not isinstance(item[0], str) or isinstance(item[1], bool) or not isinstance(item[1], Real)):
                raise TypeError(f"{accepted}; query {qid!r} holds {item!r}, not a (document id, score) pair")
        out[qid] = ranked
    return out


def _check_options(depth: int, top_k: int | None, fusion_weight: float) -> tuple[int, int | None]:
    """``depth`` and ``top_k`` as ints, once they and ``fusion_weight`` are known to be valid (else ValueError)."""
    check_fusion_input([], 0, fusion_weight)
    depth, top_k = check_positive_int(depth, "depth"), check_positive_int(top_k, "top_k", optional=True)
    if top_k is not None and top_k > depth:
        raise ValueError(f"top_k {top_k} is above depth {depth}: only the top depth documents are reranked and "
                         f"written; raise depth to {top_k}, or lower top_k")
    return depth, top_k


def _check_queries(run: Mapping[str, list[tuple[str, float]]], queries: Mapping[str, str],
                   source: str = "queries") -> None:
    """Every query of the run has a text that is not blank (else a DataError counting what is wrong, naming
    ``source``), and the run ranks some document."""
    missing = [q for q in run if q not in queries]
    if missing:
        raise DataError(f"the run names {len(missing)} queries that the {source} does not hold, e.g. "
                        f"{missing[0]!r}: was the run made for other queries (another split)?")
    blank = [q for q in run if is_blank(str(queries[q]))]
    if blank:
        raise DataError(f"{len(blank)} of the run's queries have a blank text, e.g. {blank[0]!r}: a reranker scores "
                        "a query's words; give them their text, or leave them out of the run")
    if not any(run.values()):
        raise DataError("the run ranks no document: nothing to rerank")


def _check_documents(run: Mapping[str, list[tuple[str, float]]], documents: Mapping[str, Document]) -> None:
    """Every document the run ranks has a text, and none is ranked twice for one query (else a DataError)."""
    missing = sorted({d for ranked in run.values() for d, _ in ranked if d not in documents})
    if missing:
        raise DataError(f"the run names {len(missing)} documents that the corpus does not hold, e.g. "
                        f"{missing[0]!r}: was the run made over another corpus?")
    for qid, ranked in run.items():
        if len({d for d, _ in ranked}) != len(ranked):
            twice = next(d for i, (d, _) in enumerate(ranked) if d in {e for e, _ in ranked[:i]})
            raise DataError(f"document {twice!r} is ranked twice for query {qid!r}: a run ranks a document once")


def _chunks(run: Mapping[str, list[tuple[str, float]]]):
    """The run's query ids in order, cut into groups of about ``CHUNK_PAIRS`` pairs (whole queries)."""
    chunk: list[str] = []
    size = 0
    for qid, ranked in run.items():
        chunk.append(qid)
        size += len(ranked)
        if size >= CHUNK_PAIRS:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
