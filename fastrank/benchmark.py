"""Quality and speed of rerankers on the same data in one run: the engine behind ``fastrank bench`` and
``python -m bench run``.

A *row* is anything that turns (query, document) pairs into raw logits (a ``Reranker``, a sentence-transformers
``CrossEncoder``, a peer library). For every row and workload it measures end-to-end throughput (tokenization
included; warm-up, repeated runs, median with the range of the runs or, from 6 runs, a bootstrap interval), quality
(MAP, MRR@10, NDCG@10 from ``fastrank.evaluation.metrics``), parity against a reference row (max |Δlogit|, Kendall τ
per query, top-1 agreement, tie rate, from ``fastrank.export.verify``), and latency of single requests of
10/100/1000 documents (p50/p95/p99). Sweeps over batch size / token budget and sequence length, the FLOPs of a pair
and this machine's measured matmul rates (so each row shows its % of peak) complete the picture. Timing is
``fastrank.timing``. Only numpy is imported at module level.
"""

from __future__ import annotations

import json
import math
import logging
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.documents import document_text
from fastrank.timing import measure, measure_round_robin

logger = logging.getLogger(__name__)
LogitsFn = Callable[[Sequence[tuple[str, str]]], np.ndarray]
Group = tuple[int, int, list[float]]  # (start, end, labels) of one query's pairs in a workload

PASSAGE_WORDS = 180
LONG_PAIRS = 400
LATENCY_SIZES = (10, 100, 1000)
SEQUENCE_WORDS = (8, 32, 96, 200)


QUICK_PAIRS = {"short": 600, "long": 100}  # what ``--quick`` keeps of each workload
QUICK_READ_PAIRS = 6000  # candidates ``--quick`` reads at least
QUICK_READ_RELEVANT = 1000  # ... and at least this many in lists with a relevant one, where long passages come from


def quick_groups(groups: Iterable[Any], max_pairs: int = QUICK_READ_PAIRS,
                 relevant_pairs: int = QUICK_READ_RELEVANT) -> list[Any]:
    """The first groups of ``groups`` (an iterator is read no further), the first whole whatever its size, holding
    ``max_pairs`` candidates, ``relevant_pairs`` of them in lists with a relevant candidate: what
    ``build_workloads(quick=True)`` keeps (~600 short pairs; 100 long ones, built only from lists with a relevant
    candidate, each passage starting at one of them, ~7 candidates long on WikiQA), so ``bench --quick`` reads the
    head of a large file only. Where relevant lists are rarer still, the long workload may hold fewer pairs than
    with the whole file read (every WikiQA file gives the same workloads)."""
    taken, pairs, relevant = [], 0, 0
    for g in groups:
        if taken and pairs >= max_pairs and relevant >= relevant_pairs:
            break
        taken.append(g)
        documents, labels = (g["documents"], g["labels"]) if isinstance(g, dict) else (g.documents, g.labels)
        pairs += len(documents)
        relevant += len(documents) if any(label > 0 for label in labels) else 0
    return taken


