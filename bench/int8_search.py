"""Search for an int8 configuration of the WikiQA cross-encoder that keeps MAP within 0.005 of fp32 (issue #4).

    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python -m bench.int8_search --stage sensitivity
    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python -m bench.int8_search --stage variants [--variants a b ...]
    OMP_NUM_THREADS=2 PYTHONPATH=. .venv/bin/python -m bench.int8_search --stage speed --variants a b ...

Graphs: the fp32 graph of ``--model`` exported and optimized at O2 / O3 exactly as ``fastrank export`` does
(``ArtifactBuilder.graph``), written once to ``runs/int8-search/graphs``; every quantized variant is written beside
them. Quality: logits of every WikiQA dev / test pair through the fp32 O3 artifact's tokenizer and batching
(``Reranker.run``), with only the onnxruntime session swapped, compared with the fp32 graph's logits (MAP,
NDCG@10, max |Δlogit|). ``sensitivity`` quantizes one group of nodes at a time (everything else fp32) and reports
the dev logit error each group causes alone. ``speed`` times ``Reranker.predict`` on the 2,351 test pairs for the
fp32 O3 artifact, the existing int8 artifact, the bf16 torch artifact and the chosen variants in one process,
round-robin (a warm-up, then ``--runs`` rounds; median), so the ratios are comparable on a busy machine.
Records go to bench/results/int8.jsonl.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ROOT, WIKIQA, append_record, require_shared_data

WORK = ROOT / "runs" / "int8-search"
FP32_ARTIFACT = ROOT / "runs" / "bench-artifacts" / "onnx-fp32-O3"
INT8_ARTIFACT = ROOT / "runs" / "bench-artifacts" / "onnx-int8"
BF16_ARTIFACT = ROOT / "runs" / "bench-artifacts" / "torch-bf16"
KINDS = ("qkv", "attn_out", "ffn_in", "ffn_out")


# Node groups ------------------------------------------------------------------------------------------------------


def node_groups(path: Path) -> dict[str, list[str]]:
    """Quantizable nodes of a fused BERT graph by role: ``L<i>.qkv`` (the fused Attention), ``L<i>.attn_out``,
    ``L<i>.ffn_in``, ``L<i>.ffn_out`` and ``head`` (pooler + classifier Gemms, under both names the quantizer may
    give them)."""
    import onnx

    groups: dict[str, list[str]] = {}
    attention = 0
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        if node.op_type == "Attention":
            groups[f"L{attention}.qkv"] = [node.name]
            attention += 1
        elif node.op_type == "MatMul":
            m = re.search(r"layer\.(\d+)/(attention/output|intermediate|output)/dense", node.name)
            if m:
                kind = {"attention/output": "attn_out", "intermediate": "ffn_in", "output": "ffn_out"}[m.group(2)]
                groups[f"L{m.group(1)}.{kind}"] = [node.name]
        elif node.op_type == "Gemm":
            groups.setdefault("head", []).extend([node.name, f"{node.name}_MatMul"])
    return groups


def select(groups: dict[str, list[str]], patterns: list[str]) -> list[str]:
    """Node names of every group matching one of the regular expressions."""
    return [n for g, names in groups.items() if any(re.fullmatch(p, g) for p in patterns) for n in names]


# Variants ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    source: str = "O3"  # fp32 graph level quantized
    method: str = "dynamic"  # dynamic | static-qdq | static-qop | nbits | rung (fastrank.export.onnx.quantize_int8)
    per_channel: bool = True
    reduce_range: bool = False
    exclude: tuple[str, ...] = ()  # group patterns kept fp32
    calibrate: str = "MinMax"
    rung: str | None = None  # for method="rung": the RUNGS entry
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False)


LAST = r"L5\..*"
VARIANTS = {v.name: v for v in [
    Variant("int8-O2", source="O2", note="the existing int8 rung (as runs/bench-artifacts/onnx-int8)"),
    Variant("int8", note="the int8 rung on the O3 graph"),
    Variant("int8-last-layer-fp32", exclude=(LAST, "head"), note="existing rung: last layer + head fp32"),
    Variant("int8-tensor", per_channel=False, note="per-tensor weight scales"),
    Variant("int8-reduce-range", reduce_range=True, note="7-bit weights"),
    Variant("int8-head-fp32", exclude=("head",)),
    Variant("int8-L0-ffn-out-fp32", exclude=(r"L0\.ffn_out", "head"), note="the first FFN output projection fp32"),
    Variant("int8-L01-ffn-out-fp32", exclude=(r"L[01]\.ffn_out", "head")),
    Variant("int8-L012-ffn-out-fp32", exclude=(r"L[012]\.ffn_out", "head")),
    Variant("int8-L01-ffn-fp32", exclude=(r"L[01]\.ffn_.*", "head")),
    Variant("int8-L0-fp32", exclude=(r"L0\..*", "head")),
    Variant("int8-L012-fp32", exclude=(r"L[012]\..*", "head")),
    Variant("rung:int8-early-ffn-out-fp32", method="rung", rung="int8-early-ffn-out-fp32",
            note="the integrated rung, built by fastrank.export.onnx.quantize_int8"),
    Variant("rung:int8-last-layer-fp32", method="rung", rung="int8-last-layer-fp32",
            note="the existing rung, built by fastrank.export.onnx.quantize_int8"),
    Variant("int8-first-last-fp32", exclude=(r"L0\..*", LAST, "head")),
    Variant("int8-attn-out-fp32", exclude=(r"L\d+\.attn_out", "head")),
    Variant("int8-ffn-out-fp32", exclude=(r"L\d+\.ffn_out", "head")),
    Variant("int8-qkv-fp32", exclude=(r"L\d+\.qkv", "head")),
    Variant("int8-ffn-in-fp32", exclude=(r"L\d+\.ffn_in", "head")),
    Variant("int8-outs-fp32", exclude=(r"L\d+\.attn_out", r"L\d+\.ffn_out", "head")),
    Variant("nbits8-b32", method="nbits", extra={"block_size": 32},
            note="MatMulNBits 8-bit (blocks of 32 along K), int8 compute: activations quantized per row and block, "
                 "so a pair's score does not depend on its batch; QKV stays fp32 inside Attention"),
    Variant("nbits8-b128", method="nbits", extra={"block_size": 128}, note="as nbits8-b32, blocks of 128"),
    Variant("nbits8-b32-qattn", method="nbits", extra={"block_size": 32, "attention": True},
            note="nbits8-b32, then the fused Attention's QKV dynamic int8 (per batch) as in the int8 rung"),
    Variant("nbits8-b128-qattn", method="nbits", extra={"block_size": 128, "attention": True}),
    Variant("rowwise", extra={"rowwise": True},
            note="dynamic int8, MatMul inputs scaled per row (fastrank.export.rewrite); QAttention per batch"),
    Variant("rowwise-qkv-fp32", exclude=(r"L\d+\.qkv",), extra={"rowwise": True},
            note="rowwise with the fused Attention fp32: no scale depends on the batch"),
    Variant("int8-unfused", extra={"unfuse": True}, note="int8 with SkipLayerNormalization unfused"),
    Variant("rowwise-unfused", extra={"rowwise": True, "unfuse": True}),
    Variant("rung:int8-early-ffn-out-fp32-unfused", method="rung", rung="int8-early-ffn-out-fp32",
            extra={"unfuse": True}),
    Variant("static-qdq-minmax", method="static-qdq", exclude=("head",)),
    Variant("static-qdq-percentile", method="static-qdq", calibrate="Percentile", exclude=("head",)),
    Variant("static-qdq-entropy", method="static-qdq", calibrate="Entropy", exclude=("head",)),
]}


def add_custom_variants(specs: list[str]) -> None:
    """``name=pattern,pattern`` on the command line: a dynamic variant keeping those groups fp32."""
    for spec in specs:
        name, _, patterns = spec.partition("=")
        VARIANTS[name] = Variant(name, exclude=tuple(p for p in patterns.split(",") if p), note="custom")


def graphs(model: str) -> dict[str, Path]:
    """fp32 graphs at O2 and O3, built once the way ``fastrank export`` builds them."""
    out = WORK / "graphs"
    paths = {level: out / f"fp32-{level}.onnx" for level in ("O2", "O3")}
    if all(p.is_file() for p in paths.values()):
        return paths
    from fastrank.export.build import ArtifactBuilder
    from fastrank.export.onnx import INT8_CONFIGS

    out.mkdir(parents=True, exist_ok=True)
    builder = ArtifactBuilder(model, optimize="O3", opset=17, verify_pairs=None, bounds=None,
                              int8_config=INT8_CONFIGS["avx512_vnni"], num_threads=2)
    for level in paths:
        builder.graph(out, level)  # writes out/fp32-<level>.onnx
    return paths


class Calibration:
    """A CalibrationDataReader over encoded WikiQA train pairs, batches of 8 padded to their longest pair."""

    def __init__(self, encoder: Any, input_names: list[str], n_pairs: int, seed: int = 0) -> None:
        from fastrank.batching import collate

        groups = [json.loads(x) for x in (WIKIQA / "train.tokenized.jsonl").read_text().splitlines() if x.strip()]
        pairs = [(g["query"], d) for g in groups for d in g["documents"]]
        rng = np.random.default_rng(seed)
        pairs = [pairs[i] for i in rng.choice(len(pairs), n_pairs, replace=False)]
        encoded = encoder.encode(pairs)
        self.batches = [{k: v for k, v in collate(encoded, list(range(i, min(i + 8, n_pairs))),
                                                  encoder.pad_token_id).items() if k in input_names}
                        for i in range(0, n_pairs, 8)]
        self.it = iter(self.batches)

    def get_next(self):
        return next(self.it, None)

    def rewind(self):
        self.it = iter(self.batches)


def build_variant(v: Variant, sources: dict[str, Path], encoder: Any = None, input_names: list[str] = ()) -> tuple[Path, dict]:
    import onnx
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    src = sources[v.source]
    dst = WORK / f"{v.name.replace(':', '-')}.onnx"
    groups = node_groups(src)
    excluded = select(groups, list(v.exclude))
    info: dict[str, Any] = {"source": v.source, "method": v.method, "per_channel": v.per_channel,
                            "reduce_range": v.reduce_range, "excluded_groups": list(v.exclude),
                            "excluded_nodes": excluded}
    start = time.perf_counter()
    if v.method == "rung":
        from fastrank.export.onnx import INT8_CONFIGS, RUNGS, quantize_int8

        rung = RUNGS[v.rung]
        info = quantize_int8(src, dst, {"profile": "avx512_vnni", **INT8_CONFIGS["avx512_vnni"]},
                             rung.keep_last_layer_fp32, rung.keep_fp32)
    elif v.method == "dynamic":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=v.per_channel,
                             reduce_range=v.reduce_range, op_types_to_quantize=["MatMul", "Attention"],
                             nodes_to_exclude=excluded, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                                                       **v.extra.get("extra_options", {})})
        if v.extra.get("rowwise"):
            from fastrank.export.rewrite import per_row_activation_scales

            model = onnx.load(str(dst))
            info["rowwise_matmuls"] = per_row_activation_scales(model)
            onnx.save(model, str(dst))
    elif v.method == "nbits":
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        except ImportError as exc:  # the quantizer needs the onnx-ir package, which fastrank does not install
            raise SystemExit(f"{v.name}: onnxruntime's MatMulNBits quantizer needs `pip install onnx-ir` ({exc})")

        model = onnx.load(str(src))
        quantizer = MatMulNBitsQuantizer(model, bits=8, block_size=v.extra["block_size"], is_symmetric=True,
                                         accuracy_level=4, nodes_to_exclude=excluded, op_types_to_quantize=("MatMul",))
        quantizer.process()
        quantizer.model.save_model_to_file(str(dst))
        if v.extra.get("attention"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_dynamic(str(dst), str(dst), weight_type=QuantType.QInt8, per_channel=v.per_channel,
                                 reduce_range=v.reduce_range, op_types_to_quantize=["Attention"],
                                 extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        info.update({"bits": 8, "accuracy_level": 4, **v.extra})
    else:
        reader = Calibration(encoder, list(input_names), v.extra.get("calib_pairs", 200))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_static(str(src), str(dst), reader,
                            quant_format=QuantFormat.QDQ if v.method == "static-qdq" else QuantFormat.QOperator,
                            op_types_to_quantize=["MatMul"], per_channel=v.per_channel, reduce_range=v.reduce_range,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=excluded, calibrate_method=getattr(CalibrationMethod, v.calibrate),
                            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT,
                                           "ActivationSymmetric": False, "WeightSymmetric": True})
        info.update({"calibrate": v.calibrate, "calib_pairs": len(reader.batches) * 8, "op_types": ["MatMul"]})
    if v.extra.get("unfuse"):
        from fastrank.export.onnx import rewrite_for_cpu

        info["rewrites"] = rewrite_for_cpu(dst, dst)
    info["quantize_seconds"] = round(time.perf_counter() - start, 1)
    return dst, info


# Quality ----------------------------------------------------------------------------------------------------------


class Data:
    """Encoded dev / test pairs of queries with a positive, with their labels per query."""

    def __init__(self, reranker: Any, split: str) -> None:
        groups = [json.loads(x) for x in (WIKIQA / f"{split}.jsonl").read_text().splitlines() if x.strip()]
        groups = [g for g in groups if any(y > 0 for y in g["labels"])]
        self.pairs = [(g["query"], d) for g in groups for d in g["documents"]]
        self.labels = [np.asarray(g["labels"], dtype=float) for g in groups]
        self.bounds = np.cumsum([0] + [len(g["documents"]) for g in groups])
        self.encoded, _ = reranker.encode(self.pairs)

    def metrics(self, reranker: Any, logits: np.ndarray) -> dict[str, float]:
        from fastrank.evaluation.metrics import evaluate_rankings

        scores = reranker.activate(logits).astype(np.float64)
        per_query = [scores[a:b] for a, b in zip(self.bounds[:-1], self.bounds[1:])]
        return dict(evaluate_rankings(per_query, self.labels, metrics=["map", "ndcg@10"]).metrics)

    def flips(self, logits: np.ndarray, reference: np.ndarray) -> dict[str, int]:
        """(relevant, irrelevant) pairs of one query ordered differently than by the reference: ``harmful`` (the
        reference had them right), ``helpful`` (it had them wrong); a tie counts as wrong."""
        harmful = helpful = total = 0
        for (a, b), y in zip(zip(self.bounds[:-1], self.bounds[1:]), self.labels):
            pos, neg = y > 0, y <= 0
            ref = reference[a:b, 0][pos][:, None] > reference[a:b, 0][neg][None, :]
            new = logits[a:b, 0][pos][:, None] > logits[a:b, 0][neg][None, :]
            harmful += int((ref & ~new).sum())
            helpful += int((~ref & new).sum())
            total += ref.size
        return {"harmful_flips": harmful, "helpful_flips": helpful, "labelled_pairs": total}


def session_for(path: Path, threads: int):
    from fastrank.backends.onnx_backend import OnnxBackend

    return OnnxBackend(path, ["input_ids", "attention_mask", "token_type_ids"], "logits", num_threads=threads,
                       providers=["CPUExecutionProvider"], precision="int8")


class Scorer:
    def __init__(self, threads: int, splits=("dev", "test"), batch_size: int = 32) -> None:
        from fastrank.reranker import Reranker

        self.threads = threads
        self.reranker = Reranker(FP32_ARTIFACT, num_threads=threads, batch_size=batch_size)
        self.data = {s: Data(self.reranker, s) for s in splits}
        self.reference = {s: self.logits(self.reranker.backend, s) for s in splits}
        self.reference_metrics = {s: self.data[s].metrics(self.reranker, self.reference[s]) for s in splits}

    def logits(self, backend: Any, split: str) -> np.ndarray:
        keep = self.reranker.backend
        self.reranker.backend = backend
        try:
            return self.reranker.run(self.data[split].encoded)
        finally:
            self.reranker.backend = keep

    def quality(self, path: Path, splits=("dev", "test")) -> dict[str, Any]:
        backend = session_for(path, self.threads)
        out: dict[str, Any] = {}
        for s in splits:
            logits = self.logits(backend, s)
            m = self.data[s].metrics(self.reranker, logits)
            ref = self.reference_metrics[s]
            delta = np.abs(logits - self.reference[s])
            out[s] = {"map": m["map"], "ndcg@10": m["ndcg@10"], "delta_map": m["map"] - ref["map"],
                      "delta_ndcg@10": m["ndcg@10"] - ref["ndcg@10"], "max_abs_dlogit": float(delta.max()),
                      "mean_abs_dlogit": float(delta.mean()), **self.data[s].flips(logits, self.reference[s])}
        return out


# Stages -----------------------------------------------------------------------------------------------------------


def stage_sensitivity(args, sources) -> None:
    """Quantize one group (or one kind / one layer) at a time, the rest fp32; dev logit error it causes alone."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scorer = Scorer(args.threads, splits=("dev",))
    groups = node_groups(sources["O3"])
    sets = {f"kind:{k}": select(groups, [rf"L\d+\.{k}"]) for k in KINDS}
    sets |= {f"layer:{i}": select(groups, [rf"L{i}\..*"]) for i in range(6)}
    sets["head"] = groups["head"]
    if args.fine:
        sets |= {g: names for g, names in groups.items() if g != "head"}
    rows = []
    for name, nodes in sets.items():
        dst = WORK / "sensitivity.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(sources["O3"]), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             reduce_range=False, op_types_to_quantize=["MatMul", "Attention"], nodes_to_quantize=nodes,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        q = scorer.quality(dst, splits=("dev",))["dev"]
        rows.append({"set": name, **q})
        print(f"{name:14s} dev ΔMAP {q['delta_map']:+.4f} ΔNDCG@10 {q['delta_ndcg@10']:+.4f} "
              f"mean|Δlogit| {q['mean_abs_dlogit']:.4f} max|Δlogit| {q['max_abs_dlogit']:.4f}", flush=True)
        append_record("int8", {"stage": "sensitivity", "set": name, "quantized_nodes": nodes, "dev": q,
                               "reference": scorer.reference_metrics})


