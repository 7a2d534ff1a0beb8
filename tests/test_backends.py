"""Backend contract and registry: names, missing dependencies, onnxruntime session checks, torch fp32/bf16."""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fastrank.backends import UnknownBackendError, get_backend, known_backends  # noqa: E402
from fastrank.backends.onnx_backend import OnnxBackend, choose_providers  # noqa: E402
from fastrank.batching import collate  # noqa: E402
from fastrank.errors import FastrankError, MissingDependency, ModelLoadError  # noqa: E402


@pytest.fixture(scope="module")
def artifact(tiny_model_dir, tmp_path_factory):
    from fastrank.export import export_model

    out = tmp_path_factory.mktemp("backends") / "fp32"
    export_model(tiny_model_dir, out, num_threads=1)
    return out


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from fastrank import CrossEncoder

    return CrossEncoder(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def batch(model):
    encoder = model.pair_encoder()
    pairs = [("q one", "short"), ("another query", "a much longer document " * 6), ("q", "mid length doc here")]
    return collate(encoder.encode(pairs), np.arange(3), encoder.pad_token_id)


def test_registry_lists_known_names():
    assert known_backends() == ["onnx", "tensorrt", "torch", "torch-cuda"]
    assert get_backend("onnx") is OnnxBackend
    with pytest.raises(UnknownBackendError, match="unknown backend .tensorflow.; known backends: onnx, tensorrt, torch, torch-cuda"):
        get_backend("tensorflow")


def test_missing_onnxruntime_names_the_extra(artifact, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ModuleNotFoundError
    with pytest.raises(MissingDependency) as info:
        OnnxBackend(artifact / "model.onnx")
    assert info.value.extra == "onnx" and 'pip install -e ".[onnx]" in the fastrank checkout' in str(info.value)


def test_onnx_logits_contract_matches_torch(artifact, model, batch):
    from fastrank.backends.torch_backend import TorchBackend

    backend = OnnxBackend(artifact / "model.onnx", ["input_ids", "attention_mask", "token_type_ids"], num_threads=1)
    logits = backend.logits(batch)
    assert logits.dtype == np.float32 and logits.shape == (3, 1)
    reference = TorchBackend(model).logits(batch)
    assert reference.dtype == np.float32 and reference.shape == (3, 1)
    assert np.abs(logits - reference).max() <= 1e-4
    info = backend.describe()
    assert info["providers"] == ["CPUExecutionProvider"] and info["num_threads"] == 1
    assert backend.session.get_session_options().intra_op_num_threads == 1


def test_onnx_inputs_must_match_the_tokenizer(artifact):
    with pytest.raises(ModelLoadError, match="do not match what the tokenizer provides.*token_type_ids"):
        OnnxBackend(artifact / "model.onnx", ["input_ids", "attention_mask"])


def test_corrupt_or_missing_model_file(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        OnnxBackend(tmp_path / "model.onnx")
    (tmp_path / "model.onnx").write_bytes(b"\x00not a protobuf" * 10)
    with pytest.raises(ModelLoadError, match="onnxruntime could not load"):
        OnnxBackend(tmp_path / "model.onnx")


def test_provider_choice():
    assert choose_providers(["AzureExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    gpu = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers(gpu) == ["CUDAExecutionProvider", "CPUExecutionProvider"]  # TensorRT is opt-in
    assert choose_providers(gpu, ["TensorrtExecutionProvider"]) == ["TensorrtExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(FastrankError, match="not available here"):
        choose_providers(["CPUExecutionProvider"], ["CUDAExecutionProvider"])


def test_batch_missing_an_input_is_a_clear_error(artifact, batch):
    backend = OnnxBackend(artifact / "model.onnx", num_threads=1)
    with pytest.raises(FastrankError, match=r"lacks \['token_type_ids'\]"):
        backend.logits({k: v for k, v in batch.items() if k != "token_type_ids"})


def test_torch_bf16_is_close_and_restores_threads(model, batch):
    import torch

    from fastrank.backends.torch_backend import TorchBackend

    before = torch.get_num_threads()
    fp32 = TorchBackend(model, "fp32").logits(batch)
    bf16 = TorchBackend(model, "bf16", num_threads=1).logits(batch)
    assert bf16.dtype == np.float32 and np.isfinite(bf16).all()
    assert 0 < np.abs(bf16 - fp32).max() < 0.05  # bf16 differs, a little
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="precision must be one of"):
        TorchBackend(model, "int8")


def test_torch_bf16_mixed_keeps_fp32_weights_and_fp32_normalization(model, batch):
    import torch

    from fastrank.backends.torch_backend import TorchBackend

    fp32 = TorchBackend(model, "fp32").logits(batch)
    backend = TorchBackend(model, "bf16-mixed")
    assert backend.model is model and {p.dtype for p in model.model.parameters()} == {torch.float32}
    seen: dict[str, set] = {"linear": set(), "layernorm": set()}
    hooks = [m.register_forward_hook(lambda mod, args, out, kind=kind: seen[kind].add(out.dtype))
             for m in model.model.modules()
             for kind in [{torch.nn.Linear: "linear", torch.nn.LayerNorm: "layernorm"}.get(type(m))] if kind]
    try:
        mixed = backend.logits(batch)
    finally:
        for hook in hooks:
            hook.remove()
    assert seen == {"linear": {torch.bfloat16}, "layernorm": {torch.float32}}  # matmuls bf16, normalization fp32
    assert mixed.dtype == np.float32 and 0 < np.abs(mixed - fp32).max() < 0.05
    assert backend.describe()["precision"] == "bf16-mixed"
    assert np.array_equal(TorchBackend(model, "fp32").logits(batch), fp32)  # the caller's model is unchanged
