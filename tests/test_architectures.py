"""Cross-encoders that are not BERT: models that read no token types, tokenizers that emit none, gated FFNs.

Tiny random models built from configs with the real MiniLM tokenizer (no downloads); each test compares fastrank's
paths (training's ``score``, ``predict``, the torch backend, the exported ONNX graph) with one another and with
sentence-transformers on the same pairs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import _tokenizer_source

PAIRS = [("how are glacier caves formed?", "A glacier cave is a cave formed within the ice of a glacier."),
         ("what is the capital of france", "Paris is the capital of France."),
         ("what is the capital of france", "The stock market fell sharply on Tuesday.")]


def _tokenizer_without_types(max_length: int):
    """The MiniLM tokenizer as the ``tokenizers`` library builds it, wrapped in PreTrainedTokenizerFast with
    model_input_names that leave out token types (its post-processor still makes type ids 0/1)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(Path(_tokenizer_source()) / "tokenizer.json"), cls_token="[CLS]", sep_token="[SEP]",
        pad_token="[PAD]", unk_token="[UNK]", mask_token="[MASK]", model_max_length=max_length,
        model_input_names=["input_ids", "attention_mask"])


def _save(model, tokenizer, path: Path) -> Path:
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def distilbert_dir(tmp_path_factory) -> Path:
    """A DistilBERT (no token-type embeddings) saved with the BERT tokenizer, which emits token types."""
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(_tokenizer_source())
    assert "token_type_ids" in tokenizer.model_input_names
    config = DistilBertConfig(vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=2, hidden_dim=37, num_labels=1,
                              initializer_range=0.2)
    return _save(DistilBertForSequenceClassification(config), tokenizer, tmp_path_factory.mktemp("distilbert"))


@pytest.fixture(scope="module")
def bert_without_type_inputs(tmp_path_factory) -> Path:
    """A BERT (which reads token types) whose tokenizer's model_input_names leave them out: transformers and
    sentence-transformers feed no type ids to it."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    tokenizer = _tokenizer_without_types(512)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, num_labels=1, initializer_range=0.2)
    return _save(BertForSequenceClassification(config), tokenizer, tmp_path_factory.mktemp("bert-no-types"))


def test_every_path_feeds_the_inputs_the_tokenizer_names(bert_without_type_inputs):
    """predict, training's score and the torch backend feed the same arrays as sentence-transformers: without
    token types here. predict and score fed the post-processor's 0/1 type ids (logits -0.92 where
    sentence-transformers and the Reranker gave -1.14), so a model was trained on inputs serving never sent."""
    import torch
    from sentence_transformers import CrossEncoder as STCrossEncoder

    from fastrank import CrossEncoder, Reranker

    model = CrossEncoder(bert_without_type_inputs, device="cpu")
    assert model.input_names == ("input_ids", "attention_mask")
    reference = STCrossEncoder(str(bert_without_type_inputs), device="cpu").predict(
        PAIRS, activation_fn=torch.nn.Identity())
    seen: dict = {}
    model.model.register_forward_pre_hook(lambda module, args, kwargs: seen.update(kwargs), with_kwargs=True)
    with torch.no_grad():
        scored = model.score([q for q, _ in PAIRS], [d for _, d in PAIRS])[:, 0].numpy()
    assert "token_type_ids" not in seen
    np.testing.assert_allclose(model.predict(PAIRS, activation="identity"), reference, atol=1e-5)
    np.testing.assert_allclose(scored, reference, atol=1e-5)
    np.testing.assert_allclose(Reranker(bert_without_type_inputs, backend="torch").logits(PAIRS)[:, 0], reference,
                               atol=1e-5)
    assert np.ptp(reference) > 0.1  # the pairs score apart, so a wrong input would show


def test_a_model_that_reads_no_token_types_exports_without_them(distilbert_dir, tmp_path):
    """The traced graph drops an input its model never reads (DistilBERT, or DeBERTa-v3 with type_vocab_size 0,
    under a tokenizer that emits type ids); the artifact takes the graph's inputs. Export failed at every precision:
    the graph's inputs did not match the tokenizer's."""
    pytest.importorskip("onnxruntime")
    from fastrank import CrossEncoder, Reranker
    from fastrank.export import export_model

    manifest = export_model(distilbert_dir, tmp_path / "onnx", precision="fp32", num_threads=1)
    assert manifest["parity"]["passed"] is True
    assert manifest["input_names"] == ["input_ids", "attention_mask"]
    expected = CrossEncoder(distilbert_dir, device="cpu").predict(PAIRS, activation="identity")
    np.testing.assert_allclose(Reranker(tmp_path / "onnx").logits(PAIRS)[:, 0], expected, atol=1e-5)


def test_a_gated_ffn_keeps_its_early_output_projections_fp32(tmp_path):
    """ModernBERT's FFN output projections (``mlp/Wo``, fed by the gate's Mul, not a GELU) are found, so the
    int8-early-ffn-out-fp32 rung keeps them fp32; it kept none and shipped plain int8 under its name."""
    pytest.importorskip("onnxruntime")
    import torch
    from transformers import ModernBertConfig, ModernBertForSequenceClassification

    from fastrank.export import export_model

    torch.manual_seed(0)
    tokenizer = _tokenizer_without_types(128)
    config = ModernBertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=32, max_position_embeddings=128, pad_token_id=0, cls_token_id=101,
                              sep_token_id=102, bos_token_id=101, eos_token_id=102, global_attn_every_n_layers=2,
                              local_attention=16, num_labels=1, initializer_range=0.2)
    path = _save(ModernBertForSequenceClassification(config), tokenizer, tmp_path / "modernbert")
    manifest = export_model(path, tmp_path / "int8", precision="int8-early-ffn-out-fp32", num_threads=1,
                            allow_parity_failure=True)
    kept = {entry["role"]: entry["nodes"] for entry in manifest["quantization"]["kept_fp32"]}
    assert [n.split("/")[-4] for n in kept["early_ffn_out"]] == ["layers.0", "layers.1"]
    assert all("/mlp/Wo/" in n for n in kept["early_ffn_out"])


def test_a_rung_whose_nodes_are_missing_is_skipped_with_its_reason(tiny_model_dir, tmp_path, monkeypatch):
    """A graph without the nodes a keep-fp32 rung keeps would make that rung plain int8 under another name: the
    ladder skips it and says why; asked for alone, the export refuses and writes nothing."""
    pytest.importorskip("onnxruntime")
    from fastrank.errors import FastrankError
    from fastrank.export import export_model
    from fastrank.export import onnx as onnx_export

    monkeypatch.setattr(onnx_export, "ffn_output_nodes", lambda proto: [])
    with pytest.raises(FastrankError, match="int8-early-ffn-out-fp32: this graph has no early_ffn_out nodes"):
        export_model(tiny_model_dir, tmp_path / "int8", precision="int8-early-ffn-out-fp32", num_threads=1)
    assert not (tmp_path / "int8").exists()
