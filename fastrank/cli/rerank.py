"""``fastrank rerank``: rank documents (a file or stdin; lines or JSONL) for one query."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.output import BACKEND_HELP, print_json
from fastrank.errors import DataError


def parse_documents(text: str, source: str) -> list[str]:
    """Documents from text: JSONL (each line a JSON string or an object with ``text`` / ``document``) when the
    first non-empty line starts with ``"`` or ``{``, else one document per non-empty line."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].lstrip()[:1] not in ('"', "{"):
        return lines
    docs = []
    for n, line in enumerate(lines, 1):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{source} line {n} is not valid JSON: {exc}") from exc
        if isinstance(value, dict):
            value = value.get("text", value.get("document"))
        if not isinstance(value, str):
            raise DataError(f"{source} line {n}: expected a JSON string or an object with a 'text' or 'document' "
                            f"string, got {line[:80]!r}")
        docs.append(value)
    return docs


def decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{source} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
                        "convert it, e.g. iconv -f latin1 -t utf-8") from exc


def rerank_documents(model: str, query: str, documents: list[str], top_k: int | None = None,
                     backend: str = "auto") -> dict[str, Any]:
    """Rerank and return ``{"model", "query", "backend", "results": [{"index", "score", "document"}]}``."""
    from fastrank.reranker import Reranker

    reranker = Reranker(model, backend=backend)
    results = reranker.rerank(query, documents, top_k=top_k)
    return {"model": model, "query": query, "backend": reranker.backend.describe(), "results": results}


def rerank_command(
    model: Annotated[str, typer.Argument(help="Artifact directory (fastrank export), checkpoint dir or hub id.")],
    query: Annotated[str, typer.Option("--query", help="The query to rank documents for.")],
    docs_file: Annotated[Path | None, typer.Option(
        "--docs-file", help="Documents: one per line, or JSONL. Default: read stdin.")] = None,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Return only the best K.")] = None,
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP)] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rank documents for a query, best first."""
    if docs_file is not None:
        if not docs_file.is_file():
            raise DataError(f"documents file {str(docs_file)!r} does not exist")
        text, source = decode(docs_file.read_bytes(), str(docs_file)), str(docs_file)
    else:
        text, source = decode(sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else
                              sys.stdin.read().encode("utf-8"), "stdin"), "stdin"
    result = rerank_documents(model, query, parse_documents(text, source), top_k, backend)
    if as_json:
        print_json(result)
        return
    typer.echo("| rank | score | index | document |\n| ---: | ---: | ---: | --- |")
    for rank, row in enumerate(result["results"], 1):
        doc = " ".join(row["document"].split())
        doc = doc if len(doc) <= 80 else doc[:77] + "..."
        typer.echo(f"| {rank} | {row['score']:.4f} | {row['index']} | {doc} |")
