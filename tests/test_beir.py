"""BEIR folders and TREC runs: read as trec_eval / ranx read them, a run's first stage and its reranking scored as
ranx scores the same files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fastrank.cli import app
from fastrank.errors import DataError
from fastrank.evaluation.beir import read_beir, read_qrels, read_run, run_documents, write_run
from fastrank.evaluation.retrieval import evaluate_retrieve_rerank

ranx = pytest.importorskip("ranx")
runner = CliRunner()

CORPUS = {"d1": ("", "glaciers carve ice caves"), "d2": ("Paris", "the capital of france"),
          "d3": ("", "berlin is in germany"), "d4": ("", "rome is old"), "d5": ("", "ice cream shops"),
          "d6": ("", "caves of ice form under glaciers"), "d7": ("", "an unrelated text")}
QUERIES = {"q1": "glacier caves", "q2": "capital of france", "q3": "no answer judged", "q4": "unranked"}
QRELS = [("q1", "d1", 2), ("q1", "d6", 1), ("q1", "d5", 0), ("q2", "d2", 1), ("q2", "gone", 1), ("q3", "d7", 0),
         ("q4", "d4", 1)]
RUN = {"q1": [("d5", 9.0), ("d1", 8.5), ("d3", 3.0), ("d6", 2.0)], "q2": [("d3", 4.0), ("d2", 3.5), ("d4", 1.0)],
       "q3": [("d7", 1.0)]}


def _beir(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n"
                                               for k, (t, x) in CORPUS.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": q}) + "\n" for k, q in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t{s}\n"
                                                                                    for q, d, s in QRELS))
    write_run(root / "run.trec", RUN, tag="bm25")
    return root


def _ranx(qrels_path: Path, run_path: Path, metrics: list[str]) -> dict[str, float]:
    qrels = {q: {d: int(s) for d, s in judged.items()} for q, judged in read_qrels(qrels_path).items()
             if any(s > 0 for s in judged.values())}
    run = ranx.Run.from_file(str(run_path), kind="trec")
    scores = ranx.evaluate(ranx.Qrels(qrels), run, metrics, make_comparable=True)  # an unranked query scores 0
    return {k: float(v) for k, v in scores.items()}


class TextReranker:
    """Scores a pair by how many query words its document holds (a deterministic stand-in for a cross-encoder)."""

    def predict(self, pairs, batch_size=64):
        def words(doc):
            return (doc if isinstance(doc, str) else f"{doc.get('title', '')} {doc['text']}").split()

        return np.array([sum(w in words(d) for w in q.split()) + 0.01 * len(words(d)) for q, d in pairs])


def test_qrels_in_beir_and_trec_form(tmp_path):
    beir = tmp_path / "beir.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td1\t2\nq2\td9\t0\n")
    trec = tmp_path / "qrels.trec"
    trec.write_text("q1 0 d1 2\nq2 0 d9 0\n")
    assert read_qrels(beir) == read_qrels(trec) == {"q1": {"d1": 2.0}, "q2": {"d9": 0.0}}
    beir.write_text("query-id\tcorpus-id\tscore\nquery 1\tdoc 1\t1\n")  # BEIR's qrels are tab-separated
    assert read_qrels(beir) == {"query 1": {"doc 1": 1.0}}
    trec.write_text("q1 0 d1 2\nq1 0 d1 1\n")
    with pytest.raises(DataError, match=r"line 2: query 'q1' and document 'd1' are judged twice, 2 and 1"):
        read_qrels(trec)
    with pytest.raises(DataError, match="qrels file '.*missing.tsv' does not exist"):
        read_qrels(tmp_path / "missing.tsv")
    trec.write_text("q1 d1\n")
    with pytest.raises(DataError, match="line 1: expected 'query-id corpus-id score'"):
        read_qrels(trec)
    trec.write_text("q1 0 d1 1\nq1 0 d2 high\n")
    with pytest.raises(DataError, match="line 2: the relevance must be a number, got 'high'"):
        read_qrels(trec)
    beir.write_text("query_id\tdoc_id\trelevance\nq1\td1\t1\n")  # a header under other names
    assert read_qrels(beir) == {"q1": {"d1": 1.0}}
    beir.write_text("q1\td1\trelevant\nq1\td2\t1\n")  # a bad first grade is no header: not dropped silently
    with pytest.raises(DataError, match="line 1: the relevance must be a number, got 'relevant'"):
        read_qrels(beir)


def test_run_is_ranked_by_score_then_rank_and_round_trips(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("q1 Q0 a 2 1.5 x\nq1 Q0 b 1 1.5 x\nq1\tQ0 c  3\t7 x\nq2 Q0 a 1 0.1 x\n")  # any whitespace
    run = read_run(path)
    assert run == {"q1": [("c", 7.0), ("b", 1.5), ("a", 1.5)], "q2": [("a", 0.1)]}
    write_run(tmp_path / "again.trec", run)
    assert read_run(tmp_path / "again.trec") == run
    assert (tmp_path / "again.trec").read_text().splitlines()[0] == "q1 Q0 c 1 7 fastrank"
    assert run_documents(run, top_k=1) == {"c", "a"}
    path.write_text("q1 Q0 a 1 1.0 x\nq1 Q0 a 2 0.5 x\n")
    with pytest.raises(DataError, match="line 2: document 'a' is ranked twice for query 'q1'"):
        read_run(path)
    path.write_text("q1 a 1 1.0 x\n")
    with pytest.raises(DataError, match=r"line 1: a TREC run line is 'qid Q0 docid rank score tag' \(6 fields\)"):
        read_run(path)
    with pytest.raises(DataError, match="holds whitespace"):
        write_run(tmp_path / "bad.trec", {"q 1": [("a", 1.0)]})
    assert not (tmp_path / "bad.trec").exists()


def test_read_beir_keeps_titles_grades_and_missing_relevant_documents(tmp_path, caplog):
    root = _beir(tmp_path / "beir")
    task = read_beir(root)
    assert task.query_ids == ["q1", "q2", "q4"] and task.queries_skipped == 1  # q3 has no relevant document
    assert task.corpus_ids == list(CORPUS) and task.corpus[1] == {"title": "Paris", "text": "the capital of france"}
    assert task.corpus[0] == "glaciers carve ice caves"  # a blank title is no title
    assert task.qrels[0] == {0: 2.0, 5: 1.0}
    assert task.qrels[1] == {1: 1.0, -1: 1.0}  # 'gone' is not in the corpus: relevant, never retrievable
    assert "1 relevant documents of qrels/test.tsv are not in corpus.jsonl" in caplog.text
    kept = read_beir(root, documents={"d3"})
    assert kept.corpus_ids == ["d1", "d2", "d3", "d4", "d6"]  # the run's documents and every relevant one
    with pytest.raises(DataError, match="has no qrels/dev.tsv .*splits there: test"):
        read_beir(root, split="dev")
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "glacier caves"}) + "\n")
    with pytest.raises(DataError, match="judges 3 queries that queries.jsonl does not hold"):
        read_beir(root)
    (root / "corpus.jsonl").unlink()
    with pytest.raises(DataError, match="has no corpus.jsonl: a BEIR dataset is a folder with"):
        read_beir(root)


def test_grouped_data_written_as_beir_reads_back_the_same(tmp_path):
    from fastrank.data import QueryGroup, read_groups
    from fastrank.errors import FastrankError
    from fastrank.evaluation.beir import write_beir
    from fastrank.evaluation.retrieval import RetrievalTask

    train = [QueryGroup("glacier caves", [{"title": "Ice", "text": "caves in ice"}, "paris"], [2, 0], "q 1"),
             QueryGroup("capital of france", ["paris", "rome", "Paris "], [1, 0, 0], "q2")]
    test = [QueryGroup("capital of italy", ["rome", "lyon"], [1, 0], "q3")]
    root = write_beir(tmp_path / "beir", {"train": train, "test": test}, corpus=["madrid", "ROME"])
    assert sorted(p.name for p in (root / "qrels").iterdir()) == ["test.tsv", "train.tsv"]
    back = read_groups(root)  # the train split, negatives included (label 0), twins ('Paris ') one document
    assert [(g.query_id, g.query, g.documents, g.labels) for g in back] == [
        ("q0", "glacier caves", [{"title": "Ice", "text": "caves in ice"}, "paris"], [2.0, 0.0]),
        ("q1", "capital of france", ["paris", "rome"], [1.0, 0.0])]  # 'q 1' cannot name a query: all renamed
    task = read_beir(root, split="test")
    expected = RetrievalTask.from_groups(train + test, ["madrid", "ROME"])
    assert task.corpus == expected.corpus and task.corpus_ids == ["d0", "d1", "d2", "d3", "d4"]
    assert task.queries == ["capital of italy"] and task.qrels == [{2: 1.0}]
    with pytest.raises(FastrankError, match="refusing to replace"):
        write_beir(tmp_path / "beir", {"test": test})
    with pytest.raises(ValueError, match="split name 'a/b' cannot name a qrels file"):
        write_beir(tmp_path / "other", {"a/b": test})
    with pytest.raises(DataError, match="split 'test', query 'q': the qrels need a label for each of its 2 documents"):
        write_beir(tmp_path / "other", {"test": [QueryGroup("q", ["a", "b"], None, None)]})
    assert not (tmp_path / "other").exists()


def test_a_run_and_its_reranking_score_as_ranx_scores_them(tmp_path):
    root = _beir(tmp_path / "beir")
    task = read_beir(root, documents=run_documents(read_run(root / "run.trec"), 3))
    out = evaluate_retrieve_rerank(task, reranker=TextReranker(), run=read_run(root / "run.trec"), top_k=3,
                                   ks=(1, 3), return_rankings=True)
    metrics = ["ndcg@1", "ndcg@3", "mrr@3", "recall@3"]
    cut = tmp_path / "top3.trec"
    write_run(cut, {q: ranked[:3] for q, ranked in RUN.items()})
    expected = _ranx(root / "qrels" / "test.tsv", cut, metrics)
    assert {m: out["run"][m] for m in metrics} == pytest.approx(expected, abs=1e-12)
    assert out["run"]["recall@3"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)  # q1 lost d6 below 3, q2 'gone', q4 all
    write_run(tmp_path / "reranked.trec", out["rankings"]["run_reranked"])
    reranked = _ranx(root / "qrels" / "test.tsv", tmp_path / "reranked.trec", metrics)
    assert {m: out["run_reranked"][m] for m in metrics} == pytest.approx(reranked, abs=1e-12)
    assert [d for d, _ in out["rankings"]["run_reranked"]["q1"]] == ["d1", "d3", "d5"]  # by query words, then length
    assert out["run_reranked"]["ndcg@1"] > out["run"]["ndcg@1"]
    assert "corpus_size" not in out and out["top_k"] == 3
    with pytest.raises(ValueError, match="not both or neither"):
        evaluate_retrieve_rerank(task, reranker=TextReranker())
    with pytest.raises(DataError, match="ranks 1 documents for query 'q1' that the corpus does not hold, e.g. 'zz'"):
        evaluate_retrieve_rerank(task, run={"q1": [("zz", 1.0)]})
    with pytest.raises(DataError, match="the run ranks none of the evaluated queries"):
        evaluate_retrieve_rerank(task, run={"other": [("d1", 1.0)]})


def test_cli_reranks_a_run_and_writes_the_reranked_run(tiny_model_dir, tmp_path):
    from fastrank import CrossEncoder

    root = _beir(tmp_path / "beir")
    out_run = tmp_path / "out" / "reranked.trec"
    args = ["eval", str(tiny_model_dir), "--data", str(root), "--run", str(root / "run.trec")]
    result = runner.invoke(app, args + ["--write-run", str(out_run), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    written = read_run(out_run)
    assert set(written) == {"q1", "q2"} and len(written["q1"]) == 4  # the run's depth, under --retrieve-top-k 100
    model = CrossEncoder(tiny_model_dir)
    q1 = [d for d, _ in RUN["q1"]]
    logits = model.predict([("glacier caves", CORPUS[d][1]) for d in q1], activation="identity")
    assert [d for d, _ in written["q1"]] == [q1[i] for i in np.argsort(-logits, kind="stable")]
    assert [s for _, s in written["q1"]] == pytest.approx(sorted(logits, reverse=True), abs=1e-6)
    ranx_metrics = _ranx(root / "qrels" / "test.tsv", out_run, ["ndcg@10", "mrr@10", "recall@10"])
    assert {m: out["run_reranked"][m] for m in ranx_metrics} == pytest.approx(ranx_metrics, abs=1e-6)
    table = runner.invoke(app, args + ["--retrieve-top-k", "2", "--fusion-weight", "1"])
    assert table.exit_code == 0, table.output
    assert "| metric | run | run_reranked | reranked + 1 x run |" in table.output
    assert "3 queries (skipped 1 without a relevant document), the run's top 2 reranked" in table.output
    top2 = runner.invoke(app, args + ["--retrieve-top-k", "2", "--write-run", str(out_run)])
    assert top2.exit_code == 0, top2.output
    written = read_run(out_run)  # the reranked top 2: what the table scored, so trec_eval on it agrees
    assert [d for d, _ in written["q1"]] == sorted(q1[:2], key=lambda d: -logits[q1.index(d)])
    slash = runner.invoke(app, args + ["--write-run", f"{tmp_path}/newdir/"])
    assert slash.exit_code != 0 and "ends with a slash, so names a directory" in str(slash.exception)
    assert not (tmp_path / "newdir").exists()


def test_cli_says_which_backend_scored_an_artifact_and_names_missing_beir_files(o1_artifact, tmp_path):
    root = _beir(tmp_path / "beir")
    result = runner.invoke(app, ["eval", str(o1_artifact), "--data", str(root), "--run", str(root / "run.trec")])
    assert result.exit_code == 0, result.output
    assert "scored as served: onnx fp32 (fastrank.Reranker)" in result.output
    (root / "queries.jsonl").unlink()
    missing = runner.invoke(app, ["eval", str(o1_artifact), "--data", str(root), "--run", str(root / "run.trec")])
    message = " ".join(missing.output.replace("│", " ").split())
    assert missing.exit_code == 2 and "has no queries.jsonl: a BEIR dataset is a folder with" in message, message


def test_cli_beir_folder_with_an_embedding_first_stage(tiny_model_dir, tmp_path):
    from fastrank import CrossEncoder, EmbeddingModel

    root = _beir(tmp_path / "beir")
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(root), "--retrieve-top-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    ref = evaluate_retrieve_rerank(read_beir(root), EmbeddingModel(), CrossEncoder(tiny_model_dir), top_k=3, ks=(10,),
                                   use_bm25=False)
    assert out["corpus_size"] == len(CORPUS) and out["num_queries"] == 3
    for stage in ("first_stage", "reranked"):
        assert out[stage] == pytest.approx(ref[stage], abs=1e-9)


@pytest.mark.parametrize("args, message", [
    ([], "is a BEIR folder, which holds no candidate lists: give --run FILE"),
    (["--run", "RUN", "--embedding-model", "x"], "with --run the run is the first stage"),
    (["--run", "RUN", "--split", "dev"], "has no qrels/dev.tsv"),
    (["--run", "RUN", "--write-run", "RUN"], "refusing to write --write-run over the input"),
    (["--run", "RUN", "--write-run", "QRELS"], "test.tsv: it is a file of the input folder"),
    (["--run", "RUN", "--write-run", "QRELS_TRAIN"], "train.tsv: it is a file of the input folder"),
    (["--run", "RUN", "--write-run", "MODEL_FILE"], "model.safetensors: it is a file of the input folder"),
    (["--retrieve-top-k", "3", "--corpus", "RUN"], "a BEIR folder's corpus is its corpus.jsonl"),
])
def test_cli_beir_errors(tiny_model_dir, tmp_path, args, message):
    """--write-run never replaces an input, a qrels file of the BEIR folder (only the evaluated split's was kept)
    nor a file of the model's folder (it accepted model.safetensors)."""
    root = _beir(tmp_path / "beir")
    (root / "qrels" / "train.tsv").write_text((root / "qrels" / "test.tsv").read_text())
    subst = {"RUN": str(root / "run.trec"), "QRELS": str(root / "qrels" / "test.tsv"),
             "QRELS_TRAIN": str(root / "qrels" / "train.tsv"), "MODEL_FILE": str(tiny_model_dir / "model.safetensors")}
    kept = {name: Path(path).read_bytes() for name, path in subst.items()}
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(root), *[subst.get(a, a) for a in args]])
    assert result.exit_code != 0
    assert message in " ".join((result.output + str(result.exception)).replace("│", " ").split())
    assert {name: Path(path).read_bytes() for name, path in subst.items()} == kept


