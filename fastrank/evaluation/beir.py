"""BEIR folders and TREC run files: how retrieval benchmarks and first-stage retrievers (BM25 in Pyserini or bm25s,
dense retrievers, ranx) hand over their data, so a reranker is evaluated over any first stage's ranking and its
reranking is written back in the same format.

BEIR folder
    ``corpus.jsonl`` (``{"_id", "title"?, "text"}`` a line), ``queries.jsonl`` (``{"_id", "text"}``) and
    ``qrels/<split>.tsv`` (``query-id, corpus-id, score`` rows under that header; TREC qrels, ``qid 0 docid rel``,
    are read too). A document with a title is scored with it (``fastrank.documents``). The queries evaluated are
    those of the split's qrels with a relevant document (score > 0), the grade NDCG gains.

TREC run
    ``qid Q0 docid rank score tag`` a line, whitespace-separated, or MS MARCO's ``qid docid rank`` (a ``.gz`` file
    is read compressed). Each query's documents are ranked by score, highest first, tied ones by document id,
    descending, as trec_eval ranks them (and so pytrec_eval and BEIR's own evaluation): the rank column is not read,
    as trec_eval does not read it. Every retrieval ranking fastrank scores or writes (a run, its reranking) breaks
    ties so, so its numbers equal trec_eval's on the same files; ranx orders tied documents arbitrarily, and can
    differ on a run with ties.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import logging
import math
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastrank.batching import is_integer
from fastrank.data import GZIP_MAGIC, QueryGroup, check_input_file, decoded_lines, json_lines, normalize_document
from fastrank.documents import Document, is_blank
from fastrank.errors import DataError
from fastrank.evaluation.retrieval import RetrievalTask, is_run_id, run_ids

logger = logging.getLogger(__name__)

Run = Mapping[str, Sequence[tuple[str, float]]]  # query id -> (document id, score), best first
BEIR_FILES = ("corpus.jsonl", "queries.jsonl")
QRELS_HEADER_NAMES = ("score", "relevance", "rel", "label", "grade", "judgment", "judgement")  # a first line so named


def is_beir_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a BEIR dataset's ``corpus.jsonl`` and ``queries.jsonl``."""
    return beir_problem(path) is None


def refuse_as_candidate_lists(path: str | Path, instead: str) -> None:
    """DataError when ``path`` is a BEIR folder given where candidate lists to rerank are read: its qrels mostly
    list relevant documents only, so every list would score 1.0. ``instead`` says what to do."""
    if is_beir_dir(path):
        raise DataError(f"{path} is a BEIR folder: its judged documents are not candidate lists to rerank (its qrels "
                        f"mostly list relevant documents only, so every list would score 1.0); {instead}")


def beir_problem(path: str | Path) -> str | None:
    """Why ``path`` is not a BEIR folder (a sentence naming what is missing and the layout expected), None if it
    is one."""
    path = Path(path)
    missing = [name for name in BEIR_FILES if not (path / name).is_file()]
    if path.is_dir() and not missing:
        return None
    problem = "is not a folder" if not path.is_dir() else f"has no {' or '.join(missing)}"
    return f"{path} {problem}: a BEIR dataset is a folder with corpus.jsonl, queries.jsonl and qrels/<split>.tsv"


def _check_beir_dir(path: Path, split: str) -> Path:
    """The qrels file of ``split``, once every BEIR file is known to be there (else a DataError naming the missing
    ones and the layout expected)."""
    qrels = path / "qrels" / f"{split}.tsv"
    problem = beir_problem(path)
    if problem:
        raise DataError(problem)
    if not qrels.is_file():
        have = sorted(p.stem for p in (path / "qrels").glob("*.tsv")) if (path / "qrels").is_dir() else []
        raise DataError(f"{path} has no qrels/{split}.tsv (the relevance judgements of split {split!r}); "
                        f"splits there: {', '.join(have) or 'none'}")
    return qrels


