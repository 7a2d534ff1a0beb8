"""Reranking a first stage's run (``fastrank rerank --run``, ``rerank_run``): every query it ranks, judged or not,
checked against the model's own logits, hand-computed fusion, ``fastrank eval --write-run`` on the judged queries,
and MS MARCO / DPR file layouts."""

from __future__ import annotations

import functools
import gzip
import re
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fastrank.cli import app
from fastrank.errors import DataError
from fastrank.evaluation.beir import read_documents, read_queries, read_run, write_run
from fastrank.run_rerank import rerank_run, rerank_run_files

runner = CliRunner()

DOCS = {"d1": ("", "glaciers carve ice caves"), "d2": ("Paris", "the capital of france"),
        "d3": ("", "berlin is in germany"), "d4": ("", "rome is old"), "d5": ("", "ice cream shops"),
        "d6": ("", "caves of ice form under glaciers"), "d7": ("", "an unrelated text"), "d8": ("", "never ranked")}
QUERIES = {"q1": "glacier caves", "q2": "capital of france", "q3": "an unjudged query", "q9": "not in the run"}
RUN = {"q2": [("d3", 4.0), ("d2", 3.5), ("d4", 1.0)], "q1": [("d5", 9.0), ("d1", 8.5), ("d3", 3.0), ("d6", 2.0)],
       "q3": [("d7", 1.0), ("d1", 0.5)]}


def _texts(docid: str) -> str | dict[str, str]:
    title, text = DOCS[docid]
    return {"title": title, "text": text} if title else text


def _beir(root: Path) -> Path:
    """A BEIR folder (queries and corpus, qrels for q1 and q2 only: q3 is unjudged) and RUN as run.trec."""
    (root / "qrels").mkdir(parents=True)
    (root / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": t, "text": x}) + "\n"
                                               for k, (t, x) in DOCS.items()))
    (root / "queries.jsonl").write_text("".join(json.dumps({"_id": k, "text": q}) + "\n" for k, q in QUERIES.items()))
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td6\t1\nq2\td2\t1\n")
    write_run(root / "run.trec", RUN, tag="bm25")
    return root


def _logits(model_dir: Path, qid: str, docids: list[str]) -> np.ndarray:
    """The checkpoint's own logits (CrossEncoder.predict, titles as fastrank scores them): the reference."""
    from fastrank import CrossEncoder

    model = CrossEncoder(model_dir)
    return np.asarray(model.predict([(QUERIES[qid], _texts(d)) for d in docids], activation="identity"),
                      dtype=np.float64)


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std()


def test_every_query_of_the_run_is_reranked_by_the_models_logits(tiny_model_dir):
    queries = dict(QUERIES)
    documents = {d: _texts(d) for d in DOCS}
    out = rerank_run(str(tiny_model_dir), RUN, queries, documents, depth=3, show_progress_bar=False)
    assert list(out) == ["q2", "q1", "q3"]  # the run's order, the unjudged q3 included
    for qid, ranked in RUN.items():
        top = [d for d, _ in ranked[:3]]
        logits = _logits(tiny_model_dir, qid, top)
        expected = [top[i] for i in np.argsort(-logits, kind="stable")]
        assert [d for d, _ in out[qid]] == expected, qid
        assert [s for _, s in out[qid]] == pytest.approx(sorted(logits, reverse=True), abs=1e-5)
    assert "d6" not in {d for d, _ in out["q1"]}  # below depth 3: not written
    best = rerank_run(str(tiny_model_dir), RUN, queries, documents, depth=3, top_k=1, show_progress_bar=False)
    assert {q: ranked for q, ranked in best.items()} == {q: ranked[:1] for q, ranked in out.items()}


def test_fusion_is_the_z_scored_sum_computed_by_hand(tiny_model_dir):
    documents = {d: _texts(d) for d in DOCS}
    out = rerank_run(str(tiny_model_dir), RUN, QUERIES, documents, fusion_weight=0.5, show_progress_bar=False)
    docids = [d for d, _ in RUN["q1"]]
    first = np.array([s for _, s in RUN["q1"]])
    probability = 1 / (1 + np.exp(-_logits(tiny_model_dir, "q1", docids)))  # a sigmoid model fuses its scores
    fused = _zscore(probability) + 0.5 * _zscore(first)
    assert [d for d, _ in out["q1"]] == [docids[i] for i in np.argsort(-fused, kind="stable")]
    assert [s for _, s in out["q1"]] == pytest.approx(sorted(fused, reverse=True), abs=1e-5)