def test_cli_run_and_split_need_a_beir_folder(tiny_model_dir, tmp_path):
    data = tmp_path / "lists.jsonl"
    data.write_text(json.dumps({"query": "q", "documents": ["a", "b"], "labels": [1, 0]}) + "\n")
    run = write_run(tmp_path / "run.trec", {"0": [("0", 1.0)]})
    for extra, message in ((["--run", str(run)], "--run needs --data to be a BEIR folder"),
                           (["--split", "dev"], "--split picks a BEIR folder's qrels"),
                           (["--write-run", str(tmp_path / "x.trec")], "need(s) --retrieve-top-k or --run")):
        result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(data), *extra])
        assert result.exit_code == 2 and message in " ".join(result.output.replace("│", " ").split()), result.output


@pytest.mark.data
def test_wikiqa_as_beir_with_its_candidate_order_as_the_run(wikiqa_dir, tmp_path):
    """WikiQA test written as a BEIR folder, its own candidate order as the run: the run stage equals ranx on the
    same files and fastrank's own metrics of the input order (README baseline, NDCG@10 0.7194)."""
    from fastrank.data import read_groups
    from fastrank.evaluation import evaluate_rankings

    groups = read_groups(wikiqa_dir / "test.jsonl")
    root = tmp_path / "wikiqa"
    (root / "qrels").mkdir(parents=True)
    ids: dict[str, str] = {}
    qrels, run, lists, labels = [], {}, [], []
    for g in groups:
        best: dict[str, float] = {}
        for d, y in zip(g.documents, g.labels):
            did = ids.setdefault(d, f"D{len(ids)}")
            best[did] = max(best.get(did, 0.0), y)
        qrels += [f"{g.query_id}\t{d}\t{int(y)}\n" for d, y in best.items()]
        run[g.query_id] = [(d, float(len(best) - r)) for r, d in enumerate(best)]
        lists.append(-np.arange(len(best), dtype=float))
        labels.append(np.array(list(best.values())))
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": i, "text": d}) + "\n" for d, i in ids.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": g.query_id, "text": g.query}) + "\n"
                                                for g in groups))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(qrels))
    write_run(root / "run.trec", run)
    out = evaluate_retrieve_rerank(read_beir(root), run=read_run(root / "run.trec"), top_k=100)
    expected = _ranx(root / "qrels" / "test.tsv", root / "run.trec", ["ndcg@10", "mrr@10"])
    assert out["num_queries"] == 243
    assert {m: out["run"][m] for m in expected} == pytest.approx(expected, abs=1e-12)
    own = evaluate_rankings(lists, labels, metrics=["ndcg@10", "mrr@10"]).metrics
    assert own == pytest.approx(expected, abs=1e-12)
    assert out["run"]["ndcg@10"] == pytest.approx(0.7194, abs=1e-4)


