"""CLI: typer wrappers print what the functions return; bad input exits 2 with a one-line message."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from fastrank.cli import app
from fastrank.errors import FastrankError

runner = CliRunner()


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "eval.jsonl"
    rows = [
        {"query_id": "1", "query": "glacier caves", "documents": ["ice cave in a glacier", "paris"], "labels": [1, 0]},
        {"query_id": "2", "query": "capital of france", "documents": ["berlin", "paris", "rome"], "labels": [0, 1, 0]},
        {"query_id": "3", "query": "no answer here", "documents": ["x", "y"], "labels": [0, 0]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_eval_json_matches_library(tiny_model_dir, eval_file):
    from fastrank import CrossEncoder
    from fastrank.evaluation import evaluate_rankings

    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(eval_file), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    model = CrossEncoder(tiny_model_dir, device="cpu")
    s1 = model.predict([("glacier caves", "ice cave in a glacier"), ("glacier caves", "paris")])
    s2 = model.predict([("capital of france", d) for d in ("berlin", "paris", "rome")])
    ref = evaluate_rankings([s1, s2], [np.array([1, 0]), np.array([0, 1, 0])])
    assert out["num_queries"] == 2 and out["num_skipped_no_positive"] == 1
    assert out["metrics"]["map"] == pytest.approx(ref.metrics["map"], abs=1e-9)
    assert out["metrics"]["ndcg@10"] == pytest.approx(ref.metrics["ndcg@10"], abs=1e-9)
    flat = eval_file.with_name("eval.csv")  # the same data as flat CSV rows, labels as the strings csv gives
    rows = [json.loads(line) for line in eval_file.read_text().splitlines()]
    flat.write_text("query,document,label\n" + "".join(f'"{r["query"]}","{d}",{y}\n' for r in rows
                                                       for d, y in zip(r["documents"], r["labels"])))
    from_csv = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(flat), "--json"])
    assert from_csv.exit_code == 0, from_csv.output
    assert json.loads(from_csv.stdout)["metrics"] == pytest.approx(out["metrics"], abs=1e-9)


def test_eval_table(tiny_model_dir, eval_file):
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(eval_file)])
    assert result.exit_code == 0, result.output
    assert "| map |" in result.output and "skipped 1 without a positive" in result.output
    assert "only relevant candidates" not in result.output
    trivial = eval_file.with_name("trivial.jsonl")
    trivial.write_text(eval_file.read_text() + json.dumps({"query": "one answer", "documents": ["it"], "labels": [1]})
                       + "\n")
    counted = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(trivial)])
    assert "1 of the evaluated queries have only relevant candidates and score 1.0" in counted.output


def test_eval_retrieve_with_fusion_matches_library(tiny_model_dir, eval_file):
    from fastrank import CrossEncoder, EmbeddingModel
    from fastrank.data import read_groups
    from fastrank.evaluation.retrieval import RetrievalTask, evaluate_retrieve_rerank

    args = ["eval", str(tiny_model_dir), "--data", str(eval_file), "--retrieve-top-k", "3"]
    result = runner.invoke(app, args + ["--fusion-weight", "0.5", "--fusion-weight", "2", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    ref = evaluate_retrieve_rerank(RetrievalTask.from_groups(read_groups(str(eval_file))), EmbeddingModel(),
                                   CrossEncoder(tiny_model_dir), top_k=3, ks=(10,), fusion_weights=(0.5, 2.0))
    assert set(out["reranked_fused"]) == {"0.5", "2"}
    for w in ("0.5", "2"):
        assert out["reranked_fused"][w]["ndcg@10"] == pytest.approx(ref["reranked_fused"][w]["ndcg@10"], abs=1e-9)
    table = runner.invoke(app, args + ["--fusion-weight", "2"])
    assert table.exit_code == 0 and "reranked + 2 x first_stage" in table.output
    for stray in (["--fusion-weight", "1"], ["--corpus", str(eval_file), "--embedding-model", "x"]):
        bad = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(eval_file), *stray])
        message = " ".join(bad.output.replace("│", " ").split())
        assert bad.exit_code == 2 and f"{', '.join(stray[::2])} need(s) --retrieve-top-k" in message, message


def test_eval_retrieve_passes_max_length_to_the_reranker(tiny_model_dir, eval_file, monkeypatch):
    import fastrank.model

    loaded = []

    class Recording(fastrank.model.CrossEncoder):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            loaded.append(self.max_length)

    monkeypatch.setattr(fastrank.model, "CrossEncoder", Recording)
    args = ["eval", str(tiny_model_dir), "--data", str(eval_file), "--retrieve-top-k", "3", "--max-length", "24"]
    result = runner.invoke(app, args + ["--json"])
    assert result.exit_code == 0, result.output
    assert loaded == [24]


def test_mine_adds_answer_negatives(eval_file, tmp_path):
    out = tmp_path / "mined.jsonl"
    result = runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(out), "--num-negatives", "1",
                                 "--keep-original-negatives", "--answer-closest", "1", "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    rows = {r["query_id"]: r for r in map(json.loads, out.read_text().splitlines())}
    # mining adds one new document per query from the others' candidates, after the kept originals: query 2 gets
    # query 1's answer; query 1 already holds query 2's ("paris"), so the answer stage has nothing left to add
    assert rows["1"]["documents"][:2] == ["ice cave in a glacier", "paris"] and len(rows["1"]["documents"]) == 3
    assert rows["2"]["documents"] == ["paris", "berlin", "rome", "ice cave in a glacier"]
    assert rows["2"]["labels"] == [1.0, 0.0, 0.0, 0.0] and stats["queries_with_fewer_negatives"] == 0
    assert stats["answer_negatives_added"] == 0 and stats["queries_with_fewer_answer_negatives"] == 2


def test_mine_seed_draws_random_negatives_as_the_python_api_does(eval_file, tmp_path):
    """``fastrank mine`` had no --seed: --sampling random always drew seed 0's sample."""
    from fastrank import EmbeddingModel, mine_hard_negatives
    from fastrank.data import read_corpus, read_groups

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"city number {i} is a capital of somewhere\n" for i in range(30)))

    def mine(seed):
        out = tmp_path / f"mined-{seed}.jsonl"
        result = runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(out), "--corpus", str(corpus),
                                     "--num-negatives", "3", "--sampling", "random", "--seed", str(seed),
                                     "--cache-dir", str(tmp_path / "cache")])
        assert result.exit_code == 0, result.output
        return [json.loads(line)["documents"] for line in out.read_text().splitlines()]

    expected = mine_hard_negatives(read_groups(eval_file), EmbeddingModel(), read_corpus(corpus), num_negatives=3,
                                   sampling="random", seed=7, show_progress_bar=False)
    assert mine(7) == [g.documents for g in expected.groups]
    assert mine(7) != mine(8)


