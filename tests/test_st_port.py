"""Code written for sentence-transformers' CrossEncoder keeps working on fastrank's: its keywords, attributes and
result shapes, checked against sentence-transformers itself on the same checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastrank.errors import ModelLoadError

st_ce = pytest.importorskip("sentence_transformers.cross_encoder")

QUERY = "how are glacier caves formed?"
DOCS = ["A glacier cave is a cave formed within the ice of a glacier.", "The ice facade is 60 m high.", "Paris."]
PAIRS = [(QUERY, d) for d in DOCS]


@pytest.fixture(scope="module")
def three_labels(tiny_model_factory):
    return tiny_model_factory(3)


def test_predict_takes_sentence_transformers_keywords(tiny_model_dir, three_labels):
    from fastrank import CrossEncoder

    ours, theirs = CrossEncoder(tiny_model_dir, device="cpu"), st_ce.CrossEncoder(str(tiny_model_dir), device="cpu")
    identity = torch.nn.Identity()
    np.testing.assert_allclose(ours.predict(PAIRS, activation_fn=identity),
                               theirs.predict(PAIRS, activation_fn=identity), atol=1e-5)
    listed = ours.predict(PAIRS, convert_to_numpy=False)
    assert isinstance(listed, list) and len(listed) == 3 and all(isinstance(t, torch.Tensor) for t in listed)
    np.testing.assert_allclose([float(t) for t in listed], theirs.predict(PAIRS), atol=1e-5)
    with pytest.raises(ValueError, match="not found"):  # a model without prompts: a ValueError in both
        theirs.predict(PAIRS, prompt_name="query")
    with pytest.raises(ValueError, match=r"prompt_name 'query' is not one of this model's prompts \[\]"):
        ours.predict(PAIRS, prompt_name="query")
    with pytest.raises(ValueError, match="has no fastrank equivalent"):
        ours.predict(PAIRS, activation_fn=torch.nn.Tanh())
    with pytest.raises(ValueError, match="not both"):
        ours.predict(PAIRS, activation="sigmoid", activation_fn=identity)

    multi, st_multi = CrossEncoder(three_labels, device="cpu"), st_ce.CrossEncoder(str(three_labels), device="cpu")
    soft = multi.predict(PAIRS, apply_softmax=True)
    np.testing.assert_allclose(soft, st_multi.predict(PAIRS, apply_softmax=True), atol=1e-5)
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, atol=1e-6)
    assert not np.allclose(multi.predict(PAIRS).sum(axis=1), 1.0)  # identity by default: softmax did the work


def test_rank_results_read_as_sentence_transformers_dicts(tiny_model_dir):
    from fastrank import CrossEncoder

    ours = CrossEncoder(tiny_model_dir, device="cpu").rank(QUERY, DOCS, return_documents=True,
                                                            show_progress_bar=False)
    theirs = st_ce.CrossEncoder(str(tiny_model_dir), device="cpu").rank(QUERY, DOCS, return_documents=True)
    assert [r["corpus_id"] for r in ours] == [r["corpus_id"] for r in theirs]
    assert [r["text"] for r in ours] == [r["text"] for r in theirs]
    np.testing.assert_allclose([r["score"] for r in ours], [r["score"] for r in theirs], atol=1e-5)
    bare = CrossEncoder(tiny_model_dir, device="cpu").rank(QUERY, DOCS)
    with pytest.raises(KeyError):
        bare[0]["text"]  # as in sentence-transformers: only with return_documents
    # real dicts with sentence-transformers' keys: JSON, .get, `in`, equality with its results (scores to 1e-5)
    import json

    rounded = [{**r, "score": round(r["score"], 4)} for r in ours]
    assert rounded == [{**r, "score": round(float(r["score"]), 4)} for r in theirs]
    assert json.loads(json.dumps(ours))[0].keys() == {"corpus_id", "score", "text"}
    assert "text" in ours[0] and ours[0].get("text") == ours[0].document and set(bare[0]) == {"corpus_id", "score"}
    assert (ours[0].index, ours[0]["index"], ours[0]["document"]) == (ours[0]["corpus_id"],) * 2 + (ours[0]["text"],)
    assert "index" in ours[0] and ours[0].get("document") == ours[0]["text"] and "document" not in bare[0]
    assert ours[0].copy() == ours[0] and ours[0].copy().index == ours[0].index
    with pytest.raises(KeyError, match="document"):
        bare[0]["document"]  # named as asked, not by the key it maps to


def test_attributes_and_constructor_keywords(tiny_model_dir):
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, device="cpu", activation_fn=torch.nn.Identity(),
                         config_kwargs={"hidden_dropout_prob": 0.3}, model_kwargs={"torch_dtype": "bfloat16"},
                         tokenizer_kwargs={"model_max_length": 48}, revision=None, trust_remote_code=False)
    assert model.activation == "identity" and isinstance(model.activation_fn, torch.nn.Identity)
    assert model.model.config.hidden_dropout_prob == 0.3
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.max_seq_length == model.max_length == 48
    model.max_seq_length = 32
    model.activation_fn = torch.nn.Sigmoid()
    assert model.max_length == 32 and model.activation == "sigmoid"
    with pytest.raises(ValueError, match=r"runs PyTorch only .* score it with fastrank.Reranker\(DIR\)"):
        CrossEncoder(tiny_model_dir, device="cpu", backend="onnx")
    with pytest.raises(ValueError, match="give the weight dtype once"):
        CrossEncoder(tiny_model_dir, device="cpu", dtype="float16", model_kwargs={"torch_dtype": torch.bfloat16})


def test_save_pretrained_and_model_card_data(tiny_model_dir, tmp_path):
    from sentence_transformers.cross_encoder.model_card import CrossEncoderModelCardData

    from fastrank import CrossEncoder

    card = CrossEncoderModelCardData(language="en", license="apache-2.0", model_name="Glacier reranker")
    model = CrossEncoder(tiny_model_dir, device="cpu", model_card_data=card)
    out = model.save_pretrained(tmp_path / "m", train_datasets=[{"name": "WikiQA", "id": "microsoft/wiki_qa"}])
    text = (out / "README.md").read_text()
    assert "language: [\"en\"]" in text and "license: apache-2.0" in text and "# Glacier reranker" in text
    assert "- WikiQA" in text
    np.testing.assert_allclose(st_ce.CrossEncoder(str(out), device="cpu").predict(PAIRS), model.predict(PAIRS),
                               atol=1e-5)
    with pytest.raises(ValueError, match="safetensors only"):
        model.save_pretrained(tmp_path / "n", safe_serialization=False)


def test_a_checkpoint_saved_with_another_activation_is_refused_not_rescored(tiny_model_dir, tmp_path):
    """It was loaded with sigmoid and a warning: every score changed (Tanh -0.0019 became 0.4995)."""
    from fastrank import CrossEncoder

    st_model = st_ce.CrossEncoder(str(tiny_model_dir), device="cpu", activation_fn=torch.nn.Tanh())
    st_model.save(str(tmp_path / "tanh"))
    with pytest.raises(ModelLoadError, match=r"saved with activation 'torch.nn.modules.activation.Tanh', which "
                                             r"fastrank does not apply"):
        CrossEncoder(tmp_path / "tanh", device="cpu")
    raw = CrossEncoder(tmp_path / "tanh", device="cpu", activation="identity").predict(PAIRS)
    np.testing.assert_allclose(np.tanh(raw), st_model.predict(PAIRS), atol=1e-5)


def test_sentence_transformers_evaluators_score_a_fastrank_model(tiny_model_dir):
    """They call predict with prompt_name and record metrics in model.model_card_data: both failed before."""
    from sentence_transformers.cross_encoder import evaluation

    from fastrank import CrossEncoder

    samples = [{"query": QUERY, "positive": [DOCS[0]], "documents": DOCS[::-1]},
               {"query": "capital of france", "positive": ["Paris is the capital."], "documents": ["Berlin.", "Rome."]}]
    pairs, labels = PAIRS + [("capital of france", "Paris is the capital.")], [1, 0, 0, 1]
    ours, theirs = CrossEncoder(tiny_model_dir, device="cpu"), st_ce.CrossEncoder(str(tiny_model_dir), device="cpu")
    for evaluator in (evaluation.CrossEncoderRerankingEvaluator(samples, at_k=10, name="dev", write_csv=False),
                      evaluation.CrossEncoderClassificationEvaluator(pairs, labels, name="cls", write_csv=False),
                      evaluation.CrossEncoderCorrelationEvaluator(pairs, [0.9, 0.2, 0.1, 0.8], name="cor",
                                                                 write_csv=False)):
        got, want = evaluator(ours), evaluator(theirs)
        assert got.keys() == want.keys()
        for key, value in want.items():
            assert got[key] == pytest.approx(value, abs=1e-5), key
    assert {"dev_ndcg@10", "cls_f1", "cor_spearman"} <= set(ours.card_data["evaluation"])


def test_sentence_transformers_mining_rescores_with_a_fastrank_cross_encoder(tiny_model_dir):
    """sentence-transformers' own mine_hard_negatives calls predict(..., pool=None): a fastrank model takes it, and
    refuses a real multi-process pool with a reason."""
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from fastrank import CrossEncoder
    from fastrank.model import resolve_model_path

    embedder = SentenceTransformer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    model = CrossEncoder(tiny_model_dir, device="cpu")
    data = Dataset.from_dict({"query": ["capital of france", "glacier caves", "python language"],
                              "answer": ["Paris is the capital of France.", "A glacier cave forms in ice.",
                                         "Python is a programming language."]})
    mined = mine_hard_negatives(data, embedder, cross_encoder=model, num_negatives=1, range_max=2, use_faiss=False,
                                output_format="triplet", verbose=False)
    assert len(mined) >= 1 and mined.column_names == ["query", "answer", "negative"]
    with pytest.raises(ValueError, match="device / pool / chunk_size must be None"):
        model.predict([("q", "d")], pool={"processes": []})


def test_old_positional_show_progress_bar_is_explained(tiny_model_dir):
    """predict(pairs, 16, False) is older sentence-transformers' (batch_size, show_progress_bar); here the third
    positional argument is the activation, and the error says so."""
    from fastrank import CrossEncoder

    with pytest.raises(ValueError, match="third positional argument is the activation; .* give it by keyword"):
        CrossEncoder(tiny_model_dir, device="cpu").predict(PAIRS, 16, False)


def test_sentence_transformers_6_and_older_keywords_mean_what_they_mean_there(tiny_model_dir, three_labels, caplog):
    """From an audit against sentence-transformers 6: processor_kwargs, config_kwargs' num_labels, the renamed
    keywords it still takes (constructor, predict, rank), a 1-D NumPy pair, a softmax over another dim, and
    max_length set after loading, each compared with sentence-transformers on the same checkpoint."""
    from fastrank import CrossEncoder

    base = CrossEncoder(tiny_model_dir, device="cpu")
    tokens = ("word " * 200).strip()
    long_pairs = [(QUERY, tokens), *PAIRS]
    kept = st_ce.CrossEncoder(str(tiny_model_dir), device="cpu", processor_kwargs={"model_max_length": 16})
    ours = CrossEncoder(tiny_model_dir, device="cpu", processor_kwargs={"model_max_length": 16})
    assert ours.max_length == kept.max_length == 16  # it was a TypeError
    np.testing.assert_allclose(ours.predict(long_pairs), kept.predict(long_pairs), atol=1e-6)
    assert not np.allclose(ours.predict(long_pairs)[0], base.predict(long_pairs)[0], atol=1e-4)  # 16 tokens bite
    with pytest.warns(FutureWarning) as caught:
        old = CrossEncoder(model_name=str(tiny_model_dir), device="cpu", tokenizer_args={"model_max_length": 16},
                           default_activation_function=torch.nn.Identity())
    assert old.max_length == 16 and old.activation == "identity"
    assert "CrossEncoder(tokenizer_args=...) is an old name for tokenizer_kwargs=; use that" in \
        [str(w.message) for w in caught]
    assert {w.filename for w in caught} == {__file__}  # each points at the line that used the old name
    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such'"):
        CrossEncoder(tiny_model_dir, no_such=1)
    np.testing.assert_allclose(base.predict(inputs=PAIRS), kept.__class__(str(tiny_model_dir), device="cpu")
                               .predict(inputs=PAIRS), atol=1e-6)
    with pytest.warns(FutureWarning) as caught:
        renamed = base.predict(sentences=PAIRS, activation_fct=torch.nn.Identity(), num_workers=2)
    assert "predict(num_workers=...) does nothing in fastrank (sentence-transformers deprecated it too)" in \
        [str(w.message) for w in caught]
    assert {w.filename for w in caught} == {__file__}  # this line, not torch.inference_mode's wrapper
    np.testing.assert_allclose(renamed, base.predict(PAIRS, activation="identity"), atol=0)
    one = base.predict(np.array(PAIRS[0]))  # a 1-D NumPy pair: a scalar, as there (it was a TypeError)
    assert np.ndim(one) == 0 and one == pytest.approx(float(base.predict(PAIRS)[0]), abs=1e-7)
    with pytest.warns(FutureWarning):
        ranked = base.rank(QUERY, DOCS, apply_softmax=True, convert_to_tensor=True, convert_to_numpy=True,
                           num_workers=2, activation_fct=torch.nn.Identity())
    logits = base.predict(PAIRS, activation="identity")
    assert [r["score"] for r in ranked] == pytest.approx(sorted(logits.tolist(), reverse=True), abs=1e-6)
    # the current name wins over the old one when both are given, as in sentence-transformers
    with pytest.warns(FutureWarning):
        assert len(base.predict(inputs=PAIRS, sentences=PAIRS[:1])) == 3 and len(base.predict(pairs=PAIRS)) == 3
        both = CrossEncoder(tiny_model_dir, device="cpu", default_activation_function=torch.nn.Identity(),
                            activation_fn=torch.nn.Sigmoid(), config_args={"classifier_dropout": 0.3})
    assert both.activation == "sigmoid" and both.config.classifier_dropout == 0.3
    labelled = CrossEncoder(three_labels, device="cpu")
    with pytest.raises(ValueError, match="softmax over dim 0: fastrank's softmax is over the labels of each pair"):
        labelled.predict(PAIRS, activation_fn=torch.nn.Softmax(dim=0))  # it was applied over the labels anyway
    np.testing.assert_allclose(labelled.predict(PAIRS, activation_fn=torch.nn.Softmax(dim=1)),
                               st_ce.CrossEncoder(str(three_labels), device="cpu")
                               .predict(PAIRS, activation_fn=torch.nn.Softmax(dim=1)), atol=1e-6)
    with pytest.raises(ValueError, match=r"max_length must be an integer in \[8, "):
        base.max_length = 100_000  # set as a plain attribute, predict failed inside the model
    base.max_length = 16
    np.testing.assert_allclose(base.predict(long_pairs), kept.predict(long_pairs), atol=1e-6)


def test_num_labels_from_config_kwargs_and_sentence_bert_config_max_seq_length(tiny_model_dir, tmp_path):
    import json
    import shutil

    from fastrank import CrossEncoder
    from fastrank.model import DEFAULT_BASE, resolve_model_path

    base = resolve_model_path(DEFAULT_BASE)  # the bundled embedding model: no classification head
    theirs = st_ce.CrossEncoder(base, device="cpu", config_kwargs={"num_labels": 3})
    ours = CrossEncoder(base, device="cpu", config_kwargs={"num_labels": 3})
    assert ours.num_labels == theirs.num_labels == 3 and ours.activation == "identity"  # it was 1 label, sigmoid
    assert ours.max_length == theirs.max_length == 512  # an embedding model's max_seq_length (256) is not its
    copy = tmp_path / "sbert"
    st_ce.CrossEncoder(str(tiny_model_dir), device="cpu").save(str(copy))  # with modules.json
    config = json.loads((copy / "sentence_bert_config.json").read_text())
    (copy / "sentence_bert_config.json").write_text(json.dumps({**config, "max_seq_length": 32}))  # as older ST wrote
    plain = tmp_path / "plain"  # no modules.json: a Hugging Face folder, which sentence-transformers reads so too
    shutil.copytree(tiny_model_dir, plain)
    shutil.copy(copy / "sentence_bert_config.json", plain)
    assert CrossEncoder(plain, device="cpu").max_length == st_ce.CrossEncoder(str(plain), device="cpu").max_length
    long_pairs = [(QUERY, ("word " * 200).strip())]
    assert CrossEncoder(copy, device="cpu").max_length == st_ce.CrossEncoder(str(copy), device="cpu").max_length == 32
    asked = {"processor_kwargs": {"model_max_length": 64}}  # a length asked for wins over the saved one
    assert CrossEncoder(copy, device="cpu", **asked).max_length == st_ce.CrossEncoder(str(copy), **asked).max_length
    np.testing.assert_allclose(CrossEncoder(copy, device="cpu").predict(long_pairs),
                               st_ce.CrossEncoder(str(copy), device="cpu").predict(long_pairs), atol=1e-6)


def test_a_causal_lm_reranker_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    """A sentence-transformers cross-encoder scored by LogitScore (a causal LM's yes/no logits) loaded with a
    random head, warned about as an embedding model."""
    import json
    import shutil

    from fastrank import CrossEncoder

    st_ce.CrossEncoder(str(tiny_model_dir)).save(str(tmp_path / "prompted"))
    causal = tmp_path / "causal"
    shutil.copytree(tmp_path / "prompted", causal)
    modules = json.loads((causal / "modules.json").read_text())
    modules.append({"idx": 1, "name": "1", "path": "1_LogitScore",
                    "type": "sentence_transformers.cross_encoder.modules.logit_score.LogitScore"})
    (causal / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match=r"is a sentence-transformers model of a transformer and \['sentence_"
                                             r"transformers.cross_encoder.modules.logit_score.LogitScore'\]"):
        CrossEncoder(causal, device="cpu")
    bare = tmp_path / "bare-type"  # a Transformer module named by its class alone is the transformer still
    shutil.copytree(tmp_path / "prompted", bare)
    (bare / "modules.json").write_text(json.dumps([{**modules[0], "type": "Transformer"}]))
    assert CrossEncoder(bare, device="cpu").num_labels == 1
    import huggingface_hub

    import fastrank.model as model_module

    fetched = []

    def download(repo_id, filename, **kwargs):  # the hub, as reached online: files of the repo, by name
        fetched.append((repo_id, filename))
        return str(causal / filename)

    monkeypatch.setattr(model_module, "resolve_model_path", lambda name: str(name))  # online: the id itself
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(ModelLoadError, match=r"'acme/causal-rr' is a sentence-transformers model of a transformer"):
        CrossEncoder("acme/causal-rr", device="cpu")  # a hub id was never checked (only local folders)
    assert ("acme/causal-rr", "modules.json") in fetched


def test_which_saved_activation_wins_as_in_sentence_transformers(tiny_model_dir, tmp_path):
    """Without modules.json a folder is a Hugging Face model, whose config.json block sentence-transformers reads
    before config_sentence_transformers.json (fastrank read them the other way round); an activation class of
    another package is no torch one because it is named Identity."""
    import json
    import shutil

    from fastrank import CrossEncoder

    folder = tmp_path / "hf"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["sentence_transformers"] = {"activation_fn": "torch.nn.modules.linear.Identity"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"activation_fn": "torch.nn.modules.activation.Sigmoid"}))
    ours, theirs = CrossEncoder(folder, device="cpu"), st_ce.CrossEncoder(str(folder), device="cpu")
    np.testing.assert_allclose(ours.predict(PAIRS), theirs.predict(PAIRS), atol=1e-6)
    assert ours.activation == "identity"
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"activation_fn": "mypkg.Identity"}))
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if k != "sentence_transformers"}))
    with pytest.raises(ModelLoadError, match=r"saved with activation 'mypkg.Identity', which fastrank does not apply"):
        CrossEncoder(folder, device="cpu")


def test_prompts_score_as_in_sentence_transformers(tiny_model_dir, tmp_path):
    """A saved default prompt opens every query, a named or given prompt replaces it, ``prompt=""`` drops it, as in
    sentence-transformers (fastrank dropped prompts, with a warning); prompts a fastrank model is given are saved
    where sentence-transformers reads them."""
    import json
    import shutil

    from fastrank import CrossEncoder

    prompts = {"rerank": "Judge relevance: ", "short": "q: "}
    st_ce.CrossEncoder(str(tiny_model_dir), prompts=prompts, default_prompt_name="rerank").save(str(tmp_path / "st"))
    theirs = st_ce.CrossEncoder(str(tmp_path / "st"), device="cpu")
    ours = CrossEncoder(tmp_path / "st", device="cpu")
    assert ours.prompts == prompts and ours.default_prompt_name == "rerank"
    plain = CrossEncoder(tiny_model_dir, device="cpu").predict(PAIRS)
    prompted = ours.predict(PAIRS)
    assert np.abs(prompted - plain).max() > 1e-4  # the prompt changes the scores (it was dropped)
    np.testing.assert_allclose(prompted, theirs.predict(PAIRS), atol=1e-6)
    for keywords in ({"prompt_name": "short"}, {"prompt": "Find: "}, {"prompt": ""}):
        np.testing.assert_allclose(ours.predict(PAIRS, **keywords), theirs.predict(PAIRS, **keywords), atol=1e-6)
    np.testing.assert_allclose(ours.predict(PAIRS, prompt=""), plain, atol=1e-6)
    np.testing.assert_allclose(ours.predict(PAIRS[0]), theirs.predict(PAIRS[0]), atol=1e-6)  # one pair alone
    ranked = ours.rank(QUERY, DOCS, prompt_name="short")
    expected = theirs.rank(QUERY, DOCS, prompt_name="short")
    assert [r["corpus_id"] for r in ranked] == [r["corpus_id"] for r in expected]
    np.testing.assert_allclose([r["score"] for r in ranked], [r["score"] for r in expected], atol=1e-6)
    with pytest.raises(ValueError, match=r"prompt_name 'missing' is not one of this model's prompts \['rerank', "):
        ours.predict(PAIRS, prompt_name="missing")
    with pytest.raises(ValueError, match=r"default_prompt_name 'nope' is not one of the prompts"):
        CrossEncoder(tmp_path / "st", device="cpu", default_prompt_name="nope")
    with pytest.raises(TypeError, match=r"prompts must be a dict of name -> text"):
        CrossEncoder(tiny_model_dir, device="cpu", prompts="query: ")
    with pytest.raises(TypeError, match=r"prompt must be a string"):
        ours.predict(PAIRS, prompt=3)

    given = CrossEncoder(tiny_model_dir, device="cpu", prompts={"q": "query: "}, default_prompt_name="q")
    given.save(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config_sentence_transformers.json").read_text())
    assert saved["prompts"] == {"q": "query: "} and saved["default_prompt_name"] == "q"
    reloaded = st_ce.CrossEncoder(str(tmp_path / "ours"), device="cpu")
    assert reloaded.prompts == {"q": "query: "} and reloaded.default_prompt_name == "q"
    np.testing.assert_allclose(given.predict(PAIRS), reloaded.predict(PAIRS), atol=1e-6)
    from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator as TheirEvaluator

    from fastrank import RerankingEvaluator

    samples = [{"query": QUERY, "positive": [DOCS[1]], "documents": DOCS},
               {"query": "capital of france", "positive": ["Paris is the capital."], "documents": ["Berlin."]}]
    for name in ("short", None):
        want = TheirEvaluator(samples, at_k=10, write_csv=False, prompt_name=name)(theirs)
        for evaluator in (TheirEvaluator(samples, at_k=10, write_csv=False, prompt_name=name),
                          RerankingEvaluator(samples, at_k=10, prompt_name=name)):
            got = evaluator(ours)
            assert {k: got[k] for k in want} == pytest.approx(want, abs=1e-6)
    with pytest.raises(ValueError, match=r"prompt_name 'missing' is not one of this model's prompts"):
        RerankingEvaluator(samples, prompt_name="missing")(ours)

    plain_folder = tmp_path / "plain"  # no modules.json: sentence-transformers reads no saved prompts there
    shutil.copytree(tmp_path / "st", plain_folder)
    (plain_folder / "modules.json").unlink()
    assert CrossEncoder(plain_folder, device="cpu").prompts == st_ce.CrossEncoder(str(plain_folder)).prompts == {}
    mine = CrossEncoder(tmp_path / "st", device="cpu", prompts={"rerank": "Mine: "})  # given wins over saved
    assert mine.prompts == {"rerank": "Mine: ", "short": "q: "}
    np.testing.assert_allclose(mine.predict(PAIRS), theirs.predict(PAIRS, prompt="Mine: "), atol=1e-6)


def test_an_embedding_models_prompts_are_not_a_cross_encoders(tmp_path):
    """sentence-transformers reads saved prompts only from a folder it saved as a CrossEncoder; an embedding
    model's (its query prompt) were taken as the reranker's default, so scores differed from sentence-transformers'
    and ``fastrank train --base`` carried them into the trained model."""
    from sentence_transformers import SentenceTransformer

    from fastrank import CrossEncoder
    from fastrank.model import DEFAULT_BASE, resolve_model_path, saved_default_prompt

    SentenceTransformer(resolve_model_path(DEFAULT_BASE), device="cpu", prompts={"query": "query: "},
                        default_prompt_name="query").save(str(tmp_path / "bi"))
    theirs = st_ce.CrossEncoder(str(tmp_path / "bi"), device="cpu")
    ours = CrossEncoder(tmp_path / "bi", device="cpu", max_length=theirs.max_length)
    assert theirs.prompts == {} and ours.prompts == {} and ours.default_prompt is None
    assert saved_default_prompt(tmp_path / "bi") is None


def test_a_prompted_model_reads_its_tokenizer_once(tiny_model_dir, monkeypatch):
    """Each prompted predict made a fresh encoder copy whose caches started empty: the tokenizer's JSON (its whole
    vocabulary) was read again per call for a long document."""
    import fastrank.batching as batching
    from fastrank import CrossEncoder

    calls = []
    real = batching.splits_at_spaces
    monkeypatch.setattr(batching, "splits_at_spaces", lambda tokenizer: calls.append(1) or real(tokenizer))
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=32, prompts={"q": "q: "}, default_prompt_name="q")
    for _ in range(3):
        model.predict([(QUERY, "the answer is here " * 400)])
    assert len(calls) == 1


def test_every_sentence_transformers_keyword_is_taken(tiny_model_dir):
    """Every keyword of sentence-transformers 6.3's CrossEncoder, predict and rank is a keyword here: rank's
    device / pool / chunk_size and the constructor's modules / use_kernels / kernel_config / keep_in_fp32_modules
    were Python's "unexpected keyword" TypeError; they work at their defaults and are refused with why otherwise."""
    import inspect

    from fastrank import CrossEncoder

    for name in ("__init__", "predict", "rank"):
        theirs = set(inspect.signature(getattr(st_ce.CrossEncoder, name)).parameters) - {"kwargs"}
        assert theirs <= set(inspect.signature(getattr(CrossEncoder, name)).parameters), name
    model = CrossEncoder(tiny_model_dir, device="cpu", modules=None, use_kernels=False, kernel_config=None,
                         keep_in_fp32_modules=None)
    assert [r["corpus_id"] for r in model.rank(QUERY, DOCS, pool=None, device=None, chunk_size=None)] == \
        [r["corpus_id"] for r in model.rank(QUERY, DOCS)]
    with pytest.raises(ValueError, match="device / pool / chunk_size must be None"):
        model.rank(QUERY, DOCS, device="cpu")
    with pytest.raises(ValueError, match=r"CrossEncoder\(use_kernels=...\) is not supported by fastrank"):
        CrossEncoder(tiny_model_dir, device="cpu", use_kernels=True)


