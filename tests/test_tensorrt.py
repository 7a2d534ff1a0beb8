"""The TensorRT builder, runtime and export ladder, driven on the CPU by a stand-in ``tensorrt`` module
(``tests/fake_tensorrt.py``): which flags and per-layer precisions each API version gets, which profile a batch
runs on, tensor dtypes, the timing cache, the precision ladder and what the manifest records. A real engine is not
built here (no GPU); the stand-in runs the same ONNX on onnxruntime and fails the rungs that compute
normalization in 16 bits."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from fake_tensorrt import OTHER_DEVICE, HostIO, make_tensorrt
from triton_stub import Tensor, load_tokenizer_model

import fastrank.backends.tensorrt_backend as trt_backend
from fastrank.errors import FastrankError, ModelLoadError, ParityError
from fastrank.export.profiles import Profile, pick_profile
from fastrank.export.tensorrt import GPU_RUNGS, build_engine, classifier_nodes, engine_file, export_tensorrt

PAIRS = [("what is the capital of france", d) for d in
         ("paris", "berlin is in germany", "ice caves form in glaciers " * 6, "the capital of france is paris")]
PROFILES = [Profile(1, 4, 4, 1, 16, 16), Profile(1, 4, 4, 17, 48, 64)]
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@pytest.fixture
def on_fake_gpu(monkeypatch):
    """Install a stand-in ``tensorrt`` of a given version on a pretend sm90 GPU with host-memory buffers."""

    def install(version: str):
        trt = make_tensorrt(version)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(trt_backend, "gpu_info", lambda: ("9.0", version))
        monkeypatch.setattr(trt_backend, "CudaIO", HostIO)
        return trt

    return install


def test_tensorrt10_build_pins_sensitive_layers_and_carries_the_timing_cache(o1_artifact, tmp_path):
    import onnx

    trt = make_tensorrt("10.5.0")
    cache = tmp_path / "timing.cache"
    for name in ("fp16", "fp16-fp32-sensitive"):
        info = build_engine(o1_artifact / "model.onnx", tmp_path / f"{name}.plan", PROFILES, GPU_RUNGS[name], INPUTS,
                            cache, trt=trt)
        assert info["builder_api"] == "weakly-typed" and info["bytes"] == (tmp_path / f"{name}.plan").stat().st_size
    plain, sensitive = trt.built
    assert plain["network_flags"] == 1 << 0  # EXPLICIT_BATCH where it still exists
    assert plain["builder_flags"] == {"FP16"} and plain["pinned"] == [] and plain["noisy"]
    assert sensitive["builder_flags"] == {"FP16", "OBEY_PRECISION_CONSTRAINTS"} and not sensitive["noisy"]
    nodes = onnx.load(str(o1_artifact / "model.onnx")).graph.node
    expected = {n.name for n in nodes if n.op_type in ("LayerNormalization", "Softmax")}
    head = set(classifier_nodes(onnx.load(str(o1_artifact / "model.onnx"))))
    # a Gemm becomes two TensorRT layers, the second named "<node>_N": the pooler's bias add is pinned too
    parts = {name for name in sensitive["layers"] if name not in head and name.rpartition("_")[0] in head}
    assert any(name.startswith("/inner/bert/pooler/dense/Gemm_") for name in parts), sorted(parts)
    expected |= head | parts
    assert set(sensitive["pinned"]) == expected and "/inner/classifier/Gemm" in expected
    assert not any("MatMul" in name for name in sensitive["pinned"])  # matmuls stay fp16: that is the speed-up
    assert sensitive["profiles"] == [{n: ((1, 1), (4, 16), (4, 16)) for n in INPUTS},
                                     {n: ((1, 17), (4, 48), (4, 64)) for n in INPUTS}]
    assert plain["cache_in"] == b"" and sensitive["cache_in"] == b"t" and cache.read_bytes() == b"tt"
    assert plain["workspace"] == 4 << 30


def test_a_timing_cache_from_another_gpu_is_replaced_not_fatal(o1_artifact, tmp_path, caplog):
    trt = make_tensorrt("10.5.0")
    cache = tmp_path / "timing.cache"
    cache.write_bytes(OTHER_DEVICE + b"timings")  # same compute capability, another device: TensorRT refuses it
    with caplog.at_level("WARNING", logger="fastrank.export.tensorrt"):
        build_engine(o1_artifact / "model.onnx", tmp_path / "e.plan", PROFILES, GPU_RUNGS["fp16"], INPUTS, cache,
                     trt=trt)
    assert trt.built[0]["cache_in"] == b"" and cache.read_bytes() == b"t"  # built afresh; this GPU's timings kept
    assert "made on another GPU" in caplog.text


def test_tensorrt11_build_is_strongly_typed_without_precision_flags(o1_artifact, tmp_path):
    trt = make_tensorrt("11.1.0")
    assert not hasattr(trt.BuilderFlag, "FP16")  # a call to a removed weak-typing API would raise here
    network = trt.Builder(None).create_network(0)
    assert trt.OnnxParser(network, None).parse_from_file(str(o1_artifact / "model.onnx"))
    assert not any(hasattr(layer, "precision") or hasattr(layer, "set_output_type") for layer in network.layers)
    info = build_engine(o1_artifact / "model.onnx", tmp_path / "e.plan", PROFILES, GPU_RUNGS["fp16-fp32-sensitive"],
                        INPUTS, trt=trt)
    (built,) = trt.built
    assert info == {"builder_api": "strongly-typed", "layers_pinned_fp32": 0, "bytes": info["bytes"]}
    assert built["network_flags"] == 1 << 1 and built["builder_flags"] == set() and built["pinned"] == []


def test_backend_runs_each_batch_on_its_profile_with_the_engine_dtypes(o1_artifact, tmp_path):
    from fastrank.reranker import Reranker

    trt = make_tensorrt("10.5.0", input_dtype=np.int32)
    build_engine(o1_artifact / "model.onnx", tmp_path / "e.plan", PROFILES, GPU_RUNGS["fp32"], INPUTS, trt=trt)
    backend = trt_backend.TensorRTBackend(tmp_path / "e.plan", INPUTS, PROFILES, trt=trt, io=HostIO())
    assert backend.describe()["input_dtypes"] == {n: "int32" for n in INPUTS} and backend.max_batch == 4
    assert backend.warmup() == 2  # each profile runs once, at its opt shape
    (context,) = trt.engines[0].contexts  # one context: a context's static memory is the largest profile's
    assert context.runs == [(0, (4, 16)), (1, (4, 48))] and context.switches == [1]
    context.runs.clear()
    reranker = Reranker(o1_artifact, num_threads=1, batch_size=4)
    encoded, _ = reranker.encode(PAIRS * 3)  # every copy scored (logits() would score each distinct pair once)
    reference = reranker.run(encoded)
    reranker.backend = backend
    np.testing.assert_allclose(reranker.run(encoded), reference, atol=1e-5)
    runs = [run for engine in trt.engines for context in engine.contexts for run in context.runs]
    assert {profile for profile, _ in runs} == {0, 1}  # short pairs on the short profile, long ones on the other
    assert all(profile == pick_profile(PROFILES, rows, width) for profile, (rows, width) in runs)
    assert len(context.switches) <= 3  # length-sorted batches: the profile changes rarely, not per batch
    with pytest.raises(ValueError, match="no optimization profile covers batch 5"):
        backend.logits({n: np.ones((5, 8), dtype=np.int64) for n in INPUTS})
    with pytest.raises(ModelLoadError, match="2 optimization profiles; the manifest lists 1"):
        trt_backend.TensorRTBackend(tmp_path / "e.plan", INPUTS, PROFILES[:1], trt=trt, io=HostIO())
    with pytest.raises(ModelLoadError, match="built for another GPU or TensorRT"):
        trt_backend.TensorRTBackend(tmp_path / "e.plan", INPUTS, PROFILES, trt=make_tensorrt("10.6.0"), io=HostIO())


def test_export_ladder_on_tensorrt10_keeps_the_first_rung_that_passes(tiny_model_dir, tmp_path, on_fake_gpu):
    from fastrank.reranker import Reranker

    trt = on_fake_gpu("10.5.0")
    manifest = export_tensorrt(str(tiny_model_dir), tmp_path / "out", max_batch=8, num_profiles=2)
    section = manifest["tensorrt"]
    (engine,) = section["engines"]
    assert [(t["rung"], t["passed"], bool(t["failures"])) for t in engine["ladder"]] == [
        ("fp16", False, True), ("fp16-fp32-sensitive", True, False)]
    assert all(set(t) == {"rung", "passed", "failures"} for t in engine["ladder"])  # parity once, in the engine
    assert any("max_abs_logit" in f for f in engine["ladder"][0]["failures"])
    assert engine["rung"] == "fp16-fp32-sensitive" and engine["compute_capability"] == "9.0"
    assert engine["layers_pinned_fp32"] > 0 and not engine["parity_failed"]
    assert {rows for rows, _ in engine["parity"]["shapes"]} >= {1, 3, 8}  # the CPU export's batch configurations
    files = sorted(p.name for p in (tmp_path / "out" / "tensorrt").iterdir())
    assert files == [engine_file("9.0", "10.5.0", "fp16-fp32-sensitive"), "timing-sm9.0-trt10.5.0.cache"]
    assert len(section["profiles"]) == 2 and section["profiles"][-1]["max_seq"] >= 64
    assert [b["builder_flags"] for b in trt.built] == [{"FP16"}, {"FP16", "OBEY_PRECISION_CONSTRAINTS"}]

    auto = Reranker(tmp_path / "out", num_threads=1)  # the engine fits this (pretend) GPU and TensorRT
    assert auto.backend.name == "tensorrt" and auto.batch_size == 8  # capped at the profiles' batch
    onnx = Reranker(tmp_path / "out", backend="onnx", num_threads=1)
    np.testing.assert_allclose(auto.logits(PAIRS), onnx.logits(PAIRS), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size=16 is above the largest batch the tensorrt backend"):
        Reranker(tmp_path / "out", batch_size=16)

    from fastrank.serve.app import ServeConfig, create_app

    trt.engines.clear()
    create_app(ServeConfig(model=str(tmp_path / "out")))  # the service warms every profile before taking traffic
    (served,) = trt.engines
    assert [len(c.runs) for c in served.contexts] == [len(section["profiles"])]


def test_export_ladder_on_tensorrt11_uses_the_mixed_precision_onnx(tiny_model_dir, tmp_path, on_fake_gpu):
    trt = on_fake_gpu("11.1.0")
    manifest = export_tensorrt(str(tiny_model_dir), tmp_path / "out", max_batch=8, num_profiles=2)
    ladder = manifest["tensorrt"]["engines"][0]["ladder"]
    assert [(t["rung"], bool(t["failures"])) for t in ladder] == [("fp16", True), ("fp16-fp32-sensitive", False)]
    assert [b["noisy"] for b in trt.built] == [True, False]  # plain fp16 ONNX has fp16 LayerNorm weights
    assert all(b["builder_flags"] == set() and b["network_flags"] == 1 << 1 for b in trt.built)
    assert manifest["tensorrt"]["engines"][0]["parity"]["max_abs_logit"] < 2e-2

    manifest = export_tensorrt(str(tiny_model_dir), tmp_path / "bf16", ladder=("bf16", "fp32"), max_batch=8)
    ladder = manifest["tensorrt"]["engines"][0]["ladder"]
    assert ladder[0]["rung"] == "bf16" and "bf16 ONNX" in ladder[0]["skipped"]
    assert manifest["tensorrt"]["engines"][0]["rung"] == "fp32"


def test_export_parity_failure_is_an_error_unless_allowed(tiny_model_dir, tmp_path, on_fake_gpu):
    on_fake_gpu("10.5.0")
    with pytest.raises(ParityError, match="no TensorRT rung passed verification: fp16: max_abs_logit"):
        export_tensorrt(str(tiny_model_dir), tmp_path / "out", ladder=("fp16",), max_batch=8)
    assert not (tmp_path / "out").exists()  # nothing half-written
    manifest = export_tensorrt(str(tiny_model_dir), tmp_path / "out", ladder=("fp16",), max_batch=8,
                               allow_parity_failure=True)
    assert manifest["tensorrt"]["engines"][0]["rung"] == "fp16" and manifest["tensorrt"]["engines"][0]["parity_failed"]
    shutil.rmtree(tmp_path / "out")
    with pytest.raises(ValueError, match="unknown GPU rungs"):
        export_tensorrt(str(tiny_model_dir), tmp_path / "out", ladder=("int4",))


def test_cli_export_tensorrt_and_a_triton_repository_of_the_engine(tiny_model_dir, tmp_path, on_fake_gpu):
    from typer.testing import CliRunner

    from fastrank.cli import app

    on_fake_gpu("10.5.0")
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(tmp_path / "trt"),
                                      "--format", "tensorrt", "--max-batch-size", "8",
                                      "--tensorrt-rungs", "fp16, fp16-fp32-sensitive", "--profiles", "2"])
    assert result.exit_code == 0, result.output
    assert "TensorRT engine engine-sm90-trt10.5.0-fp16-fp32-sensitive.plan: rung fp16-fp32-sensitive" in result.output
    assert "TensorRT fp16 failed: max_abs_logit" in result.output
    assert "export: fp16: building the engine for sm9.0 with TensorRT 10.5.0" in result.output  # progress, stderr
    assert "export: fp16-fp32-sensitive: passed verification" in result.output
    result = CliRunner().invoke(app, ["export", str(tmp_path / "trt"), "--out", str(tmp_path / "repo"),
                                      "--format", "triton", "--triton-backend", "tensorrt", "--max-batch-size", "8"])
    assert result.exit_code == 0, result.output
    engine = tmp_path / "trt" / "tensorrt" / engine_file("9.0", "10.5.0", "fp16-fp32-sensitive")
    assert (tmp_path / "repo" / "fastrank_model" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    config = (tmp_path / "repo" / "fastrank_model" / "config.pbtxt").read_text()
    profiles = json.loads((tmp_path / "trt" / "fastrank.json").read_text())["tensorrt"]["profiles"]
    assert len(profiles) <= 2 and all(p["max_batch"] == 8 for p in profiles)
    listed = ", ".join(f'"{i}"' for i in range(len(profiles)))
    assert 'platform: "tensorrt_plan"' in config and f"profile: [ {listed} ]" in config  # every profile, one group
    onnx = CliRunner().invoke(app, ["export", str(tmp_path / "trt"), "--out", str(tmp_path / "repo2"), "--format",
                                    "triton", "--triton-kind", "KIND_CPU"])
    assert onnx.exit_code == 0, onnx.output
    assert "kind: KIND_CPU" in (tmp_path / "repo2" / "fastrank_model" / "config.pbtxt").read_text()
    ignored = CliRunner().invoke(app, ["export", str(tmp_path / "trt"), "--out", str(tmp_path / "repo3"), "--format",
                                       "triton", "--precision", "int8"])
    message = " ".join(ignored.output.replace("│", " ").split())
    assert ignored.exit_code == 2 and "a Triton repository serves an exported artifact as it is" in message
    named = CliRunner().invoke(app, ["export", str(tmp_path / "trt"), "--out", str(tmp_path / "repo4"), "--format",
                                     "triton", "--triton-backend", "tensorrt", "--max-batch-size", "8",
                                     "--triton-engine", "9.0/10.5.0"])
    assert named.exit_code == 0, named.output
    assert (tmp_path / "repo4" / "fastrank_model" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    onnx_engine = CliRunner().invoke(app, ["export", str(tmp_path / "trt"), "--out", str(tmp_path / "repo6"),
                                           "--format", "triton", "--triton-engine", "9.0/10.5.0"])
    assert onnx_engine.exit_code == 2 and "--triton-engine picks the TensorRT engine of --triton-backend tensorrt" in \
        " ".join(onnx_engine.output.replace("│", " ").split())
    bogus = CliRunner().invoke(app, ["export", str(tmp_path / "trt"), "--out", str(tmp_path / "repo5"), "--format",
                                     "triton", "--triton-backend", "tensorrt", "--triton-engine", "hopper"])
    bogus_message = " ".join(bogus.output.replace("│", " ").split())
    assert bogus.exit_code == 2 and "like 9.0/10.5.0, got 'hopper'" in bogus_message
    assert not (tmp_path / "repo5").exists()
    assert "--format triton does not read --precision: --precision is for --format onnx" in message
    for args, stray in ((["--profiles", "5", "--tensorrt-rungs", "bogus"], "--tensorrt-rungs, --profiles"),
                        (["--triton-kind", "KIND_TPU", "--max-batch-size", "3"], "--max-batch-size, --triton-kind")):
        refused = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(tmp_path / "x"), *args])
        message = " ".join(refused.output.replace("│", " ").split())
        assert refused.exit_code == 2 and f"--format onnx does not read {stray}" in message, message
    assert not (tmp_path / "x").exists()
    bad = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(tmp_path / "x"), "--format", "tensorrt",
                                   "--profiles", "-5"])
    assert bad.exit_code == 2 and "must be >= 1" in bad.output


def test_auto_falls_back_to_onnx_when_a_matching_engine_does_not_load(tiny_model_dir, tmp_path, on_fake_gpu,
                                                                      monkeypatch, caplog):
    import logging

    from fastrank.reranker import Reranker

    on_fake_gpu("10.5.0")
    export_tensorrt(str(tiny_model_dir), tmp_path / "out", ladder=("fp32",), max_batch=8)
    monkeypatch.setitem(sys.modules, "tensorrt", make_tensorrt("10.6.0"))  # the runtime refuses the 10.5.0 engine
    with caplog.at_level(logging.WARNING):
        reranker = Reranker(tmp_path / "out", num_threads=1)
    assert reranker.backend.name == "onnx" and "instead of a TensorRT engine: TensorRT could not load" in caplog.text
    assert reranker.logits(PAIRS).shape == (len(PAIRS), 1)
    with pytest.raises(ModelLoadError, match="TensorRT could not load"):
        Reranker(tmp_path / "out", backend="tensorrt")  # asked for by name: no silent fallback


def test_one_artifact_carries_engines_for_several_gpus(tiny_model_dir, tmp_path, on_fake_gpu, monkeypatch):
    from fastrank.export.manifest import read_manifest, write_manifest
    from fastrank.reranker import Reranker

    on_fake_gpu("10.5.0")  # built first on an sm90 GPU
    art = tmp_path / "art"
    export_tensorrt(str(tiny_model_dir), art, ladder=("fp32",), max_batch=8)
    onnx_model = (art / "model.onnx").read_bytes()
    monkeypatch.setattr(trt_backend, "gpu_info", lambda: ("8.0", "10.5.0"))  # then on an sm80 one, into the same
    manifest = export_tensorrt(str(art), art, ladder=("fp16", "fp16-fp32-sensitive"))
    engines = manifest["tensorrt"]["engines"]
    assert [(e["compute_capability"], e["rung"]) for e in engines] == [("9.0", "fp32"), ("8.0", "fp16-fp32-sensitive")]
    assert engines[1]["parity"]["max_abs_logit"] < 1e-5  # verified against the artifact's ONNX model
    assert (art / "model.onnx").read_bytes() == onnx_model
    assert sorted(p.name for p in (art / "tensorrt").iterdir()) == sorted(
        [engine_file("9.0", "10.5.0", "fp32"), engine_file("8.0", "10.5.0", "fp16-fp32-sensitive"),
         "timing-sm9.0-trt10.5.0.cache", "timing-sm8.0-trt10.5.0.cache"])
    for cc, rung in (("8.0", "fp16-fp32-sensitive"), ("9.0", "fp32")):  # each GPU loads its own engine
        monkeypatch.setattr(trt_backend, "gpu_info", lambda cc=cc: (cc, "10.5.0"))
        assert Reranker(art, num_threads=1).describe()["engine"] == engine_file(cc, "10.5.0", rung)

    manifest = export_tensorrt(str(art), art, ladder=("fp32",))  # a rebuild on sm90 replaces sm90's engine only
    assert [(e["compute_capability"], e["rung"]) for e in manifest["tensorrt"]["engines"]] == [
        ("8.0", "fp16-fp32-sensitive"), ("9.0", "fp32")]
    assert len(list((art / "tensorrt").glob("*.plan"))) == 2

    int8 = tmp_path / "int8"
    shutil.copytree(art, int8)
    write_manifest(int8, {**read_manifest(int8), "precision": "int8"})
    with pytest.raises(Exception, match="onnx int8 artifact; TensorRT engines are built from a fp32 ONNX"):
        export_tensorrt(str(int8), tmp_path / "x")


def test_an_engine_added_by_another_machine_during_a_build_is_kept(tiny_model_dir, tmp_path, on_fake_gpu,
                                                                   monkeypatch):
    """Two GPU machines adding engines to one shared artifact at once: the one that finishes last re-reads the
    artifact under a lock and keeps the other's engine (it copied the artifact before building and replaced it
    after, so one engine was lost while both exports reported success)."""
    import fastrank.export.tensorrt as trt_export
    from fastrank.export.manifest import read_manifest

    on_fake_gpu("10.5.0")
    art = tmp_path / "art"
    export_tensorrt(str(tiny_model_dir), art, ladder=("fp32",), max_batch=8)
    build = trt_export.build_engine
    others = []

    def build_while_another_adds(*args, **kwargs):
        info = build(*args, **kwargs)
        if not others:  # while sm80's engine builds, an sm86 machine adds its own and finishes first
            others.append("8.6")
            monkeypatch.setattr(trt_backend, "gpu_info", lambda: ("8.6", "10.5.0"))
            export_tensorrt(str(art), art, ladder=("fp32",))
            monkeypatch.setattr(trt_backend, "gpu_info", lambda: ("8.0", "10.5.0"))
        return info

    monkeypatch.setattr(trt_export, "build_engine", build_while_another_adds)
    monkeypatch.setattr(trt_backend, "gpu_info", lambda: ("8.0", "10.5.0"))
    manifest = export_tensorrt(str(art), art, ladder=("fp32",))
    engines = sorted(e["compute_capability"] for e in manifest["tensorrt"]["engines"])
    assert engines == ["8.0", "8.6", "9.0"] and manifest == read_manifest(art)
    assert sorted(p.name for p in (art / "tensorrt").glob("*.plan")) == sorted(
        engine_file(cc, "10.5.0", "fp32") for cc in ("8.0", "8.6", "9.0"))
    monkeypatch.setattr(trt_export, "build_engine", build)  # another model exported over it replaces it whole
    monkeypatch.setattr(trt_backend, "gpu_info", lambda: ("9.0", "10.5.0"))
    replaced = export_tensorrt(str(tiny_model_dir), art, ladder=("fp32",), max_batch=8)
    assert [e["compute_capability"] for e in replaced["tensorrt"]["engines"]] == ["9.0"]


def test_an_artifact_with_onnxruntime_fused_ops_is_refused_before_any_build(tiny_model_dir, tmp_path, on_fake_gpu):
    from fastrank import CrossEncoder
    from fastrank.export import export_model

    trt = on_fake_gpu("10.5.0")
    fused = tmp_path / "o2"  # the CLI's default level: Attention / SkipLayerNormalization, which TensorRT can't parse
    export_model(CrossEncoder(tiny_model_dir, max_length=64, device="cpu"), fused, optimize="O2", num_threads=1)
    with pytest.raises(FastrankError, match=r"fused ops \(com.microsoft:.*optimize level O2.*--optimize O1"):
        export_tensorrt(str(fused), tmp_path / "out", ladder=("fp32",))
    assert trt.built == [] and not (tmp_path / "out").exists()
    with pytest.raises(FastrankError, match="TensorRT could not parse .*UNSUPPORTED_NODE: no importer for com.micro"):
        build_engine(fused / "model.onnx", tmp_path / "e.plan", PROFILES, GPU_RUNGS["fp32"], INPUTS, trt=trt)


def test_fp32_pinning_skips_layers_with_integer_or_shape_outputs(tmp_path):
    """A node named like a sensitive layer, or in the head, that makes a shape tensor is not pinned: TensorRT
    refuses fp32 there and the build would fail (the stand-in fails it too)."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["h"], name="/enc/LayerNorm/LayerNorm"),
             helper.make_node("Shape", ["h"], ["s"], name="/enc/LayerNorm/Shape"),
             helper.make_node("Reshape", ["h", "s"], ["r"], name="/classifier/Reshape"),
             helper.make_node("Softmax", ["r"], ["logits"], name="/classifier/Softmax")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor("scale", TensorProto.FLOAT, [4], [1.0] * 4),
                               helper.make_tensor("bias", TensorProto.FLOAT, [4], [0.0] * 4)])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    trt = make_tensorrt("10.5.0")
    info = build_engine(tmp_path / "m.onnx", tmp_path / "e.plan", [Profile(1, 2, 4, 4, 4, 4)],
                        GPU_RUNGS["fp16-fp32-sensitive"], ["x"], trt=trt)
    assert trt.built[-1]["pinned"] == ["/enc/LayerNorm/LayerNorm", "/classifier/Reshape", "/classifier/Softmax"]
    assert info["layers_pinned_fp32"] == 3


