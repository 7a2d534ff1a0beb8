"""Titled documents ({"title", "text"}): one joining rule, read the same way by training, eval and every runtime."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from fastrank.errors import DataError

TITLED = {"title": "Paris", "text": "It is the capital of France and its largest city.", "id": 7}
JOINED = "Paris [SEP] It is the capital of France and its largest city."


def _tokenizer(template_pair: str, special: list[str]):
    """A word-level ``tokenizers.Tokenizer`` with the given pair template (for tokenizers other than BERT's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    vocab = {w: i for i, w in enumerate(["[UNK]", "a", "b", *special])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(special)
    tok.post_processor = processors.TemplateProcessing(
        single="$A", pair=template_pair, special_tokens=[(s, vocab[s]) for s in special])
    return tok


def test_the_separator_is_what_the_tokenizer_puts_between_two_texts(tiny_model_dir):
    from fastrank import CrossEncoder
    from fastrank.documents import pair_separator

    assert CrossEncoder(tiny_model_dir, device="cpu").pair_encoder().separator == "[SEP]"
    assert pair_separator(_tokenizer("<s> $A </s> </s> $B:1 </s>:1", ["<s>", "</s>"])) == "</s></s>"  # RoBERTa
    assert pair_separator(_tokenizer("$A $B:1", [])) == "|"  # none: a visible fallback


def test_a_titled_document_is_scored_as_title_sep_text_and_the_title_counts(tiny_model_dir):
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, device="cpu")
    query = "what is the capital of france"
    enc = model.pair_encoder()
    titled, joined = enc.encode([(query, TITLED)]), enc.encode([(query, JOINED)])
    np.testing.assert_array_equal(titled.input_ids[0], joined.input_ids[0])
    assert list(titled.input_ids[0]).count(102) == 3  # [SEP] after the query, the title and the text
    assert list(titled.token_type_ids[0]).count(1) == len(titled.input_ids[0]) - 1 - len(query.split()) - 1
    scores = model.predict([(query, TITLED), (query, JOINED), (query, TITLED["text"])])
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert abs(scores[0] - scores[2]) > 1e-4  # the title changes the score
    ranked = model.rank(query, [TITLED["text"], TITLED], return_documents=True)
    assert {r.index: r.document for r in ranked}[1] is TITLED  # the caller's mapping comes back, extra keys too
    # a blank title is no title; a missing one likewise
    blank = model.predict([(query, {"title": "  ", "text": TITLED["text"]}), (query, {"text": TITLED["text"]})])
    np.testing.assert_allclose(blank, scores[2], atol=1e-6)
    with pytest.raises(TypeError, match="pair 0's document needs a 'text' string"):
        model.predict([(query, {"title": "x"})])