def test_ties_rank_by_document_id_descending_and_chunks_do_not_change_scores(tiny_model_dir, monkeypatch):
    import fastrank.run_rerank as run_rerank

    documents = {d: _texts(d) for d in DOCS}
    tied = {"q3": [("d1", 1.0), ("d4", 1.0), ("d7", 1.0)]}  # the run's order is not the tie rule's
    queries = {"q3": "x"}
    documents = {**documents, "d4": "same", "d7": "same", "d1": "same"}
    out = rerank_run(str(tiny_model_dir), tied, queries, documents, show_progress_bar=False)
    assert [d for d, _ in out["q3"]] == ["d7", "d4", "d1"] and len({s for _, s in out["q3"]}) == 1
    whole = rerank_run(str(tiny_model_dir), RUN, QUERIES, {d: _texts(d) for d in DOCS}, show_progress_bar=False)
    monkeypatch.setattr(run_rerank, "CHUNK_PAIRS", 2)  # a query at a time
    chunked = rerank_run(str(tiny_model_dir), RUN, QUERIES, {d: _texts(d) for d in DOCS}, show_progress_bar=False)
    assert [d for d, _ in chunked["q1"]] == [d for d, _ in whole["q1"]]
    for qid in RUN:
        assert [s for _, s in chunked[qid]] == pytest.approx([s for _, s in whole[qid]], abs=1e-5)