def _number(text: str, where: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{where}: {what} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise DataError(f"{where}: {what} must be a finite number, got {text!r}")
    return value


def _fields(path: Path, tabs: bool = False) -> Iterator[tuple[str, list[str]]]:
    """``(where, fields)`` of each non-blank line of a whitespace-separated file (TREC's); ``tabs``: a line with a
    tab is split at tabs only (BEIR's qrels, whose ids may hold spaces)."""
    for n, line in _lines(path):
        if line.strip():
            split = [f.strip() for f in line.rstrip().split("\t")] if tabs and "\t" in line else line.split()
            yield f"{path} line {n}", split


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``decoded_lines`` of a text file, or of a gzip-compressed one, as retrievers often write runs: named ``.gz``
    or starting with gzip's magic bytes (read, then given again, so a pipe works too)."""
    with path.open("rb") as f:
        head = f.read(len(GZIP_MAGIC))  # a pipe may hand over one byte at a time: read() waits for both
        stream = io.BufferedReader(_Replayed(head, f))
        if path.suffix.lower() != ".gz" and head != GZIP_MAGIC:
            yield from decoded_lines(stream, str(path))
            return
        try:
            with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
                yield from decoded_lines(unzipped, str(path))
        except (OSError, EOFError) as exc:
            raise DataError(f"{path}: cannot read it as gzip-compressed text ({exc})") from None


class _Replayed(io.RawIOBase):
    """A binary stream whose first bytes ``head`` were read already: gives them again, then the rest of ``rest``."""

    def __init__(self, head: bytes, rest: Any) -> None:
        super().__init__()
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        return self.rest.readinto(buffer)


def read_qrels(path: str | Path) -> dict[str, dict[str, float]]:
    """Relevance judgements, query id -> {document id: grade}: BEIR's ``query-id corpus-id score`` rows (a first
    line whose last field is a name of ``QRELS_HEADER_NAMES`` is a header, passed over) or TREC's ``qid iteration
    docid relevance``. A pair judged twice with two grades is a DataError."""
    path = Path(path)
    check_input_file(path, "qrels file")
    qrels: dict[str, dict[str, float]] = {}
    for i, (where, fields) in enumerate(_fields(path, tabs=True)):
        if len(fields) not in (3, 4):
            raise DataError(f"{where}: expected 'query-id corpus-id score' (BEIR) or 'qid 0 docid relevance' (TREC), "
                            f"got {len(fields)} fields")
        if i == 0 and fields[-1].lower() in QRELS_HEADER_NAMES:
            continue  # a header
        qid, docid, grade = fields[0], fields[-2], _number(fields[-1], where, "the relevance")
        judged = qrels.setdefault(qid, {})
        if judged.get(docid, grade) != grade:
            raise DataError(f"{where}: query {qid!r} and document {docid!r} are judged twice, {judged[docid]:g} and "
                            f"{grade:g}")
        judged[docid] = grade
    if not qrels:
        raise DataError(f"{path} holds no relevance judgements")
    return qrels


def read_run(path: str | Path, depth: int | None = None) -> dict[str, list[tuple[str, float]]]:
    """A TREC run file (or MS MARCO's ``qid docid rank``, scored ``-rank``): query id -> ``[(document id, score)]``,
    ranked as ``ranking`` ranks them. One file holds one of the two formats. ``depth``: keep each query's top
    ``depth`` only, all a rerank to that depth reads; a run file whose queries' lines are contiguous (as runs are
    written) then holds one query's whole ranking at a time, not the file's (MS MARCO's 7M-line dev run at depth
    100: a tenth). A query whose lines are split across the file is read again whole, so the result never depends
    on the line order; a pipe, which cannot be read twice, is held whole and cut at the end."""
    path = Path(path)
    check_input_file(path, "run file")
    if depth is not None and (not is_integer(depth) or depth < 1):
        raise ValueError(f"depth must be a whole number >= 1 (documents kept per query) or None, got {depth!r}")
    cut_early = depth is not None and path.is_file()
    rows: dict[str, dict[str, float]] = {}
    current, first = None, None
    for where, fields in _fields(path):
        qid, docid, value = _run_line(where, fields)
        if first is None:
            first = (where, len(fields))
        elif len(fields) != first[1]:
            raise DataError(f"{where} has {len(fields)} fields, {first[0]} {first[1]}: a run file holds TREC's 'qid Q0 "
                            "docid rank score tag' lines or MS MARCO's 'qid docid rank' ones, not both (ranks are no "
                            "scores to rank together with)")
        if cut_early and qid != current:  # the previous query's lines ended: keep its top depth
            if qid in rows:
                logger.info("%s: the lines of query %r are not contiguous; reading the whole run to rank them",
                            where, qid)
                return {q: ranked[:depth] for q, ranked in read_run(path).items()}
            if current is not None:
                rows[current] = dict(ranking(rows[current].items())[:depth])
            current = qid
        ranked = rows.setdefault(qid, {})
        if docid in ranked:
            raise DataError(f"{where}: document {docid!r} is ranked twice for query {qid!r}")
        ranked[docid] = value
    if not rows:
        raise DataError(f"run file {path} holds no ranking")
    return {qid: ranking(ranked.items())[:depth] for qid, ranked in rows.items()}


def is_trec_run(path: str | Path) -> bool:
    """Whether the file at ``path`` reads as a TREC run (its first line ``qid Q0 docid rank score tag``), as
    ``write_run`` writes one: an earlier output a rerun may replace, unlike a qrels or model file beside it."""
    try:
        for _, line in _lines(Path(path)):
            if line.strip():
                fields = line.split()
                _run_line("", fields)
                return len(fields) == 6 and fields[3].lstrip("-").isdigit()
    except (DataError, OSError):
        pass
    return False


def _run_line(where: str, fields: list[str]) -> tuple[str, str, float]:
    """(query id, document id, score) of one run line: TREC's 6 fields or MS MARCO's 3 (scored ``-rank``)."""
    if len(fields) == 6:
        qid, _, docid, _, score, _ = fields
        return qid, docid, _number(score, where, "the score")
    if len(fields) == 3:
        qid, docid, rank = fields
        value = -_number(rank, where, "the rank (MS MARCO's 'qid docid rank')")
        if not value.is_integer() or value > -1:  # 'qid docid score' read as ranks would rank backwards
            raise DataError(f"{where}: a 3-field run line is MS MARCO's 'qid docid rank', but {rank!r} is no rank "
                            "(a whole number from 1); a run with scores is TREC's 'qid Q0 docid rank score tag'")
        return qid, docid, value
    raise DataError(f"{where}: a TREC run line is 'qid Q0 docid rank score tag' (6 fields), an MS MARCO one "
                    f"'qid docid rank' (3); got {len(fields)}")


def ranking(scored: Iterable[tuple[str, float]]) -> list[tuple[str, float]]:
    """``(document id, score)`` pairs ranked as trec_eval ranks them: by score, highest first, tied ones by id,
    descending (as strings)."""
    by_id = sorted(scored, key=lambda x: x[0], reverse=True)
    return sorted(by_id, key=lambda x: -x[1])  # stable: a tie keeps the id order


def write_run(path: str | Path, run: Run, tag: str = "fastrank") -> Path:
    """Write ``run`` (query id -> ``[(document id, score)]``, best first) as a TREC run file, whole or not at all;
    gzip-compressed when ``path`` ends in ``.gz``, as ``read_run`` reads it. A query with an empty ranking writes no
    line; ids holding whitespace cannot be written and are a DataError."""
    from fastrank.io import atomic_file

    if not tag or any(c.isspace() for c in tag):
        raise ValueError(f"the run tag must be one word, got {tag!r}")
    for qid, ranked in run.items():
        for name in [qid, *(d for d, _ in ranked)] if ranked else ():  # no line, so no id, for an empty ranking
            if not is_run_id(str(name)):
                raise DataError(f"id {name!r} is empty or holds whitespace: a TREC run cannot hold it")
        bad = [s for _, s in ranked if not math.isfinite(float(s))]
        if bad:
            raise DataError(f"query {qid!r} has a score of {bad[0]}: a run's scores must be finite numbers")
    path = Path(path)
    zipped = path.suffix.lower() == ".gz"
    with atomic_file(path, "wb" if zipped else "w") as raw:
        f = io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="wb", mtime=0), encoding="utf-8") if zipped else raw
        for qid, ranked in run.items():
            f.writelines(f"{qid} Q0 {docid} {rank} {float(score):.17g} {tag}\n"
                         for rank, (docid, score) in enumerate(ranked, 1))
        if zipped:
            f.close()  # the gzip trailer; the temporary file itself stays open for atomic_file
    return path


