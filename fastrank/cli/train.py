"""``fastrank train`` and ``fastrank demo``: wrappers over ``fastrank.training.recipe.train``."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.options import DocumentPrompt, QueryPrompt
from fastrank.cli.output import metrics_table, print_json
from fastrank.training.recipe import TrainConfig

RECIPE = TrainConfig(data="", out="")  # its defaults, shown in --help (the options default to None: "not given")


def _quiet_stdout(fn, *args: Any) -> Any:
    """Run ``fn`` with its progress/log prints sent to stderr: stdout carries only the result."""
    with contextlib.redirect_stdout(sys.stderr):
        return fn(*args)


def _report(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(result)
        return
    columns = {k: result[k]["metrics"] for k in ("eval_before", "eval_after") if k in result}
    if columns:
        typer.echo(metrics_table(columns))
    weight = result["config"].get("first_stage_weight")
    if weight:
        typer.echo(f"note: evaluated as logit + {weight:g} x first-stage score, the score it was trained for "
                   "(fastrank.losses.prior.PriorReranker); fastrank eval / export / Reranker score the model alone")
    if result.get("titled_documents"):
        typer.echo(f"note: {result['titled_documents']} documents had a title, read as <title> <sep> <text>; pass "
                   "documents as {\"title\", \"text\"} at rerank time too (fastrank.documents)")
    run = result.get("epochs", result["config"]["epochs"])  # run, not asked (``epochs_note``)
    epochs = f"{run:g} epoch{'' if run == 1 else 's'}"
    if result.get("epochs_note"):
        epochs += f" ({result['epochs_note']})"
    speed = (f"{result['train_pairs_per_second']} pairs/s" if result["train_pairs_per_second"] is not None
             else "no steps were left to train")
    typer.echo(
        f"trained on {result['train_rows']} rows for {epochs} in {result['train_seconds']} s "
        f"({speed}, bf16={result['bf16']}); saved to {result['output_dir']}"
    )
    if result.get("train_loss_note"):
        typer.echo(f"note: {result['train_loss_note']}")


def train_command(
    data: Annotated[str, typer.Option("--data", help="Training data: grouped JSONL, CSV/TSV, Parquet, a BEIR folder "
                                                      "(its judged documents) or a hub id.")],
    out: Annotated[Path, typer.Option("--out", help="Where the trained model directory is written.")],
    base: Annotated[str | None, typer.Option("--base", help="Base model dir or id (bundled offline).",
                                             show_default=RECIPE.base)] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="Loss: listnet | lambda | listmle | plistmle | ranknet "
                                                            "(lists) | bce | mse | ce (pairs) | mnrl | cached-mnrl "
                                                            "(in-batch negatives) | margin-mse (teacher scores).",
                                             show_default=RECIPE.loss)] = None,
    epochs: Annotated[float | None, typer.Option("--epochs", help="Training epochs (> 0; fractions allowed).",
                                                 show_default=f"{RECIPE.epochs:g}")] = None,
    lr: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (linear warm-up, then decay).",
                                             show_default=f"{RECIPE.lr:g}")] = None,
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Rows per step: a row is a query's list for listwise losses (listnet, lambda, ...) and "
                             "margin-mse, a (query, positive, negatives) tuple for mnrl, a pair for bce/ce/mse.",
        show_default=str(RECIPE.batch_size))] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens per (query, document) pair.",
                                                   show_default=str(RECIPE.max_length))] = None,
    eval_data: Annotated[str | None, typer.Option(
        "--eval-data", help="Labelled data evaluated before/after (JSONL, CSV, TSV, Parquet).")] = None,
    loss_options: Annotated[str | None, typer.Option("--loss-options", help="JSON dict of loss options.")] = None,
    bf16: Annotated[str | None, typer.Option("--bf16", help="auto (where bf16 matmuls are fast) | true | false",
                                             show_default=RECIPE.bf16)] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (shuffling, sampled negatives, head init; "
                                                            "0 to 2**32 - 1).", show_default=str(RECIPE.seed))] = None,
    mine_negatives: Annotated[int | None, typer.Option(
        "--mine-negatives", help="Add N hard negatives per query mined from the training data's documents (a BEIR "
                                 "folder's: its corpus.jsonl) among each query's top 50, so N <= 50.",
        show_default="0")] = None,
    answer_negatives: Annotated[int | None, typer.Option(
        "--answer-negatives", help="Add N other queries' positives per query as negatives (closest two thirds "
        "by the embedding model, rest random): teaches topicality after retrieval.", show_default="0")] = None,
    first_stage_weight: Annotated[float | None, typer.Option(
        "--first-stage-weight", help="Train as a correction to the embedding model: rank by logit + W * its score "
        "(listwise losses; score the result with fastrank.losses.prior.PriorReranker). Experimental: it did not "
        "help on WikiQA, see bench/RESULTS.md.", show_default="0")] = None,
    embedding_model: Annotated[str | None, typer.Option(
        "--embedding-model", help="Embedding model that mines --mine-negatives, picks --answer-negatives and is the "
                                  "--first-stage-weight prior: the first stage the reranker will serve behind.",
        show_default=RECIPE.first_stage_model)] = None,
    query_prompt: QueryPrompt = None,
    document_prompt: DocumentPrompt = None,
    prompt: Annotated[str | None, typer.Option(
        "--prompt", help="Text put before every query, in training and when the saved model scores (e.g. 'query: "
                         "'); default: the base model's own default prompt, if it has one.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Resume an unfinished run from its last finished "
                                                          "checkpoint, kept in OUT.checkpoints (removed once a run "
                                                          "finishes), with that run's settings and data (--epochs "
                                                          "may be raised).")] = False,
    split: Annotated[str | None, typer.Option(
        "--split", help="With a BEIR folder or a hub dataset as --data: the split trained on (a BEIR folder's "
                        "qrels/SPLIT.tsv).", show_default=RECIPE.data_split)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a cross-encoder reranker (defaults: the recipe measured in bench/RESULTS.md)."""
    from fastrank.embedding import role_prompts
    from fastrank.training.recipe import TrainConfig, train

    given = {"base": base, "loss": loss, "epochs": epochs, "lr": lr, "batch_size": batch_size,
             "max_length": max_length, "bf16": bf16, "seed": seed, "mine_negatives": mine_negatives,
             "answer_negatives": answer_negatives, "first_stage_weight": first_stage_weight, "prompt": prompt,
             "first_stage_model": embedding_model, "first_stage_prompts": role_prompts(query_prompt, document_prompt),
             "data_split": split}
    try:
        options = json.loads(loss_options) if loss_options else {}
    except json.JSONDecodeError as exc:
        raise ValueError(f"--loss-options is not valid JSON ({exc.msg}, column {exc.colno}): {loss_options!r}; "
                         "give a JSON object, e.g. '{\"label_scale\": 10}'") from exc
    if not isinstance(options, dict):
        raise ValueError(f"--loss-options must be a JSON object, got {loss_options!r}")
    config = TrainConfig(data=data, out=str(out), eval_data=eval_data, resume=resume, loss_options=options,
                         **{k: v for k, v in given.items() if v is not None})
    if (embedding_model is not None or config.first_stage_prompts) and not config.uses_embedding_model:
        raise ValueError("--embedding-model, --query-prompt and --document-prompt set the embedding model that "
                         "--mine-negatives, --answer-negatives and --first-stage-weight use; give one of those too")
    _report(_quiet_stdout(train, config), as_json)