def test_tied_run_scores_rank_by_document_id_descending_as_trec_eval_does(tmp_path):
    """A tie in a run (BM25 ties often) ranks as trec_eval (pytrec_eval, BEIR's evaluation) ranks it: by document
    id, descending; the rank column is not read. The run and its reranking (a constant reranker ties everything)
    score as ranx scores the same ranking written without ties (ranx orders ties arbitrarily)."""
    root = _beir(tmp_path / "beir")
    path = tmp_path / "ties.trec"  # ranks as a retriever might write them: relevant documents first
    path.write_text("q1 Q0 d1 1 1.0 x\nq1 Q0 d2 2 1.0 x\nq1 Q0 d3 3 1.0 x\nq2 Q0 d2 1 2.0 x\nq2 Q0 d4 2 2.0 x\n"
                    "q4 Q0 d4 1 1.0 x\n")
    run = read_run(path)
    assert [d for d, _ in run["q1"]] == ["d3", "d2", "d1"] and [d for d, _ in run["q2"]] == ["d4", "d2"]

    class Constant:
        def predict(self, pairs, batch_size=64):
            return np.zeros(len(pairs))

    out = evaluate_retrieve_rerank(read_beir(root), reranker=Constant(), run=run, top_k=10, return_rankings=True)
    untied = write_run(tmp_path / "untied.trec", {q: [(d, -float(i)) for i, (d, _) in enumerate(r)]
                                                  for q, r in run.items()})
    expected = _ranx(root / "qrels" / "test.tsv", untied, ["ndcg@10", "mrr@10"])
    assert expected["mrr@10"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)  # d1 third, d2 second, d4 first
    for stage in ("run", "run_reranked"):
        assert {m: out[stage][m] for m in expected} == pytest.approx(expected, abs=1e-12)
    assert out["rankings"]["run_reranked"]["q2"] == [("d4", 0.0), ("d2", 0.0)]


