"""CrossEncoder: scoring, ranking, save/load, and checkpoint compatibility with sentence-transformers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest

from fastrank.errors import ModelLoadError

PAIRS = [
    ("how are glacier caves formed?", "A glacier cave is a cave formed within the ice of a glacier."),
    ("how are glacier caves formed?", "The ice facade is approximately 60 m high."),
    ("what is the capital of france", "Paris is the capital and most populous city of France, " * 20),
    ("x", "y"),
]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from fastrank import CrossEncoder

    m = CrossEncoder(tiny_model_dir, device="cpu")
    m.eval()
    return m


def test_import_is_light():
    code = "import sys, fastrank; print(sorted(m for m in ('torch', 'onnxruntime', 'tensorrt', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_predict_matches_unbatched_forward(model):
    import torch

    scores = model.predict(PAIRS, batch_size=2)
    assert scores.shape == (len(PAIRS),) and scores.dtype == np.float32
    with torch.no_grad():
        ref = torch.cat([torch.sigmoid(model.score([q], [d])) for q, d in PAIRS]).view(-1).numpy()
    np.testing.assert_allclose(scores, ref, atol=1e-5)
    logits = model.predict(PAIRS, activation="identity")
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), scores, atol=1e-6)


def test_rank_orders_by_score_and_respects_top_k(model):
    docs = [d for _, d in PAIRS]
    scores = model.predict([(PAIRS[0][0], d) for d in docs])
    ranked = model.rank(PAIRS[0][0], docs, return_documents=True)
    assert [r.index for r in ranked] == list(np.argsort(-scores, kind="stable"))
    assert ranked[0].document == docs[ranked[0].index]
    assert len(model.rank(PAIRS[0][0], docs, top_k=2)) == 2
    assert [r.index for r in model.rank(PAIRS[0][0], docs, top_k=np.int64(2))] == [r.index for r in ranked[:2]]
    assert model.rank("q", []) == []
    # the checks Reranker.rerank makes: a string is one document, not a list of characters
    with pytest.raises(TypeError, match="documents must be a list of documents .*got a single str"):
        model.rank("q", "abc")
    with pytest.raises(ValueError, match="query is empty"):
        model.rank(" ", docs)
    with pytest.raises(ValueError, match="top_k must be a non-negative integer"):
        model.rank("q", docs, top_k=-1)


def test_bad_pairs_name_the_position(model):
    with pytest.raises(TypeError, match="pair 1"):
        model.predict([("q", "d"), ("q", 3)])
    with pytest.raises(TypeError, match="pair 0"):
        model.predict(["just a string"])


def test_a_two_column_numpy_array_of_pairs_scores_like_its_list(model):
    """df[["query", "document"]].values, as sentence-transformers takes it."""
    pairs = [["what is paris", "Paris is the capital of France."], ["what is paris", "A stone."]]
    np.testing.assert_array_equal(model.predict(np.array(pairs, dtype=object)), model.predict(pairs))
    with pytest.raises(TypeError, match="pair 0"):
        model.predict(np.array([["a", "b", "c"]], dtype=object))  # three columns: not pairs


def test_max_length_above_limit_is_rejected(tiny_model_dir):
    from fastrank import CrossEncoder

    with pytest.raises(ValueError, match=r"max_length must be an integer in \[8, 512\]"):
        CrossEncoder(tiny_model_dir, max_length=4096)


def test_a_saved_max_length_is_the_default_not_a_cap(tiny_model_dir, tmp_path):
    from fastrank import CrossEncoder

    CrossEncoder(tiny_model_dir, max_length=32).save(tmp_path / "short")
    assert CrossEncoder(tmp_path / "short").max_length == 32  # the saved length comes back as the default
    assert CrossEncoder(tmp_path / "short", max_length=256).max_length == 256  # the position embeddings allow 512


def test_position_limit_leaves_out_the_padding_offset():
    from types import SimpleNamespace

    from fastrank.model import _position_limit

    assert _position_limit(SimpleNamespace(model_type="bert", max_position_embeddings=512, pad_token_id=0)) == 512
    assert _position_limit(SimpleNamespace(model_type="xlm-roberta", max_position_embeddings=514, pad_token_id=1)) \
        == 512
    for model_type in ("roberta-prelayernorm", "xlm-roberta-xl", "data2vec-text", "xmod"):
        assert _position_limit(SimpleNamespace(model_type=model_type, max_position_embeddings=514,
                                               pad_token_id=1)) == 512, model_type
    assert _position_limit(SimpleNamespace(model_type="bart", max_position_embeddings=1024, pad_token_id=1)) == 1024


def test_an_offset_position_model_takes_its_limit_and_no_more():
    """The limit of a model from the offset list, checked against the model: a data2vec-text with 514 position
    embeddings runs 512 tokens and fails on 513 (it was missing from the list, so 514 were allowed)."""
    import torch
    from transformers import Data2VecTextConfig, Data2VecTextForSequenceClassification

    from fastrank.model import _position_limit

    config = Data2VecTextConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=514, pad_token_id=1, num_labels=1)
    model = Data2VecTextForSequenceClassification(config).eval()
    limit = _position_limit(config)
    ids = torch.full((1, limit), 5)
    assert model(input_ids=ids).logits.shape == (1, 1)
    with pytest.raises((IndexError, RuntimeError)):
        model(input_ids=torch.full((1, limit + 1), 5))


def test_missing_path_is_a_clear_error(tmp_path, monkeypatch):
    import fastrank.hub
    from fastrank import CrossEncoder

    monkeypatch.setattr(fastrank.hub, "hub_host_resolves", lambda: True)  # the same message online or not
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # (CI sets it; local_files_only keeps transformers offline)

    with pytest.raises(ModelLoadError, match="does not exist"):
        CrossEncoder(str(tmp_path / "nope"))
    with pytest.raises(ModelLoadError, match=r"'nope-model-xyz' \(no local directory of that name; tried the Hugging"):
        CrossEncoder("nope-model-xyz", local_files_only=True)  # a hub id as far as fastrank can tell
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="is a directory without config.json, so not a model checkpoint"):
        CrossEncoder(str(tmp_path / "empty"))


def test_an_exported_artifact_is_not_taken_for_a_checkpoint(tmp_path):
    from fastrank import CrossEncoder

    artifact = tmp_path / "onnx"
    artifact.mkdir()
    (artifact / "config.json").write_text('{"model_type": "bert"}')
    (artifact / "fastrank.json").write_text('{"format": "onnx", "precision": "int8"}')
    with pytest.raises(ModelLoadError, match=r"is an exported onnx int8 artifact, not a PyTorch checkpoint: score "
                                             r"it with Reranker\("):
        CrossEncoder(str(artifact))


def test_save_roundtrip_and_sentence_transformers_loads_it(model, tmp_path):
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    from fastrank import CrossEncoder

    out = model.save(tmp_path / "ckpt")
    assert (out / "README.md").read_text().startswith("---")
    ours = model.predict(PAIRS)
    np.testing.assert_allclose(CrossEncoder(out, device="cpu").predict(PAIRS), ours, atol=1e-6)
    st = STCrossEncoder(str(out), device="cpu")
    assert st.max_seq_length == model.max_length
    np.testing.assert_allclose(st.predict(PAIRS), ours, atol=1e-5)


def test_a_half_precision_checkpoint_loads_in_fp32_unless_asked(model, tmp_path):
    """transformers 5 loads weights in the dtype they were saved in; a fp16 checkpoint then failed to train
    ("mixed dtype (CPU)") and ran at fp16 speed on a CPU. fastrank loads fp32 unless ``dtype`` says otherwise."""
    import torch

    from fastrank import CrossEncoder

    half = CrossEncoder(model.name_or_path, device="cpu", dtype="float16")
    out = half.save(tmp_path / "fp16")
    loaded = CrossEncoder(out, device="cpu")
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    half.model.float()  # the same fp16-rounded weights, computed in fp32
    np.testing.assert_allclose(loaded.predict(PAIRS), half.predict(PAIRS), atol=1e-6)
    loaded.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the trainer's bf16 step on a CPU
        logits = loaded.model(**loaded.tokenize(*zip(*PAIRS[:2]))).logits
    logits.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in loaded.parameters() if p.requires_grad)
    assert {p.dtype for p in CrossEncoder(out, device="cpu", dtype="auto").parameters()} == {torch.float16}
    with pytest.raises(ValueError, match="dtype must be one of float32, float16, bfloat16, auto, got 'fp16'"):
        CrossEncoder(out, device="cpu", dtype="fp16")


def test_loads_sentence_transformers_checkpoint(tiny_model_dir, tmp_path):
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    from fastrank import CrossEncoder

    st = STCrossEncoder(str(tiny_model_dir), device="cpu", max_length=64, activation_fn=torch.nn.Identity())
    st.save(str(tmp_path / "st"))
    ours = CrossEncoder(tmp_path / "st", device="cpu")
    assert ours.activation == "identity" and ours.max_length == 64
    np.testing.assert_allclose(ours.predict(PAIRS), st.predict(PAIRS), atol=1e-5)


def test_a_resaved_checkpoint_keeps_its_card(model, tmp_path, monkeypatch):
    """The card's facts travel with the weights: loading a trained checkpoint and saving it again (as an export's
    torch rung does) kept only the path it was loaded from, losing e.g. the first-stage prior that scoring needs."""
    from fastrank import CrossEncoder

    model.card_data = {"base_model": "owner/base-model", "loss": "ListNetLoss",
                       "first_stage_prior": {"model": "owner/embedder", "weight": 2.0, "score": "logit + ..."}}
    first = model.save(tmp_path / "first")
    card = (first / "README.md").read_text()
    assert "base_model: owner/base-model\n" in card and "## First-stage prior" in card
    again = CrossEncoder(first, device="cpu")
    assert again.card_data == model.card_data
    again.write_checkpoint(first, served_as="torch bf16")
    resaved = (first / "README.md").read_text()
    assert "## First-stage prior" in resaved and "serves it as **torch bf16**" in resaved
    assert "serves it as" not in card

    fresh = CrossEncoder(str(tmp_path / "first"), device="cpu")
    fresh.card_data = {"base_model": str(first)}  # a local path is no hub id: kept in the table, not the metadata
    local = (fresh.save(tmp_path / "second") / "README.md").read_text()
    assert "base_model:" not in local and f"| base model | {first} |" in local
    (first / "fastrank_card.json").write_text("[1, 2]")
    assert CrossEncoder(first, device="cpu").card_data == {"base_model": str(first)}
    # a relative local base is recorded by its absolute path: read from elsewhere, "runs/x" is no hub id
    monkeypatch.chdir(tmp_path)
    assert CrossEncoder("first", device="cpu").card_data == {"base_model": str((tmp_path / "first").resolve())}


def test_offline_a_hub_id_loads_from_the_hub_cache_at_once(tiny_model_dir, tmp_path, monkeypatch):
    """Without network the hub client retried for ~25 s before falling back to its cache (or failing)."""
    import shutil

    import huggingface_hub.constants

    import fastrank.hub
    import fastrank.model
    from fastrank import CrossEncoder, EmbeddingModel

    snapshot = tmp_path / "hub" / "models--owner--tiny" / "snapshots" / "abc123"
    shutil.copytree(tiny_model_dir, snapshot)
    (tmp_path / "hub" / "models--owner--tiny" / "refs").mkdir()
    (tmp_path / "hub" / "models--owner--tiny" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(fastrank.hub, "hub_host_resolves", lambda: False)
    assert fastrank.model.resolve_model_path("owner/tiny") == str(snapshot)
    cached = CrossEncoder("owner/tiny", device="cpu")
    np.testing.assert_allclose(cached.predict(PAIRS), CrossEncoder(tiny_model_dir, device="cpu").predict(PAIRS))
    assert cached.name_or_path == "owner/tiny" and EmbeddingModel("owner/tiny").encode(["a"]).shape[0] == 1
    with pytest.raises(ModelLoadError, match=r"'owner/missing' is no local directory, the Hugging Face hub cannot be "
                                             r"reached \(its host does not resolve"):
        CrossEncoder("owner/missing")
    # HF_HUB_OFFLINE: the cache alone too, and a mistyped path gets this message instead of a network error
    monkeypatch.setattr(fastrank.hub, "hub_host_resolves", lambda: True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fastrank.model.resolve_model_path("owner/tiny") == str(snapshot)
    with pytest.raises(ModelLoadError, match=r"'runs/nope' is no local directory, the Hugging Face hub is offline "
                                             r"\(HF_HUB_OFFLINE is set\) and the local hub cache holds no copy"):
        CrossEncoder("runs/nope")


def test_hub_host_check_trusts_a_proxy_and_retries_a_failed_lookup(monkeypatch):
    """A failed lookup was cached for the life of the process: a service started before its network was up never
    reached the hub. A failure now holds for FAILED_LOOKUP_TTL_S, a success for good."""
    import socket

    import fastrank.hub
    from fastrank.hub import _PROXY_VARIABLES, hub_host_resolves

    dns = {"up": False, "lookups": 0}

    def lookup(*args, **kwargs):
        dns["lookups"] += 1
        if not dns["up"]:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.1", 443))]

    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.setattr(fastrank.hub, "_LOOKUPS", {})
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    clock = [1000.0]
    monkeypatch.setattr(fastrank.hub.time, "monotonic", lambda: clock[0])
    assert hub_host_resolves() is False and hub_host_resolves() is False and dns["lookups"] == 1
    dns["up"] = True
    clock[0] += fastrank.hub.FAILED_LOOKUP_TTL_S - 1
    assert hub_host_resolves() is False and dns["lookups"] == 1  # the failure still holds
    clock[0] += 2
    assert hub_host_resolves() is True and dns["lookups"] == 2  # looked up again: the network is up now
    dns["up"] = False
    clock[0] += 3600
    assert hub_host_resolves() is True and dns["lookups"] == 2  # a success holds
    monkeypatch.setattr(fastrank.hub, "_LOOKUPS", {})
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")  # only the proxy resolves names
    assert hub_host_resolves() is True and dns["lookups"] == 2


def test_interrupted_save_leaves_nothing(model, tmp_path, monkeypatch):
    import fastrank.model_card

    def boom(*_args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fastrank.model_card, "render_model_card", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save(tmp_path / "partial")
    assert not (tmp_path / "partial").exists()
    assert list(tmp_path.iterdir()) == []


def test_embedding_model_gets_a_fresh_head(caplog):
    from fastrank import CrossEncoder

    with caplog.at_level(logging.WARNING, logger="fastrank.model"):
        m = CrossEncoder("sentence-transformers/all-MiniLM-L6-v2", device="cpu", max_length=128)
    assert m.head_initialized and m.num_labels == 1 and m.activation == "sigmoid"
    assert "freshly initialized" in caplog.text
    assert json.loads((m.model.config.to_json_string()))["hidden_size"] == 384


def test_score_sub_batches_by_length_but_keeps_order_and_values(model):
    import torch

    rng = np.random.default_rng(0)
    words = "glacier cave ice water rock paris france city river mountain".split()
    pairs = [(" ".join(rng.choice(words, 3)), " ".join(rng.choice(words, int(n)))) for n in rng.integers(1, 60, 70)]
    q, d = [p[0] for p in pairs], [p[1] for p in pairs]
    with torch.no_grad():
        one_batch = model(**model.tokenize(q, d))
        sub_batched = model.score(q, d)
    assert sub_batched.shape == (70, 1)
    torch.testing.assert_close(sub_batched, one_batch, atol=1e-5, rtol=0)


def test_a_checkpoint_keeps_its_label_count(tiny_model_dir, tiny_model_factory):
    """Another num_labels than a cross-encoder checkpoint's own is a ModelLoadError saying what to do, not
    transformers' size-mismatch RuntimeError; the checkpoint's own count (or none) loads."""
    from fastrank import CrossEncoder

    with pytest.raises(ModelLoadError, match=r"is a cross-encoder checkpoint with 1 label\(s\); you asked for "
                                             r"num_labels=3\. Omit num_labels \(or pass 1\) to load it as it is; a "
                                             r"new 3-label head needs a base model without a classification head"):
        CrossEncoder(tiny_model_dir, num_labels=3, device="cpu")
    with pytest.raises(ModelLoadError, match=r"with 2 label\(s\); you asked for num_labels=1\. Omit num_labels"):
        CrossEncoder(tiny_model_factory(2), num_labels=1, device="cpu")
    assert CrossEncoder(tiny_model_factory(2), num_labels=2, device="cpu").num_labels == 2
    assert CrossEncoder(tiny_model_dir, num_labels=1, device="cpu").num_labels == 1


@pytest.mark.parametrize(("keep", "reason"), [(1000, "invalid header length"), (4, "header too small"),
                                              (None, "incomplete metadata, file not fully covered")])
def test_a_damaged_weights_file_is_named(tiny_model_dir, tmp_path, keep, reason):
    """A truncated model.safetensors raises ModelLoadError naming the file and safetensors' reason."""
    import re
    import shutil

    from fastrank import CrossEncoder

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2 if keep is None else keep])
    with pytest.raises(ModelLoadError) as info:
        CrossEncoder(broken, device="cpu")
    assert str(info.value) == (f"corrupt or incomplete weights file {weights} (Error while deserializing header: "
                               f"{reason}); re-download or re-save the model")
    assert re.search("ignore_mismatched_sizes|SafetensorError", str(info.value)) is None


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    """A tiny BERT encoder without a classification head: CrossEncoder would give it a fresh num_labels head."""
    import torch
    from conftest import _tokenizer_source
    from transformers import AutoTokenizer, BertConfig, BertModel

    path = tmp_path_factory.mktemp("tiny-encoder")
    torch.manual_seed(0)
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
              ).save_pretrained(path)
    AutoTokenizer.from_pretrained(_tokenizer_source()).save_pretrained(path)
    return path


