"""The latency/quality bench: every backend x precision of one model and its peers, on the same data, in one run.

    python -m bench run --model runs/wikiqa [--data ../shared/data/wikiqa/test.jsonl] [--quick] [--threads 2]

Exports (and verifies) the model's fp32 ONNX (O3), int8 ONNX and bf16 torch artifacts into runs/bench-artifacts/
(re-used when present), then measures with ``fastrank.benchmark.benchmark_model`` — the engine behind
``fastrank bench`` — the PyTorch fp32 reference, each artifact, sentence-transformers' CrossEncoder (torch, in
this process) and, from the peer virtualenv (bench/peers.py), sentence-transformers' onnx / O3 / int8 backends and
FlashRank on fastrank's fp32 ONNX. ``--no-peers`` drops both kinds of peer rows (and the need for
sentence-transformers); without it a missing sentence-transformers stops the run before anything is exported.
Full runs append to bench/results/run.jsonl and draw bench/plots/*.png; ``--quick`` (a smoke test, numbers not
reported) appends to bench/results/run-quick.jsonl. Then ``python -m bench report`` regenerates RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, WIKIQA, RESULTS_DIR, require_shared_data
from bench.peers import NOTE

PLOTS = ROOT / "bench" / "plots"


def export_artifacts(model_dir: str, out_root: Path, threads: int) -> dict[str, Path]:
    """fp32 ONNX (O3), int8 ONNX (plain, and with the early FFN outputs fp32), bf16 torch — each verified by export_model (on 60 WikiQA dev queries) before
    it is written; an artifact already in ``out_root`` is re-used."""
    from fastrank.errors import ParityError
    from fastrank.export import export_model

    verify = [(g["query"], g["documents"], g["labels"]) for g in
              (json.loads(x) for x in (WIKIQA / "dev.jsonl").read_text(encoding="utf-8").splitlines()[:60])]
    out = {}
    for name, precision, optimize in (("onnx fp32 O3", "fp32", "O3"), ("onnx int8", "int8", "O2"),
                                      ("onnx int8 early-ffn-fp32", "int8-early-ffn-out-fp32", "O3"),
                                      ("torch bf16", "bf16", "O0")):
        target = out_root / name.replace(" ", "-")
        if not (target / "fastrank.json").is_file():
            try:
                export_model(model_dir, target, precision=precision, optimize=optimize, verify_pairs=verify,
                             num_threads=threads)
            except ParityError as exc:  # the export refused: report it, bench the rest
                print(f"{name}: export failed verification, not benchmarked: {exc}")
                continue
        out[name] = target
    return out


def peer_records(model_dir: str, data: Path, threads: int, quick: bool, onnx_artifact: Path | None):
    """Records of bench/peers.py run in .venv-peers (none, with a note, when that venv is absent)."""
    python = ROOT / ".venv-peers" / "bin" / "python"
    if not python.is_file():
        print(f"peer venv {python.parent.parent} not found: sentence-transformers ONNX and FlashRank rows skipped "
              "(see bench/peers.py for the one-line set-up)")
        return []
    cmd = [str(python), "-m", "bench.peers", "--model", str(Path(model_dir).resolve()), "--threads", str(threads),
           "--data", str(data)]
    if onnx_artifact is not None:
        cmd += ["--onnx-artifact", str(onnx_artifact)]
    proc = subprocess.run(cmd + (["--quick"] if quick else []), cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}, check=False)
    if proc.returncode != 0:
        print(f"peer run failed, rows skipped:\n{proc.stderr[-2000:]}")
        return []
    for line in proc.stderr.splitlines():
        if line.startswith(NOTE):  # e.g. a peer row skipped for a missing library
            print(line)
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def require_peers() -> None:
    """Raise MissingDependency (naming the extra) when sentence-transformers is missing, before any export or
    measurement spends minutes on a run that could not finish."""
    from fastrank.errors import require

    require("sentence_transformers", "dev", "python -m bench run without --no-peers")


def in_process_peer_rows(model_dir: str, threads: int, peers: bool) -> dict[str, Any]:
    """sentence-transformers' CrossEncoder (torch) in this process; none with peers off, which then need no
    sentence-transformers."""
    if not peers:
        return {}
    from fastrank.cli.bench import sentence_transformers_row

    return sentence_transformers_row(model_dir, threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Trained cross-encoder checkpoint directory.")
    parser.add_argument("--data", default=str(WIKIQA / "test.jsonl"), help="Grouped JSONL with labels.")
    parser.add_argument("--quick", action="store_true", help="Small workloads, one timed run (smoke test).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-peers", action="store_true",
                        help="Skip the peer rows: sentence-transformers in this process and the peer virtualenv's.")
    args = parser.parse_args(argv)
    if not args.no_peers:
        require_peers()
    require_shared_data()
    from fastrank.benchmark import benchmark_model, markdown_table, write_jsonl
    from fastrank.data import read_groups

    started = time.perf_counter()
    artifacts = export_artifacts(args.model, ROOT / "runs" / "bench-artifacts", args.threads)
    records = benchmark_model(
        args.model, read_groups(args.data), list(artifacts.values()),
        extra_rows=in_process_peer_rows(args.model, args.threads, not args.no_peers),
        external_records=None if args.no_peers else lambda: peer_records(
            args.model, Path(args.data), args.threads, args.quick, artifacts.get("onnx fp32 O3")),
        quick=args.quick, threads=args.threads, sweeps=["fp32", "int8"],
        progress=lambda text: print(f"bench: {text}", flush=True))
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    command = "python -m bench run " + " ".join(argv if argv is not None else sys.argv[2:])
    wall = round(time.perf_counter() - started, 1)
    for r in records:
        r.update({"run_id": run_id, "command": command, "model": args.model, "data": args.data, "run_seconds": wall})
    write_jsonl(RESULTS_DIR / ("run-quick.jsonl" if args.quick else "run.jsonl"), records)
    if not args.quick:
        from fastrank.plots import plot_records

        for path in plot_records(records, PLOTS):
            print(f"wrote {path.relative_to(ROOT)}")
    print(markdown_table(records))
    print(f"bench run took {wall} s")


