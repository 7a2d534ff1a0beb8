"""Reranker: torch vs ONNX agreement, order restoration, long-document windows, bad inputs, cache, CLI."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from fastrank import Reranker  # noqa: E402
from fastrank.batching import collate  # noqa: E402
from fastrank.errors import ModelLoadError  # noqa: E402

QUERY = "capital of france"
DOCS = ["paris is the capital of france", "berlin", "the capital of france is paris, a big city " * 5, "",
        "rome is in italy", "glacier caves form in ice", "baking bread at home takes time and patience"]


@pytest.fixture(scope="module")
def artifact(tiny_model_dir, tmp_path_factory):
    """fp32 ONNX artifact of the tiny model with max_length 64 (so windows are cheap to exercise)."""
    from fastrank import CrossEncoder
    from fastrank.export import export_model

    out = tmp_path_factory.mktemp("reranker") / "fp32-64"
    export_model(CrossEncoder(tiny_model_dir, max_length=64, device="cpu"), out, num_threads=1)
    return out


@pytest.fixture(scope="module")
def onnx_reranker(artifact):
    return Reranker(artifact, num_threads=1)


def test_torch_and_onnx_rank_identically(tiny_model_dir, artifact, onnx_reranker):
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir, max_length=64, device="cpu")
    from fastrank.backends.torch_backend import TorchBackend

    assert isinstance(Reranker(tiny_model_dir).backend, TorchBackend)  # a plain checkpoint runs on torch
    from fastrank.export.verify import builtin_groups

    for group in builtin_groups():
        pairs = [(group.query, d) for d in group.documents]
        expected = model.predict(pairs)
        got = onnx_reranker.predict(pairs)
        assert got.dtype == np.float32 and np.abs(got - expected).max() <= 1e-5
        ranked = [r["index"] for r in onnx_reranker.rerank(group.query, group.documents)]
        assert ranked == list(np.argsort(-expected, kind="stable"))


def test_order_is_restored_with_shuffled_lengths(onnx_reranker, artifact):
    rng = random.Random(0)
    docs = [" ".join(f"w{rng.randint(0, 99)}" for _ in range(rng.randint(0, 60))) for _ in range(40)]
    one_by_one = np.array([onnx_reranker.predict([(QUERY, d)])[0] for d in docs])
    budgeted = Reranker(artifact, num_threads=1, batch_size=7, max_tokens=96)
    for reranker in (onnx_reranker, budgeted):
        scores = reranker.predict([(QUERY, d) for d in docs])
        np.testing.assert_allclose(scores, one_by_one, atol=1e-5)
    ranked = onnx_reranker.rerank(QUERY, docs)
    assert [r["score"] for r in ranked] == sorted((r["score"] for r in ranked), reverse=True)
    assert all(docs[r["index"]] == r["document"] for r in ranked)
    assert sorted(r["index"] for r in ranked) == list(range(40))


def test_windows_keep_moving_on_when_a_long_query_leaves_few_document_tokens(onnx_reranker):
    encoder = onnx_reranker.encoder  # max_length 64: 61 tokens of room, a query takes at most 30 of them
    limit = encoder.max_window_overlap
    doc = " ".join(f"word{i % 50}" for i in range(400))
    import copy

    counter = copy.deepcopy(encoder.tokenizer)
    counter.no_truncation()
    doc_tokens = len(counter.encode(doc, add_special_tokens=False).ids)
    short, _ = encoder.encode_windows([("short query", doc)], limit - 1)
    long_query = " ".join(["question"] * 80)  # cut to 30 tokens: 31 left for the document
    long, _ = encoder.encode_windows([(long_query, doc)], limit - 1)
    # the asked overlap (limit - 1 = 30 of 31 document tokens) would step one token: ~doc_tokens windows
    assert len(long) <= doc_tokens // (31 // 4) + 2 and len(long) < doc_tokens // 4
    assert len(short) < len(long)  # a short query keeps the asked overlap, with more document per window


def test_a_pair_that_fits_keeps_its_long_query_in_windows_mode(onnx_reranker):
    """A query over half the window with a short document: one window equal to truncate mode's pair, query whole
    (it was cut to half the window, changing the scores of documents that fit)."""
    encoder = onnx_reranker.encoder  # max_length 64: 61 tokens of room
    query = " ".join(["question"] * 40)  # 40 tokens: more than half of the room
    pairs = [(query, "a short answer"), (query, {"title": "Paris", "text": "the capital"})]
    windows, owners = encoder.encode_windows(pairs, 8)
    plain = encoder.encode(pairs)
    assert owners.tolist() == [0, 1]
    for got, want in zip(windows.input_ids, plain.input_ids):
        np.testing.assert_array_equal(got, want)
    long_doc, _ = encoder.encode_windows([(query, " ".join(["word"] * 100))], 8)
    assert len(long_doc) > 1 and all(len(ids) <= 64 for ids in long_doc.input_ids)  # windows: the query is cut
    # a query longer than the whole room beside a document that fits one window: the query keeps what the document
    # leaves, as truncation gives it (it was cut to half the room, leaving tokens unused and the score changed)
    longer = " ".join(["question"] * 90)
    pairs = [(longer, "a short answer"), (longer, {"title": "Paris", "text": "the capital"}),
             (longer, " ".join(["word"] * 30))]  # 30 tokens: half the room, which truncation also keeps whole
    windows, owners = encoder.encode_windows(pairs, 8)
    assert owners.tolist() == [0, 1, 2]
    for got, want in zip(windows.input_ids, encoder.encode(pairs).input_ids):
        np.testing.assert_array_equal(got, want)
    one, _ = encoder.encode_windows([(longer, " ".join(["word"] * 31))], 8)  # the most one window holds: 31 tokens
    assert len(one) == 1 and len(one.input_ids[0]) == 64 and list(one.input_ids[0]).count(one.input_ids[0][-2]) == 31
    assert len(encoder.encode_windows([(longer, " ".join(["word"] * 32))], 8)[0]) == 2  # two windows: query cut


def test_windows_score_a_long_document_by_its_best_window(artifact, onnx_reranker):
    windows = Reranker(artifact, num_threads=1, long_documents="windows", window_stride=0)
    candidates = ["quantum physics lecture notes", "zebra xylophone quartz", "berlin is in germany",
                  "paris is the capital of france", "the cat sat on the mat"]
    target = candidates[int(np.argmax(onnx_reranker.predict([(QUERY, c) for c in candidates])))]
    fillers = ["ok", "the", "weather", "river", "lorem"]  # one token each
    filler = fillers[int(np.argmin(onnx_reranker.predict([(QUERY, (f + " ") * 60) for f in fillers])))]
    tokenizer = windows.encoder.tokenizer
    room = 64 - tokenizer.num_special_tokens_to_add(True) - len(tokenizer.encode(QUERY, add_special_tokens=False))
    long_doc = (filler + " ") * room + target  # the target starts exactly where the first window ends

    target_alone = onnx_reranker.predict([(QUERY, target)])[0]
    filler_alone = onnx_reranker.predict([(QUERY, (filler + " ") * room)])[0]
    truncated = onnx_reranker.predict([(QUERY, long_doc)])[0]
    windowed = windows.predict([(QUERY, long_doc)])[0]
    assert truncated == pytest.approx(filler_alone, abs=1e-6)  # truncation never sees the target
    assert windowed == pytest.approx(target_alone, abs=1e-6)  # the second window is exactly (query, target)
    assert windowed > truncated

    # a short document scores the same in both modes; overlapping windows give the max over windows
    short = "paris is the capital of france"
    assert windows.predict([(QUERY, short)])[0] == pytest.approx(onnx_reranker.predict([(QUERY, short)])[0], abs=1e-6)
    overlapping = Reranker(artifact, num_threads=1, long_documents="windows", window_stride=np.int64(16))
    assert type(overlapping.window_stride) is int
    longer = long_doc + (" " + filler) * 100
    encoded, owners = overlapping.encoder.encode_windows([(QUERY, longer)], 16)
    per_window = [overlapping.backend.logits(collate(encoded, [i], 0))[0, 0] for i in range(len(encoded))]
    assert len(per_window) >= 4 and set(owners.tolist()) == {0}
    best = 1 / (1 + np.exp(-max(per_window)))
    assert overlapping.predict([(QUERY, longer)])[0] == pytest.approx(best, abs=1e-6)
    with pytest.raises(ValueError, match="window_stride must be an integer"):
        Reranker(artifact, long_documents="windows", window_stride=64)
    with pytest.raises(ValueError, match="window_stride must be an integer"):
        Reranker(artifact, long_documents="windows", window_stride=True)
    with pytest.raises(ValueError, match="window_stride applies to long_documents='windows'"):
        Reranker(artifact, window_stride=10)


def test_rerank_output_and_bad_inputs(onnx_reranker):
    ranked = onnx_reranker.rerank(QUERY, DOCS, top_k=3)
    assert len(ranked) == 3 and set(ranked[0]) == {"index", "score", "document"}
    assert ranked == onnx_reranker.rerank(QUERY, DOCS)[:3]
    assert "document" not in onnx_reranker.rerank(QUERY, DOCS, return_documents=False)[0]
    assert onnx_reranker.rerank(QUERY, []) == []
    assert onnx_reranker.rerank(QUERY, DOCS, top_k=0) == []
    with pytest.raises(ValueError, match="query is empty"):
        onnx_reranker.rerank("  ", DOCS)
    with pytest.raises(ValueError, match="query is empty"):  # invisible only: the tokenizer drops every character
        onnx_reranker.rerank("\u200b \ufeff\x00", DOCS)
    with pytest.raises(TypeError, match="document 2 must be a str or a mapping.*got bytes.*decode"):
        onnx_reranker.rerank(QUERY, ["a", "b", b"caf\xe9"])
    with pytest.raises(TypeError, match="document 1 must be a str or a mapping.*got NoneType"):
        onnx_reranker.rerank(QUERY, ["a", None])
    with pytest.raises(TypeError, match=r"document 1 needs a 'text' string.*got keys \['body', 'title'\]"):
        onnx_reranker.rerank(QUERY, ["a", {"title": "t", "body": "b"}])
    with pytest.raises(TypeError, match="document 0: 'title' must be a string or absent, got int"):
        onnx_reranker.rerank(QUERY, [{"title": 3, "text": "b"}])
    with pytest.raises(TypeError, match="single dict"):
        onnx_reranker.rerank(QUERY, {"text": "one"})
    with pytest.raises(TypeError, match="single str"):
        onnx_reranker.rerank(QUERY, "just one document")
    with pytest.raises(TypeError, match="ordered sequence .* got a set"):
        onnx_reranker.rerank(QUERY, {"a", "b"})
    with pytest.raises(TypeError, match="not valid Unicode text"):
        onnx_reranker.rerank(QUERY, ["ok", "caf\udce9"])
    with pytest.raises(ValueError, match="top_k must be"):
        onnx_reranker.rerank(QUERY, DOCS, top_k=-1)


def test_repeated_documents_are_scored_once_and_tie(tiny_model_dir, monkeypatch):
    """Copies of a document scored in different rows of a torch batch got logits ~1e-7 apart, so ``rerank`` ordered
    them at random instead of keeping the caller's order; each distinct pair is now scored once."""
    reranker = Reranker(str(tiny_model_dir), backend="torch", num_threads=1)
    docs = ["paris is the capital of france"] * 12 + ["berlin"] * 3 + [{"title": "", "text": "berlin"},
                                                                        {"title": "Germany", "text": "berlin"}]
    rows = []
    encode = reranker.encode
    monkeypatch.setattr(reranker, "encode", lambda pairs: rows.append(len(pairs)) or encode(pairs))
    ranked = reranker.rerank(QUERY, docs)
    assert rows == [3]  # a blank title is no title: the same pair as the plain text
    every = reranker.every_logit([(QUERY, d) for d in docs])  # what benchmarks time: every pair, repeats too
    assert rows == [3, 17] and every.shape == (17, 1)
    scores = {r["index"]: r["score"] for r in ranked}
    assert len({scores[i] for i in range(12)}) == 1 and len({scores[i] for i in range(12, 16)}) == 1
    positions = [r["index"] for r in ranked]
    assert [i for i in positions if i < 12] == list(range(12))  # ties keep the caller's order
    alone = Reranker(str(tiny_model_dir), backend="torch", num_threads=1).predict(
        [(QUERY, d) for d in ("paris is the capital of france", "berlin", {"title": "Germany", "text": "berlin"})],
        activation="identity")
    np.testing.assert_allclose(reranker.predict([(QUERY, d) for d in docs], activation="identity")[[0, 12, 16]],
                               alone, atol=1e-6)