def test_a_hub_id_keeps_the_activation_sentence_transformers_6_saved(tiny_model_dir, tmp_path, serve_as_hub_id):
    """sentence-transformers 6 saves a cross-encoder's activation in config_sentence_transformers.json only, which
    fastrank read for a local folder alone: loaded by hub id online, an Identity model scored through a sigmoid
    (and fastrank's own card, which records a first-stage prior, was lost). A config file that is no JSON is
    refused, not read as absent."""
    import json

    import fastrank.model as model_module
    from fastrank import CrossEncoder

    folder = tmp_path / "hub"
    st_ce.CrossEncoder(str(tiny_model_dir), activation_fn=torch.nn.Identity()).save(str(folder))
    assert "sentence_transformers" not in (folder / "config.json").read_text()  # only in their own file
    (folder / "fastrank_card.json").write_text(json.dumps({"base_model": "b", "first_stage_prior": {"weight": 1.0}}))

    serve_as_hub_id("acme/ce", folder, model_module)
    ours = CrossEncoder("acme/ce", device="cpu")
    assert ours.activation == "identity"
    assert ours.card_data["first_stage_prior"] == {"weight": 1.0}  # fastrank's card travels with the id too
    np.testing.assert_allclose(ours.predict(PAIRS), st_ce.CrossEncoder(str(folder), device="cpu").predict(PAIRS),
                               atol=1e-6)
    (folder / "config_sentence_transformers.json").write_text("{broken")
    with pytest.raises(ModelLoadError, match=r"config_sentence_transformers.json of 'acme/ce' does not read as JSON"):
        CrossEncoder("acme/ce", device="cpu")


