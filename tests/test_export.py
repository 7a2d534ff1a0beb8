"""Export to ONNX / int8 / fp16 / bf16 with verification: parity numbers, fused graphs, manifest, atomic failure."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from fastrank.errors import FastrankError, ModelLoadError, ParityError  # noqa: E402
from fastrank.export import cpu_features, export_model, read_manifest  # noqa: E402
from fastrank.export.onnx import (  # noqa: E402
    AUTO_LADDER,
    INT8_CONFIGS,
    KEEP_FP32,
    RUNGS,
    ffn_output_nodes,
    last_layer_nodes,
    quantize_int8,
)

FUSED = {"Attention", "EmbedLayerNormalization", "BiasGelu"}


def op_types(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def fp32_o3(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "fp32-o3"
    return out, export_model(tiny_model_dir, out, precision="fp32", optimize="O3", num_threads=1)


def test_fp32_parity_at_several_shapes(fp32_o3, tiny_model_dir):
    out, manifest = fp32_o3
    parity = manifest["parity"]
    assert parity["verified"] and parity["passed"] and parity["failures"] == []
    assert parity["max_abs_logit"] <= 1e-4
    assert parity["discordant_pairs"] == 0 and parity["rankings_identical"] == 1.0
    assert parity["kendall_tau_min"] == 1.0 and parity["top1_agreement"] == 1.0
    assert parity["delta_ndcg@10"] == 0.0 and parity["delta_map"] == 0.0
    shapes = {tuple(s) for s in parity["shapes"]}
    assert len(shapes) >= 6 and tuple(manifest["traced_shape"]) not in shapes or len(shapes) > 1
    assert {b for b, _ in shapes} >= {1, 3} and max(b for b, _ in shapes) > 3
    assert len({s for _, s in shapes}) >= 4  # several padded sequence lengths, all multiples of 8
    assert all(s % 8 == 0 for _, s in shapes)

    # Independently of the manifest: the artifact against PyTorch on pairs the verification set never saw.
    from fastrank import CrossEncoder, Reranker

    pairs = [("rare query words", "doc " * n + "end") for n in (1, 7, 30, 90, 200)] + [("x", "")]
    torch_logits = CrossEncoder(tiny_model_dir, device="cpu").predict(pairs, activation="identity", batch_size=1)
    for batch_size in (1, 2, 6):
        onnx_logits = Reranker(out, num_threads=1, batch_size=batch_size).predict(pairs, activation="identity")
        assert np.abs(onnx_logits - torch_logits).max() <= 1e-4


def test_o3_graph_is_fused_and_o0_is_plain(fp32_o3, tiny_model_dir, tmp_path):
    out, manifest = fp32_o3
    ops = op_types(out / "model.onnx")
    assert FUSED <= set(ops), ops
    # 2 layers: 1 attention, 2 skip-LN each, which the optimizer fuses and the CPU rewrite unfuses again
    assert ops["Attention"] == 2 and "SkipLayerNormalization" not in ops and ops["LayerNormalization"] == 4
    assert manifest["fused_ops"]["Attention"] == 2 and manifest["fused_ops"]["SkipLayerNormalization"] == 4
    assert manifest["optimize_applied"] == "O3" and manifest["rewrites"] == {"skip_layer_norm_unfused": 4}

    plain = export_model(tiny_model_dir, tmp_path / "o0", optimize="O0", num_threads=1)
    plain_ops = op_types(tmp_path / "o0" / "model.onnx")
    assert not FUSED & set(plain_ops)
    assert plain_ops["LayerNormalization"] == 5  # opset 17: embeddings + 2 per layer, one op each
    assert plain["fused_ops"] == {} and plain["parity"]["max_abs_logit"] <= 1e-4


def test_manifest_fields(fp32_o3, tiny_model_dir):
    out, manifest = fp32_o3
    assert read_manifest(out) == json.loads((out / "fastrank.json").read_text())
    assert manifest["manifest_version"] == 1 and manifest["format"] == "onnx" and manifest["precision"] == "fp32"
    assert manifest["opset"] == 17 and manifest["optimize"] == "O3" and manifest["rung"] == "fp32"
    assert manifest["input_names"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["output_name"] == "logits" and manifest["num_labels"] == 1
    assert manifest["max_length"] == 512 and manifest["activation"] == "sigmoid"
    profile = manifest["shape_profile"]  # what the graph takes (dynamic axes) and what verification ran
    assert profile["dynamic"] is True and profile["batch"] == [1, None] and profile["sequence"] == [1, 512]
    ran = manifest["parity"]["shapes"]
    assert profile["verified"] == {"batch": [min(b for b, _ in ran), max(b for b, _ in ran)],
                                   "sequence": [min(n for _, n in ran), max(n for _, n in ran)]}
    assert profile["verified"]["batch"][1] > 1 and profile["verified"]["sequence"][1] > 8
    assert manifest["cpu_features"] == cpu_features()
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        digest.update(name.encode())
        digest.update((tiny_model_dir / name).read_bytes())
    assert manifest["source_checkpoint_sha256"] == digest.hexdigest()
    assert {"model.onnx", "tokenizer.json", "config.json", "fastrank.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch files shipped
    # the ONNX graph: dynamic batch and sequence axes, fp32 logits
    graph = onnx.load(str(out / "model.onnx")).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert dims == [["batch", "sequence"]] * 3
    assert graph.output[0].name == "logits" and graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_newer_or_broken_manifest_is_a_clear_error(fp32_o3, tmp_path):
    out, manifest = fp32_o3
    from fastrank.export import MANIFEST_VERSION

    (tmp_path / "fastrank.json").write_text(json.dumps({**manifest, "manifest_version": MANIFEST_VERSION + 1}))
    with pytest.raises(ModelLoadError, match=f"manifest_version {MANIFEST_VERSION + 1}, written by a newer fastrank"
                                             r".*update its checkout \(git pull\) and reinstall it, pip install -e"):
        read_manifest(tmp_path)  # not pip install -U fastrank: PyPI's fastrank is another project
    (tmp_path / "fastrank.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_int8_within_bound(tiny_model_dir, tmp_path):
    manifest = export_model(tiny_model_dir, tmp_path / "int8", precision="int8", num_threads=1)
    parity, quant = manifest["parity"], manifest["quantization"]
    assert manifest["precision"] == "int8" and parity["passed"]
    assert parity["delta_ndcg@10"] <= 0.01 and parity["bounds"] == {"delta_ndcg@10": 0.01}
    assert 0 < parity["max_abs_logit"] < 0.2  # quantized: not bit-exact, but close
    assert quant["profile"] == cpu_features()["int8_profile"]
    assert quant["reduce_range"] == INT8_CONFIGS[quant["profile"]]["reduce_range"]
    ops = op_types(tmp_path / "int8" / "model.onnx")
    # attention unfused: 2 layers x 6 projections (Q, K, V, output, FFN in, FFN out) + pooler + classifier, each
    # with per-row input scales; the 2 attention products per layer stay fp32 MatMuls
    assert ops["MatMulIntegerToFloat"] == 14 == quant["per_row_matmuls"]
    assert ops["MatMul"] == 4 == quant["fp32_activation_products"] and ops["Softmax"] == 2
    assert not {"QAttention", "Attention", "DynamicQuantizeLinear", "MatMulInteger", "SkipLayerNormalization"} & set(ops)
    assert quant["activation_scales"] == "per row (token): no scale depends on the batch"
    assert "Attention" not in manifest["fused_ops"] and manifest["fused_ops"]["BiasGelu"] == 2

    # so a pair's logits do not depend on which pairs share its batch (fp32 noise from other shapes aside)
    from fastrank import Reranker

    pairs = [("rare query words", "doc " * n + "end") for n in (1, 7, 30, 90, 200)] + [("x", "")]
    alone = Reranker(tmp_path / "int8", num_threads=1, batch_size=1).predict(pairs, activation="identity")
    batched = Reranker(tmp_path / "int8", num_threads=1, batch_size=6).predict(pairs, activation="identity")
    assert np.abs(alone - batched).max() <= 1e-4


def test_keep_last_layer_fp32(fp32_o3, tmp_path):
    out, _ = fp32_o3
    kept = last_layer_nodes(onnx.load(str(out / "model.onnx")))
    assert kept and any(name.startswith("Attention") for name in kept)
    info = quantize_int8(out / "model.onnx", tmp_path / "q.onnx", {"profile": "avx2", **INT8_CONFIGS["avx2"]}, True)
    nodes = {n.name: n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert info["kept_fp32_nodes"] == kept
    assert all(nodes[name] in ("Attention", "MatMul") for name in kept if name in nodes)  # still fp32 ops
    assert nodes["Attention_1"] == "Attention" and nodes["/inner/classifier/Gemm_MatMul"] == "MatMul"
    assert sum(name in nodes for name in kept) >= 5  # attention, 3 MatMuls of the last layer, pooler, classifier
    assert "QAttention" in nodes.values()  # the first layer is quantized


def test_keep_early_ffn_out_fp32(fp32_o3, tmp_path):
    out, _ = fp32_o3
    ffn = ffn_output_nodes(onnx.load(str(out / "model.onnx")))
    assert [name.split("/")[-3:] for name in ffn] == [["output", "dense", "MatMul"]] * 2
    assert "layer.0/" in ffn[0] and "layer.1/" in ffn[1]  # one per layer, in layer order
    rung = RUNGS["int8-early-ffn-out-fp32"]
    config = {"profile": "avx512_vnni", **INT8_CONFIGS["avx512_vnni"]}
    info = quantize_int8(out / "model.onnx", tmp_path / "q.onnx", config, rung.keep_last_layer_fp32, rung.keep_fp32)
    head = ["/inner/bert/pooler/dense/Gemm_MatMul", "/inner/classifier/Gemm_MatMul"]
    assert [k["role"] for k in info["kept_fp32"]] == ["early_ffn_out", "head"]
    # the first three layers' FFN output projections: both of the tiny model's two layers
    assert info["kept_fp32"][0] == {"role": "early_ffn_out", "nodes": ffn, "why": KEEP_FP32["early_ffn_out"]}
    assert set(ffn) <= set(info["kept_fp32_nodes"]) and set(head) <= set(info["kept_fp32_nodes"])

    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    nodes = {n.name: n for n in graph.node}
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    for name in [*ffn, *head]:  # kept: still a float MatMul with its float weight
        assert nodes[name].op_type == "MatMul" and nodes[name].input[1] in floats, name
    ops = Counter(n.op_type for n in graph.node)
    assert ops["MatMul"] == 4 and ops["QAttention"] == 2  # everything else is quantized
    assert ops["MatMulIntegerToFloat"] == 4  # 2 layers x 3 projections, less the 2 kept, scaled per row


def test_early_ffn_out_rung_in_the_ladder(tiny_model_dir, tmp_path, monkeypatch):
    assert AUTO_LADDER.index("int8") < AUTO_LADDER.index("int8-early-ffn-out-fp32") < AUTO_LADDER.index("bf16")
    monkeypatch.setattr("fastrank.export.onnx.AUTO_LADDER", ("int8-early-ffn-out-fp32", "fp32"))
    manifest = export_model(tiny_model_dir, tmp_path / "auto", precision="auto", optimize="O3", num_threads=1)
    assert manifest["rung"] == "int8-early-ffn-out-fp32" and manifest["precision"] == "int8"
    assert manifest["parity"]["passed"] and 0 < manifest["parity"]["max_abs_logit"] < 0.2
    kept = {k["role"]: k["nodes"] for k in manifest["quantization"]["kept_fp32"]}
    graph = onnx.load(str(tmp_path / "auto" / "model.onnx")).graph
    nodes = {n.name: n.op_type for n in graph.node}
    assert len(kept["early_ffn_out"]) == 2 and all(nodes[n] == "MatMul" for n in kept["early_ffn_out"])
    assert "MatMulIntegerToFloat" in nodes.values() and "QAttention" not in nodes.values()  # attention unfused


def test_fp16_keeps_fp32_io(tiny_model_dir, tmp_path):
    manifest = export_model(tiny_model_dir, tmp_path / "fp16", precision="fp16", optimize="O3", num_threads=1)
    assert manifest["optimize_applied"] == "O2"  # O3's CPU fusions are not applied to a GPU graph
    graph = onnx.load(str(tmp_path / "fp16" / "model.onnx")).graph
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    parity = manifest["parity"]
    if parity["verified"]:  # onnxruntime's CPU provider ran it
        assert parity["max_abs_logit"] <= 2e-2 and parity["delta_ndcg@10"] <= 0.002
    else:
        assert "not verified" in parity["reason"]


def test_failed_verification_writes_nothing(tiny_model_dir, tmp_path):
    target = tmp_path / "artifact"
    target.mkdir()
    (target / "fastrank.json").write_text("previous artifact")
    with pytest.raises(ParityError) as info:
        export_model(tiny_model_dir, target, bounds={"fp32": {"max_abs_logit": -1.0, "discordant_pairs": -1}},
                     num_threads=1)
    message = str(info.value)
    assert "max_abs_logit = " in message and "> bound -1" in message and "discordant_pairs = 0 > bound -1" in message
    assert [p.name for p in tmp_path.iterdir()] == ["artifact"]  # no temp dir left behind
    assert [p.name for p in target.iterdir()] == ["fastrank.json"]  # the previous artifact is untouched

    manifest = export_model(tiny_model_dir, target, bounds={"fp32": {"max_abs_logit": -1.0}},
                            allow_parity_failure=True, num_threads=1)
    assert manifest["parity_failed"] and manifest["allow_parity_failure"]
    assert read_manifest(target)["parity"]["failures"][0].startswith("max_abs_logit")


def test_auto_ladder_records_why(tiny_model_dir, tmp_path):
    shipped = export_model(tiny_model_dir, tmp_path / "auto", precision="auto", num_threads=1)
    assert shipped["rung"] == "int8" and shipped["requested_precision"] == "auto"

    # the tiny random model's near-tied scores make bf16's ranking change model-specific: loosen only that bound
    manifest = export_model(tiny_model_dir, tmp_path / "auto2", precision="auto", num_threads=1,
                            bounds={"int8": {"delta_ndcg@10": -1.0}, "bf16": {"delta_ndcg@10": 0.05}})
    ladder = {entry["rung"]: entry for entry in manifest["ladder"]}
    for rung in ("int8", "int8-early-ffn-out-fp32"):
        assert ladder[rung]["passed"] is False and "delta_ndcg@10" in ladder[rung]["failures"][0]
    if cpu_features()["bf16"]:
        assert manifest["rung"] == "bf16" and manifest["format"] == "torch"
        assert manifest["parity"]["delta_ndcg@10"] <= 0.05
        assert (tmp_path / "auto2" / "model.safetensors").is_file()
        assert "serves it as **torch bf16**" in (tmp_path / "auto2" / "README.md").read_text()
        assert not (tmp_path / "auto2" / "model.onnx").exists()
    else:
        assert "bf16 instructions" in ladder["bf16"]["skipped"] and manifest["rung"] == "fp32"


def test_cpu_features_choose_int8_profile():
    vnni = cpu_features("flags\t: fpu avx2 avx512f avx512bw avx512_vnni avx512_bf16\n", "x86_64")
    assert vnni["int8_profile"] == "avx512_vnni" and vnni["bf16"]
    assert cpu_features("flags : fpu avx2 fma\n", "x86_64")["int8_profile"] == "avx2"
    assert cpu_features("flags : avx2 avx512f avx512bw\n", "x86_64")["int8_profile"] == "avx512"
    assert cpu_features("Features : fp asimd asimddp\n", "aarch64")["int8_profile"] == "arm64"
    assert cpu_features("", "x86_64")["int8_profile"] == "generic"
    assert INT8_CONFIGS["avx2"]["reduce_range"] and not INT8_CONFIGS["avx512_vnni"]["reduce_range"]


def test_bad_arguments(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="precision must be one of"):
        export_model(tiny_model_dir, tmp_path / "x", precision="int4")
    with pytest.raises(ValueError, match="optimize must be one of"):
        export_model(tiny_model_dir, tmp_path / "x", optimize="O9")
    for opset in (13, 99, True):  # 99 reached torch, which printed a 170-line graph dump before its error
        with pytest.raises(ValueError, match=r"opset must be an integer from 17 \(.*\) to 20 \("):
            export_model(tiny_model_dir, tmp_path / "x", opset=opset)
    for bounds, message in (({"fp33": {"max_abs_logit": 1}}, r"unknown precision 'fp33'; accepted: fp32, fp16"),
                            ({"fp32": {"max_abs_logits": 1e-4}}, r"unknown parity number 'max_abs_logits'; accepted: "
                                                                 r"at most max_abs_logit, .*; at least kendall_tau"),
                            ({"fp32": {"max_abs_logit": "1e-4"}}, r"\['max_abs_logit'\] must be a finite number"),
                            ([1], r"bounds must be a dict of precision to \{number: bound\}.*got list")):
        with pytest.raises(ValueError, match=message):
            export_model(tiny_model_dir, tmp_path / "x", bounds=bounds)
    assert not (tmp_path / "x").exists()


def test_an_export_replaces_only_an_output_of_its_own_kind(tiny_model_dir, fp32_o3, tmp_path):
    """``fastrank export ARTIFACT --format triton --out MODEL`` (a slip) deleted the trained checkpoint MODEL: an
    export replaces an artifact, a Triton export a repository, and neither a checkpoint nor each other."""
    import shutil

    from typer.testing import CliRunner

    from fastrank.cli import app
    from fastrank.export.triton import write_repository

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    before = sorted(p.name for p in model.iterdir())
    artifact = tmp_path / "artifact"
    shutil.copytree(fp32_o3[0], artifact)
    refused = r"refusing to replace .*: it holds an? {}, and writing this {} there would delete it"
    with pytest.raises(FastrankError, match=refused.format("checkpoint", "artifact")):
        export_model(tiny_model_dir, model)
    with pytest.raises(FastrankError, match=refused.format("checkpoint", "Triton repository")):
        write_repository(artifact, model)
    with pytest.raises(FastrankError, match=r"it holds an artifact, and writing this Triton repository"):
        write_repository(fp32_o3[0], artifact)
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(model)])
    assert isinstance(result.exception, FastrankError) and "it holds a checkpoint" in str(result.exception)
    assert sorted(p.name for p in model.iterdir()) == before
    repo = write_repository(artifact, tmp_path / "repo")
    with pytest.raises(FastrankError, match=refused.format("Triton repository", "artifact")):
        export_model(tiny_model_dir, repo)
    assert write_repository(artifact, repo) == repo  # its own kind: replaced
    assert export_model(tiny_model_dir, artifact, num_threads=1)["format"] == "onnx"


def test_agreement_bounds_are_lower_bounds(tiny_model_dir, tmp_path):
    """``bounds`` on Kendall tau, top-1 agreement or identical rankings were checked as upper bounds: an fp32 export
    (tau 1) failed ``kendall_tau_min <= 0.99`` and a degraded one would have passed."""
    from fastrank.export.verify import check

    manifest = export_model(tiny_model_dir, tmp_path / "x", bounds={"fp32": {"kendall_tau_min": 0.99,
                                                                              "top1_agreement": 0.5}}, num_threads=1)
    assert manifest["parity"]["kendall_tau_min"] == 1.0 and manifest["parity"]["failures"] == []
    report = {"kendall_tau_min": 0.8, "top1_agreement": 1.0, "max_abs_logit": 0.2, "rankings_identical": 0.5}
    assert check(report, {"kendall_tau_min": 0.9, "top1_agreement": 1.0, "max_abs_logit": 0.1,
                          "rankings_identical": 0.5}) == ["kendall_tau_min = 0.8 < bound 0.9",
                                                          "max_abs_logit = 0.2 > bound 0.1"]


def test_cli_export_json(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from fastrank.cli import app

    data = tmp_path / "verify.jsonl"
    data.write_text(json.dumps({"query": "capital of france", "documents": ["paris", "berlin", "rome is old"],
                                "labels": [1, 0, 0]}) + "\n")
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(tmp_path / "cli"),
                                      "--precision", "fp32", "--optimize", "O2", "--verify-data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads(result.stdout)
    parity = manifest["parity"]
    assert parity["num_pairs"] == 3 + 44  # the built-in long documents too, unlabelled
    assert parity["data"] == f"{data} + builtin long documents (logits and rankings only)"  # the file, named
    assert parity["max_abs_logit"] <= 1e-4 and parity["num_labelled_queries"] == 1
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(tmp_path / "cli2"),
                                      "--format", "tensorrt"])
    assert result.exit_code != 0 and not (tmp_path / "cli2").exists()


@pytest.mark.slow
@pytest.mark.data
def test_parity_on_wikiqa(tiny_model_dir, wikiqa_dir, tmp_path):
    from fastrank.data import read_groups

    groups = [g for g in read_groups(wikiqa_dir / "test.jsonl") if any(y > 0 for y in g.labels)][:40]
    manifest = export_model(tiny_model_dir, tmp_path / "wikiqa", verify_pairs=groups, num_threads=1)
    parity = manifest["parity"]
    assert parity["data"].startswith("caller + builtin") and parity["num_labelled_queries"] == 40
    assert parity["max_abs_logit"] <= 1e-4 and parity["discordant_pairs"] == 0 and parity["delta_ndcg@10"] == 0.0


def test_export_over_its_own_checkpoint_is_refused_before_any_work(tiny_model_dir):
    before = sorted(p.name for p in tiny_model_dir.iterdir())
    with pytest.raises(FastrankError, match="holds the input"):
        export_model(tiny_model_dir, tiny_model_dir, num_threads=1)
    with pytest.raises(FastrankError, match="holds the input"):
        export_model(tiny_model_dir, tiny_model_dir.parent, num_threads=1)
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == before


def test_labelled_short_verify_data_still_checks_long_documents(tiny_model_dir):
    """A graph that is wrong only past 48 tokens passes on short labelled pairs alone; the built-in long documents,
    added without labels, catch it while the metrics stay the caller's."""
    from fastrank import CrossEncoder
    from fastrank.backends.torch_backend import TorchBackend
    from fastrank.export.verify import BOUNDS, normalize_groups, score_groups, verify

    model = CrossEncoder(tiny_model_dir, device="cpu")
    encoder, backend = model.pair_encoder(), TorchBackend(model, "fp32")
    groups, source = normalize_groups([("capital of france", ["paris", "berlin", "rome is old"], [1, 0, 0])])
    assert source.startswith("caller + builtin long documents") and len(groups) == 9
    assert [g.labels is not None for g in groups] == [True] + [False] * 8

    def broken(batch):
        return backend.logits(batch) + 0.5 * (batch["input_ids"].shape[1] > 48)

    def report(chosen):
        reference, _ = score_groups(encoder, backend.logits, chosen, 1, 1)
        return verify(encoder, reference, broken, chosen, "fp32", 1, BOUNDS["fp32"])

    caught = report(groups)
    assert not caught["passed"] and caught["max_abs_logit"] == pytest.approx(0.5, abs=1e-4)
    assert caught["num_labelled_queries"] == 1 and caught["delta_ndcg@10"] == 0.0  # the caller's query alone
    assert report(groups[:1])["passed"]  # what the short pairs alone let through