def test_predict_takes_cross_encoder_predicts_arguments_in_its_order(onnx_reranker):
    """``Reranker.predict(pairs, 32)`` (CrossEncoder.predict's order) said "activation must be sigmoid, softmax or
    identity, got 32", and one pair given alone was a TypeError where CrossEncoder.predict gives a scalar."""
    pairs = [(QUERY, d) for d in DOCS]
    scores = onnx_reranker.predict(pairs)
    np.testing.assert_array_equal(onnx_reranker.predict(pairs, 4), scores)
    np.testing.assert_array_equal(onnx_reranker.predict(pairs, 4, "identity"),
                                  onnx_reranker.predict(pairs, activation="identity"))
    single = onnx_reranker.predict((QUERY, DOCS[1]))
    assert np.ndim(single) == 0 and single == scores[1]
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer or None .*got 'identity'"):
        onnx_reranker.predict(pairs, "identity")


def test_rerank_fuses_first_stage_scores(onnx_reranker):
    raw = np.array([r["score"] for r in sorted(onnx_reranker.rerank(QUERY, DOCS), key=lambda r: r["index"])])
    first = np.linspace(1.0, 0.0, len(DOCS))  # the retriever's order: DOCS as given
    z = lambda x: (x - x.mean()) / x.std()  # noqa: E731
    for w in (0.0, 0.7, 50.0):
        fused = onnx_reranker.rerank(QUERY, DOCS, first_stage_scores=first.tolist(), fusion_weight=w)
        expected = z(raw.astype(np.float64)) + w * z(first) if w else raw  # weight 0: the reranker's own scores
        assert [r["index"] for r in fused] == np.argsort(-expected, kind="stable").tolist()
        np.testing.assert_allclose([r["score"] for r in fused], np.sort(expected)[::-1], rtol=1e-6,
                                   atol=1e-5)  # fusion activates in float64; ``raw`` was rounded to fp32
    assert [r["index"] for r in fused] == list(range(len(DOCS)))  # a huge weight is the first stage's order
    with pytest.raises(ValueError, match="needs first_stage_scores"):
        onnx_reranker.rerank(QUERY, DOCS, fusion_weight=1.0)
    with pytest.raises(ValueError, match="one per document"):
        onnx_reranker.rerank(QUERY, DOCS, first_stage_scores=[1.0], fusion_weight=1.0)
    with pytest.raises(ValueError, match="finite number >= 0"):
        onnx_reranker.rerank(QUERY, DOCS, first_stage_scores=first.tolist(), fusion_weight=-1.0)
    for w in (0.0, 1.0):  # bad scores are refused even where they would not change the ranking
        with pytest.raises(ValueError, match="must be finite"):
            onnx_reranker.rerank(QUERY, DOCS, first_stage_scores=[float("nan")] * len(DOCS), fusion_weight=w)
    # NumPy numbers are numbers: a weight and a top_k taken from arrays work as Python's do
    as_numpy = onnx_reranker.rerank(QUERY, DOCS, first_stage_scores=first, fusion_weight=np.float32(0.5),
                                    top_k=np.int64(2))
    assert as_numpy == onnx_reranker.rerank(QUERY, DOCS, first_stage_scores=first.tolist(), fusion_weight=0.5,
                                            top_k=2)