def test_a_hub_models_saved_default_prompt_is_read_for_the_resume_record(tiny_model_dir, tmp_path, serve_as_hub_id):
    """saved_default_prompt read local folders only, so `train --resume` on a hub base could not tell a re-saved
    default prompt from the one its checkpoints trained with."""
    import fastrank.model as model_module
    from fastrank.model import saved_default_prompt

    folder = tmp_path / "prompted"
    st_ce.CrossEncoder(str(tiny_model_dir), prompts={"q": "question: "}, default_prompt_name="q").save(str(folder))
    assert saved_default_prompt(folder) == "question: "
    fetched = serve_as_hub_id("acme/prompted-rr", folder, model_module)
    assert saved_default_prompt("acme/prompted-rr") == "question: "
    assert {"config_sentence_transformers.json", "modules.json"} <= set(fetched)
    assert saved_default_prompt("acme/other-rr") is None  # no such repo: no prompt, no error


def test_push_to_hub_uploads_what_both_libraries_load(tiny_model_dir, tmp_path, monkeypatch, serve_as_hub_id):
    """sentence-transformers' push_to_hub, which fastrank refused: the repository is created, the model saved and
    uploaded in one commit (a card already there kept unless replace_model_card), and the upload loads by its id in
    fastrank and sentence-transformers alike."""
    import json
    import shutil

    import huggingface_hub

    import fastrank.model as model_module
    from fastrank import CrossEncoder

    calls, hub = [], tmp_path / "hub"

    class FakeApi:
        def __init__(self, token=None):
            calls.append(("token", token))

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls.append(("create_repo", repo_id, private, exist_ok))
            return type("RepoUrl", (), {"repo_id": repo_id})()

        def create_branch(self, repo_id, branch, exist_ok=False):
            calls.append(("create_branch", branch))

        def file_exists(self, repo_id, filename, revision=None):
            return (hub / filename).is_file()

        def upload_folder(self, repo_id, folder_path, revision=None, commit_message=None, create_pr=False,
                          ignore_patterns=None):
            calls.append(("upload", commit_message, revision, create_pr, ignore_patterns))
            shutil.copytree(folder_path, hub, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(*(ignore_patterns or [])))
            return type("Commit", (), {"commit_url": f"https://hf.co/{repo_id}/commit/1",
                                       "pr_url": f"https://hf.co/{repo_id}/discussions/1" if create_pr else None})()

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    model = CrossEncoder(tiny_model_dir, device="cpu", max_length=64, prompts={"q": "question: "},
                         default_prompt_name="q")
    model.card_data["evaluation"] = {"data": str(tmp_path / "private" / "dev.jsonl"), "map": 0.5}
    before = json.loads(json.dumps(model.card_data))
    url = model.push_to_hub("you/reranker", token="t", private=True, train_datasets=["wikiqa"])
    assert model.card_data == before  # train_datasets went on the pushed card only
    published = (hub / "README.md").read_text() + (hub / "fastrank_card.json").read_text()
    assert str(tmp_path) not in published and "dev.jsonl" in published  # no local path published
    assert url == "https://hf.co/you/reranker/commit/1"
    assert ("create_repo", "you/reranker", True, False) in calls and ("token", "t") in calls
    assert ("upload", "Add new CrossEncoder model", None, False, None) in calls
    assert "wikiqa" in (hub / "README.md").read_text()
    serve_as_hub_id("you/reranker", hub, model_module)
    pairs = [(QUERY, DOCS[0]), (QUERY, DOCS[1])]
    ours = CrossEncoder("you/reranker", device="cpu", max_length=64)
    assert ours.default_prompt == "question: "
    np.testing.assert_array_equal(ours.predict(pairs), model.predict(pairs))
    theirs = st_ce.CrossEncoder(str(hub), device="cpu", max_length=64)
    np.testing.assert_allclose(theirs.predict(pairs), model.predict(pairs), atol=1e-6)
    (hub / "README.md").write_text("the owner's card")
    pr = model.push_to_hub("you/reranker", revision="v2", create_pr=True, commit_message="retrained")
    assert pr == "https://hf.co/you/reranker/discussions/1" and ("create_branch", "v2") in calls
    assert ("upload", "retrained", "v2", True, ["README.md"]) in calls and \
        (hub / "README.md").read_text() == "the owner's card"
    own = tmp_path / "own"
    model.save(own)
    (own / "README.md").write_text("my new card")  # a folder of the user's own is uploaded as it is
    model.push_to_hub("you/reranker", local_model_path=str(own), exist_ok=True)
    assert (hub / "README.md").read_text() == "my new card"

    def unreachable(*args, **kwargs):
        raise RuntimeError("503 Service Unavailable")

    monkeypatch.setattr(FakeApi, "file_exists", unreachable)  # the hub does not say: the card there is kept
    model.push_to_hub("you/reranker", exist_ok=True)
    assert (hub / "README.md").read_text() == "my new card"
    with pytest.raises(ValueError, match="safetensors only"):
        model.push_to_hub("you/reranker", safe_serialization=False)
    with pytest.raises(ModelLoadError, match="local_model_path .* is not a saved model folder"):
        model.push_to_hub("you/reranker", local_model_path=str(tmp_path))


