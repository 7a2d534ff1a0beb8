"""Hard-negative mining with an embedding model.

For every query, retrieve the corpus documents most similar to it, drop its positives and likely false negatives,
and keep ``num_negatives`` of the rest as hard negatives. The result is a list of query groups (positives with their
own, possibly graded, labels; mined negatives 0; optional teacher scores) that ``fastrank.data.convert`` turns into
any training format.
Titled documents (``{"title", "text"}``, ``fastrank.documents``) are embedded as a reranker reads them and come back
as the same objects; the same text under another title is another document.
"""

from __future__ import annotations

import hashlib
import logging
import math
import numbers
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.batching import check_positive_int, check_seed, is_integer
from fastrank.data import QueryGroup, document_key, require_labels
from fastrank.documents import Document, check_document, document_parts
from fastrank.errors import DataError, import_optional

logger = logging.getLogger(__name__)

SAMPLING = ("top", "random")
ANSWER_MARGIN = 0.05  # answer negatives' default relative margin: other queries' answers can be near-duplicates


@dataclass
class MiningResult:
    """Mined groups plus counts of everything that was dropped or fixed up, so nothing happens silently."""

    groups: list[QueryGroup]
    stats: dict[str, Any] = field(default_factory=dict)


def _fingerprint(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:16]


def _as_given(doc: Document) -> str:
    """A document's exact title and text in one string (a plain document is its text): what the cache key hashes."""
    title, text = document_parts(doc)
    return f"{title}\x1e{text}" if title else text


def corpus_embeddings(model, corpus: Sequence[Document], cache_dir: str | Path | None = None,
                      batch_size: int = 64, show_progress_bar: bool | None = None) -> tuple[np.ndarray, bool]:
    """Embed ``corpus``, re-using ``cache_dir/<model+corpus hash>.npy`` when present; returns (matrix, cache_hit).

    The key hashes the model's weights (a model replaced at the same path misses), its settings and the corpus. A
    cache file that does not read back whole (a disk that filled up, a copy cut short) is embedded again and
    rewritten; files are replaced whole, so a reader never sees part of one."""
    from fastrank.embedding import encode_documents
    from fastrank.io import atomic_file

    if not cache_dir:  # None or '': no cache ('' is not the current folder)
        return encode_documents(model, corpus, batch_size, show_progress_bar), False
    identity = getattr(model, "weights_sha256", None) or model.name_or_path
    settings = [model.max_length, model.pooling, model.normalize]
    prompt = getattr(model, "document_prompt", None)
    if prompt:  # the prompt documents are embedded with (none: the key as before)
        settings += [prompt, getattr(model, "include_prompt", True)]
    key = _fingerprint(identity, *settings,
                       hashlib.sha256("\0".join(map(_as_given, corpus)).encode("utf-8")).hexdigest())
    path = Path(cache_dir) / f"corpus-{key}.npy"
    if path.is_file():
        try:
            emb = np.load(path)
        except (OSError, ValueError, EOFError) as exc:
            logger.warning("the corpus embedding cache %s does not read (%s): embedding the corpus again", path, exc)
        else:
            if emb.shape == (len(corpus), model.dimension):
                return emb, True
    emb = encode_documents(model, corpus, batch_size, show_progress_bar)
    with atomic_file(path, "wb") as f:
        np.save(f, emb)
    return emb, False


SEARCH_ELEMENTS = 8_000_000