def test_windows_open_with_the_title(tiny_model_dir):
    from fastrank import CrossEncoder

    enc = CrossEncoder(tiny_model_dir, device="cpu", max_length=48).pair_encoder()
    query = "what is paris"
    short = enc.encode_windows([(query, TITLED)], 8)[0]
    np.testing.assert_array_equal(short.input_ids[0], enc.encode([(query, TITLED)]).input_ids[0])
    long_doc = {"title": "Paris article", "text": " ".join(f"word{i}" for i in range(120))}
    windows, owners = enc.encode_windows([(query, long_doc), (query, "plain")], 8)
    title_ids = enc.tokenizer.encode("Paris article [SEP]", add_special_tokens=False).ids
    q_len = len(enc.tokenizer.encode(query, add_special_tokens=False).ids)
    per_doc = [ids for ids, o in zip(windows.input_ids, owners) if o == 0]
    assert len(per_doc) >= 3 and list(owners).count(1) == 1
    for ids in per_doc:  # [CLS] query [SEP] title [SEP] window [SEP]
        assert len(ids) <= 48
        assert list(ids[2 + q_len: 2 + q_len + len(title_ids)]) == title_ids
    first = enc.encode_windows([(query, long_doc["text"])], 8)[0]
    assert len(first.input_ids) < len(per_doc) + 1  # the title takes room: no fewer windows than without it
    sep_id = enc.tokenizer.token_to_id("[SEP]")
    long_title = {"title": " ".join(["heading"] * 60), "text": long_doc["text"]}  # more than half the room
    titled_windows, _ = enc.encode_windows([(query, long_title)], 8)
    assert len(titled_windows) >= 3
    for ids in titled_windows.input_ids:
        room = 48 - 3 - q_len  # [CLS] query [SEP] ... [SEP]
        title_part = list(ids[2 + q_len: 2 + q_len + room // 2])
        assert title_part[-1] == sep_id and set(title_part[:-1]) == {enc.tokenizer.token_to_id("heading")}


def test_reranker_backends_and_the_service_read_titles_alike(tiny_model_dir, tmp_path):
    from fastapi.testclient import TestClient

    from fastrank import CrossEncoder, Reranker
    from fastrank.export import export_model
    from fastrank.serve.app import ServeConfig, create_app

    query = "what is the capital of france"
    docs = [TITLED, "Berlin is in Germany.", {"title": "Lyon", "text": "It is known for its food."}]
    torch_rr = Reranker(str(tiny_model_dir), backend="torch")
    want = torch_rr.rerank(query, docs)
    assert [r["document"] for r in want if r["index"] == 0] == [TITLED]
    joined = [JOINED, docs[1], "Lyon [SEP] It is known for its food."]
    np.testing.assert_allclose([r["score"] for r in want], [r["score"] for r in torch_rr.rerank(query, joined)],
                               atol=1e-6)
    manifest = export_model(CrossEncoder(tiny_model_dir, max_length=64, device="cpu"), tmp_path / "onnx",
                            num_threads=1, verify_pairs=[(query, docs, [2, 0, 1])])
    parity = manifest["parity"]  # the three titled pairs are the labelled ones (built-in long documents join them)
    assert parity["passed"] and parity["num_labelled_queries"] == 1 and parity["num_pairs"] == 3 + 44
    onnx_got = Reranker(str(tmp_path / "onnx")).rerank(query, docs)
    assert [r["index"] for r in onnx_got] == [r["index"] for r in want]
    np.testing.assert_allclose([r["score"] for r in onnx_got], [r["score"] for r in want], atol=1e-4)

    config = ServeConfig(model=str(tiny_model_dir), max_document_chars=60, model_name="tiny")
    with TestClient(create_app(config, torch_rr)) as client:
        body = {"query": query, "documents": [{"text": d} if isinstance(d, str) else d for d in docs[1:]],
                "return_documents": True}
        got = client.post("/rerank", json=body).json()["results"]
        sub = torch_rr.rerank(query, docs[1:])
        assert [r["index"] for r in got] == [r["index"] for r in sub]
        np.testing.assert_allclose([r["relevance_score"] for r in got], [r["score"] for r in sub], atol=1e-6)
        assert {r["index"]: r["document"] for r in got}[1] == {"title": "Lyon", "text": "It is known for its food."}
        long_title = {"title": "x" * 40, "text": "y" * 30}  # 70 characters with the title: over the limit of 60
        resp = client.post("/rerank", json={"query": query, "documents": [long_title]})
        assert resp.status_code == 413 and "title and text" in resp.json()["detail"]


def test_data_files_read_titles(tmp_path):
    from fastrank.data import join_titles, load_dataset, read_corpus, read_groups

    grouped = tmp_path / "g.jsonl"
    grouped.write_text(json.dumps({"query": "q", "documents": [TITLED, "plain", {"text": "t", "title": ""}],
                                   "labels": [1, 0, 0]}) + "\n")
    (g,) = read_groups(grouped)
    assert g.documents == [{"title": "Paris", "text": TITLED["text"]}, "plain", "t"]  # extra keys dropped
    flat = tmp_path / "f.csv"
    flat.write_text('query,document,label,title\nq,"It is the capital of France and its largest city.",1,Paris\n'
                    "q,plain,0,\n")
    assert read_groups(flat)[0].documents == g.documents[:2]
    with pytest.raises(DataError, match="has titled documents .* pass separator="):
        load_dataset(grouped)
    assert load_dataset(grouped, separator="[SEP]")["document"] == [JOINED, "plain", "t"]
    assert join_titles([g], "[SEP]") == 1 and g.documents == [JOINED, "plain", "t"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"query": "q", "documents": [{"title": "t"}], "labels": [1]}) + "\n")
    with pytest.raises(DataError, match=r"line 1: document 0 needs a 'text' string"):
        read_groups(bad)
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps(TITLED) + "\n" + json.dumps("plain") + "\n")
    assert read_corpus(corpus) == [{"title": "Paris", "text": TITLED["text"]}, "plain"]


class TitleEmbedder:
    """Similarity to any query is the digit that opens the text the embedder reads (title first) / 10: only a model
    that reads titles can tell this module's documents apart (they all have the same text)."""

    name_or_path, max_length, pooling, normalize, dimension = "fake-titles", 8, "mean", True, 2

    def encode(self, texts, batch_size=64, show_progress_bar=None):
        from fastrank.documents import document_text

        sims = []
        for t in texts:
            t = document_text(t, "[SEP]")
            sims.append(1.0 if t.startswith("q") else int(t[0]) / 10 if t[0].isdigit() else 0.0)
        return np.asarray([[s, np.sqrt(1 - s * s)] for s in sims], dtype=np.float32)