def read_beir(path: str | Path, split: str = "test", documents: Collection[str] | None = None) -> RetrievalTask:
    """A BEIR dataset as a ``RetrievalTask``: its corpus (with titles), the queries of ``split``'s qrels that have a
    relevant document, and their grades. ``documents``: keep only these corpus ids (a run's candidates) besides the
    relevant ones, so reranking a run over a corpus of millions holds a few of them; None keeps the corpus whole
    (for a first stage that searches it). Relevant documents missing from ``corpus.jsonl`` stay in the qrels (a
    warning counts them): they count against recall and NDCG, as trec_eval counts them."""
    path = Path(path).expanduser()
    judgements = read_qrels(_check_beir_dir(path, split))
    relevant = {d for judged in judgements.values() for d, grade in judged.items() if grade > 0}
    keep = None if documents is None else set(documents) | relevant
    corpus = read_documents(path / "corpus.jsonl", keep)
    corpus_ids, index = list(corpus), {docid: i for i, docid in enumerate(corpus)}
    texts = _query_texts(path, set(judgements), split)
    queries, query_ids, qrels, missing = [], [], [], {}
    for qid, judged in judgements.items():
        rel: dict[int, float] = {}
        for docid, grade in judged.items():
            if grade > 0:
                rel[index[docid] if docid in index else missing.setdefault(docid, -len(missing) - 1)] = grade
        if rel:
            queries.append(texts[qid])
            query_ids.append(qid)
            qrels.append(rel)
    if missing:
        logger.warning("%d relevant documents of qrels/%s.tsv are not in corpus.jsonl (e.g. %r): they count as "
                       "never retrieved", len(missing), split, next(iter(missing)))
    if not queries:
        raise DataError(f"no query of qrels/{split}.tsv has a relevant document (score > 0): nothing to evaluate")
    return RetrievalTask(list(corpus.values()), queries, qrels, len(judgements) - len(queries), query_ids=query_ids,
                         corpus_ids=corpus_ids)