def test_written_runs_read_back_and_gzip_runs_read(tmp_path):
    import gzip

    write_run(tmp_path / "ints.trec", {0: [(0, 1.0), (7, 0.5)]})
    assert read_run(tmp_path / "ints.trec") == {"0": [("0", 1.0), ("7", 0.5)]}
    with pytest.raises(DataError, match="query 'q' has a score of nan: a run's scores must be finite"):
        write_run(tmp_path / "nan.trec", {"q": [("a", float("nan"))]})
    with gzip.open(tmp_path / "run.trec.gz", "wt") as f:
        f.write("q1 Q0 a 1 2.0 x\r\nq1 Q0 b 2 1.0 x\n")
    assert read_run(tmp_path / "run.trec.gz") == {"q1": [("a", 2.0), ("b", 1.0)]}
    (tmp_path / "bad.gz").write_bytes(b"not gzip")
    with pytest.raises(DataError, match="cannot read it as gzip-compressed text"):
        read_run(tmp_path / "bad.gz")


def test_query_ids_that_are_not_strings_name_the_queries():
    from fastrank.data import QueryGroup
    from fastrank.evaluation.retrieval import RetrievalTask

    task = RetrievalTask.from_groups([QueryGroup("a b", ["x", "y"], [1, 0], 7), QueryGroup("c", ["y"], [1], 0)])
    assert task.query_ids == ["7", "0"]


