"""Rewrites of optimized ONNX graphs for onnxruntime's CPU provider.

``unfuse_skip_layer_norm``: onnxruntime's fused ``SkipLayerNormalization`` CPU kernel is several times slower than
the ``Add`` + ``Add`` + ``LayerNormalization`` it replaces (onnxruntime 1.32, 2 threads, [8, 48, 384]: 381 us vs
68 us per op); in the int8 graph it took 19% of the time. Unfusing it computes the same function.

``per_row_activation_scales``: per-row activation scales for dynamically quantized graphs.

``onnxruntime.quantization.quantize_dynamic`` quantizes a MatMul's input with ``DynamicQuantizeLinear``: one
scale and zero point for the whole tensor, i.e. for every token of every pair in the batch. A pair's logits then
depend on which pairs share its batch, and one outlier token stretches the scale for all the others. This rewrite
gives every row (token) its own symmetric scale instead (``amax / 127``, zero point 128 in uint8):

    x -> Reshape [M, K] -> QuantizeLinear(scale = max|x| per row, axis 0) -> MatMulIntegerToFloat (weight scales)
      -> Mul(row scale) -> Reshape [..., N]

so each token is quantized alone: scores no longer depend on batching, and the error is that of one token's range.
Only ``DynamicQuantizeLinear`` nodes that feed ``MatMulInteger`` alone are rewritten; ``QAttention`` keeps its
per-tensor input scale (its kernel takes a scalar), so the int8 export leaves attention unfused
(``fastrank.export.onnx.INT8_FUSE_ATTENTION``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

MS_DOMAIN = "com.microsoft"


def unfuse_skip_layer_norm(model: Any) -> int:
    """Replace every ``SkipLayerNormalization`` of ``model`` (changed in place) whose extra outputs are unused by
    ``Add(input, skip) [+ bias] -> LayerNormalization``; returns how many were replaced."""
    from onnx import helper

    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    count = 0
    nodes = []
    for node in model.graph.node:
        extra_outputs = [o for o in node.output[1:] if o and o in used]
        if node.domain != MS_DOMAIN or node.op_type != "SkipLayerNormalization" or extra_outputs:
            nodes.append(node)
            continue
        inputs = list(node.input) + [""] * (5 - len(node.input))
        x, skip, gamma, beta, bias = inputs[:5]
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-12)
        p = node.name or node.output[0]
        summed = f"{p}_sum"
        nodes.append(helper.make_node("Add", [x, skip], [summed], name=f"{p}_add_skip"))
        if bias:
            nodes.append(helper.make_node("Add", [summed, bias], [f"{p}_sum_bias"], name=f"{p}_add_bias"))
            summed = f"{p}_sum_bias"
        nodes.append(helper.make_node("LayerNormalization", [summed, gamma] + ([beta] if beta else []),
                                      [node.output[0]], name=f"{p}_layer_norm", axis=-1, epsilon=epsilon))
        count += 1
    if count:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
    return count


def per_row_activation_scales(model: Any) -> int:
    """Rewrite ``model`` (an ``onnx.ModelProto``, changed in place); returns how many MatMuls now scale per row."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    all_nodes = list(graph.node)  # one list of node objects, so identities below stay valid
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in all_nodes:
        for name in node.input:
            consumers[name].append(node)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)

    def only(name: str, op_type: str) -> Any | None:
        users = consumers.get(name, [])
        return users[0] if len(users) == 1 and users[0].op_type == op_type else None

    def const(name: str, value: np.ndarray) -> str:
        if name not in inits:
            inits[name] = numpy_helper.from_array(value, name)
            graph.initializer.append(inits[name])
        return name

    removed: set[int] = set()
    added: list[tuple[Any, list[Any]]] = []  # (node the new ones replace, new nodes)
    for dq in [n for n in all_nodes if n.op_type == "DynamicQuantizeLinear"]:
        x, (q, s, _) = dq.input[0], dq.output
        matmuls = consumers.get(q, [])
        plans = []
        for mm in matmuls:
            if mm.op_type != "MatMulInteger" or mm.input[1] not in inits:
                break
            cast = only(mm.output[0], "Cast")
            out_mul = cast and only(cast.output[0], "Mul")
            scale_mul = next((n for n in consumers.get(s, []) if n.output[0] in out_mul.input), None) if out_mul else None
            if scale_mul is None:
                break
            w_scale = next(i for i in scale_mul.input if i != s)
            plans.append((mm, cast, out_mul, scale_mul, w_scale))
        if not plans or len(plans) != len(matmuls):
            continue
        p = dq.name or x
        one = const("rowwise_one", np.array(1.0, np.float32))  # shared constants, added on first use
        zp = const("rowwise_zero_point", np.array(128, np.uint8))
        tiny = const("rowwise_tiny", np.array(1e-12, np.float32))
        inv127 = const("rowwise_inv127", np.array(1 / 127, np.float32))
        flat = const("rowwise_flat", np.array([-1], np.int64))
        k = numpy_helper.to_array(inits[plans[0][0].input[1]]).shape[0]
        nodes = [
            helper.make_node("Reshape", [x, const(f"rowwise_shape_{k}", np.array([-1, k], np.int64))], [f"{p}_2d"]),
            helper.make_node("Abs", [f"{p}_2d"], [f"{p}_abs"]),
            # opset 18 moved ReduceMax's axes from an attribute to an input
            helper.make_node("ReduceMax", [f"{p}_abs"], [f"{p}_amax"], axes=[1], keepdims=1) if opset < 18 else
            helper.make_node("ReduceMax", [f"{p}_abs", const("rowwise_axis_1", np.array([1], np.int64))],
                             [f"{p}_amax"], keepdims=1),
            helper.make_node("Max", [f"{p}_amax", tiny], [f"{p}_amax_pos"]),
            helper.make_node("Mul", [f"{p}_amax_pos", inv127], [f"{p}_row_scale"]),
            helper.make_node("Reshape", [f"{p}_row_scale", flat], [f"{p}_row_scale_1d"]),
            helper.make_node("Shape", [f"{p}_row_scale_1d"], [f"{p}_rows"]),
            helper.make_node("ConstantOfShape", [f"{p}_rows"], [f"{p}_row_zp"],
                             value=helper.make_tensor("v", TensorProto.UINT8, [1], [128])),
            helper.make_node("QuantizeLinear", [f"{p}_2d", f"{p}_row_scale_1d", f"{p}_row_zp"], [f"{p}_q"], axis=0),
            helper.make_node("Shape", [x], [f"{p}_shape"]),
            helper.make_node("Slice", [f"{p}_shape", const("rowwise_start", np.array([0], np.int64)),
                                       const("rowwise_end", np.array([-1], np.int64))], [f"{p}_lead"]),
        ]
        for mm, cast, out_mul, scale_mul, w_scale in plans:
            w = numpy_helper.to_array(inits[mm.input[1]])
            n_out = w.shape[1]
            m = mm.name or mm.output[0]
            nodes += [
                helper.make_node("MatMulIntegerToFloat", [f"{p}_q", mm.input[1], one, w_scale, zp,
                                                          mm.input[3] if len(mm.input) > 3 else ""],
                                 [f"{m}_f"], domain=MS_DOMAIN),
                helper.make_node("Mul", [f"{m}_f", f"{p}_row_scale"], [f"{m}_scaled"]),
                helper.make_node("Concat", [f"{p}_lead", const(f"rowwise_n_{n_out}", np.array([n_out], np.int64))],
                                 [f"{m}_out_shape"], axis=0),
                helper.make_node("Reshape", [f"{m}_scaled", f"{m}_out_shape"], [out_mul.output[0]]),
            ]
            removed.update(id(n) for n in (mm, cast, out_mul, scale_mul))
        removed.add(id(dq))
        added.append((dq, nodes))
    for _, new in added:
        for node in new:
            node.name = node.name or f"{node.output[0]}_{node.op_type}"
    if not added:
        return 0
    first_of = {id(dq): new for dq, new in added}
    kept = []
    for node in all_nodes:
        kept += first_of.get(id(node), [])
        if id(node) not in removed:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid(MS_DOMAIN, 1))
    return sum(n.op_type == "MatMulIntegerToFloat" for _, new in added for n in new)
