"""Memory and time of fastrank's own work at production sizes, each path in a fresh process.

    python -m bench memory [--pairs 200000] [--long-docs 100] [--corpus 400000] [--rows 500000]
    [--run-lines 2000000]

A tiny random BERT (2 layers, 32 wide) with the real MiniLM tokenizer, so that model compute is small and
fastrank's overhead (tokenization, batching, search) shows. Inputs are WikiQA test/dev pairs made unique with a
counter (one copy of ../shared/data is read, never written). Rows:

- ``predict``: ``CrossEncoder.predict`` on ``--pairs`` pairs;
- ``reranker onnx``: ``Reranker`` on an fp32 ONNX export of the same model, the same pairs;
- ``windows``: ``Reranker(long_documents="windows")`` on ``--long-docs`` documents of 100,000 characters;
- ``truncate``: ``Reranker`` (long documents truncated, the default) on the same documents;
- ``mining search``: ``fastrank.mining.top_k_search`` (NumPy), 2,048 random unit queries against ``--corpus``
  vectors of dimension 384, k=55;
- ``mining deep query``: ``mine_hard_negatives`` of 20,000 queries (one positive each, but one query with 4,000)
  in a corpus of ``--corpus`` / 2 documents, on random 64-d vectors (a stand-in embedding model), range_max 50;
- ``read csv`` / ``read jsonl``: ``fastrank.data.read_groups`` of ``--rows`` unique pairs written as flat CSV rows
  (``query,document,label``) and as grouped JSONL (20 documents a query); the groups it returns are part of the
  extra memory;
- ``beir run``: ``fastrank.evaluation.beir.read_run`` of a TREC run (1,000 queries x 100 documents) and
  ``read_beir`` of a BEIR folder of ``--corpus`` documents keeping the run's (what ``fastrank eval --run``
  holds); ``beir, whole corpus``: ``read_beir`` keeping every document (what an embedding first stage needs);
- ``run file, depth 100``: ``read_run(path, 100)`` of a TREC run of ``--run-lines`` lines (1,000 documents a
  query, as MS MARCO's dev run), what ``fastrank rerank --run`` holds; ``run file, whole``: ``read_run(path)``;
- ``quick workloads``: what ``fastrank bench --quick`` does before it scores, on the grouped JSONL: the groups of
  its head (``benchmark.quick_groups`` of ``data.iter_groups``) and ``build_workloads(quick=True)``; ``quick
  workloads, whole file``: the same workloads from ``read_groups`` of the whole file, as the command did until
  6117465.

*extra MiB* is the process's peak resident memory (sampled every 10 ms) above what it held once the model and
inputs were loaded. Records go to bench/results/memory.jsonl; ``python -m bench report`` puts them in RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import ROOT, WIKIQA, append_record, require_shared_data

CHARS = 100_000


def _rss_mib() -> float:
    """This process's resident memory now (Linux /proc)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _run_sampled(run) -> tuple[float, float]:
    """(seconds, peak MiB above the memory held before) of ``run()``, the memory sampled every 10 ms."""
    import gc
    import threading
    import time

    gc.collect()
    baseline, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        run()
    finally:
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return seconds, max(0.0, max(peak[0], _rss_mib()) - baseline)


def _pairs(n: int) -> list[tuple[str, str]]:
    from fastrank.data import read_groups

    base = [(g.query, d) for name in ("test.jsonl", "dev.jsonl") for g in read_groups(WIKIQA / name)
            for d in g.documents]
    return [(base[i % len(base)][0], f"{base[i % len(base)][1]} {i}") for i in range(n)]