def build_workloads(groups: Sequence[Any], quick: bool = False, passage_words: int = PASSAGE_WORDS,
                    long_pairs: int = LONG_PAIRS, separator: str | None = None) -> dict[str, dict[str, Any]]:
    """``short``: every (query, candidate) pair; ``long``: (query, ~``passage_words``-word passage) pairs, each
    passage a candidate followed by the next candidates of its list (for WikiQA: the next sentences of the article).
    A passage is as relevant as the most relevant candidate it holds whole (a passage that goes on into the answer
    sentence contains the answer); queries whose passages hold no relevant candidate are left out of ``long``.

    ``groups`` are ``QueryGroup``s or dicts with query / documents / labels. Titled documents are read as the model
    reads them, ``"<title> <separator> <text>"`` (``separator``: the tokenizer's, e.g. ``Reranker.encoder``'s).
    ``quick`` keeps about 600 short and 100 long pairs (whole queries; a first query with more candidates than that
    is cut to them).
    """
    short_pairs, short_groups, long_, long_groups = [], [], [], []
    for g in groups:
        query, docs, labels = (g["query"], g["documents"], g["labels"]) if isinstance(g, dict) else \
            (g.query, g.documents, g.labels)
        docs = [_workload_text(d, separator) for d in docs]
        start = len(short_pairs)
        short_pairs += [(query, d) for d in docs]
        short_groups.append((start, len(short_pairs), list(labels)))
        passages, room = [], max(0, long_pairs - len(long_))
        for i in range(len(docs)):
            if len(passages) >= room:  # no more are kept: a 16k-candidate list cost 16k slices of itself
                break
            passage = _passage(docs[i:], labels[i:], passage_words)
            if passage is not None:
                passages.append(passage)
        if any(label > 0 for _, label in passages):
            start = len(long_)
            long_ += [(query, text) for text, _ in passages]
            long_groups.append((start, len(long_), [label for _, label in passages]))
    out = {"short": {"pairs": short_pairs, "groups": short_groups}}
    if long_:
        out["long"] = {"pairs": long_, "groups": long_groups}
    if quick:
        for name, limit in QUICK_PAIRS.items():
            if name in out:
                wl = out[name]
                kept_groups = [g for g in wl["groups"] if g[1] <= limit]
                if not kept_groups:  # the first query alone has more: its first ``limit`` candidates
                    start, _, labels = wl["groups"][0]
                    kept_groups = [(start, start + limit, labels[:limit])]
                wl["groups"], wl["pairs"] = kept_groups, wl["pairs"][: kept_groups[-1][1]]
    return out


def _workload_text(doc: Any, separator: str | None) -> str:
    """A document as the text every row scores (peers take strings only)."""
    if isinstance(doc, str):
        return doc
    if separator is None:
        raise ValueError("titled documents need separator= (the tokenizer's, e.g. Reranker(...).encoder.separator)")
    return document_text(doc, separator)


def _passage(docs: Sequence[str], labels: Sequence[float], passage_words: int) -> tuple[str, float] | None:
    """The ~``passage_words``-word passage that starts at ``docs[0]`` (cut at ``passage_words`` + 20 words) and its
    label: the highest of the candidates it holds whole; None when the list ends before ``passage_words``."""
    words: list[str] = []
    label = None
    for doc, y in zip(docs, labels):
        words += doc.split()
        if len(words) <= passage_words + 20:
            label = y if label is None else max(label, y)
        if len(words) >= passage_words:
            return " ".join(words[: passage_words + 20]), float(labels[0] if label is None else label)
    return None


def _evaluate(scores: np.ndarray, groups: Sequence[Group]):
    """``evaluate_rankings`` of ``scores`` (one ranking score per pair) for MAP, MRR@10 and NDCG@10."""
    from fastrank.evaluation.metrics import evaluate_rankings

    return evaluate_rankings([scores[s:e] for s, e, _ in groups], [np.asarray(y) for _, _, y in groups],
                             metrics=["map", "mrr@10", "ndcg@10"])


def quality(scores: np.ndarray, groups: Sequence[Group]) -> dict[str, float]:
    """MAP, MRR@10 and NDCG@10 of ``scores`` (one ranking score per pair) over a workload's labelled queries."""
    return _evaluate(scores, groups).metrics


def _row_quality(raw: np.ndarray, groups: Sequence[Group]) -> dict[str, Any]:
    """A row's quality from its raw logits (n, labels), ranked as every fastrank path ranks
    (``relevance_order``: the logit, or the last class's log-odds), with the queries it counts; a row whose scores
    cannot be evaluated (NaN logits, say an fp16 overflow) gets ``None`` and the reason, not the run's end."""
    from fastrank.errors import DataError
    from fastrank.reranker import relevance_order

    try:
        result = _evaluate(relevance_order(raw), groups)
    except DataError as exc:
        return {"quality": None, "quality_error": str(exc)}
    return {"quality": result.metrics, "queries": result.num_queries,
            "queries_skipped": result.num_skipped_no_positive + result.num_skipped_no_candidates}


