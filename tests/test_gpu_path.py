"""The GPU path's decisions, checked on the CPU: optimization profiles and CUDA-graph buckets from lengths, engine
selection and ONNX fallback, the TensorRT 10/11 builder split, the mixed-precision ONNX for strongly typed builds,
onnxruntime GPU provider options, and Triton configs parsed with Triton's own model_config.proto. Tests that need
a GPU are marked ``gpu`` and skip without CUDA."""

from __future__ import annotations

import importlib.util
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from triton_stub import Tensor, load_tokenizer_model

from fastrank.export.profiles import (Profile, batch_limit, bucket_shape, graph_buckets, pad_batch, pick_profile,
                                      plan_profiles)
from fastrank.export.tensorrt import builder_api, engine_file, select_engine, sensitive_layer

# short and long pairs, repeated so batches span several CUDA-graph buckets
CUDA_PAIRS = [("q", "short doc"), ("a longer query here", "a much longer document " * 20), ("x", "y z")] * 3
LENGTHS = np.r_[np.full(60, 27), np.full(30, 90), np.full(10, 250)]


def test_profiles_follow_the_length_distribution():
    profiles = plan_profiles(LENGTHS, max_length=256, max_batch=64, num_profiles=3)
    assert [(p.min_seq, p.opt_seq, p.max_seq) for p in profiles] == [(1, 32, 32), (33, 96, 96), (97, 256, 256)]
    assert all((p.min_batch, p.opt_batch, p.max_batch) == (1, 64, 64) for p in profiles)
    for n in LENGTHS:  # every padded pair has a profile, and the tightest one is chosen
        seq = -(-int(n) // 8) * 8
        assert profiles[pick_profile(profiles, 64, seq)].covers(64, seq)
    assert pick_profile(profiles, 3, 24) == 0 and pick_profile(profiles, 3, 200) == 2
    assert all(sum(p.covers(1, w) for p in profiles) == 1 for w in range(1, 257))  # contiguous, no overlap
    assert batch_limit(profiles) == 64 and batch_limit([Profile(1, 8, 8, 1, 8, 8), Profile(1, 4, 4, 9, 16, 16)]) == 4
    with pytest.raises(ValueError, match="no optimization profile covers batch 65 x sequence 32"):
        pick_profile(profiles, 65, 32)
    one = plan_profiles([5, 9, 300], max_length=128, num_profiles=1)
    assert one == [Profile(1, 64, 64, 1, 16, 128)]  # lengths above max_length are truncated, so they cap at it
    with pytest.raises(ValueError, match="non-empty"):
        plan_profiles([], 128)


def test_graph_buckets_and_padding():
    batches, seqs = graph_buckets(48, 200, seq_step=64)
    assert batches == [1, 2, 4, 8, 16, 32, 48] and seqs == [64, 128, 192, 256]
    assert bucket_shape(5, 65, batches, seqs) == (8, 128)
    with pytest.raises(ValueError, match="above the largest bucket"):
        bucket_shape(49, 10, batches, seqs)
    batch = {"input_ids": np.array([[101, 7, 102]]), "attention_mask": np.ones((1, 3), dtype=np.int64)}
    padded = pad_batch(batch, 2, 8, pad_token_id=0)
    assert padded["input_ids"].tolist() == [[101, 7, 102, 0, 0, 0, 0, 0], [0] * 8]
    assert padded["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]]


def test_engine_selection_and_builder_api():
    entries = [{"file": engine_file("9.0", "10.5.0", r), "rung": r, "compute_capability": "9.0",
                "tensorrt_version": "10.5.0"} for r in ("fp32", "fp16-fp32-sensitive")]
    entry, reason = select_engine(entries, "9.0", "10.5.0")
    assert entry["rung"] == "fp16-fp32-sensitive" and entry["file"] == "engine-sm90-trt10.5.0-fp16-fp32-sensitive.plan"
    assert select_engine(entries, "8.0", "10.5.0")[0] is None
    assert "no engine for this GPU (sm8.0)" in select_engine(entries, "8.0", "10.5.0")[1]
    assert "TensorRT is not installed" in select_engine(entries, "9.0", None)[1]
    assert "no CUDA GPU" in select_engine(entries, None, "10.5.0")[1]
    assert "no TensorRT engines" in select_engine([], "9.0", "10.5.0")[1]
    assert builder_api("10.13.0") == "weakly-typed" and builder_api("11.4.0.106") == "strongly-typed"
    for old in ("7.2.1", "8.4.3", "9.3.0"):  # 8.4 lacks execute_async_v3 and set_input_shape; 9 is not supported
        with pytest.raises(Exception, match="too old"):
            builder_api(old)
    assert sensitive_layer("/bert/encoder/layer.0/LayerNorm", "LayerType.NORMALIZATION")
    assert sensitive_layer("/classifier/Gemm", "LayerType.MATRIX_MULTIPLY")
    assert not sensitive_layer("/bert/encoder/layer.0/attention/self/query/MatMul", "LayerType.MATRIX_MULTIPLY")


def test_mixed_precision_onnx_keeps_sensitive_ops_fp32(o1_artifact, tmp_path):
    import onnx

    from fastrank.export.tensorrt import SENSITIVE_OP_TYPES, mixed_precision_onnx
    from fastrank.reranker import Reranker

    info = mixed_precision_onnx(o1_artifact / "model.onnx", tmp_path / "mixed.onnx")
    model = onnx.load(str(tmp_path / "mixed.onnx"))
    fp16 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    fp32 = {i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT}
    norm_weights = {x for n in model.graph.node if n.op_type in SENSITIVE_OP_TYPES for x in n.input} & (fp16 | fp32)
    assert fp16, "matmul weights should be fp16"
    assert norm_weights and norm_weights <= fp32, "normalization weights must stay fp32"
    assert info["fp32_nodes"], "the classifier nodes are kept fp32"
    # onnxruntime's own block list (Range, Min, Max, CumSum ...) still applies next to fastrank's sensitive ops
    assert info["fp32_op_types"][:len(SENSITIVE_OP_TYPES)] == list(SENSITIVE_OP_TYPES)
    assert "Range" in info["fp32_op_types"]
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # logits stay fp32
    import shutil

    mixed_dir = tmp_path / "artifact"
    shutil.copytree(o1_artifact, mixed_dir)
    shutil.copy(tmp_path / "mixed.onnx", mixed_dir / "model.onnx")
    pairs = [("what is the capital of france", d) for d in ("paris", "berlin is in germany", "ice caves")]
    ref = Reranker(o1_artifact, num_threads=1).logits(pairs)
    got = Reranker(mixed_dir, num_threads=1).logits(pairs)
    assert np.abs(got - ref).max() < 2e-2  # fp16 matmuls; the CPU kernels run the same graph


def test_gpu_provider_options():
    from fastrank.backends.onnx_backend import choose_providers, gpu_providers, merged_profile, profile_batch_limit

    profiles = plan_profiles(LENGTHS, 256, max_batch=32, num_profiles=2)
    providers = gpu_providers("tensorrt", profiles, ("input_ids", "attention_mask"), cache_dir="/cache", fp16=True)
    name, options = providers[0]
    assert name == "TensorrtExecutionProvider" and providers[1][0] == "CUDAExecutionProvider"
    # onnxruntime runs profile 0 only (microsoft/onnxruntime#31624): one profile spans both planned buckets
    assert [(p.min_seq, p.max_seq) for p in profiles] == [(1, 32), (33, 256)]
    assert options["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    opt = profiles[0].opt_seq  # the middle of two buckets is the first
    assert options["trt_profile_opt_shapes"] == f"input_ids:32x{opt},attention_mask:32x{opt}"
    assert options["trt_profile_max_shapes"] == "input_ids:32x256,attention_mask:32x256"
    assert options["trt_engine_cache_path"] == "/cache" and options["trt_fp16_enable"] is True
    assert gpu_providers("tensorrt", profiles)[0][1]["trt_fp16_enable"] is False  # fp16 only when asked for
    three = [Profile(1, 16, 16, 1, 24, 32), Profile(1, 16, 16, 33, 48, 64), Profile(1, 8, 8, 65, 96, 128)]
    merged = merged_profile(three)  # the batch all cover; the middle bucket's opt length
    assert merged == Profile(1, 8, 8, 1, 48, 128) and all(merged.covers(8, s) for s in (1, 64, 128))
    assert profile_batch_limit(providers) == 32 and profile_batch_limit(gpu_providers("cuda")) is None
    with pytest.raises(ValueError, match="needs optimization profiles"):
        gpu_providers("tensorrt")
    with pytest.raises(Exception, match="not available here"):
        choose_providers(["CPUExecutionProvider"], providers)


def test_auto_falls_back_to_onnx_when_no_engine_fits(o1_artifact, tmp_path, caplog):
    import shutil

    from fastrank.export.manifest import read_manifest, write_manifest
    from fastrank.reranker import Reranker

    target = tmp_path / "with-engine"
    shutil.copytree(o1_artifact, target)
    manifest = read_manifest(target)
    manifest["tensorrt"] = {"profiles": [Profile(1, 8, 8, 8, 64, 64).to_dict()],
                            "engines": [{"file": "engine-sm90-trt10.5.0-fp16.plan", "rung": "fp16",
                                         "compute_capability": "9.0", "tensorrt_version": "10.5.0"}]}
    write_manifest(target, manifest)
    with caplog.at_level(logging.WARNING):
        reranker = Reranker(target, num_threads=1)
    assert reranker.backend.name == "onnx"
    assert "instead of a TensorRT engine" in caplog.text
    with pytest.raises(Exception, match="TensorRT|tensorrt|CUDA"):
        Reranker(target, backend="tensorrt")


def _model_config_pb2():
    pytest.importorskip("tritonclient", reason="tritonclient not installed (part of the dev extra)")
    spec = importlib.util.find_spec("tritonclient")
    path = Path(spec.submodule_search_locations[0]) / "grpc" / "model_config_pb2.py"
    module_spec = importlib.util.spec_from_file_location("fastrank_test_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)  # by path: the tritonclient.grpc package itself would import grpcio
    return module


def test_triton_repository_configs_parse_with_tritons_proto(o1_artifact, tmp_path):
    from google.protobuf import text_format

    from fastrank.export.triton import model_config, pad_widths, write_repository

    pb2 = _model_config_pb2()
    repo = write_repository(o1_artifact, tmp_path / "repo", name="rr", max_batch_size=32, instances=2)
    configs = {}
    for name in ("rr", "rr_model", "rr_tokenizer"):
        configs[name] = text_format.Parse((repo / name / "config.pbtxt").read_text(), pb2.ModelConfig())
    model = configs["rr_model"]
    assert model.backend == "onnxruntime" and model.max_batch_size == 32
    assert [i.name for i in model.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i.data_type == pb2.TYPE_INT64 and list(i.dims) == [-1] for i in model.input)
    assert model.output[0].name == "logits" and list(model.output[0].dims) == [1]
    assert list(model.dynamic_batching.preferred_batch_size) == [16, 32]
    assert model.instance_group[0].count == 2 and model.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_GPU
    accel = model.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP32"  # the fp32 artifact's precision
    params = dict(accel.parameters)  # gpu_providers' TensorRT options under Triton's names, one 1..64 profile here
    assert params["trt_layer_norm_fp32_fallback"] == "1" and params["trt_timing_cache_enable"] == "1"
    assert params["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1,token_type_ids:1x1"
    assert params["trt_profile_max_shapes"] == "input_ids:32x64,attention_mask:32x64,token_type_ids:32x64"
    assert "trt_fp16_enable" not in params and "device_id" not in params
    ensemble = configs["rr"]
    assert ensemble.platform == "ensemble"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["rr_tokenizer", "rr_model"]
    assert dict(ensemble.ensemble_scheduling.step[1].output_map) == {"logits": "LOGITS"}
    assert (repo / "rr_model" / "1" / "model.onnx").read_bytes() == (o1_artifact / "model.onnx").read_bytes()
    cpu = text_format.Parse(model_config("m", json.loads((o1_artifact / "fastrank.json").read_text()), kind="KIND_CPU"),
                            pb2.ModelConfig())
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator
    manifest = json.loads((o1_artifact / "fastrank.json").read_text())
    fast = text_format.Parse(model_config("m", manifest, fp16=True), pb2.ModelConfig())  # asked for: fp16 on TensorRT
    assert fast.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters["precision_mode"] == "FP16"
    for precision, mode in (("fp16", "FP16"), ("fp32", "FP32")):  # the accelerator follows the artifact
        config = text_format.Parse(model_config("m", {**manifest, "precision": precision}), pb2.ModelConfig())
        assert config.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters[
            "precision_mode"] == mode
    int8 = text_format.Parse(model_config("m", {**manifest, "precision": "int8"}), pb2.ModelConfig())
    assert int8.instance_group[0].kind == pb2.ModelInstanceGroup.KIND_CPU  # CPU integer kernels: a CPU instance
    with pytest.raises(ValueError, match="int8 artifact runs onnxruntime's CPU integer kernels"):
        model_config("m", {**manifest, "precision": "int8"}, kind="KIND_GPU")
    manifest["tensorrt"] = {"profiles": [Profile(1, 8, 8, 8, 32, 32).to_dict(), Profile(1, 8, 8, 40, 64, 64).to_dict()]}
    trt = text_format.Parse(model_config("m", manifest, backend="tensorrt", max_batch_size=8), pb2.ModelConfig())
    # one group listing every profile: Triton picks the profile that fits each batch's shape
    assert trt.platform == "tensorrt_plan" and [list(g.profile) for g in trt.instance_group] == [["0", "1"]]
    with pytest.raises(ValueError, match="max_batch_size 64 is above the engine's profiles' batch \\(8\\)"):
        model_config("m", manifest, backend="tensorrt")
    onnx_with_engine = text_format.Parse(model_config("m", manifest, max_batch_size=16), pb2.ModelConfig())
    engine_params = onnx_with_engine.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters
    # onnxruntime's TensorRT provider runs one profile: it spans both engine buckets, 8..64 tokens
    assert engine_params["trt_profile_min_shapes"] == "input_ids:1x8,attention_mask:1x8,token_type_ids:1x8"
    assert engine_params["trt_profile_max_shapes"] == "input_ids:16x64,attention_mask:16x64,token_type_ids:16x64"
    odd = {**manifest, "max_length": 300, "tensorrt": {}}  # the tokenizer pads to 304: the profile must reach it
    odd_params = text_format.Parse(model_config("m", odd), pb2.ModelConfig()).optimization.execution_accelerators
    assert pad_widths(300)[-1] == 304
    assert odd_params.gpu_execution_accelerator[0].parameters["trt_profile_max_shapes"].startswith("input_ids:64x304,")
    with pytest.raises(text_format.ParseError):  # the parser is strict: it would catch a misspelt field
        text_format.Parse("max_batch: 3", pb2.ModelConfig())


def test_triton_tokenizer_model_matches_the_reranker(o1_artifact, tmp_path, monkeypatch):
    from fastrank.batching import round_up
    from fastrank.export.manifest import read_manifest
    from fastrank.export.triton import pad_widths, write_repository
    from fastrank.reranker import Reranker

    repo = write_repository(o1_artifact, tmp_path / "repo")
    model = load_tokenizer_model(repo, monkeypatch)
    docs = ["paris is the capital", "a much longer document " * 30]
    request = {"QUERY": Tensor("QUERY", np.array([b"capital of france"] * 2, dtype=object)),
               "DOCUMENT": Tensor("DOCUMENT", np.array([d.encode() for d in docs], dtype=object))}
    (outputs,) = model.execute([request])
    got = {t.name: t.array for t in outputs}
    encoded = Reranker(o1_artifact, num_threads=1).encoder.encode([("capital of france", d) for d in docs])
    for row in range(2):
        n = int(encoded.lengths[row])
        assert got["input_ids"][row, :n].tolist() == encoded.input_ids[row].tolist()
        assert got["attention_mask"][row].sum() == n
    assert got["input_ids"].shape[1] % 8 == 0

    # requests of different lengths come out at one of a few widths, so Triton's dynamic batcher (equal shapes
    # only) can merge them; each width is covered by the artifact's lengths
    widths = pad_widths(int(read_manifest(o1_artifact)["max_length"]))
    assert widths[0] == 64 and widths[-1] == round_up(read_manifest(o1_artifact)["max_length"], 8)
    short = [model.execute([{"QUERY": Tensor("QUERY", np.array([b"capital?"], dtype=object)),
                             "DOCUMENT": Tensor("DOCUMENT", np.array([d.encode()], dtype=object))}])[0][0].array
             for d in ("paris", "paris is the capital of france and its largest city by far")]
    assert short[0].shape == short[1].shape == (1, 64)
    assert 0 < (short[0] != 0).sum() < (short[1] != 0).sum() < 64  # two lengths, one shape
    assert got["input_ids"].shape[1] in widths
    # bytes that are not UTF-8 fail their own request with a message, not every request batched with it
    bad = {"QUERY": Tensor("QUERY", np.array([b"q", b"q"], dtype=object)),
           "DOCUMENT": Tensor("DOCUMENT", np.array([b"fine", b"caf\xe9"], dtype=object))}
    error, fine = model.execute([bad, request])
    assert error.message == "DOCUMENT element 1 is not UTF-8 text (byte 0xe9 at 3); send UTF-8"
    assert [t.array.tolist() for t in fine] == [t.array.tolist() for t in outputs]


@pytest.mark.gpu
def test_torch_cuda_backend_matches_cpu(tiny_model_dir):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from fastrank.reranker import Reranker

    pairs = CUDA_PAIRS[:2]  # a short and a long pair
    ref = Reranker(tiny_model_dir, backend="torch").logits(pairs)
    for precision in ("fp32", "fp16", "bf16", "fp16-mixed", "bf16-mixed"):
        reranker = Reranker(tiny_model_dir, backend="torch-cuda", backend_options={"precision": precision})
        got = reranker.logits(pairs)
        assert np.abs(got - ref).max() < (1e-4 if precision == "fp32" else 5e-2)
        assert reranker.backend.describe()["graphs_captured"] > 0 and not reranker.backend.describe()["eager_buckets"]
        backend = reranker.backend
        assert reranker.warmup() == len(backend.batches) * len(backend.seqs)  # every bucket, one shared pool
        np.testing.assert_allclose(reranker.logits(pairs), got, atol=1e-6)  # replays after the others' captures
        with ThreadPoolExecutor(4) as pool:  # concurrent callers share the static buffers one batch at a time
            for i, have in enumerate(pool.map(reranker.logits, [pairs, pairs[::-1]] * 4)):
                np.testing.assert_allclose(have, got if i % 2 == 0 else got[::-1], atol=1e-6)


def test_torch_cuda_backend_bucket_padding_on_cpu(tiny_model_dir):
    """The bucket padding and row slicing of the CUDA-graph path, run eagerly on the CPU through the public
    ``Reranker(backend="torch-cuda", backend_options=...)``: same logits as torch, batches capped at the buckets."""
    from fastrank.backends.torch_cuda_backend import TorchCudaBackend
    from fastrank.model import CrossEncoder
    from fastrank.reranker import Reranker

    pairs = CUDA_PAIRS
    ref = Reranker(tiny_model_dir, backend="torch").logits(pairs)
    reranker = Reranker(tiny_model_dir, backend="torch-cuda", backend_options={
        "precision": "fp32", "cuda_graphs": False, "device": "cpu", "pad_to_buckets": True, "max_batch": 4,
        "seq_step": 32})
    assert reranker.batch_size == 4 and reranker.backend.describe()["precision"] == "fp32"
    shapes = []
    original = reranker.backend._forward
    reranker.backend._forward = lambda inputs: (shapes.append(tuple(inputs["input_ids"].shape)), original(inputs))[1]
    np.testing.assert_allclose(reranker.logits(pairs), ref, atol=1e-5)
    assert shapes and all(b in (1, 2, 4) and s % 32 == 0 for b, s in shapes)  # every batch ran at a bucket point
    with pytest.raises(ValueError, match="batch_size=8 is above the largest batch the torch-cuda backend"):
        Reranker(tiny_model_dir, backend="torch-cuda", batch_size=8, backend_options={
            "cuda_graphs": False, "device": "cpu", "pad_to_buckets": True, "max_batch": 4})
    with pytest.raises(TypeError, match="backend_options must be a dict"):
        Reranker(tiny_model_dir, backend="torch", backend_options=["fp16"])
    with pytest.raises(Exception, match="CUDA"):
        TorchCudaBackend(CrossEncoder(tiny_model_dir, device="cpu"), cuda_graphs=True, device="cpu")


def test_torch_cuda_forward_has_no_host_sync_while_capturing(tiny_model_dir, monkeypatch):
    """CUDA-graph capture fails on any device-to-host read (``.item()``, ``bool(tensor)``). transformers reads the
    attention mask on the host to skip it when nothing is padded, except while a stream is capturing. The backend's
    own forward pass, run on meta tensors (where any host read raises), checks both, without a GPU."""
    torch = pytest.importorskip("torch")
    from fastrank.backends.torch_cuda_backend import TorchCudaBackend
    from fastrank.model import CrossEncoder

    backend = TorchCudaBackend(CrossEncoder(tiny_model_dir, device="cpu"), precision="fp16", cuda_graphs=False,
                               device="meta")
    ids = torch.zeros((4, 64), dtype=torch.int64, device="meta")
    static = {name: ids.clone() for name in backend.input_names}
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)
    with pytest.raises(RuntimeError, match="meta"), torch.inference_mode():  # eager: the mask is read on the host
        backend._forward(static)
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: True)
    with torch.inference_mode():
        logits = backend._forward(static)
    assert tuple(logits.shape) == (4, 1) and logits.dtype == torch.float16


def test_torch_cuda_mixed_precision_keeps_fp32_weights_and_16_bit_matmuls(tiny_model_dir):
    """``bf16-mixed`` runs the fp32 weights under autocast: the matmuls' outputs are bf16, the weights stay fp32
    (run on the CPU's autocast here). Whether that ranks closer to fp32 is measured on a real model by
    ``bench.gpu_check``, not on this tiny random one."""
    torch = pytest.importorskip("torch")
    from fastrank.reranker import Reranker

    pairs = CUDA_PAIRS
    ref = Reranker(tiny_model_dir, backend="torch").logits(pairs)
    errors = {}
    for precision, weights in (("bf16", torch.bfloat16), ("bf16-mixed", torch.float32)):
        reranker = Reranker(tiny_model_dir, backend="torch-cuda", backend_options={
            "precision": precision, "cuda_graphs": False, "device": "cpu"})
        linear = next(m for m in reranker.backend.hf.modules() if isinstance(m, torch.nn.Linear))
        seen = []
        linear.register_forward_hook(lambda module, args, out: seen.append((module.weight.dtype, out.dtype)))
        errors[precision] = float(np.abs(reranker.logits(pairs) - ref).max())
        assert seen and set(seen) == {(weights, torch.bfloat16)}
        assert reranker.backend.describe()["precision"] == precision
    assert max(errors.values()) < 5e-2, errors
    with pytest.raises(ValueError, match="precision must be one of"):
        Reranker(tiny_model_dir, backend="torch-cuda", backend_options={"precision": "int8", "cuda_graphs": False,
                                                                         "device": "cpu"})


@pytest.mark.gpu
def test_listnet_training_steps_on_cuda_with_bf16_autocast(tiny_model_dir):
    """The training core on a GPU without the trainer (the GPU image has no ``datasets``): the ListNet loss of a
    CUDA model under bf16 autocast, as the trainer's bf16 step computes it, matches the CPU fp32 loss, and AdamW
    steps on one batch bring it down."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    from fastrank import CrossEncoder
    from fastrank.losses import ListNetLoss

    queries = ["how are glacier caves formed?", "what is the capital of france"]
    docs = [["A glacier cave is a cave formed within the ice of a glacier.", "The facade is 60 m high.", "x"],
            ["Paris is the capital of France.", "Berlin is in Germany."]]
    labels = [[1, 0, 0], [1, 0]]
    cpu = CrossEncoder(tiny_model_dir, device="cpu")
    with torch.no_grad():
        reference = ListNetLoss(cpu)([queries, docs], labels).item()
    model = CrossEncoder(tiny_model_dir, device="cuda")
    loss_fn = ListNetLoss(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn([queries, docs], labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(reference, abs=2e-2) and all(np.isfinite(losses))
    assert losses[-1] < losses[0] - 0.05, losses
    assert {p.dtype for p in model.parameters()} == {torch.float32}