def _measure(row: str, size: int, workdir: str) -> dict:
    """One row, in this (fresh) process: seconds and peak memory above the loaded baseline."""
    import numpy as np

    if row.startswith("beir"):
        from fastrank.evaluation.beir import read_beir, read_run, run_documents

        beir = Path(workdir) / "beir"
        run = ((lambda: read_beir(beir, documents=run_documents(read_run(beir / "run.trec"), 100)))
               if row == "beir run" else lambda: read_beir(beir))
    elif row.startswith("run file"):
        from fastrank.evaluation.beir import read_run

        depth = 100 if row.endswith("depth 100") else None
        run = lambda: read_run(Path(workdir) / "deep.trec", depth)  # noqa: E731
    elif row.startswith("quick workloads"):
        from fastrank.benchmark import build_workloads, quick_groups
        from fastrank.data import iter_groups, read_groups

        path = Path(workdir) / "grouped.jsonl"
        read = (lambda: read_groups(path)) if row.endswith("whole file") else lambda: quick_groups(iter_groups(path))
        run = lambda: build_workloads(read(), quick=True)  # noqa: E731
    elif row in ("read csv", "read jsonl"):
        from fastrank.data import read_groups

        path = Path(workdir) / ("flat.csv" if row == "read csv" else "grouped.jsonl")
        run = lambda: read_groups(path)  # noqa: E731
    elif row == "mining deep query":
        from fastrank.data import QueryGroup
        from fastrank.mining import mine_hard_negatives

        vectors = np.random.default_rng(0).normal(size=(size + 20_000, 64)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)

        class Embedder:  # "doc 7" and "query 7" are rows of ``vectors``
            name_or_path, dimension = "random", 64

            def encode(self, texts, batch_size=64, show_progress_bar=None):
                return vectors[[int(t.split()[1]) + (size if t.startswith("query") else 0) for t in texts]]

        docs = [f"doc {i}" for i in range(size)]
        groups = [QueryGroup(f"query {q}", [docs[q]], [1.0]) for q in range(1, 20_000)]
        groups.append(QueryGroup("query 0", docs[20_000:24_000], [1.0] * 4000))
        run = lambda: mine_hard_negatives(groups, Embedder(), docs, use_faiss=False,  # noqa: E731
                                          show_progress_bar=False)
    elif row == "mining search":
        from fastrank.mining import top_k_search

        rng = np.random.default_rng(0)
        corpus = rng.normal(size=(size, 384)).astype(np.float32)
        corpus /= np.linalg.norm(corpus, axis=1, keepdims=True)
        queries = corpus[rng.choice(size, 2048, replace=False)] + 0.01
        run = lambda: top_k_search(queries, corpus, 55, use_faiss=False)  # noqa: E731
    else:
        from fastrank import CrossEncoder, Reranker

        model = Path(workdir) / "model"
        if row == "predict":
            scorer, pairs = CrossEncoder(model, device="cpu", max_length=128), _pairs(size)
            run = lambda: scorer.predict(pairs)  # noqa: E731
        elif row == "reranker onnx":
            scorer, pairs = Reranker(Path(workdir) / "onnx", num_threads=2), _pairs(size)
            run = lambda: scorer.predict(pairs)  # noqa: E731
        else:
            text = " ".join(d for _, d in _pairs(4000))
            docs = [text[i * 997 % (len(text) - CHARS):][:CHARS] for i in range(size)]
            scorer = Reranker(model, long_documents=row, num_threads=2)
            run = lambda: scorer.predict([("how are glacier caves formed?", d) for d in docs])  # noqa: E731
    seconds, extra = _run_sampled(run)
    return {"row": row, "size": size, "seconds": round(seconds, 2), "extra_mib": round(extra)}


def _code_version() -> str:
    """The commit of the fastrank measured (the working tree's HEAD)."""
    import fastrank

    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(fastrank.__file__).parent)
    return out.stdout.strip() or "unknown"