def test_a_beir_folder_reads_as_labelled_lists_for_training_and_mining(tmp_path, caplog):
    from fastrank.data import load_dataset, read_groups
    from fastrank.errors import DataError as Error

    root = _beir(tmp_path / "beir")
    groups = read_groups(root, split="test")
    assert [(g.query_id, g.query, g.documents, g.labels) for g in groups] == [
        ("q1", "glacier caves", ["glaciers carve ice caves", "caves of ice form under glaciers", "ice cream shops"],
         [2.0, 1.0, 0.0]),
        ("q2", "capital of france", [{"title": "Paris", "text": "the capital of france"}], [1.0]),  # 'gone' left out
        ("q3", "no answer judged", ["an unrelated text"], [0.0]),
        ("q4", "unranked", ["rome is old"], [1.0])]
    assert "1 judged documents of qrels/test.tsv are not in corpus.jsonl: left out" in caplog.text
    with pytest.raises(Error, match=r"has no qrels/train.tsv .*splits there: test"):
        read_groups(root)  # training reads the train split
    (root / "qrels" / "train.tsv").write_text((root / "qrels" / "test.tsv").read_text())
    pairs = load_dataset(root, "pairs", separator="[SEP]")
    assert len(pairs) == 6 and pairs[3]["document"] == "Paris [SEP] the capital of france"
    out = tmp_path / "mined.jsonl"
    result = runner.invoke(app, ["mine", "--data", str(root), "--corpus", str(root / "corpus.jsonl"), "--out",
                                 str(out), "--num-negatives", "2", "--json"])
    assert result.exit_code == 0, result.output
    mined = [json.loads(line) for line in out.read_text().splitlines()]
    assert [m["query_id"] for m in mined] == ["q1", "q2", "q4"]  # q3 has no positive to mine for
    corpus_texts = {x for _, x in CORPUS.values()}
    for m in mined:
        negatives = [d for d, y in zip(m["documents"], m["labels"]) if y == 0]
        assert len(negatives) == 2 and all((d if isinstance(d, str) else d["text"]) in corpus_texts
                                           for d in negatives)


