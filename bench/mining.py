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


def _train_data(variant: str, tmp: str) -> str:
    from fastrank.data import read_groups, write_groups
    from fastrank.embedding import EmbeddingModel
    from fastrank.mining import mine_hard_negatives

    path = str(WIKIQA / "train.tokenized.jsonl")
    if variant == "original":
        return path
    options = MINING if variant == "mined" else COMBINED
    result = mine_hard_negatives(read_groups(path), EmbeddingModel(), _corpus(), **options,
                                 cache_dir=f"{tmp}/cache", show_progress_bar=False)
    return str(write_groups(result.groups, f"{tmp}/{variant}.jsonl"))


def train_and_evaluate(variant: str, model_dir: str | None = None) -> dict[str, Any]:
    """Train the default recipe on ``variant``'s negatives (or evaluate ``model_dir`` already trained on them)."""
    from fastrank.data import read_groups
    from fastrank.embedding import EmbeddingModel
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.evaluation.retrieval import RetrievalTask, evaluate_retrieve_rerank
    from fastrank.model import CrossEncoder
    from fastrank.training.recipe import TrainConfig, train

    with tempfile.TemporaryDirectory() as tmp:
        if model_dir is None:
            data = _train_data(variant, tmp)
            result = train(TrainConfig(data=data, out=f"{tmp}/model", show_progress_bar=False))
            model_dir = f"{tmp}/model"
        else:
            result = {"train_seconds": f"reused {model_dir}", "train_pairs_per_epoch": 8672}
        model = CrossEncoder(model_dir)
        rerank_map = RerankingEvaluator.from_jsonl(str(WIKIQA / "test.jsonl")).evaluate(model).metrics
        task = RetrievalTask.from_groups(read_groups(str(WIKIQA / "test.jsonl")), _corpus())
        retrieval = evaluate_retrieve_rerank(task, EmbeddingModel(), model, top_k=100, ks=(10,), use_bm25=False)
    return {"experiment": "mining-train", "variant": variant, "corpus_twins_merged": True, "options": {"original": {}, "mined": MINING,
                                                                           "combined": COMBINED}[variant],
            "train_seconds": result["train_seconds"], "train_pairs_per_epoch": result["train_pairs_per_epoch"],
            "test_rerank": rerank_map, "retrieval": retrieval}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench mining", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--train", nargs="*", choices=("original", "mined", "combined"), default=[])
    parser.add_argument("--original-model", help="Evaluate this default-recipe model as 'original' (no training).")
    args = parser.parse_args(argv)
    require_shared_data()
    if args.speed:
        record = speed()
        append_record("mining", record)
        print({k: v for k, v in record.items() if k != "stats"})
    for variant in args.train:
        record = train_and_evaluate(variant, args.original_model if variant == "original" else None)
        append_record("mining", record)
        r = record["retrieval"]
        print(f"{variant}: test MAP {record['test_rerank']['map']:.4f}; retrieve top-100 NDCG@10 first stage "
              f"{r['first_stage']['ndcg@10']:.4f} -> reranked {r['reranked']['ndcg@10']:.4f}")