def stage_variants(args, sources) -> None:
    scorer = Scorer(args.threads, batch_size=args.batch_size)
    print(f"batch size {args.batch_size}; fp32 reference:", {s: {k: round(v, 4) for k, v in m.items()} for s, m in scorer.reference_metrics.items()})
    print(f"{'variant':28s} {'ΔMAP test':>9s} {'ΔMAP dev':>9s} {'MAP test':>8s} {'NDCG@10':>8s} {'max|Δl|':>8s} "
          f"{'mean|Δl|':>8s} {'flips-/+ test':>13s} {'flips-/+ dev':>12s} {'mean|Δl| dev':>12s}")
    for name in args.variants:
        v = VARIANTS[name]
        path, info = build_variant(v, sources, scorer.reranker.encoder, ["input_ids", "attention_mask", "token_type_ids"])
        q = scorer.quality(path)
        t, d = q["test"], q["dev"]
        print(f"{name:28s} {t['delta_map']:+9.4f} {d['delta_map']:+9.4f} {t['map']:8.4f} {t['ndcg@10']:8.4f} "
              f"{t['max_abs_dlogit']:8.4f} {t['mean_abs_dlogit']:8.4f} {t['harmful_flips']:6d}/{t['helpful_flips']:<6d} "
              f"{d['harmful_flips']:5d}/{d['helpful_flips']:<6d} {d['mean_abs_dlogit']:12.4f}", flush=True)
        append_record("int8", {"stage": "variants", "variant": name, "batch_size": args.batch_size, "note": v.note,
                               "quantization": info, **q,
                               "reference": scorer.reference_metrics})