def test_train_and_mine_take_a_beir_folders_split(tmp_path):
    """The README trains and mines on a BEIR folder, but only its train split could be read from the command line
    (read_groups(DIR, split=...) in Python): --split picks the qrels."""
    from fastrank.training.recipe import TrainConfig, train

    root = _beir(tmp_path / "beir")  # a test split only
    out = tmp_path / "mined.jsonl"
    result = runner.invoke(app, ["mine", "--data", str(root), "--split", "test", "--corpus", str(root / "corpus.jsonl"),
                                 "--out", str(out), "--num-negatives", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["query_id"] for line in out.read_text().splitlines()] == ["q1", "q2", "q4"]
    with pytest.raises(DataError, match=r"has no qrels/dev.tsv .*splits there: test"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "m"), data_split="dev"))  # the split reached the reader
    flat = tmp_path / "flat.jsonl"
    flat.write_text(json.dumps({"query": "q", "documents": ["a"], "labels": [1]}) + "\n")
    with pytest.raises(ValueError, match=r"data_split='test' picks a split of a BEIR folder .* is a file"):
        TrainConfig(data=str(flat), out=str(tmp_path / "m"), data_split="test").check()
    refused = runner.invoke(app, ["mine", "--data", str(flat), "--split", "dev", "--out", str(tmp_path / "x.jsonl")])
    assert isinstance(refused.exception, ValueError) and "--split='dev' picks a split" in str(refused.exception)


