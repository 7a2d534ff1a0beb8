"""Every GPU check in one run; prints one table (and writes JSON to $OUT/gpu_check.json when $OUT is set).

    python -m bench.gpu_check --prepare .gpu [--model runs/wikiqa]   # here: what the GPU machine needs, < 64 MiB
    bash bench/gpu_check.sh                      # on a CUDA machine (uses .gpu/ when present)
    python -m bench.gpu_check --device cpu --quick   # dry run of the same code path on a CPU (no numbers)

The GPU machine has CUDA torch, transformers and tokenizers but neither ``../shared`` nor the bundled base model, so
``--prepare`` writes the model as a fp16 checkpoint (about 45 MB for MiniLM-L6; the fp32 reference row upcasts
the same weights, so parity compares compute precision only) and a copy of WikiQA test into an ignored folder
that the device call carries: ``run(command="bash bench/gpu_check.sh", carry=[".gpu"])``. Copy the returned
``gpu_check.json`` to ``bench/results/`` and ``python -m bench report`` puts its table in bench/RESULTS.md.

Rows: torch CUDA fp32 eager (the reference), fp16 and bf16 eager, fp16 and bf16 with CUDA graphs per bucket
(fastrank's torch-cuda backend), the same under autocast with fp32 weights (fp16-mixed, bf16-mixed), then one
status row each for TensorRT and onnxruntime-gpu (installed or not; this script measures neither). For each torch
row: throughput at batch 64 x sequence 256 (synthetic ids, the issue's shape), throughput and quality (MAP,
NDCG@10) on WikiQA test pairs through ``Reranker`` (so padding to buckets is included; the throughput of a first
pass, where eager rows meet each batch shape for the first time, and of a second, steady-state pass), ΔNDCG@10 and
max |Δlogit| vs fp32 eager, and the speedup over fp32 eager at 64 x 256, and for the graph rows the time to capture
every bucket up front (``Reranker.warmup``, as ``fastrank serve`` does at start-up). Gate:
ΔNDCG@10 <= 0.002 (fastrank's fp16/bf16 export bound). Beside it, the 5th..95th percentile ΔNDCG@10 that Gaussian
noise with the std of the row's Δlogit gives the fp32 logits (``fastrank.benchmark.noise_band``): a ΔNDCG@10 inside
that band is near-tie noise, not a loss of the precision. A row that fails is reported as FAILED with its error and the
others still run: a session may get one device call.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
WIKIQA = ROOT.parent / "shared" / "data" / "wikiqa" / "test.jsonl"
CARRIED = ROOT / ".gpu"  # what --prepare writes and the device call carries


COLUMNS = ("row", "pairs_per_s_64x256", "speedup_vs_fp32_eager_64x256", "wikiqa_first_pass_pairs_per_s",
           "wikiqa_pairs_per_s", "map", "ndcg@10",
           "delta_ndcg@10", "noise_delta_ndcg@10", "max_abs_dlogit", "gate_ok", "warmup_graphs", "warmup_s")


def table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Markdown table of result rows (printed here, and rendered into bench/RESULTS.md by ``bench.report``); a row
    that did not run carries a status, shown after its name. Cells are kept to one line (an error message can span
    several) and their pipes escaped, so the table stays a table."""
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        row = {**r, "row": f"{r['row']}: {r['status']}" if "status" in r else r["row"]}
        cells = (" ".join(str(row.get(c, "")).split()).replace("|", "\\|") for c in columns)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def prepare(target: Path, model_dir: str | None) -> None:
    """Write ``target/model`` (the model as a fp16 checkpoint) and ``target/wikiqa/test.jsonl`` for a GPU run."""
    import shutil

    from fastrank.model import CrossEncoder, resolve_model_path

    source = model_dir or (str(ROOT / "runs" / "wikiqa") if (ROOT / "runs" / "wikiqa").is_dir()
                           else resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    CrossEncoder(source, device="cpu", dtype="float16").save(target / "model")
    (target / "wikiqa").mkdir(parents=True, exist_ok=True)
    shutil.copy(WIKIQA, target / "wikiqa" / "test.jsonl")
    size = sum(f.stat().st_size for f in target.rglob("*") if f.is_file())
    print(f"wrote {target} from {source}: {size / 2**20:.1f} MiB")


def prepare_train(target: Path) -> None:
    """Write ``target/base`` (the base model, weights in fp16: 44 MiB) and WikiQA train + test under
    ``target/wikiqa`` for ``bench/gpu_train.sh`` (``fastrank train`` on a GPU machine that has neither)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    from fastrank.model import resolve_model_path

    source = Path(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))
    base = target / "base"
    shutil.rmtree(base, ignore_errors=True)
    shutil.copytree(source, base, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = {k: v.to(torch.float16) for k, v in load_file(str(source / "model.safetensors")).items()}
    save_file(weights, str(base / "model.safetensors"), metadata={"format": "pt"})
    (target / "wikiqa").mkdir(parents=True, exist_ok=True)
    for name in ("train.tokenized.jsonl", "test.jsonl"):
        shutil.copy(WIKIQA.parent / name, target / "wikiqa" / name)
    print(f"wrote {base} and {target / 'wikiqa'} from {source}")


def _synthetic_rate(backend, batch: int, seq: int, repeats: int) -> float:
    from fastrank.timing import measure

    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, size=(batch, seq)).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    import torch

    def run():
        backend.logits(feed)
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    return batch / measure(run, warmup=3, repeats=repeats).median


def _measure(name: str, precision: str, graphs: bool, model_dir: str, args: argparse.Namespace,
             pairs: list[tuple[str, str]], spans: list[Any], done: list[dict[str, Any]]) -> dict[str, Any]:
    """One row: warm-up, 64x256 throughput, and on WikiQA pairs throughput, quality and parity against the first
    row that scored them (torch fp32 eager)."""
    from fastrank.benchmark import noise_band, parity, quality
    from fastrank.reranker import Reranker

    reranker = Reranker(model_dir, backend="torch-cuda", batch_size=64, backend_options={
        "precision": precision, "cuda_graphs": graphs, "device": args.device, "pad_to_buckets": graphs})
    row: dict[str, Any] = {"row": name, "precision": precision, "cuda_graphs": graphs}
    start = time.perf_counter()
    row["warmup_graphs"] = reranker.warmup()  # what `fastrank serve` does before taking traffic
    row["warmup_s"] = round(time.perf_counter() - start, 2)
    row["pairs_per_s_64x256"] = round(_synthetic_rate(reranker.backend, 64, 256, 3 if args.quick else 20), 1)
    if pairs:
        rates = []
        for _ in range(2):  # the first pass meets every batch shape for the first time; the second is steady state
            start = time.perf_counter()
            logits = reranker.every_logit(pairs)[:, 0].astype(np.float64)
            rates.append(round(len(pairs) / (time.perf_counter() - start), 1))
        row["wikiqa_first_pass_pairs_per_s"], row["wikiqa_pairs_per_s"] = rates
        row.update({k: round(v, 4) for k, v in quality(logits, spans).items()})
        row["logits"] = logits
        reference = next((r for r in done if "logits" in r), row)
        p = parity(reference["logits"], logits, spans)
        row["max_abs_dlogit"] = float(f"{p['max_abs_dlogit']:.2e}")
        row["delta_ndcg@10"] = round(abs(row["ndcg@10"] - reference["ndcg@10"]), 4)
        row["gate_ok"] = row["delta_ndcg@10"] <= 0.002
        if reference is not row:  # what noise of this row's Δlogit size does to fp32's NDCG@10: p5, p95
            band = noise_band(reference["logits"], logits - reference["logits"], spans)
            row["noise_delta_ndcg@10"] = f"{band[0]:+.4f} .. {band[2]:+.4f}"
    row["describe"] = reranker.backend.describe()
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Checkpoint dir (default runs/wikiqa, else the base model).")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="Few queries and repeats (dry runs).")
    parser.add_argument("--data", default=None, help="Grouped JSONL to score (default .gpu/wikiqa, else ../shared).")
    parser.add_argument("--json", type=Path, default=None,
                        help="Write the rows as JSON here (default: $OUT/gpu_check.json when $OUT is set).")
    parser.add_argument("--prepare", type=Path, default=None, help="Write the carry folder for a GPU run and stop.")
    parser.add_argument("--prepare-train", type=Path, default=None,
                        help="Write what bench/gpu_train.sh needs (base model, WikiQA train/test) and stop.")
    args = parser.parse_args(argv)
    if args.prepare is not None:
        prepare(args.prepare, args.model)
        return
    if args.prepare_train is not None:
        prepare_train(args.prepare_train)
        return
    import torch

    from fastrank.data import read_groups
    from fastrank.model import resolve_model_path

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible: run on a GPU machine, or --device cpu for a dry run")
    candidates = [args.model, CARRIED / "model", ROOT / "runs" / "wikiqa"]
    found = next((str(c) for c in candidates if c is not None and Path(c).is_dir()), None)
    model_dir = found or resolve_model_path("sentence-transformers/all-MiniLM-L6-v2")
    on_gpu = args.device.startswith("cuda")
    data = Path(args.data) if args.data else next((p for p in (CARRIED / "wikiqa" / "test.jsonl", WIKIQA)
                                                   if p.is_file()), WIKIQA)
    groups = read_groups(str(data))[: 20 if args.quick else None] if data.is_file() else []
    pairs = [(g.query, d) for g in groups for d in g.documents]
    spans, start = [], 0
    for g in groups:
        spans.append((start, start + len(g.documents), g.labels))
        start += len(g.documents)
    configs = [("torch fp32 eager", "fp32", False), ("torch fp16 eager", "fp16", False),
               ("torch bf16 eager", "bf16", False), ("torch fp16 + CUDA graphs", "fp16", True),
               ("torch bf16 + CUDA graphs", "bf16", True), ("torch fp16-mixed + CUDA graphs", "fp16-mixed", True),
               ("torch bf16-mixed + CUDA graphs", "bf16-mixed", True)]
    if not on_gpu:  # a dry run: every precision, eagerly
        eager = {f"torch {precision} eager": precision for _, precision, _ in configs}
        configs = [(name, precision, False) for name, precision in eager.items()]
    rows: list[dict[str, Any]] = []
    for name, precision, graphs in configs:
        try:  # one device call is all a session gets: a failing row is reported, the others still run
            rows.append(_measure(name, precision, graphs, model_dir, args, pairs, spans, rows))
        except Exception as exc:  # noqa: BLE001 - report any failure of this row in the table
            rows.append({"row": name, "status": f"FAILED: {type(exc).__name__}: {str(exc)[:300]}"})
        if on_gpu:
            torch.cuda.empty_cache()
    for row in rows:
        row.pop("logits", None)
    base = rows[0].get("pairs_per_s_64x256")
    for row in rows:
        if base and "pairs_per_s_64x256" in row:
            row["speedup_vs_fp32_eager_64x256"] = round(row["pairs_per_s_64x256"] / base, 2)
    for name, has in (("tensorrt", _installed("tensorrt")), ("onnxruntime-gpu", _cuda_onnxruntime())):
        rows.append({"row": name, "status": "installed, not measured here: run `fastrank export --format tensorrt` / "
                     "providers=gpu_providers(...)" if has else "not installed on this machine: not run"})
    device = torch.cuda.get_device_name() if on_gpu else "cpu (dry run)"
    header = f"device: {device}; torch {torch.__version__}; model {model_dir}; WikiQA pairs {len(pairs)}"
    print(header)
    print(table(rows, COLUMNS))
    target = args.json or (Path(os.environ["OUT"], "gpu_check.json") if os.environ.get("OUT") else None)
    if target is not None:
        target.write_text(json.dumps({"header": header, "rows": rows}, indent=2, default=str))


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _cuda_onnxruntime() -> bool:
    """onnxruntime with its CUDA provider (onnxruntime-gpu); the CPU wheel has the same module name."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


if __name__ == "__main__":
    main()
