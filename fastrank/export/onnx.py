"""Export a cross-encoder to a verified artifact directory: ONNX fp32 / int8 / fp16, or torch bf16.

Pipeline: ``torch.onnx.export`` (TorchScript exporter, ``dynamo=False``, eager attention) -> optional graph
optimization with onnxruntime's BERT optimizer -> optional int8 / fp16 conversion -> verification against the
PyTorch fp32 model (``fastrank.export.verify``) -> ``fastrank.json`` manifest. Everything is built in a temporary
directory beside the target and renamed into place only when verification passes (``fastrank.io.atomic_dir``).

Why this exporter: the torch.export-based exporter (``dynamo=True``, torch's default since 2.9) needs the extra
``onnxscript`` package, and the BERT optimizer fuses attention reliably only in TorchScript-exported graphs of
*eager* attention; with ``sdpa`` attention no ``Attention`` node is fused at all.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastrank.errors import FastrankError, ParityError, require

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "fp16", "bf16", "auto")
OPTIMIZE_LEVELS = ("O0", "O1", "O2", "O3")
MODEL_FILE = "model.onnx"
OUTPUT_NAME = "logits"

# Dynamic int8 (QInt8 weights, activations quantized per batch to uint8). reduce_range keeps weights in 7 bits:
# CPUs without VNNI multiply u8*s8 with vpmaddubsw, which saturates int16 sums at full range; with VNNI (or on
# arm64 dot-product instructions) there is no saturation and the 8th bit buys accuracy. Per-channel scales
# halved the int8 logit error on the test model.
INT8_CONFIGS: dict[str, dict[str, bool]] = {
    "avx512_vnni": {"per_channel": True, "reduce_range": False},
    "avx512": {"per_channel": True, "reduce_range": True},
    "avx2": {"per_channel": True, "reduce_range": True},
    "arm64": {"per_channel": True, "reduce_range": False},
    "generic": {"per_channel": False, "reduce_range": True},
}
QUANTIZED_OP_TYPES = ("MatMul", "Attention")
# int8 graphs keep attention unfused: the fused QAttention kernel takes one input scale per batch, so a pair's
# scores would depend on its batch mates. Unfused, the Q/K/V projections are MatMuls that get per-row scales like
# every other projection (fastrank.export.rewrite), and the attention products stay fp32. On the WikiQA MiniLM-L6
# model this made int8 scores independent of batching (test / dev ΔMAP +0.0025 / -0.0018 at batch 8 and 32 alike,
# against +0.0077 / +0.0047 and +0.0085 / -0.0033 with QAttention) at 0.99x / 0.98x the speed on short / long pairs.
INT8_FUSE_ATTENTION = False


class RungNotApplicable(FastrankError):
    """The rung cannot differ from another on this model (its int8 nodes to keep fp32 are not in the graph); the
    ladder skips it, saying why."""


@dataclass(frozen=True)
class Rung:
    """One way of building the artifact: the precision, the file format, and which int8 nodes stay fp32
    (``keep_last_layer_fp32``: the last layer and the head; ``keep_fp32``: ``KEEP_FP32`` roles)."""

    name: str
    precision: str
    format: str = "onnx"
    keep_last_layer_fp32: bool = False
    keep_fp32: tuple[str, ...] = ()


# Nodes an int8 rung may keep in fp32, by role, each with why (recorded in the manifest). Measured on the WikiQA
# MiniLM-L6 cross-encoder (bench/int8_search.py, one node group quantized at a time, the rest fp32): the FFN output
# projections of the first layers cause most of the int8 logit error (their input is the GELU output, whose
# outliers stretch the per-batch activation scale); the first one alone is the largest single source, while the
# last layer and the head barely matter.
KEEP_FP32 = {
    "early_ffn_out": "the FFN output projections of the first three layers: the largest sources of int8 error on "
                     "the WikiQA MiniLM-L6 cross-encoder (their GELU inputs have outliers that stretch the dynamic "
                     "activation scale); keeping the first alone was not robust across batch sizes (test MAP moved "
                     "+0.005/-0.004), the first three were (within 0.006 at batch 1, 8 and 32)",
    "head": "the pooler and classifier: negligible compute, so the logits' last projections stay exact",
}

EARLY_LAYERS = 3

RUNGS = {
    "int8": Rung("int8", "int8"),
    "int8-early-ffn-out-fp32": Rung("int8-early-ffn-out-fp32", "int8", keep_fp32=("early_ffn_out", "head")),
    "int8-last-layer-fp32": Rung("int8-last-layer-fp32", "int8", keep_last_layer_fp32=True),
    "bf16": Rung("bf16", "bf16", format="torch"),
    "fp16": Rung("fp16", "fp16"),
    "fp32": Rung("fp32", "fp32"),
}
# int8-early-ffn-out-fp32 replaces int8-last-layer-fp32 here (still in RUNGS): on the WikiQA MiniLM-L6 model the
# last layer is where int8 matters least, while the early FFN output projections cause most of the error; keeping
# them fp32 moved test MAP by -0.0003 / +0.0061 / +0.0004 at batch 1 / 8 / 32 (plain int8: -0.0038 / -0.0052 /
# -0.0096) at 1.78x fp32 speed (bench/int8_search.py). Those numbers are from per-batch activation scales; with
# per-row scales (the int8 default since 2026-11-29) plain int8's mean |Δlogit| fell from 0.022 to 0.012 and this
# rung's to 0.011, so it is now a small step: a fallback when plain int8 misses the verification bound.
AUTO_LADDER = ("int8", "int8-early-ffn-out-fp32", "bf16", "fp32")


def export_model(
    model: Any,
    out_dir: str | Path,
    precision: str = "fp32",
    optimize: str = "O2",
    verify_pairs: Any = None,
    opset: int = 17,
    allow_parity_failure: bool = False,
    *,
    bounds: dict[str, dict[str, float]] | None = None,
    int8_profile: str | None = None,
    num_threads: int | None = None,
    allow_untrained_head: bool = False,
) -> dict[str, Any]:
    """Export, verify and write an artifact directory; returns its manifest.

    Args:
        model: a checkpoint directory / hub id, or a loaded ``fastrank.CrossEncoder``.
        out_dir: the artifact directory (replaced atomically if it exists).
        precision: ``fp32``, ``int8`` (dynamic, CPU), ``fp16`` (for GPUs), ``bf16`` (a torch artifact run with
            bf16 weights) or ``auto``: the first of int8 -> int8 with the first three layers' FFN output
            projections and the head in fp32 -> bf16 (when the CPU has bf16 instructions) -> fp32 that passes verification.
        optimize: ``O0`` plain export; ``O1`` onnxruntime basic graph optimizations (constant folding, redundant
            nodes); ``O2`` O1 + transformer fusions (Attention, EmbedLayerNormalization, SkipLayerNormalization,
            BiasGelu); ``O3`` O2 + onnxruntime's extended CPU fusions (fp16 stops at O2: those target the CPU).
            CPU artifacts (fp32, int8) then get ``rewrite_for_cpu``; int8 keeps attention unfused
            (``INT8_FUSE_ATTENTION``) and scales every quantized MatMul input per token.
        verify_pairs: verification groups ``(query, [docs], [labels])`` (labels optional), or a data file's path;
            default: a built-in set.
        opset: ONNX opset, >= 17 so LayerNormalization stays one op.
        allow_parity_failure: write the artifact even when verification fails; the manifest records it.
        bounds: override bounds per precision, e.g. ``{"int8": {"delta_ndcg@10": 0.02}}``.
        int8_profile: force an ``INT8_CONFIGS`` entry instead of the one chosen from this CPU's flags.
        num_threads: onnxruntime threads for verification (None = onnxruntime's default).
        allow_untrained_head: export a base / embedding model whose classification head is freshly initialized
            (it scores at random); refused by default. The manifest records ``head_initialized``.

    Raises:
        ParityError: verification failed (every failed check, value vs bound); nothing is written.
    """
    from fastrank.export.manifest import cpu_features
    from fastrank.export.verify import check_bounds

    if precision not in PRECISIONS and precision not in RUNGS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)} or a ladder rung "
                         f"({', '.join(r for r in RUNGS if r not in PRECISIONS)}), got {precision!r}")
    if optimize not in OPTIMIZE_LEVELS:
        raise ValueError(f"optimize must be one of {', '.join(OPTIMIZE_LEVELS)}, got {optimize!r}")
    top = max_opset()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 17 <= opset <= top:
        raise ValueError(f"opset must be an integer from 17 (LayerNormalization is one op from 17 on) to {top} (the "
                         f"most this torch's TorchScript exporter writes), got {opset!r}")
    check_bounds(bounds)
    features = cpu_features()
    profile = int8_profile or features["int8_profile"]
    if profile not in INT8_CONFIGS:
        raise ValueError(f"int8_profile must be one of {', '.join(INT8_CONFIGS)}, got {profile!r}")
    require("onnx", "export", "ONNX export")
    require("onnxruntime", "export", "ONNX export")
    from fastrank.export.build import ArtifactBuilder

    builder = ArtifactBuilder(model, optimize=optimize, opset=opset, verify_pairs=verify_pairs, bounds=bounds,
                              int8_config={"profile": profile, **INT8_CONFIGS[profile]}, num_threads=num_threads,
                              allow_untrained_head=allow_untrained_head)
    ladder = _ladder(precision, features)
    return builder.write(Path(out_dir), ladder, requested=precision, features=features,
                         allow_parity_failure=allow_parity_failure)


def max_opset() -> int:
    """The highest opset this torch's TorchScript exporter (``dynamo=False``) writes; 20 where torch does not say."""
    try:
        from torch.onnx import _constants
    except ImportError:
        return 20
    return int(getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20))