def test_mine_reads_a_plain_text_corpus(eval_file, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("madrid is the capital of spain\n\"lyon\" is a french city\nglaciers are slow rivers of ice\n")
    out = tmp_path / "mined.jsonl"
    result = runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(out), "--num-negatives", "2",
                                 "--corpus", str(corpus), "--cache-dir", str(tmp_path / "cache"), "--json"])
    assert result.exit_code == 0, result.output
    corpus_docs = set(corpus.read_text().splitlines())
    positives = {d for r in map(json.loads, eval_file.read_text().splitlines())
                 for d, y in zip(r["documents"], r["labels"]) if y > 0}  # they join the corpus: another query's
    rows = list(map(json.loads, out.read_text().splitlines()))  # positive may be mined as a negative
    for row in rows:
        negatives = [d for d, y in zip(row["documents"], row["labels"]) if y == 0]
        assert len(negatives) == 2 and set(negatives) <= corpus_docs | positives
    assert {d for r in rows for d in r["documents"]} & corpus_docs  # the text file's lines, one document each
    again = runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(out), "--num-negatives", "2",
                                "--corpus", str(corpus), "--cache-dir", str(tmp_path / "cache")])
    assert again.exit_code == 0 and "(corpus embeddings from the cache)" in again.output  # no documents/s claimed
    cached = json.loads(runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(out), "--corpus",
                                            str(corpus), "--cache-dir", str(tmp_path / "cache"), "--json"]).stdout)
    assert cached["corpus_cache_hit"] and cached["documents_per_second"] is None  # --json claimed a rate too
    assert json.loads(result.stdout)["documents_per_second"] > 0