DEMO_EPOCHS = 2.0
DEMO_TRAIN_QUERIES = 400


def run_demo(workdir: str = "runs/demo", epochs: float | None = None) -> dict[str, Any]:
    """Build the stdlib-docstring dataset, train the default recipe on it, evaluate before/after, save.

    Smaller than a real run (400 training queries, 2 epochs, 192 tokens) so it ends in a few minutes on 2 cores.
    """
    from fastrank.demo import build_demo_data
    from fastrank.io import check_dir_path, check_output_dir, check_replaceable
    from fastrank.model import is_checkpoint_file
    from fastrank.training.recipe import TrainConfig, train

    if epochs is not None and not epochs > 0:
        raise ValueError(f"--epochs must be > 0, got {epochs}")
    check_dir_path(workdir, "--workdir")  # before any data is written: a file, an unwritable place, a foreign model
    check_output_dir(Path(workdir) / "model")
    check_replaceable(Path(workdir) / "model", is_checkpoint_file)
    paths = build_demo_data(Path(workdir) / "data", max_train=DEMO_TRAIN_QUERIES)
    config = TrainConfig(data=str(paths["train"]), eval_data=str(paths["test"]), out=str(Path(workdir) / "model"),
                         epochs=epochs if epochs is not None else DEMO_EPOCHS, max_length=192)
    return train(config)


def demo_command(
    workdir: Annotated[Path, typer.Option("--workdir", help="Where data and model are written.")] = Path("runs/demo"),
    epochs: Annotated[float | None, typer.Option("--epochs", help="Training epochs (> 0; fractions allowed).",
                                                 show_default=f"{DEMO_EPOCHS:g}")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train a small reranker from the MiniLM base on Python's own docstrings and show before/after metrics."""
    _report(_quiet_stdout(run_demo, str(workdir), epochs), as_json)