@pytest.mark.parametrize("bad", [0, -1, True, 1.0, "1"])
def test_fewer_than_one_label_is_refused_before_loading(encoder_dir, bad):
    """num_labels < 1 (or not an integer) is a ValueError, not a 0- or -1-logit head built with a warning."""
    from fastrank import CrossEncoder

    with pytest.raises(ValueError, match=r"num_labels must be an integer >= 1 \(1 for one relevance logit, C for C "
                                         rf"classes\) or None .*got {bad!r}$"):
        CrossEncoder(encoder_dir, num_labels=bad, device="cpu")


def test_a_base_without_a_head_gets_the_label_count_asked(encoder_dir):
    from fastrank import CrossEncoder

    assert CrossEncoder(encoder_dir, num_labels=np.int64(3), device="cpu").num_labels == 3


def test_numpy_integers_are_integers_and_bools_are_not(model, tiny_model_dir):
    from fastrank import CrossEncoder

    m = CrossEncoder(tiny_model_dir, max_length=np.int64(64), num_labels=np.int64(1), device="cpu")
    assert m.max_length == 64 and type(m.max_length) is int and m.num_labels == 1
    with pytest.raises(ValueError, match=r"max_length must be an integer in \[8, 512\] .*not a bool\), got True"):
        CrossEncoder(tiny_model_dir, max_length=True, device="cpu")
    expected = model.predict(PAIRS, batch_size=2, max_tokens=64)
    np.testing.assert_allclose(model.predict(PAIRS, batch_size=np.int64(2), max_tokens=np.int32(64)), expected)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"max_tokens": 0}, "max_tokens must be a positive integer or None (an int or NumPy integer, not a bool), got 0"),
    ({"max_tokens": -5}, "max_tokens must be a positive integer or None (an int or NumPy integer, not a bool), got -5"),
    ({"max_tokens": 64.0}, "max_tokens must be a positive integer or None"),
    ({"max_tokens": True}, "max_tokens must be a positive integer or None (an int or NumPy integer, not a bool), "
                           "got True"),
    ({"batch_size": 1.5}, "batch_size must be a positive integer (an int or NumPy integer, not a bool), got 1.5"),
    ({"batch_size": "8"}, "batch_size must be a positive integer (an int or NumPy integer, not a bool), got '8'"),
    ({"batch_size": 0}, "batch_size must be a positive integer (an int or NumPy integer, not a bool), got 0"),
    ({"batch_size": None}, "batch_size must be a positive integer (an int or NumPy integer, not a bool), got None"),
    ({"batch_size": False}, "batch_size must be a positive integer (an int or NumPy integer, not a bool), got False"),
])
def test_bad_batch_size_or_max_tokens_is_refused(model, kwargs, message):
    """predict refuses what Reranker refuses (and bools), with the argument and what is accepted in the message;
    even for no pairs."""
    import re

    for pairs in (PAIRS, []):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            model.predict(pairs, **kwargs)