def test_mine_and_bench_refuse_bad_outputs_before_any_work(eval_file, tiny_model_dir, tmp_path):
    before, weights = eval_file.read_text(), (tiny_model_dir / "model.safetensors").read_bytes()
    in_model = str(tiny_model_dir / "model.safetensors")  # a model's file: mine's embedding model, teacher, bench's
    cases = [(["mine", "--data", str(eval_file), "--out", str(eval_file)], "refusing to write --out over the input"),
             (["mine", "--data", str(eval_file), "--out", str(tmp_path)], "is a directory; give a file path"),
             (["mine", "--data", str(eval_file), "--out", str(eval_file / "x.jsonl")], "is a file, not a directory"),
             (["mine", "--data", str(eval_file), "--out", str(tmp_path / "m.jsonl"), "--cache-dir", str(eval_file)],
              "--cache-dir .* is a file; give a directory"),
             (["bench", "no-model", "--data", str(eval_file), "--out", str(tmp_path)], "is a directory"),
             (["bench", "no-model", "--data", str(eval_file), "--plots", str(eval_file)], "--plots .* is a file"),
             (["mine", "--data", str(eval_file), "--out", in_model, "--model", str(tiny_model_dir)], "file of the input"),
             (["mine", "--data", str(eval_file), "--out", in_model, "--teacher", str(tiny_model_dir)], "file of the "),
             (["bench", str(tiny_model_dir), "--data", str(eval_file), "--out", in_model], "file of the input folder")]
    for args, message in cases:  # main() turns these errors into one line and exit 2 (test below)
        result = runner.invoke(app, args)
        assert isinstance(result.exception, FastrankError) and re.search(message, str(result.exception)), args
    assert eval_file.read_text() == before and sorted(p.name for p in tmp_path.iterdir()) == []
    assert (tiny_model_dir / "model.safetensors").read_bytes() == weights