def test_cli_run_equals_eval_write_run_on_the_judged_queries(tiny_model_dir, tmp_path):
    root = _beir(tmp_path / "beir")
    out = tmp_path / "reranked.trec"
    result = runner.invoke(app, ["rerank", str(tiny_model_dir), "--run", str(root / "run.trec"), "--data", str(root),
                                 "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["queries"] == 3 and summary["pairs"] == 9 and summary["out"] == str(out)
    assert summary["served_by"]["backend"] == "torch"
    written = read_run(out)
    judged = tmp_path / "judged.trec"
    evaluated = runner.invoke(app, ["eval", str(tiny_model_dir), "--data", str(root), "--run", str(root / "run.trec"),
                                    "--write-run", str(judged), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    by_eval = read_run(judged)
    assert set(by_eval) == {"q1", "q2"} and set(written) == {"q1", "q2", "q3"}
    for qid in by_eval:
        assert [d for d, _ in written[qid]] == [d for d, _ in by_eval[qid]]
        assert [s for _, s in written[qid]] == pytest.approx([s for _, s in by_eval[qid]], abs=1e-5)
    table = runner.invoke(app, ["rerank", str(tiny_model_dir), "--run", str(root / "run.trec"), "--data", str(root),
                                "--out", str(out), "--depth", "2", "--top-k", "1"])
    assert table.exit_code == 0, table.output
    assert "reranked 3 queries, 6 pairs (at most 2 a query)" in table.output
    assert {q: len(r) for q, r in read_run(out).items()} == {"q2": 1, "q1": 1, "q3": 1}
    windows = runner.invoke(app, ["rerank", str(tiny_model_dir), "--run", str(root / "run.trec"), "--data", str(root),
                                  "--out", str(out), "--long-documents", "windows", "--window-stride", "8", "--json"])
    assert windows.exit_code == 0, windows.output
    served = json.loads(windows.stdout)["served_by"]
    assert (served["long_documents"], served["window_stride"]) == ("windows", 8)


def test_ms_marco_tsv_files_and_a_gzip_run(tiny_model_dir, tmp_path):
    """MS MARCO's layout: queries.tsv and collection.tsv as id<TAB>text (no title), a 'qid docid rank' run, gzip."""
    (tmp_path / "queries.tsv").write_text("".join(f"{k}\t{q}\n" for k, q in QUERIES.items()))
    with gzip.open(tmp_path / "collection.tsv.gz", "wt") as f:
        f.writelines(f"{k}\t{x}\n" for k, (_, x) in DOCS.items())
    with gzip.open(tmp_path / "run.tsv.gz", "wt") as f:
        f.writelines(f"{q}\t{d}\t{r}\n" for q, ranked in RUN.items() for r, (d, _) in enumerate(ranked, 1))
    summary = rerank_run_files(str(tiny_model_dir), tmp_path / "run.tsv.gz", tmp_path / "queries.tsv",
                               tmp_path / "collection.tsv.gz", tmp_path / "out.trec", depth=2,
                               show_progress_bar=False)
    assert summary["pairs"] == 6
    written = read_run(tmp_path / "out.trec")
    from fastrank import CrossEncoder

    model = CrossEncoder(tiny_model_dir)
    for qid, ranked in RUN.items():  # no titles in MS MARCO's files: the text alone is scored
        top = [d for d, _ in ranked[:2]]
        logits = model.predict([(QUERIES[qid], DOCS[d][1]) for d in top], activation="identity")
        assert [d for d, _ in written[qid]] == [top[i] for i in np.argsort(-logits, kind="stable")], qid
        assert [s for _, s in written[qid]] == pytest.approx(sorted(logits, reverse=True), abs=1e-5)


def test_windows_score_a_long_document_by_its_best_window(tiny_model_dir):
    from fastrank import Reranker

    long_doc = " ".join(["filler words about nothing"] * 300) + " glaciers carve ice caves"
    documents = {"long": long_doc, "d1": DOCS["d1"][1]}
    run = {"q1": [("long", 2.0), ("d1", 1.0)]}
    windows = Reranker(str(tiny_model_dir), long_documents="windows")
    out = dict(rerank_run(windows, run, QUERIES, documents, show_progress_bar=False)["q1"])
    expected = windows.logits([(QUERIES["q1"], long_doc), (QUERIES["q1"], documents["d1"])])[:, 0]
    assert [out["long"], out["d1"]] == pytest.approx(expected.tolist(), abs=1e-6)
    truncated = dict(rerank_run(str(tiny_model_dir), run, QUERIES, documents, show_progress_bar=False)["q1"])
    rows, owners = windows.encode([(QUERIES["q1"], long_doc)])
    assert len(rows.lengths) > 2 and out["long"] > truncated["long"] + 1e-4  # a later window scores higher
    assert truncated["d1"] == pytest.approx(out["d1"], abs=1e-6)


def test_tsv_readers_take_headers_titles_and_keep_only_what_is_asked(tmp_path):
    dpr = tmp_path / "psgs.tsv"
    dpr.write_text("id\ttext\ttitle\n1\tglaciers carve ice caves\tGlacier\n2\trome is old\t\n3\tnot kept\tX\n")
    assert read_documents(dpr, keep={"1", "2"}) == {"1": {"title": "Glacier", "text": "glaciers carve ice caves"},
                                                     "2": "rome is old"}
    quoted = tmp_path / "psgs_w100.tsv"  # DPR's own first row: csv quoting, doubled quotes inside
    quoted.write_text('id\ttext\ttitle\n1\t"Aaron ( or ; ""Aharon"") is a prophet"\tAaron\n2\tsay "hi" twice\tB\n')
    assert read_documents(quoted) == {"1": {"title": "Aaron", "text": 'Aaron ( or ; "Aharon") is a prophet'},
                                      "2": {"title": "B", "text": 'say "hi" twice'}}
    marco = tmp_path / "collection.tsv"  # no header: raw text, its quotes its own
    marco.write_text('5\tid\n6\t"quoted" text\n')
    assert read_documents(marco) == {"5": "id", "6": '"quoted" text'}
    crlf = tmp_path / "queries.tsv"
    crlf.write_bytes(b"qid\tquery\r\n7\twhat is ice\r\n")
    assert read_queries(crlf) == {"7": "what is ice"}
    beir = tmp_path / "corpus.jsonl"
    beir.write_text(json.dumps({"_id": 5, "title": "T", "text": "x"}) + "\n")
    assert read_documents(beir) == {"5": {"title": "T", "text": "x"}}


@pytest.mark.parametrize("content, message", [
    ("1\ttext\textra\n", "3 tab-separated fields; corpus file docs.tsv rows are id<TAB>text (or a header line"),
    ("id\ttitle\n1\tx\n", "docs.tsv line 1: a header line needs one id column"),
    ("\tno id\n", "the id (first field) is empty"),
    ("1\ta\n1\tb\n", "corpus id '1' appears twice"),
    ("", "corpus file"),
])
def test_bad_tsv_corpora_are_refused_with_the_line(tmp_path, content, message):
    path = tmp_path / "docs.tsv"
    path.write_text(content)
    with pytest.raises(DataError, match=re.escape(message)):
        read_documents(path)


def test_ids_the_texts_lack_are_refused_before_any_scoring(tmp_path):
    from fastrank import Reranker

    class Refuses(Reranker):
        def __init__(self):  # never loads: any use of it fails the test
            pass

        def logits(self, pairs):
            raise AssertionError("scored before the ids were checked")

    documents = {d: _texts(d) for d in DOCS}
    with pytest.raises(DataError, match=r"the run names 1 queries that the queries does not hold, e\.g\. 'q3'"):
        rerank_run(Refuses(), RUN, {"q1": "a", "q2": "b"}, documents, show_progress_bar=False)
    with pytest.raises(DataError, match=r"the run names 1 documents that the corpus does not hold, e\.g\. 'd6'"):
        rerank_run(Refuses(), RUN, QUERIES, {d: t for d, t in documents.items() if d != "d6"}, show_progress_bar=False)
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        rerank_run(Refuses(), RUN, QUERIES, documents, depth=0)
    with pytest.raises(ValueError, match="fusion_weight must be a finite number >= 0"):
        rerank_run(Refuses(), RUN, QUERIES, documents, fusion_weight=-1.0)
    with pytest.raises(ValueError, match="first_stage_scores must be finite numbers"):
        rerank_run(Refuses(), {"q1": [("d1", float("nan"))]}, QUERIES, documents, fusion_weight=1.0)
    with pytest.raises(TypeError, match="reranker must be a fastrank.Reranker or a model's path"):
        rerank_run(object(), RUN, QUERIES, documents)


def test_a_failed_rerank_writes_nothing(tiny_model_dir, tmp_path, monkeypatch):
    """A failure while the reranked run is being written (here: the second query's rows) leaves no file."""
    import fastrank.run_rerank as run_rerank

    root = _beir(tmp_path / "beir")
    out = tmp_path / "out.trec"
    real = run_rerank.rerank_run

    class FailsWhileWriting(dict):
        passes = 0

        def items(self):
            self.passes += 1  # write_run checks every id first, then writes: fail on the writing pass
            for i, item in enumerate(super().items()):
                if self.passes == 2 and i == 1:
                    raise RuntimeError("killed halfway")
                yield item

    monkeypatch.setattr(run_rerank, "rerank_run", lambda *a, **k: FailsWhileWriting(real(*a, **k)))
    with pytest.raises(RuntimeError, match="killed halfway"):
        rerank_run_files(str(tiny_model_dir), root / "run.trec", root / "queries.jsonl", root / "corpus.jsonl", out,
                         show_progress_bar=False)
    assert not out.exists() and list(tmp_path.iterdir()) == [root]


def test_empty_rankings_blank_queries_and_repeated_documents(tiny_model_dir, tmp_path):
    documents = {d: _texts(d) for d in DOCS}
    out = rerank_run(str(tiny_model_dir), {"q1": RUN["q1"], "q2": [], "q3": RUN["q3"]}, QUERIES, documents,
                     show_progress_bar=False)  # a retriever found nothing for q2: it crashed the chunk
    whole = rerank_run(str(tiny_model_dir), RUN, QUERIES, documents, show_progress_bar=False)
    assert out["q2"] == []
    for qid in ("q1", "q3"):  # other queries in the chunk: the same ranking, scores up to batch composition
        assert [d for d, _ in out[qid]] == [d for d, _ in whole[qid]]
        assert [s for _, s in out[qid]] == pytest.approx([s for _, s in whole[qid]], abs=1e-5)
    write_run(tmp_path / "r.trec", out)
    assert set(read_run(tmp_path / "r.trec")) == {"q1", "q3"}
    with pytest.raises(DataError, match=r"1 of the run's queries have a blank text, e\.g\. 'q2'"):
        rerank_run(str(tiny_model_dir), RUN, {**QUERIES, "q2": "  "}, documents, show_progress_bar=False)
    with pytest.raises(DataError, match="document 'd1' is ranked twice for query 'q1'"):
        rerank_run(str(tiny_model_dir), {"q1": [("d1", 2.0), ("d1", 1.0)]}, QUERIES, documents)
    with pytest.raises(ValueError, match="top_k 5 is above depth 3"):
        rerank_run(str(tiny_model_dir), RUN, QUERIES, documents, depth=3, top_k=5)


def test_files_are_checked_before_the_model_loads_and_queries_before_the_corpus(tmp_path, monkeypatch):
    import fastrank.evaluation.beir as beir
    import fastrank.run_rerank as run_rerank

    root = _beir(tmp_path / "beir")
    monkeypatch.setattr(run_rerank, "Reranker", lambda *a, **k: None)  # no model needed to get this far
    with pytest.raises(DataError, match="run file .*nope.trec' does not exist"):
        rerank_run_files("never-loaded", tmp_path / "nope.trec", root / "queries.jsonl", root / "corpus.jsonl",
                         tmp_path / "o.trec")
    (tmp_path / "other-queries.tsv").write_text("q1\tglacier caves\n")
    monkeypatch.setattr(beir, "read_documents", lambda *a, **k: pytest.fail("read the corpus first"))
    with pytest.raises(DataError, match=r"the run names 2 queries that the queries file .*other-queries.tsv does not "
                                        r"hold, e\.g\. 'q2'"):
        rerank_run_files("never-loaded", root / "run.trec", tmp_path / "other-queries.tsv", root / "corpus.jsonl",
                         tmp_path / "o.trec")


@pytest.mark.parametrize("args, message", [
    (["--run", "RUN", "--data", "ROOT"], "--run needs --out PATH"),
    (["--run", "RUN", "--out", "OUT"], "--run needs the texts of its ids: --data BEIR_FOLDER"),
    (["--run", "RUN", "--data", "ROOT", "--queries", "Q", "--out", "OUT"], "give --data (a BEIR folder) or"),
    (["--run", "RUN", "--data", "ROOT", "--out", "OUT", "--query", "x"], "leave out --query and --docs-file"),
    (["--run", "RUN", "--data", "ROOT", "--out", "OUT", "--depth", "0"], "--depth must be >= 1"),
    (["--run", "RUN", "--data", "ROOT", "--out", "OUT", "--fusion-weight", "-1"], "--fusion-weight must be a finite"),
    (["--run", "RUN", "--data", "ROOT", "--out", "RUN"], "refusing to write the reranked run over the input"),
    (["--run", "RUN", "--data", "RUN", "--out", "OUT"], "--data: "),
    (["--run", "RUN", "--data", "ROOT", "--out", "QRELS"], "test.tsv: it is a file of the input folder"),
    (["--run", "RUN", "--data", "ROOT", "--out", "QRELS_DEV"], "dev.tsv: it is a file of the input folder"),
    (["--run", "RUN", "--data", "ROOT", "--out", "MODEL_FILE"], "config.json: it is a file of the input folder"),
    (["--run", "RUN", "--queries", "Q", "--corpus", "CORPUS", "--out", "MODEL_FILE"], "config.json: it is a file of"),
    (["--run", "RUN", "--data", "ROOT", "--out", "OUT", "--docs-format", "jsonl"], "--docs-format reads --docs-file"),
    (["--run", "RUN", "--data", "ROOT", "--out", "OUT", "--top-k", "200"], "--top-k 200 is above --depth 100"),
    (["--query", "x", "--out", "OUT"], "--out apply to --run"),
    ([], "give --query (with documents from --docs-file or stdin) or --run"),
])
def test_cli_run_errors(tiny_model_dir, tmp_path, args, message):
    """Option errors before any scoring; --out never replaces an input, a qrels file of the BEIR folder (any split)
    nor a file of the model's folder (it accepted config.json)."""
    root = _beir(tmp_path / "beir")
    (root / "qrels" / "dev.tsv").write_text((root / "qrels" / "test.tsv").read_text())
    subst = {"RUN": str(root / "run.trec"), "ROOT": str(root), "OUT": str(tmp_path / "o.trec"),
             "Q": str(root / "queries.jsonl"), "CORPUS": str(root / "corpus.jsonl"),
             "QRELS": str(root / "qrels" / "test.tsv"), "QRELS_DEV": str(root / "qrels" / "dev.tsv"),
             "MODEL_FILE": str(tiny_model_dir / "config.json")}
    kept = {name: Path(subst[name]).read_bytes() for name in ("QRELS", "QRELS_DEV", "MODEL_FILE")}
    result = runner.invoke(app, ["rerank", str(tiny_model_dir), *[subst.get(a, a) for a in args]], input="")
    assert result.exit_code != 0
    assert message in " ".join((result.output + str(result.exception)).replace("│", " ").split())
    assert not (tmp_path / "o.trec").exists()
    assert {name: Path(subst[name]).read_bytes() for name in kept} == kept


def test_read_run_at_a_depth_keeps_each_querys_top_whatever_the_line_order(tmp_path, caplog):
    """``read_run(path, depth)`` equals the whole run cut to ``depth`` (ties at the cut ranked by id, descending, as
    trec_eval ranks them), for contiguous queries and for a query whose lines are split across the file (read again
    whole); a document ranked twice is still found, and a depth that is not a whole number >= 1 is refused."""
    import random

    rng = random.Random(7)
    lines = [(f"q{q}", f"d{d}", float(rng.randrange(6))) for q in range(30) for d in rng.sample(range(500), 40)]
    contiguous = tmp_path / "contiguous.trec"
    contiguous.write_text("".join(f"{q} Q0 {d} {r} {s} t\n" for r, (q, d, s) in enumerate(lines, 1)))
    shuffled = tmp_path / "shuffled.trec"
    rng.shuffle(lines)
    shuffled.write_text("".join(f"{q} Q0 {d} {r} {s} t\n" for r, (q, d, s) in enumerate(lines, 1)))
    whole = read_run(contiguous)
    assert read_run(shuffled) == whole and all(len(ranked) == 40 for ranked in whole.values())
    for depth in (1, 7, 40, 100):
        cut = {q: ranked[:depth] for q, ranked in whole.items()}
        assert read_run(contiguous, depth) == cut
        with caplog.at_level("INFO", logger="fastrank.evaluation.beir"):
            assert read_run(shuffled, depth) == cut
        assert "are not contiguous; reading the whole run" in caplog.text
    # the tie rule at the cut: six scores over 40 documents, so the cut falls inside a tie for most queries
    q0 = [(d, s) for q, d, s in lines if q == "q0"]
    def before(a, b):  # score descending, then id descending as strings
        return -1 if (a[1], a[0]) > (b[1], b[0]) else 1

    by_hand = sorted(q0, key=functools.cmp_to_key(before))
    assert [d for d, _ in read_run(contiguous, 7)["q0"]] == [d for d, _ in by_hand[:7]]
    (tmp_path / "twice.trec").write_text("q1 Q0 a 1 3 t\nq1 Q0 b 2 2 t\nq1 Q0 c 3 1 t\nq1 Q0 c 4 0 t\n")
    with pytest.raises(DataError, match=r"twice.trec line 4: document 'c' is ranked twice for query 'q1'"):
        read_run(tmp_path / "twice.trec", 1)
    for depth in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="depth must be a whole number >= 1"):
            read_run(contiguous, depth)


def _through_a_pipe(tmp_path: Path, data: bytes, read, split: int | None = None):
    """``read(path)`` of a FIFO a thread writes ``data`` into: what `--run <(zcat run.gz)` gives, a file that can be
    read once. A reader that opens it again would wait forever for a writer: it fails after 60 s instead. ``split``:
    write the first ``split`` bytes alone, then the rest a moment later (a pipe hands over what it holds)."""
    import os
    import threading

    fifo = tmp_path / f"pipe{len(list(tmp_path.glob('pipe*')))}"
    os.mkfifo(fifo)
    outcome: dict = {}

    def write() -> None:
        import time

        with open(fifo, "wb", buffering=0) as f:
            try:
                if split:
                    f.write(data[:split])
                    time.sleep(0.2)
                f.write(data[split or 0:])
            except BrokenPipeError:
                pass

    def run() -> None:
        try:
            outcome["value"] = read(fifo)
        except BaseException as exc:  # handed to the test's thread
            outcome["error"] = exc

    threads = [threading.Thread(target=write, daemon=True), threading.Thread(target=run, daemon=True)]
    for thread in threads:
        thread.start()
    threads[1].join(60)
    if threads[1].is_alive():
        open(fifo, "wb").close()  # an empty writer lets the waiting reader end
        pytest.fail("the reader opened the pipe a second time and waited for a writer")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def test_a_run_from_a_pipe_or_gzip_by_its_first_bytes_reads_as_the_file(tmp_path):
    """A pipe cannot be read again: a query split across it was cut to the last query's lines (read_run went back to
    the file's start, at its end). gzip is known by its first bytes, a misnamed file's or a pipe's."""
    import gzip

    lines = [f"q1 Q0 a{i} {i} {100 - i} t\n" for i in range(1, 6)] + [f"q2 Q0 b{i} {i} {50 - i} t\n" for i in range(1, 4)]
    lines += ["q1 Q0 z 9 99 t\n"] + [f"q3 Q0 c{i} {i} {10 - i} t\n" for i in range(1, 4)]
    data = "".join(lines).encode()
    (tmp_path / "run.trec").write_bytes(data)
    expected = read_run(tmp_path / "run.trec", 2)
    assert expected == {"q1": [("z", 99.0), ("a1", 99.0)], "q2": [("b1", 49.0), ("b2", 48.0)],
                        "q3": [("c1", 9.0), ("c2", 8.0)]}
    assert _through_a_pipe(tmp_path, data, lambda p: read_run(p, 2)) == expected
    assert _through_a_pipe(tmp_path, gzip.compress(data), lambda p: read_run(p, 2)) == expected
    assert _through_a_pipe(tmp_path, gzip.compress(data), read_run, split=1) == read_run(tmp_path / "run.trec")
    (tmp_path / "misnamed.trec").write_bytes(gzip.compress(data))
    assert read_run(tmp_path / "misnamed.trec", 2) == expected
    bad = data.replace(b"q3 Q0 c2", b"q3 Q0 c\xe92")
    with pytest.raises(DataError, match=r"pipe\d line 11 is not UTF-8 text \(byte 0xe9 at offset 7\)"):
        _through_a_pipe(tmp_path, bad, read_run)  # it named no file and no line: the retry read an emptied pipe
    with pytest.raises(DataError, match=r"bad.trec.gz line 11 is not UTF-8 text \(byte 0xe9 at offset 7\)"):
        (tmp_path / "bad.trec.gz").write_bytes(gzip.compress(bad))
        read_run(tmp_path / "bad.trec.gz")


def test_one_run_file_holds_one_format_and_gz_outputs_are_gzip(tiny_model_dir, tmp_path):
    """TREC scores and MS MARCO's negated ranks in one query were ranked together; a '.gz' output was plain text
    that read_run then could not read; a query with an empty ranking writes no line, so its id is not checked."""
    import gzip

    (tmp_path / "mixed.tsv").write_text("q1\td1\t1\nq1 Q0 d2 2 100 t\nq1\td3\t2\n")
    with pytest.raises(DataError, match=r"mixed.tsv line 2 has 6 fields, .*mixed.tsv line 1 3: a run file holds "
                                        r"TREC's 'qid Q0 docid rank score tag' lines or MS MARCO's"):
        read_run(tmp_path / "mixed.tsv", 1)
    run = {"q1": [("d1", 2.5), ("d2", -1.0)], "q 2": []}
    written = write_run(tmp_path / "out.trec.gz", run)
    assert gzip.decompress(written.read_bytes()).decode() == ("q1 Q0 d1 1 2.5 fastrank\n"
                                                              "q1 Q0 d2 2 -1 fastrank\n")
    assert read_run(written) == {"q1": run["q1"]}
    root = _beir(tmp_path / "beir")
    result = runner.invoke(app, ["rerank", str(tiny_model_dir), "--run", str(root / "run.trec"), "--data", str(root),
                                 "--out", str(tmp_path / "reranked.trec.gz")])
    assert result.exit_code == 0, result.output
    plain = tmp_path / "reranked.trec"
    assert runner.invoke(app, ["rerank", str(tiny_model_dir), "--run", str(root / "run.trec"), "--data", str(root),
                               "--out", str(plain)]).exit_code == 0
    assert gzip.decompress((tmp_path / "reranked.trec.gz").read_bytes()) == plain.read_bytes()


def test_a_rerun_replaces_its_own_run_inside_the_beir_folder(tiny_model_dir, tmp_path):
    """A run written inside the BEIR folder is an earlier output, which the same command may replace; the folder's
    own files stay refused (the second run was refused as 'a file of the input folder')."""
    from fastrank.cli.bench import is_bench_records

    root = _beir(tmp_path / "beir")
    args = ["rerank", str(tiny_model_dir), "--run", str(root / "run.trec"), "--data", str(root),
            "--out", str(root / "reranked.trec")]
    assert runner.invoke(app, args).exit_code == 0
    first = (root / "reranked.trec").read_text()
    (root / "reranked.trec").write_text(first.replace("fastrank", "older"))
    assert runner.invoke(app, args).exit_code == 0, "the rerun was refused"
    assert (root / "reranked.trec").read_text() == first
    (tmp_path / "records.jsonl").write_text('{"kind": "throughput", "row": "x"}\n')
    assert is_bench_records(tmp_path / "records.jsonl") and not is_bench_records(tiny_model_dir / "config.json")