def _ladder(precision: str, features: dict[str, Any]) -> list[tuple[Rung, str | None]]:
    """Rungs to try in order, each with the reason it is skipped (None = try it)."""
    if precision != "auto":
        return [(RUNGS[precision], None)]
    out = []
    for name in AUTO_LADDER:
        skip = None
        if name == "bf16" and not features.get("bf16"):
            skip = "this CPU has no bf16 instructions (avx512_bf16 / amx_bf16): bf16 would run slower than fp32"
        out.append((RUNGS[name], skip))
    return out


def parity_error(requested: str, tried: list[dict[str, Any]]) -> ParityError:
    lines = [f"export with precision={requested!r} failed verification; nothing was written:"]
    for entry in tried:
        if entry.get("skipped"):
            continue
        for failure in entry["failures"]:
            lines.append(f"  {entry['rung']}: {failure}")
    lines.append("Pass allow_parity_failure=True to write it anyway; the manifest "
                 "records the failure.")
    err = ParityError("\n".join(lines))
    err.tried = tried
    return err


# Graph building blocks (used by fastrank.export.build) ------------------------------------------------------------


def export_raw(model: Any, path: Path, input_names: tuple[str, ...], opset: int) -> tuple[int, int]:
    """``torch.onnx.export`` with dynamic batch and sequence axes; returns the traced (batch, sequence) shape."""
    import torch

    from fastrank.batching import collate

    encoder = model.pair_encoder()
    # A padded batch of two, so the traced graph takes the masked path.
    encoded = encoder.encode([("trace query", "a short document"),
                              ("a longer trace query here", "a somewhat longer document to trace with padding")])
    batch = collate(encoded, [0, 1], encoder.pad_token_id)
    args = tuple(torch.from_numpy(batch[n]).to(model.device) for n in input_names)

    class LogitsOnly(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.inner(**dict(zip(input_names, tensors)), return_dict=True).logits.float()

    hf = model.model
    previous_attn, was_training = hf.config._attn_implementation, hf.training
    _set_attention(hf, "eager")
    hf.eval()
    axes = {n: {0: "batch", 1: "sequence"} for n in input_names} | {OUTPUT_NAME: {0: "batch"}}
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")  # TracerWarnings on shape arithmetic and the legacy-exporter notice
            torch.onnx.export(LogitsOnly(hf), args, str(path), input_names=list(input_names),
                              output_names=[OUTPUT_NAME], dynamic_axes=axes, opset_version=opset,
                              do_constant_folding=True, dynamo=False)
    except Exception as exc:
        raise FastrankError(f"torch.onnx.export failed (opset {opset}): {type(exc).__name__}: {exc}") from exc
    finally:
        _set_attention(hf, previous_attn)
        hf.train(was_training)
    return tuple(int(x) for x in args[0].shape)


def graph_input_names(path: Path) -> list[str]:
    """The inputs an ONNX graph at ``path`` takes (its weights not loaded)."""
    import onnx

    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def _set_attention(hf_model: Any, implementation: str) -> None:
    if hasattr(hf_model, "set_attn_implementation"):
        hf_model.set_attn_implementation(implementation)
    else:  # older transformers
        hf_model.config._attn_implementation = implementation


def optimize_graph(src: Path, dst: Path, level: str, config: Any, fuse_attention: bool = True) -> dict[str, int]:
    """Write the ``level``-optimized graph of ``src`` to ``dst``; returns the fused-op counts (O2/O3).

    ``fuse_attention=False`` applies every other fusion but leaves attention as MatMul / Softmax nodes.
    """
    if level == "O0":
        shutil.copyfile(src, dst)
        return {}
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    kwargs = {"O1": {"opt_level": 1, "only_onnxruntime": True}, "O2": {"opt_level": 1},
              "O3": {"opt_level": 2}}[level]
    if not fuse_attention:
        options = FusionOptions("bert")
        options.enable_attention = False
        kwargs["optimization_options"] = options
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(str(src), model_type="bert", num_heads=getattr(config, "num_attention_heads", 0),
                                   hidden_size=getattr(config, "hidden_size", 0), use_gpu=False, **kwargs)
    optimized.save_model_to_file(str(dst))
    if kwargs.get("only_onnxruntime"):
        return {}
    return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}