def test_one_pair_alone_scores_a_scalar_as_sentence_transformers_does(model):
    pairs = [("how are glacier caves formed?", "A glacier cave is formed within the ice."), ("q", "Paris.")]
    batch = model.predict(pairs)
    single = model.predict(pairs[0])
    assert np.ndim(single) == 0 and float(single) == pytest.approx(float(batch[0]), abs=1e-6)
    assert float(model.predict(list(pairs[1]))) == pytest.approx(float(batch[1]), abs=1e-6)


def test_convert_to_tensor_as_sentence_transformers_takes_it(model, tiny_model_dir):
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder as STCrossEncoder

    st = STCrossEncoder(str(tiny_model_dir), device="cpu", max_length=model.max_length)
    ours = model.predict(PAIRS, convert_to_tensor=True)
    theirs = st.predict(PAIRS, convert_to_tensor=True)
    assert isinstance(ours, torch.Tensor) and ours.shape == theirs.shape == (len(PAIRS),)
    torch.testing.assert_close(ours, theirs.float(), atol=1e-5, rtol=0)
    single = model.predict(PAIRS[0], convert_to_tensor=True)
    assert isinstance(single, torch.Tensor) and single.ndim == 0 and float(single) == pytest.approx(float(ours[0]))
    empty = model.predict([], convert_to_tensor=True)
    assert isinstance(empty, torch.Tensor) and empty.shape == (0,)