def test_a_top_k_beyond_the_runs_depth_is_the_runs_depth_and_ms_marco_runs_read(tmp_path):
    root = _beir(tmp_path / "beir")
    out = evaluate_retrieve_rerank(read_beir(root), reranker=TextReranker(), run=RUN, top_k=10**8)
    assert out["top_k"] == 4 and "ndcg@4" in out["run"]  # q1 is ranked 4 deep; no @100000000 cut-off, no padding
    msmarco = tmp_path / "run.tsv"
    msmarco.write_text("q1\td5\t1\nq1\td1\t2\nq2\td3\t1\n")
    assert read_run(msmarco) == {"q1": [("d5", -1.0), ("d1", -2.0)], "q2": [("d3", -1.0)]}
    msmarco.write_text("q1 dA 12.5\nq1 dB 3.1\n")  # 'qid docid score' would rank backwards as ranks: refused
    with pytest.raises(DataError, match="line 1: a 3-field run line is MS MARCO's 'qid docid rank', but '12.5' is no "
                                        "rank"):
        read_run(msmarco)


def test_training_on_positives_only_is_refused_and_mining_draws_from_the_beir_corpus(tmp_path, monkeypatch):
    """BEIR qrels usually list relevant documents only: training on them alone would train to nothing, silently
    (an audit's model reranked BM25 to NDCG@10 0.08 against 0.44); --mine-negatives mines from corpus.jsonl, not
    only from the judged documents; a BEIR folder is no evaluator's candidate lists."""
    import fastrank.model
    from fastrank.data import read_groups
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.training.recipe import TrainConfig, _add_mined_negatives, _embedding_model, train

    root = _beir(tmp_path / "beir")
    (root / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n")
    monkeypatch.setattr(fastrank.model, "CrossEncoder", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(DataError, match=r"no training list holds two different labels: listnet .*add "
                                        r"--mine-negatives N \(mined from its corpus.jsonl\)"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "m")))
    from fastrank.data import QueryGroup
    from fastrank.training.recipe import _check_negatives

    graded = [QueryGroup("q", ["a", "b"], [2.0, 1.0])]  # grades to tell apart, without a label-0 document
    _check_negatives(TrainConfig(data="x.jsonl", out="m"), graded)
    _check_negatives(TrainConfig(data="x.jsonl", out="m", loss="bce"), [QueryGroup("q", ["a", "b"], [0.9, 0.4])])
    with pytest.raises(DataError, match="no training list holds two different labels"):  # [0] alone is no list
        _check_negatives(TrainConfig(data="x.jsonl", out="m"), [QueryGroup("q", ["a", "b"], [1, 1]),
                                                                QueryGroup("r", ["c"], [0])])
    _check_negatives(TrainConfig(data="x.jsonl", out="m", loss="mnrl", num_negatives=0), [QueryGroup("q", ["a"], [1])])
    with pytest.raises(DataError, match="with label 2: bce has no negative .* Add negatives"):
        _check_negatives(TrainConfig(data="x.jsonl", out="m", loss="bce"), [QueryGroup("q", ["a", "b"], [2, 2])])
    config = TrainConfig(data=str(root), out=str(tmp_path / "m"), mine_negatives=2,
                         mining_options={"range_max": 50})
    groups = read_groups(root)
    _add_mined_negatives(groups, config, _embedding_model(config))
    judged = {CORPUS[d][1] for d in ("d1", "d2")}
    negatives = [d if isinstance(d, str) else d["text"] for g in groups for d, y in zip(g.documents, g.labels)
                 if y == 0]
    assert len(negatives) == 4 and not set(negatives) & judged  # from the corpus' other documents
    with pytest.raises(DataError, match="is a BEIR folder: its judged documents are not candidate lists"):
        RerankingEvaluator.from_file(root)


