"""Runtime batching defaults, A/B in one process: the same artifact and pairs under alternating settings.

    python -m bench runtime-ab [--model-dir runs/bench-artifacts] [--repeats 2]

Settings, all batch size 32:
- *before*: no token budget, padded to a multiple of 8 (the defaults until 2026-11-29);
- *budget*: at most 2048 padded tokens per batch;
- *now*: the budget, and CPU backends pad to their longest pair only (``Backend.pad_multiple`` = 1).

They run interleaved: each repeat runs every setting once, so drift on a shared machine hits them alike. The median
of the repeats is reported, and the ratio to *before* is the number to read. Records go to
bench/results/runtime_ab.jsonl; ``python -m bench report`` puts them in RESULTS.md.
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.common import ROOT, WIKIQA, append_record, require_shared_data

SETTINGS = {"before": (None, 8), "budget": (2048, 8), "now": (2048, 1)}  # (max_tokens, pad multiple)


def run(artifact: str, repeats: int, threads: int = 2) -> list[dict]:
    from fastrank.benchmark import build_workloads
    from fastrank.data import read_groups
    from fastrank.reranker import Reranker
    from fastrank.timing import measure

    workloads = build_workloads(read_groups(str(WIKIQA / "test.jsonl")))
    reranker = Reranker(artifact, num_threads=threads)
    out = []
    for name, wl in workloads.items():
        pairs = wl["pairs"]
        reranker.logits(pairs[::10])
        seconds: dict[str, list[float]] = {s: [] for s in SETTINGS}
        for _ in range(repeats):
            for setting, (max_tokens, multiple) in SETTINGS.items():
                reranker.max_tokens, reranker.backend.pad_multiple = max_tokens, multiple
                seconds[setting] += measure(lambda: reranker.logits(pairs), items=len(pairs), warmup=0,
                                            repeats=1).seconds
        rates = {s: round(len(pairs) / float(np.median(v)), 1) for s, v in seconds.items()}
        out.append({"experiment": "runtime-ab", "artifact": artifact, "workload": name, "pairs": len(pairs),
                    "repeats": repeats, "pairs_per_s": rates, "seconds": seconds,
                    "ratio_vs_before": {s: round(r / rates["before"], 3) for s, r in rates.items()}})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench runtime-ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", default=str(ROOT / "runs" / "bench-artifacts"),
                        help="Holds onnx-fp32-O3 and onnx-int8 (written by python -m bench run).")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    require_shared_data()
    for sub in ("onnx-fp32-O3", "onnx-int8"):
        for record in run(f"{args.model_dir}/{sub}", args.repeats):
            append_record("runtime_ab", record)
            print(record["workload"], sub, record["pairs_per_s"], record["ratio_vs_before"], flush=True)


if __name__ == "__main__":
    main()