def rewrite_for_cpu(src: Path, dst: Path) -> dict[str, int]:
    """Write ``src`` rewritten for onnxruntime's CPU provider to ``dst``; returns what was rewritten (see
    ``fastrank.export.rewrite``: SkipLayerNormalization unfused, a same-function rewrite)."""
    import onnx

    from fastrank.export.rewrite import unfuse_skip_layer_norm

    model = onnx.load(str(src))
    counts = {"skip_layer_norm_unfused": unfuse_skip_layer_norm(model)}
    onnx.save(model, str(dst))
    return counts


def last_layer_nodes(model_proto: Any) -> list[str]:
    """Names of the quantizable nodes of the last transformer layer and the head (kept fp32 on request)."""
    import re

    nodes = list(model_proto.graph.node)
    attention = [i for i, n in enumerate(nodes) if n.op_type in ("Attention", "MultiHeadAttention")]
    start = attention[-1] if attention else None
    if start is None:  # unfused graph: layer index from torch's node names (".../layer.5/...")
        found = [(int(m.group(1)), i) for i, n in enumerate(nodes)
                 if (m := re.search(r"layers?[._/](\d+)", n.name))]
        if found:
            last = max(k for k, _ in found)
            start = min(i for k, i in found if k == last)
    if start is None:
        return []
    kept = [n.name for n in nodes[start:] if n.op_type in QUANTIZED_OP_TYPES + ("Gemm",)]
    # the quantizer rewrites Gemm (pooler, classifier) as "<name>_MatMul" + Add before quantizing it
    return kept + [f"{n.name}_MatMul" for n in nodes[start:] if n.op_type == "Gemm"]