def beir_groups(path: str | Path, split: str = "train") -> list[QueryGroup]:
    """A BEIR folder's judged documents as labelled lists, for training and mining: each query of ``split``'s qrels
    with every document judged for it, in the qrels' order, labelled with its grade (0 for one judged
    non-relevant). ``fastrank.data.read_groups`` reads a BEIR folder so, so ``fastrank train --data DIR`` trains on
    its train split and ``fastrank mine --data DIR --corpus DIR/corpus.jsonl`` adds mined negatives. Judged
    documents missing from corpus.jsonl are left out (a warning counts them)."""
    path = Path(path).expanduser()
    judgements = read_qrels(_check_beir_dir(path, split))
    texts = read_documents(path / "corpus.jsonl", {d for judged in judgements.values() for d in judged})
    queries = _query_texts(path, set(judgements), split)
    groups, missing = [], 0
    for qid, judged in judgements.items():
        known = [(d, grade) for d, grade in judged.items() if d in texts]
        missing += len(judged) - len(known)
        groups.append(QueryGroup(queries[qid], [texts[d] for d, _ in known], [g for _, g in known], qid))
    if missing:
        logger.warning("%d judged documents of qrels/%s.tsv are not in corpus.jsonl: left out", missing, split)
    return groups


def write_beir(path: str | Path, splits: Mapping[str, Sequence[QueryGroup]], corpus: Sequence[Document] = ()) -> Path:
    """Write labelled lists (e.g. ``read_groups`` of each split's grouped JSONL) as one BEIR folder, a new or empty
    directory, whole or not at all: for retrievers that read BEIR (Pyserini, bm25s) to make the run fastrank
    reranks, and for ``fastrank eval --run``. ``splits``: split name -> its groups, written as
    ``qrels/<split>.tsv`` with every judged document and its label (0 for a negative, a judged non-relevant
    document, so ``fastrank train --data DIR`` gets negatives back). Every split's documents and those of
    ``corpus`` make one corpus: documents equal up to case and whitespace, title included, are one entry with one
    id (``d0``, ``d1``, ...), and a list holding one twice keeps its best label. Queries keep their ``query_id`` when
    every one of every split has a distinct one without whitespace, else they are ``q0``, ``q1``, ..."""
    from fastrank.data import document_key, require_labels
    from fastrank.documents import document_parts
    from fastrank.io import atomic_dir

    require_labels([g for groups in splits.values() for g in groups], "a BEIR folder's qrels")
    for split, split_groups in splits.items():
        for g in split_groups:
            if g.labels is None or len(g.labels) != len(g.documents):
                raise DataError(f"split {split!r}, query {g.query_id or g.query!r}: the qrels need a label for each "
                                f"of its {len(g.documents)} documents, got {g.labels!r}")
    for split in splits:
        if not split or any(c in split for c in "/\\") or split.strip() != split:
            raise ValueError(f"split name {split!r} cannot name a qrels file: use a plain name such as 'test'")
    docs: dict[str, tuple[str, Document]] = {}
    for doc in [d for groups in splits.values() for g in groups for d in g.documents] + list(corpus):
        docs.setdefault(document_key(doc), (f"d{len(docs)}", doc))
    groups = [g for gs in splits.values() for g in gs]
    given = run_ids([str(g.query_id) if g.query_id is not None else "" for g in groups])
    query_ids = iter(given or [f"q{i}" for i in range(len(groups))])
    with atomic_dir(path) as tmp:
        with (tmp / "corpus.jsonl").open("w", encoding="utf-8") as f:
            for docid, doc in docs.values():
                title, text = document_parts(doc)
                f.write(json.dumps({"_id": docid, "title": title, "text": text}, ensure_ascii=False) + "\n")
        (tmp / "qrels").mkdir()
        with (tmp / "queries.jsonl").open("w", encoding="utf-8") as fq:
            for split, split_groups in splits.items():
                with (tmp / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as fr:
                    fr.write("query-id\tcorpus-id\tscore\n")
                    for g in split_groups:
                        qid = next(query_ids)
                        fq.write(json.dumps({"_id": qid, "text": g.query}, ensure_ascii=False) + "\n")
                        best: dict[str, float] = {}
                        for d, label in zip(g.documents, g.labels):
                            docid = docs[document_key(d)][0]
                            best[docid] = max(best.get(docid, float(label)), float(label))
                        fr.writelines(f"{qid}\t{docid}\t{label:g}\n" for docid, label in best.items())
    return Path(path)


ID_COLUMNS = ("_id", "id", "docid", "doc_id", "pid", "qid", "query_id", "query-id", "corpus-id")
TEXT_COLUMNS = ("text", "query", "passage", "document", "contents", "body")


def read_queries(path: str | Path) -> dict[str, str]:
    """Query id -> text of a queries file: BEIR's ``queries.jsonl`` (``{"_id", "text"}`` a line) or a TSV of
    ``id<TAB>text`` rows, as MS MARCO's ``queries.*.tsv`` (``.gz`` read compressed; a first line naming its columns,
    e.g. ``id  text``, is a header)."""
    texts: dict[str, str] = {}
    for where, qid, rec in _id_records(Path(path), "queries file"):
        if not isinstance(rec.get("text"), str):
            raise DataError(f"{where}: a query needs a 'text' string")
        if texts.get(qid, rec["text"]) != rec["text"]:
            raise DataError(f"{where}: query id {qid!r} appears twice with different texts")
        texts[qid] = rec["text"]
    return texts


def read_documents(path: str | Path, keep: Collection[str] | None = None,
                   show_progress_bar: bool = False) -> dict[str, Document]:
    """Document id -> document (``{"title", "text"}`` when it has a title) of a corpus file: BEIR's
    ``corpus.jsonl`` (``{"_id", "title"?, "text"}`` a line) or a TSV of ``id<TAB>text`` rows, as MS MARCO's
    ``collection.tsv`` (or the columns a first line names: an id column, ``text`` and ``title``,
    as DPR's ``psgs_w100.tsv``, whose CSV quoting is undone);
    ``.gz`` is read compressed. ``keep``: hold only these ids (a run's candidates), so a corpus of millions costs
    what a run's documents cost. ``show_progress_bar``: count the lines read on a progress bar."""
    keep = None if keep is None else set(keep)
    corpus: dict[str, Document] = {}
    for where, docid, rec in _id_records(Path(path), "corpus file", show_progress_bar):
        if keep is not None and docid not in keep:
            continue
        if docid in corpus:
            raise DataError(f"{where}: corpus id {docid!r} appears twice")
        if not isinstance(rec.get("text"), str):
            raise DataError(f"{where}: a corpus document needs a 'text' string, got the keys {sorted(rec)}")
        corpus[docid] = normalize_document({"text": rec["text"], "title": rec.get("title") or None}, where)
    return corpus


def _id_records(path: Path, what: str, show_progress_bar: bool = False) -> Iterator[tuple[str, str, dict]]:
    """``(where, id, record)`` of each line of a JSONL file of ``{"_id", ...}`` objects, or of a TSV file's rows
    as ``{"text"}`` (``id<TAB>text``) or as the columns a header line names (``text``, ``title``). JSONL by name
    (``.jsonl`` / ``.json``, before any ``.gz``), TSV by name (``.tsv`` / ``.txt``), else by a first line that
    starts with ``{``."""
    check_input_file(path, what)
    name = path.name.lower().removesuffix(".gz")
    lines = (item for item in _counted(_lines(path), f"Reading {path.name}", show_progress_bar) if item[1].strip())
    first = next(lines, None)
    if first is None:
        raise DataError(f"{what} {path} is empty")
    rows = itertools.chain([first], lines)
    if name.endswith((".jsonl", ".json")) or (not name.endswith((".tsv", ".txt")) and first[1].lstrip()[:1] == "{"):
        for where, rec in json_lines(path, rows):
            yield where, _record_id(rec, where), rec
        return
    columns = _tsv_columns(first[1].rstrip("\r").split("\t"), f"{path} line {first[0]}")
    if columns is not None:
        next(rows)  # the header
    for n, line in rows:
        line, where = line.rstrip("\r"), f"{path} line {n}"
        # a file with a header is written by a csv module (DPR's psgs_w100.tsv quotes fields holding quotes); a bare
        # id<TAB>text file (MS MARCO's) is raw text, where a quote is the text's own
        fields = next(csv.reader([line], delimiter="\t")) if columns and '"' in line else line.split("\t")
        names = columns or ("_id", "text")
        if len(fields) != len(names):
            layout = "\t".join(names) if columns else "id<TAB>text (or a header line naming more columns)"
            raise DataError(f"{where}: {len(fields)} tab-separated fields; {what} {path.name} rows are {layout}")
        rec = dict(zip(names, fields))
        if not rec["_id"].strip():
            raise DataError(f"{where}: the id (first field) is empty")
        yield where, rec["_id"].strip(), rec


def _counted(items: Iterator[tuple[int, str]], desc: str, show: bool) -> Iterator[tuple[int, str]]:
    """``items`` (numbered lines), counted on a progress bar in steps of 100,000 lines when ``show``."""
    if not show:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(desc=desc, unit=" lines", unit_scale=True) as bar:
        n = 0
        for n, line in items:
            if n % 100_000 == 0:
                bar.update(100_000)
            yield n, line
        bar.update(n % 100_000)


def _tsv_columns(header: list[str], where: str) -> tuple[str, ...] | None:
    """The columns a TSV's first line names (its id column as ``_id``, its text column as ``text``, ``title``) when
    its first field names an id column, or every field names a column, one of them an id (``text  id``); else None
    (a data row)."""
    names = [h.strip().lower() for h in header]
    if names[0] not in ID_COLUMNS and not (set(names) <= {*ID_COLUMNS, *TEXT_COLUMNS, "title"}
                                           and set(names) & set(ID_COLUMNS)):
        return None
    ids, texts = [n for n in names if n in ID_COLUMNS], [n for n in names if n in TEXT_COLUMNS]
    if len(ids) != 1 or len(texts) != 1:
        raise DataError(f"{where}: a header line needs one id column ({', '.join(ID_COLUMNS)}) and one text column "
                        f"({', '.join(TEXT_COLUMNS)}), got {header}")
    return tuple("_id" if n in ID_COLUMNS else "text" if n in TEXT_COLUMNS else n for n in names)


def _query_texts(path: Path, judged: set[str], split: str) -> dict[str, str]:
    """The text of every query of ``queries.jsonl`` (a DataError when one of ``judged`` is not there or is blank:
    ``fastrank rerank --run`` refuses a blank query too)."""
    texts = read_queries(path / "queries.jsonl")
    unknown = sorted(judged - texts.keys())
    if unknown:
        raise DataError(f"qrels/{split}.tsv judges {len(unknown)} queries that queries.jsonl does not hold, e.g. "
                        f"{unknown[0]!r}")
    blank = sorted(q for q in judged if is_blank(texts[q]))
    if blank:
        raise DataError(f"{len(blank)} queries that qrels/{split}.tsv judges have a blank text in queries.jsonl, e.g. "
                        f"{blank[0]!r}: a reranker scores a query's words; give them their text")
    return texts


def _record_id(rec: object, where: str) -> str:
    if not isinstance(rec, dict) or not isinstance(rec.get("_id"), (str, int)) or isinstance(rec.get("_id"), bool):
        raise DataError(f"{where}: expected a JSON object with an '_id' (string or integer)")
    return str(rec["_id"])


def run_candidates(task: RetrievalTask, run: Run, top_k: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each of ``task``'s queries' top ``top_k`` documents of ``run`` as corpus indices, with their run scores, the
    first stage ``evaluate_retrieve_rerank`` reranks. A query the run does not rank gets no candidates (its relevant
    documents count as missed); a document the corpus does not hold is a DataError."""
    position = {docid: i for i, docid in enumerate(task.corpus_ids)}
    ranked, scores = [], []
    for qid in task.query_ids:
        top = list(run.get(qid, ()))[:top_k]
        unknown = [d for d, _ in top if d not in position]
        if unknown:
            raise DataError(f"the run ranks {len(unknown)} documents for query {qid!r} that the corpus does not hold, "
                            f"e.g. {unknown[0]!r}: was it made over another corpus?")
        ranked.append(np.array([position[d] for d, _ in top], dtype=np.int64))
        scores.append(np.array([s for _, s in top], dtype=np.float64))
    unranked = sum(1 for row in ranked if not len(row))
    if unranked == len(ranked):
        raise DataError("the run ranks none of the evaluated queries, those with a relevant document in the split's "
                        "qrels: is it a run for another split (--split; Python: read_beir(..., split=)), or over "
                        "other query ids?")
    if unranked:
        logger.warning("the run ranks no document for %d of %d evaluated queries: their relevant documents count as "
                       "missed", unranked, len(ranked))
    return ranked, scores


def run_documents(run: Run, top_k: int) -> set[str]:
    """Every document id among the top ``top_k`` of some query of ``run``: what ``read_beir`` must keep to rerank
    it."""
    return {d for ranked in run.values() for d, _ in list(ranked)[:top_k]}