def test_backend_scores_concurrent_callers_one_batch_at_a_time(o1_artifact, tmp_path):
    """Callers on several threads (a web app's workers) share the engine's buffers: each must get its own logits."""
    from concurrent.futures import ThreadPoolExecutor

    from fastrank.reranker import Reranker

    trt = make_tensorrt("10.5.0", delay=0.01)
    build_engine(o1_artifact / "model.onnx", tmp_path / "e.plan", PROFILES, GPU_RUNGS["fp32"], INPUTS, trt=trt)
    reranker = Reranker(o1_artifact, num_threads=1, batch_size=4)
    batches = [[PAIRS[i % 4], PAIRS[(i + 1) % 4], (f"query {i}", f"document number {i}")] for i in range(12)]
    expected = [reranker.logits(b) for b in batches]
    reranker.backend = trt_backend.TensorRTBackend(tmp_path / "e.plan", INPUTS, PROFILES, trt=trt, io=HostIO())
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(reranker.logits, batches))
    for want, have in zip(expected, got):
        np.testing.assert_allclose(have, want, atol=1e-5)


def test_triton_repository_of_an_int32_engine_passes_int32_token_ids(tiny_model_dir, tmp_path, on_fake_gpu,
                                                                      monkeypatch):
    """An engine that takes int32 ids (as a parser may make it) gets int32 in its Triton config and from the
    tokenizer model, so the ensemble's two steps agree (Triton refuses mismatched types)."""
    from fastrank.export.triton import write_repository

    on_fake_gpu("10.5.0")  # the stand-in engine takes int32 token ids
    manifest = export_tensorrt(str(tiny_model_dir), tmp_path / "trt", ladder=("fp32",), max_batch=8)
    assert manifest["tensorrt"]["engines"][0]["input_dtypes"] == {n: "int32" for n in INPUTS}
    repo = write_repository(tmp_path / "trt", tmp_path / "repo", backend="tensorrt", max_batch_size=8)
    for model in ("fastrank_model", "fastrank_tokenizer"):
        config = (repo / model / "config.pbtxt").read_text()
        assert config.count("TYPE_INT32") == 3 and "TYPE_INT64" not in config
    tokenizer = load_tokenizer_model(repo, monkeypatch)
    request = {"QUERY": Tensor("QUERY", np.array([b"capital of france"], dtype=object)),
               "DOCUMENT": Tensor("DOCUMENT", np.array([b"paris"], dtype=object))}
    (outputs,) = tokenizer.execute([request])
    assert {t.name: t.array.dtype for t in outputs} == {n: np.dtype(np.int32) for n in INPUTS}
    # written on a machine without the serving GPU: the engine is named by the Triton server's GPU and TensorRT
    monkeypatch.setattr(trt_backend, "gpu_info", lambda: (None, None))
    with pytest.raises(FastrankError, match="TensorRT is not installed.*--triton-engine SM/VERSION"):
        write_repository(tmp_path / "trt", tmp_path / "repo2", backend="tensorrt", max_batch_size=8)
    with pytest.raises(FastrankError, match="no engine for this GPU \(sm8.0\) with TensorRT 10.5.0"):
        write_repository(tmp_path / "trt", tmp_path / "repo2", backend="tensorrt", max_batch_size=8,
                         engine_for=("8.0", "10.5.0"))
    elsewhere = write_repository(tmp_path / "trt", tmp_path / "repo2", backend="tensorrt", max_batch_size=8,
                                 engine_for=("9.0", "10.5.0"))
    engine = manifest["tensorrt"]["engines"][0]["file"]
    assert (elsewhere / "fastrank_model" / "1" / "model.plan").read_bytes() == \
        (tmp_path / "trt" / "tensorrt" / engine).read_bytes()
