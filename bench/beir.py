"""Reranking a first stage's TREC run over a BEIR folder: ``python -m bench beir [--model runs/wikiqa]``.

WikiQA test as retrieve-then-rerank (every WikiQA sentence the corpus, as in ``python -m bench mining``) is written
as a BEIR folder (``fastrank.evaluation.beir.write_beir``); the in-process retrieve-then-rerank evaluator scores its
task (``read_beir``) and writes the embedding model's top-100 as a TREC run. Then
``fastrank eval MODEL --data DIR --run run.trec --write-run reranked.trec`` reranks the run. Recorded: its metrics,
the in-process evaluator's (the two paths must agree), and ranx's on the run files written (an independent
implementation; the embedding scores have no ties, where ranx's order is arbitrary). Last, ``fastrank rerank --run``
(``rerank_run_files``, the offline job that reranks every query of a run, judged or not) reranks the same run
through ``Reranker``: its ranking must be eval's, and its speed is recorded. Appends to
bench/results/beir.jsonl; ``python -m bench report`` shows it.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import WIKIQA, append_record, require_shared_data


def _ranx(qrels_path: Path, run_path: Path, metrics: list[str]) -> dict[str, float]:
    import ranx

    from fastrank.evaluation.beir import read_qrels

    qrels = {q: {d: int(g) for d, g in judged.items()} for q, judged in read_qrels(qrels_path).items()}
    run = ranx.Run.from_file(str(run_path), kind="trec")
    return {k: float(v) for k, v in ranx.evaluate(ranx.Qrels(qrels), run, metrics, make_comparable=True).items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench beir", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/wikiqa", help="Cross-encoder checkpoint or artifact.")
    parser.add_argument("--out", default=None, help="Keep the BEIR folder and runs here (default: a temp dir).")
    args = parser.parse_args(argv)
    require_shared_data()
    from bench.mining import _corpus
    from fastrank.cli.evaluate import evaluate_retrieval, scorer
    from fastrank.data import read_groups
    from fastrank.embedding import EmbeddingModel
    from fastrank.evaluation.beir import read_beir, read_run, write_beir, write_run
    from fastrank.evaluation.retrieval import evaluate_retrieve_rerank
    from fastrank.run_rerank import rerank_run_files

    tmp = Path(tempfile.mkdtemp(prefix="bench-beir-"))
    out = Path(args.out) if args.out else tmp
    try:
        beir = write_beir(out / "wikiqa-test", {"test": read_groups(str(WIKIQA / "test.jsonl"))}, corpus=_corpus())
        task = read_beir(beir)
        start = time.perf_counter()
        direct = evaluate_retrieve_rerank(task, EmbeddingModel(), scorer(args.model)[0], top_k=100, ks=(10,),
                                          use_bm25=False, return_rankings=True)
        direct_s = time.perf_counter() - start
        run = write_run(beir / "embedding-top100.trec", direct["rankings"]["first_stage"], tag="minilm")
        start = time.perf_counter()
        via_run = evaluate_retrieval(args.model, str(beir), 100, run=str(run),
                                     write_run=str(beir / "reranked.trec"))
        run_s = time.perf_counter() - start
        start = time.perf_counter()  # the offline job: every query of the run reranked, nothing measured
        offline = rerank_run_files(args.model, run, beir / "queries.jsonl", beir / "corpus.jsonl",
                                   beir / "rerank-run.trec", depth=100)
        offline_s = time.perf_counter() - start
        by_eval, by_rerank = read_run(beir / "reranked.trec"), read_run(beir / "rerank-run.trec")
        metrics = ["ndcg@10", "mrr@10", "recall@10", "recall@100"]
        qrels = beir / "qrels" / "test.tsv"
        record = {
            "experiment": "beir-run", "model": args.model, "queries": len(task.queries),
            "corpus_size": len(task.corpus), "top_k": 100,
            "in_process": {"first_stage": direct["first_stage"], "reranked": direct["reranked"],
                           "seconds": round(direct_s, 1)},
            "via_run": {"run": via_run["run"], "run_reranked": via_run["run_reranked"], "seconds": round(run_s, 1)},
            "ranx": {"run": _ranx(qrels, run, metrics), "reranked": _ranx(qrels, beir / "reranked.trec", metrics),
                     "rerank_run": _ranx(qrels, beir / "rerank-run.trec", metrics)},
            "rerank_run": {"queries": offline["queries"], "pairs": offline["pairs"], "seconds": round(offline_s, 1),
                           "pairs_per_s": offline["pairs_per_s"], "served_by": offline["served_by"],
                           "same_order_queries": sum([d for d, _ in by_eval[q]] == [d for d, _ in by_rerank.get(q, [])]
                                                     for q in by_eval),
                           "max_abs_score_diff": max(abs(a - b) for q in by_eval for (_, a), (_, b) in
                                                     zip(sorted(by_eval[q]), sorted(by_rerank[q])))},
            "command": "python -m bench beir" + (f" --model {args.model}" if args.model != "runs/wikiqa" else ""),
        }
        pairs = [(record["in_process"]["first_stage"], record["via_run"]["run"], record["ranx"]["run"]),
                 (record["in_process"]["reranked"], record["via_run"]["run_reranked"], record["ranx"]["reranked"])]
        record["max_abs_diff"] = max(abs(a[m] - b[m]) + abs(a[m] - c[m]) for a, b, c in pairs for m in metrics)
        append_record("beir", record)
        print({k: record[k] for k in ("in_process", "via_run", "ranx", "max_abs_diff", "rerank_run")})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
