"""Hard-negative mining on WikiQA and the retrieve-then-rerank evaluation.

    python -m bench mining --speed                       # mining time + encode sentences/s vs sentence-transformers
    python -m bench mining --train original mined combined

Corpus: every WikiQA sentence (train.tokenized + dev + test, deduplicated). ``--train`` trains the default recipe
on WikiQA train with its own candidates (original), with negatives mined from the whole corpus instead (mined),
or both (combined); each model is scored by MAP on WikiQA test and by NDCG@10 / MRR@10 / Recall@100 after reranking
the embedding model's top-100 over the whole corpus. Records go to bench/results/mining.jsonl.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from typing import Any

from bench.common import WIKIQA, append_record, require_shared_data

MINING = {"num_negatives": 9, "range_max": 50, "relative_margin": 0.05}
COMBINED = {"num_negatives": 5, "range_max": 50, "relative_margin": 0.05, "keep_original_negatives": True}
# Original candidates + a few hard mined negatives + off-topic negatives sampled from a wide window of the ranking:
# WikiQA's own candidates all come from the query's article, so without the wide window the reranker never sees the
# off-topic sentences a first stage brings (issue #3).
HARD_RANDOM = {"hard": {"num_negatives": 3, "range_max": 50, "relative_margin": 0.05, "keep_original_negatives": True},
               "wide": {"num_negatives": 5, "range_min": 50, "range_max": 1000, "sampling": "random"}}
# distill: the same lists, trained with ListNet on soft targets that carry the embedding model's topical signal:
# target logit = label_weight * label + teacher_weight * cosine(query, document) (teacher: all-MiniLM-L6-v2).
DISTILL = {**HARD_RANDOM, "teacher": "sentence-transformers/all-MiniLM-L6-v2", "label_weight": 4.0,
           "teacher_weight": 10.0}
# residual: the combined lists, trained and scored as logit + 10 * first-stage cosine (fastrank.losses.prior): the
# reranker learns the correction to the embedding model rather than its topical matching.
# residual-hard-random: the hard-random lists (their off-topic negatives bound the logits of low-cosine documents)
# with a weaker prior, logit + 2 * cosine.
# distill-from-original: the distill lists and targets, but fine-tuning the default-recipe model (runs/wikiqa,
# strong within an article) for one epoch at a lower lr, to add topicality without losing that.
DISTILL_FROM_ORIGINAL = {**DISTILL, "train": {"base": "runs/wikiqa", "epochs": 1.0, "lr": 2e-5}}
# distill-top20: the distill model fine-tuned (1 epoch, lr 2e-5) on lists shaped like the retrieve-then-rerank test:
# the original candidates + the first stage's top 20 (relative margin 0.05) + 5 random from ranks 50-1000, with the
# distill targets, so the reranker is trained on exactly the competition it meets after retrieval.
DISTILL_TOP20 = {**DISTILL, "hard": {**HARD_RANDOM["hard"], "num_negatives": 20, "range_max": 20},
                 "train": {"base": "runs/mining/distill", "epochs": 1.0, "lr": 2e-5}}
# graded: graded relevance instead of a teacher. Lists: the original candidates + up to 10 of the first stage's top
# 20 (relative margin 0.05) + 5 random from ranks 50-1000; target logit = label_weight * label + own_weight * [the
# sentence is one of the query's own WikiQA candidates]: answer > on-topic non-answer (its own article) > mined. The
# reranker learns topicality from the judged pool itself, without the cosine teacher that cost distill its
# within-article skill.
GRADED = {**HARD_RANDOM, "hard": {**HARD_RANDOM["hard"], "num_negatives": 10, "range_max": 20},
          "label_weight": 4.0, "own_weight": 2.0}
# graded-answers: the graded lists + 5 positives of other train queries as negatives (grade 0): the 3 closest to
# the query by cosine (relative margin 0.05 against its own positive) and 2 at random. The reranker's typical error
# after retrieval is an answer-shaped sentence about another subject ("how many days are in a leap year" -> "each
# period consists of 12 hours numbered ..."); other queries' answers are exactly such sentences.
GRADED_ANSWERS = {**GRADED, "answer_negatives": {"closest": 3, "random": 2, "relative_margin": 0.05}}
# graded-answers-from-original: the graded-answers lists fine-tuning the default-recipe model (runs/wikiqa, the
# best within an article) for one epoch at lr 2e-5.
GRADED_ANSWERS_FROM_ORIGINAL = {**GRADED_ANSWERS, "train": {"base": "runs/wikiqa", "epochs": 1.0, "lr": 2e-5}}
# graded-answers-12: the same with 8 closest + 4 random other queries' positives.
GRADED_ANSWERS_12 = {**GRADED, "answer_negatives": {"closest": 8, "random": 4, "relative_margin": 0.05}}
GRADED_ANSWERS_12_FROM_ORIGINAL = {**GRADED_ANSWERS_12, "train": GRADED_ANSWERS_FROM_ORIGINAL["train"]}
# split-answers-12: two lists per query instead of one graded list, so the two skills do not compete inside one
# softmax. List 1: the query's own WikiQA candidates, as in the default recipe (which answer within the article).
# List 2: its answers against the graded-answers-12 negatives from other articles only (mined top 20, random ranks
# 50-1000, 12 other queries' answers): an answer beats any off-topic sentence. Own-article non-answers against
# off-topic sentences are left to the first stage, whose fusion settles exactly that.
SPLIT_ANSWERS_12 = {**GRADED_ANSWERS_12, "split": True}
# graded-answers-12-lr3e-5: the same lists and targets at lr 3e-5 instead of 1e-4, in case the default lr (chosen
# for MAP within the candidate lists) wipes out what the bi-encoder base knows about topics.
GRADED_ANSWERS_12_LOW_LR = {**GRADED_ANSWERS_12, "train": {"lr": 3e-5}}
# score-text-answers-12: the graded-answers-12 lists and targets, with the first stage's cosine written into every
# document as text ("62 [SEP] <sentence>", cosine x 100 rounded), in training and in scoring (after Askari et al.,
# "Injecting the BM25 Score as Text Improves BERT-Based Re-rankers", ECIR 2023): the cross-encoder learns how far to
# trust the retriever per pair instead of one fusion weight for all.
SCORE_TEXT_ANSWERS_12 = {**GRADED_ANSWERS_12, "score_text": True}
# score-text-answers-12-5ep: the same for 5 epochs instead of 3 (lr 3e-5 had scored lower on every measure, so the
# recipe might be short of training).
SCORE_TEXT_ANSWERS_12_5EP = {**SCORE_TEXT_ANSWERS_12, "train": {"epochs": 5.0}}
# score-text-answers-12-from-original: the score-text lists fine-tuning the default-recipe model (runs/wikiqa, the
# best within an article) for one epoch at lr 2e-5.
SCORE_TEXT_ANSWERS_12_FROM_ORIGINAL = {**SCORE_TEXT_ANSWERS_12, "train": GRADED_ANSWERS_FROM_ORIGINAL["train"]}
# context-answers-12: the graded-answers-12 lists and targets, with every sentence preceded by the first sentence of
# its Wikipedia article ("<lead> [SEP] <sentence>"; the lead itself stays as it is), in training and in scoring. The
# reranker's error after retrieval is an answer-shaped sentence from another article ("the company has 6,000
# employees"): a lone sentence often does not say what it is about, its article's lead does. The corpus and the
# first stage are unchanged (the embedding model ranks lead-prefixed sentences worse: NDCG@10 0.675 vs 0.734).
CONTEXT_ANSWERS_12 = {**GRADED_ANSWERS_12, "context": True}
# context-answers-12-seed13: the same with training seed 13 instead of 12 (same lists), to see how much of the lift
# one run's luck explains.
CONTEXT_ANSWERS_12_SEED13 = {**CONTEXT_ANSWERS_12, "train": {"seed": 13}}
RESIDUAL = {**COMBINED, "first_stage_weight": 10.0}
RESIDUAL_HARD_RANDOM = {**HARD_RANDOM, "first_stage_weight": 2.0}
VARIANTS = {"original": {}, "mined": MINING, "combined": COMBINED, "hard-random": HARD_RANDOM, "distill": DISTILL,
            "distill-from-original": DISTILL_FROM_ORIGINAL, "distill-top20": DISTILL_TOP20, "graded": GRADED,
            "graded-answers": GRADED_ANSWERS, "graded-answers-12": GRADED_ANSWERS_12,
            "graded-answers-from-original": GRADED_ANSWERS_FROM_ORIGINAL,
            "graded-answers-12-from-original": GRADED_ANSWERS_12_FROM_ORIGINAL, "split-answers-12": SPLIT_ANSWERS_12,
            "graded-answers-12-lr3e-5": GRADED_ANSWERS_12_LOW_LR,
            "score-text-answers-12": SCORE_TEXT_ANSWERS_12, "score-text-answers-12-5ep": SCORE_TEXT_ANSWERS_12_5EP,
            "score-text-answers-12-from-original": SCORE_TEXT_ANSWERS_12_FROM_ORIGINAL,
            "context-answers-12": CONTEXT_ANSWERS_12, "context-answers-12-seed13": CONTEXT_ANSWERS_12_SEED13,
            "residual": RESIDUAL, "residual-hard-random": RESIDUAL_HARD_RANDOM}
FUSION_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


_EMBEDDER = None


def _embedder():
    global _EMBEDDER
    if _EMBEDDER is None:
        from fastrank.embedding import CachedEmbedding, EmbeddingModel

        _EMBEDDER = CachedEmbedding(EmbeddingModel())  # the corpus is embedded once per process (and role)
    return _EMBEDDER


def _corpus() -> list[str]:
    from fastrank.data import read_groups

    files = ("train.tokenized.jsonl", "dev.jsonl", "test.jsonl")
    return list(dict.fromkeys(d for f in files for g in read_groups(str(WIKIQA / f)) for d in g.documents))


def speed() -> dict[str, Any]:
    """Mine for the 873 train queries over the corpus (no cache), and encode the corpus with sentence-transformers."""
    from sentence_transformers import SentenceTransformer

    from fastrank.data import read_groups
    from fastrank.embedding import EmbeddingModel
    from fastrank.mining import mine_hard_negatives
    from fastrank.model import resolve_model_path

    train = read_groups(str(WIKIQA / "train.tokenized.jsonl"))
    corpus = _corpus()
    model = EmbeddingModel()
    start = time.perf_counter()
    result = mine_hard_negatives(train, model, corpus, **MINING, show_progress_bar=False)
    mine_s = time.perf_counter() - start
    start = time.perf_counter()
    model.encode(corpus, batch_size=64, show_progress_bar=False)
    ours_s = time.perf_counter() - start
    st = SentenceTransformer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    start = time.perf_counter()
    st.encode(corpus, batch_size=64, show_progress_bar=False)
    st_s = time.perf_counter() - start
    return {"experiment": "mining-speed", "queries": len(result.groups), "corpus_size": len(corpus),
            "mine_seconds": round(mine_s, 1), "fastrank_encode_sentences_per_s": round(len(corpus) / ours_s, 1),
            "st_encode_sentences_per_s": round(len(corpus) / st_s, 1),
            "encode_speedup": round(st_s / ours_s, 2), "stats": result.stats, "options": MINING}


def _hard_random_groups(groups: list, options: dict[str, Any]) -> tuple[list, dict[str, Any]]:
    """Mine twice (hard top-ranked, then random from a wide window) and merge the negatives per query (new groups;
    ``groups`` stay as they are)."""
    from fastrank.data import QueryGroup, dedup_key
    from fastrank.mining import mine_hard_negatives

    corpus = _corpus()
    hard = mine_hard_negatives(groups, _embedder(), corpus, **options["hard"], show_progress_bar=False)
    wide = mine_hard_negatives(groups, _embedder(), corpus, **options["wide"], show_progress_bar=False)
    extra = {g.query: g.negatives for g in wide.groups}
    out = []
    for g in hard.groups:
        seen = {dedup_key(d) for d in g.documents}
        added = [d for d in extra.get(g.query, []) if dedup_key(d) not in seen]
        out.append(QueryGroup(g.query, g.documents + added, g.labels + [0.0] * len(added), g.query_id))
    return out, {"hard": hard.stats, "wide": wide.stats}


def _train_data(variant: str, tmp: str) -> tuple[str, dict[str, Any] | None]:
    from fastrank.data import read_groups, write_groups
    from fastrank.mining import mine_hard_negatives

    path = str(WIKIQA / "train.tokenized.jsonl")
    if variant == "original":
        return path, None
    if "hard" in VARIANTS[variant]:
        from fastrank.data import QueryGroup, dedup_key

        originals = read_groups(path)
        own = {g.query_id: {dedup_key(d) for d in g.documents} for g in originals}  # each query's WikiQA candidates
        groups, stats = _hard_random_groups(originals, VARIANTS[variant])
        if "answer_negatives" in VARIANTS[variant]:
            from fastrank.mining import add_answer_negatives

            o = VARIANTS[variant]["answer_negatives"]
            answers = add_answer_negatives(groups, _embedder(), closest=o["closest"], random_count=o["random"],
                                           relative_margin=o["relative_margin"], show_progress_bar=False)
            groups, stats["answers"] = answers.groups, answers.stats
        if "teacher" in VARIANTS[variant]:
            from fastrank.losses.prior import EmbeddingPrior

            opts = VARIANTS[variant]
            cosines = EmbeddingPrior(_embedder())([g.query for g in groups], [g.documents for g in groups])
            for g, cos in zip(groups, cosines):  # soft targets: ListNet's softmax over them is the teacher distribution
                g.labels = [opts["label_weight"] * y + opts["teacher_weight"] * float(c)
                            for y, c in zip(g.labels, cos)]
        elif VARIANTS[variant].get("split"):
            topical = []
            for g in groups:
                keep = [(d, y) for d, y in zip(g.documents, g.labels) if y > 0 or dedup_key(d) not in own[g.query_id]]
                topical.append(QueryGroup(g.query, [d for d, _ in keep], [y for _, y in keep], g.query_id))
            groups = originals + topical
        elif "own_weight" in VARIANTS[variant]:
            opts = VARIANTS[variant]
            for g in groups:
                g.labels = [opts["label_weight"] * y + opts["own_weight"] * (dedup_key(d) in own[g.query_id])
                            for y, d in zip(g.labels, g.documents)]
        rewrite = _rewrite(variant)
        if rewrite is not None:  # the documents as scoring will write them (score text, context)
            documents = iter(rewrite([(g.query, d) for g in groups for d in g.documents]))
            for g in groups:
                g.documents = [next(documents) for _ in g.documents]
        stats["documents_per_query"] = round(sum(len(g.documents) for g in groups) / len(groups), 2)
        return str(write_groups(groups, f"{tmp}/{variant}.jsonl")), stats
    options = {k: v for k, v in VARIANTS[variant].items() if k not in ("first_stage_weight", "train")}
    result = mine_hard_negatives(read_groups(path), _embedder(), _corpus(), **options, show_progress_bar=False)
    return str(write_groups(result.groups, f"{tmp}/{variant}.jsonl")), result.stats


def _score_text(cosine: float, document: str) -> str:
    return f"{round(100 * cosine)} [SEP] {document}"


def _article_leads() -> dict[str, str]:
    """dedup_key(sentence) -> the first sentence of its WikiQA article (a candidate list is an article's sentences
    in order; a sentence in several articles keeps the first seen)."""
    from fastrank.data import dedup_key, read_groups

    leads: dict[str, str] = {}
    for f in ("train.tokenized.jsonl", "dev.jsonl", "test.jsonl"):
        for g in read_groups(str(WIKIQA / f)):
            for d in g.documents:
                leads.setdefault(dedup_key(d), g.documents[0])
    return leads


def _with_lead(leads: dict[str, str], document: str) -> str:
    from fastrank.data import dedup_key

    key = dedup_key(document)
    lead = leads.get(key)
    return document if lead is None or dedup_key(lead) == key else f"{lead} [SEP] {document}"


class _RewritingReranker:
    """Scores (query, document) as the score-text and context variants were trained: each document rewritten by
    ``rewrite(pairs) -> documents`` first. Has the ``predict`` every evaluator takes."""

    def __init__(self, reranker, rewrite) -> None:
        self.reranker, self.rewrite = reranker, rewrite

    def predict(self, pairs, batch_size: int = 32, show_progress_bar: bool | None = None, **kwargs):
        pairs = [(q, d) for q, d in pairs]
        documents = self.rewrite(pairs) if pairs else []
        return self.reranker.predict([(q, d) for (q, _), d in zip(pairs, documents)], batch_size=batch_size,
                                     show_progress_bar=show_progress_bar, **kwargs)


def _score_text_rewrite(prior):
    def rewrite(pairs):
        import torch

        cosines = torch.cat(prior([q for q, _ in pairs], [[d] for _, d in pairs])).tolist()
        return [_score_text(c, d) for (_, d), c in zip(pairs, cosines)]

    return rewrite


def _context_rewrite():
    leads = _article_leads()
    return lambda pairs: [_with_lead(leads, d) for _, d in pairs]


def _rewrite(variant: str):
    """How ``variant`` writes each (query, document) pair's document, in training and in scoring alike:
    ``rewrite(pairs) -> documents`` (score text, context), or None for the documents as they are."""
    from fastrank.losses.prior import EmbeddingPrior

    options = VARIANTS.get(variant, {})
    if options.get("score_text"):
        return _score_text_rewrite(EmbeddingPrior(_embedder()))
    if options.get("context"):
        return _context_rewrite()
    return None


def _as_trained(variant: str, model):
    """``model`` scoring pairs the way ``variant`` was trained: with its first-stage prior, score text or context."""
    from fastrank.losses.prior import EmbeddingPrior, PriorReranker

    weight = VARIANTS.get(variant, {}).get("first_stage_weight")
    if weight:  # logit + weight * first-stage score
        return PriorReranker(model, EmbeddingPrior(_embedder()), weight)
    rewrite = _rewrite(variant)
    return model if rewrite is None else _RewritingReranker(model, rewrite)


def _retrieval(split: str, model, fusion: bool) -> dict[str, Any]:
    from fastrank.data import read_groups
    from fastrank.evaluation.retrieval import RetrievalTask, evaluate_retrieve_rerank

    task = RetrievalTask.from_groups(read_groups(str(WIKIQA / f"{split}.jsonl")), _corpus())
    return evaluate_retrieve_rerank(task, _embedder(), model, top_k=100, ks=(10,), use_bm25=False,
                                    fusion_weights=FUSION_WEIGHTS if fusion else ())


def diagnose(models: dict[str, str], split: str = "test", top_k: int = 100) -> dict[str, Any]:
    """Why a reranker does or does not lift the first stage: how often each ranking puts a sentence of the query's
    own article (its WikiQA candidate list) first, whether that first sentence is an answer, and NDCG@10 when only
    the own article's sentences may rank (every other one pushed below them), for the first stage and for each model
    in ``models`` (name -> dir, or dir@W to also diagnose z(model) + W * z(first stage))."""
    import numpy as np

    from fastrank.data import dedup_key, read_groups
    from fastrank.evaluation.retrieval import RetrievalTask
    from fastrank.fusion import fuse_scores
    from fastrank.mining import top_k_search
    from fastrank.model import CrossEncoder

    groups = [g for g in read_groups(str(WIKIQA / f"{split}.jsonl")) if g.positives]
    task = RetrievalTask.from_groups(groups, _corpus())
    index = {dedup_key(d): i for i, d in enumerate(task.corpus)}
    embedder = _embedder()
    first, ranked = top_k_search(embedder.encode_query(task.queries), embedder.encode_document(task.corpus), top_k)
    own = np.array([[j in {index[dedup_key(d)] for d in g.documents} for j in row] for g, row in zip(groups, ranked)])
    relevant = np.array([[j in task.qrels[q] for j in row] for q, row in enumerate(ranked)])

    def summary(scores: list[np.ndarray]) -> dict[str, float]:
        top1 = np.array([int(np.argmax(s)) for s in scores])
        rows = np.arange(len(own))
        only_own = [np.where(o, s, s.min() - 1e3) for o, s in zip(own, scores)]
        return {"ndcg@10": _ndcg10(task, ranked, scores),
                "top1_own_article": round(float(own[rows, top1].mean()), 4),
                "top1_answer": round(float(relevant[rows, top1].mean()), 4),
                "top1_own_article_non_answer": round(float((own & ~relevant)[rows, top1].mean()), 4),
                "median_first_stage_rank_of_top1": float(np.median(top1)),
                "ndcg@10_own_article_only": _ndcg10(task, ranked, only_own)}

    first_scores = [np.asarray(s, dtype=np.float64) for s in first]
    out = {"experiment": "mining-diagnosis", "split": split, "queries": len(groups), "top_k": top_k,
           "own_article_share": {"top10": round(float(own[:, :10].mean()), 4),
                                 f"top{top_k}": round(float(own.mean()), 4)},
           "first_stage": summary(first_scores)}
    pairs = [(task.queries[q], task.corpus[j]) for q, row in enumerate(ranked) for j in row]
    for name, spec in models.items():
        path, _, weight = spec.partition("@")
        model = _as_trained(name, CrossEncoder(path))  # a variant's name scores as that variant was trained
        scores = list(np.asarray(model.predict(pairs, batch_size=64), dtype=np.float64)
                      .reshape(len(ranked), -1))
        out[name] = summary(scores)
        if weight:
            out[f"{name} + fusion (w={float(weight):g})"] = summary(
                [fuse_scores(s, f, float(weight)) for s, f in zip(scores, first_scores)])
    return out


def _ndcg10(task, rows, scores) -> float:
    import numpy as np

    from fastrank.evaluation.retrieval import _metrics

    return round(_metrics(list(rows), [np.asarray(x, dtype=np.float64) for x in scores], task, (10,))["ndcg@10"], 4)


def context_first_stage(weights: tuple[float, ...] = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)) -> dict[str, Any]:
    """Whether the first stage could use the article context as well as the reranker does: NDCG@10 of the embedding
    model over lead-prefixed sentences (the whole corpus), and of its plain top-100 reordered by cosine(sentence) +
    a * cosine(lead-prefixed sentence) for each a (a chosen on dev), on WikiQA dev and test."""
    from fastrank.data import read_groups
    from fastrank.evaluation.retrieval import RetrievalTask
    from fastrank.mining import top_k_search

    embedder, leads = _embedder(), _article_leads()
    out: dict[str, Any] = {"experiment": "mining-context-first-stage", "weights": list(weights)}
    for split in ("dev", "test"):
        task = RetrievalTask.from_groups(read_groups(str(WIKIQA / f"{split}.jsonl")), _corpus())
        queries = embedder.encode_query(task.queries)
        plain, ranked = top_k_search(queries, embedder.encode_document(task.corpus), 100)
        context = embedder.encode_document([_with_lead(leads, d) for d in task.corpus])
        _, ranked_context = top_k_search(queries, context, 100)
        lead_only = [queries[i] @ context[r].T for i, r in enumerate(ranked_context)]
        both = [queries[i] @ context[r].T for i, r in enumerate(ranked)]
        out[split] = {"first_stage": _ndcg10(task, ranked, plain),
                      "lead_prefixed_corpus": _ndcg10(task, ranked_context, lead_only),
                      "sum": {str(a): _ndcg10(task, ranked, [p + a * c for p, c in zip(plain, both)])
                              for a in weights}}
    best = max(out["dev"]["sum"], key=lambda a: (out["dev"]["sum"][a], -float(a)))
    out["chosen"] = {"a": float(best), "dev": out["dev"]["sum"][best], "test": out["test"]["sum"][best]}
    return out


def train_and_evaluate(variant: str, model_dir: str | None = None, save_dir: str | None = None,
                       dev: bool = False, fusion: bool = False) -> dict[str, Any]:
    """Train the default recipe on ``variant``'s negatives (or evaluate ``model_dir`` already trained on them).

    ``dev``: also run retrieve-then-rerank on WikiQA dev (the split to choose options on). ``fusion``: also rank by
    reranker + w * first-stage score (z-normalised per query) for each w in FUSION_WEIGHTS; w is chosen on dev.
    """
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.model import CrossEncoder
    from fastrank.training.recipe import TrainConfig, train

    weight = VARIANTS[variant].get("first_stage_weight", 0.0)

    with tempfile.TemporaryDirectory() as tmp:
        mining_stats = None
        if model_dir is None:
            data, mining_stats = _train_data(variant, tmp)
            model_dir = save_dir or f"{tmp}/model"
            overrides = VARIANTS[variant].get("train", {})
            result = train(TrainConfig(data=data, out=model_dir, show_progress_bar=False, first_stage_weight=weight,
                                       **overrides))
        else:
            result = {"train_seconds": f"reused {model_dir}", "train_pairs_per_epoch": None}
        kept_dir = None if model_dir.startswith(tmp) else model_dir
        model = _as_trained(variant, CrossEncoder(model_dir))
        rerank_map = RerankingEvaluator.from_jsonl(str(WIKIQA / "test.jsonl")).evaluate(model).metrics
        dev_retrieval = _retrieval("dev", model, fusion) if (dev or fusion) else None
        retrieval = _retrieval("test", model, fusion)
    record = {"experiment": "mining-train", "variant": variant, "corpus_twins_merged": True,
              "options": VARIANTS[variant], "recipe": "default (listnet, lr 1e-4, 3 epochs, 8 queries/step)"
              + (f", overridden: {VARIANTS[variant]['train']}" if "train" in VARIANTS[variant] else ""),
              "model_dir": kept_dir,
              "train_seconds": result["train_seconds"], "train_pairs_per_epoch": result["train_pairs_per_epoch"],
              "mining": mining_stats, "test_rerank": rerank_map, "retrieval": retrieval}
    if dev_retrieval is not None:
        record["dev_retrieval"] = dev_retrieval
    if fusion:
        scores = dev_retrieval["reranked_fused"]
        best = max(scores, key=lambda w: (scores[w]["ndcg@10"], -float(w)))
        record["fusion"] = {"weights": list(FUSION_WEIGHTS), "chosen_on": "dev ndcg@10", "weight": float(best),
                            "dev": scores[best], "test": retrieval["reranked_fused"][best]}
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench mining", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--diagnose", action="append", default=[], metavar="NAME=DIR",
                        help="Own-article analysis of the test top-100 for this model, NAME=DIR or NAME=DIR@W to add "
                             "its fusion with weight W (repeatable).")
    parser.add_argument("--context-first-stage", action="store_true",
                        help="NDCG@10 of first stages that use each sentence's article lead (context-answers-12's "
                             "context): the fair baseline for the context variants.")
    parser.add_argument("--train", nargs="*", choices=tuple(VARIANTS), default=[])
    parser.add_argument("--original-model", help="Evaluate this default-recipe model as 'original' (no training).")
    parser.add_argument("--model", action="append", default=[], metavar="VARIANT=DIR",
                        help="Evaluate DIR, already trained on VARIANT, instead of training it.")
    parser.add_argument("--save", metavar="DIR", help="Keep the trained model(s) in DIR/<variant>.")
    parser.add_argument("--dev", action="store_true", help="Also evaluate retrieve-then-rerank on WikiQA dev.")
    parser.add_argument("--fusion", action="store_true",
                        help="Also report reranker + w * first-stage score fusion, w chosen on dev.")
    args = parser.parse_args(argv)
    require_shared_data()
    if args.speed:
        record = speed()
        append_record("mining", record)
        print({k: v for k, v in record.items() if k != "stats"})
    if args.diagnose:
        record = diagnose(dict(m.split("=", 1) for m in args.diagnose))
        append_record("mining", record)
        print(record)
    if args.context_first_stage:
        record = context_first_stage()
        append_record("mining", record)
        print(record)
    reuse = dict(m.split("=", 1) for m in args.model)
    if args.original_model:
        reuse.setdefault("original", args.original_model)
    for variant in args.train:
        save = f"{args.save}/{variant}" if (args.save and variant not in reuse) else None
        record = train_and_evaluate(variant, reuse.get(variant), save, args.dev, args.fusion)
        append_record("mining", record)
        r = record["retrieval"]
        line = (f"{variant}: test MAP {record['test_rerank']['map']:.4f}; retrieve top-100 NDCG@10 first stage "
                f"{r['first_stage']['ndcg@10']:.4f} -> reranked {r['reranked']['ndcg@10']:.4f}")
        if "dev_retrieval" in record:
            d = record["dev_retrieval"]
            line += f"; dev {d['first_stage']['ndcg@10']:.4f} -> {d['reranked']['ndcg@10']:.4f}"
        if "fusion" in record:
            f = record["fusion"]
            line += f"; fused w={f['weight']:g} dev {f['dev']['ndcg@10']:.4f} test {f['test']['ndcg@10']:.4f}"
        print(line, flush=True)