def test_a_model_trained_with_a_first_stage_prior_is_warned_about(tiny_model_dir, tmp_path, caplog):
    """Such a model's logit is only a correction to the first stage; the artifact serves the logit alone."""
    import logging

    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, device="cpu")
    with caplog.at_level(logging.WARNING, logger="fastrank.export.build"):
        export_model(model, tmp_path / "plain", precision="fp32", optimize="O1", num_threads=1)
    assert "first-stage prior" not in caplog.text
    model.card_data["first_stage_prior"] = {"model": "owner/embedder", "weight": 5.0}
    with caplog.at_level(logging.WARNING, logger="fastrank.export.build"):
        export_model(model, tmp_path / "prior", precision="fp32", optimize="O1", num_threads=1)
    assert "trained with a first-stage prior (score = logit + 5.0 x owner/embedder's score)" in caplog.text


def test_parity_ranks_a_multi_class_model_by_its_last_class_probability():
    """verify ranked by the last logit alone; the softmax probability (what every fastrank path ranks by) depends on
    the other logits too: [5, 4] has a lower P(last) than [0, 1] though its last logit is higher."""
    from fastrank.export.verify import VerifyGroup, compare

    logits = np.array([[5.0, 4.0], [0.0, 1.0]])
    report = compare([logits], [logits], [VerifyGroup("q", ["a", "b"], [0.0, 1.0])])
    assert report["ndcg@10"] == 1.0 and report["map"] == 1.0