def test_huge_and_many_documents(onnx_reranker):
    huge = "word " * 20_000  # 100k characters
    ranked = onnx_reranker.rerank(QUERY, [huge, "paris"])
    assert len(ranked) == 2 and all(np.isfinite(r["score"]) for r in ranked)
    many = [f"document number {i} " + "filler " * (i % 13) for i in range(3000)]
    ranked = onnx_reranker.rerank(QUERY, many, top_k=10)
    scores = onnx_reranker.predict([(QUERY, d) for d in many])
    assert [r["index"] for r in ranked] == list(np.argsort(-scores, kind="stable")[:10])


def test_broken_artifacts_are_clear_errors(artifact, tiny_model_dir, tmp_path):
    import shutil

    from fastrank import UnknownBackendError

    broken = tmp_path / "broken"
    shutil.copytree(artifact, broken)
    (broken / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="onnxruntime could not load"):
        Reranker(broken)
    shutil.copy(artifact / "model.onnx", broken / "model.onnx")
    (broken / "tokenizer.json").unlink()
    with pytest.raises(ModelLoadError, match="could not read the tokenizer"):
        Reranker(broken)
    manifest = json.loads((artifact / "fastrank.json").read_text())
    (broken / "fastrank.json").write_text(json.dumps({**manifest, "manifest_version": 99}))
    with pytest.raises(ModelLoadError, match="newer fastrank"):
        Reranker(broken)
    with pytest.raises(ModelLoadError, match="not an exported artifact; export it first"):
        Reranker(tiny_model_dir, backend="onnx")
    with pytest.raises(UnknownBackendError, match="known backends: onnx, tensorrt, torch, torch-cuda"):
        Reranker(artifact, backend="tensorrt-llm")
    with pytest.raises(ModelLoadError, match="does not exist"):
        Reranker(tmp_path / "nowhere")