def test_bad_options_are_named_as_flags_before_any_model_loads(tmp_path, eval_file):
    """Options checked after the embedding model loaded (--answer-closest after the whole mining), or named by the
    library's parameters (range_min, corpus=None, top_k, num_threads, kind, numpy's seed error)."""
    import fastrank.cli as cli

    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    mine = ["mine", "--data", str(eval_file), "--out", str(tmp_path / "m.jsonl"), "--model", str(tmp_path / "none")]
    cases = [(mine + ["--answer-closest", "-1"], "--answer-closest and --answer-random must be >= 0, got -1 and 0"),
             (mine + ["--corpus", str(empty)], "no documents in them; give files with documents, or leave --corpus "
                                               "out to mine from the data's own documents"),
             (mine + ["--range-min", "10", "--range-max", "5"], "--range-max 5 must be greater than --range-min 10"),
             (mine + ["--min-score", "0.9", "--max-score", "0.1"], "--min-score 0.9 is above --max-score 0.1"),
             (["eval", str(tmp_path / "none"), "--data", str(eval_file), "--retrieve-top-k", "0"],
              "--retrieve-top-k must be >= 1"),
             (["serve", str(tmp_path / "none"), "--threads", "0"], "--threads must be >= 1, got 0"),
             (["serve", str(tmp_path / "none"), "--sessions", "0"], "--sessions must be 'auto' or a positive integer"),
             (["export", str(tmp_path), "--format", "triton", "--triton-kind", "KIND_TPU", "--out",
               str(tmp_path / "r")], "--triton-kind must be auto, KIND_GPU or KIND_CPU, got 'KIND_TPU'"),
             (["train", "--data", str(eval_file), "--out", str(tmp_path / "t"), "--seed", "-1"],
              "--seed -1 is not an integer from 0 to 2**32 - 1"),
             (mine + ["--seed", "-1"], "--seed -1 is not an integer from 0 to 2**32 - 1"),  # Random(-1) is Random(1)
             (mine + ["--sampling", "best"], "--sampling must be one of top, random, got 'best'"),
             (["train", "--data", str(eval_file), "--out", str(tmp_path / "t"), "--epochs", "0"],
              "--epochs must be a finite number > 0"),  # one-word names: "epochs must" before
             (["train", "--data", str(eval_file), "--out", str(tmp_path / "t"), "--mine-negatives", "60"],
              "--mine-negatives 60 is more than the 50 documents negatives are mined from"),
             (["export", str(tmp_path / "none"), "--out", str(tmp_path / "x"), "--optimize", "O9"],
              "--optimize must be one of O0, O1, O2, O3"),
             (["export", str(tmp_path / "none"), "--out", str(tmp_path / "x"), "--precision", "bf16", "--optimize",
               "O3"], "--optimize O3 rewrites an ONNX graph; --precision bf16 writes a torch artifact"),
             (["rerank", str(tmp_path / "none"), "--query", "q", "--docs-format", "xml"],
              "--docs-format must be one of auto, lines, jsonl")]
    for args, message in cases:
        result = runner.invoke(app, args)
        text = " ".join(result.output.replace("│", " ").split()) if result.exit_code == 2 else \
            cli.in_cli_words(str(result.exception), args)  # as main() writes it
        assert message in text, (args, text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.txt"]


@pytest.mark.parametrize("module", ["fastrank.cli", "fastrank"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, eval_file, module):
    cmd = [sys.executable, "-m", module, "eval", str(tmp_path / "missing-model"), "--data", str(eval_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2
    assert "error: model directory" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_train_rejects_bad_loss_options(tmp_path, eval_file):
    cmd = [sys.executable, "-m", "fastrank.cli", "train", "--data", str(eval_file), "--out", str(tmp_path / "m"),
           "--loss-options", "[1, 2]"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "--loss-options must be a JSON object" in proc.stderr
    proc = subprocess.run(cmd[:-1] + ["{bad"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--loss-options is not valid JSON (Expecting property name" in proc.stderr
    assert not (tmp_path / "m").exists()


def test_train_cli_end_to_end(tiny_model_dir, eval_file, tmp_path):
    result = runner.invoke(app, ["train", "--data", str(eval_file), "--out", str(tmp_path / "m"), "--base",
                                 str(tiny_model_dir), "--epochs", "1", "--bf16", "false", "--max-length", "32",
                                 "--eval-data", str(eval_file), "--prompt", "question: ", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["train_rows"] == 2 and out["output_dir"] == str(tmp_path / "m")
    assert set(out["eval_after"]["metrics"]) >= {"map", "mrr@10", "ndcg@10"}
    assert (tmp_path / "m" / "model.safetensors").is_file() and out["config"]["prompt"] == "question: "
    from fastrank import CrossEncoder

    assert CrossEncoder(tmp_path / "m", device="cpu").default_prompt == "question: "  # saved as the default


def test_eval_scores_an_artifact_as_it_is_served(tiny_model_dir, eval_file, tmp_path):
    from fastrank.export import export_model

    export_model(str(tiny_model_dir), tmp_path / "onnx", num_threads=1)
    export_model(str(tiny_model_dir), tmp_path / "bf16", precision="bf16", num_threads=1,
                 allow_parity_failure=True)  # a random tiny model's bf16 may miss the gate; the path is the point
    checkpoint = json.loads(runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(eval_file), "--json"]).stdout)
    onnx = json.loads(runner.invoke(app, ["eval", str(tmp_path / "onnx"), "--data", str(eval_file), "--json"]).stdout)
    assert onnx["served_by"]["backend"] == "onnx" and "served_by" not in checkpoint
    assert onnx["served_by"]["batch_size"] == 32  # the Reranker's default, as served
    small = runner.invoke(app, ["eval", str(tmp_path / "onnx"), "--data", str(eval_file), "--batch-size", "3",
                                "--json"])  # was accepted and ignored
    assert json.loads(small.stdout)["served_by"]["batch_size"] == 3
    assert json.loads(small.stdout)["metrics"] == pytest.approx(onnx["metrics"], abs=1e-9)
    zero = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(eval_file), "--batch-size", "0"])
    assert isinstance(zero.exception, ValueError) and "batch_size" in str(zero.exception)  # not read as "default"
    assert onnx["metrics"] == pytest.approx(checkpoint["metrics"], abs=1e-9)  # fp32 ONNX ranks as the checkpoint
    bf16 = runner.invoke(app, ["eval", str(tmp_path / "bf16"), "--data", str(eval_file)])
    assert bf16.exit_code == 0 and "scored as served: torch bf16" in bf16.output, bf16.output
    refused = runner.invoke(app, ["eval", str(tmp_path / "onnx"), "--data", str(eval_file), "--max-length", "16"])
    assert refused.exit_code == 2 and "max length it was exported with" in " ".join(
        refused.output.replace("│", " ").split())
    # --backend: a checkpoint scored through the backend fastrank serve --backend would run (it had no such option)
    via = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(eval_file), "--backend", "torch", "--json"])
    served = json.loads(via.stdout)
    assert served["served_by"]["backend"] == "torch" and served["metrics"] == pytest.approx(checkpoint["metrics"],
                                                                                         abs=1e-6)
    unknown = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(eval_file), "--backend", "nope"])
    assert "known backends: onnx, tensorrt, torch, torch-cuda" in str(unknown.exception)  # the CLI's exit 2


def test_train_ce_from_the_cli_uses_the_data_classes(eval_file, tmp_path):
    """--loss ce from the default (embedding) base: a head with one logit per class of the data, no num_labels
    advice only Python users could follow; the epochs line says the one step run was a whole epoch here."""
    from fastrank import CrossEncoder

    result = runner.invoke(app, ["train", "--data", str(eval_file), "--out", str(tmp_path / "m"), "--loss", "ce",
                                 "--epochs", "0.1", "--bf16", "false", "--max-length", "16",
                                 "--eval-data", str(eval_file)])
    assert result.exit_code == 0, result.output
    assert "for 1 epoch (asked 0.1: one optimizer step is 1 epoch of this data)" in result.stdout
    assert CrossEncoder(tmp_path / "m", device="cpu").num_labels == 2


def test_cli_errors_for_a_damaged_checkpoint_and_a_resume_without_checkpoint(tiny_model_dir, eval_file, tmp_path):
    """One line and exit 2: a truncated weights file is named; --resume without a checkpoint creates nothing."""
    import shutil

    broken = tmp_path / "brokenckpt"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    cmd = [sys.executable, "-m", "fastrank.cli", "eval", str(broken), "--data", str(eval_file)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert (f"error: corrupt or incomplete weights file {weights} (Error while deserializing header: invalid header "
            "length); re-download or re-save the model") in proc.stderr
    out = tmp_path / "o1"
    cmd = [sys.executable, "-m", "fastrank.cli", "train", "--data", str(eval_file), "--out", str(out), "--resume"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().endswith(f"error: --resume: no complete checkpoint in {out}.checkpoints (a run that saved at "
                                        "least one epoch writes one); drop --resume to start afresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["brokenckpt"]


def test_eval_ranks_a_multi_class_model_by_its_last_class(tiny_model_factory, eval_file):
    from fastrank import CrossEncoder
    from fastrank.data import read_groups
    from fastrank.evaluation.metrics import evaluate_rankings

    three = tiny_model_factory(3)
    result = runner.invoke(app, ["eval", str(three), "--data", str(eval_file), "--json"])
    assert result.exit_code == 0, result.output
    model, groups = CrossEncoder(three), [g for g in read_groups(eval_file) if g.positives]
    probs = [model.predict([(g.query, d) for d in g.documents], activation="softmax")[:, -1] for g in groups]
    want = evaluate_rankings(probs, [g.labels for g in groups], metrics=["map"]).metrics["map"]
    assert json.loads(result.stdout)["metrics"]["map"] == pytest.approx(want, abs=1e-9)


@pytest.mark.parametrize("name", ["mined.csv", "mined.tsv", "mined.parquet", "mined"])
def test_mine_refuses_an_out_it_would_not_write_as_named_before_mining(eval_file, tmp_path, monkeypatch, name):
    """--out mined.csv held JSONL, which training then read as CSV: refused up front, nothing mined or written."""
    import fastrank.embedding
    import fastrank.mining

    def no_work(*args, **kwargs):
        raise AssertionError("the output name should be refused before any mining")

    monkeypatch.setattr(fastrank.embedding, "EmbeddingModel", no_work)
    monkeypatch.setattr(fastrank.mining, "mine_hard_negatives", no_work)
    out = tmp_path / name
    result = runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(out), "--cache-dir",
                                 str(tmp_path / "cache")])
    found = f"not {out.suffix!r}" if out.suffix else "it has no suffix"
    assert isinstance(result.exception, FastrankError), result.exception
    assert str(result.exception) == (f"--out {str(out)!r}: grouped data is written as JSONL only, so the name must "
                                     f"end in .jsonl or .json ({found}); CSV, TSV and Parquet are read, not written")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("error", "code"), [(ValueError("bad value"), 2), (OSError(28, "No space left on device"), 1)])
def test_main_turns_user_and_system_errors_into_one_line(monkeypatch, capsys, error, code):
    import fastrank.cli as cli

    def fail():
        raise error

    monkeypatch.setattr(cli, "app", fail)
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(error) in err and "Traceback" not in err


def test_errors_from_the_python_api_name_the_command_s_flags(monkeypatch, capsys, tmp_path):
    """A library error read on the command line names the flags typed (--window-stride, --backend torch), not the
    Python parameters (window_stride, backend='torch'), as the message's subject or in name=value; names that are
    not the command's options, quoted text (paths, keys, queries), paths and plain words are left alone. The stride
    check comes before the model is looked for."""
    import fastrank.cli as cli

    message = ("window_stride applies to long_documents='windows'; use backend='torch' or top_k, not max_length; "
               "see runs/window_stride and window_stride.py; backend alone")
    assert cli.in_cli_words(message, ["rerank", "m"]) == (
        "--window-stride applies to --long-documents windows; use --backend torch or top_k, not max_length; "
        "see runs/window_stride and window_stride.py; backend alone")
    assert cli.in_cli_words(message, ["mine"]) == message and cli.in_cli_words(message, []) == message
    assert cli.in_cli_words("max_length=600 is above the limit", ["train"]) == "--max-length 600 is above the limit"
    # a flag takes no value: "--allow-untrained-head True" was suggested, and typer refuses the extra argument
    assert cli.in_cli_words("or pass allow_untrained_head=True to export it", ["export", "m"]) == \
        "or pass --allow-untrained-head to export it"
    assert cli.in_cli_words("or pass allow_parity_failure=False", ["export"]) == \
        "or pass without --allow-parity-failure"
    for untouched in ("'max_length' is not a local file", 'field "batch_size" must be a number', '{"batch_size": 3}',
                      "no such file: eval_data", "C:\\runs\\eval_data", "file:eval_data", "max_length=None",
                      "the tokenizer's max_length=512 exceeds 514", "loss_options={'temperature': 1}",
                      "query 'what is max_length' has no documents", "query window_stride has no positive"):
        assert cli.in_cli_words(untouched, ["train"]) == untouched
        assert cli.in_cli_words(untouched, ["eval"]) == untouched
    docs = tmp_path / "docs.txt"
    docs.write_text("a\nb\n")
    monkeypatch.setattr(sys, "argv", ["fastrank", "rerank", str(tmp_path / "no-model"), "--query", "q", "--docs-file",
                                      str(docs), "--window-stride", "5"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.startswith("error: --window-stride applies to --long-documents windows;"), err


def test_version_and_a_negative_ray_replica_count():
    from fastrank import __version__

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"fastrank {__version__}"
    refused = CliRunner().invoke(app, ["serve", "model", "--ray-replicas", "-1"])
    assert refused.exit_code == 2 and "--ray-replicas must be >= 0 (0: no Ray), got -1" in " ".join(
        refused.output.replace("│", " ").split())


def test_eval_scores_long_documents_in_windows_as_the_service_does(tiny_model_dir, tmp_path):
    from fastrank import Reranker
    from fastrank.evaluation.evaluators import RerankingEvaluator

    long_doc = "filler words here " * 200 + "the capital of france is paris"
    data = tmp_path / "long.jsonl"
    data.write_text(json.dumps({"query": "capital of france", "documents": [long_doc, "berlin", "rome"],
                                "labels": [1, 0, 0]}) + "\n" + json.dumps(
        {"query": "glacier caves", "documents": ["ice cave", "filler " * 700], "labels": [1, 0]}) + "\n")
    out = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(data), "--long-documents", "windows",
                              "--window-stride", "16", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    want = RerankingEvaluator.from_file(data).evaluate(
        Reranker(str(tiny_model_dir), long_documents="windows", window_stride=16)).metrics
    assert result["metrics"] == pytest.approx(want, abs=1e-9)
    assert result["served_by"]["long_documents"] == "windows" and result["served_by"]["window_stride"] == 16
    stray = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(data), "--window-stride", "16"])
    assert stray.exit_code == 2 and "--window-stride applies to --long-documents windows" in " ".join(
        stray.output.replace("│", " ").split())


def test_embedding_prompts_from_the_command_line(tiny_model_dir, eval_file, tmp_path, monkeypatch):
    """``--query-prompt`` / ``--document-prompt`` reach the embedding model of ``mine`` and of ``eval
    --retrieve-top-k`` (e5-style models need them and save none); with ``--run`` or without a first stage they are
    refused, as ``--embedding-model`` is."""
    import fastrank.embedding
    from fastrank import EmbeddingModel
    from fastrank.data import read_groups
    from fastrank.mining import mine_hard_negatives

    made = []

    class Recording(fastrank.embedding.EmbeddingModel):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(dict(self.prompts))

    monkeypatch.setattr(fastrank.embedding, "EmbeddingModel", Recording)
    out = tmp_path / "mined.jsonl"
    result = runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(out), "--num-negatives", "1",
                                 "--query-prompt", "query: ", "--document-prompt", "passage: ", "--cache-dir",
                                 str(tmp_path / "cache")])
    assert result.exit_code == 0, result.output
    assert made == [{"query": "query: ", "document": "passage: "}]
    before = sorted(p.name for p in tmp_path.parent.iterdir())
    monkeypatch.chdir(tmp_path)
    uncached = runner.invoke(app, ["mine", "--data", str(eval_file), "--out", str(tmp_path / "again.jsonl"),
                                   "--num-negatives", "1", "--cache-dir", "", "--json"])
    assert uncached.exit_code == 0 and not json.loads(uncached.stdout)["corpus_cache_hit"], uncached.output
    assert json.loads(uncached.stdout)["embedding_prompts"] == {"query": "", "document": ""}
    assert not list(tmp_path.glob("corpus-*.npy")) and sorted(p.name for p in tmp_path.parent.iterdir()) == before
    expected = mine_hard_negatives(read_groups(str(eval_file)), EmbeddingModel(
        prompts={"query": "query: ", "document": "passage: "}), num_negatives=1)
    assert [json.loads(line)["documents"] for line in out.read_text().splitlines()] == \
        [g.documents for g in expected.groups]
    args = ["eval", str(tiny_model_dir), "--data", str(eval_file)]
    result = runner.invoke(app, args + ["--retrieve-top-k", "3", "--query-prompt", "q: ", "--json"])
    assert result.exit_code == 0, result.output
    assert made[-1] == {"query": "q: ", "document": ""}
    assert json.loads(result.stdout)["embedding_prompts"] == {"query": "q: ", "document": ""}  # which run it was
    bad = runner.invoke(app, args + ["--document-prompt", "p: "])
    message = " ".join(bad.output.replace("│", " ").split())
    assert bad.exit_code == 2 and "--document-prompt need(s) --retrieve-top-k:" in message, message  # not --run
    from fastrank.mining import corpus_embeddings

    corpus_embeddings(EmbeddingModel(), ["a", "b"], cache_dir="")  # '' in Python too: no cache, here or anywhere
    assert not list(tmp_path.glob("corpus-*.npy"))