def _digit_docs():
    return [{"title": f"{i} title", "text": "a passage"} for i in range(10)]


def test_mining_reads_titles_and_keeps_them(tmp_path):
    from fastrank.data import QueryGroup
    from fastrank.mining import add_answer_negatives, mine_hard_negatives

    docs = _digit_docs()
    corpus = docs + ["a passage", {"title": "5  TITLE", "text": "A passage"}]  # the positive's twin: not a negative
    group = QueryGroup("q1", [docs[5], docs[1]], [1.0, 0.0])
    for run in range(2):
        res = mine_hard_negatives([group], TitleEmbedder(), corpus, num_negatives=3, cache_dir=tmp_path,
                                  use_faiss=False)
        assert res.stats["corpus_cache_hit"] is bool(run)
        assert res.groups[0].documents == [docs[5], docs[9], docs[8], docs[7]]  # the caller's objects, titles kept
        assert res.stats["duplicate_documents_removed"] == 1 and res.stats["corpus_size"] == 11
    plain = mine_hard_negatives([QueryGroup("q1", ["5 title [SEP] a passage"], [1.0])],
                                TitleEmbedder(), ["9 title [SEP] a passage"], num_negatives=1, cache_dir=tmp_path)
    assert not plain.stats["corpus_cache_hit"]  # the cache key holds titles apart from text

    groups = [QueryGroup(f"q{i}", [docs[i]], [1.0]) for i in (3, 6, 9)]
    added = add_answer_negatives(groups, TitleEmbedder(), closest=1, random_count=0, relative_margin=None)
    assert [g.documents[1:] for g in added.groups] == [[docs[9]], [docs[9]], [docs[6]]]


def test_retrieval_evaluation_reads_titles():
    from fastrank.data import QueryGroup
    from fastrank.evaluation.retrieval import RetrievalTask, evaluate_retrieve_rerank

    docs = _digit_docs()
    task = RetrievalTask.from_groups([QueryGroup("q1", [docs[7], docs[2]], [1.0, 0.0])], docs)
    assert len(task.corpus) == 10 and [task.corpus[i] for i in task.qrels[0]] == [docs[7]]  # same text, 10 docs

    class TitleReranker:
        def predict(self, pairs, batch_size=64):
            return [float(d["title"].startswith("7")) for _, d in pairs]

    out = evaluate_retrieve_rerank(task, TitleEmbedder(), TitleReranker(), top_k=5, use_bm25=False)
    assert out["first_stage"]["mrr@10"] == pytest.approx(1 / 3)  # 9, 8, then 7
    assert out["reranked"]["mrr@10"] == 1.0


def test_mine_cli_writes_titled_documents(tiny_model_dir, tmp_path):
    from fastrank.cli.mine import mine_file
    from fastrank.data import read_groups

    data = tmp_path / "train.jsonl"
    data.write_text("\n".join(json.dumps({"query": f"query {i}", "documents": [{"title": f"title {i}", "text": t}],
                                          "labels": [1]}) for i, t in enumerate(("one", "two", "three"))) + "\n")
    result = mine_file(str(data), str(tmp_path / "mined.jsonl"), embedding_model=str(tiny_model_dir),
                       num_negatives=2, cache_dir=None, show_progress_bar=False)
    assert result["corpus_size"] == 3
    groups = read_groups(tmp_path / "mined.jsonl")
    assert [len(g.documents) for g in groups] == [3, 3, 3]
    assert all(d.get("title", "").startswith("title ") for g in groups for d in g.documents)
    assert {d["title"] for d in groups[0].documents[1:]} == {"title 1", "title 2"}


def test_rerank_cli_reads_titles_from_jsonl(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from fastrank.cli import app

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in (TITLED, {"text": "Berlin is in Germany."})) + "\n")
    args = ["rerank", str(tiny_model_dir), "--query", "capital of france", "--docs-file", str(docs)]
    result = CliRunner().invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("{"):])
    assert {r["index"]: r["document"] for r in out["results"]}[0] == {"title": "Paris", "text": TITLED["text"]}
    table = CliRunner().invoke(app, args)
    assert "| Paris — It is the capital" in table.output  # a title and its text in one cell


def _title_groups(n: int, seed: int) -> list[dict]:
    """Every document has the same text; only its title says whether it answers ("<query> good") or not ("<other
    word> bad"): learnable by a tiny model, and invisible to one that does not read titles."""
    words = ["apple", "river", "stone", "cloud", "piano", "tiger", "lemon", "forest", "rocket", "candle"]
    rng = random.Random(seed)
    groups = []
    for i in range(n):
        word = words[i % len(words)]
        titles = [f"{word} good"] + [f"{w} bad" for w in rng.sample([w for w in words if w != word], 4)]
        order = list(range(5))
        rng.shuffle(order)
        groups.append({"query": word, "documents": [{"title": titles[k], "text": "a passage"} for k in order],
                       "labels": [int(k == 0) for k in order]})
    return groups