def test_a_left_truncating_tokenizer_cuts_as_in_sentence_transformers(tiny_model_dir, tmp_path):
    """``truncation_side: left`` in tokenizer_config.json keeps a long pair's last tokens in transformers and
    sentence-transformers; fastrank cut on the right (and its long-text shortcut assumed so), 0.9 logits off on
    the tiny model. The ONNX artifact records the side and scores the same."""
    import json
    import shutil

    from fastrank import CrossEncoder, Reranker
    from fastrank.export import export_model

    shutil.copytree(tiny_model_dir, tmp_path / "left")
    config_file = tmp_path / "left" / "tokenizer_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "truncation_side": "left"}))
    filler = "the ice facade of the glacier is sixty metres high and moves slowly . "
    pairs = [(QUERY, filler * 3 + "A glacier cave is formed within the ice."), (QUERY, "Paris."),
             (QUERY, filler * 400 + "Caves form where meltwater runs."), (filler * 4 + QUERY, "A glacier cave.")]
    theirs = st_ce.CrossEncoder(str(tmp_path / "left"), device="cpu", max_length=48)
    ours = CrossEncoder(tmp_path / "left", device="cpu", max_length=48)
    right = CrossEncoder(tiny_model_dir, device="cpu", max_length=48).predict(pairs)
    assert ours.pair_encoder().truncation_side == "left"
    np.testing.assert_allclose(ours.predict(pairs), theirs.predict(pairs), atol=1e-5)
    assert np.abs(ours.predict(pairs)[[0, 2, 3]] - right[[0, 2, 3]]).min() > 1e-3  # each cut pair scores otherwise
    assert ours.predict(pairs)[1] == pytest.approx(right[1], abs=1e-6)  # a pair that fits is not cut at all
    export_model(ours, tmp_path / "onnx", optimize="O1", num_threads=1)
    assert json.loads((tmp_path / "onnx" / "fastrank.json").read_text())["truncation_side"] == "left"
    logits = Reranker(tmp_path / "onnx").logits(pairs)[:, 0]
    np.testing.assert_allclose(1 / (1 + np.exp(-logits)), theirs.predict(pairs), atol=1e-5)  # their sigmoid
    with pytest.raises(ValueError, match="truncation_side must be 'right' or 'left'"):
        type(ours.pair_encoder())(ours.tokenizer.backend_tokenizer, 48, truncation_side="middle")
    long_query = [(filler * 4 + QUERY, "A glacier cave.")]  # fits one window: windows mode cuts it as encode does
    windows, _ = ours.pair_encoder().encode_windows(long_query, 8)
    assert [x.tolist() for x in windows.input_ids] == [x.tolist() for x in ours.pair_encoder().encode(long_query)
                                                       .input_ids]
