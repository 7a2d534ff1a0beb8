"""``fastrank eval``: rerank every query of a grouped JSONL file and report MAP / MRR@10 / NDCG@10."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.output import metrics_table, print_json


def evaluate_model(model: str, data: str, batch_size: int = 64, max_length: int | None = None) -> dict[str, Any]:
    """Evaluate ``model`` (checkpoint dir or hub id) on ``data``; returns the EvalResult as a dict."""
    from fastrank.evaluation.evaluators import RerankingEvaluator
    from fastrank.model import CrossEncoder

    evaluator = RerankingEvaluator.from_jsonl(data, batch_size=batch_size)
    result = evaluator.evaluate(CrossEncoder(model, max_length=max_length)).to_dict()
    result["model"] = model
    result["data"] = data
    return result


def eval_command(
    model: Annotated[str, typer.Argument(help="Cross-encoder checkpoint directory or hub id.")],
    data: Annotated[Path, typer.Option("--data", help="Grouped JSONL: query, documents, labels.")],
    batch_size: Annotated[int, typer.Option("--batch-size")] = 64,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Override the model's max length.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Evaluate a reranker on labelled candidate lists."""
    result = evaluate_model(model, str(data), batch_size=batch_size, max_length=max_length)
    if as_json:
        print_json(result)
        return
    typer.echo(metrics_table({Path(model).name or model: result["metrics"]}))
    typer.echo(
        f"{result['num_queries']} queries evaluated; skipped {result['num_skipped_no_positive']} without a "
        f"positive and {result['num_skipped_no_candidates']} without candidates"
    )
