"""Speed and quality of every backend x precision and of sentence-transformers, in one run, on one model.

    python -m bench speed --model runs/wikiqa [--quick] [--threads 2]

Workloads (from ../shared/data/wikiqa/test.jsonl): ``short`` = all 2,351 (query, candidate sentence) pairs;
``long`` = 400 (query, ~180-word passage) pairs, each passage being a candidate followed by the next sentences of
its article. Throughput is end to end (tokenization included) over the whole workload, after one warm-up run,
median of repeated runs with a bootstrap 95% interval. Quality (MAP, NDCG@10) is computed on each workload's
labels; parity is against fastrank's PyTorch fp32 scores. Records go to bench/results/speed.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, WIKIQA, append_record, require_shared_data

PASSAGE_WORDS = 180
LONG_PAIRS = 400


def workloads(quick: bool) -> dict[str, dict[str, Any]]:
    """{"short"|"long": {"pairs": [...], "groups": [(start, end, labels)]}} built from WikiQA test."""
    groups = [json.loads(line) for line in (WIKIQA / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    short_pairs, short_groups, long_pairs, long_groups = [], [], [], []
    for g in groups:
        start = len(short_pairs)
        short_pairs += [(g["query"], d) for d in g["documents"]]
        short_groups.append((start, len(short_pairs), g["labels"]))
        start, labels = len(long_pairs), []
        for i, label in enumerate(g["labels"]):
            words: list[str] = []
            for sentence in g["documents"][i:]:
                words += sentence.split()
                if len(words) >= PASSAGE_WORDS:
                    break
            if len(words) >= PASSAGE_WORDS and len(long_pairs) < LONG_PAIRS:
                long_pairs.append((g["query"], " ".join(words[:PASSAGE_WORDS + 20])))
                labels.append(label)
        if labels:
            long_groups.append((start, len(long_pairs), labels))
    if quick:
        short_groups = [g for g in short_groups if g[1] <= 600]
        short_pairs = short_pairs[: short_groups[-1][1]]
        long_groups = [g for g in long_groups if g[1] <= 100]
        long_pairs = long_pairs[: long_groups[-1][1]]
    return {"short": {"pairs": short_pairs, "groups": short_groups},
            "long": {"pairs": long_pairs, "groups": long_groups}}


def quality(scores: np.ndarray, groups: list[tuple[int, int, list[int]]]) -> dict[str, float]:
    from fastrank.evaluation.metrics import evaluate_rankings

    result = evaluate_rankings([scores[s:e] for s, e, _ in groups], [np.asarray(y) for _, _, y in groups],
                               metrics=["map", "ndcg@10"])
    return result.metrics


def flops_per_pair(config: dict[str, Any], tokens: float) -> float:
    """Multiply-add FLOPs of one BERT pair of ``tokens`` tokens (linear layers + attention scores/values)."""
    h, inter, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_token = 2 * (4 * h * h + 2 * h * inter) + 4 * tokens * h
    return layers * tokens * per_token


def matmul_rates(threads: int) -> dict[str, float]:
    """Measured GFLOP/s of a 1024^3 matmul in fp32 and bf16 on this machine (torch, ``threads`` threads)."""
    import torch

    from fastrank.timing import measure

    torch.set_num_threads(threads)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(1024, 1024, dtype=dtype)
        b = torch.randn(1024, 1024, dtype=dtype)
        t = measure(lambda: a @ b, warmup=2, repeats=10)
        out[name] = round(2 * 1024**3 / t.median / 1e9, 1)
    return out


def _scorers(model_dir: str, artifacts: dict[str, Path], threads: int) -> dict[str, Any]:
    """name -> (description, predict(pairs) -> logits)."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    from fastrank.reranker import Reranker

    torch.set_num_threads(threads)
    st = STCrossEncoder(model_dir, device="cpu")
    identity = torch.nn.Identity()
    rows = {"sentence-transformers torch fp32": (
        {"library": "sentence-transformers", "backend": "torch", "provider": "cpu", "precision": "fp32"},
        lambda pairs: st.predict(pairs, batch_size=32, activation_fn=identity, show_progress_bar=False))}
    rerankers = {"fastrank torch fp32": Reranker(model_dir, backend="torch", num_threads=threads)}
    for name, path in artifacts.items():
        rerankers[f"fastrank {name}"] = Reranker(path, num_threads=threads)
    for name, rr in rerankers.items():
        desc = {"library": "fastrank", **rr.describe()}
        rows[name] = (desc, lambda pairs, rr=rr: rr.logits(pairs)[:, 0])
    return rows