def test_module_level_rerank_caches(artifact):
    import fastrank
    from fastrank import reranker as module

    fastrank.clear_rerank_cache()
    first = fastrank.rerank(QUERY, DOCS, model=artifact, top_k=2)
    second = fastrank.rerank(QUERY, DOCS, model=str(artifact), top_k=2)
    assert first == second and len(first) == 2 and len(module._CACHE) == 1
    assert first == Reranker(artifact).rerank(QUERY, DOCS, top_k=2)
    assert fastrank.clear_rerank_cache() == 1 and not module._CACHE  # a public way to free the loaded models
    assert fastrank.rerank(QUERY, DOCS, model=artifact, top_k=2) == first and len(module._CACHE) == 1


def test_a_slow_load_does_not_hold_up_models_already_loaded(artifact, tmp_path, monkeypatch):
    """The cache's lock was held while a model loaded: every thread of a web app waited, whatever its model."""
    import threading

    import fastrank
    from fastrank import reranker as module

    module._CACHE.clear()
    want = fastrank.rerank(QUERY, DOCS, model=artifact)
    release, started = threading.Event(), threading.Event()

    class SlowLoad:
        def __init__(self, path, backend="auto"):
            started.set()
            assert release.wait(10)

        def rerank(self, *args, **kwargs):
            return []

    monkeypatch.setattr(module, "Reranker", SlowLoad)
    (tmp_path / "slow").mkdir()
    loader = threading.Thread(target=fastrank.rerank, args=(QUERY, DOCS), kwargs={"model": tmp_path / "slow"})
    loader.start()
    assert started.wait(10)
    done = []
    other = threading.Thread(target=lambda: done.append(fastrank.rerank(QUERY, DOCS, model=artifact)))
    other.start()
    other.join(5)
    loaded_meanwhile = not other.is_alive()
    release.set()
    loader.join(10)
    other.join(10)
    assert loaded_meanwhile and done == [want]
    assert len(module._CACHE) == 2 and not module._LOADING


