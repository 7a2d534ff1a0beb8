"""``fastrank eval``: rerank every query of a grouped JSONL file and report MAP / MRR@10 / NDCG@10."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from fastrank.cli.options import DocumentPrompt, QueryPrompt
from fastrank.cli.output import BACKEND_HELP, metrics_table, print_json


def scorer(model: str, max_length: int | None = None, long_documents: str = "truncate",
           window_stride: int | None = None, batch_size: int | None = None,
           backend: str = "auto") -> tuple[Any, dict[str, Any] | None]:
    """What ``fastrank eval`` scores with, and how: an exported artifact (a ``fastrank.json`` in the directory)
    through ``Reranker``, on the backend and precision it is served at (a bf16 artifact in bf16, not upcast);
    a checkpoint or hub id through ``CrossEncoder`` (None), or through ``Reranker`` too with ``long_documents``
    ``windows`` (scored as ``fastrank serve --long-documents windows`` scores it) or with a ``backend`` other than
    ``auto`` (e.g. ``torch-cuda``: the quality of what that backend serves). The evaluator ranks a model with
    several labels (``--loss ce``) by its last class's probability. ``batch_size`` is the ``Reranker``'s (None: its
    own default, as served); a ``CrossEncoder`` gets it from the evaluator."""
    from fastrank.export.manifest import read_manifest
    from fastrank.reranker import LONG_DOCUMENTS

    if long_documents not in LONG_DOCUMENTS:
        raise typer.BadParameter(f"--long-documents must be one of {', '.join(LONG_DOCUMENTS)}, got {long_documents!r}")
    if window_stride is not None and long_documents != "windows":
        raise typer.BadParameter("--window-stride applies to --long-documents windows")
    artifact = Path(model).is_dir() and read_manifest(model) is not None
    if artifact or long_documents == "windows" or backend != "auto":
        if max_length is not None:
            raise typer.BadParameter("--max-length applies to checkpoints scored in truncate mode without --backend; "
                                     "an artifact scores at the max length it was exported with, windows and "
                                     "--backend at the model's own")
        from fastrank.reranker import Reranker

        reranker = Reranker(model, backend=backend, long_documents=long_documents, window_stride=window_stride,
                            batch_size=batch_size)
        return reranker, reranker.describe()
    from fastrank.model import CrossEncoder

    return CrossEncoder(model, max_length=max_length), None


def evaluate_model(model: str, data: str, batch_size: int | None = None, max_length: int | None = None,
                   long_documents: str = "truncate", window_stride: int | None = None,
                   backend: str = "auto") -> dict[str, Any]:
    """Evaluate ``model`` (checkpoint dir, hub id or exported artifact) on ``data``; returns the EvalResult as a
    dict (with ``served_by``: the backend that scored an artifact). ``batch_size``: pairs per forward pass (None:
    64 for a checkpoint in truncate mode, the ``Reranker``'s default for an artifact or windows)."""
    from fastrank.evaluation.evaluators import RerankingEvaluator

    evaluator = RerankingEvaluator.from_file(data, batch_size=64 if batch_size is None else batch_size,
                                             show_progress_bar=True)  # on stderr
    model_scorer, served_by = scorer(model, max_length, long_documents, window_stride, batch_size, backend)
    result = evaluator.evaluate(model_scorer).to_dict()
    result["model"] = model
    result["data"] = data
    if served_by is not None:
        result["served_by"] = served_by
    return result


def evaluate_retrieval(model: str, data: str, top_k: int, corpus: list[str] | None = None,
                       embedding_model: str | None = None, batch_size: int | None = None,
                       fusion_weights: list[float] | None = None, max_length: int | None = None,
                       long_documents: str = "truncate", window_stride: int | None = None, run: str | None = None,
                       split: str = "test", write_run: str | None = None,
                       embedding_prompts: dict[str, str] | None = None, backend: str = "auto") -> dict[str, Any]:
    """First stage vs reranked by ``model``; ``fusion_weights``: also z(reranker) + w * z(first stage). ``data`` is
    labelled lists (the corpus: every document in it, plus the documents of ``corpus`` files) or a BEIR folder
    (``split``'s qrels). The first stage is the embedding model's top-k over the corpus, or ``run``'s (a TREC run
    file over a BEIR folder's corpus ids). ``write_run``: the reranked ranking as a TREC run file.
    ``embedding_prompts``: the embedding model's ``prompts`` (``role_prompts``)."""
    from fastrank.evaluation.beir import (is_beir_dir, read_beir, read_run, run_documents,
                                         write_run as write_trec)
    from fastrank.evaluation.retrieval import RetrievalTask, evaluate_retrieve_rerank

    beir = is_beir_dir(data)
    if write_run is not None:
        from fastrank.io import check_output_file

        # never over an input, nor over a file of the model's or the BEIR folder's (every split's qrels)
        from fastrank.evaluation.beir import is_trec_run

        check_output_file(write_run, keep=[data, run, model, *(corpus or [])], what="--write-run",
                          replaceable=is_trec_run)  # a rerun replaces its own earlier run inside an input folder
    first_stage = read_run(run, top_k) if run is not None else None  # the stages stop at top_k
    if beir:
        task = read_beir(data, split, None if first_stage is None else run_documents(first_stage, top_k))
    else:
        from fastrank.data import read_corpus, read_groups

        extra = [d for path in corpus or [] for d in read_corpus(path)]
        task = RetrievalTask.from_groups(read_groups(data), extra)
    if write_run is not None and first_stage is None:  # a run's own ids are words; the corpus's may not be
        _check_run_ids(task)
    reranker, served_by = scorer(model, max_length, long_documents, window_stride, batch_size, backend)
    embedder = None
    if first_stage is None:
        from fastrank.embedding import EmbeddingModel
        from fastrank.model import DEFAULT_BASE

        embedder = EmbeddingModel(embedding_model or DEFAULT_BASE, prompts=embedding_prompts)
    result = evaluate_retrieve_rerank(task, embedder, reranker, top_k=top_k, ks=(10,),
                                      batch_size=64 if batch_size is None else batch_size,
                                      fusion_weights=tuple(fusion_weights or ()), run=first_stage,
                                      return_rankings=write_run is not None, show_progress_bar=True)  # on stderr
    rankings = result.pop("rankings", {})
    if write_run is not None:
        result["run_written"] = str(write_trec(write_run, rankings["run_reranked" if run else "reranked"]))
    first = {} if embedder is None else {"embedding_model": embedder.name_or_path,
                                         "embedding_prompts": embedder.applied_prompts}
    return {"model": model, "data": data, **({"run": run} if run else {}), **first, **result,
            **({"served_by": served_by} if served_by else {})}


def _check_run_ids(task: Any) -> None:
    """A DataError, before any scoring, when an id of ``task`` cannot name a query or document in a TREC run file
    (it failed writing the run after the whole evaluation)."""
    from fastrank.errors import DataError
    from fastrank.evaluation.retrieval import is_run_id

    bad = next((i for i in [*task.query_ids, *task.corpus_ids] if not is_run_id(i)), None)
    if bad is not None:
        raise DataError(f"--write-run: the id {bad!r} is empty or holds whitespace, which a TREC run file cannot "
                        "name; give the BEIR folder ids without whitespace, or leave out --write-run")


def _echo_served(result: dict[str, Any]) -> None:
    """Say which backend and precision scored an exported artifact (nothing for a checkpoint)."""
    if "served_by" in result:
        served = result["served_by"]
        typer.echo(f"scored as served: {served.get('backend')} {served.get('precision')} (fastrank.Reranker)")


def eval_command(
    model: Annotated[str, typer.Argument(help="Cross-encoder checkpoint directory or hub id, or an exported "
                                               "artifact (scored as served, by fastrank.Reranker).")],
    data: Annotated[Path, typer.Option("--data", help="Labelled data: grouped JSONL (query, documents, labels), "
                                                      "flat or grouped CSV / TSV, Parquet; or a BEIR folder "
                                                      "(corpus.jsonl, queries.jsonl, qrels/) with --run or "
                                                      "--retrieve-top-k.")],
    batch_size: Annotated[int | None, typer.Option(
        "--batch-size", help="Pairs per forward pass (default: 64 for a checkpoint in truncate mode; an artifact, "
                             "or --long-documents windows, the Reranker's own batching, as served).")] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Override the model's max length.")] = None,
    backend: Annotated[str, typer.Option("--backend", help=BACKEND_HELP + "; a checkpoint scores through it as "
                                                           "fastrank serve --backend would (default: CrossEncoder)")
                       ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    retrieve_top_k: Annotated[int | None, typer.Option(
        "--retrieve-top-k", help="Retrieve-then-rerank: first stage = embedding top-k over every document (with "
                                 "--run: how deep to rerank it, default 100).")] = None,
    run: Annotated[Path | None, typer.Option(
        "--run", help="First stage = this TREC run file (qid Q0 docid rank score tag) over the corpus of the BEIR "
                      "folder --data: its top --retrieve-top-k are reranked.")] = None,
    split: Annotated[str | None, typer.Option(
        "--split", help="With a BEIR folder: the qrels split to evaluate (qrels/SPLIT.tsv; default test).")] = None,
    write_run: Annotated[str | None, typer.Option(
        "--write-run", metavar="PATH", help="Write the reranked top k of the evaluated queries as a TREC run file: "
                                            "the ranking the table scores (not fused; every query of a run, fused "
                                            "or not: fastrank rerank --run).")] = None,
    corpus: Annotated[list[str] | None, typer.Option("--corpus", help="Extra corpus files (with --retrieve-top-k), "
                                                     "read as fastrank mine reads them.")] = None,
    embedding_model: Annotated[str | None, typer.Option(
        "--embedding-model", help="First-stage embedding model (with --retrieve-top-k; default "
                                  "all-MiniLM-L6-v2).")] = None,
    query_prompt: QueryPrompt = None,
    document_prompt: DocumentPrompt = None,
    fusion_weight: Annotated[list[float] | None, typer.Option(
        "--fusion-weight", help="With --retrieve-top-k or --run: also rank by z(reranker) + W * z(first stage) "
        "(repeatable; choose W on held-out queries).")] = None,
    long_documents: Annotated[str, typer.Option(
        "--long-documents", help="truncate | windows (a long document scores as its best overlapping window, as "
                                 "fastrank serve --long-documents windows scores it).")] = "truncate",
    window_stride: Annotated[int | None, typer.Option(
        "--window-stride", help="With --long-documents windows: tokens consecutive windows share (default: a "
                                "quarter of max length).")] = None,
) -> None:
    """Evaluate a reranker on labelled candidate lists, or retrieve-then-rerank: over a corpus, or a first stage's
    TREC run on a BEIR folder."""
    from fastrank.evaluation.beir import beir_problem, is_beir_dir

    beir = is_beir_dir(data)
    retrieve = retrieve_top_k is not None or run is not None
    shaping = [name for name, value in (("--corpus", corpus or None), ("--embedding-model", embedding_model),
                                        ("--query-prompt", query_prompt), ("--document-prompt", document_prompt))
               if value is not None]  # given: an empty prompt is one
    if shaping and not retrieve:
        raise typer.BadParameter(f"{', '.join(shaping)} need(s) --retrieve-top-k: they shape the embedding first "
                                 "stage of retrieve-then-rerank, which plain evaluation of labelled lists does not run")
    stray = [name for name, value in (("--fusion-weight", fusion_weight), ("--write-run", write_run)) if value]
    if stray and not retrieve:
        raise typer.BadParameter(f"{', '.join(stray)} need(s) --retrieve-top-k or --run: they fuse or keep the first "
                                 "stage of retrieve-then-rerank, which plain evaluation of labelled lists does not "
                                 "run")
    if run is not None and shaping:
        raise typer.BadParameter(f"{', '.join(shaping)} shape(s) an embedding first stage; with --run the run is the "
                                 "first stage")
    if corpus and beir:
        raise typer.BadParameter("--corpus adds documents to the corpus of labelled lists; a BEIR folder's corpus is "
                                 "its corpus.jsonl")
    if run is not None and not beir:
        raise typer.BadParameter(f"--run needs --data to be a BEIR folder, whose ids the run names: "
                                 f"{beir_problem(data)}")
    if split is not None and not beir:
        raise typer.BadParameter(f"--split picks a BEIR folder's qrels; {str(data)!r} is not a BEIR folder")
    if beir and not retrieve:
        raise typer.BadParameter(f"{str(data)!r} is a BEIR folder, which holds no candidate lists: give --run FILE "
                                 "(a first stage's TREC run, its top --retrieve-top-k reranked) or --retrieve-top-k K "
                                 "(the embedding model's top K over the corpus)")
    if data.is_dir() and not beir:
        raise typer.BadParameter(f"--data: {beir_problem(data)}; or give a data file")
    if retrieve_top_k is not None and retrieve_top_k < 1:
        raise typer.BadParameter(f"--retrieve-top-k must be >= 1 (documents the first stage retrieves), got "
                                 f"{retrieve_top_k}")
    if retrieve:
        from fastrank.embedding import role_prompts

        result = evaluate_retrieval(model, str(data), retrieve_top_k or 100, corpus, embedding_model, batch_size,
                                    fusion_weight, max_length, long_documents, window_stride,
                                    run=None if run is None else str(run), split=split or "test",
                                    write_run=write_run,  # a str: a trailing slash (a folder) is seen
                                    embedding_prompts=role_prompts(query_prompt, document_prompt), backend=backend)
        if as_json:
            print_json(result)
        else:
            first = "run" if run is not None else "first_stage"
            reranked = "run_reranked" if run else "reranked"
            stages = {k: result[k] for k in (first, reranked, "bm25", "bm25_reranked") if k in result}
            stages.update({f"reranked + {w} x {first}": m for w, m in result.get(f"{reranked}_fused", {}).items()})
            typer.echo(metrics_table(stages))
            searched = (f"the run's top {result['top_k']} reranked" if run is not None else
                        f"corpus of {result['corpus_size']} documents")
            typer.echo(f"{result['num_queries']} queries (skipped {result['queries_skipped']} without a relevant "
                       f"document), {searched}; latency {json.dumps(result['latency_s'])}")
            _echo_served(result)
            if "run_written" in result:
                typer.echo(f"wrote the reranked run to {result['run_written']}")
        return
    result = evaluate_model(model, str(data), batch_size=batch_size, max_length=max_length,
                            long_documents=long_documents, window_stride=window_stride, backend=backend)
    if as_json:
        print_json(result)
        return
    typer.echo(metrics_table({Path(model).name or model: result["metrics"]}))
    _echo_served(result)
    typer.echo(
        f"{result['num_queries']} queries evaluated; skipped {result['num_skipped_no_positive']} without a "
        f"positive and {result['num_skipped_no_candidates']} without candidates"
    )
    trivial = result.get("extra", {}).get("num_queries_all_relevant", 0)
    if trivial:
        typer.echo(f"{trivial} of the evaluated queries have only relevant candidates and score 1.0 whatever the "
                   "model does (an export's verification metrics leave them out, so its manifest can read lower)")