def top_k_search(queries: np.ndarray, corpus: np.ndarray, k: int, use_faiss: bool | None = None,
                 chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k: (scores, indices), each (n_queries, k), best first. faiss when asked/installed."""
    return top_k_searcher(corpus, use_faiss, chunk)(queries, k)


def top_k_searcher(corpus: np.ndarray, use_faiss: bool | None = None, chunk: int = 512
                   ) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """``search(queries, k)`` over ``corpus`` (``top_k_search``), which builds its faiss index once for every
    search."""
    faiss = None if use_faiss is False else import_optional("faiss", "faiss search", required=bool(use_faiss))
    if faiss is not None:
        index = faiss.IndexFlatIP(corpus.shape[1])
        index.add(np.ascontiguousarray(corpus, dtype=np.float32))
        return lambda queries, k: index.search(np.ascontiguousarray(queries, dtype=np.float32),
                                               min(k, corpus.shape[0]))

    def search(queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, corpus.shape[0])
        all_scores, all_idx = [], []
        # at most SEARCH_ELEMENTS similarities at a time (their argpartition doubles that): a fixed 512 query rows
        # took 11.7 KB per corpus document, and a 400k corpus ran past 6 GB
        rows = max(1, min(chunk, SEARCH_ELEMENTS // max(1, corpus.shape[0])))
        for start in range(0, queries.shape[0], rows):
            negated = queries[start : start + rows] @ corpus.T
            np.negative(negated, out=negated)  # in place: argpartition finds the smallest
            part = np.argpartition(negated, k - 1, axis=1)[:, :k]
            part_scores = -np.take_along_axis(negated, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            all_idx.append(np.take_along_axis(part, order, axis=1))
            all_scores.append(np.take_along_axis(part_scores, order, axis=1))
        return np.concatenate(all_scores), np.concatenate(all_idx)

    return search


def search_to_depths(queries: np.ndarray, corpus: np.ndarray, depths: Sequence[int], use_faiss: bool | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``top_k_search`` of each query to its own depth (at least; the corpus at most): per query, (scores, indices)
    best first. Queries are searched together by depth rounded up to a power of two, so that one query with
    thousands of positives to look past does not make every query's search, and its result arrays, that deep."""
    ks = np.minimum(corpus.shape[0], 2 ** np.ceil(np.log2(np.maximum(np.asarray(depths), 1))).astype(np.int64))
    scores: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(ks)
    indices: list[np.ndarray] = [np.empty(0, dtype=np.int64)] * len(ks)
    search = top_k_searcher(corpus, use_faiss)
    for k in np.unique(ks):
        rows = np.flatnonzero(ks == k)
        found_scores, found = search(queries[rows], int(k))
        for row, q in enumerate(rows):
            scores[q], indices[q] = found_scores[row], found[row]
    return scores, indices


def check_mining_options(*, num_negatives: int = 5, range_min: int = 0, range_max: int | None = 50,
                         min_score: float | None = None, max_score: float | None = None,
                         relative_margin: float | None = None, absolute_margin: float | None = None,
                         sampling: str = "top", seed: int = 0, **_: Any) -> None:
    """``mine_hard_negatives``' window, score, margin and seed options checked (ValueError naming the option):
    options that could mine nothing are refused before an embedding model loads. Other keywords are ignored."""
    check_seed(seed)
    if not is_integer(num_negatives) or num_negatives < 1:
        raise ValueError(f"num_negatives must be an integer >= 1, got {num_negatives!r}")
    if sampling not in SAMPLING:
        raise ValueError(f"sampling must be one of {', '.join(SAMPLING)}, got {sampling!r}")
    if not is_integer(range_min) or range_min < 0:
        raise ValueError(f"range_min must be an integer >= 0 (ranks to skip at the top), got {range_min!r}")
    if range_max is not None and not is_integer(range_max):
        raise ValueError(f"range_max must be None (every rank) or an integer, got {range_max!r}")
    for name, value in (("min_score", min_score), ("max_score", max_score)):
        _check_real(value, name, "None or a finite number (a similarity)")
    if range_max is not None and range_max <= range_min:
        raise ValueError(f"range_max={range_max} must be greater than range_min={range_min}")
    if range_max is not None and num_negatives > range_max - range_min:
        raise ValueError(f"num_negatives={num_negatives} cannot be drawn from ranks {range_min}..{range_max - 1} "
                         f"(range_min={range_min}, range_max={range_max}): the window holds "
                         f"{range_max - range_min}; widen it or ask for fewer")
    if min_score is not None and max_score is not None and min_score > max_score:
        raise ValueError(f"min_score={min_score} is above max_score={max_score}: no similarity is in between")
    check_margins(relative_margin, absolute_margin)


def _keyed_positives(group: QueryGroup) -> list[tuple[str, Document]]:
    """``(document_key, positive)`` of a group's positives in order, blank ones left out: a blank document is in no
    corpus and no answer pool (``_dedup_corpus`` drops it), so mining neither looks it up nor adds it anywhere."""
    return [(key, p) for p in group.positives if (key := document_key(p))]


def _positives_by_text(groups: Sequence[QueryGroup]) -> dict[str, set[str]]:
    """The ``document_key`` of every positive of each query text, over every group of that text (twin rows)."""
    by_text: dict[str, set[str]] = {}
    for g in groups:
        by_text.setdefault(g.query, set()).update(key for key, _ in _keyed_positives(g))
    return by_text


def _dedup_corpus(corpus: Sequence[Document], stats: dict[str, Any]) -> list[Document]:
    """Drop blank documents (no text and no title: a ``{"text": ""}`` line was mined as a negative) and documents
    equal up to case and whitespace, title included (``document_key``), keeping the first seen."""
    seen: dict[str, Document] = {}
    blank = 0
    for i, doc in enumerate(corpus):
        try:
            check_document(doc, f"corpus item {i}")
        except TypeError as exc:
            raise DataError(str(exc)) from None
        key = document_key(doc)
        if not key:
            blank += 1
            continue
        seen.setdefault(key, doc)
    stats["blank_documents_removed"] = blank
    stats["duplicate_documents_removed"] = len(corpus) - blank - len(seen)
    return list(seen.values())


def _check_groups(groups: Any) -> list[QueryGroup]:
    """``groups`` as a list of ``QueryGroup`` (what ``fastrank.data.read_groups`` returns); anything else is a
    TypeError naming the first item that is not one."""
    if isinstance(groups, (str, bytes, dict, QueryGroup)):
        raise TypeError(f"groups must be a list of fastrank.data.QueryGroup (read_groups(path) gives them), got a "
                        f"single {type(groups).__name__}")
    groups = list(groups)
    for i, g in enumerate(groups):
        if not isinstance(g, QueryGroup):
            raise TypeError(f"groups item {i} must be a fastrank.data.QueryGroup (read_groups(path) gives them, or "
                            f"QueryGroup(query, documents, labels)), got {type(g).__name__}")
    require_labels(groups, "mining (its positives)")
    return groups


def check_margins(relative_margin: float | None, absolute_margin: float | None) -> None:
    """A relative margin in [0, 1) (a fraction of the positive's similarity), an absolute margin >= 0."""
    _check_real(relative_margin, "relative_margin", "None or a number in [0, 1)")
    _check_real(absolute_margin, "absolute_margin", "None or a number >= 0")
    if relative_margin is not None and not 0 <= relative_margin < 1:
        raise ValueError(f"relative_margin must be in [0, 1): negatives above the lowest positive's similarity less "
                         f"margin x its magnitude are dropped; got {relative_margin}")
    if absolute_margin is not None and absolute_margin < 0:
        raise ValueError(f"absolute_margin must be >= 0, got {absolute_margin}")


def _check_real(value: Any, name: str, accepted: str) -> None:
    """ValueError saying ``name`` must be ``accepted`` unless ``value`` is None or a finite real number (not a bool):
    a string or NaN would compare as no similarity does."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)
                              or not math.isfinite(value)):
        raise ValueError(f"{name} must be {accepted}, got {value!r}")


def check_embedding_model(model: Any) -> None:
    """TypeError unless ``model`` embeds texts (has ``encode``): a path or hub id is not loaded here."""
    if isinstance(model, (str, os.PathLike)):
        raise TypeError(f"embedding_model must be a loaded model, got the {type(model).__name__} {str(model)!r}: pass "
                        f"fastrank.EmbeddingModel({str(model)!r})")
    if not callable(getattr(model, "encode", None)):
        raise TypeError(f"embedding_model must be an embedding model with encode(texts) (fastrank.EmbeddingModel, a "
                        f"sentence-transformers SentenceTransformer), got {type(model).__name__}")


def margin_ceiling(floor: float, relative_margin: float | None, absolute_margin: float | None = None) -> float:
    """The highest similarity a negative may have beside a positive of similarity ``floor``: ``floor - |floor| x
    relative_margin`` and ``floor - absolute_margin`` (inf without margins). ``|floor|``, as sentence-transformers
    since its fix of ``floor x (1 - margin)``: that product lies above a negative ``floor`` and kept negatives more
    similar to the query than its positive."""
    ceiling = np.inf
    if relative_margin is not None:
        ceiling = floor - abs(floor) * relative_margin
    if absolute_margin is not None:
        ceiling = min(ceiling, floor - absolute_margin)
    return float(ceiling)


def mine_hard_negatives(
    groups: Sequence[QueryGroup],
    embedding_model: Any,
    corpus: Sequence[Document] | None = None,
    *,
    num_negatives: int = 5,
    range_min: int = 0,
    range_max: int | None = 50,
    min_score: float | None = None,
    max_score: float | None = None,
    relative_margin: float | None = None,
    absolute_margin: float | None = None,
    sampling: str = "top",
    keep_original_negatives: bool = False,
    teacher: Any = None,
    cache_dir: str | Path | None = None,
    batch_size: int = 64,
    use_faiss: bool | None = None,
    seed: int = 0,
    show_progress_bar: bool | None = None,
) -> MiningResult:
    """Mine ``num_negatives`` hard negatives per query from ``corpus`` (default: every document in ``groups``).

    Args:
        groups: queries with their positives (label > 0); their existing negatives are kept only with
            ``keep_original_negatives``. Queries without a positive are skipped and counted.
        embedding_model: an :class:`~fastrank.embedding.EmbeddingModel` (anything with encode/name_or_path).
        range_min / range_max: rank window of the retrieved list to draw from (skip the very top, which is where
            unlabelled positives hide; stop at ``range_max``); it must hold ``num_negatives``. The query's
            positives, a document equal to the query's own text, and with ``keep_original_negatives`` its own
            negatives, are not counted: ``num_negatives`` new ones are mined. The window is of retrieved ranks,
            before the score and margin filters (sentence-transformers skips ``range_min`` of the documents that
            pass them).
        min_score / max_score: similarity window for negatives.
        relative_margin / absolute_margin: drop negatives scoring above ``pos - |pos| * relative_margin`` or
            ``pos - absolute_margin``, where ``pos`` is the lowest similarity of the query text's positives (over
            every group of that text): likely false negatives.
        sampling: ``top`` takes the best-ranked survivors, ``random`` samples among them (kept best first).
        teacher: optional cross-encoder (anything with ``predict(pairs)``) whose raw scores are attached to every
            document as ``scores`` for distillation.
        cache_dir: where corpus embeddings are cached, keyed by model and corpus hash (None or "": no cache).

    Similarity is the embedding model's inner product: cosine for a model that normalizes its embeddings (the
    bundled all-MiniLM-L6-v2 does), raw dot product for one whose directory has no Normalize module, where
    sentence-transformers' mining always uses cosine: set score options on that model's scale.
    """
    check_mining_options(num_negatives=num_negatives, range_min=range_min, range_max=range_max, min_score=min_score,
                         max_score=max_score, relative_margin=relative_margin, absolute_margin=absolute_margin,
                         sampling=sampling, seed=seed)
    from fastrank.embedding import encode_queries

    groups = _check_groups(groups)
    check_embedding_model(embedding_model)
    batch_size = check_positive_int(batch_size, "batch_size")
    if cache_dir:
        from fastrank.io import check_dir_path

        check_dir_path(cache_dir, "cache_dir")
    if teacher is not None:
        check_teacher(teacher)
    if isinstance(corpus, (str, bytes)):
        raise TypeError(f"corpus must be a list of documents, got a single {type(corpus).__name__}; wrap it: [text]")
    if corpus is not None and not isinstance(corpus, Sequence):
        corpus = list(corpus)  # a generator, a dataset column
    stats: dict[str, Any] = {}
    usable = [g for g in groups if _keyed_positives(g)]  # a blank positive says nothing
    stats["queries_without_positive_skipped"] = len(groups) - len(usable)
    if not usable:
        raise DataError("no query has a positive document: nothing to mine negatives for")
    if corpus is not None and len(corpus) == 0:
        raise DataError("the corpus is empty: pass documents to mine from, or corpus=None to use the dataset's own")
    docs = _dedup_corpus(corpus if corpus is not None else [d for g in groups for d in g.documents], stats)
    known = {document_key(d) for d in docs}
    missing = sorted({key: p for g in usable for key, p in _keyed_positives(g) if key not in known}.values(),
                     key=_as_given)
    if missing:
        logger.warning("%d positives are not in the corpus; adding them so they cannot be mined as negatives",
                       len(missing))
        docs += missing
    stats["positives_added_to_corpus"] = len(missing)
    window = (range_max if range_max is not None else len(docs))
    # the search skips a query's positives (and, kept, its own negatives) without counting them: look past them
    answers = _positives_by_text(usable)  # no negative for a twin query of that text
    depths = [window + len(answers[g.query]) + 1 + (len(g.negatives) if keep_original_negatives else 0)
              for g in usable]  # + 1: a corpus copy of the query's own text, skipped too
    if len(docs) < window:
        logger.warning("corpus has %d documents, fewer than range_max=%d: searching all of it", len(docs), window)
        stats["range_max_clamped_to"] = len(docs)

    corpus_emb, cache_hit = corpus_embeddings(embedding_model, docs, cache_dir, batch_size, show_progress_bar)
    stats["corpus_size"] = len(docs)
    stats["corpus_cache_hit"] = cache_hit
    query_emb = encode_queries(embedding_model, [g.query for g in usable], batch_size, show_progress_bar)
    scores, indices = search_to_depths(query_emb, corpus_emb, depths, use_faiss)
    doc_index = {document_key(d): i for i, d in enumerate(docs)}
    rng = random.Random(seed)
    out: list[QueryGroup] = []
    dropped_margin = dropped_score = query_copies = short = 0
    for qi, g in enumerate(usable):
        positives = answers[g.query]
        own = {document_key(d) for d in g.negatives} if keep_original_negatives else set()  # kept anyway: mine others
        # the margin is to the text's lowest positive, in whichever group of that query text it is
        ceiling = margin_ceiling(min(float(query_emb[qi] @ corpus_emb[doc_index[key]]) for key in positives),
                                 relative_margin, absolute_margin)
        query_key = document_key(g.query)
        candidates = []
        rank = 0
        for s, j in zip(scores[qi], indices[qi]):
            doc = docs[j]
            key = document_key(doc)
            if key in positives or key in own:  # the positive itself (or its twin in another spelling), or a
                continue  # negative the query keeps: neither is a new negative
            if key == query_key:  # the query's own text (question-to-question corpora): similarity 1, no negative
                query_copies += 1
                continue
            if rank >= window:
                break
            rank += 1
            if rank - 1 < range_min:
                continue
            if (min_score is not None and s < min_score) or (max_score is not None and s > max_score):
                dropped_score += 1
                continue
            if s > ceiling:
                dropped_margin += 1
                continue
            candidates.append(doc)
        chosen = range(min(num_negatives, len(candidates))) if sampling == "top" else sorted(
            rng.sample(range(len(candidates)), min(num_negatives, len(candidates))))  # best first, as drawn
        picked = [candidates[i] for i in chosen]
        short += len(picked) < num_negatives
        negatives = (list(g.negatives) if keep_original_negatives else []) + picked
        kept = [(d, y) for d, y in zip(g.documents, g.labels) if y > 0]  # positives keep their graded labels
        out.append(QueryGroup(g.query, [d for d, _ in kept] + negatives,
                              [float(y) for _, y in kept] + [0.0] * len(negatives), g.query_id))
    stats["negatives_dropped_by_margin"] = dropped_margin
    stats["negatives_dropped_by_score"] = dropped_score
    stats["query_text_documents_skipped"] = query_copies
    stats["queries_with_fewer_negatives"] = short
    if short:
        logger.warning("%d queries got fewer than %d negatives (window/margins too strict or corpus too small)",
                       short, num_negatives)
    if teacher is not None:
        attach_teacher_scores(out, teacher)
    return MiningResult(out, stats)


_ONE_LOGIT = ("distillation scores need a teacher with one output logit (a model trained with bce, mse, a listwise "
              "or a pairwise loss, not ce)")


def check_teacher(teacher) -> None:
    """Refuse a teacher with several output labels (a ``--loss ce`` classifier) before any work is done:
    distillation needs one logit per document."""
    if not callable(getattr(teacher, "predict", None)):
        raise TypeError(f"teacher must be a cross-encoder with predict(pairs) (fastrank.CrossEncoder, a Reranker), got "
                        f"{type(teacher).__name__}" + (f": load it, CrossEncoder({str(teacher)!r})"
                                                         if isinstance(teacher, (str, os.PathLike)) else ""))
    labels = getattr(teacher, "num_labels", 1)
    if labels != 1:
        raise ValueError(f"the teacher has {labels} output labels; {_ONE_LOGIT}")


def attach_teacher_scores(groups: Sequence[QueryGroup], teacher) -> None:
    """Set every group's ``scores`` to ``teacher``'s raw scores (anything with ``predict(pairs)``), in place."""
    check_teacher(teacher)
    pairs = [(g.query, d) for g in groups for d in g.documents]
    raw = np.asarray(teacher.predict(pairs, activation="identity"), dtype=np.float64)
    if raw.size != len(pairs):
        raise ValueError(f"the teacher gave scores of shape {raw.shape} for {len(pairs)} pairs; {_ONE_LOGIT}")
    flat = raw.reshape(-1)
    pos = 0
    for g in groups:
        g.scores = [float(x) for x in flat[pos : pos + len(g.documents)]]
        pos += len(g.documents)


def add_answer_negatives(
    groups: Sequence[QueryGroup],
    embedding_model: Any,
    *,
    closest: int = 3,
    random_count: int = 2,
    relative_margin: float | None = ANSWER_MARGIN,
    batch_size: int = 64,
    seed: int = 0,
    show_progress_bar: bool | None = None,
) -> MiningResult:
    """Add other queries' positives to every group as negatives (label 0).

    A reranker trained on candidates that all share the query's topic learns what an answer looks like, and after
    retrieval it then prefers an answer-shaped sentence about another subject to the right one ("how many days are in
    a leap year" -> "each period consists of 12 hours numbered ..."). Other queries' answers are such sentences: the
    ``closest`` of them by the embedding model (dropping any above the query's lowest positive similarity less
    ``relative_margin`` x its magnitude, ``margin_ceiling``: likely false negatives), then ``random_count`` drawn
    from the rest. A positive that is already one of the query's documents (queries sharing a source), or a
    positive of another group with the same query text, is never added. Queries without a positive are returned
    unchanged and counted.
    """
    from fastrank.embedding import encode_documents, encode_queries

    if not (is_integer(closest) and is_integer(random_count)) or closest < 0 or random_count < 0 \
            or closest + random_count == 0:
        raise ValueError(f"closest and random_count must be integers >= 0, not both 0, got {closest!r} and "
                         f"{random_count!r}")
    check_margins(relative_margin, None)
    groups = _check_groups(groups)
    check_embedding_model(embedding_model)
    batch_size, seed = check_positive_int(batch_size, "batch_size"), check_seed(seed)
    first_seen: dict[str, Document] = {}
    for g in groups:
        for key, p in _keyed_positives(g):
            first_seen.setdefault(key, p)
    pool, pool_keys = list(first_seen.values()), list(first_seen)
    if len(pool) < 2:
        raise DataError(f"answer negatives need positives from at least two queries; the data has {len(pool)}")
    if any(g.scores is not None for g in groups):
        raise ValueError("the groups carry teacher scores, which the added documents would lack: add answer "
                         "negatives first, then attach_teacher_scores")
    key_index = {k: i for i, k in enumerate(pool_keys)}
    text_positives = _positives_by_text(groups)  # not a negative of a twin query
    pool_emb = encode_documents(embedding_model, pool, batch_size, show_progress_bar)
    usable = [i for i, g in enumerate(groups) if _keyed_positives(g)]
    query_emb = encode_queries(embedding_model, [groups[i].query for i in usable], batch_size, show_progress_bar)
    rng = random.Random(seed)
    out = list(groups)
    stats = {"answer_pool": len(pool), "answer_negatives_added": 0, "answer_negatives_dropped_by_margin": 0,
             "queries_without_positive_unchanged": len(groups) - len(usable), "queries_with_fewer_answer_negatives": 0}
    for gi, q in zip(usable, query_emb):  # in NumPy: Python loops over the pool made this quadratic in queries
        g = groups[gi]
        sims = pool_emb @ q
        floor = min(float(sims[key_index[key]]) for key, _ in _keyed_positives(g))
        allowed = np.ones(len(pool), dtype=bool)  # not one of the query's own documents, nor its text's positives
        allowed[[i for i in (key_index.get(document_key(d)) for d in g.documents) if i is not None]] = False
        allowed[[key_index[key] for key in text_positives[g.query]]] = False
        keep = allowed & (sims <= margin_ceiling(floor, relative_margin))
        stats["answer_negatives_dropped_by_margin"] += int(allowed.sum() - keep.sum())
        candidates = np.flatnonzero(keep)
        kept = candidates[np.argsort(-sims[candidates], kind="stable")]  # closest first, ties in pool order
        picked = kept[:closest].tolist()
        rest = kept[closest:]  # sampled by position: the same picks as sampling the list itself
        picked += [int(rest[i]) for i in rng.sample(range(len(rest)), min(random_count, len(kept) - len(picked)))]
        stats["queries_with_fewer_answer_negatives"] += len(picked) < closest + random_count
        stats["answer_negatives_added"] += len(picked)
        out[gi] = QueryGroup(g.query, g.documents + [pool[i] for i in picked], g.labels + [0.0] * len(picked),
                             g.query_id, meta=dict(g.meta))
    return MiningResult(out, stats)
