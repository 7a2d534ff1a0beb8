"""Runtime defaults, A/B in one process: the same artifact and pairs under alternating settings.

    python -m bench runtime-ab [--experiment padding|sessions|rewrite|batch-quality|torch-precision]
                               [--model-dir runs/bench-artifacts] [--baseline-dir runs/old-artifacts] [--repeats 3]
                               [--model runs/wikiqa]

``padding`` (one session, batch size 32):
- *before*: no token budget, padded to a multiple of 8 (the defaults until 2026-11-29);
- *budget*: at most 2048 padded tokens per batch;
- *now*: the budget, and CPU backends pad to their longest pair only (``Backend.pad_multiple`` = 1).

``sessions`` (all with the budget and longest-pair padding):
- *one session*: one onnxruntime session with 2 intra-op threads, batch 32 (``sessions=1``);
- *2 sessions, batch 32*: two one-thread sessions scoring different batches at the same time;
- *2 sessions, batch 8*: the same with batches of 8 (the default for int8 models since 2026-11-29:
  ``sessions="auto"``);
plus the p50 latency of one 10-document request (a WikiQA test query's first 10 candidates, cycled).

``rewrite`` (each artifact with its default sessions and batch size):
- *before*: the artifact as exported until 2026-11-29 (fused SkipLayerNormalization; int8 activations scaled per
  batch), kept in ``--baseline-dir``;
- *now*: the same model exported now (SkipLayerNormalization unfused; int8 with attention unfused and every
  projection's input scaled per row, ``fastrank.export.rewrite``).

``batch-quality``: MAP of each artifact on WikiQA test and dev at batch sizes 8, 16, 32 and 64 (2 sessions where
its default has 2). int8 activations scaled per batch (the export until 2026-11-29) make a pair's score depend on
which pairs share its batch; scaled per row, as now, they do not, like fp32's.

``torch-precision``: the torch backend on the checkpoint ``--model`` (batch 32, the token budget) in ``fp32``,
``bf16`` (a bf16 copy of the weights) and ``bf16-mixed`` (fp32 weights under bf16 autocast), with each one's
NDCG@10 / MAP on the workload and largest |Δlogit| against fp32; beside them, the ΔNDCG@10 that Gaussian noise
of the same size as each precision's Δlogit gives fp32's logits (200 draws), and the share of near-tied neighbours
(sorted scores of a query closer than 0.01), to tell a precision's error from the workload's tie sensitivity.

Settings run interleaved: each repeat runs every setting once, so drift on a shared machine hits them alike. The
median of the repeats is reported, and the ratio to the first setting is the number to read. Records go to
bench/results/runtime_ab.jsonl; ``python -m bench report`` puts them in RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.common import ROOT, WIKIQA, append_record, require_shared_data

PADDING = {"before": (None, 8), "budget": (2048, 8), "now": (2048, 1)}  # (max_tokens, pad multiple)
TORCH_PRECISIONS = ("fp32", "bf16", "bf16-mixed")
SESSIONS = {"one session": (1, 32), "2 sessions, batch 32": (2, 32), "2 sessions, batch 8": (2, 8)}  # (sessions, batch)


def _settings(experiment: str, artifact: str, threads: int, baseline: str | None = None) -> dict[str, Callable[[list], Any]]:
    """Setting name -> a function scoring a list of pairs under that setting."""
    from fastrank.reranker import Reranker

    if experiment == "rewrite":
        return {"before": Reranker(baseline, num_threads=threads).every_logit,
                "now": Reranker(artifact, num_threads=threads).every_logit}

    if experiment == "torch-precision":
        return {p: Reranker(artifact, backend="torch", num_threads=threads, batch_size=32,
                            backend_options={"precision": p}).every_logit for p in TORCH_PRECISIONS}
    if experiment == "sessions":
        rerankers = {name: Reranker(artifact, num_threads=threads, sessions=n, batch_size=b)
                     for name, (n, b) in SESSIONS.items()}
        return {name: r.every_logit for name, r in rerankers.items()}
    reranker = Reranker(artifact, num_threads=threads, sessions=1, batch_size=32)

    def setting(max_tokens, multiple):
        def logits(pairs):
            reranker.max_tokens, reranker.backend.pad_multiple = max_tokens, multiple
            return reranker.every_logit(pairs)
        return logits

    return {name: setting(*values) for name, values in PADDING.items()}


def run(artifact: str, repeats: int, experiment: str = "padding", threads: int = 2,
        baseline: str | None = None) -> list[dict]:
    from fastrank.benchmark import build_workloads, near_ties, noise_band, quality
    from fastrank.data import read_groups
    from fastrank.timing import measure_round_robin

    groups = read_groups(str(WIKIQA / "test.jsonl"))
    workloads = build_workloads(groups)
    settings = _settings(experiment, artifact, threads, baseline)
    first = next(iter(settings))
    out = []
    for name, wl in workloads.items():
        pairs = wl["pairs"]
        for fn in settings.values():
            fn(pairs[::10])
        timings, logits = measure_round_robin({s: (lambda fn=fn: fn(pairs)) for s, fn in settings.items()},
                                              items=len(pairs), repeats=repeats)
        seconds = {s: t.seconds for s, t in timings.items()}
        rates = {s: round(len(pairs) / t.median, 1) for s, t in timings.items()}
        record = {"experiment": "runtime-ab", "ab": experiment, "artifact": artifact, "workload": name,
                  "pairs": len(pairs), "repeats": repeats, "pairs_per_s": rates, "seconds": seconds,
                  "ratio_vs_first": {s: round(r / rates[first], 3) for s, r in rates.items()}}
        if experiment == "torch-precision":
            record["quality"] = {s: {k: round(v, 4) for k, v in quality(scores[:, 0], wl["groups"]).items()}
                                 for s, scores in logits.items()}
            record["max_abs_dlogit_vs_first"] = {s: float(np.abs(scores - logits[first]).max())
                                                 for s, scores in logits.items()}
            record["noise_delta_ndcg@10"] = {s: noise_band(logits[first][:, 0], scores[:, 0] - logits[first][:, 0],
                                                           wl["groups"]) for s, scores in logits.items() if s != first}
            record["near_ties"] = near_ties(logits[first][:, 0], wl["groups"])
            record["queries"] = len(wl["groups"])
        out.append(record)
    if experiment == "sessions":
        out[0]["latency_10_docs_p50_ms"] = _latency(settings, groups, repeats)
    return out


def _latency(settings: dict[str, Callable[[list], Any]], groups, repeats: int, requests: int = 30) -> dict[str, float]:
    """p50 of one 10-document request per setting, settings interleaved request by request."""
    reqs = [[(g.query, d) for d in g.documents[:10]] for g in groups if len(g.documents) >= 10]
    times: dict[str, list[float]] = {s: [] for s in settings}
    for i in range(requests * repeats):
        for setting, fn in settings.items():
            start = time.perf_counter()
            fn(reqs[i % len(reqs)])
            times[setting].append(time.perf_counter() - start)
    return {s: round(1000 * float(np.median(v)), 1) for s, v in times.items()}


def batch_quality(artifact: str, batch_sizes=(8, 16, 32, 64), threads: int = 2) -> list[dict]:
    """MAP on WikiQA test and dev at each batch size (the artifact's default sessions)."""
    from fastrank.benchmark import build_workloads, quality
    from fastrank.data import read_groups
    from fastrank.reranker import Reranker

    out = []
    for split in ("test", "dev"):
        wl = build_workloads(read_groups(str(WIKIQA / f"{split}.jsonl")))["short"]
        maps = {}
        for size in batch_sizes:
            reranker = Reranker(artifact, num_threads=threads, batch_size=size)
            maps[str(size)] = round(quality(reranker.logits(wl["pairs"])[:, 0], wl["groups"])["map"], 4)
        out.append({"experiment": "runtime-ab", "ab": "batch-quality", "artifact": artifact, "split": split,
                    "sessions": len(reranker.backend.scorers()), "map_by_batch_size": maps,
                    "activation_scales": (reranker.manifest.get("quantization") or {}).get("activation_scales")})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench runtime-ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", choices=("padding", "sessions", "rewrite", "batch-quality", "torch-precision"),
                        default="sessions")
    parser.add_argument("--model-dir", default=str(ROOT / "runs" / "bench-artifacts"),
                        help="Holds onnx-fp32-O3 and onnx-int8 (written by python -m bench run).")
    parser.add_argument("--baseline-dir", default=str(ROOT / "runs" / "old-artifacts"),
                        help="rewrite: the same artifacts as exported before (fused SkipLayerNorm, per-batch int8).")
    parser.add_argument("--model", default=str(ROOT / "runs" / "wikiqa"),
                        help="torch-precision: the checkpoint (written by fastrank train).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    require_shared_data()
    if args.experiment == "torch-precision":
        for record in run(args.model, args.repeats, args.experiment):
            append_record("runtime_ab", record)
            print(record["workload"], record["pairs_per_s"], record["ratio_vs_first"], record["quality"],
                  record["max_abs_dlogit_vs_first"], flush=True)
        return
    for sub in ("onnx-fp32-O3", "onnx-int8"):
        if args.experiment == "batch-quality":
            for record in batch_quality(f"{args.model_dir}/{sub}"):
                append_record("runtime_ab", record)
                print(sub, record["split"], record["map_by_batch_size"], flush=True)
            continue
        for record in run(f"{args.model_dir}/{sub}", args.repeats, args.experiment,
                          baseline=f"{args.baseline_dir}/{sub}"):
            append_record("runtime_ab", record)
            print(record["workload"], sub, record["pairs_per_s"], record["ratio_vs_first"],
                  record.get("latency_10_docs_p50_ms", ""), flush=True)


if __name__ == "__main__":
    main()