def _write_groups(path) -> None:
    path.write_text(json.dumps({"query": "capital of france", "documents": ["paris", "berlin"], "labels": [1, 0]})
                    + "\n")


def test_verify_data_inside_the_replaced_artifact_is_kept(fp32_o3, tiny_model_dir):
    from typer.testing import CliRunner

    from fastrank.cli import app

    out, _ = fp32_o3
    data = out / "mydata.jsonl"
    _write_groups(data)
    result = CliRunner().invoke(app, ["export", str(tiny_model_dir), "--out", str(out), "--optimize", "O3",
                                      "--verify-data", str(data)])
    assert isinstance(result.exception, FastrankError) and "holds the input" in str(result.exception)
    with pytest.raises(FastrankError, match="holds the input"):
        export_model(tiny_model_dir, out, optimize="O3", verify_pairs=str(data), num_threads=1)
    assert data.is_file() and read_manifest(out) is not None


def _base_model(tmp_path):
    """A tiny BERT without a classification head (an encoder, as embedding models are) + the MiniLM tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from tests.conftest import _tokenizer_source

    path = tmp_path / "base"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37)
              ).save_pretrained(path)
    AutoTokenizer.from_pretrained(_tokenizer_source()).save_pretrained(path)
    return path


def test_a_model_without_a_trained_head_is_refused_unless_allowed(tmp_path):
    base = _base_model(tmp_path)
    with pytest.raises(FastrankError, match="has no trained classification head: a reranker exported from it "
                                            "scores at random; train it first with fastrank train"):
        export_model(base, tmp_path / "refused", optimize="O1", num_threads=1)
    assert not (tmp_path / "refused").exists()
    manifest = export_model(base, tmp_path / "allowed", optimize="O1", num_threads=1, allow_untrained_head=True)
    assert manifest["head_initialized"] is True and read_manifest(tmp_path / "allowed")["head_initialized"] is True


def test_cli_export_of_a_base_model_needs_allow_untrained_head(tmp_path):
    from typer.testing import CliRunner

    from fastrank.cli import app

    base = _base_model(tmp_path)
    result = CliRunner().invoke(app, ["export", str(base), "--out", str(tmp_path / "a"), "--optimize", "O1"])
    assert isinstance(result.exception, FastrankError) and "no trained classification head" in str(result.exception)
    result = CliRunner().invoke(app, ["export", str(base), "--out", str(tmp_path / "a"), "--optimize", "O1",
                                      "--allow-untrained-head", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["head_initialized"] is True


def test_trained_head_manifest_records_head_initialized_false(fp32_o3):
    assert fp32_o3[1]["head_initialized"] is False


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_a_half_precision_model_is_refused_up_front(tiny_model_dir, tmp_path, dtype):
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, dtype=dtype, device="cpu")
    with pytest.raises(FastrankError, match=f"export needs the fp32 model, got weights in {dtype}: load it with "
                                            r"dtype='float32' \(the default\)"):
        export_model(model, tmp_path / "half", num_threads=1)
    assert not (tmp_path / "half").exists()


def test_a_triton_repository_fastrank_wrote_may_be_replaced(o1_artifact, tmp_path):
    from fastrank.export.triton import write_repository
    from fastrank.io import check_output_dir

    repo = write_repository(o1_artifact, tmp_path / "repo")
    assert check_output_dir(repo) == repo.resolve()
    write_repository(o1_artifact, repo)
    assert sorted(p.name for p in repo.iterdir()) == ["fastrank", "fastrank_model", "fastrank_tokenizer"]


def test_the_manifest_names_a_local_source_by_its_absolute_path(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tiny_model_dir.parent)
    manifest = export_model(tiny_model_dir.name, tmp_path / "onnx", num_threads=1)
    assert manifest["source"] == str(tiny_model_dir.resolve())  # was the relative name given


def test_sigterm_during_an_export_leaves_no_temporary_directory(tiny_model_dir, tmp_path):
    """A stopped export removed its work on Ctrl-C but left `.<out>.tmp-*` behind on SIGTERM."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "fastrank.cli", "export", str(tiny_model_dir), "--out",
                             str(tmp_path / "onnx")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".onnx.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(tmp_path.glob(".onnx.tmp-*")), "the export ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_a_prompted_model_exports_with_its_prompt(tiny_model_dir, tmp_path, monkeypatch):
    """The default prompt opens every query in the artifact too (Reranker, windows, the Triton tokenizer): before,
    prompts were dropped, so an artifact scored what the checkpoint did not. A reader that predates prompts
    refuses the artifact rather than scoring it without."""
    import numpy as np

    import fastrank.export.manifest as manifest_module
    from fastrank import CrossEncoder, Reranker
    from fastrank.export.triton import write_repository
    from triton_stub import Tensor, load_tokenizer_model

    model = CrossEncoder(tiny_model_dir, max_length=64, device="cpu", prompts={"q": "query: "},
                         default_prompt_name="q")
    model.save(tmp_path / "ckpt")
    pairs = [("capital of france", "paris is the capital"), ("capital of france", "berlin " * 80)]
    expected = model.predict(pairs, activation="identity")
    assert np.abs(expected - model.predict(pairs, activation="identity", prompt="")).max() > 1e-4
    manifest = export_model(tmp_path / "ckpt", tmp_path / "onnx", optimize="O1", num_threads=1)
    assert manifest["query_prompt"] == "query: " and manifest["manifest_version"] == 2
    from fastrank.cli.export import summary

    assert "every query opens with the model's prompt 'query: '" in summary(manifest, "out")
    for path in (tmp_path / "onnx", tmp_path / "ckpt"):
        reranker = Reranker(path)
        np.testing.assert_allclose(reranker.predict(pairs, activation="identity"), expected, atol=1e-4)
        assert reranker.describe()["query_prompt"] == "query: "
    windows = Reranker(tmp_path / "onnx", long_documents="windows", window_stride=8)
    encoded, owners = windows.encode(pairs[:1])  # a pair that fits: one window, the query's prompt in it
    by_hand = model.tokenizer("query: " + pairs[0][0], pairs[0][1])["input_ids"]
    np.testing.assert_array_equal(encoded.input_ids[0], by_hand)
    triton = load_tokenizer_model(write_repository(tmp_path / "onnx", tmp_path / "repo"), monkeypatch)
    request = {"QUERY": Tensor("QUERY", np.array([pairs[0][0].encode()], dtype=object)),
               "DOCUMENT": Tensor("DOCUMENT", np.array([pairs[0][1].encode()], dtype=object))}
    (outputs,) = triton.execute([request])
    ids = {t.name: t.array for t in outputs}["input_ids"][0]
    np.testing.assert_array_equal(ids[ids != 0], encoded.input_ids[0])
    monkeypatch.setattr(manifest_module, "MANIFEST_VERSION", 1)  # a fastrank from before prompts
    with pytest.raises(ModelLoadError, match="manifest_version 2, written by a newer fastrank"):
        read_manifest(tmp_path / "onnx")


def test_the_quantizers_root_log_leaves_the_callers_logging_as_it_was(monkeypatch, capsys):
    """onnxruntime's quantizer logs advice with ``logging.warning``; on a root logger without handlers that installs
    one for good (``basicConfig``), so a program's later log records went to stderr after an int8 export."""
    import logging

    from fastrank.export.onnx import _drop_root_log

    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    with _drop_root_log("pre-processing before quantization"):
        logging.warning("Please consider pre-processing before quantization.")
        logging.warning("another message")
    assert root.handlers == [] and root.filters == []
    assert "pre-processing" not in capsys.readouterr().err


def test_exporting_a_model_in_training_leaves_it_training(tiny_model_dir, tmp_path):
    """The export's PyTorch reference put the caller's model in eval mode for good: a model exported from a
    training loop (a callback's export) trained on without dropout."""
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, max_length=64, device="cpu")
    model.model.train()
    export_model(model, tmp_path / "fp32", optimize="O1", num_threads=1)
    assert model.model.training and all(m.training for m in model.model.modules())
    model.model.eval()
    model.predict([("q", "d")])
    assert not model.model.training
