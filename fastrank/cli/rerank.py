"""``fastrank rerank``: rank documents (a file or stdin; lines or JSONL) for one query, or rerank a first stage's
run (``--run``: every query of a TREC run file, written back as one)."""

from __future__ import annotations

import math
import re
import sys
import unicodedata
from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.output import BACKEND_HELP, print_json
from fastrank.data import check_input_file, decode_utf8, json_document, json_documents, read_utf8, text_lines
from fastrank.documents import Document, document_parts


DOCS_FORMATS = ("auto", "lines", "jsonl")


def parse_documents(text: str, source: str, fmt: str = "auto") -> list[Document]:
    """Documents from text, one per non-empty line: ``lines`` takes each line as it is; ``jsonl`` reads each line
    as a JSON string or an object with ``text`` / ``document`` (and ``title``, scored with it); ``auto`` reads
    JSONL when the first non-empty line is such a JSON value (a JSON object without ``text`` / ``document`` is an
    error), else lines (so plain text that starts with a quote or a brace, but is no JSON object, stays text)."""
    if fmt not in DOCS_FORMATS:
        raise ValueError(f"--docs-format must be one of {', '.join(DOCS_FORMATS)}, got {fmt!r}")
    lines = text_lines(text)
    if not lines or fmt == "lines" or (fmt == "auto" and json_document(lines[0]) is None
                                       and not _json_object(lines[0])):
        return lines
    hint = " (or pass --docs-format lines to take every line as a document)" if fmt == "auto" else ""
    return json_documents(lines, source, hint)


def _json_object(line: str) -> bool:
    """Whether ``line`` is a JSON object: in auto mode such a first line means JSONL, whatever keys it has (a dataset
    record or a misspelt key), so it is refused with the keys a document needs rather than ranked as raw JSON."""
    import json

    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def rerank_documents(model: str, query: str, documents: list[Document], top_k: int | None = None,
                     backend: str = "auto", long_documents: str = "truncate",
                     window_stride: int | None = None) -> dict[str, Any]:
    """Rerank and return ``{"model", "query", "backend", "results": [{"index", "score", "document"}]}``;
    ``backend`` is ``Reranker.describe()``: what ran, long-document settings included."""
    from fastrank.reranker import Reranker

    reranker = Reranker(model, backend=backend, long_documents=long_documents, window_stride=window_stride)
    results = reranker.rerank(query, documents, top_k=top_k)
    return {"model": model, "query": query, "backend": reranker.describe(), "results": results}