def export_artifacts(model_dir: str, out_root: Path, threads: int) -> dict[str, Path]:
    """fp32 ONNX (O3), int8 ONNX, bf16 torch — each verified by export_model before it is written."""
    from fastrank.export import export_model

    verify = [(g["query"], g["documents"], g["labels"]) for g in
              (json.loads(x) for x in (WIKIQA / "dev.jsonl").read_text(encoding="utf-8").splitlines()[:60])]
    from fastrank.errors import ParityError

    out = {}
    for name, precision, optimize in (("onnx fp32 O3", "fp32", "O3"), ("onnx int8", "int8", "O2"),
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


def run(model_dir: str, quick: bool, threads: int) -> list[dict[str, Any]]:
    from fastrank.timing import measure

    data = workloads(quick)
    artifacts = export_artifacts(model_dir, ROOT / "runs" / "bench-artifacts", threads)
    config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    rates = matmul_rates(threads)
    records, references = [], {}
    for wl_name, wl in data.items():
        pairs = wl["pairs"]
        for row, (desc, fn) in _scorers(model_dir, artifacts, threads).items():
            timing = measure(lambda: fn(pairs), items=len(pairs), warmup=1, repeats=1 if quick else 3)
            logits = np.asarray(fn(pairs), dtype=np.float64).reshape(-1)
            if row == "fastrank torch fp32":
                references[wl_name] = logits
            records.append({"workload": wl_name, "row": row, **desc, "threads": threads, "quick": quick,
                            "pairs": len(pairs), "timing": timing.summary(), "quality": quality(logits, wl["groups"]),
                            "logits": logits.tolist()})
    records += peer_records(model_dir, threads, quick, artifacts.get("onnx fp32 O3"))
    for wl_name, wl in data.items():
        tokens = _mean_tokens(model_dir, wl["pairs"])
        flops = flops_per_pair(config, tokens)
        for r in records:
            if r["workload"] != wl_name:
                continue
            diff = np.asarray(r.pop("logits")) - references[wl_name]
            r["max_abs_dlogit_vs_torch_fp32"] = float(np.max(np.abs(diff)))
            r["gflop_per_pair"] = round(flops / 1e9, 3)
            r["mean_tokens"] = round(tokens, 1)
            r["matmul_gflops"] = rates
            achieved = r["timing"]["items_per_s"] * flops / 1e9
            peak = rates["bf16"] if r["precision"] == "bf16" else rates["fp32"]
            r["pct_of_matmul_peak"] = round(100 * achieved / peak, 1)
    return records


def peer_records(model_dir: str, threads: int, quick: bool, onnx_artifact: Path | None) -> list[dict[str, Any]]:
    """sentence-transformers ONNX rows from bench/peers.py in .venv-peers (skipped, with a note, when absent)."""
    python = ROOT / ".venv-peers" / "bin" / "python"
    if not python.is_file():
        print(f"peer venv {python.parent.parent} not found: sentence-transformers ONNX rows skipped "
              "(see bench/peers.py for the one-line set-up)")
        return []
    cmd = [str(python), "-m", "bench.peers", "--model", str(Path(model_dir).resolve()), "--threads", str(threads)]
    if onnx_artifact is not None:
        cmd += ["--onnx-artifact", str(onnx_artifact)]
    proc = subprocess.run(cmd + (["--quick"] if quick else []), cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if proc.returncode != 0:
        print(f"peer run failed, rows skipped:\n{proc.stderr[-2000:]}")
        return []
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def _mean_tokens(model_dir: str, pairs: list[tuple[str, str]]) -> float:
    from fastrank.model import CrossEncoder

    return float(CrossEncoder(model_dir, device="cpu").pair_encoder().encode(pairs).lengths.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="Trained cross-encoder checkpoint directory.")
    parser.add_argument("--quick", action="store_true", help="Small workloads, one timed run (smoke test).")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    require_shared_data()
    for record in run(args.model, args.quick, args.threads):
        append_record("speed", record)
        print(f"{record['workload']:5s} {record['row']:40s} {record['timing']['items_per_s']:8.1f} pairs/s  "
              f"MAP {record['quality']['map']:.4f}  max|dlogit| {record['max_abs_dlogit_vs_torch_fp32']:.2e}")