def test_ctrl_c_says_what_was_left(monkeypatch, capsys, eval_file, tmp_path):
    """typer ends a command stopped by Ctrl-C with status 130 and no word; train's note names --resume."""
    import fastrank.cli as cli
    import fastrank.training.recipe as recipe

    def interrupted(config):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "train", interrupted)
    args = ["train", "--data", str(eval_file), "--out", str(tmp_path / "m")]
    monkeypatch.setattr(sys, "argv", ["fastrank", *args])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 130
    err = capsys.readouterr().err
    assert "interrupted: nothing unfinished was written" in err and "with --resume to continue" in err
    assert "--resume" not in cli.interrupted_note(["mine"])


def test_bench_refuses_a_beir_folder_whose_lists_would_score_1(tmp_path, tiny_model_dir):
    root = tmp_path / "beir"
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "text": "a"}) + "\n")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "q"}) + "\n")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    result = runner.invoke(app, ["bench", str(tiny_model_dir), "--data", str(root), "--quick"])
    assert result.exit_code != 0
    assert "is a BEIR folder: its judged documents are not candidate lists to rerank" in str(result.exception)


def test_train_help_names_every_loss():
    from fastrank.losses import LOSSES

    text = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output.replace("│", " ").split())
    assert all(f" {name} " in text for name in LOSSES), text