def test_tied_runs_score_as_trec_eval_scores_them(tmp_path):
    """Random runs full of ties against trec_eval itself (pytrec_eval; not installed by CI, so this skips there:
    `pip install pytrec-eval-terrier` to run it). The rule it checks also runs in CI, by hand, above."""
    import random

    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(0)
    ids = [f"d{i}" for i in range(60)]
    for trial in range(10):
        root = tmp_path / f"t{trial}"
        (root / "qrels").mkdir(parents=True)
        (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": d, "text": d}) + "\n" for d in ids))
        qrels = {f"q{q}": {d: rng.choice([0, 1, 2]) for d in rng.sample(ids, 5)} for q in range(12)}
        (root / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": q}) + "\n" for q in qrels))
        (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
            f"{q}\t{d}\t{g}\n" for q, judged in qrels.items() for d, g in judged.items()))
        run = {q: [(d, float(rng.randint(0, 4))) for d in rng.sample(ids, rng.randint(1, 30))] for q in qrels
               if rng.random() < 0.9}
        path = root / "run.trec"  # ranks in file order, which trec_eval does not read
        path.write_text("".join(f"{q} Q0 {d} {k} {s} t\n" for q, r in run.items() for k, (d, s) in enumerate(r, 1)))
        out = evaluate_retrieve_rerank(read_beir(root), run=read_run(path), top_k=100, ks=(5, 10))
        judged = {q: j for q, j in qrels.items() if any(g > 0 for g in j.values())}
        theirs = pytrec_eval.RelevanceEvaluator(judged, {"ndcg_cut.5,10", "recall.5,10"}).evaluate(
            {q: dict(r) for q, r in run.items()})
        for name, ours in (("ndcg_cut_10", "ndcg@10"), ("ndcg_cut_5", "ndcg@5"), ("recall_10", "recall@10")):
            mean = sum(theirs.get(q, {}).get(name, 0.0) for q in judged) / len(judged)
            assert out["run"][ours] == pytest.approx(mean, abs=1e-12), (trial, name)


def test_eval_checks_query_texts_and_ids_before_scoring(tiny_model_dir, tmp_path, monkeypatch):
    """A blank judged query was scored silently (rerank --run refuses it); a judged query whose id holds a space,
    which no run can rank, made --write-run fail after the whole evaluation; with an embedding first stage such an
    id is refused before any scoring."""
    import fastrank.evaluation.retrieval as retrieval

    root = _beir(tmp_path / "beir")
    queries = root / "queries.jsonl"
    queries.write_text(queries.read_text().replace('"text": "capital of france"', '"text": "  "'))
    with pytest.raises(DataError, match=r"1 queries that qrels/test.tsv judges have a blank text in queries.jsonl, "
                                        r"e.g. 'q2'"):
        read_beir(root)
    queries.write_text(queries.read_text().replace('"text": "  "', '"text": "capital of france"')
                       .replace('"_id": "q1"', '"_id": "q 1"'))
    qrels = root / "qrels" / "test.tsv"
    qrels.write_text(qrels.read_text().replace("q1\t", "q 1\t"))
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(root), "--run", str(root / "run.trec"),
                                 "--write-run", str(tmp_path / "out.trec"), "--json"])
    assert result.exit_code == 0, result.output
    assert {line.split()[0] for line in (tmp_path / "out.trec").read_text().splitlines()} == {"q2"}  # q 1: unranked
    monkeypatch.setattr(retrieval, "evaluate_retrieve_rerank", lambda *a, **k: pytest.fail("scored before the check"))
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(root), "--retrieve-top-k", "3",
                                 "--write-run", str(tmp_path / "dense.trec")])
    assert isinstance(result.exception, DataError)
    assert "--write-run: the id 'q 1' is empty or holds whitespace" in str(result.exception)


def test_tsv_headers_in_any_column_order_qrels_trailing_tabs_and_corpus_keys(tmp_path):
    from fastrank.evaluation.beir import read_documents

    (tmp_path / "swapped.tsv").write_text("text\tid\nhello there\t1\n")
    assert read_documents(tmp_path / "swapped.tsv") == {"1": "hello there"}  # the header was read as a document
    (tmp_path / "qrels.tsv").write_text("q1\td1\t1\t\nq1\td2\t0\t\n")
    assert read_qrels(tmp_path / "qrels.tsv") == {"q1": {"d1": 1.0, "d2": 0.0}}
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "T"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl line 1: a corpus document needs a 'text' string, got the keys "
                                        r"\['_id', 'title'\]"):
        read_documents(tmp_path / "corpus.jsonl")