def test_module_level_rerank_sees_a_checkpoint_saved_over_its_path(tiny_model_dir, tmp_path):
    import torch

    import fastrank
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir)
    model.save(tmp_path / "swap")
    before = fastrank.rerank(QUERY, DOCS, model=tmp_path / "swap")
    with torch.no_grad():
        model.model.classifier.bias += 1.0  # a different model, saved over the same path
    model.save(tmp_path / "swap")
    after = fastrank.rerank(QUERY, DOCS, model=tmp_path / "swap")
    assert after == Reranker(tmp_path / "swap").rerank(QUERY, DOCS)
    assert [r["score"] for r in after] != pytest.approx([r["score"] for r in before])


def test_runtime_imports_no_torch():
    code = "import sys, fastrank.reranker; print(sorted(m for m in ('torch', 'onnxruntime', 'transformers') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


def test_cli_rerank(artifact, tmp_path):
    from typer.testing import CliRunner

    from fastrank.cli import app

    runner = CliRunner()
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(DOCS[:3]) + "\n")
    result = runner.invoke(app, ["rerank", str(artifact), "--query", QUERY, "--docs-file", str(docs), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    expected = Reranker(artifact).rerank(QUERY, DOCS[:3])
    assert [r["index"] for r in out["results"]] == [r["index"] for r in expected]
    long_doc = "the weather is mild " * 40 + DOCS[0]  # past the artifact's 64 tokens: only windows see its end
    (tmp_path / "long.txt").write_text(long_doc + "\n")
    windows = runner.invoke(app, ["rerank", str(artifact), "--query", QUERY, "--docs-file", str(tmp_path / "long.txt"),
                                  "--long-documents", "windows", "--json"])
    assert windows.exit_code == 0, windows.output
    want = Reranker(artifact, long_documents="windows").rerank(QUERY, [long_doc])[0]["score"]
    assert json.loads(windows.stdout)["results"][0]["score"] == pytest.approx(want, abs=1e-6)
    assert want != pytest.approx(Reranker(artifact).rerank(QUERY, [long_doc])[0]["score"], abs=1e-6)
    assert json.loads(windows.stdout)["backend"]["long_documents"] == "windows"  # what ran, said in the output
    strided = runner.invoke(app, ["rerank", str(artifact), "--query", QUERY, "--docs-file", str(tmp_path / "long.txt"),
                                  "--long-documents", "windows", "--window-stride", "4", "--json"])
    assert json.loads(strided.stdout)["backend"]["window_stride"] == 4
    want4 = Reranker(artifact, long_documents="windows", window_stride=4).rerank(QUERY, [long_doc])[0]["score"]
    assert json.loads(strided.stdout)["results"][0]["score"] == pytest.approx(want4, abs=1e-6)
    assert out["results"][0]["score"] == pytest.approx(expected[0]["score"], abs=1e-6)
    stdin = "\n".join(json.dumps({"text": d}) for d in ["paris", "berlin", "rome"]) + "\n"
    result = runner.invoke(app, ["rerank", str(artifact), "--query", QUERY, "--top-k", "2"], input=stdin)
    assert result.exit_code == 0, result.output
    assert result.output.count("\n| ") == 3 and "| 1 |" in result.output  # header rule + 2 rows
    folder = runner.invoke(app, ["rerank", str(artifact), "--query", QUERY, "--docs-file", str(tmp_path)])
    assert "is a directory; give a file" in str(folder.exception)
    empty = runner.invoke(app, ["rerank", str(artifact), "--query", QUERY, "--docs-file", "/dev/null"])
    assert empty.exit_code == 0 and "does not exist" not in str(empty.exception)  # a device or pipe is read
    assert "warning: no documents in /dev/null" in empty.stderr and empty.stdout.count("\n| ") == 1
    zero = runner.invoke(app, ["rerank", str(artifact), "--query", QUERY, "--top-k", "0"], input="paris\n")
    said = " ".join(zero.output.replace("│", " ").split())  # unwrap the error box
    assert zero.exit_code == 2 and "--top-k must be >= 1 (leave it out to rank every document), got 0" in said

    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("café\n".encode("latin-1"))
    proc = subprocess.run([sys.executable, "-m", "fastrank.cli", "rerank", str(artifact), "--query", "q",
                           "--docs-file", str(latin1)], capture_output=True, text=True)
    assert proc.returncode == 2 and "is not UTF-8 text (byte 0xe9" in proc.stderr and "Traceback" not in proc.stderr


def test_documents_text_is_jsonl_only_when_its_first_line_is_a_json_document():
    from fastrank.cli.rerank import parse_documents
    from fastrank.errors import DataError

    plain = '"Ice caves" are often confused with glacier caves.\n{ice} is a word\n\nlast line\n'
    assert parse_documents(plain, "f") == ['"Ice caves" are often confused with glacier caves.', "{ice} is a word",
                                           "last line"]
    jsonl = '"a string"\n{"text": "an object"}\n{"document": "another"}\n'
    assert parse_documents(jsonl, "f") == ["a string", "an object", "another"]
    assert parse_documents(jsonl, "f", "lines") == ['"a string"', '{"text": "an object"}', '{"document": "another"}']
    with pytest.raises(DataError, match=r"f line 2: expected a JSON string .* --docs-format lines"):
        parse_documents('"json first"\nthen plain text\n', "f")
    with pytest.raises(DataError, match="f line 1: expected a JSON string"):
        parse_documents(plain, "f", "jsonl")
    with pytest.raises(ValueError, match="--docs-format must be one of auto, lines, jsonl"):
        parse_documents(plain, "f", "csv")
    # JSON objects without a text (a misspelt key, a dataset record) are refused, not ranked as raw JSON
    for wrong in ('{"doc": "Paris is in France."}\n{"doc": "A glacier cave"}\n',
                  '{"query": "q", "documents": ["a"], "labels": [1]}\n'):
        with pytest.raises(DataError, match="f line 1: expected a JSON string or an object with a 'text'"):
            parse_documents(wrong, "f")
    assert parse_documents('{"doc": 1}\n', "f", "lines") == ['{"doc": 1}']


def test_cpu_backends_pad_batches_to_their_longest_pair_only(onnx_reranker, tiny_model_dir):
    widths = []
    inner = onnx_reranker.backend.logits
    assert onnx_reranker.backend.scorers() == [inner]  # num_threads=1: one session
    onnx_reranker.backend.logits = lambda batch: (widths.append(batch["input_ids"].shape[1]), inner(batch))[1]
    try:
        docs = ["alpha", "alpha beta gamma", "alpha beta gamma delta epsilon zeta eta"]
        encoded, _ = onnx_reranker.encode([(QUERY, d) for d in docs])
        padded = onnx_reranker.run(encoded)
    finally:
        onnx_reranker.backend.logits = inner
    assert onnx_reranker.backend.pad_multiple == 1 and widths == [int(encoded.lengths.max())]
    assert int(encoded.lengths.max()) % 8 != 0  # else the test would not tell 1 from 8
    from fastrank.batching import run_batches

    rounded = run_batches(encoded, inner, pad_token_id=onnx_reranker.encoder.pad_token_id, pad_to_multiple_of=8)
    np.testing.assert_allclose(padded, rounded, atol=1e-5)  # padding never changes a score
    assert Reranker(tiny_model_dir, backend="torch").backend.pad_multiple == 1


def test_run_batches_spreads_batches_over_workers_in_input_order():
    from fastrank.batching import EncodedPairs, run_batches

    lengths = np.array([3, 9, 5, 7, 2, 8, 4, 6, 1, 10])
    encoded = EncodedPairs([np.arange(n) + 1 for n in lengths], [np.zeros(n, dtype=np.int64) for n in lengths],
                           lengths)
    calls = {"a": 0, "b": 0}

    def worker(name):
        def fn(batch):
            calls[name] += 1
            time.sleep(0.02)  # like a session run: the GIL is released, so the other worker takes the next batch
            return batch["attention_mask"].sum(axis=1, keepdims=True).astype(np.float32)  # the pair's length
        return fn

    seen = []
    out = run_batches(encoded, [worker("a"), worker("b")], batch_size=2, on_batch=seen.append)
    np.testing.assert_array_equal(out[:, 0], lengths)  # every row back in its place
    assert calls["a"] + calls["b"] == 5 and calls["a"] >= 1 and calls["b"] >= 1 and sorted(seen) == [2] * 5
    calls.update(a=0, b=0)
    out = run_batches(encoded, [worker("a"), worker("b")], batch_size=32)  # 10 pairs, 2 workers: 5 + 5, not 10 + 0
    np.testing.assert_array_equal(out[:, 0], lengths)
    assert calls == {"a": 1, "b": 1}

    def broken(batch):
        raise RuntimeError("session failed")

    with pytest.raises(RuntimeError, match="session failed"):
        run_batches(encoded, [worker("a"), broken], batch_size=1)
    with pytest.raises(ValueError, match="at least one scoring function"):
        run_batches(encoded, [], batch_size=1)


def test_onnx_sessions_score_like_one_session(artifact):
    from fastrank.backends.onnx_backend import auto_sessions

    pairs = [(QUERY, d) for d in DOCS * 5]
    one = Reranker(artifact, num_threads=np.int64(1), sessions=1)
    two = Reranker(artifact, num_threads=2, sessions=np.int64(2))  # NumPy integers count, as for batch_size
    assert (len(one.backend.scorers()), one.batch_size) == (1, 32) and (len(two.backend.scorers()), two.batch_size) == (2, 8)
    assert two.describe()["sessions"] == 2 and two.describe()["num_threads"] == 2
    sessions = {id(f.__defaults__[0]) for f in two.backend.scorers()}
    assert len(sessions) == 2  # two sessions, not one shared
    np.testing.assert_allclose(two.predict(pairs), one.predict(pairs), atol=1e-6)
    assert two.rerank(QUERY, DOCS) == one.rerank(QUERY, DOCS)
    assert auto_sessions(num_threads=1) == 1 and auto_sessions(num_threads=4, precision="int8") == 2
    assert auto_sessions(num_threads=4, precision="fp32") == 1
    assert len(Reranker(artifact, num_threads=2).backend.scorers()) == 1  # "auto" keeps one session for an fp32 model


def test_sessions_are_checked(artifact, tiny_model_dir):
    with pytest.raises(ValueError, match=r"num_threads must be a positive integer or None \(an int or NumPy integer, "
                                         r"not a bool\), got True"):
        Reranker(artifact, num_threads=True)  # was taken as one thread
    with pytest.raises(ValueError, match=r"sessions must be 'auto' or a positive integer \(an int or NumPy integer, "
                                         r"not a bool\), got 0"):
        Reranker(artifact, sessions=0)
    with pytest.raises(ValueError, match="sessions=2 needs the onnx backend on a CPU; the torch backend"):
        Reranker(tiny_model_dir, backend="torch", sessions=2)
    assert len(Reranker(tiny_model_dir, backend="torch").backend.scorers()) == 1  # "auto" is one session off onnx


def test_a_multi_class_model_ranks_by_its_last_class_everywhere(tiny_model_factory, tmp_path):
    """rank(), Reranker.rerank (torch and ONNX) and the service order a ce-trained (3-class) model by the last
    class's softmax probability: fastrank.reranker.relevance, checked against a hand softmax of the logits."""
    from fastrank import CrossEncoder
    from fastrank.export import export_model

    three = tiny_model_factory(3)
    model = CrossEncoder(three, device="cpu")
    docs = ["paris is the capital", "berlin", "a glacier cave", "rome is old"]
    logits = model.predict([(QUERY, d) for d in docs], activation="identity")
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    want = (e / e.sum(axis=1, keepdims=True))[:, -1]
    order = [int(i) for i in np.argsort(-want, kind="stable")]
    assert [r.index for r in model.rank(QUERY, docs)] == order
    export_model(str(three), tmp_path / "onnx", num_threads=1)
    for reranker in (Reranker(str(three), backend="torch"), Reranker(str(tmp_path / "onnx"))):
        got = reranker.rerank(QUERY, docs)
        assert [r["index"] for r in got] == order
        np.testing.assert_allclose([r["score"] for r in got], want[order], atol=1e-5)


def test_confident_models_rank_by_logits_not_by_saturated_scores(tiny_model_factory, tmp_path):
    """Logits of 40-120 all give fp32 sigmoid 1.0: rank(), Reranker.rerank and the evaluator order by the logits
    (the same order the activation gives where it does not saturate) instead of tying every document."""
    import torch

    from fastrank import CrossEncoder
    from fastrank.evaluation import RerankingEvaluator
    from fastrank.reranker import relevance, relevance_order

    model = CrossEncoder(tiny_model_factory(1), device="cpu")
    docs = ["paris is the capital", "berlin", "a glacier cave", "rome is old", "bread", "the capital of france"]
    pairs = [(QUERY, d) for d in docs]
    base = model.predict(pairs, activation="identity")
    with torch.no_grad():  # stretch the head so logits spread over [40, 120] in the same order
        head = model.model.classifier
        scale = 80.0 / float(base.max() - base.min())
        head.weight.mul_(scale)
        head.bias.copy_(head.bias * scale + 40.0 - float(base.min()) * scale)
    logits = model.predict(pairs, activation="identity")
    assert logits.min() > 39 and np.all(model.predict(pairs) == 1.0)  # every sigmoid score rounds to 1.0
    order = [int(i) for i in np.argsort(-logits, kind="stable")]
    assert order != list(range(len(docs)))  # input order would be the tie-broken (wrong) answer
    assert [r.index for r in model.rank(QUERY, docs)] == order
    model.save(tmp_path / "confident")
    reranker = Reranker(str(tmp_path / "confident"), backend="torch")
    assert [r["index"] for r in reranker.rerank(QUERY, docs)] == order
    flat = {"first_stage_scores": [0.5] * len(docs), "fusion_weight": 1.0}  # the first stage ties: the logits decide
    assert [r["index"] for r in reranker.rerank(QUERY, docs, **flat)] == order
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from fastrank.serve.app import ServeConfig, create_app

    with TestClient(create_app(ServeConfig(model=str(tmp_path / "confident")))) as client:
        reply = client.post("/rerank", json={"query": QUERY, "documents": docs})
        fused = client.post("/rerank", json={"query": QUERY, "documents": docs, **flat})
    assert [r["index"] for r in reply.json()["results"]] == order
    assert [r["index"] for r in fused.json()["results"]] == order
    labels = [0.0] * len(docs)
    labels[order[0]] = 1.0
    result = RerankingEvaluator([{"query": QUERY, "documents": docs, "labels": labels}], ks=(10,)).evaluate(model)
    assert result.metrics["map"] == 1.0  # tied scores put the positive last among equals: MAP 1/6
    multi = np.array([[0.0, 0.0, 30.0], [0.0, 0.0, 31.0], [5.0, 0.0, 1.0]], dtype=np.float32)
    assert np.all(relevance(multi, "identity")[:2] == 1.0)  # two saturated probabilities, told apart by log-odds
    assert list(np.argsort(-relevance_order(multi), kind="stable")) == [1, 0, 2]


def test_cli_rerank_table_keeps_four_cells_for_titles_and_pipes(artifact, tmp_path):
    """A title was joined to its text with " | " and a "|" inside a document was not escaped: such rows had more
    cells than the header."""
    import re

    from typer.testing import CliRunner

    from fastrank.cli import app

    docs = tmp_path / "docs.jsonl"
    docs.write_text("\n".join(json.dumps(d) for d in [{"title": "Paris", "text": "capital | of france"},
                                                     {"text": "a|b|c"}, {"text": "ends in a backslash \\|x"}]) + "\n")
    result = CliRunner().invoke(app, ["rerank", str(artifact), "--query", QUERY, "--docs-file", str(docs)])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + 3
    for row in rows:  # a cell boundary is a "|" after an even number of backslashes (GFM's escaping)
        assert len(re.findall(r"(?<!\\)(?:\\\\)*\|", row)) == 5, row
    assert "Paris — capital \\| of france" in result.stdout and "a\\|b\\|c" in result.stdout
    assert "backslash \\\\\\|x" in result.stdout


def test_rerank_without_a_model_uses_the_default_reranker(tiny_model_dir, serve_as_hub_id):
    """fastrank.rerank(query, docs): the hub's general-purpose cross-encoder (here a stand-in folder served as it)."""
    import fastrank
    import fastrank.model as model_module
    from fastrank import reranker as module

    module._CACHE.clear()
    fetched = serve_as_hub_id(module.DEFAULT_RERANKER, tiny_model_dir, model_module)
    got = fastrank.rerank(QUERY, DOCS)
    assert got == Reranker(tiny_model_dir).rerank(QUERY, DOCS) and len(got) == len(DOCS)
    assert "config_sentence_transformers.json" in fetched  # its files were asked of the hub by that id
    module._CACHE.clear()


def test_a_bad_text_is_named_by_its_position_among_the_pairs_given(tiny_model_dir):
    """Repeated pairs are scored once, and a bad text was named by its position among the distinct pairs ("item 1"
    for the caller's fourth pair)."""
    from fastrank import CrossEncoder

    pairs = [("q", "a"), ("q", "a"), ("q", "a"), ("q", "caf\udce9")]
    message = r"item 3: document is not valid Unicode text \(lone surrogate"
    with pytest.raises(TypeError, match=message):
        CrossEncoder(tiny_model_dir, device="cpu").predict(pairs)
    with pytest.raises(TypeError, match=message):
        Reranker(tiny_model_dir, backend="torch").logits(pairs)


def test_a_reranker_pickles_as_its_path_and_options(artifact, tiny_model_dir):
    """A Reranker handed to a worker process failed to pickle (its backend holds a module and onnxruntime
    sessions); it now travels as its path and options and loads again on the other side."""
    import pickle

    pairs = [("capital of france", "paris is the capital"), ("capital of france", "berlin " * 100)]
    for original in (Reranker(artifact, num_threads=1, batch_size=3, long_documents="windows", window_stride=8),
                     Reranker(tiny_model_dir, backend="torch", max_tokens=None)):
        copy = pickle.loads(pickle.dumps(original))
        assert copy is not original and copy.backend is not original.backend
        assert (copy.backend.name, copy.batch_size, copy.max_tokens, copy.long_documents, copy.window_stride) == \
            (original.backend.name, original.batch_size, original.max_tokens, original.long_documents,
             original.window_stride)
        np.testing.assert_allclose(copy.logits(pairs), original.logits(pairs), atol=1e-6)
    original.batch_size, original.max_tokens = 2, 512  # settings changed after loading travel too
    again = pickle.loads(pickle.dumps(original))
    assert (again.batch_size, again.max_tokens) == (2, 512)
    import copy as copying

    shallow = copying.copy(original)  # copy.copy shares the loaded model: no reload
    assert shallow.backend is original.backend and shallow.batch_size == 2


def test_a_table_cell_drops_control_characters_and_keeps_accents_whole():
    """A document's ANSI escape reached the terminal through the table, and the cut at 80 characters could leave a
    base letter without its combining accent (or half a joined emoji)."""
    from fastrank.cli.rerank import table_cell

    assert table_cell("plain \x1b[31mred\x1b[0m text\x07") == "plain [31mred[0m text"
    accented = "x" * 76 + "e\u0301" + "y" * 10  # the cut at 77 falls between "e" and its accent
    assert table_cell(accented) == "x" * 76 + "..."
    family = "x" * 75 + "\U0001F468\u200d\U0001F469" + "y" * 10  # man ZWJ woman: one emoji
    assert table_cell(family) == "x" * 75 + "..."
    assert table_cell("x" * 80) == "x" * 80 and len(table_cell("x" * 81)) == 80
    for joined in ("\u2764\ufe0f", "\U0001F44D\U0001F3FD", "\u0915\u093f"):  # a variation, a skin tone, a vowel sign
        assert table_cell("x" * 76 + joined + "y" * 10) == "x" * 76 + "..."