def test_training_learns_from_titles_alone(tiny_model_dir, tmp_path):
    from fastrank import CrossEncoder
    from fastrank.training.recipe import TrainConfig, train

    for name, n, seed in (("train", 60, 0), ("test", 20, 1)):
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(g) for g in _title_groups(n, seed)) + "\n")
    config = TrainConfig(data=str(tmp_path / "train.jsonl"), eval_data=str(tmp_path / "test.jsonl"),
                         out=str(tmp_path / "model"), base=str(tiny_model_dir), loss="listnet", epochs=6, lr=3e-3,
                         batch_size=8, max_length=32, bf16="false", show_progress_bar=False, warmup_ratio=0.0)
    result = train(config)
    assert result["titled_documents"] == 300
    assert result["eval_after"]["metrics"]["map"] > 0.9 > result["eval_before"]["metrics"]["map"] + 0.2
    model = CrossEncoder(tmp_path / "model", device="cpu")
    scores = model.predict([("tiger", {"title": "tiger good", "text": "a passage"}),
                            ("tiger", {"title": "lemon bad", "text": "a passage"})])
    assert scores[0] > scores[1]
    assert "read as `<title> [SEP] <text>`" in (tmp_path / "model" / "README.md").read_text()


def test_client_sends_title_and_text_only(monkeypatch):
    from fastrank.client import Client

    sent = {}

    def post(self, path, body):
        sent.update(body)
        return {"results": []}

    monkeypatch.setattr(Client, "_post", post)
    Client("http://localhost:1").rerank("q", [TITLED, "plain", {"text": "t", "title": None}])
    assert sent["documents"] == [{"title": "Paris", "text": TITLED["text"]}, "plain", {"text": "t"}]
    with pytest.raises(TypeError, match="document 1 needs a 'text' string"):
        Client("http://localhost:1").rerank("q", ["ok", {"body": "x"}])


def test_pairs_are_tokenized_a_slice_at_a_time_with_the_same_ids(tiny_model_dir, monkeypatch):
    """encode and encode_windows tokenize at most CHUNK_PAIRS items / CHUNK_CHARS characters at a time and keep
    arrays only (tokenizing 400k pairs at once held 3 GB of tokenizers Encodings where the arrays need 0.35 GB),
    giving the same ids, type ids, lengths and window owners as one pass."""
    import fastrank.batching as batching
    from fastrank import CrossEncoder

    encoder = CrossEncoder(tiny_model_dir, device="cpu", max_length=32).pair_encoder()
    rng = random.Random(0)
    words = "glacier cave ice water river the a of Paris France stock market".split()
    pairs = [(" ".join(rng.choices(words, k=rng.randint(1, 6))),
              {"title": "Ice", "text": " ".join(rng.choices(words, k=rng.randint(1, 80)))} if i % 5 == 0
              else " ".join(rng.choices(words, k=rng.randint(1, 80)))) for i in range(40)]
    whole, whole_windows = encoder.encode(pairs), encoder.encode_windows(pairs, 4)
    sizes: list[int] = []

    class Spy:  # the tokenizer, recording the size of each slice it is handed
        def __init__(self, real):
            self.real = real

        def encode_batch(self, items, *args, **kwargs):
            sizes.append(len(items))
            return self.real.encode_batch(items, *args, **kwargs)

        def __getattr__(self, name):
            return getattr(self.real, name)

    monkeypatch.setattr(batching, "CHUNK_PAIRS", 7)
    monkeypatch.setattr(batching, "CHUNK_CHARS", 900)  # windows: several slices of the ~19k characters
    real, encoder.tokenizer = encoder.tokenizer, Spy(encoder.tokenizer)
    sliced = encoder.encode(pairs)
    encoder.tokenizer = real
    sliced_windows, owners = encoder.encode_windows(pairs, 4)
    assert len(sizes) > 5 and max(sizes) <= 7
    for a, b in ((whole, sliced), (whole_windows[0], sliced_windows)):
        assert np.array_equal(a.lengths, b.lengths)
        assert all(np.array_equal(x, y) for x, y in zip(a.input_ids, b.input_ids))
        assert all(np.array_equal(x, y) for x, y in zip(a.token_type_ids, b.token_type_ids))
    assert np.array_equal(owners, whole_windows[1]) and owners.max() == len(pairs) - 1