def test_copies_of_a_pair_score_exactly_alike_and_rank_in_the_callers_order(model):
    """Copies scored in different batch rows got logits up to ~6e-7 apart (torch's kernels), so ``rank`` ordered
    them at random although ties keep the caller's order; ``predict`` now scores each distinct pair once."""
    words = "glacier cave ice melt water stream rock wall tunnel summer winter light blue deep cold".split() * 3
    docs = [" ".join(words[i:2 * i + 1]) for i in range(30)]  # i + 1 words: copies straddle batches of 5
    copies = [d for d in docs for _ in range(3)]
    query = "how are glacier caves formed"
    scores = model.predict([(query, d) for d in copies], batch_size=5, activation="identity")
    assert all(len(set(scores[3 * i:3 * i + 3].tolist())) == 1 for i in range(30))
    alone = model.predict([(query, d) for d in docs], batch_size=5, activation="identity")
    np.testing.assert_allclose(scores[::3], alone, atol=1e-5)
    ranked = [r["corpus_id"] for r in model.rank(query, copies, batch_size=5)]
    assert all([i for i in ranked if i // 3 == k] == [3 * k, 3 * k + 1, 3 * k + 2] for k in range(30))


def test_tqdm_disable_turns_off_the_bars_a_caller_asked_for(model, monkeypatch, capsys):
    """tqdm reads TQDM_DISABLE only for arguments left out; fastrank passes ``disable``, so the variable was
    ignored and a job's log filled with bars anyway."""
    from fastrank.progress import bar_disabled

    pairs = [("q", f"document {i}") for i in range(3)]
    model.predict(pairs, show_progress_bar=True)
    assert "Scoring" in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    model.predict(pairs, show_progress_bar=True)
    assert "Scoring" not in capsys.readouterr().err
    assert bar_disabled(True) and bar_disabled(None)
    monkeypatch.setenv("TQDM_DISABLE", "0")  # any value disables, as tqdm reads it for its own bars
    assert bar_disabled(True)
    monkeypatch.setenv("TQDM_DISABLE", "")
    assert not bar_disabled(True) and bar_disabled(False)
