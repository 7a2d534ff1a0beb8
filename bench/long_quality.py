"""Quality and parity of fastrank's rows on the long-passage workload, without timing: ``python -m bench
long-quality``.

The long workload labels a passage by the best candidate it holds whole (``fastrank.benchmark.build_workloads``,
since 2026-12-03; before, by its first candidate only, which called a passage that goes on into the answer sentence
irrelevant). This re-measures the quality columns of ``python -m bench run``'s fastrank rows (the same artifacts,
``bench.run.export_artifacts``) under those labels, without the timed runs' cost mattering: its speed numbers are
not recorded. Appends to bench/results/long-quality.jsonl; ``python -m bench report`` shows it.
"""

from __future__ import annotations

import argparse
import time

from bench.common import ROOT, WIKIQA, append_record, require_shared_data


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench long-quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/wikiqa", help="Checkpoint (the fp32 reference).")
    parser.add_argument("--data", default=str(WIKIQA / "test.jsonl"), help="Grouped JSONL with labels.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    require_shared_data()
    from bench.run import export_artifacts
    from fastrank.benchmark import benchmark_model
    from fastrank.data import read_groups

    artifacts = export_artifacts(args.model, ROOT / "runs" / "bench-artifacts", args.threads)
    records = benchmark_model(args.model, read_groups(args.data), list(artifacts.values()), threads=args.threads,
                              latency=False, sweeps=False)
    command = "python -m bench long-quality" + (f" --model {args.model}" if args.model != "runs/wikiqa" else "")
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    for r in records:
        if r.get("kind") == "throughput":
            append_record("long-quality", {
                "command": command, "run_id": run_id, "model": args.model, "data": args.data,
                "workload": r["workload"], "row": r["row"], "pairs": r["pairs"], "queries": r.get("queries"),
                "quality": r["quality"], "parity": r.get("parity", {})})
            print(r["workload"], r["row"], r["quality"])


if __name__ == "__main__":
    main()