def _write_data(workdir: Path, rows: int, corpus: int, run_lines: int) -> None:
    """``rows`` unique pairs as flat CSV and as grouped JSONL (20 documents a query); a BEIR folder of ``corpus``
    of their documents with 1,000 queries (one relevant document each) and a run of 100 random documents each; a
    run of ``run_lines`` lines, 1,000 random documents a query."""
    import csv
    import random

    pairs = _pairs(max(rows, corpus))
    beir = workdir / "beir"
    (beir / "qrels").mkdir(parents=True)
    with (beir / "corpus.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps({"_id": f"d{i}", "title": "", "text": pairs[i][1]}) + "\n" for i in range(corpus))
    rng = random.Random(0)
    with (beir / "queries.jsonl").open("w", encoding="utf-8") as fq, \
            (beir / "qrels" / "test.tsv").open("w", encoding="utf-8") as fr, \
            (beir / "run.trec").open("w", encoding="utf-8") as frun:
        fr.write("query-id\tcorpus-id\tscore\n")
        for q in range(1000):
            fq.write(json.dumps({"_id": f"q{q}", "text": pairs[q * 20][0]}) + "\n")
            fr.write(f"q{q}\td{rng.randrange(corpus)}\t1\n")
            frun.writelines(f"q{q} Q0 d{d} {r} {100 - r} bm25\n"
                            for r, d in enumerate(rng.sample(range(corpus), 100), 1))
    with (workdir / "deep.trec").open("w", encoding="utf-8") as f:
        for q in range(0, run_lines, 1000):
            f.writelines(f"q{q} Q0 d{d} {r} {1000 - r} bm25\n"
                         for r, d in enumerate(rng.sample(range(8_841_823), min(1000, run_lines - q)), 1))
    pairs = pairs[:rows]
    with (workdir / "flat.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["query_id", "query", "document", "label"])
        writer.writerows((i // 20, pairs[i // 20 * 20][0], d, int(i % 7 == 0)) for i, (_, d) in enumerate(pairs))
    with (workdir / "grouped.jsonl").open("w", encoding="utf-8") as f:
        for start in range(0, rows, 20):
            part = pairs[start:start + 20]
            f.write(json.dumps({"query_id": start // 20, "query": part[0][0], "documents": [d for _, d in part],
                                "labels": [int((start + i) % 7 == 0) for i in range(len(part))]}) + "\n")


def _prepare(workdir: Path) -> None:
    """The tiny model and its fp32 ONNX export."""
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import _build_tiny_model

    from fastrank import CrossEncoder
    from fastrank.export import export_model

    _build_tiny_model(workdir / "model", 1)
    export_model(CrossEncoder(workdir / "model", device="cpu", max_length=128), workdir / "onnx", num_threads=1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--long-docs", type=int, default=100)
    parser.add_argument("--corpus", type=int, default=400_000)
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--run-lines", type=int, default=2_000_000)
    parser.add_argument("--only", nargs="+", action="extend", metavar="ROW",
                        help="Only these rows, e.g. --only 'read csv'.")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # one row, run by the parent in a fresh process
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.row:
        print(json.dumps(_measure(args.row, args.size, args.workdir)))
        return
    require_shared_data()
    command = "python -m bench memory" + "".join(
        f" --{name.replace('_', '-')} {value}" for name, value, default in
        (("pairs", args.pairs, 200_000), ("long_docs", args.long_docs, 100), ("corpus", args.corpus, 400_000),
         ("rows", args.rows, 500_000), ("run_lines", args.run_lines, 2_000_000))
        if value != default)
    rows = [("predict", args.pairs), ("reranker onnx", args.pairs), ("windows", args.long_docs),
            ("truncate", args.long_docs),
            ("mining search", args.corpus), ("mining deep query", args.corpus // 2), ("read csv", args.rows),
            ("read jsonl", args.rows), ("quick workloads", args.rows), ("quick workloads, whole file", args.rows),
            ("beir run", args.corpus), ("beir, whole corpus", args.corpus),
            ("run file, depth 100", args.run_lines), ("run file, whole", args.run_lines)]
    unknown = set(args.only or ()) - {row for row, _ in rows}
    if unknown:
        parser.error(f"unknown row(s) {sorted(unknown)}; rows: {', '.join(row for row, _ in rows)}")
    rows = [(row, size) for row, size in rows if not args.only or row in args.only]
    command += "".join(f" --only {row!r}" for row in args.only or ())
    with tempfile.TemporaryDirectory() as tmp:
        _prepare(Path(tmp))
        _write_data(Path(tmp), args.rows, args.corpus, args.run_lines)
        for row, size in rows:
            out = subprocess.run([sys.executable, "-m", "bench", "memory", "--row", row, "--size", str(size),
                                  "--workdir", tmp], capture_output=True, text=True, cwd=ROOT, check=True)
            record = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"{row:28s} {size:>8d}  {record['seconds']:7.2f} s  +{record['extra_mib']} MiB", flush=True)
            append_record("memory", {**record, "code": _code_version(), "command": command})