@pytest.mark.parametrize("args", [["train", "--data", "nowhere.jsonl", "--out", "m"],
                                  ["mine", "--data", "nowhere.jsonl", "--out", "m.jsonl"]])
def test_a_command_whose_extra_is_missing_names_it(args, tmp_path):
    """In an install without [train] (an image serving ONNX artifacts), train / mine / demo ended in a
    ModuleNotFoundError traceback; Python's fastrank.CrossEncoder in a bare one."""
    hide = "import sys; sys.modules['torch'] = None; "
    cli = subprocess.run([sys.executable, "-c", hide + f"sys.argv = ['fastrank', *{args!r}]; "
                          "from fastrank.cli import main; main()"], capture_output=True, text=True, cwd=tmp_path)
    assert cli.returncode == 2 and "Traceback" not in cli.stderr, cli.stderr
    assert f"error: fastrank {args[0]} needs the 'torch' package, which is not installed. Install it with: pip " \
           f"install -e \".[train]\" in the fastrank checkout (install PyTorch first" in cli.stderr
    api = subprocess.run([sys.executable, "-c", hide + "import fastrank; fastrank.CrossEncoder"], capture_output=True,
                         text=True)
    assert "fastrank.errors.MissingDependency: fastrank.CrossEncoder needs the 'torch' package" in api.stderr
    broken = "import sys; sys.modules['torch.nn'] = None; "  # torch there, a part of it missing: shown as it is
    cli = subprocess.run([sys.executable, "-c", broken + f"sys.argv = ['fastrank', *{args!r}]; "
                          "from fastrank.cli import main; main()"], capture_output=True, text=True, cwd=tmp_path)
    assert "ModuleNotFoundError" in cli.stderr and "not installed" not in cli.stderr