def parity(reference: np.ndarray, scores: np.ndarray, groups: Sequence[Group]) -> dict[str, float]:
    """Parity of ``scores`` against ``reference`` logits ((n,) or (n, labels)): max |Δlogit| over every logit,
    Kendall τ (mean/min over queries), top-1 agreement, share of identical rankings, and the tie rate (share of
    within-query document pairs scored equal), the rankings those of ``relevance_order``."""
    from fastrank.export.verify import VerifyGroup, compare
    from fastrank.reranker import relevance_order

    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    scores = np.asarray(scores, dtype=np.float64).reshape(len(scores), -1)
    spans = [(s, e) for s, e, _ in groups if e - s >= 2]
    vgroups = [VerifyGroup("", [""] * (e - s), None) for s, e in spans]
    report = compare([reference[s:e] for s, e in spans], [scores[s:e] for s, e in spans], vgroups)
    ranking = relevance_order(scores)
    ties = total = 0
    for s, e in spans:
        x = ranking[s:e]
        equal = np.abs(x[:, None] - x[None, :]) <= 1e-7
        ties += int((equal.sum() - len(x)) // 2)
        total += len(x) * (len(x) - 1) // 2
    return {"max_abs_dlogit": report["max_abs_logit"], "kendall_tau_mean": report["kendall_tau_mean"],
            "kendall_tau_min": report["kendall_tau_min"], "top1_agreement": report["top1_agreement"],
            "rankings_identical": report["rankings_identical"], "tie_rate": ties / max(total, 1)}


def noise_band(reference: np.ndarray, delta: np.ndarray, groups: Sequence[Group], draws: int = 200,
               seed: int = 0) -> list[float]:
    """ΔNDCG@10 (5th, 50th and 95th percentile over ``draws``) when ``reference`` logits get Gaussian noise with the
    std of ``delta`` (a precision's Δlogit): what perturbations of that size alone do to a workload's near-ties, the
    yardstick for a precision's own ΔNDCG@10."""
    rng = np.random.default_rng(seed)
    base = quality(reference, groups)["ndcg@10"]
    moved = [quality(reference + rng.normal(0.0, float(np.std(delta)), len(reference)), groups)["ndcg@10"] - base
             for _ in range(draws)]
    return [round(float(np.percentile(moved, q)), 4) for q in (5, 50, 95)]


def near_ties(scores: np.ndarray, groups: Sequence[Group], gap: float = 0.01) -> float:
    """Share of neighbouring scores of a query (sorted) closer than ``gap``."""
    gaps = np.concatenate([np.diff(np.sort(scores[s:e])) for s, e, _ in groups])
    return round(float((gaps < gap).mean()), 3)


def latency_requests(pairs: Sequence[tuple[str, str]], sizes: Sequence[int] = LATENCY_SIZES):
    """One request per size: the workload's first query with ``size`` documents (cycling through the workload)."""
    query = pairs[0][0]
    docs = [d for _, d in pairs]
    return {n: [(query, docs[i % len(docs)]) for i in range(n)] for n in sizes}


def measure_latency(fn: LogitsFn, pairs: Sequence[tuple[str, str]], sizes: Sequence[int] = LATENCY_SIZES,
                    budget_s: float = 2.0, quick: bool = False) -> dict[str, dict[str, Any]]:
    """p50/p95/p99 of single requests of each size: repeated for about ``budget_s`` seconds each (at least 3,
    at most 200 runs), after one warm-up; ``quick``: 2 runs each."""
    out = {}
    for n, request in latency_requests(pairs, sizes).items():
        timing = measure(lambda request=request: fn(request), items=n, warmup=1, repeats=2 if quick else 3,
                         min_seconds=0.0 if quick else budget_s, max_repeats=200)
        out[str(n)] = timing.summary()
    return out


def flops_per_pair(config: dict[str, Any], tokens: float) -> float:
    """Multiply-add FLOPs of one BERT pair of ``tokens`` tokens (linear layers + attention scores/values)."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_token = 2 * (4 * h * h + 2 * h * inter) + 4 * tokens * h
    return layers * tokens * per_token


def matmul_rates(threads: int, size: int = 1024) -> dict[str, float]:
    """Measured GFLOP/s (GOP/s for int8) of a ``size``^3 matmul: fp32 and bf16 with torch, int8 (u8 x s8 -> s32)
    with onnxruntime's MatMulInteger, the kernel family dynamic int8 models run. Missing libraries are skipped."""
    out: dict[str, float] = {}
    ops = 2 * size**3
    try:
        import torch

        from fastrank.backends.torch_backend import torch_threads

        generator = torch.Generator().manual_seed(0)  # its own: the caller's global random stream is left alone
        with torch_threads(torch, threads):
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                a, b = (torch.randn(size, size, dtype=dtype, generator=generator) for _ in range(2))
                out[name] = round(ops / measure(lambda a=a, b=b: a @ b, warmup=2, repeats=10).median / 1e9, 1)
    except ImportError:
        pass
    try:
        import onnxruntime as ort
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["a", "b"], ["c"])], "mm",
            [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size]),
             helper.make_tensor_value_info("b", TensorProto.INT8, [size, size])],
            [helper.make_tensor_value_info("c", TensorProto.INT32, [size, size])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(0)
        feed = {"a": rng.integers(0, 255, (size, size), dtype=np.uint8),
                "b": rng.integers(-127, 127, (size, size), dtype=np.int8)}
        out["int8"] = round(ops / measure(lambda: session.run(None, feed), warmup=2, repeats=10).median / 1e9, 1)
    except ImportError:
        pass
    return out


def peak_for(precision: str, rates: dict[str, float]) -> float | None:
    """The measured matmul rate a row's precision is compared with (bf16-mixed: bf16's; unknown: fp32's)."""
    return rates.get(precision.removesuffix("-mixed")) or rates.get("fp32")


def sweep(make_fn: Callable[[int, int | None], LogitsFn], pairs: Sequence[tuple[str, str]],
          settings: Sequence[tuple[int, int | None]], repeats: int = 2) -> list[dict[str, Any]]:
    """Throughput of ``make_fn(batch_size, max_tokens)`` over ``pairs`` for each setting (warmed up on every tenth
    pair, which has the setting's batch shapes)."""
    out = []
    for batch_size, max_tokens in settings:
        fn = make_fn(batch_size, max_tokens)
        fn(pairs[::10])
        timing = measure(lambda fn=fn: fn(pairs), items=len(pairs), warmup=0, repeats=repeats)
        out.append({"batch_size": batch_size, "max_tokens": max_tokens, "timing": timing.summary()})
    return out


def sequence_workloads(long_pairs: Sequence[tuple[str, str]], words: Sequence[int] = SEQUENCE_WORDS,
                       n: int = 128) -> dict[int, list[tuple[str, str]]]:
    """Pairs whose documents are cut to ``w`` words, for a throughput-vs-sequence-length sweep."""
    base = list(long_pairs[:n])
    return {w: [(q, " ".join(d.split()[:w])) for q, d in base] for w in words}


def run_rows(rows: dict[str, tuple[dict[str, Any], LogitsFn]], workloads: dict[str, dict[str, Any]], *,
             threads: int, quick: bool, latency: bool = True, latency_sizes: Sequence[int] = LATENCY_SIZES,
             repeats: int | None = None, progress: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Throughput and quality of every row on every workload, then single-request latency on the short workload.

    Each row is warmed up on every tenth pair (all the workload's shapes, a tenth of the time), then timed
    ``repeats`` times (default 2, ``quick`` 1); the first timed run's logits are kept for quality and parity.
    Timed runs go round-robin over the rows (row 1, row 2, ..., row 1, row 2, ...), so drift on a shared machine
    falls on every row alike instead of on whichever rows ran last.
    Latency covers every size below 1000 for every row; requests of 1000 or more documents are timed only for each
    library's fastest row (by short-workload pairs/s), which is what a reader compares there.
    """
    repeats = repeats or (1 if quick else 2)
    records = []
    for wl_name, wl in workloads.items():
        pairs = wl["pairs"]
        for row, (_, fn) in rows.items():
            fn(pairs[::10])
        timings, kept = measure_round_robin(
            {row: (lambda fn=fn: fn(pairs)) for row, (_, fn) in rows.items()}, items=len(pairs), repeats=repeats,
            before=(lambda row, run: progress(f"{wl_name}: {row} (run {run + 1}/{repeats})")) if progress else None)
        for row, (desc, _) in rows.items():
            logits = np.asarray(kept[row], dtype=np.float64).reshape(len(pairs), -1)
            records.append({"kind": "throughput", "workload": wl_name, "row": row, **desc, "threads": threads,
                            "quick": quick, "pairs": len(pairs), "timing": timings[row].summary(),
                            **_row_quality(logits, wl["groups"]), "logits": logits.tolist()})
    if latency and "short" in workloads:
        short = [r for r in records if r["workload"] == "short"]
        fastest: dict[str, str] = {}
        for r in sorted(short, key=lambda r: -r["timing"]["items_per_s"]):
            fastest.setdefault(r.get("library", r["row"]), r["row"])
        for r in short:
            sizes = [n for n in latency_sizes if n < 1000 or fastest.get(r.get("library", r["row"])) == r["row"]]
            if progress:
                progress(f"latency: {r['row']} ({', '.join(map(str, sizes))} documents)")
            r["latency"] = measure_latency(rows[r["row"]][1], workloads["short"]["pairs"], sizes, quick=quick)
    return records


def add_parity_and_peak(records: list[dict[str, Any]], reference_row: str, workloads: dict[str, dict[str, Any]],
                        flops: dict[str, float], rates: dict[str, float]) -> None:
    """Fill parity against ``reference_row`` and % of matmul peak into throughput records (drops their logits)."""
    refs = {r["workload"]: np.asarray(r["logits"]) for r in records
            if r.get("kind") == "throughput" and r["row"] == reference_row}
    for r in records:
        if r.get("kind") != "throughput":
            continue
        logits = np.asarray(r.pop("logits"))
        if r["workload"] in refs:
            r["parity"] = parity(refs[r["workload"]], logits, workloads[r["workload"]]["groups"])
        r["gflop_per_pair"] = round(flops[r["workload"]] / 1e9, 3)
        peak = peak_for(r.get("precision", "fp32"), rates)
        if peak:
            r["pct_of_peak"] = round(100 * r["timing"]["items_per_s"] * flops[r["workload"]] / 1e9 / peak, 1)


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def environment(threads: int) -> dict[str, Any]:
    """Machine and library versions, recorded with every result."""
    import importlib.metadata as md

    versions = {}
    for package in ("fastrank", "torch", "transformers", "onnxruntime", "sentence-transformers", "flashrank"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            pass
    import os

    return {"cpu": cpu_name(), "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "versions": versions, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """One line per throughput record: speed, latency, quality and parity side by side; "-" where a row has no
    value. Below the table: the reason a row has no quality (``quality_error``), and how many queries the quality
    counts per workload (``--quick`` samples fewer than ``fastrank eval`` counts)."""
    lines = ["| workload | row | precision | pairs/s | p50/p99 ms @10 | @100 | @1000 | MAP | MRR@10 | NDCG@10 | "
             "max dlogit | tau min | top-1 | % matmul rate |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    notes = []
    for r in records:
        if r.get("kind") != "throughput":
            continue
        lat = r.get("latency", {})

        def cell(n: str, lat=lat) -> str:
            t = lat.get(n)
            return f"{t['p50_s'] * 1000:.0f}/{t['p99_s'] * 1000:.0f}" if t else "-"

        p, q = r.get("parity", {}), r["quality"] or {}
        if r.get("quality_error"):
            notes.append(f"{r['workload']} {r['row']}: no quality: {r['quality_error']}")
        lines.append(
            f"| {r['workload']} | {r['row']} | {r.get('precision', '')} | {r['timing']['items_per_s']:.1f} | "
            f"{cell('10')} | {cell('100')} | {cell('1000')} | {_number(q, 'map', '.4f')} | "
            f"{_number(q, 'mrr@10', '.4f')} | {_number(q, 'ndcg@10', '.4f')} | {_number(p, 'max_abs_dlogit', '.1e')} | "
            f"{_number(p, 'kendall_tau_min', '.3f')} | {_number(p, 'top1_agreement', '.3f')} | "
            f"{r.get('pct_of_peak', '-')} |")
    counted = sorted({(r["workload"], r["queries"]) for r in records
                      if r.get("kind") == "throughput" and r.get("queries") is not None})
    if counted:  # --quick keeps a sample: its quality is over fewer queries than fastrank eval's
        notes.append("quality over " + ", ".join(f"{n} {workload} queries" for workload, n in counted))
    return "\n".join(lines + ([""] + notes if notes else []))


def _number(values: dict[str, Any], key: str, spec: str) -> str:
    value = values.get(key)
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def write_jsonl(path: str | Path, records: Sequence[dict[str, Any]]) -> Path:
    """Append the run's records to ``path`` (``fastrank.io.append_jsonl``: one write, after closing a line an
    earlier run left cut short)."""
    from fastrank.io import append_jsonl

    return append_jsonl(path, records)


def _warn_if_other_source(model: str | Path, artifact: str | Path, manifest: dict[str, Any],
                          progress: Callable[[str], None] | None) -> None:
    """Warn when ``artifact``'s manifest says it was exported from other checkpoint files than ``model``'s: its
    parity row would then measure two models' difference, not the export's."""
    from fastrank.export.manifest import source_sha256

    recorded = manifest.get("source_checkpoint_sha256")
    if not recorded or not str(manifest.get("source_hashed", "")).startswith("checkpoint files") \
            or not Path(model).is_dir():
        return
    sha, _ = source_sha256(model)
    if sha != recorded:
        text = (f"warning: artifact {artifact} was exported from other checkpoint files than {model} (source "
                f"{manifest.get('source')!r}, sha256 {recorded[:12]} vs {sha[:12]}): its parity numbers compare two "
                "models; bench it against the checkpoint it came from")
        (progress or logger.warning)(text)


def _reranker_row(reranker) -> tuple[dict[str, Any], LogitsFn]:
    return {"library": "fastrank", **reranker.describe()}, reranker.every_logit  # every pair timed, repeats too


def _sweeps(name: str, reranker, workloads: dict[str, dict[str, Any]], quick: bool) -> list[dict[str, Any]]:
    """Batch-size / token-budget and sequence-length sweeps of one Reranker (its settings restored after)."""
    saved = reranker.batch_size, reranker.max_tokens

    def make(batch_size: int, max_tokens: int | None) -> LogitsFn:
        def fn(pairs):
            reranker.batch_size, reranker.max_tokens = batch_size, max_tokens
            return reranker.every_logit(pairs)
        return fn

    short = workloads["short"]["pairs"][: 256 if quick else 512]
    settings = [(8, None), (32, None)] if quick else \
        [(1, None), (8, None), (32, None), (128, None), (32, 2048), (512, 4096)]
    records = []
    try:
        for point in sweep(make, short, settings, repeats=1 if quick else 2):
            records.append({"kind": "sweep-batch", "row": name, "workload": "short", **point})
        if "long" in workloads:
            seqs = sequence_workloads(workloads["long"]["pairs"], (8, 96) if quick else SEQUENCE_WORDS,
                                      32 if quick else 128)
            for words, pairs in seqs.items():
                tokens = float(reranker.encoder.encode(pairs).lengths.mean())
                (point,) = sweep(make, pairs, [saved], repeats=1 if quick else 2)
                records.append({"kind": "sweep-seq", "row": name, "document_words": words,
                                "mean_tokens": round(tokens, 1), **point})
    finally:
        reranker.batch_size, reranker.max_tokens = saved
    return records


def parse_backend_row(spec: str) -> tuple[str, dict[str, Any]]:
    """``"torch-cuda:bf16"`` -> ``("torch-cuda", {"precision": "bf16"})``: a backend run on the checkpoint itself,
    optionally at a precision (``fastrank bench --backend``)."""
    name, _, precision = spec.partition(":")
    if not name:
        raise ValueError(f"a backend row is NAME or NAME:PRECISION (e.g. torch-cuda:fp16), got {spec!r}")
    return name, ({"precision": precision} if precision else {})


def benchmark_model(
    model: str | Path,
    groups: Sequence[Any],
    artifacts: Sequence[str | Path] = (),
    *,
    backends: Sequence[str] = (),
    extra_rows: dict[str, tuple[dict[str, Any], LogitsFn]] | None = None,
    external_records: Callable[[], list[dict[str, Any]]] | None = None,
    quick: bool = False,
    threads: int = 2,
    latency: bool = True,
    sweeps: bool | Sequence[str] = True,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Benchmark checkpoint ``model`` (PyTorch fp32, the parity reference) and its exported ``artifacts`` on
    ``groups`` (grouped query/documents/labels), plus ``backends`` run on the checkpoint itself (``NAME[:PRECISION]``,
    e.g. ``torch:bf16`` on a CPU, ``torch-cuda:fp16`` on a GPU), ``extra_rows`` (e.g. peers) and records computed
    elsewhere (``external_records``, e.g. a peer virtualenv). Returns JSON-ready records (see ``markdown_table``).

    ``sweeps``: True sweeps batch size and sequence length for every artifact (the reference when there is none);
    a list of rung names (e.g. ``["fp32", "int8"]``) sweeps only the artifacts shipped at those rungs."""
    from fastrank.reranker import Reranker

    reference = Reranker(model, backend="torch", num_threads=threads)
    workloads = build_workloads(groups, quick, separator=reference.encoder.separator)
    rerankers = {"fastrank torch fp32": reference}
    rungs = {"fastrank torch fp32": "fp32"}
    for spec in backends:
        name, options = parse_backend_row(spec)
        rr = Reranker(model, backend=name, num_threads=threads, backend_options=options)
        rung = options.get("precision") or rr.describe().get("precision") or "fp32"
        rerankers[f"fastrank {name} {rung}"] = rr
        rungs[f"fastrank {name} {rung}"] = rung
    if len({Path(p).resolve() for p in artifacts}) < len(artifacts):
        raise ValueError(f"an artifact is given twice: {[str(p) for p in artifacts]}")
    for path in artifacts:
        rr = Reranker(path, num_threads=threads)
        _warn_if_other_source(model, path, rr.manifest or {}, progress)
        info = rr.describe()
        rung = (rr.manifest or {}).get("rung") or info.get("precision") or "fp32"
        name = f"fastrank {info['backend']} {rung}"
        if name in rerankers:  # two artifacts at one rung (say O0 and O3): one row each, told apart by directory
            name = f"{name} ({path})"
        rerankers[name] = rr
        rungs[name] = rung
    rows = {name: _reranker_row(rr) for name, rr in rerankers.items()}
    rows.update(extra_rows or {})
    records = run_rows(rows, workloads, threads=threads, quick=quick, latency=latency,
                       latency_sizes=(10, 100) if quick else LATENCY_SIZES, progress=progress)
    if external_records is not None:
        records += external_records()
    config = json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))
    flops = {name: flops_per_pair(config, float(reference.encoder.encode(wl["pairs"]).lengths.mean()))
             for name, wl in workloads.items()}
    rates = matmul_rates(threads)
    add_parity_and_peak(records, "fastrank torch fp32", workloads, flops, rates)
    if sweeps:
        sweep_rows = [n for n in rerankers if n != "fastrank torch fp32"] or ["fastrank torch fp32"]
        if not isinstance(sweeps, bool):
            sweep_rows = [n for n in sweep_rows if rungs[n] in sweeps]
        for name in sweep_rows:
            if progress:
                progress(f"sweeps: {name}")
            records += _sweeps(name, rerankers[name], workloads, quick)
    env = environment(threads)
    for r in records:
        r.setdefault("environment", env)
        r.setdefault("matmul_gflops", rates)
    return records
