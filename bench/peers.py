"""Peer rows for ``python -m bench run``: sentence-transformers' ONNX backends (plain, O3, int8) and FlashRank.

Runs in a separate virtual environment (sentence-transformers' ONNX backend needs optimum-onnx, which pins
transformers < 4.58 while fastrank's training venv has transformers 5):

    python3 -m venv .venv-peers && .venv-peers/bin/pip install torch==2.13.0 \\
        "sentence-transformers>=5,<6" "optimum-onnx[onnxruntime]" "transformers<4.58" flashrank

``bench.run`` starts it as a subprocess in the same run (same data, same timing code) and merges its records;
it prints one JSON record per line, each with this venv's environment (library versions) so the report does not
label it with the main process's. It imports only numpy-level parts of fastrank (timing, metrics) from the tree.
A missing flashrank skips only the FlashRank row (with a note on stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import WIKIQA

PROCESS = "bench.peers"  # environment["process"] of the records measured here, in the peer venv
NOTE = "bench.peers: "  # stderr lines with this prefix are notes bench.run passes on


def _st_models(model_dir: str, work: Path) -> dict[str, Any]:
    from sentence_transformers import CrossEncoder, export_dynamic_quantized_onnx_model, export_optimized_onnx_model

    src = work / "st-model"
    if not src.exists():
        shutil.copytree(model_dir, src)
    plain = CrossEncoder(str(src), backend="onnx", device="cpu")
    if not (src / "onnx" / "model.onnx").exists():
        plain.save_pretrained(str(src))  # keep the plain export so the next run does not redo it
    if not (src / "onnx" / "model_O3.onnx").exists():
        export_optimized_onnx_model(plain, "O3", str(src))
    if not (src / "onnx" / "model_qint8_avx512_vnni.onnx").exists():
        export_dynamic_quantized_onnx_model(plain, "avx512_vnni", str(src))
    return {
        "sentence-transformers onnx fp32": (plain, "onnxruntime", "fp32"),
        "sentence-transformers onnx O3": (CrossEncoder(str(src), backend="onnx", device="cpu",
                                                      model_kwargs={"file_name": "onnx/model_O3.onnx"}),
                                          "onnxruntime", "fp32"),
        "sentence-transformers onnx int8": (CrossEncoder(str(src), backend="onnx", device="cpu",
                                                        model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"}),
                                            "onnxruntime", "int8"),
    }


class FlashRankScorer:
    """FlashRank's Ranker over fastrank's exported fp32 ONNX file (FlashRank loads only names from its model map,
    so the artifact is laid out in a cache dir under one of those names). One request per query, as FlashRank
    is used; its sigmoid scores are mapped back to logits for the parity column."""

    name = "ms-marco-TinyBERT-L-2-v2"

    def __init__(self, onnx_artifact: Path, work: Path, threads: int, max_length: int) -> None:
        from flashrank import Ranker
        from flashrank.Config import model_file_map

        target = work / "flashrank-cache" / self.name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(onnx_artifact / "model.onnx", target / model_file_map[self.name])
        for f in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(onnx_artifact / f, target / f)
        tok = json.loads((onnx_artifact / "tokenizer_config.json").read_text(encoding="utf-8"))
        specials = {k: tok[k] for k in ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token") if k in tok}
        (target / "special_tokens_map.json").write_text(json.dumps(specials), encoding="utf-8")
        self.ranker = Ranker(model_name=self.name, cache_dir=str(work / "flashrank-cache"), max_length=max_length)
        self.ranker.session.set_providers(["CPUExecutionProvider"])

    def predict(self, pairs, **_):
        from flashrank import RerankRequest

        out, start = np.empty(len(pairs)), 0
        while start < len(pairs):
            end = start
            while end < len(pairs) and pairs[end][0] == pairs[start][0]:
                end += 1
            passages = [{"id": i, "text": pairs[i][1]} for i in range(start, end)]
            for r in self.ranker.rerank(RerankRequest(query=pairs[start][0], passages=passages)):
                p = min(max(float(r["score"]), 1e-7), 1 - 1e-7)
                out[r["id"]] = np.log(p / (1 - p))
            start = end
        return out


def _flashrank_models(onnx_artifact: Path | None, work: Path, threads: int) -> dict[str, Any]:
    """The FlashRank row's model, or none (with a note on stderr) when flashrank is not installed here, so the
    sentence-transformers rows are still measured."""
    if onnx_artifact is None:
        return {}
    try:
        importlib.import_module("flashrank")
    except ImportError as exc:
        print(f"{NOTE}flashrank cannot be imported ({exc}): FlashRank row skipped", file=sys.stderr)
        return {}
    max_length = json.loads((onnx_artifact / "fastrank.json").read_text(encoding="utf-8"))["max_length"]
    return {"flashrank on fastrank's fp32 ONNX": (FlashRankScorer(onnx_artifact, work, threads, max_length),
                                                  "onnxruntime", "fp32")}


def _with_environment(records: list[dict[str, Any]], threads: int) -> list[dict[str, Any]]:
    """Attach this venv's environment to every record: the main process keeps an existing one (setdefault), so
    the peer rows show the library versions they ran under, not the main process's."""
    from fastrank.benchmark import environment

    env = {**environment(threads), "process": PROCESS}
    for r in records:
        r["environment"] = env
    return records


def run(model_dir: str, threads: int, quick: bool, work: Path, onnx_artifact: Path | None,
        data: Path) -> list[dict[str, Any]]:
    """Records of the sentence-transformers ONNX rows and (given ``onnx_artifact``) the FlashRank row on ``data``."""
    import torch

    from fastrank.benchmark import LATENCY_SIZES, build_workloads, run_rows

    torch.set_num_threads(threads)
    identity = torch.nn.Identity()
    models = {**_st_models(model_dir, work), **_flashrank_models(onnx_artifact, work, threads)}
    rows = {}
    for row, (model, backend, precision) in models.items():
        library = "flashrank" if row.startswith("flashrank") else "sentence-transformers"
        desc = {"library": library, "backend": backend, "provider": "cpu", "precision": precision}
        rows[row] = (desc, lambda pairs, model=model: np.asarray(
            model.predict(pairs, batch_size=32, activation_fn=identity, show_progress_bar=False)))
    groups = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines() if line.strip()]
    records = run_rows(rows, build_workloads(groups, quick), threads=threads, quick=quick,
                       latency_sizes=(10, 100) if quick else LATENCY_SIZES)
    return _with_environment(records, threads)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", default="runs/bench-peers")
    parser.add_argument("--onnx-artifact", help="fastrank fp32 ONNX artifact for the FlashRank row.")
    parser.add_argument("--data", default=str(WIKIQA / "test.jsonl"), help="Grouped JSONL to score.")
    args = parser.parse_args(argv)
    artifact = Path(args.onnx_artifact) if args.onnx_artifact else None
    for record in run(args.model, args.threads, args.quick, Path(args.work), artifact, Path(args.data)):
        sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
