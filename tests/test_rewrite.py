"""CPU graph rewrites: SkipLayerNormalization unfused computes the same; per-row int8 scales are per row."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from fastrank.export.rewrite import per_row_activation_scales, unfuse_skip_layer_norm  # noqa: E402

RNG = np.random.default_rng(0)


def run(model, **inputs) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def make_model(nodes, inputs, outputs, initializers, opset: int = 17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("com.microsoft", 1)])


def test_unfused_skip_layer_norm_computes_the_same():
    h = 16
    init = {name: RNG.standard_normal(h).astype(np.float32) for name in ("gamma", "beta", "bias")}
    x, skip = (RNG.standard_normal((3, 5, h)).astype(np.float32) for _ in range(2))
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", h]) for n in ("x", "skip")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("y", "z", "sum")]
    nodes = [
        helper.make_node("SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y"], domain="com.microsoft",
                         epsilon=1e-5, name="with_bias"),
        helper.make_node("SkipLayerNormalization", ["y", "skip", "gamma"], ["z"], domain="com.microsoft", epsilon=1e-5),
        # its input+skip sum is used downstream: left fused
        helper.make_node("SkipLayerNormalization", ["z", "skip", "gamma", "beta"], ["w", "", "", "sum"],
                         domain="com.microsoft", epsilon=1e-5),
    ]
    model = make_model(nodes, inputs, outputs, init)
    expected = run(model, x=x, skip=skip)
    assert unfuse_skip_layer_norm(model) == 2
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["Add", "Add", "LayerNormalization", "Add", "LayerNormalization", "SkipLayerNormalization"]
    got = run(model, x=x, skip=skip)
    for a, b in zip(expected, got):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # and against numpy: layer norm of x + skip + bias
    s = x + skip + init["bias"]
    ref = (s - s.mean(-1, keepdims=True)) / np.sqrt(s.var(-1, keepdims=True) + 1e-5) * init["gamma"] + init["beta"]
    np.testing.assert_allclose(got[0], ref, atol=1e-4)


def quantized_matmul(tmp_path, opset: int, k: int = 32, n: int = 8):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    w = RNG.standard_normal((k, n)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", "s", k])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {"w": w}, opset)
    onnx.save(model, str(tmp_path / "f.onnx"))
    quantize_dynamic(str(tmp_path / "f.onnx"), str(tmp_path / "q.onnx"), weight_type=QuantType.QInt8, per_channel=True)
    return onnx.load(str(tmp_path / "q.onnx")), w


@pytest.mark.parametrize("opset", [17, 18])  # ReduceMax's axes: attribute before 18, input since
def test_per_row_scales_match_a_numpy_reference_and_ignore_batch_mates(tmp_path, opset):
    model, w = quantized_matmul(tmp_path, opset)
    per_batch = onnx.ModelProto()
    per_batch.CopyFrom(model)
    plain = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], [], [], {"w": w})
    assert per_row_activation_scales(plain) == 0 and len(plain.graph.initializer) == 1  # nothing to do: untouched
    assert per_row_activation_scales(model) == 1
    ops = [n.op_type for n in model.graph.node]
    assert "DynamicQuantizeLinear" not in ops and "MatMulIntegerToFloat" in ops and "QuantizeLinear" in ops

    x = RNG.standard_normal((2, 3, 32)).astype(np.float32)
    outlier = x.copy()
    outlier[1, 2] *= 100  # one token with a 100x range in another pair
    (y,) = run(model, x=x)
    (y_outlier,) = run(model, x=outlier)
    # per row: the other tokens' results do not change at all; per batch they do
    np.testing.assert_array_equal(y[0], y_outlier[0])
    (b,) = run(per_batch, x=x)
    (b_outlier,) = run(per_batch, x=outlier)
    assert np.abs(b[0] - b_outlier[0]).max() > 10 * np.abs(y[0] - y_outlier[0]).max() + 1e-3

    # numpy reference: symmetric per-row activations (amax/127, zero point 128), per-channel symmetric weights
    a_scale = np.abs(x).max(-1, keepdims=True) / 127
    qa = np.clip(np.rint(x / a_scale), -128, 127)
    w_scale = np.abs(w).max(0) / 127
    qw = np.clip(np.rint(w / w_scale), -127, 127)
    np.testing.assert_allclose(y, (qa @ qw) * a_scale * w_scale, rtol=1e-5, atol=1e-5)
    exact = x @ w
    assert np.abs(y - exact).max() < np.abs(b_outlier - (outlier @ w)).max()
    assert np.abs(y - exact).max() < 0.05 * np.abs(exact).max()