def ffn_output_nodes(model_proto: Any) -> list[str]:
    """Names of the FFN output projections (the MatMul after the GELU of each layer), in layer order: found by
    torch's module names (BERT-style ``output/dense``, ModernBERT's gated ``mlp/Wo``, DistilBERT's ``ffn/lin2``, and
    ``mlp/down_proj`` / ``mlp/fc2``) or by a GELU feeding the MatMul."""
    import re

    nodes = list(model_proto.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    found = []
    for n in nodes:
        if n.op_type != "MatMul":
            continue
        # torch's names: ".../layer.0/output/dense/MatMul", ".../layers.0/mlp/Wo/MatMul"
        m = re.search(r"layers?[._/](\d+)/(?:output/dense|mlp/(?:Wo|down_proj|fc2)|ffn/lin2)/", n.name)
        feeder = producer.get(n.input[0])
        if m or (feeder is not None and feeder.op_type in ("Gelu", "BiasGelu", "FastGelu")):
            found.append(n.name)
    return found


def head_nodes(model_proto: Any) -> list[str]:
    """Names of the Gemm nodes after the last attention (pooler, classifier), also as the quantizer renames them."""
    nodes = list(model_proto.graph.node)
    attention = [i for i, n in enumerate(nodes) if n.op_type in ("Attention", "MultiHeadAttention")]
    gemms = [n.name for n in nodes[(attention[-1] if attention else 0):] if n.op_type == "Gemm"]
    return gemms + [f"{name}_MatMul" for name in gemms]


def kept_fp32_nodes(model_proto: Any, roles: tuple[str, ...]) -> dict[str, list[str]]:
    """``KEEP_FP32`` role -> the node names it keeps in fp32 (empty when the graph has no such node)."""
    unknown = [r for r in roles if r not in KEEP_FP32]
    if unknown:
        raise ValueError(f"unknown keep_fp32 roles {unknown}; known: {', '.join(KEEP_FP32)}")
    out = {}
    for role in roles:
        if role == "early_ffn_out":
            out[role] = ffn_output_nodes(model_proto)[:EARLY_LAYERS]
        elif role == "head":
            out[role] = head_nodes(model_proto)
    return out


def quantize_int8(src: Path, dst: Path, config: dict[str, Any], keep_last_layer_fp32: bool = False,
                  keep_fp32: tuple[str, ...] = (), per_row: bool = True) -> dict[str, Any]:
    """Dynamic int8 quantization with ``config`` (an INT8_CONFIGS entry + its profile); returns what was done.

    ``keep_last_layer_fp32`` keeps the last layer and the head fp32; ``keep_fp32`` names ``KEEP_FP32`` roles kept
    fp32 (recorded with their nodes and reasons under ``kept_fp32``). ``per_row`` scales each MatMul input per
    token instead of per batch (``fastrank.export.rewrite.per_row_activation_scales``): on the WikiQA MiniLM-L6
    model it halved the mean |Δlogit| (0.022 -> 0.012) and the ranking flips against fp32, and it no longer lets a
    pair's score depend on the MatMuls' batch mates (a fused QAttention keeps its per-batch input scale, which is
    why int8 graphs leave attention unfused: ``INT8_FUSE_ATTENTION``).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    proto = onnx.load(str(src), load_external_data=False)
    # products of two activations (attention scores and context in an unfused graph) stay fp32: quantized
    # dynamically they lose the most accuracy for the least compute
    weights = {t.name for t in proto.graph.initializer}
    activation_products = [n.name for n in proto.graph.node
                           if n.op_type == "MatMul" and not weights.intersection(n.input[:2])]
    kept = [n for n in (last_layer_nodes(proto) if keep_last_layer_fp32 else []) if n not in activation_products]
    by_role = kept_fp32_nodes(proto, tuple(keep_fp32))
    # "head" only adds to another role (the head's Gemm is not quantized anyway); a role that finds nothing else
    # would make this plain int8 again
    missing = [role for role, names in by_role.items() if not names and role != "head"]
    if missing:
        raise RungNotApplicable(f"this graph has no {' / '.join(missing)} nodes to keep fp32 (for this model it "
                                f"would be plain int8): {'; '.join(KEEP_FP32[r] for r in missing)}")
    for names in by_role.values():
        kept += [n for n in names if n not in kept]
    with warnings.catch_warnings(), _drop_root_log("pre-processing before quantization"):
        warnings.simplefilter("ignore")
        quantize_dynamic(
            str(src), str(dst), weight_type=QuantType.QInt8, per_channel=config["per_channel"],
            reduce_range=config["reduce_range"], op_types_to_quantize=list(QUANTIZED_OP_TYPES),
            nodes_to_exclude=kept + activation_products,
            # fused contrib ops (Attention, SkipLayerNormalization) defeat ONNX shape inference; their tensors are fp32
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    info = {"method": "onnxruntime.quantization.quantize_dynamic", "weight_type": "QInt8",
            "activation_type": "QUInt8 (dynamic)", "op_types": list(QUANTIZED_OP_TYPES), **config,
            "kept_fp32_nodes": kept, "fp32_activation_products": len(activation_products),
            "activation_scales": "per batch"}
    if per_row:
        from fastrank.export.rewrite import per_row_activation_scales

        model = onnx.load(str(dst))
        info["per_row_matmuls"] = per_row_activation_scales(model)
        onnx.save(model, str(dst))
        per_batch = [n.op_type for n in model.graph.node if n.op_type in ("QAttention", "DynamicQuantizeLinear")]
        info["activation_scales"] = ("per row (token) for MatMul inputs; per batch for QAttention inputs" if per_batch
                                     else "per row (token): no scale depends on the batch")
    if keep_fp32:
        info["kept_fp32"] = [{"role": role, "nodes": names, "why": KEEP_FP32[role]} for role, names in by_role.items()]
    return info


class _drop_root_log:
    """Drop one message that onnxruntime's quantizer logs on the root logger (advice we follow differently), and
    leave the root logger's handlers as they were: it logs with ``logging.warning``, which, on a root logger without
    handlers, installs one for good (``basicConfig``) and so changed the caller's logging output."""

    def __init__(self, text: str) -> None:
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()

    def __enter__(self) -> None:
        root = logging.getLogger()
        self.handlers = list(root.handlers)
        root.addFilter(self)

    def __exit__(self, *exc: object) -> None:
        root = logging.getLogger()
        root.removeFilter(self)
        for handler in [h for h in root.handlers if h not in self.handlers]:
            root.removeHandler(handler)


def convert_fp16(src: Path, dst: Path) -> dict[str, Any]:
    """fp16 weights and compute with fp32 inputs/outputs (logits stay fp32)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(converted, str(dst))
    return {"method": "onnxruntime.transformers.float16.convert_float_to_float16", "keep_io_types": True}