def stage_speed(args, sources) -> None:
    """Round-robin timing of Reranker.predict on the test pairs: fp32 O3, int8, bf16 and the variants."""
    import copy

    from fastrank.reranker import Reranker

    groups = [json.loads(x) for x in (WIKIQA / "test.jsonl").read_text().splitlines() if x.strip()]
    pairs = [(g["query"], d) for g in groups if any(y > 0 for y in g["labels"]) for d in g["documents"]]
    models: dict[str, Any] = {"fp32 O3": Reranker(FP32_ARTIFACT, num_threads=args.threads, batch_size=32),
                              "int8 (existing)": Reranker(INT8_ARTIFACT, num_threads=args.threads, batch_size=32)}
    if not args.no_bf16:
        models["bf16 torch"] = Reranker(BF16_ARTIFACT, num_threads=args.threads, batch_size=32)
    for name in args.variants:
        path = WORK / f"{name.replace(':', '-')}.onnx"
        if not path.is_file():
            path = build_variant(VARIANTS[name], sources)[0]
        r = copy.copy(models["fp32 O3"])
        r.backend = session_for(path, args.threads)
        models[name] = r
    times: dict[str, list[float]] = {k: [] for k in models}
    for name, r in models.items():  # warm-up
        r.predict(pairs[:256])
    for _ in range(args.runs):
        for name, r in models.items():
            start = time.perf_counter()
            r.predict(pairs)
            times[name].append(time.perf_counter() - start)
    # The machine is shared: a round's ratios (same load for every model, seconds apart) are steadier than medians
    # of absolute times; the fastest round is the least disturbed one.
    def ratios(ref: str, name: str) -> list[float]:
        return [a / b for a, b in zip(times[ref], times[name])]

    has_bf16 = "bf16 torch" in times
    print(f"{'model':28s} {'pairs/s':>8s} {'best/s':>8s} {'x fp32':>7s} {'x bf16':>7s} {'x int8':>7s}  runs (s)")
    for name, ts in times.items():
        med = statistics.median(ts)
        vs_fp32 = statistics.median(ratios("fp32 O3", name))
        vs_bf16 = statistics.median(ratios("bf16 torch", name)) if has_bf16 else None
        vs_int8 = statistics.median(ratios("int8 (existing)", name))
        rec = {"stage": "speed", "model": name, "pairs": len(pairs), "threads": args.threads, "runs_s": ts,
               "median_s": med, "pairs_per_s": len(pairs) / med, "best_pairs_per_s": len(pairs) / min(ts),
               "speedup_vs_fp32_o3": vs_fp32, "speedup_vs_bf16": vs_bf16, "speedup_vs_int8": vs_int8,
               "ratio": "median over rounds of the per-round time ratio"}
        print(f"{name:28s} {len(pairs) / med:8.1f} {len(pairs) / min(ts):8.1f} {vs_fp32:7.2f} "
              f"{(vs_bf16 if has_bf16 else float('nan')):7.2f} {vs_int8:7.2f}  {' '.join(f'{t:.2f}' for t in ts)}",
              flush=True)
        append_record("int8", rec)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.int8_search", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=("sensitivity", "variants", "speed"), required=True)
    parser.add_argument("--model", default="runs/wikiqa")
    parser.add_argument("--variants", nargs="*", default=[], help=f"Known: {', '.join(VARIANTS)}.")
    parser.add_argument("--custom", nargs="*", default=[], help="name=group-regex,... : dynamic, those groups fp32")
    parser.add_argument("--fine", action="store_true", help="sensitivity: also every single node group")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32,
                        help="variants: pairs per batch (dynamic int8 scales depend on the batch's activations)")
    parser.add_argument("--no-bf16", action="store_true")
    args = parser.parse_args(argv)
    require_shared_data()
    add_custom_variants(args.custom)
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    sources = graphs(args.model)
    {"sensitivity": stage_sensitivity, "variants": stage_variants, "speed": stage_speed}[args.stage](args, sources)


if __name__ == "__main__":
    main()