def rerank_command(
    model: Annotated[str, typer.Argument(help="Artifact directory (fastrank export), checkpoint dir or hub id.")],
    query: Annotated[str | None, typer.Option("--query", help="The query to rank documents for (or --run).")] = None,
    docs_file: Annotated[Path | None, typer.Option(
        "--docs-file", help="Documents: one per line (blank lines skipped; an index counts the documents, not "
                             "the lines), or JSONL. Default: read stdin.")] = None,
    docs_format: Annotated[str, typer.Option(
        "--docs-format", help="auto (JSONL when the first line is a JSON string or object, which must then hold a "
                              "\"text\" or \"document\" string; else lines) | lines | jsonl. A JSONL object's "
                              "\"title\" is scored with its text.")] = "auto",
    top_k: Annotated[int | None, typer.Option(
        "--top-k", help="Return only the best K (with --run: write each query's best K of its --depth).")] = None,
    run: Annotated[Path | None, typer.Option(
        "--run", help="Rerank a first stage's run instead of one query: every query of this TREC run file (qid Q0 "
                      "docid rank score tag, or MS MARCO's qid docid rank; .gz too), its top --depth documents, "
                      "written to --out as a TREC run. Texts from --data, or --queries and --corpus.")] = None,
    data: Annotated[Path | None, typer.Option(
        "--data", help="With --run: a BEIR folder, whose queries.jsonl and corpus.jsonl hold the run's texts.")
    ] = None,
    queries: Annotated[Path | None, typer.Option(
        "--queries", help="With --run: the queries' texts, BEIR queries.jsonl ({\"_id\", \"text\"}) or a TSV of "
                          "id<TAB>text (MS MARCO queries.*.tsv).")] = None,
    corpus: Annotated[Path | None, typer.Option(
        "--corpus", help="With --run: the documents' texts, BEIR corpus.jsonl ({\"_id\", \"title\", \"text\"}) or a "
                         "TSV of id<TAB>text (MS MARCO collection.tsv); only the run's documents are held.")] = None,
    out: Annotated[str | None, typer.Option(
        "--out", metavar="PATH", help="With --run: the reranked run, a TREC run file (scores = logits, or fused "
                                      "with --fusion-weight).")] = None,
    depth: Annotated[int | None, typer.Option(
        "--depth", help="With --run: how many of each query's run documents are reranked, 100 if not given (those "
                        "below are not written).")] = None,
    fusion_weight: Annotated[float | None, typer.Option(
        "--fusion-weight", help="With --run: rank by z(reranker) + W * z(run score) per query (0: the reranker "
                                "alone; choose W on judged queries with fastrank eval --run --fusion-weight).")
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = "auto",
    long_documents: Annotated[str, typer.Option(
        "--long-documents", help="truncate | windows (a long document scores as its best overlapping window).")
    ] = "truncate",
    window_stride: Annotated[int | None, typer.Option(
        "--window-stride", help="With --long-documents windows: tokens consecutive windows share (default: a "
                                "quarter of max length).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rank documents for a query, best first; or rerank every query of a first stage's run (--run)."""
    if top_k is not None and top_k < 1:
        raise typer.BadParameter(f"--top-k must be >= 1 (leave it out to rank every document), got {top_k}")
    if run is not None:
        if docs_format != "auto":
            raise typer.BadParameter("--docs-format reads --docs-file or stdin; with --run the texts come from --data, "
                                     "or --queries and --corpus (BEIR JSONL or id<TAB>text TSV, told apart by name)")
        summary = _rerank_run(model, query, docs_file, run, data, queries, corpus, out, depth, top_k, fusion_weight,
                              backend=backend, long_documents=long_documents, window_stride=window_stride)
        if as_json:
            print_json(summary)
        else:
            served = summary["served_by"]
            typer.echo(f"reranked {summary['queries']} queries, {summary['pairs']} pairs (at most "
                       f"{summary['depth']} a query) in {summary['seconds']:.1f} s, {summary['pairs_per_s']} pairs/s, on "
                       f"{served.get('backend')} {served.get('precision')}; wrote {summary['out']}")
        return
    given = [name for name, value in (("--data", data), ("--queries", queries), ("--corpus", corpus),
                                      ("--out", out), ("--depth", depth), ("--fusion-weight", fusion_weight))
             if value is not None]
    if given:
        raise typer.BadParameter(f"{', '.join(given)} apply to --run (reranking a first stage's run); one query's "
                                 "documents come from --docs-file or stdin")
    if query is None:
        raise typer.BadParameter("give --query (with documents from --docs-file or stdin) or --run (a first stage's "
                                 "run to rerank)")
    if docs_file is not None:
        check_input_file(docs_file, "documents file")
        text, source = read_utf8(docs_file), str(docs_file)
    else:
        if sys.stdin.isatty():
            typer.echo("fastrank: reading documents from stdin, one per line (end with Ctrl-D; or pass --docs-file)",
                       err=True)
        text, source = decode_utf8(sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else
                                   sys.stdin.read().encode("utf-8"), "stdin"), "stdin"
    documents = parse_documents(text, source, docs_format)
    if not documents:
        typer.echo(f"fastrank: warning: no documents in {source} (it holds no non-blank line): nothing to rank",
                   err=True)
    result = rerank_documents(model, query, documents, top_k, backend, long_documents, window_stride)
    if as_json:
        print_json(result)
        return
    typer.echo("| rank | score | index | document |\n| ---: | ---: | ---: | --- |")
    for rank, row in enumerate(result["results"], 1):
        typer.echo(f"| {rank} | {row['score']:.4f} | {row['index']} | {table_cell(row['document'])} |")


def _rerank_run(model: str, query: str | None, docs_file: Path | None, run: Path, data: Path | None,
                queries: Path | None, corpus: Path | None, out: str | None, depth: int | None,
                top_k: int | None, fusion_weight: float | None, **reranker_options: Any) -> dict[str, Any]:
    """``fastrank rerank --run``: check the options against each other (before any file is read), then
    ``rerank_run_files``."""
    from fastrank.evaluation.beir import beir_problem
    from fastrank.run_rerank import rerank_run_files

    if query is not None or docs_file is not None:
        raise typer.BadParameter("--run reranks the run's own queries and documents: leave out --query and "
                                 "--docs-file")
    if out is None:
        raise typer.BadParameter("--run needs --out PATH: the reranked run is written there as a TREC run file")
    depth = 100 if depth is None else depth
    fusion_weight = 0.0 if fusion_weight is None else fusion_weight
    if depth < 1:
        raise typer.BadParameter(f"--depth must be >= 1 (run documents reranked per query), got {depth}")
    if top_k is not None and top_k > depth:
        raise typer.BadParameter(f"--top-k {top_k} is above --depth {depth}: only each query's top --depth documents "
                                 f"are reranked and written; give --depth {top_k}")
    keep: list[Path] = []
    if data is not None and (queries is not None or corpus is not None):
        raise typer.BadParameter("give --data (a BEIR folder) or --queries and --corpus, not both")
    if data is not None:
        problem = beir_problem(data)
        if problem:
            raise typer.BadParameter(f"--data: {problem}")
        queries, corpus = data / "queries.jsonl", data / "corpus.jsonl"
        keep = [data]  # --out must never replace its files (the qrels, too)
    elif queries is None or corpus is None:
        raise typer.BadParameter("--run needs the texts of its ids: --data BEIR_FOLDER, or --queries FILE and "
                                 "--corpus FILE")
    if not math.isfinite(fusion_weight) or fusion_weight < 0:
        raise typer.BadParameter(f"--fusion-weight must be a finite number >= 0, got {fusion_weight}")
    return rerank_run_files(model, run, queries, corpus, out, depth, top_k, fusion_weight, keep=keep,
                            **reranker_options)


def _joins_previous(text: str, i: int) -> bool:
    """Whether ``text[i]`` belongs to the character before it: a combining mark or vowel sign (Mn / Mc / Me), a
    variation selector or emoji skin tone, or either side of a zero-width joiner."""
    char, code = text[i], ord(text[i])
    return (unicodedata.category(char) in ("Mn", "Mc", "Me") or 0xFE00 <= code <= 0xFE0F
            or 0x1F3FB <= code <= 0x1F3FF or "\u200d" in text[i - 1:i + 1])


def table_cell(document: Document, width: int = 80) -> str:
    """A document as one Markdown table cell: title and text joined by an em dash (a "|" would open a new cell),
    whitespace collapsed, control characters dropped (an ANSI escape in a document would drive the terminal), cut
    to ``width`` characters but never inside a character's accents or a joined emoji, and every "|" escaped as
    "\\|" (backslashes before it doubled) so the row keeps the header's four cells."""
    title, text = document_parts(document)
    cell = " ".join(f"{title} — {text}".split() if title else text.split())
    cell = "".join(c for c in cell if unicodedata.category(c) != "Cc")
    if len(cell) > width:
        cut = width - 3
        while cut > 0 and _joins_previous(cell, cut):
            cut -= 1  # the next character belongs to the one before it: cut before both
        cell = cell[:cut] + "..."
    return re.sub(r"(\\*)\|", lambda m: m.group(1) * 2 + "\\|", cell)
